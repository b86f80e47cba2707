import pytest

from streams.settings import Settings, SettingsError
from streams.timeutil import MINUTE_MS


def test_defaults_name_the_documented_topics():
    settings = Settings.from_env({})
    assert (settings.events_topic, settings.installs_topic, settings.alerts_topic, settings.dlq_topic) == (
        "winlogbeat",
        "update-installs",
        "kbwatch-alerts",
        "kbwatch-dlq",
    )


def test_environment_then_flags():
    environ = {"KBWATCH_BROKER": "kafka-1:9092,kafka-2:9092", "KBWATCH_WEB_PORT": "7000"}
    settings = Settings.from_env(environ, web_port=7100)
    assert settings.web_port == 7100
    assert settings.bootstrap_servers() == "kafka-1:9092,kafka-2:9092"
    assert Settings.from_env({"KBWATCH_BROKER": "kafka://k:9092"}).bootstrap_servers() == "k:9092"


def test_rule_thresholds_are_configurable():
    catalog = Settings.from_env({"KBWATCH_BOOT_LOOP_WINDOW_MINUTES": "30"}).catalog()
    assert catalog.boot_loop.window_ms == 30 * MINUTE_MS


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"KBWATCH_WEB_PORT": "http"}, "KBWATCH_WEB_PORT='http' is not a whole number"),
        ({"KBWATCH_PARTITIONS": "0"}, "KBWATCH_PARTITIONS must be at least 1"),
        ({"KBWATCH_STORE": "redis://x"}, "KBWATCH_STORE must be memory:// or rocksdb://"),
        ({"KBWATCH_ALERTS_TOPIC": "winlogbeat"}, "all different"),
        (
            {"KBWATCH_SIEVE_CLIENT": "kafka-python"},
            "KBWATCH_SIEVE_CLIENT must be one of aiokafka, librdkafka",
        ),
        ({"KBWATCH_EVENT_LOOP": "trio"}, "KBWATCH_EVENT_LOOP must be one of uvloop, asyncio"),
    ],
)
def test_bad_values_are_named(environ, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ)


def test_sasl_settings_map_to_every_client_and_the_secret_stays_out_of_sight(tmp_path):
    from streams.rdkafka import rdkafka_config
    from streams.security import aiokafka_options, faust_credentials

    secret = tmp_path / "password"
    secret.write_text("s3cret-from-file\n")
    for mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        settings = Settings.from_env(
            {
                "KBWATCH_SECURITY_PROTOCOL": "SASL_SSL",
                "KBWATCH_SASL_MECHANISM": mechanism,
                "KBWATCH_SASL_USERNAME": "kbwatch",
                "KBWATCH_SASL_PASSWORD_FILE": str(secret),
            }
        )
        options = aiokafka_options(settings)
        assert options["security_protocol"] == "SASL_SSL"
        assert options["sasl_mechanism"] == mechanism
        assert options["sasl_plain_username"] == "kbwatch"
        assert options["sasl_plain_password"] == "s3cret-from-file"
        assert options["ssl_context"] is not None
        credentials = faust_credentials(settings)
        assert credentials.mechanism.value == mechanism and credentials.protocol.value == "SASL_SSL"
        assert "s3cret" not in repr(credentials)
        librdkafka = rdkafka_config(settings, "group", "client")
        assert librdkafka["security.protocol"] == "SASL_SSL"
        assert librdkafka["sasl.mechanism"] == mechanism
        assert (librdkafka["sasl.username"], librdkafka["sasl.password"]) == ("kbwatch", "s3cret-from-file")
        assert librdkafka["ssl.ca.location"] == "probe"  # no CA file: the system's, as for aiokafka
    inline = Settings.from_env(
        {
            "KBWATCH_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KBWATCH_SASL_USERNAME": "kbwatch",
            "KBWATCH_SASL_PASSWORD": "inline-secret",
        }
    )
    assert "inline-secret" not in repr(inline)
    assert "ssl_context" not in aiokafka_options(inline)
    assert aiokafka_options(Settings()) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(Settings()) is None
    assert "sasl.password" not in rdkafka_config(Settings(), "group", "client")


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"KBWATCH_SECURITY_PROTOCOL": "TLS"}, "KBWATCH_SECURITY_PROTOCOL"),
        (
            {"KBWATCH_SECURITY_PROTOCOL": "SSL", "KBWATCH_SSL_CAFILE": "missing-ca.pem"},
            "KBWATCH_SSL_CAFILE",
        ),
        ({"KBWATCH_SECURITY_PROTOCOL": "SSL", "KBWATCH_SSL_CERTFILE": __file__}, "KBWATCH_SSL_KEYFILE"),
        ({"KBWATCH_SECURITY_PROTOCOL": "SASL_SSL", "KBWATCH_SASL_USERNAME": "u"}, "KBWATCH_SASL_PASSWORD"),
        (
            {"KBWATCH_SECURITY_PROTOCOL": "SASL_SSL", "KBWATCH_SASL_MECHANISM": "GSSAPI"},
            "KBWATCH_SASL_MECHANISM",
        ),
    ],
)
def test_unusable_security_settings_name_their_variable(environ, named):
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(environ)


def test_the_worker_runs_on_the_event_loop_named(monkeypatch):
    import asyncio
    import sys

    import uvloop

    from streams.cli import _event_loop

    for name, kind in (("uvloop", uvloop.Loop), ("asyncio", asyncio.BaseEventLoop)):
        loop = _event_loop(Settings.from_env({"KBWATCH_EVENT_LOOP": name}))
        try:
            assert isinstance(loop, kind)
            assert name == "asyncio" or not isinstance(loop, asyncio.BaseEventLoop)
        finally:
            loop.close()
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as where uvloop does not build
    with pytest.raises(SettingsError, match="set KBWATCH_EVENT_LOOP=asyncio"):
        _event_loop(Settings.from_env({}))
