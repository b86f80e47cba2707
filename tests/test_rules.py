"""Hello breakage, app crash loops and silence, edge by edge, through the detector."""

from __future__ import annotations

from typing import Any

from streams import codec, documents
from streams.catalog import Catalog
from streams.engine import Engine
from streams.metrics import Metrics
from streams.signals import Signal, SignalKind
from streams.timeutil import HOUR_MS
from streams.winlogbeat import normalise
from tests.builders import (
    DEVICE,
    HOST,
    T0,
    app_crash,
    hello,
    install,
    minutes,
    restart,
    run,
    seen,
)

NOW = T0 + 10**9


def statuses(alerts, alertname):
    return [alert["status"] for alert in alerts if alert["labels"]["alertname"] == alertname]


# Windows Hello


def test_three_hello_failures_within_a_day_fire_a_warning():
    _, alerts = run(
        [install(T0), hello(T0 + HOUR_MS, 1), hello(T0 + 5 * HOUR_MS, 2), hello(T0 + 20 * HOUR_MS, 3)]
    )
    assert statuses(alerts, "PostUpdateHelloFailure") == ["firing"]
    alert = alerts[0]
    assert alert["labels"]["severity"] == "warning"
    assert alert["labels"]["kb"] == "KB5055523"
    assert "stop_code" not in alert["labels"]
    assert alert["startsAt"] == "2025-04-09T10:00:00.000Z"


def test_two_hello_failures_are_one_short():
    assert run([install(T0), hello(T0 + HOUR_MS, 1), hello(T0 + 2 * HOUR_MS, 2)])[1] == []


def test_a_success_between_failures_starts_the_count_again():
    signals = [
        install(T0),
        hello(T0 + HOUR_MS, 1),
        hello(T0 + 2 * HOUR_MS, 2),
        hello(T0 + 3 * HOUR_MS, 3, ok=True),
    ]
    signals += [hello(T0 + 4 * HOUR_MS, 4), hello(T0 + 5 * HOUR_MS, 5)]
    assert run(signals)[1] == []


def test_failures_spread_over_more_than_a_day_do_not_fire():
    assert (
        run([install(T0), hello(T0 + HOUR_MS, 1), hello(T0 + 13 * HOUR_MS, 2), hello(T0 + 26 * HOUR_MS, 3)])[
            1
        ]
        == []
    )


def test_hello_resolves_on_a_success():
    signals = [
        install(T0),
        *(hello(T0 + (i + 1) * HOUR_MS, i) for i in range(4)),
        hello(T0 + 9 * HOUR_MS, 9, ok=True),
    ]
    _, alerts = run(signals)
    assert statuses(alerts, "PostUpdateHelloFailure") == ["firing", "resolved"]
    assert alerts[1]["endsAt"] == "2025-04-08T23:00:00.000Z"


def test_biometrics_1002_is_a_face_that_did_not_match_not_a_breakage():
    for event_id in (1002,):
        assert not isinstance(normalise(documents.hello_event(HOST, T0, 1, event_id), NOW), Signal)
    signal = normalise(documents.hello_event(HOST, T0, 1, 1003, error="0x80098010"), NOW)
    assert isinstance(signal, Signal) and signal.kind is SignalKind.HELLO_FAILURE
    success = normalise(documents.hello_event(HOST, T0, 1, 1001), NOW)
    assert isinstance(success, Signal) and success.kind is SignalKind.HELLO_SUCCESS


# Application crash loops


def test_five_crashes_of_one_app_within_30_minutes_fire_with_the_app_label():
    _, alerts = run([install(T0), *(app_crash(T0 + minutes(10 + 5 * i), i) for i in range(5))])
    assert statuses(alerts, "PostUpdateAppCrashLoop") == ["firing"]
    assert alerts[0]["labels"]["app"] == "robloxplayerbeta.exe"
    assert alerts[0]["labels"]["severity"] == "warning"


def test_four_crashes_are_one_short_and_other_apps_do_not_add_up():
    signals = [install(T0), *(app_crash(T0 + minutes(10 + 2 * i), i) for i in range(4))]
    signals.append(app_crash(T0 + minutes(20), 99, app="excel.exe"))
    assert run(signals)[1] == []


def test_two_apps_looping_are_two_alerts():
    signals = [install(T0)]
    # Distinct record ids per app: the same id twice is one record re-read, and is dropped.
    for first_record, app in ((100, "teams.exe"), (200, "robloxplayerbeta.exe")):
        signals += [app_crash(T0 + minutes(10 + i), first_record + i, app=app) for i in range(5)]
    _, alerts = run(signals)
    assert sorted(alert["labels"]["app"] for alert in alerts) == ["robloxplayerbeta.exe", "teams.exe"]
    assert len({alert["fingerprint"] for alert in alerts}) == 2


def test_app_name_is_the_lower_cased_executable():
    document = documents.application_1000(HOST, T0, 1, "C:\\\\Games\\\\RobloxPlayerBeta.EXE")
    signal = normalise(document, NOW)
    assert isinstance(signal, Signal) and signal.app == "robloxplayerbeta.exe"


