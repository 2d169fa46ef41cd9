"""`make run`'s supervisor with real child processes: a killed one is started again."""

from __future__ import annotations

import signal
import sys

from devtools.processes import spawn
from devtools.supervisor import Supervised, Supervisor
from tests.helpers import wait_for


def _sleeper(logged: list[str]) -> Supervised:
    return Supervised(
        "sleeper",
        lambda: spawn([sys.executable, "-c", "import time; time.sleep(600)"]),
        log=logged.append,
    )


async def test_a_killed_process_is_started_again_with_backoff() -> None:
    supervisor, logged = Supervisor(), list[str]()
    sleeper = supervisor.add(_sleeper(logged))
    first = sleeper.launch()
    try:
        first.send_signal(signal.SIGKILL)

        async def restarted() -> bool:
            sleeper.tend()
            return sleeper.process is not first and sleeper.process is not None

        await wait_for(restarted, timeout_s=10)
        assert sleeper.process is not None
        assert sleeper.process.poll() is None
        assert logged == [
            "sleeper exited with code -9; starting it again in 1 s",
            "sleeper restarted (restart 1)",
        ]
        second = sleeper.process
        second.send_signal(signal.SIGKILL)

        async def restarted_again() -> bool:
            sleeper.tend()
            return sleeper.process is not second

        await wait_for(restarted_again, timeout_s=10)
        assert logged[2] == "sleeper exited with code -9; starting it again in 2 s"
        assert sleeper.restarts == 2
    finally:
        supervisor.stop_all()
    assert sleeper.process is not None
    assert sleeper.process.poll() is not None


def test_stopping_does_not_restart() -> None:
    supervisor, logged = Supervisor(), list[str]()
    sleeper = supervisor.add(_sleeper(logged))
    process = sleeper.launch()
    supervisor.stop_all()
    sleeper.tend()  # an exit seen after the stop is not a crash
    assert process.poll() is not None
    assert logged == []
