import pytest

from streams.installs import normalise_install
from streams.outcomes import Ignored, Rejected, RejectReason
from streams.signals import Signal, SignalKind
from tests.builders import DEVICE, T0

NOW = T0 + 10**9
GOOD = {
    "device": DEVICE,
    "kb": "KB5055523",
    "installed_at": "2025-04-08T14:00:00Z",
    "build": "10.0.26100.3775",
    "arch": "arm64",
    "source": "intune",
}


def test_a_native_install_record_becomes_an_install_signal():
    signal = normalise_install(GOOD, NOW)
    assert isinstance(signal, Signal)
    assert (signal.kind, signal.kb, signal.time_ms, signal.build) == (
        SignalKind.INSTALL,
        "KB5055523",
        T0,
        "26100.3775",
    )
    assert signal.source == "intune"


def test_optional_fields_may_be_left_out():
    signal = normalise_install({key: GOOD[key] for key in ("device", "kb", "installed_at")}, NOW)
    assert isinstance(signal, Signal) and signal.source == "native"


def test_definition_updates_are_ignored():
    assert isinstance(normalise_install({**GOOD, "kb": "KB2267602"}, NOW), Ignored)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"device": ""}, RejectReason.MISSING_FIELD),
        ({"device": 42}, RejectReason.MISSING_FIELD),
        ({"device": "pc\n1"}, RejectReason.BAD_DEVICE),
        ({"kb": "5055523x"}, RejectReason.BAD_VALUE),
        ({"kb": None}, RejectReason.BAD_VALUE),
        ({"installed_at": "08/04/2025"}, RejectReason.BAD_TIMESTAMP),
        ({"installed_at": 1744120800}, RejectReason.BAD_TIMESTAMP),
        ({"build": "new"}, RejectReason.BAD_VALUE),
        ({"build": 26100}, RejectReason.BAD_VALUE),
        ({"arch": ["arm64"]}, RejectReason.BAD_VALUE),
    ],
)
def test_bad_install_records_are_rejected(change, reason):
    outcome = normalise_install({**GOOD, **change}, NOW)
    assert isinstance(outcome, Rejected)
    assert outcome.reason is reason