def test_app_crash_loop_resolves_after_six_quiet_hours():
    signals = [install(T0), *(app_crash(T0 + minutes(10 + i), i) for i in range(5)), seen(T0 + 7 * HOUR_MS)]
    assert statuses(run(signals)[1], "PostUpdateAppCrashLoop") == ["firing", "resolved"]


# Silence after an update restart


def silence_engine() -> Engine:
    return Engine({}, Catalog(), Metrics.create())


def feed(engine: Engine, signals: list[Signal]) -> list[dict[str, Any]]:
    alerts = []
    for signal in signals:
        output = engine.tick(signal.time_ms) if signal.kind is SignalKind.TICK else engine.process(signal)
        alerts += [alert.to_json() for alert in output.alerts]
    return alerts


def tick_signal(at: int) -> Signal:
    return Signal("", SignalKind.TICK, at)


def test_a_device_silent_for_an_hour_after_its_update_restart_fires_at_restart_plus_60_min():
    engine = silence_engine()
    alerts = feed(engine, [install(T0), restart(T0 + minutes(10), 1), tick_signal(T0 + minutes(69))])
    assert alerts == []
    alerts = feed(engine, [tick_signal(T0 + minutes(71))])
    assert [(a["labels"]["alertname"], a["status"]) for a in alerts] == [
        ("DeviceSilentAfterUpdate", "firing")
    ]
    assert alerts[0]["startsAt"] == "2025-04-08T15:10:00.000Z"
    assert alerts[0]["labels"]["severity"] == "critical"
    assert engine.watches == {}


def test_silence_resolves_when_the_device_speaks_again():
    engine = silence_engine()
    feed(engine, [install(T0), restart(T0 + minutes(10), 1), tick_signal(T0 + 2 * HOUR_MS)])
    alerts = feed(engine, [seen(T0 + 3 * HOUR_MS)])
    assert [a["status"] for a in alerts] == ["resolved"]
    assert alerts[0]["endsAt"] == "2025-04-08T17:00:00.000Z"


def test_a_device_that_comes_back_in_time_is_not_silent():
    engine = silence_engine()
    boot = Signal(DEVICE, SignalKind.BOOT_START, T0 + minutes(11), record_key="System/2")
    assert (
        feed(engine, [install(T0), restart(T0 + minutes(10), 1), boot, tick_signal(T0 + 5 * HOUR_MS)]) == []
    )


def test_a_device_that_powers_off_is_not_silent():
    engine = silence_engine()
    signals = [
        install(T0),
        restart(T0 + minutes(10), 1, kind=SignalKind.POWER_OFF),
        tick_signal(T0 + 5 * HOUR_MS),
    ]
    assert feed(engine, signals) == []


def test_a_quiet_fleet_fires_nothing_because_its_clock_does_not_move():
    engine = silence_engine()
    assert feed(engine, [install(T0), restart(T0 + minutes(10), 1), tick_signal(T0 + minutes(30))]) == []
    assert engine.watches  # still waiting for the fleet's clock


def test_a_restart_long_after_the_install_is_not_watched():
    engine = silence_engine()
    assert feed(engine, [install(T0), restart(T0 + 25 * HOUR_MS, 1), tick_signal(T0 + 30 * HOUR_MS)]) == []


def test_shutdown_records_of_the_restart_itself_do_not_count_as_coming_back():
    engine = silence_engine()
    stop_record = seen(T0 + minutes(10) + 30_000)
    alerts = feed(
        engine, [install(T0), restart(T0 + minutes(10), 1), stop_record, tick_signal(T0 + 2 * HOUR_MS)]
    )
    assert [a["status"] for a in alerts] == ["firing"]


def test_user32_1074_is_read_as_restart_or_power_off():
    restart_signal = normalise(documents.user32_1074(HOST, T0, 1, "restart"), NOW)
    off_signal = normalise(documents.user32_1074(HOST, T0, 2, "power off"), NOW)
    assert isinstance(restart_signal, Signal) and restart_signal.kind is SignalKind.RESTART
    assert isinstance(off_signal, Signal) and off_signal.kind is SignalKind.POWER_OFF
    localised = documents.user32_1074(HOST, T0, 3, "Neustart")
    assert not isinstance(normalise(localised, NOW), Signal)


def test_replay_ending_during_a_silence_is_not_silence():
    from streams.replay import replay
    from streams.sieve import Sieve

    other = documents.Host(host_id="0d6f1c1e-0000-4000-8000-000000000009", name="PC-OTHER")
    lines = [
        documents.update_installed_19(HOST, T0, 1, "KB5055523"),
        documents.user32_1074(HOST, T0 + minutes(10), 2, "restart"),
    ]
    # The rest of the fleet reports for 50 more minutes, then the file ends.
    lines += [documents.security_4624(other, T0 + minutes(10 + m), 100 + m, "bob") for m in range(0, 50, 5)]
    summary = replay(
        ((str(i), codec.dumps(doc)) for i, doc in enumerate(lines)), catalog=Catalog(), sieve=Sieve(1 << 20)
    )
    assert summary.alerts == []
