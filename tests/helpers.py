"""Test helpers: waiting on conditions with deadlines, a TCP proxy to cut the broker off."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from services.ingest.backoffice.accounts import Role, User
from shared.events import CallReceived, Envelope, utcnow
from shared.url_policy import UrlPolicy

T = TypeVar("T")
# What tests save links under: the fakes of third parties listen on 127.0.0.1.
LOCAL_POLICY = UrlPolicy(allow_loopback=True)
# People the back office answers, without logging in: an admin, and a team's supervisor.
ADMIN = User(id="u1", email="admin@example.ru", role=Role.ADMIN, manager_id=None, active=True)
TEAM = User(
    id="u2",
    email="head@example.ru",
    role=Role.SUPERVISOR,
    manager_id=None,
    active=True,
    team_manager_ids=("mgr_1", "mgr_3"),
)


async def wait_for(
    condition: Callable[[], Awaitable[T]], *, timeout_s: float = 15.0, interval_s: float = 0.05
) -> T:
    """Poll an async condition until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last value: {value!r})")
        await asyncio.sleep(interval_s)


async def new_task(db: Any, audio_url: str) -> tuple[Envelope, CallReceived]:
    """A task as ingest stores it, and its CallReceived."""
    task_id = f"task_{uuid.uuid4().hex[:12]}"
    event = CallReceived(
        call_id=f"call_{task_id}", deal_id="deal_1", manager_id="mgr_1", audio_url=audio_url
    )
    now = utcnow()
    await db.calls.insert_one(
        {
            "_id": task_id,
            "call_id": event.call_id,
            "deal_id": event.deal_id,
            "manager_id": event.manager_id,
            "status": "queued",
            "received_at": now,
            "updated_at": now,
            "timeline": [{"status": "queued", "at": now}],
        }
    )
    return Envelope.wrap(event, task_id=task_id), event


class TcpProxy:
    """Forwards a local port to a target; `cut()` drops every connection and refuses new ones."""

    def __init__(self, target_host: str, target_port: int, listen_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = listen_port
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listen (again) on the same port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Stop listening and close every open connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        self._writers.clear()

    def drop(self) -> int:
        """Close every open connection and keep listening (what a broker restart or a
        network blip does to its clients); return how many were open."""
        dropped = len(self._writers) // 2
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        return dropped

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


# The downloader's settings for tests: short timeouts and retries against local servers.
FAST_DOWNLOADS = {
    "fetch_allow_loopback": True,
    "download_read_timeout_s": 0.5,
    "download_retry_initial_s": 0.05,
    "download_retry_max_s": 2.0,
    "download_attempts": 3,
}
