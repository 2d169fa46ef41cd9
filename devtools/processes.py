"""Processes of `make run`, tests and benchmarks: SecantusDB (the embedded MongoDB-wire
server), services, ports."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

READY_TIMEOUT_S = 30.0


def free_port() -> int:
    """Ask the kernel for a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _server_command() -> str:
    beside_python = Path(sys.executable).with_name("secantusd-py")
    found = str(beside_python) if beside_python.exists() else shutil.which("secantusd-py")
    if found is None:
        raise RuntimeError(
            "secantusd-py not found: install the dev extras (pip install -e '.[dev]')"
        )
    return found


def start_secantus(
    port: int, storage_path: str, *, log_path: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start the server and return once it accepts connections; `:memory:` keeps nothing."""
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [
            _server_command(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            storage_path,
            "--log-level",
            "WARNING",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not port_open("127.0.0.1", port):
        if process.poll() is not None:
            raise RuntimeError(f"SecantusDB exited with code {process.returncode}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"SecantusDB did not listen on port {port} in {READY_TIMEOUT_S}s")
        time.sleep(0.05)
    return process


def spawn(
    command: list[str],
    env: dict[str, str] | None = None,
    *,
    quiet: bool = False,
    log_path: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child process, its output discarded (`quiet`), appended to `log_path`, or
    shared with ours."""
    if log_path is None:
        output = subprocess.DEVNULL if quiet else None
        return subprocess.Popen(command, env=env, stdout=output, stderr=output)
    with open(log_path, "ab") as log:  # the child keeps its own copy of the file
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """Terminate a child process, killing it if it does not exit in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
