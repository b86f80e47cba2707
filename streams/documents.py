"""Realistic Winlogbeat 8.x documents, as Winlogbeat's Kafka output sends them.

The fleet simulator builds its stream from these, and the tests build their
cases from them, so both speak the exact shape the product must accept:
string event ids, string `event_data` values, `host.id`, upper-case FQDNs in
`winlog.computer_name`, and the run-time fields a real message carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.timeutil import to_rfc3339

AGENT_VERSION = "8.15.3"


@dataclass(frozen=True, slots=True)
class Host:
    """The device a document comes from."""

    host_id: str
    name: str
    domain: str = "corp.example"
    arch: str = "x86_64"
    build: str = "26100.3476"

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.domain}".upper()


def winlogbeat(
    host: Host,
    time_ms: int,
    *,
    channel: str,
    provider: str,
    event_id: int,
    record_id: int,
    event_data: dict[str, str] | None = None,
    message: str = "",
    level: str = "information",
    legacy: bool = False,
) -> dict[str, Any]:
    """One Winlogbeat document. `legacy=True` writes 7.x numeric event ids."""
    event_code: int | str = event_id if legacy else str(event_id)
    winlog: dict[str, Any] = {
        "channel": channel,
        "computer_name": host.fqdn,
        "event_id": event_code,
        "provider_name": provider,
        "record_id": record_id,
        "api": "wineventlog",
        "process": {"pid": 4, "thread": {"id": 120}},
        "opcode": "Info",
    }
    if event_data:
        winlog["event_data"] = {key: value for key, value in event_data.items() if value != ""}
    return {
        "@timestamp": to_rfc3339(time_ms),
        "@metadata": {"beat": "winlogbeat", "type": "_doc", "version": AGENT_VERSION},
        "agent": {
            "type": "winlogbeat",
            "version": AGENT_VERSION,
            "name": host.name,
            "id": f"a9{host.host_id[2:]}",
            "ephemeral_id": f"e1{host.host_id[2:]}",
        },
        "ecs": {"version": "8.0.0"},
        "event": {
            "code": event_code,
            "kind": "event",
            "provider": provider,
            "created": to_rfc3339(time_ms + 850),
        },
        "host": {
            "name": host.name,
            "hostname": host.name,
            "id": host.host_id,
            "architecture": host.arch,
            "os": {
                "build": host.build,
                "family": "windows",
                "kernel": f"10.0.{host.build} (WinBuild.160101.0800)",
                "name": "Windows 11 Enterprise",
                "platform": "windows",
                "type": "windows",
                "version": "10.0",
            },
        },
        "log": {"level": level},
        "message": message,
        "winlog": winlog,
    }


def kernel_power_41(
    host: Host, time_ms: int, record_id: int, stop_code: int = 0x18B, *, power_button: bool = False
) -> dict[str, Any]:
    """The dirty-reboot record written during the boot after a crash (or a held button)."""
    return winlogbeat(
        host,
        time_ms,
        channel="System",
        provider="Microsoft-Windows-Kernel-Power",
        event_id=41,
        record_id=record_id,
        level="critical",
        event_data={
            "BugcheckCode": str(stop_code),
            "BugcheckParameter1": "0x0" if not stop_code else "0x1",
            "BugcheckParameter2": "0x0",
            "BugcheckParameter3": "0x0",
            "BugcheckParameter4": "0x0",
            "SleepInProgress": "0",
            "PowerButtonTimestamp": "133877404119832384" if power_button else "0",
            "BootAppStatus": "0",
            "Checkpoint": "0",
            "ConnectedStandbyInProgress": "false",
            "SystemSleepTransitionsToOn": "0",
            "CsEntryScenarioInstanceId": "0",
            "BugcheckInfoFromEFI": "true" if stop_code else "false",
            "CheckpointStatus": "0",
            "CsEntryScenarioInstanceIdV2": "0",
            "LongPowerButtonPressDetected": "true" if power_button else "false",
        },
        message="The system has rebooted without cleanly shutting down first. This error could be "
        "caused if the system stopped responding, crashed, or lost power unexpectedly.",
    )


def bugcheck_1001(host: Host, time_ms: int, record_id: int, stop_code: int = 0x18B) -> dict[str, Any]:
    """WER's summary of the dump, written once the boot after the crash processes it."""
    param1 = f"0x{stop_code:08x} (0x0000000000000000, 0x0000000000000000, 0x0000000000000000, 0x0)"
    return winlogbeat(
        host,
        time_ms,
        channel="System",
        provider="Microsoft-Windows-WER-SystemErrorReporting",
        event_id=1001,
        record_id=record_id,
        level="error",
        event_data={
            "param1": param1,
            "param2": "C:\\WINDOWS\\MEMORY.DMP",
            "param3": "7b2f0e3c-1d2a-4a6b-9e11-3f1c2b7d8a90",
        },
        message=f"The computer has rebooted from a bugcheck.  The bugcheck was: {param1}.",
    )


