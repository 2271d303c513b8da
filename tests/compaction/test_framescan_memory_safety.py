"""The compiled scanner never reads or writes out of bounds, whatever the bytes: it is built again with
AddressSanitizer and UndefinedBehaviorSanitizer and fed randomly mutated, truncated and padded frame lines (seeded)
in every mode, all in one buffer and each alone in an allocation of its own (so that reading past a line's end is
caught), and arguments that point outside the data. A report from either sanitizer aborts the child process, which
fails the test. A crash here would be a compaction run that dies on a segment, every time it is retried.
"""

import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "harvest_pipeline" / "compaction" / "_framescan.c"

HARNESS = textwrap.dedent(
    """
    import random, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import _framescan
    from tests.compaction.frames import MS, TrafficMix
    from harvest_pipeline import segments

    rng = random.Random(int(sys.argv[2]))
    frames = TrafficMix(start_ms=1_767_225_600_000).frames(2_000)
    base = [segments.encode_frame(ms * MS, "c1", 1, s, raw).data.rstrip(b"\\n") for s, raw, ms in frames]
    alphabet = b'{}[]",:0123456789.-eE+ tfnulasbBAqpmTUuP\\\\x\\x00\\xff\\x7f'
    lines = []
    for _ in range(50_000):
        line = bytearray(rng.choice(base))
        for _ in range(rng.choice((0, 1, 2, 3, 5, 8))):
            at, edit = rng.randrange(len(line) + 1), rng.random()
            if edit < 0.3 and at < len(line):
                line[at] = rng.choice(alphabet)
            elif edit < 0.5:
                del line[at : at + rng.randrange(1, 40)]
            elif edit < 0.7:
                line[at:at] = bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 30)))
            elif edit < 0.8:
                del line[at:]
            else:
                line[at:at] = b"9" * rng.randrange(15, 60)
        lines.append(bytes(line))
    lines += [b"", b"{", b'{"t":', b'{"f":{"data":{"b":[["1"', b'{"f":{"data":{"b":[["1","2"],', b"9" * 1000]
    data = b"\\n".join(lines) + b"\\n"
    offsets = np.concatenate([[0], np.cumsum([len(line) + 1 for line in lines])]).astype(np.int64)
    rows = np.arange(len(lines), dtype=np.int64)
    accepted = 0
    every = (1 << len(_framescan.KEYS)) - 1
    for levels in (False, True):
        for ints, decimals in ((0, 0), (every, 0), (0, every), (0x155555 & every, 0x2AAAAA & every)):
            took, combined, slots, sides = _framescan.scan(data, offsets, rows, levels, ints, decimals)
            accepted += sum(memoryview(took))
            for part in [*slots, *sides]:
                for block in part:
                    if block is not None:
                        bytes(block)
    kinds, may_connect = _framescan.classify(data, offsets)
    first = np.zeros(1, dtype=np.int64)
    for line in lines:  # each line alone in its own allocation: reading past its end is caught
        alone = np.frombuffer(line, dtype=np.uint8).copy()  # exactly its bytes: no terminating NUL
        bounds = np.array([0, len(line)], dtype=np.int64)
        ints, decimals = rng.choice(((0, 0), (every, 0), (0, every)))
        _framescan.scan(alone, bounds, first, rng.random() < 0.5, ints, decimals)
        _framescan.classify(alone, bounds)
    outside = np.array([len(lines) + 5], dtype=np.int64)
    for bad in ((data, offsets, outside), (data, offsets[:1], rows), (b"", offsets, rows)):
        try:
            _framescan.scan(*bad, False, 0, 0)
            raise SystemExit("a line outside the data was scanned")
        except ValueError:
            pass
    try:
        _framescan.classify(b"ab", np.array([0, 5], dtype=np.int64))
        raise SystemExit("a line outside the data was classified")
    except ValueError:
        pass
    assert 0 < accepted < 8 * len(lines), accepted
    print("scanned", len(lines), "lines, accepted", accepted)
    """
)


def _runtime(compiler: str, name: str) -> str | None:
    found = subprocess.run([compiler, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
    return found if Path(found).is_file() else None


@pytest.mark.parametrize("seed", [1, 2])
def test_the_scanner_stays_in_bounds_on_hostile_bytes(tmp_path, seed):
    compiler = shutil.which("gcc")
    if compiler is None:
        pytest.skip("no gcc: the scanner is not built on this machine either")
    runtimes = [_runtime(compiler, "libasan.so"), _runtime(compiler, "libubsan.so")]
    assert all(runtimes), f"gcc has no sanitizer runtimes: {runtimes}"
    module = tmp_path / f"_framescan{sysconfig.get_config_var('EXT_SUFFIX')}"
    flags = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
    includes = [f"-I{sysconfig.get_paths()['include']}"]
    subprocess.run([compiler, *flags, "-shared", "-fPIC", *includes, str(SOURCE), "-o", str(module)], check=True)
    environment = {
        "LD_PRELOAD": ":".join(runtimes),
        "PYTHONMALLOC": "malloc",  # every object in its own malloc block, which the sanitizer guards
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        "PYTHONPATH": str(SOURCE.parents[2]),
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-c", HARNESS, str(tmp_path), str(seed)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "scanned 50006 lines" in done.stdout
