"""`kbwatch` command line: worker, replay, broker, simulate, demo."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from streams import __version__
from streams.settings import EVENT_LOOPS, SIEVE_CLIENTS, Settings, SettingsError, env_name

if TYPE_CHECKING:
    from streams.metrics import Metrics

EXIT_USAGE = 2
YOUNG_COLLECTION_EVERY = 20_000  # net allocations between young collections (CPython: 700)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kbwatch` command."""
    parser = _parser()
    arguments = parser.parse_args(argv)
    if not getattr(arguments, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        result: int = arguments.run(arguments)
    except SettingsError as error:
        print(f"kbwatch: configuration error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kbwatch",
        description="Tells you within seconds that a Windows update is breaking your devices.",
    )
    parser.add_argument("--version", action="version", version=f"kbwatch {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    worker = commands.add_parser("worker", help="run the streaming worker (Faust) against a broker")
    _connection_flags(worker)
    worker.add_argument("--web-port", type=int, help="port of /metrics (env KBWATCH_WEB_PORT, default 6066)")
    worker.add_argument("--web-host", help="address of /metrics (env KBWATCH_WEB_HOST, default 127.0.0.1)")
    worker.add_argument(
        "--partitions", type=int, help="partitions of the topics it creates (KBWATCH_PARTITIONS)"
    )
    worker.add_argument("--log-level", help="debug, info, warning (env KBWATCH_LOG_LEVEL)")
    worker.set_defaults(run=_run_worker)

    replay = commands.add_parser("replay", help="run the rules offline over NDJSON files (.gz or - too)")
    replay.add_argument("files", nargs="+", metavar="FILE", help="NDJSON files, .gz, or - for stdin")
    replay.add_argument("--output", "-o", help="write alert objects here (default: stdout)")
    replay.add_argument("--dlq", help="write rejected records here as JSON envelopes")
    replay.set_defaults(run=_run_replay)

    validate = commands.add_parser("validate", help="say, record by record, what kbwatch makes of a file")
    validate.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="NDJSON files (one message per line), .gz, or -; with --events-format otlp_proto, "
        "each file is one message",
    )
    validate.add_argument("--json", action="store_true", help="one JSON verdict per record instead of text")
    validate.add_argument("--events-format", help="force the events' format (env KBWATCH_EVENTS_FORMAT)")
    validate.add_argument(
        "--installs-format", help="force the installs' format (env KBWATCH_INSTALLS_FORMAT)"
    )
    validate.set_defaults(run=_run_validate)

    bench = commands.add_parser("bench", help="measure kbwatch against the ceiling and its peers")
    bench.add_argument("--broker", default="", help="a broker to use instead of the embedded one")
    bench.add_argument(
        "--input", default="", help="an NDJSON file of Winlogbeat documents instead of the simulator"
    )
    bench.add_argument("--devices", type=int, default=2_000, help="simulated devices (default 2000)")
    bench.add_argument("--noise-per-hour", type=float, default=30.0, help="everyday records/device/hour (30)")
    bench.add_argument("--partitions", type=int, default=4, help="input topic partitions (default 4)")
    bench.add_argument("--incidents", type=int, default=120, help="boot loops timed for latency (120)")
    bench.add_argument("--state-devices", type=int, default=100_000, help="devices for state size (100000)")
    bench.add_argument("--skip-peers", action="store_true", help="do not run the Faust and Quix peers")
    bench.add_argument(
        "--workers", type=int, default=1, help="also run this many workers in one group (default 1: not)"
    )
    bench.add_argument(
        "--store", default="memory://", help="the worker's table store: memory:// or rocksdb:// (memory://)"
    )
    bench.add_argument(
        "--sieve-client",
        choices=SIEVE_CLIENTS,
        default="aiokafka",
        help="the Kafka client of the workers' sieve consumer (aiokafka)",
    )
    bench.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default="uvloop",
        help="the workers' event loop (uvloop)",
    )
    bench.add_argument(
        "--keyed",
        action="store_true",
        help="key each record by device (one partition per device; default unkeyed, as Winlogbeat ships)",
    )
    bench.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure the ceiling, Quix and the worker this many times in turn; report medians (1)",
    )
    bench.add_argument("--json", action="store_true", help="end with the figures as one JSON line")
    bench.set_defaults(run=_run_bench)

    dashboards = commands.add_parser("dashboards", help="write the Grafana dashboards (JSON) into a folder")
    dashboards.add_argument(
        "--output",
        "-o",
        default="deploy/grafana/dashboards",
        help="folder (default deploy/grafana/dashboards)",
    )
    dashboards.set_defaults(run=_run_dashboards)

    broker = commands.add_parser("broker", help="start the embedded Kafka-compatible broker (Tansu)")
    broker.add_argument("--port", type=int, default=9092, help="loopback port (default 9092)")
    broker.set_defaults(run=_run_broker)

    simulate = commands.add_parser("simulate", help="produce a simulated fleet (spring-2025 timeline)")
    _connection_flags(simulate)
    simulate.add_argument("--devices", type=int, default=300, help="fleet size (default 300)")
    simulate.add_argument("--seed", type=int, default=2025, help="random seed (default 2025)")
    simulate.add_argument("--noise-per-hour", type=float, default=4.0, help="everyday records/device/hour")
    simulate.add_argument("--output", "-o", help="write NDJSON to this file instead of producing")
    simulate.add_argument(
        "--collector",
        default="winlogbeat",
        choices=["winlogbeat", "otlp_json", "otlp_proto", "otel_raw", "xml", "nxlog", "fluentbit"],
        help="ship the event records as this collector does (default winlogbeat)",
    )
    simulate.add_argument(
        "--keyed",
        action="store_true",
        help="key each record by device (what several workers need; default unkeyed, as Winlogbeat ships)",
    )
    simulate.set_defaults(run=_run_simulate)

    demo = commands.add_parser("demo", help="broker + worker + simulated fleet, alerts as they fire")
    demo.add_argument("--devices", type=int, default=300, help="fleet size (default 300)")
    demo.add_argument("--seed", type=int, default=2025, help="random seed (default 2025)")
    demo.add_argument("--web-port", type=int, default=6066, help="port of the worker's /metrics")
    demo.set_defaults(run=_run_demo)
    return parser


