"""`make run`'s supervision: a process that exits is started again, with backoff.

Only the launcher stopping (Ctrl-C) stops the processes; a service that crashed is back
within seconds and the others keep working meanwhile (the gateway keeps accepting calls).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from devtools.processes import stop

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0
STABLE_AFTER_S = 60.0  # running this long, a process's backoff starts over

Start = Callable[[], subprocess.Popen[bytes]]


@dataclass
class Supervised:
    """One process kept running: started again by `tend` after it exits."""

    name: str
    start: Start
    log: Callable[[str], None] = print
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    _started_at: float = 0.0
    _delay_s: float = FIRST_DELAY_S
    _restart_at: float | None = field(default=None, repr=False)
    _stopped: bool = False

    def launch(self) -> subprocess.Popen[bytes]:
        self.process = self.start()
        self._started_at = time.monotonic()
        return self.process

    def tend(self) -> None:
        """Notice an exit and schedule a restart; restart when its backoff is over."""
        if self._stopped:
            return
        now = time.monotonic()
        if self._restart_at is not None:
            if now >= self._restart_at:
                self._restart_at = None
                self.restarts += 1
                self.launch()
                self.log(f"{self.name} restarted (restart {self.restarts})")
            return
        if self.process is None or self.process.poll() is None:
            return
        if now - self._started_at >= STABLE_AFTER_S:
            self._delay_s = FIRST_DELAY_S
        self.log(
            f"{self.name} exited with code {self.process.returncode}; "
            f"starting it again in {self._delay_s:.0f} s"
        )
        self._restart_at = now + self._delay_s
        self._delay_s = min(self._delay_s * 2, MAX_DELAY_S)

    def stop(self) -> None:
        self._stopped, self._restart_at = True, None
        if self.process is not None:
            stop(self.process)


@dataclass
class Supervisor:
    """Processes kept running until `stop_all`."""

    processes: list[Supervised] = field(default_factory=list)

    def add(self, supervised: Supervised) -> Supervised:
        self.processes.append(supervised)
        return supervised

    def tend_forever(self, interval_s: float = 0.5) -> None:
        while True:
            for supervised in self.processes:
                supervised.tend()
            time.sleep(interval_s)

    def stop_all(self) -> None:
        for supervised in reversed(self.processes):
            supervised.stop()
