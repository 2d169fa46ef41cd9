"""All four services as processes on one machine: for end-to-end tests and benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devtools.processes import free_port, port_open, spawn

SERVICES = ("ingest", "downloader", "analyzer", "notifier")


class System:
    """The four services as processes, restartable one by one."""

    def __init__(
        self,
        *,
        mongo_url: str,
        amqp_url: str,
        prefix: str,
        state_dir: str,
        extra_env: dict[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.http_port = free_port()
        self.health = {name: free_port() for name in SERVICES}
        self.env = {
            **os.environ,
            "ROP_MONGO_URL": mongo_url,
            "ROP_AMQP_URL": amqp_url,
            "ROP_AMQP_PREFIX": prefix,
            "ROP_STATE_DIR": state_dir,
            "ROP_HTTP_PORT": str(self.http_port),
            "ROP_FETCH_ALLOW_LOOPBACK": "true",
            "ROP_LOG_LEVEL": "warning",
            **(extra_env or {}),
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.log_dir = log_dir

    def log_of(self, name: str) -> Path | None:
        """Where a service's output goes: `log_dir/<name>.log`, or ours without one."""
        return None if self.log_dir is None else self.log_dir / f"{name}.log"

    def start(self, name: str, *, replica: str | None = None) -> None:
        """Start a service; `replica` names one more process of it (its own health port),
        which the other methods then take for a name."""
        key = replica or name
        port = self.http_port if name == "ingest" else self.health.setdefault(key, free_port())
        self.processes[key] = spawn(
            [sys.executable, "-m", f"services.{name}"],
            {**self.env, "ROP_HEALTH_PORT": str(port)},
            log_path=self.log_of(key),
        )

    async def wait_healthy(self, timeout_s: float = 60.0) -> None:
        """Until every service listens; a service that exits fails at once."""
        await asyncio.to_thread(self.wait_listening, *SERVICES, timeout_s=timeout_s)

    async def api(self) -> str:
        """The API's base URL, once every service listens."""
        await self.wait_healthy()
        return f"http://127.0.0.1:{self.http_port}/api/v1"

    def wait_listening(self, *names: str, timeout_s: float = 60.0) -> None:
        """Until these services listen; a service that exits fails at once."""
        deadline = time.monotonic() + timeout_s
        for name in names:
            port = self.http_port if name == "ingest" else self.health[name]
            while not port_open("127.0.0.1", port):
                if self.processes[name].poll() is not None:
                    raise RuntimeError(f"{name} exited with {self.processes[name].returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not listen in {timeout_s}s")
                time.sleep(0.1)

    def kill(self, name: str) -> None:
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait()

    def terminate(self, name: str, *, grace_s: float) -> tuple[float, int]:
        """SIGTERM, as Kubernetes stops a pod: the seconds it took to exit and its exit
        code. One still running after `grace_s` is killed, and that raises."""
        process = self.processes[name]
        started = time.monotonic()
        process.terminate()
        try:
            code = process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise RuntimeError(f"{name} did not exit within {grace_s} s of SIGTERM") from None
        return time.monotonic() - started, code

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
            if process.poll() is None:
                process.kill()
                process.wait()