def _connection_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument("--broker", help="bootstrap servers host:port[,...] (env KBWATCH_BROKER)")
    command.add_argument("--events-topic", help="Winlogbeat topic (env KBWATCH_EVENTS_TOPIC)")
    command.add_argument("--installs-topic", help="install records topic (env KBWATCH_INSTALLS_TOPIC)")
    command.add_argument("--alerts-topic", help="alerts topic (env KBWATCH_ALERTS_TOPIC)")
    command.add_argument("--dlq-topic", help="dead-letter topic (env KBWATCH_DLQ_TOPIC)")


def _settings(arguments: argparse.Namespace) -> Settings:
    names = (
        "broker",
        "events_topic",
        "installs_topic",
        "alerts_topic",
        "dlq_topic",
        "web_port",
        "web_host",
        "partitions",
        "log_level",
    )
    overrides: dict[str, Any] = {name: getattr(arguments, name, None) for name in names}
    return Settings.from_env(**overrides)


def _event_loop(settings: Settings) -> asyncio.AbstractEventLoop:
    """A new loop of the kind `KBWATCH_EVENT_LOOP` names."""
    if settings.event_loop == "asyncio":
        return asyncio.new_event_loop()
    try:
        import uvloop
    except ImportError as error:  # a platform uvloop has no build for (Windows)
        name = env_name("event_loop")
        raise SettingsError(
            f"{name}=uvloop needs the uvloop package, which this installation lacks "
            f"({error}); install it, or set {name}=asyncio"
        ) from error
    return uvloop.new_event_loop()


