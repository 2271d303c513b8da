"""A small process supervisor: start children, restart the ones that die with backoff, stop all cleanly.

`harvest up` runs the collector, the Dagster daemon, the Dagster webserver and (offline) the simulator as children.
A child that exits is restarted after a capped exponential backoff; each restart is logged and counted. A child that
keeps crashing (``max_restarts`` within ``restart_window_s``) stops the whole tree with a clear message instead of
looping silently. Each child runs in its own process group so its own children (Dagster run workers, code servers) are
stopped with it.

A child's stdout and stderr come through one pipe the supervisor drains in its event loop into ``logs/<child>.log``,
rotated at a size (``RotatingLog``): whole lines only, so no line is torn between two files or lost in a rotation.
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


LOG_MAX_BYTES = 20 * 1024 * 1024
LOG_BACKUPS = 5
READ_CHUNK_BYTES = 64 * 1024
MAX_LINE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ChildSpec:
    """How to run one supervised child. ``env`` is laid over the supervisor's environment; a ``None`` value removes
    that variable. ``log_path`` collects stdout and stderr, rotated at ``log_max_bytes`` keeping ``log_backups``."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str | None] = field(default_factory=dict)
    log_path: Path | None = None
    stop_timeout_s: float = 20.0
    log_max_bytes: int = LOG_MAX_BYTES
    log_backups: int = LOG_BACKUPS


class RotatingLog:
    """An append-only log file that rotates to ``<name>.1`` … ``<name>.<backups>`` before it would pass ``max_bytes``.

    It is written whole lines at a time; a line longer than ``max_bytes`` gets a file of its own. On-disk bytes stay
    within ``(backups + 1) * max_bytes`` (plus one over-long line).
    """

    def __init__(self, path: Path, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS):
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab")  # noqa: SIM115 - kept open across writes, closed by close()/rotation
        self._size = self._file.tell()

    def write_lines(self, data: bytes) -> None:
        """Append ``data`` (complete lines, each ending in a newline), rotating between lines when it is time."""
        if self._size + len(data) <= self.max_bytes:
            self._append(data)
            return
        start = 0
        while start < len(data):
            newline = data.find(b"\n", start)
            end = len(data) if newline < 0 else newline + 1
            line = data[start:end]
            if self._size and self._size + len(line) > self.max_bytes:
                self._rotate()
            self._append(line)
            start = end

    def _append(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()
        self._size += len(data)

    def _rotate(self) -> None:
        self._file.close()
        for number in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{number}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{number + 1}"))
        if self.backups:
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()
        self._file = open(self.path, "ab")  # noqa: SIM115 - see __init__
        self._size = 0

    def close(self) -> None:
        """Close the current file."""
        self._file.close()


async def copy_lines(reader: asyncio.StreamReader, target: RotatingLog, max_line_bytes: int = MAX_LINE_BYTES) -> None:
    """Copy a child's output into ``target`` until end of file, whole lines at a time.

    A final partial line is ended with a newline; a line longer than ``max_line_bytes`` is cut there.
    """
    pending = b""
    while chunk := await reader.read(READ_CHUNK_BYTES):
        pending += chunk
        cut = pending.rfind(b"\n") + 1
        if not cut and len(pending) >= max_line_bytes:
            cut, pending = len(pending) + 1, pending + b"\n"  # an endless line: end it rather than hold it all
        if cut:
            target.write_lines(pending[:cut])
            pending = pending[cut:]
    if pending:
        target.write_lines(pending + b"\n")


@dataclass
class ChildState:
    """What the supervisor knows about one child, for status output and tests."""

    spec: ChildSpec
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    restarts: int = 0
    last_exit_code: int | None = None
    recent_crashes: deque[float] = field(default_factory=deque)
    log: RotatingLog | None = None
    output_copies: set[asyncio.Task[None]] = field(default_factory=set)

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
        piped = spec.log_path is not None
        state.process = await asyncio.create_subprocess_exec(
            *spec.argv,
            env={name: value for name, value in env.items() if value is not None},
            stdout=asyncio.subprocess.PIPE if piped else None,
            stderr=asyncio.subprocess.STDOUT if piped else None,
            start_new_session=True,
        )
        if spec.log_path is not None and state.process.stdout is not None:
            if state.log is None:
                state.log = RotatingLog(spec.log_path, spec.log_max_bytes, spec.log_backups)
            copy = asyncio.create_task(copy_lines(state.process.stdout, state.log), name=f"log-{spec.name}")
            state.output_copies.add(copy)
            copy.add_done_callback(state.output_copies.discard)
        state.starts += 1
        log.info("started %s (pid %d)", spec.name, state.process.pid)
        self._emit("started", state)

    async def stop_all(self) -> None:
        """SIGTERM each child's process group in reverse start order, then SIGKILL what outlives its timeout.

        Reverse order stops the collector (listed last) first, so it seals its segment while its source still runs.
        """
        for state in reversed(self.children.values()):
            await self._stop(state)
        for state in self.children.values():
            await self._finish_log(state)

    async def _finish_log(self, state: ChildState) -> None:
        """Copy what the stopped child's pipe still holds, then close its log."""
        if state.output_copies:
            await asyncio.wait(set(state.output_copies), timeout=5.0)
        for copy in set(state.output_copies):
            copy.cancel()
        if state.log is not None:
            state.log.close()

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