def eventlog_6008(host: Host, time_ms: int, record_id: int) -> dict[str, Any]:
    """The unexpected-shutdown record: localised times in `param1`/`param2`."""
    return winlogbeat(
        host,
        time_ms,
        channel="System",
        provider="EventLog",
        event_id=6008,
        record_id=record_id,
        level="error",
        event_data={"param1": "09:41:03", "param2": "4/9/2025", "param3": "", "param4": "2"},
        message="The previous system shutdown was unexpected.",
    )


def kernel_general_12(host: Host, time_ms: int, record_id: int) -> dict[str, Any]:
    """OS start: one per boot, carrying the build actually running."""
    major, _, revision = host.build.partition(".")
    return winlogbeat(
        host,
        time_ms,
        channel="System",
        provider="Microsoft-Windows-Kernel-General",
        event_id=12,
        record_id=record_id,
        event_data={
            "MajorVersion": "10",
            "MinorVersion": "0",
            "BuildVersion": major,
            "QfeVersion": revision,
            "ServiceVersion": "0",
            "BootMode": "0",
            "StartTime": to_rfc3339(time_ms - 2000),
        },
        message="The operating system started at system time.",
    )


def update_installed_19(
    host: Host, time_ms: int, record_id: int, kb: str, title: str = "", build: str = ""
) -> dict[str, Any]:
    """WindowsUpdateClient 19: an update installed successfully (System channel)."""
    platform = "arm64" if host.arch == "arm64" else "x64"
    update_title = title or (
        f"Cumulative Update for Windows 11 Version 24H2 for {platform}-based Systems ({kb}) "
        f"({build or host.build})"
    )
    return winlogbeat(
        host,
        time_ms,
        channel="System",
        provider="Microsoft-Windows-WindowsUpdateClient",
        event_id=19,
        record_id=record_id,
        event_data={
            "updateTitle": update_title,
            "updateGuid": "{3c7bd0a2-6f1e-4b0c-9d53-1a2b3c4d5e6f}",
            "updateRevisionNumber": "1",
            "serviceGuid": "{7971f918-a847-4430-9279-4a52d1efe18d}",
        },
        message=f"Installation Successful: Windows successfully installed the following update: "
        f"{update_title}",
    )


def service_control_7036(
    host: Host, time_ms: int, record_id: int, service: str, state: str
) -> dict[str, Any]:
    """Everyday noise: a service changed state."""
    return winlogbeat(
        host,
        time_ms,
        channel="System",
        provider="Service Control Manager",
        event_id=7036,
        record_id=record_id,
        event_data={"param1": service, "param2": state},
        message=f"The {service} service entered the {state} state.",
    )


