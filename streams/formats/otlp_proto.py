"""OpenTelemetry Collector `windowseventlog` records in the Kafka exporter's default encoding.

The exporter's `otlp_proto` encoding writes each message as an OTLP
`ExportLogsServiceRequest` in protobuf. Its records are read here the way
`streams.formats.otel` reads OTLP JSON, down to the same body map, which
`otel.body_event` then reads for both encodings. The messages are walked
directly rather than turned into OTLP JSON first: in messages of 100 records,
protobuf's own conversion (`json_format.MessageToDict`) took 286 to 321 µs a
record, walking them 50 to 63 µs (README, Other collectors).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.protobuf.json_format import ParseDict
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from streams.formats.event import FieldError, WindowsEvent
from streams.formats.otel import MAX_LOG_RECORDS, body_event
from streams.outcomes import RejectReason

# Field 1 (`resource_logs`), length-delimited: the first byte of every request that holds
# a record. JSON may begin with it too (a leading newline), so it only marks a candidate.
_FIRST_BYTE = b"\n"


def may_be_otlp_proto(payload: bytes) -> bool:
    """Whether `payload` can be an OTLP protobuf request holding records (cheap; not a parse)."""
    return payload[:1] == _FIRST_BYTE


def otlp_proto_request(payload: bytes) -> ExportLogsServiceRequest:
    """The request in `payload`; `FieldError` when it is none.

    Protobuf reads many byte strings as some message (it skips fields it does not
    know), so a request without resource logs counts as none.
    """
    request = ExportLogsServiceRequest()
    try:
        request.ParseFromString(payload)
    except (DecodeError, RecursionError) as error:
        detail = f"not an OTLP protobuf logs request: {error}"[:200]
        raise FieldError(RejectReason.BAD_VALUE, detail) from None
    if not request.resource_logs:
        raise FieldError(RejectReason.BAD_VALUE, "not an OTLP protobuf logs request: no resource logs")
    return request


def otlp_proto_events(request: ExportLogsServiceRequest) -> Iterator[WindowsEvent]:
    """Every log record of a request, as events (as `otel.otlp_events` reads OTLP JSON)."""
    count = 0
    for resource_logs in request.resource_logs:
        resource = {pair.key: plain(pair.value) for pair in resource_logs.resource.attributes}
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                count += 1
                if count > MAX_LOG_RECORDS:
                    raise FieldError(RejectReason.TOO_LARGE, f"more than {MAX_LOG_RECORDS} log records")
                body = plain(record.body)
                if not isinstance(body, dict):
                    raise FieldError(RejectReason.BAD_VALUE, "logRecord body is not a map")
                yield body_event(body, resource)


def plain(value: AnyValue) -> Any:
    """An `AnyValue` as a plain Python value, as `otel.any_value` reads its JSON form.

    A key given twice in a map keeps its last value, and bytes read as nothing, as there.
    """
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        return value.double_value
    if kind == "kvlist_value":
        return {pair.key: plain(pair.value) for pair in value.kvlist_value.values}
    if kind == "array_value":
        return [plain(item) for item in value.array_value.values]
    return None


def otlp_proto_payload(document: dict[str, Any]) -> bytes:
    """An OTLP JSON document's records as the exporter's protobuf (for the simulator and tests)."""
    request = ParseDict(document, ExportLogsServiceRequest())
    return request.SerializeToString()
