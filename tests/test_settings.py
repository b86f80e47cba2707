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
    ],
)
def test_bad_values_are_named(environ, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ)
