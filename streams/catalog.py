"""The reviewed catalog: which records count, rule thresholds, known bad updates.

Everything a reviewer needs to check a verdict is here as data, not scattered
literals: event ids per role, windows and counts per rule, and the known-issue
entries the alert descriptions draw on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.signals import SignalKind
from streams.timeutil import HOUR_MS, MINUTE_MS

KERNEL_POWER = "Microsoft-Windows-Kernel-Power"
KERNEL_GENERAL = "Microsoft-Windows-Kernel-General"
WER_SYSTEM = "Microsoft-Windows-WER-SystemErrorReporting"
WINDOWS_UPDATE = "Microsoft-Windows-WindowsUpdateClient"
HELLO_FOR_BUSINESS = "Microsoft-Windows-HelloForBusiness"
BIOMETRICS = "Microsoft-Windows-Biometrics"
APPLICATION_ERROR = "Application Error"
USER32 = "User32"

# (provider, event id) -> what the record is for the rules. Provider names are
# compared exactly as the collector writes them (`winlog.provider_name`).
# EventLog 6008 (unexpected shutdown) is deliberately absent: every dirty boot
# also writes a Kernel-Power 41, and only the 41 tells a crash from a person
# holding the power button, so the 6008 adds nothing a verdict could use.
RELEVANT_EVENTS: dict[tuple[str, int], SignalKind] = {
    (KERNEL_POWER, 41): SignalKind.DIRTY_BOOT,  # or FORCED_OFF, decided by its fields
    (WER_SYSTEM, 1001): SignalKind.BUGCHECK,
    ("BugCheck", 1001): SignalKind.BUGCHECK,  # the event source name some exports use
    (KERNEL_GENERAL, 12): SignalKind.BOOT_START,
    (WINDOWS_UPDATE, 19): SignalKind.INSTALL,
    # Windows Hello (domain.md §3). Biometrics 1002 is a face or finger that did
    # not match: a person, not a breakage, so it is not listed.
    (HELLO_FOR_BUSINESS, 7002): SignalKind.HELLO_FAILURE,  # container failed to load ("PIN isn't available")
    (HELLO_FOR_BUSINESS, 6010): SignalKind.HELLO_FAILURE,  # key could not be used
    (HELLO_FOR_BUSINESS, 7520): SignalKind.HELLO_FAILURE,  # unlock attempt failed
    (HELLO_FOR_BUSINESS, 8002): SignalKind.HELLO_SUCCESS,  # container loaded
    (BIOMETRICS, 1000): SignalKind.HELLO_FAILURE,  # could not verify an identity
    (BIOMETRICS, 1003): SignalKind.HELLO_FAILURE,
    (BIOMETRICS, 1011): SignalKind.HELLO_FAILURE,
    (BIOMETRICS, 1109): SignalKind.HELLO_FAILURE,
    (BIOMETRICS, 1111): SignalKind.HELLO_FAILURE,
    (BIOMETRICS, 1600): SignalKind.HELLO_FAILURE,
    (BIOMETRICS, 1001): SignalKind.HELLO_SUCCESS,  # identity verified
    (APPLICATION_ERROR, 1000): SignalKind.APP_CRASH,
    (USER32, 1074): SignalKind.RESTART,  # or POWER_OFF, decided by `param5`
}

# User32 1074 `param5` (the kind of shutdown), as English Windows writes it.
# Other languages write it translated; those records are ignored, not guessed.
SHUTDOWN_KINDS: dict[str, SignalKind] = {
    "restart": SignalKind.RESTART,
    "power off": SignalKind.POWER_OFF,
    "shutdown": SignalKind.POWER_OFF,
}

# Updates that install several times a day and never touch the boot path:
# attributing a loop to them would hide the real culprit.
IGNORED_KBS: frozenset[str] = frozenset(
    {
        "KB2267602",  # Microsoft Defender Antivirus security intelligence
        "KB2461484",  # Microsoft Security Essentials definitions
        "KB4052623",  # Microsoft Defender Antivirus platform
        "KB915597",  # Windows Defender definitions
        "KB890830",  # Malicious Software Removal Tool
    }
)
IGNORED_TITLE_MARKERS: tuple[str, ...] = (
    "security intelligence update",
    "definition update",
)


# Where the runbooks live unless KBWATCH_RUNBOOK_BASE_URL says otherwise; each
# alert's `runbook_url` is this plus `#runbook-<alertname in lower case>`.
RUNBOOK_BASE_URL = "https://github.com/kbwatch/kbwatch/blob/main/README.md"


@dataclass(frozen=True, slots=True)
class BootLoopRule:
    """`PostUpdateBootLoop`: repeated crash boots soon after an update."""

    alertname: str = "PostUpdateBootLoop"
    severity: str = "critical"
    maturity: str = "stable"
    min_crash_boots: int = 3
    window_ms: int = 60 * MINUTE_MS  # all `min_crash_boots` within this span
    after_install_ms: int = 72 * HOUR_MS  # the first crash this soon after an install
    stable_ms: int = 6 * HOUR_MS  # crash-free device time that resolves the alert


@dataclass(frozen=True, slots=True)
class HelloRule:
    """`PostUpdateHelloFailure`: Windows Hello keeps failing after an update."""

    alertname: str = "PostUpdateHelloFailure"
    severity: str = "warning"
    maturity: str = "beta"
    min_failures: int = 3
    window_ms: int = 24 * HOUR_MS  # all `min_failures` within this span, no success between
    after_install_ms: int = 72 * HOUR_MS


@dataclass(frozen=True, slots=True)
class AppCrashRule:
    """`PostUpdateAppCrashLoop`: one application keeps crashing after an update."""

    alertname: str = "PostUpdateAppCrashLoop"
    severity: str = "warning"
    maturity: str = "beta"
    min_crashes: int = 5
    window_ms: int = 30 * MINUTE_MS
    after_install_ms: int = 72 * HOUR_MS
    stable_ms: int = 6 * HOUR_MS  # device time without a crash of that app that resolves it


@dataclass(frozen=True, slots=True)
class SilenceRule:
    """`DeviceSilentAfterUpdate`: a device restarted for an update and never came back."""

    alertname: str = "DeviceSilentAfterUpdate"
    severity: str = "critical"
    maturity: str = "beta"
    restart_within_ms: int = 24 * HOUR_MS  # the restart this soon after an install
    silence_ms: int = 60 * MINUTE_MS  # nothing from the device this long after it
    # The fleet clock trails the newest event time read by this much, so that a
    # device's records delivered a little late are not taken for silence.
    allowed_lateness_ms: int = 5 * MINUTE_MS


@dataclass(frozen=True, slots=True)
class RegressionRule:
    """`UpdateRegression`: the share of updated devices in trouble is too high to be luck."""

    alertname: str = "UpdateRegression"
    severity: str = "critical"
    maturity: str = "beta"
    affected_within_ms: int = 72 * HOUR_MS  # trouble this soon after the install counts
    min_affected: int = 5
    min_rate_ratio: float = 3.0  # the KB's rate over the baseline rate, at least
    # Anytime-valid false-alarm bound of the sequential test (Ville's inequality):
    # re-checking on every piece of evidence keeps P(false alarm) <= alpha.
    alpha: float = 0.001
    # Baseline before the fleet has shown its own: loops or silences per device
    # in 72 h without an update, and how many device-windows that guess weighs.
    prior_rate: float = 0.002
    prior_weight: float = 500.0
    # The alternative the test mixes over: Beta(1, mixture_b) puts its mass on
    # rates of a few percent, the size of the spring-2025 incident.
    mixture_b: float = 20.0
    max_tracked_kbs: int = 50  # KBs whose state is kept; the oldest go first
    metric_kbs: int = 10  # KBs exported as metric labels; the rest are `other`


@dataclass(frozen=True, slots=True)
class StateLimits:
    """Bounds on per-device state, in the device's own event time."""

    # Crash markers older than the device's newest event time minus this are
    # dropped, and records that old arrive too late to change a verdict. Long
    # enough for a Windows Update for Business install row (24-36 h late) to
    # still meet the crashes it explains.
    marker_retention_ms: int = 48 * HOUR_MS
    max_markers: int = 192  # boot records
    max_hello_markers: int = 64
    max_app_crashes: int = 128
    max_restarts: int = 16
    max_installs: int = 8
    # Two install records of one KB this close together are one install
    # (WindowsUpdateClient 19 and a native record of the same event).
    install_merge_ms: int = 24 * HOUR_MS
    install_retention_ms: int = 30 * 24 * HOUR_MS
    episode_retention_ms: int = 30 * 24 * HOUR_MS
    max_episodes: int = 16
    # An idle device whose event time is this far behind the fleet's is forgotten.
    idle_device_ttl_ms: int = 14 * 24 * HOUR_MS
    # Devices with state on one worker; a new device past it is refused (counted),
    # so an input flooded with invented device names cannot exhaust memory.
    max_devices: int = 2_000_000


