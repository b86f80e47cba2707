"""Bugcheck (stop) codes: one normal form from both ways Windows writes them.

Kernel-Power 41 writes `BugcheckCode` in decimal ("395"); BugCheck 1001 writes
`param1` as "0x0000018b (0x..., 0x..., 0x..., 0x...)". Both become the integer
395 and are shown as `0x18B`.
"""

from __future__ import annotations

MAX_STOP_CODE = 0xFFFFFFFF

# The secure-kernel family seen in the spring-2025 loops (domain.md §1). Their
# parameters are reserved, so the code alone identifies them.
SECURE_KERNEL_FAMILY: frozenset[int] = frozenset({0x18B, 0x18D, 0x145})

NAMES: dict[int, str] = {
    0x18B: "SECURE_KERNEL_ERROR",
    0x18D: "SECURE_FAULT_UNHANDLED",
    0x145: "SECURE_BOOT_VIOLATION",
    0xEF: "CRITICAL_PROCESS_DIED",
    0x7E: "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED",
    0x50: "PAGE_FAULT_IN_NONPAGED_AREA",
    0x139: "KERNEL_SECURITY_CHECK_FAILURE",
    0x1E: "KMODE_EXCEPTION_NOT_HANDLED",
    0xD1: "DRIVER_IRQL_NOT_LESS_OR_EQUAL",
}


def from_decimal(text: str) -> int:
    """Kernel-Power 41's `BugcheckCode` ("395") -> 395; ValueError if not a code."""
    code = int(text.strip(), 10)
    return _checked(code)


def from_param1(text: str) -> int:
    """BugCheck 1001's `param1` ("0x0000018b (...)") -> 395; ValueError if not a code."""
    head = text.strip().split(" ", 1)[0].split("(", 1)[0]
    if not head.lower().startswith("0x"):
        raise ValueError("param1 does not start with a hex stop code")
    return _checked(int(head, 16))


def label(code: int) -> str:
    """395 -> `0x18B`; 0 (no code recorded) -> `unknown`."""
    return f"0x{code:X}" if code else "unknown"


def describe(code: int) -> str:
    """`0x18B SECURE_KERNEL_ERROR`, or just the hex form for codes without a name."""
    name = NAMES.get(code)
    return f"{label(code)} {name}" if name else label(code)


def _checked(code: int) -> int:
    if not 0 <= code <= MAX_STOP_CODE:
        raise ValueError("stop code outside 32 bits")
    return code