def _run_worker(arguments: argparse.Namespace) -> int:
    import faust

    from streams.metrics import Metrics
    from streams.worker import build_worker

    settings = _settings(arguments)
    loop = _event_loop(settings)
    asyncio.set_event_loop(loop)
    metrics = Metrics.create()
    loop.run_until_complete(_topics_when_the_broker_answers(settings, metrics))
    worker = build_worker(settings, metrics)
    print(
        f"kbwatch worker: broker {settings.broker}, reading {settings.events_topic} and "
        f"{settings.installs_topic}, metrics on http://{settings.web_host}:{settings.web_port}/metrics",
        file=sys.stderr,
        flush=True,
    )
    faust_worker = faust.Worker(worker.app, loglevel=settings.log_level, loop=loop)
    # At `warning` and above, Faust's start-up spinner sets the root logger to
    # DEBUG so that it can spin on every record: every debug call in aiokafka
    # and Faust then builds a LogRecord (a sixth of the worker's time, measured).
    faust_worker.spinner = None
    # Everything imported and built so far lives as long as the worker: out of
    # the collector's sight, a full collection no longer walks it again and
    # again while the sieve allocates (a fifth of the worker's time, measured).
    gc.freeze()
    # The sieve allocates a few objects per record and holds thousands of records
    # back while partitions catch up, so a young collection every 700 allocations
    # ran every ~150 records and kept promoting what it held. Rarer young
    # collections: 34,000 -> 42,000-46,000 records/s on a recorded 1,000-device fleet.
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, older, oldest)
    faust_worker.execute_from_commandline()
    return 0


