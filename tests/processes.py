"""Stopping the processes tests start, the way an operator or a service manager would."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import NoReturn

import pytest


def stop_process(
    process: subprocess.Popen, sig: int = signal.SIGTERM, timeout_s: float = 30.0, group: bool = True
) -> int:
    """Send ``sig`` (to the process group of a ``start_new_session`` child, or to the process alone), wait up to
    ``timeout_s``, then SIGKILL the group; returns the exit code."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig) if group else process.send_signal(sig)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


def system_tool_missing(reason: str) -> NoReturn:
    """Skip a test whose system tool is missing, except in CI (``CI=true``): ``.ci/run`` installs it, so fail."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}; .ci/run installs it")
    pytest.skip(reason)
