"""`kbwatch validate`: what a producer is told of each record, through the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from streams import codec, documents
from streams.collectors import render
from streams.formats.detect import InputFormat
from tests.builders import HOST, T0


def validate(*arguments: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "validate", *arguments], input=stdin, capture_output=True
    )


def test_each_line_gets_a_verdict_and_a_rejection_fails_the_check(tmp_path: Path):
    crash = documents.kernel_power_41(HOST, T0, 1, 0x18B)
    noise = documents.security_4624(HOST, T0, 2, "alice")
    lines = [codec.dumps(crash), codec.dumps(noise), b"not json at all"]
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    completed = validate("--json", str(path))
    assert completed.returncode == 1
    verdicts = [codec.loads(line) for line in completed.stdout.splitlines()]
    assert [(v["where"], v["outcome"], v["format"]) for v in verdicts] == [
        (f"{path}:1", "accepted", "winlogbeat"),
        (f"{path}:2", "irrelevant", "winlogbeat"),
        (f"{path}:3", "rejected", "unknown"),
    ]
    assert verdicts[0]["as"] == "dirty" and verdicts[0]["device"] == HOST.host_id
    assert verdicts[2]["reason"] == "not_json"
    assert b"1 accepted, 1 irrelevant, 1 rejected" in completed.stderr


def test_otlp_protobuf_files_are_one_message_each(tmp_path: Path):
    crash = documents.kernel_power_41(HOST, T0, 1, 0x18B)
    noise = documents.security_4624(HOST, T0, 2, "alice")
    paths = []
    for name, document in (("crash", crash), ("noise", noise)):
        path = tmp_path / f"{name}.binpb"
        path.write_bytes(render(document, InputFormat.OTLP_PROTO))
        paths.append(str(path))
    completed = validate("--json", "--events-format", "otlp_proto", *paths)
    assert completed.returncode == 0, completed.stderr
    verdicts = [codec.loads(line) for line in completed.stdout.splitlines()]
    assert [(v["where"], v["outcome"], v["format"]) for v in verdicts] == [
        (paths[0], "accepted", "otlp_proto"),
        (paths[1], "irrelevant", "otlp_proto"),
    ]
    piped = validate("--events-format", "otlp_proto", "-", stdin=Path(paths[0]).read_bytes())
    assert piped.returncode == 0 and b"accepted (otlp_proto) as dirty" in piped.stdout