async def _topics_when_the_broker_answers(settings: Settings, metrics: Metrics) -> None:
    """Create the topics, retrying with backoff while the broker cannot be reached.

    A worker started before its broker (a cluster restarting, a compose stack
    coming up) waits for it instead of exiting.
    """
    from aiokafka.errors import KafkaError

    from streams.topics import ensure_topics

    delay = 1.0
    while True:
        try:
            await ensure_topics(settings)
            return
        except (KafkaError, OSError) as error:
            metrics.broker_errors.labels("startup").inc()
            print(
                f"kbwatch worker: broker {settings.broker} not reachable ({error}); "
                f"retrying in {delay:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


def _run_replay(arguments: argparse.Namespace) -> int:
    from streams.replay import iter_lines, paths_exist, replay
    from streams.sieve import Sieve

    missing = paths_exist(arguments.files)
    if missing:
        print(f"kbwatch replay: no such file: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    settings = Settings.from_env()
    output = open(arguments.output, "wb") if arguments.output else sys.stdout.buffer  # noqa: SIM115
    dlq_out = open(arguments.dlq, "wb") if arguments.dlq else None  # noqa: SIM115
    try:
        summary = replay(
            iter_lines(arguments.files),
            catalog=settings.catalog(),
            sieve=Sieve(settings.max_message_bytes, decoding=settings.decoding()),
            alert_out=output,
            dlq_out=dlq_out,
            progress=sys.stderr.buffer if sys.stderr.isatty() else None,
        )
    finally:
        if arguments.output:
            output.close()
        if dlq_out is not None:
            dlq_out.close()
    firing = sum(1 for alert in summary.alerts if alert.status == "firing")
    print(
        f"kbwatch replay: {summary.records} records, {summary.relevant} relevant, "
        f"{summary.rejected} rejected, {firing} firing and {len(summary.alerts) - firing} resolved "
        "alert messages",
        file=sys.stderr,
    )
    return 0


def _run_validate(arguments: argparse.Namespace) -> int:
    from streams.formats.detect import InputFormat
    from streams.replay import iter_files, iter_lines, paths_exist
    from streams.sieve import Sieve
    from streams.validate import validate

    missing = paths_exist(arguments.files)
    if missing:
        print(f"kbwatch validate: no such file: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    settings = Settings.from_env(
        events_format=arguments.events_format, installs_format=arguments.installs_format
    )
    decoding = settings.decoding()
    sieve = Sieve(settings.max_message_bytes, decoding=decoding)
    # Protobuf is binary: no lines to split on, so each file is one message, as the exporter wrote it.
    binary = decoding.events_format is InputFormat.OTLP_PROTO
    messages = iter_files(arguments.files) if binary else iter_lines(arguments.files)
    counts = validate(messages, sieve, sys.stdout, arguments.json)
    print(
        f"kbwatch validate: {counts['accepted']} accepted, {counts['irrelevant']} irrelevant, "
        f"{counts['rejected']} rejected",
        file=sys.stderr,
    )
    return 1 if counts["rejected"] else 0


def _run_bench(arguments: argparse.Namespace) -> int:
    from streams import codec
    from streams.bench import BenchPlan, run_bench, table

    plan = BenchPlan(
        devices=arguments.devices,
        noise_per_hour=arguments.noise_per_hour,
        partitions=arguments.partitions,
        input_file=arguments.input,
        incidents=arguments.incidents,
        state_devices=arguments.state_devices,
        skip_peers=arguments.skip_peers,
        store=arguments.store,
        sieve_client=arguments.sieve_client,
        event_loop=arguments.event_loop,
        workers=arguments.workers,
        keyed=arguments.keyed,
        rounds=arguments.rounds,
    )
    if plan.workers < 1:
        print("kbwatch bench: --workers must be at least 1", file=sys.stderr)
        return 2
    if plan.rounds < 1:
        print("kbwatch bench: --rounds must be at least 1", file=sys.stderr)
        return 2
    figures = run_bench(plan, broker=arguments.broker)
    print(table(figures))
    if arguments.json:
        print(codec.dumps(figures).decode())
    return 0


def _run_dashboards(arguments: argparse.Namespace) -> int:
    from pathlib import Path

    from streams.dashboards import write

    for path in write(Path(arguments.output)):
        print(f"kbwatch dashboards: wrote {path}", file=sys.stderr)
    return 0


def _run_broker(arguments: argparse.Namespace) -> int:
    from streams.broker import EmbeddedBroker

    broker = EmbeddedBroker(port=arguments.port).start()
    print(f"kbwatch broker: Tansu listening on {broker.bootstrap} (memory storage); Ctrl-C stops it")
    stop = asyncio.Event()
    try:
        loop = asyncio.new_event_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.run_until_complete(stop.wait())
    finally:
        broker.stop()
    return 0


def _run_simulate(arguments: argparse.Namespace) -> int:
    from streams.formats.detect import InputFormat
    from streams.simulate import BinaryCollectorError, FleetPlan, produce_fleet, write_fleet

    plan = FleetPlan(
        devices=arguments.devices,
        seed=arguments.seed,
        noise_per_hour=arguments.noise_per_hour,
        collector=InputFormat(arguments.collector),
        keyed=arguments.keyed,
    )
    if arguments.output:
        try:
            count = write_fleet(plan, arguments.output)
        except BinaryCollectorError as error:
            print(f"kbwatch simulate: {error}", file=sys.stderr)
            return EXIT_USAGE
        print(f"kbwatch simulate: wrote {count} records to {arguments.output}", file=sys.stderr)
        return 0
    settings = _settings(arguments)
    count = asyncio.run(produce_fleet(plan, settings))
    print(f"kbwatch simulate: produced {count} records to {settings.broker}", file=sys.stderr)
    return 0


def _run_demo(arguments: argparse.Namespace) -> int:
    from streams.demo import run_demo

    logging.basicConfig(level=logging.WARNING)
    return run_demo(devices=arguments.devices, seed=arguments.seed, web_port=arguments.web_port)


if __name__ == "__main__":
    sys.exit(main())
