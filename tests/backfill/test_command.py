"""`harvest backfill`: refuses bad input with a message, and heals a recorded day as a real process."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import io
import os
import sys
from pathlib import Path

import pytest

from harvest_pipeline.backfill.command import ProgressBar, progress_line
from harvest_pipeline.backfill.days import HealProgress
from harvest_pipeline.cli import main
from harvest_pipeline.paths import DataPaths
from harvest_pipeline.segments import list_sealed_segments
from harvest_pipeline.settings import SETTINGS_ENV_NAMES, SETTINGS_FILE_ENV
from harvest_pipeline.simulator import SimulatorConfig, running_simulator
from tests.backfill.recording import (
    FREEZE,
    SYMBOL,
    compact,
    drop_trades,
    issued_ids,
    record_day,
    run,
    trade_certificate,
)
from tests.collector.harness import REPO_ROOT


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--date", "2026-13-01", "--symbol", "BTCUSDT"], "invalid date '2026-13-01'"),
        (["--date", "2026-03-02", "--symbol", "BTC-USDT"], "invalid symbol 'BTC-USDT'"),
        (["--date", "2026-03-02", "--symbol", "BTCUSDT", "--until", "2026-03-01"], "--until 2026-03-01 is before"),
        (["--date", "2026-03-02", "--symbol", "BTCUSDT", "--weight-per-minute", "5"], "invalid weight per minute '5'"),
        (["--date", "2026-03-02"], "the following arguments are required: --symbol"),
    ],
)
def test_bad_input_exits_non_zero_with_a_message_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    argv = ["backfill", *args, "--data-root", str(tmp_path / "data"), "--rest-base", "http://127.0.0.1:9"]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse refuses a bad value itself
        code = int(exit_.code or 0)
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_the_progress_line_shows_the_day_its_share_and_a_wait() -> None:
    progress = HealProgress(SYMBOL, dt.date(2026, 3, 2), 1, 3, 3, 7, 5_200, 10_000, 14, 280, 5_000, 200, 23.4)
    line = progress_line(progress)
    assert line.startswith("BTCUSDT 2026-03-02 (day 1/3) [##########----------]  52% holes 3/7 ids 5,200/10,000")
    assert line.endswith("14 requests, weight 280, 5,000 trades stored, 200 ids declared | waiting 23 s")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_one_line_redrawn_in_place_and_a_pipe_gets_plain_lines() -> None:
    first = HealProgress(SYMBOL, dt.date(2026, 3, 2), 1, 2, 0, 2, 0, 1_000, 0, 0, 0, 0, 0.0)
    steps = [first, dataclasses.replace(first, day=dt.date(2026, 3, 3), day_number=2, holes_done=2, ids_done=1_000)]
    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        bar = ProgressBar(stream)
        for step in steps:
            bar.update(step)
        bar.finish()
    assert terminal.getvalue() == "\r" + progress_line(steps[0]) + "\r" + progress_line(steps[1]) + "\n"
    assert pipe.getvalue() == progress_line(steps[0]) + "\n" + progress_line(steps[1]) + "\n"


def test_the_command_heals_a_recorded_day_and_prints_progress_and_a_summary(tmp_path: Path) -> None:
    paths = DataPaths.from_root(tmp_path / "data")

    async def scenario() -> None:
        async with running_simulator(SimulatorConfig(symbols=(SYMBOL,), seed=6, rate=1.0, faults=(FREEZE,))) as sim:
            day = await record_day(sim, paths, seconds=2.0)
            hole = issued_ids(sim.accounting())[10:40]
            drop_trades(paths, day, set(hole))
            env = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV_NAMES and k != SETTINGS_FILE_ENV}
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "harvest_pipeline.cli",
                "backfill",
                "--date",
                day.isoformat(),
                "--symbol",
                "btcusdt",
                "--data-root",
                str(paths.root),
                "--rest-base",
                sim.rest_base,
                cwd=REPO_ROOT,
                env={**env, "PYTHONPATH": str(REPO_ROOT)},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await process.communicate()
            assert process.returncode == 0, err.decode()
            summary, progress = out.decode(), err.decode()
            assert f"backfill BTCUSDT {day}: 1 holes to fill, 1 requests (weight 20), 30 trades stored" in summary
            assert f"BTCUSDT {day} (day 1/1)" in progress and "\r" not in progress, "plain lines when not a terminal"
            [segment] = [s.name for s in list_sealed_segments(paths.sealed_segments) if "-backfill-" in s.name]
            assert f"segment {segment} sealed" in summary
            compact(paths, segment)
            [listed] = trade_certificate(paths, day)["holes"]
            assert (listed["first_id"], listed["last_id"], listed["cause"]) == (hole[0], hole[-1], "healed")

    run(scenario())
