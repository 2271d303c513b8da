"""The shipped nginx config puts HTTP basic auth in front of a Dagster webserver that only listens on loopback.

Real nginx (Debian package), real ``htpasswd``, real ``harvest dagster webserver``, all on 127.0.0.1. The config is
rendered with the sed line of docs/deployment.md. Missing nginx skips the test on a developer machine and fails it in
CI (``CI=true``), where .ci/run installs ``nginx`` and ``apache2-utils``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect

from harvest_pipeline.settings import SETTINGS_FILE_ENV
from harvest_pipeline.up import free_port
from tests.e2e.harness import wait_for
from tests.processes import stop_process, system_tool_missing

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "deploy" / "nginx" / "harvest-dagster.conf"
USER, PASSWORD = "operator", "correct horse"


def require(tool: str) -> str:
    found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/bin")
    if found is None:
        system_tool_missing(f"{tool} not installed (apt-get install -y nginx apache2-utils)")
    return found


def render(template: Path, target: Path, listen: str, upstream: str, htpasswd: Path) -> None:
    """The templating step of docs/deployment.md: one sed line."""
    values = {"listen": listen, "server_name": "localhost", "upstream": upstream, "htpasswd": htpasswd}
    expressions = [f"s|{{{{{name}}}}}|{value}|g" for name, value in values.items()]
    command = ["sed", *(arg for e in expressions for arg in ("-e", e)), str(template)]
    target.write_text(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def nginx_main_config(prefix: Path, server_block: Path) -> Path:
    """A minimal nginx.conf around the rendered server block, everything under ``prefix``."""
    temp = {name: prefix / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir()
    config = prefix / "nginx.conf"
    config.write_text(
        f"daemon off;\nuser root;\nworker_processes 1;\npid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} info;\nevents {{ worker_connections 64; }}\n"
        f"http {{\n  access_log {prefix / 'access.log'};\n"
        + "".join(f"  {name}_temp_path {path};\n" for name, path in temp.items())
        + f"  include {server_block};\n}}\n"
    )
    return config


def get(url: str, credentials: tuple[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if credentials is not None:
        request.add_header("Authorization", basic(*credentials))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def non_loopback_address() -> str:
    """This machine's address on its default route (what another host would connect to)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.254", 9))  # no packet is sent: this only picks the outgoing interface
        return probe.getsockname()[0]


def listening_addresses(port: int) -> set[str]:
    """IPv4 addresses with a listening TCP socket on ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


@pytest.fixture
def webserver(tmp_path: Path) -> Iterator[int]:
    """``harvest dagster webserver`` on a free loopback port, configured by a settings file; yields the port."""
    port = free_port()
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"data_root": str(tmp_path / "data"), "ui_port": port}))
    env = {**os.environ, "PYTHONPATH": str(REPO), SETTINGS_FILE_ENV: str(settings)}
    env.pop("DAGSTER_HOME", None)
    harvest = [sys.executable, "-m", "harvest_pipeline.cli", "dagster"]
    subprocess.run([*harvest, "init"], env=env, cwd=REPO, check=True, timeout=120, capture_output=True)
    log = tmp_path / "webserver.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([*harvest, "webserver"], env=env, cwd=REPO, stdout=output, stderr=output,
                                   start_new_session=True)  # fmt: skip
    try:
        wait_for("the Dagster webserver", lambda: get(f"http://127.0.0.1:{port}/server_info")[0] == 200, 120)
        yield port
    except BaseException:
        print(log.read_text(errors="replace")[-4000:])
        raise
    finally:
        stop_process(process)


def test_nginx_asks_for_credentials_and_proxies_the_loopback_only_dagster_ui(tmp_path: Path, webserver: int) -> None:
    nginx, htpasswd_tool = require("nginx"), require("htpasswd")
    htpasswd = tmp_path / "htpasswd"
    subprocess.run([htpasswd_tool, "-B", "-b", "-c", str(htpasswd), USER, PASSWORD], check=True, capture_output=True)
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    proxy_port = free_port()
    server_block = prefix / "harvest-dagster.conf"
    render(TEMPLATE, server_block, f"127.0.0.1:{proxy_port}", f"127.0.0.1:{webserver}", htpasswd)
    assert "{{" not in server_block.read_text()
    config = nginx_main_config(prefix, server_block)
    checked = subprocess.run([nginx, "-t", "-p", str(prefix), "-c", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(config)], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        proxy = f"http://127.0.0.1:{proxy_port}"
        wait_for("nginx", lambda: get(f"{proxy}/server_info")[0] in (401, 200), 30, interval_s=0.2)
        assert get(f"{proxy}/server_info")[0] == 401
        assert get(f"{proxy}/server_info", (USER, "wrong"))[0] == 401
        assert get(f"{proxy}/server_info", ("intruder", PASSWORD))[0] == 401
        status, body = get(f"{proxy}/server_info", (USER, PASSWORD))
        assert status == 200 and "dagster_webserver_version" in json.loads(body)
        assert get(f"{proxy}/", (USER, PASSWORD))[0] == 200
        with connect(f"ws://127.0.0.1:{proxy_port}/graphql", subprotocols=["graphql-ws"],  # type: ignore[list-item]
                     additional_headers={"Authorization": basic(USER, PASSWORD)}, open_timeout=10) as ws:  # fmt: skip
            assert ws.subprotocol == "graphql-ws"  # the websocket upgrade went through the proxy
    finally:
        process.send_signal(signal.SIGQUIT)
        process.wait(30)
    assert listening_addresses(webserver) == {"127.0.0.1"}
    address = non_loopback_address()
    assert not address.startswith("127."), "no non-loopback address to try"
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.settimeout(5)
        sock.connect((address, webserver))
