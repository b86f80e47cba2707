"""A local Prometheus and Alertmanager with the configuration from deploy/, on loopback.

For `kbwatch demo` and the end-to-end tests: the deploy files as they are,
with only addresses, secret files and the grouping timers rewritten.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
READY_TIMEOUT_SECONDS = 30.0


def binaries() -> tuple[str, str] | None:
    """(prometheus, alertmanager) when both are installed and deploy/ is here."""
    prometheus = shutil.which("prometheus")
    alertmanager = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if prometheus is None or alertmanager is None or not DEPLOY.is_dir():
        return None
    return prometheus, alertmanager


def alertmanager_config(workdir: Path, receiver_url: str, fast: bool = True) -> Path:
    """deploy/alertmanager/alertmanager.yml with both receivers posting to `receiver_url`."""
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    config["templates"] = [str(DEPLOY / "alertmanager" / "templates" / "*.tmpl")]
    if fast:
        # Timers short enough to watch; grouping, routing and inhibition as deployed.
        config["route"].update(group_wait="10s", group_interval="10s", repeat_interval="1h")
    key = workdir / "pagerduty-routing-key"
    key.write_text("0123456789abcdef0123456789abcdef\n")
    for entry in config["receivers"]:
        for pager in entry.get("pagerduty_configs", []):
            pager["routing_key_file"] = str(key)
            pager["url"] = f"{receiver_url}/v2/enqueue"
        for hook in entry.get("webhook_configs", []):
            hook["url"] = f"{receiver_url}/alerts"
    path = workdir / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def prometheus_config(workdir: Path, worker_port: int, alertmanager_port: int) -> Path:
    """deploy/prometheus/prometheus.yml scraping one local worker every second."""
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(DEPLOY / "prometheus" / "rules" / "*.yml")]
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [
        f"127.0.0.1:{alertmanager_port}"
    ]
    config["scrape_configs"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{worker_port}"]
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_alertmanager(binary: str, config: Path, workdir: Path, port: int) -> subprocess.Popen[bytes]:
    command = [
        binary,
        f"--config.file={config}",
        f"--storage.path={workdir / 'alertmanager-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    return _start(command, workdir / "alertmanager.log", f"http://127.0.0.1:{port}/-/ready")


def start_prometheus(binary: str, config: Path, workdir: Path, port: int) -> subprocess.Popen[bytes]:
    command = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'prometheus-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    return _start(command, workdir / "prometheus.log", f"http://127.0.0.1:{port}/-/ready")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _start(command: list[str], log: Path, ready_url: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(ready_url, timeout=1):
                return process
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.2)
    stop(process)
    raise RuntimeError(f"{Path(command[0]).name} did not become ready; see {log}")


class Receiver(ThreadingHTTPServer):
    """A webhook and PagerDuty stand-in on loopback: keeps every JSON body posted, by path."""

    def __init__(self, on_post: Callable[[str, Any], None] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.bodies: list[tuple[str, Any]] = []
        self.lock = threading.Lock()
        self.on_post = on_post
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def posted(self, path: str) -> list[Any]:
        with self.lock:
            return [body for where, body in self.bodies if where == path]


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        except ValueError:
            self.send_response(400)
            self.end_headers()
            return
        with self.server.lock:
            self.server.bodies.append((self.path, body))
        if self.server.on_post is not None:
            self.server.on_post(self.path, body)
        self.send_response(202)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        """Quiet: the caller reports what matters."""