@dataclass(frozen=True, slots=True)
class KnownIssue:
    """A published update regression the alert text can point at."""

    kb: str
    build: str
    symptom: str
    advice: str
    kir_policy: str = ""


@dataclass(frozen=True, slots=True)
class Catalog:
    """All rule settings in one reviewed object; `Settings` may override fields."""

    boot_loop: BootLoopRule = field(default_factory=BootLoopRule)
    hello: HelloRule = field(default_factory=HelloRule)
    app_crash: AppCrashRule = field(default_factory=AppCrashRule)
    silence: SilenceRule = field(default_factory=SilenceRule)
    regression: RegressionRule = field(default_factory=RegressionRule)
    limits: StateLimits = field(default_factory=StateLimits)
    runbook_base_url: str = RUNBOOK_BASE_URL

    def runbook_url(self, alertname: str) -> str:
        """The runbook section of one alert."""
        return f"{self.runbook_base_url}#runbook-{alertname.lower()}"

    def alert_rules(
        self,
    ) -> tuple[BootLoopRule | HelloRule | AppCrashRule | SilenceRule | RegressionRule, ...]:
        """Every alert rule, for metrics and documentation."""
        return (self.boot_loop, self.hello, self.app_crash, self.silence, self.regression)


KNOWN_ISSUES: dict[str, KnownIssue] = {
    issue.kb: issue
    for issue in (
        KnownIssue(
            kb="KB5053598",
            build="26100.3476",
            symptom="bugcheck 0x18B SECURE_KERNEL_ERROR boot loops on some devices",
            advice="Known Issue Rollback reaches unmanaged PCs within 24 h (restarts help); "
            "managed PCs need the KIR Group Policy.",
            kir_policy="KB5053598 Known Issue Rollback (Windows 11 24H2)",
        ),
        KnownIssue(
            kb="KB5053656",
            build="26100.3624",
            symptom="0x18B boot loops; Windows Hello PIN and face sign-in failures",
            advice="Deploy the KIR Group Policy (set to Disabled, then restart); pause the ring.",
            kir_policy="KB5053656 Known Issue Rollback (Windows 11 24H2)",
        ),
        KnownIssue(
            kb="KB5055523",
            build="26100.3775",
            symptom="worldwide 0x18B boot loops, Windows Hello failures, Arm64 app crashes",
            advice="Deploy the KIR Group Policy (set to Disabled, then restart); pause the ring; "
            "keep BitLocker recovery keys at hand for devices that cannot boot.",
            kir_policy="KB5055523 Known Issue Rollback (Windows 11 24H2)",
        ),
    )
}
