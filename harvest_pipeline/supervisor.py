"""A small process supervisor: start children, restart the ones that die with backoff, stop all cleanly.

`harvest up` runs the collector, the Dagster daemon, the Dagster webserver and (offline) the simulator as children.
A child that exits is restarted after a capped exponential backoff; each restart is logged and counted. A child that
keeps crashing (``max_restarts`` within ``restart_window_s``) stops the whole tree with a clear message instead of
looping silently. Each child runs in its own process group so its own children (Dagster run workers, code servers) are
stopped with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChildSpec:
    """How to run one supervised child."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    stop_timeout_s: float = 20.0


@dataclass
class ChildState:
    """What the supervisor knows about one child, for status output and tests."""

    spec: ChildSpec
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    restarts: int = 0
    last_exit_code: int | None = None
    recent_crashes: deque[float] = field(default_factory=deque)

    @property
    def pid(self) -> int | None:
        """The running child's pid, if any."""
        return self.process.pid if self.process and self.process.returncode is None else None


def restart_delay(consecutive_crashes: int, base_s: float = 1.0, cap_s: float = 30.0) -> float:
    """Capped exponential backoff before restart number ``consecutive_crashes`` (1-based)."""
    return min(cap_s, base_s * 2 ** max(0, consecutive_crashes - 1))


class Supervisor:
    """Runs a set of children until asked to stop or until one crashes too often."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        max_restarts: int = 5,
        restart_window_s: float = 300.0,
        backoff_base_s: float = 1.0,
        on_event: Callable[[str, ChildState], None] | None = None,
    ):
        self.children = {spec.name: ChildState(spec) for spec in specs}
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self.backoff_base_s = backoff_base_s
        self._on_event = on_event
        self._stopping = asyncio.Event()
        self.failure: str | None = None

    async def run(self) -> int:
        """Start every child and watch them; returns 0 after a requested stop, 1 if a child crashed too often."""
        watchers = [
            asyncio.create_task(self._watch(state), name=f"watch-{name}") for name, state in self.children.items()
        ]
        stop_wait = asyncio.create_task(self._stopping.wait())
        await asyncio.wait([stop_wait, *watchers], return_when=asyncio.FIRST_COMPLETED)
        self._stopping.set()
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        await self.stop_all()
        return 1 if self.failure else 0

    def request_stop(self) -> None:
        """Ask the supervisor to stop all children (signal-handler safe)."""
        self._stopping.set()

    async def _watch(self, state: ChildState) -> None:
        while not self._stopping.is_set():
            await self._start(state)
            assert state.process is not None
            code = await state.process.wait()
            state.last_exit_code = code
            if self._stopping.is_set():
                return
            now = time.monotonic()
            state.recent_crashes.append(now)
            while state.recent_crashes and now - state.recent_crashes[0] > self.restart_window_s:
                state.recent_crashes.popleft()
            if len(state.recent_crashes) > self.max_restarts:
                self.failure = (
                    f"{state.spec.name} exited {len(state.recent_crashes)} times within {self.restart_window_s:.0f} s "
                    f"(last exit code {code}); stopping everything. See {state.spec.log_path or 'its output'}."
                )
                log.error(self.failure)
                self._emit("gave_up", state)
                return
            delay = restart_delay(len(state.recent_crashes), self.backoff_base_s)
            log.warning("%s exited with code %s; restarting in %.1f s", state.spec.name, code, delay)
            self._emit("crashed", state)
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                return
            except TimeoutError:
                state.restarts += 1

    async def _start(self, state: ChildState) -> None:
        spec = state.spec
        env = {**os.environ, **spec.env}
        output = None
        if spec.log_path is not None:
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
            output = open(spec.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            state.process = await asyncio.create_subprocess_exec(
                *spec.argv,
                env=env,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT if output else None,
                start_new_session=True,
            )
        finally:
            if output is not None:
                output.close()
        state.starts += 1
        log.info("started %s (pid %d)", spec.name, state.process.pid)
        self._emit("started", state)

    async def stop_all(self) -> None:
        """SIGTERM each child's process group in reverse start order, then SIGKILL what outlives its timeout.

        Reverse order stops the collector (listed last) first, so it seals its segment while its source still runs.
        """
        for state in reversed(self.children.values()):
            await self._stop(state)

    async def _stop(self, state: ChildState) -> None:
        process = state.process
        if process is None or process.returncode is not None:
            return
        _signal_group(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=state.spec.stop_timeout_s)
            log.info("stopped %s (exit code %s)", state.spec.name, process.returncode)
        except TimeoutError:
            log.error("%s did not stop within %.0f s; killing it", state.spec.name, state.spec.stop_timeout_s)
            _signal_group(process.pid, signal.SIGKILL)
            await process.wait()
        state.last_exit_code = process.returncode
        _signal_group(process.pid, signal.SIGKILL)

    def _emit(self, event: str, state: ChildState) -> None:
        if self._on_event is not None:
            self._on_event(event, state)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
