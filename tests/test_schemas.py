"""Published schemas: examples validate, and so does what the product really emits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from streams import codec, documents
from streams.evidence import Evidence, EvidenceKind
from streams.sieve import Sieve, Sifted, Source
from streams.signals import Signal, SignalKind, seen_many
from streams.watermarks import Coverage
from tests.builders import HOST, T0, crash_boot_signals

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
EXAMPLES = sorted((SCHEMAS / "examples").glob("*.json"))
NOW = T0 + 10**9


def schema(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(document)
    return document


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_every_example_validates_against_its_schema(example: Path):
    jsonschema.validate(json.loads(example.read_text()), schema(example.name.split(".")[0]))


def test_every_schema_has_an_example():
    names = {path.name.removesuffix(".schema.json") for path in SCHEMAS.glob("*.schema.json")}
    assert names == {path.name.split(".")[0] for path in EXAMPLES}


def test_every_input_example_is_accepted_as_its_format():
    sieve = Sieve(1 << 20, clock=lambda: NOW)
    inputs = {
        "winlogbeat-event": (Source.WINLOGBEAT, "winlogbeat"),
        "otel-raw": (Source.WINLOGBEAT, "otel_raw"),
        "otlp-json": (Source.WINLOGBEAT, "otlp_json"),
        "otlp-proto": (Source.WINLOGBEAT, "otlp_proto"),
        "nxlog": (Source.WINLOGBEAT, "nxlog"),
        "fluentbit": (Source.WINLOGBEAT, "fluentbit"),
        "windows-event": (Source.WINLOGBEAT, "xml"),
        "update-install": (Source.INSTALLS, "native"),
        "wufb-row": (Source.INSTALLS, "wufb"),
    }
    for example in sorted((SCHEMAS / "examples").iterdir()):
        kind = example.name.split(".")[0]
        if kind not in inputs:
            continue
        source, form = inputs[kind]
        results = sieve.sift(source, example.read_bytes())
        assert [(r.sifted, r.input_format) for r in results] == [(Sifted.RELEVANT, form)], example.name


def test_the_otlp_protobuf_example_is_the_otlp_json_example_in_protobuf():
    """OTLP protobuf has no JSON Schema (its schema is OTLP's `logs.proto`): its example
    is the OTLP JSON example, encoded."""
    from streams.formats.otlp_proto import otlp_proto_payload

    examples = SCHEMAS / "examples"
    document = json.loads((examples / "otlp-json.kernel-power-41.json").read_text())
    assert (examples / "otlp-proto.kernel-power-41.binpb").read_bytes() == otlp_proto_payload(document)


def test_the_documents_the_simulator_writes_match_the_input_schema():
    input_schema = schema("winlogbeat-event")
    for document in (
        documents.kernel_power_41(HOST, T0, 1),
        documents.bugcheck_1001(HOST, T0, 2),
        documents.update_installed_19(HOST, T0, 3, "KB5055523"),
        documents.security_4624(HOST, T0, 4, "alice"),
    ):
        jsonschema.validate(document, input_schema)


def test_signals_on_the_wire_match_their_schema():
    ticks = [
        Signal(device="", kind=SignalKind.TICK, time_ms=T0),
        Signal(device="", kind=SignalKind.TICK, time_ms=T0, coverage=Coverage((0, 3), 8)),
        Signal(device="", kind=SignalKind.TICK, time_ms=T0, coverage=Coverage((1,), 8, idle=True)),
        seen_many([("pc-1", T0, "PC-1"), ("pc-2", T0 + 1, "")]),
    ]
    for signal in [*crash_boot_signals(T0, 10), *ticks]:
        jsonschema.validate(codec.loads(signal.to_wire()), schema("signal"))
        assert Signal.from_wire(signal.to_wire()) == signal


KB_FACTS = {EvidenceKind.INSTALLED, EvidenceKind.AFFECTED, EvidenceKind.RECOVERED, EvidenceKind.RELAPSED}


def test_evidence_and_progress_markers_on_the_wire_match_their_schema():
    facts = [
        Evidence(kind, "KB5055523" if kind in KB_FACTS else "", "d1", "arm64", T0)
        for kind in EvidenceKind
        if kind is not EvidenceKind.PROGRESS
    ]
    facts.append(Evidence.progress(3, T0))
    for fact in facts:
        jsonschema.validate(codec.loads(fact.to_wire()), schema("evidence"))
        assert Evidence.from_wire(fact.to_wire()) == fact
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"k": "progress", "kb": "", "d": "", "a": "", "t": T0}, schema("evidence"))