def security_4624(host: Host, time_ms: int, record_id: int, user: str) -> dict[str, Any]:
    """Everyday noise: a logon on the Security channel."""
    return winlogbeat(
        host,
        time_ms,
        channel="Security",
        provider="Microsoft-Windows-Security-Auditing",
        event_id=4624,
        record_id=record_id,
        event_data={
            "SubjectUserSid": "S-1-5-18",
            "SubjectUserName": f"{host.name}$",
            "TargetUserName": user,
            "TargetDomainName": "CORP",
            "LogonType": "2",
            "LogonProcessName": "User32 ",
            "AuthenticationPackageName": "Negotiate",
            "WorkstationName": host.name,
            "IpAddress": "127.0.0.1",
        },
        message="An account was successfully logged on.",
    )


def application_1000(host: Host, time_ms: int, record_id: int, app: str) -> dict[str, Any]:
    """An application crash record (Application Error 1000)."""
    return winlogbeat(
        host,
        time_ms,
        channel="Application",
        provider="Application Error",
        event_id=1000,
        record_id=record_id,
        level="error",
        event_data={
            "AppName": app,
            "AppVersion": "10.0.26100.3775",
            "AppTimeStamp": "6b2a1c3d",
            "ModuleName": "ntdll.dll",
            "ModuleVersion": "10.0.26100.3775",
            "ExceptionCode": "c0000005",
            "FaultingOffset": "000000000002a1b4",
            "ProcessId": "0x1a2c",
            "ProcessCreationTime": "0x1dba9c3e7f2a1b0",
            "AppPath": f"C:\\Program Files\\Vendor\\{app}",
            "ModulePath": "C:\\WINDOWS\\SYSTEM32\\ntdll.dll",
        },
        message=f"Faulting application name: {app}",
    )


_HELLO_FOR_BUSINESS_IDS = frozenset({5001, 6010, 7002, 7520, 8002})


def hello_event(host: Host, time_ms: int, record_id: int, event_id: int, error: str = "") -> dict[str, Any]:
    """A Windows Hello record: HelloForBusiness or Biometrics, by event id (domain.md §3)."""
    if event_id in _HELLO_FOR_BUSINESS_IDS:
        provider, channel = (
            "Microsoft-Windows-HelloForBusiness",
            "Microsoft-Windows-HelloForBusiness/Operational",
        )
        data = {"ContainerId": "{6f3c1c2e-7a55-4c8e-9a1b-2b4d8e9f0a11}", "Error": error or "0x0"}
    else:
        provider, channel = "Microsoft-Windows-Biometrics", "Microsoft-Windows-Biometrics/Operational"
        data = {"ErrorCode": error or "0x0", "UnitId": "1"}
    return winlogbeat(
        host,
        time_ms,
        channel=channel,
        provider=provider,
        event_id=event_id,
        record_id=record_id,
        level="error" if error else "information",
        event_data=data,
    )


def user32_1074(host: Host, time_ms: int, record_id: int, kind: str = "restart") -> dict[str, Any]:
    """A planned restart or power off, here by the servicing stack after an update."""
    process = "C:\\Windows\\servicing\\TrustedInstaller.exe (PC)"
    return winlogbeat(
        host,
        time_ms,
        channel="System",
        provider="User32",
        event_id=1074,
        record_id=record_id,
        event_data={
            "param1": process,
            "param2": host.name,
            "param3": "Operating System: Upgrade (Planned)",
            "param4": "0x80020003",
            "param5": kind,
            "param6": "",
            "param7": "NT AUTHORITY\\SYSTEM",
        },
        message=f"The process {process} has initiated the {kind} of computer {host.name}.",
    )


def kernel_general_13(host: Host, time_ms: int, record_id: int) -> dict[str, Any]:
    """OS stop (clean)."""
    return winlogbeat(
        host,
        time_ms,
        channel="System",
        provider="Microsoft-Windows-Kernel-General",
        event_id=13,
        record_id=record_id,
        event_data={"StopTime": to_rfc3339(time_ms)},
        message="The operating system is shutting down at system time.",
    )
