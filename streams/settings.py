"""The one frozen settings object, and the only code that reads the environment.

Every field has an environment variable (`KBWATCH_*`, listed in the README)
and the CLI flags override them. Rule thresholds live in the catalog; the few
that operators tune are exposed here and folded into a `Catalog`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from streams import codec
from streams.catalog import RUNBOOK_BASE_URL, BootLoopRule, Catalog
from streams.formats.detect import EVENT_FORMATS, INSTALL_FORMATS, Decoding, InputFormat
from streams.timeutil import HOUR_MS, MINUTE_MS

SIEVE_CLIENTS = ("aiokafka", "librdkafka")
EVENT_LOOPS = ("uvloop", "asyncio")


class SettingsError(ValueError):
    """An environment variable or flag has a value the product cannot use."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Runtime configuration; build with `Settings.from_env()`."""

    broker: str = "127.0.0.1:9092"
    events_topic: str = "winlogbeat"
    installs_topic: str = "update-installs"
    signals_topic: str = "kbwatch-signals"
    alerts_topic: str = "kbwatch-alerts"
    dlq_topic: str = "kbwatch-dlq"
    evidence_topic: str = "kbwatch-evidence"
    app_id: str = "kbwatch"
    partitions: int = 8
    replication_factor: int = 1
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    store: str = "memory://"
    data_dir: str = "kbwatch-data"
    max_message_bytes: int = 256 * 1024
    events_format: str = "auto"
    installs_format: str = "auto"
    nxlog_timezone: str = "UTC"
    wufb_device_map: str = ""  # path of a JSON file {"<AzureADDeviceId>": "<device key>"}
    alertmanager_url: str = ""  # comma-separated base URLs; empty: no delivery
    generator_url: str = "http://localhost:3000/d/kbwatch-fleet/kbwatch-fleet"
    session_timeout_seconds: float = 30.0
    rebalance_timeout_seconds: float = 30.0
    shutdown_grace_seconds: float = 20.0  # on SIGTERM, for the sieve's last batch
    # Faust's producer batch limit (its default). 1 sends each record in a batch of its
    # own: the embedded broker (Tansu) reports a partition's end offset per batch, and
    # a table restore that trusts a short end offset stops early.
    producer_max_batch_bytes: int = 16384
    # How long the broker may hold a fetch that finds nothing new (aiokafka's default).
    # Kafka answers as soon as records arrive; the embedded broker waits most of this
    # out every time, so each consumer hop adds up to it to alert latency there: 50.
    fetch_max_wait_ms: int = 500
    # The Kafka client of the sieve's consumer, which reads every record: aiokafka, or
    # librdkafka (confluent-kafka), which fetches and unpacks on threads of its own.
    sieve_client: str = "aiokafka"
    # The worker's event loop: uvloop (libuv) runs the callbacks, sockets and timers
    # that Faust, aiokafka and the sieve leave to it on less of the one Python thread
    # than asyncio's own loop; "asyncio" is there for a platform uvloop does not build on.
    event_loop: str = "uvloop"
    log_level: str = "info"
    boot_loop_min_crashes: int = 3
    boot_loop_window_minutes: int = 60
    boot_loop_after_install_hours: int = 72
    boot_loop_stable_hours: int = 6
    runbook_base_url: str = RUNBOOK_BASE_URL
    # Kafka security (streams/security.py); secrets never appear in repr, logs or metrics.
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    ssl_cafile: str = ""  # CA bundle that signed the brokers' certificates (empty: system CAs)
    ssl_certfile: str = ""  # client certificate (mutual TLS), with ssl_keyfile
    ssl_keyfile: str = ""
    sasl_mechanism: str = "PLAIN"  # PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    sasl_password_file: str = ""  # read at start-up instead of KBWATCH_SASL_PASSWORD

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then `KBWATCH_<FIELD>` variables, then explicit overrides."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in fields(cls):
            name = env_name(spec.name)
            if name in environ:
                values[spec.name] = _convert(name, environ[name], type(getattr(cls(), spec.name)))
        values.update({key: value for key, value in overrides.items() if value is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise `SettingsError` naming the first unusable value."""
        positive = (
            "partitions",
            "replication_factor",
            "max_message_bytes",
            "producer_max_batch_bytes",
            "fetch_max_wait_ms",
            "boot_loop_min_crashes",
            "boot_loop_window_minutes",
            "boot_loop_after_install_hours",
            "boot_loop_stable_hours",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise SettingsError(f"{env_name(name)} must be at least 1, not {getattr(self, name)}")
        if self.shutdown_grace_seconds <= 0:
            raise SettingsError(f"{env_name('shutdown_grace_seconds')} must be more than 0")
        if not 0 < self.web_port < 65536:
            raise SettingsError(f"{env_name('web_port')} must be a TCP port, not {self.web_port}")
        if self.sieve_client not in SIEVE_CLIENTS:
            raise SettingsError(f"{env_name('sieve_client')} must be one of {', '.join(SIEVE_CLIENTS)}")
        if self.event_loop not in EVENT_LOOPS:
            raise SettingsError(f"{env_name('event_loop')} must be one of {', '.join(EVENT_LOOPS)}")
        if not self.store.startswith(("memory://", "rocksdb://")):
            raise SettingsError(f"{env_name('store')} must be memory:// or rocksdb://, not {self.store!r}")
        topics = [
            self.events_topic,
            self.installs_topic,
            self.signals_topic,
            self.alerts_topic,
            self.dlq_topic,
        ]
        event_formats = {"auto", *(f.value for f in EVENT_FORMATS)}
        if self.events_format not in event_formats:
            raise SettingsError(f"KBWATCH_EVENTS_FORMAT must be one of {', '.join(sorted(event_formats))}")
        install_formats = {"auto", *(f.value for f in INSTALL_FORMATS)}
        if self.installs_format not in install_formats:
            raise SettingsError(
                f"KBWATCH_INSTALLS_FORMAT must be one of {', '.join(sorted(install_formats))}"
            )
        try:
            ZoneInfo(self.nxlog_timezone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise SettingsError(
                f"KBWATCH_NXLOG_TIMEZONE={self.nxlog_timezone!r} is not a time zone"
            ) from error
        _device_map(self.wufb_device_map)
        if len(set(topics)) != len(topics) or not all(topics):
            raise SettingsError("the five topic names must be set and all different")
        self._validate_security()

    def _validate_security(self) -> None:
        protocols = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
        if self.security_protocol not in protocols:
            raise SettingsError(f"{env_name('security_protocol')} must be one of {', '.join(protocols)}")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "sasl_password_file"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                raise SettingsError(f"{env_name(name)}={path!r}: no such file")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise SettingsError("KBWATCH_SSL_CERTFILE and KBWATCH_SSL_KEYFILE go together")
        if self.security_protocol.startswith("SASL"):
            mechanisms = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
            if self.sasl_mechanism not in mechanisms:
                raise SettingsError(f"{env_name('sasl_mechanism')} must be one of {', '.join(mechanisms)}")
            if not self.sasl_username or not (self.sasl_password or self.sasl_password_file):
                raise SettingsError(
                    "SASL needs KBWATCH_SASL_USERNAME and KBWATCH_SASL_PASSWORD or KBWATCH_SASL_PASSWORD_FILE"
                )

    def isolated(self, prefix: str) -> Settings:
        """A copy whose app id and six topics all start with `prefix`: for tests and benchmarks
        that share one broker and must not see each other's records."""
        return replace(
            self,
            app_id=f"kbwatch-{prefix}",
            events_topic=f"{prefix}-winlogbeat",
            installs_topic=f"{prefix}-update-installs",
            signals_topic=f"{prefix}-signals",
            alerts_topic=f"{prefix}-alerts",
            dlq_topic=f"{prefix}-dlq",
            evidence_topic=f"{prefix}-evidence",
        )

    def decoding(self) -> Decoding:
        """How the sieve reads the input topics."""
        return Decoding(
            events_format=InputFormat(self.events_format),
            installs_format=InputFormat(self.installs_format),
            nxlog_zone=ZoneInfo(self.nxlog_timezone),
            wufb_device_map=_device_map(self.wufb_device_map),
        )

    def catalog(self) -> Catalog:
        """The rule catalog with this configuration's overrides."""
        rule = replace(
            BootLoopRule(),
            min_crash_boots=self.boot_loop_min_crashes,
            window_ms=self.boot_loop_window_minutes * MINUTE_MS,
            after_install_ms=self.boot_loop_after_install_hours * HOUR_MS,
            stable_ms=self.boot_loop_stable_hours * HOUR_MS,
        )
        return Catalog(boot_loop=rule, runbook_base_url=self.runbook_base_url)

    def bootstrap_servers(self) -> str:
        """The broker list without any `kafka://` scheme, for aiokafka."""
        return ",".join(part.strip().removeprefix("kafka://") for part in self.broker.split(","))


def env_name(field_name: str) -> str:
    """`web_port` -> `KBWATCH_WEB_PORT`."""
    return f"KBWATCH_{field_name.upper()}"


def _convert(name: str, raw: str, kind: type) -> Any:
    try:
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError as error:
        expected = "a whole number" if kind is int else "a number"
        raise SettingsError(f"{name}={raw!r} is not {expected}") from error
    return raw


def _device_map(path: str) -> dict[str, str]:
    """The WUfB device map file, checked: a JSON object of strings."""
    if not path:
        return {}
    try:
        mapping = codec.loads(Path(path).read_bytes())
    except (OSError, codec.DecodeError) as error:
        raise SettingsError(f"KBWATCH_WUFB_DEVICE_MAP={path!r} cannot be read as JSON: {error}") from error
    if not isinstance(mapping, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in mapping.items()
    ):
        raise SettingsError("KBWATCH_WUFB_DEVICE_MAP must hold a JSON object of strings")
    return mapping
