"""Unit tests do no I/O: any attempt to resolve a name or open a connection fails the test."""

from __future__ import annotations

import socket
from typing import Any

import pytest


def _no_network(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError(f"unit tests must not touch the network: {args!r}")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", _no_network)
    monkeypatch.setattr(socket.socket, "sendto", _no_network)
    monkeypatch.setattr(socket, "getaddrinfo", _no_network)
