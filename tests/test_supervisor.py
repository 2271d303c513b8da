"""The supervisor restarts dying children with backoff, gives up loudly on crash loops, and stops process groups."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from harvest_pipeline.supervisor import ChildSpec, Supervisor, restart_delay

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def test_restart_delay_doubles_up_to_its_cap() -> None:
    assert [restart_delay(n, 1.0, 8.0) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 8.0]


def test_a_child_that_dies_is_restarted_and_counted(tmp_path: Path) -> None:
    marker = tmp_path / "ran-once"
    dies_once = [
        sys.executable,
        "-c",
        f"import os, sys, time\nif not os.path.exists({str(marker)!r}):\n    open({str(marker)!r}, 'w').close()\n"
        "    sys.exit(3)\ntime.sleep(600)",
    ]

    async def scenario() -> tuple[int, Supervisor]:
        supervisor = Supervisor([ChildSpec("flaky", dies_once)], backoff_base_s=0.05)
        task = asyncio.create_task(supervisor.run())
        for _ in range(200):
            await asyncio.sleep(0.05)
            if supervisor.children["flaky"].restarts == 1 and supervisor.children["flaky"].pid:
                break
        supervisor.request_stop()
        return await task, supervisor

    code, supervisor = asyncio.run(scenario())
    state = supervisor.children["flaky"]
    assert code == 0
    assert (state.starts, state.restarts) == (2, 1)
    assert state.last_exit_code != 3  # the second run was stopped by us, not crashed


def test_a_crash_loop_stops_everything_with_a_clear_message(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, Supervisor]:
        supervisor = Supervisor(
            [ChildSpec("steady", SLEEPER), ChildSpec("broken", [sys.executable, "-c", "raise SystemExit(2)"])],
            max_restarts=2,
            backoff_base_s=0.01,
        )
        return await asyncio.wait_for(supervisor.run(), timeout=30), supervisor

    code, supervisor = asyncio.run(scenario())
    assert code == 1
    assert supervisor.failure is not None and "broken exited 3 times" in supervisor.failure
    assert supervisor.children["broken"].starts == 3
    steady_pid = supervisor.children["steady"].process.pid
    assert supervisor.children["steady"].process.returncode is not None
    assert not Path(f"/proc/{steady_pid}").exists() or Path(f"/proc/{steady_pid}/stat").read_text().split()[2] == "Z"


def test_stopping_kills_the_childs_own_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    spawner = [
        sys.executable,
        "-c",
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\ntime.sleep(600)",
    ]

    async def scenario() -> int:
        supervisor = Supervisor([ChildSpec("spawner", spawner, stop_timeout_s=5)])
        task = asyncio.create_task(supervisor.run())
        for _ in range(200):
            await asyncio.sleep(0.05)
            if pid_file.exists() and pid_file.read_text():
                break
        supervisor.request_stop()
        return await task

    assert asyncio.run(scenario()) == 0
    grandchild = int(pid_file.read_text())
    for _ in range(50):
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        asyncio.run(asyncio.sleep(0.1))
    else:
        raise AssertionError(f"grandchild {grandchild} survived the stop")


def test_child_logs_rotate_at_their_size_keeping_every_newest_line_whole(tmp_path: Path) -> None:
    lines = 60_000
    chatty = [
        sys.executable,
        "-c",
        "import sys\n"
        f"for n in range({lines}):\n"
        "    stream = sys.stdout if n % 2 else sys.stderr\n"
        "    stream.write(f'line {n:07d} ' + 'x' * (n % 97) + '\\n')\n"
        "    stream.flush()\n"
        "import time; time.sleep(600)",
    ]
    log_path = tmp_path / "logs" / "chatty.log"
    max_bytes, backups = 256 * 1024, 3

    async def scenario() -> int:
        spec = ChildSpec("chatty", chatty, log_path=log_path, log_max_bytes=max_bytes, log_backups=backups)
        supervisor = Supervisor([spec])
        task = asyncio.create_task(supervisor.run())
        last = f"line {lines - 1:07d} ".encode()
        for _ in range(600):
            await asyncio.sleep(0.05)
            if log_path.exists() and last in log_path.read_bytes():
                break
        supervisor.request_stop()
        return await task

    assert asyncio.run(scenario()) == 0
    files = [log_path.with_name(f"chatty.log.{n}") for n in range(backups, 0, -1)] + [log_path]
    assert all(path.exists() for path in files), "the log rotated through every backup"
    assert not log_path.with_name(f"chatty.log.{backups + 1}").exists()
    sizes = [path.stat().st_size for path in files]
    assert all(size <= max_bytes for size in sizes), sizes
    kept = b"".join(path.read_bytes() for path in files).decode().splitlines()
    numbers = []
    for line in kept:
        head, _, tail = line.partition(" ")[2].partition(" ")
        assert line.startswith("line ") and tail == "x" * (int(head) % 97), f"torn line {line!r}"
        numbers.append(int(head))
    # stdout and stderr share one pipe, so their order is the child's; no line is lost across the rotations
    assert numbers == list(range(numbers[0], lines)), "lines lost or reordered between files"
    assert numbers[0] > 0, "older lines were rotated away, so the bound held"
