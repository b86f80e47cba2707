"""`kbwatch bench`: the product against the machine's ceiling and its peers, in one run.

On one topic of realistic Winlogbeat documents (the simulator's fleet, or
`--input FILE`) it measures, one after the other on the same broker:

- the ceiling: a bare aiokafka consumer doing `getmany` + `orjson.loads`;
- the peers: a plain faust-streaming agent with a table, and Quix Streams
  (optional, `pip install quixstreams`) doing the same job;
- the product: a real `kbwatch worker` process, first record to last;
- with `--workers N`, N workers in one consumer group on the same stream,
  from the moment every one of them reads its share to the last record;
- alert latency at half the product's rate: producing the record that
  completes a boot loop to its alert on the alerts topic;
- memory: the worker's peak RSS, and state bytes per device at 100,000 devices.

With `--rounds N` the ceiling, Quix and the worker are measured N times in
turn, and each figure is the median of its rounds: a shared VM's speed drifts
within a run, and a ceiling measured fast beside a worker measured slow says
more about the minute than about kbwatch. Faust, far behind, runs once.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import queue
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams import codec, documents
from streams.catalog import Catalog
from streams.demo import scrape, start_worker, stop_worker, wait_until_consuming
from streams.engine import Engine
from streams.formats.event import FieldError
from streams.metrics import Metrics
from streams.settings import Settings
from streams.signals import Signal, SignalKind
from streams.simulate import FleetPlan, spring_2025
from streams.timeutil import HOUR_MS, MINUTE_MS, parse_event_time
from streams.winlogbeat import device_key

# A peer or worker that reads nothing more for this long is given up on. No limit on the
# whole run: a recorded fleet of millions of records takes the Faust agent many minutes.
STALL_SECONDS = 120.0
PROGRESS_SECONDS = 10.0  # how often a long stretch says how far it has got
PEER_EXIT_SECONDS = 30.0  # how long a peer that has given its figure may take to stop
LOOK_SECONDS = 0.05  # how often the bench looks at a worker's metrics where timing starts and ends
MAX_LOOK_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class BenchPlan:
    """What `kbwatch bench` runs."""

    devices: int = 2_000
    noise_per_hour: float = 30.0
    partitions: int = 4
    input_file: str = ""
    incidents: int = 120
    state_devices: int = 100_000
    skip_peers: bool = False
    store: str = "memory://"  # the worker's table store (KBWATCH_STORE)
    sieve_client: str = "aiokafka"  # the sieve consumer's Kafka client (KBWATCH_SIEVE_CLIENT)
    event_loop: str = "uvloop"  # the workers' event loop (KBWATCH_EVENT_LOOP)
    workers: int = 1  # above 1: also N workers in one group, for the scaling figure
    keyed: bool = False  # key each record by its device, as several workers want (README)
    # Ceiling, Quix and worker measured this many times, in turn, each figure their median:
    # on a shared VM the machine's speed drifts over a run (README, Performance).
    rounds: int = 1


def progress(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


class Progress:
    """Says how far a stretch has got, at most once per `PROGRESS_SECONDS` (none for a short one)."""

    def __init__(self, what: str, total: int) -> None:
        self._what, self._total = what, total
        self._started = self._said = time.monotonic()

    def at(self, done: float) -> None:
        now = time.monotonic()
        if now - self._said >= PROGRESS_SECONDS:
            self._said = now
            # No rate: a peer's start-up is in the time, and the figure comes at the end.
            elapsed = now - self._started
            progress(f"  {self._what}: {done:,.0f} of {self._total:,} records, {elapsed:.0f} s in")


def fleet_records(plan: BenchPlan) -> list[bytes]:
    """The stream: a recorded file (one message per line) or the simulated fleet."""
    if plan.input_file:
        with open(plan.input_file, "rb") as source:
            return [line.strip() for line in source if line.strip()]
    fleet = FleetPlan(devices=plan.devices, noise_per_hour=plan.noise_per_hour, native_install_share=0.0)
    stream, _ = spring_2025(fleet)
    return [record.value for record in stream]


def device_keys(records: list[bytes]) -> list[bytes | None]:
    """Each record's device, as kbwatch names it, for a keyed topic; None where it names none.

    What a producer keying by `host.id` (Winlogbeat's `output.kafka.key`) gives:
    each device's records on one partition.
    """
    keys: list[bytes | None] = []
    for record in records:
        device = ""
        try:
            document = codec.loads(record)
            if isinstance(document, dict):
                winlog = document.get("winlog")
                device = device_key(document, winlog if isinstance(winlog, dict) else {})
        except (codec.DecodeError, FieldError):
            pass  # unkeyed, as such a record would come
        keys.append(device.encode() if device else None)
    return keys


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # Quix's state setup reads the source topic's retention: give it one.
        await admin.create_topics(
            [NewTopic(name, partitions, 1, topic_configs={"retention.ms": "604800000"})]
        )
    finally:
        await admin.close()


async def produce(
    bootstrap: str, topic: str, records: list[bytes], keys: list[bytes | None] | None = None
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, max_batch_size=1 << 20)
    await producer.start()
    said = Progress("produced", len(records))
    try:
        batch = []
        for sent, (record, key) in enumerate(zip(records, keys or [None] * len(records), strict=True), 1):
            batch.append(await producer.send(topic, value=record, key=key))
            if len(batch) >= 5_000:
                await asyncio.gather(*batch)
                batch = []
                said.at(sent)
        await asyncio.gather(*batch)
    finally:
        await producer.stop()


async def ceiling(bootstrap: str, topic: str, count: int) -> float:
    """Records/s of a bare consumer that decodes every record: the most Python can do here."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-ceiling-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        max_poll_records=5_000,
    )
    await consumer.start()
    said = Progress("ceiling", count)
    try:
        seen, first = 0, 0.0
        while seen < count:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5_000)
            for messages in batch.values():
                if messages and not first:
                    first = time.perf_counter()
                for message in messages:
                    orjson.loads(message.value)
                seen += sum(1 for _ in messages)
            said.at(seen)
        return count / (time.perf_counter() - first)
    finally:
        await consumer.stop()


def peer(kind: str, bootstrap: str, topic: str, count: int, partitions: int, workdir: Path) -> float | None:
    """Run a peer in its own process, its state under `workdir`; None when it cannot run here."""
    if kind == "quix" and importlib.util.find_spec("quixstreams") is None:
        progress("Quix Streams is not installed (pip install 'kbwatch[bench]'): skipped")
        return None
    command = [
        sys.executable,
        "-m",
        "streams.bench_peers",
        kind,
        bootstrap,
        topic,
        str(count),
        str(partitions),
    ]
    # cwd: where Faust and Quix keep their state.
    return run_peer(kind, command, count, cwd=workdir)


def run_peer(
    kind: str, command: list[str], count: int, cwd: Path, stall_seconds: float = STALL_SECONDS
) -> float | None:
    """A peer's records/s from its output (`streams.bench_peers`), relaying its progress.

    None, and the peer stopped, when it exits without a figure or reports no
    progress for `stall_seconds` (it reports every `bench_peers.PROGRESS_RECORDS`):
    a peer that only logs, retrying a broker it cannot reach, has stalled too.
    """
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd)
    assert process.stdout is not None
    lines: queue.Queue[bytes | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
    said = Progress(f"{kind} peer", count)
    tail: deque[str] = deque(maxlen=30)  # what it said last, for a failure
    deadline = time.monotonic() + stall_seconds
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                progress(f"the {kind} peer read nothing more for {stall_seconds:.0f} s: stopped")
                process.kill()
                return None
            if line is None:
                break
            text = line.decode(errors="replace")
            # Faust redirects standard output into its log, which it writes to stderr.
            start = text.find('{"peer"')
            if start < 0:
                tail.append(text)
                continue
            report = orjson.loads(text[start:].rstrip())
            if "records_per_second" in report:
                rate: float = report["records_per_second"]
                return rate
            said.at(report["read"])
            deadline = time.monotonic() + stall_seconds
    finally:
        try:
            process.wait(timeout=PEER_EXIT_SECONDS)  # after its figure, a peer stops by itself
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    progress(f"the {kind} peer failed (exit code {process.returncode}): {''.join(tail)[-600:]}")
    return None


def _read_lines(stream: Any, lines: queue.Queue[bytes | None]) -> None:
    for line in iter(stream.readline, b""):
        lines.put(line)
    lines.put(None)


@dataclass(frozen=True, slots=True)
class GroupRun:
    """Workers in one group over the stream: their rate, and each process's CPU meanwhile."""

    records_per_second: float | None  # None: nothing left to time once the group settled
    worker_cores: tuple[float, ...] = ()  # CPU seconds per second of the timed stretch
    broker_cores: float | None = None  # the embedded broker's; None for another broker


def product(settings: Settings, workdir: Path, count: int, broker_pid: int | None) -> tuple[GroupRun, int]:
    """A real worker, first record to last (sieve and device agent): its run and peak RSS."""
    process = start_worker(settings, workdir / "bench-worker.log")
    url = f"http://{settings.web_host}:{settings.web_port}/metrics"
    try:
        # The clock starts at the first look after the worker is ready, and a ready
        # sieve is reading: asked every half second, it read for up to that long
        # before the clock started (before 0.8.3).
        wait_until_consuming(url, process, 60, poll_seconds=LOOK_SECONDS)
        run = group_rate([process], [url], count, broker_pid)
        assert run.records_per_second is not None  # one ready worker has settled before it reads
        return run, _peak_rss(process.pid)
    finally:
        stop_worker(process)


@dataclass(frozen=True, slots=True)
class Round:
    """One round of the measures taken in turn: the ceiling, Quix (None when skipped) and a worker."""

    ceiling_rate: float
    quix_rate: float | None
    product: GroupRun
    peak_rss: int

    @property
    def product_rate(self) -> float:
        return self.product.records_per_second or 0.0


def median_round(rounds: list[Round]) -> Round:
    """The round whose worker read at the median rate (the lower of the two middle ones):
    the worker's CPU shares are reported from it."""
    ordered = sorted(rounds, key=lambda round_: round_.product_rate)
    return ordered[(len(ordered) - 1) // 2]


def several_workers(
    settings: Settings, workdir: Path, count: int, workers: int, broker_pid: int | None
) -> GroupRun:
    """`workers` workers in one group, once every one has its share of the input."""
    from streams.broker import free_port

    processes, urls = [], []
    for index in range(workers):
        own = replace(settings, web_port=free_port(), data_dir=f"{settings.data_dir}-{index}")
        processes.append(start_worker(own, workdir / f"bench-worker-{index}.log"))
        urls.append(f"http://{own.web_host}:{own.web_port}/metrics")
    try:
        return group_rate(processes, urls, count, broker_pid)
    finally:
        for process in processes:
            stop_worker(process)


def group_rate(
    processes: list[subprocess.Popen[bytes]], urls: list[str], count: int, broker_pid: int | None = None
) -> GroupRun:
    """Workers in one group over the stream, looking at their metrics (`_next_look_in`).

    The group has settled once every worker has input partitions of its own
    (until then some read nothing); one worker that is ready has settled. The
    clock starts at the last look at a settled group that saw nothing read and
    counts every record: a lower bound when the stream is read whole between
    two looks, instead of a division by zero. A group that settles only after
    reading began is timed from that look, over the records after it. Each
    look also reads the CPU time of the workers and the broker, so the run
    says how much of the machine the timed stretch took.
    """
    pids = [process.pid for process in processes] + ([broker_pid] if broker_pid else [])
    quiet: tuple[float, list[float]] | None = None  # the last settled look at nothing read
    if len(processes) == 1:
        quiet = (time.perf_counter(), [_cpu_seconds(pid) for pid in pids])
    first: tuple[float, list[float]] | None = None
    read_before = 0.0
    said = Progress(f"{len(processes)} workers" if len(processes) > 1 else "worker", count)
    moved, deadline = (-1.0, -1.0), time.monotonic() + STALL_SECONDS
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"a worker exited with code {process.returncode}")
        pages = [scrape(url) for url in urls]
        read, made, applied = (sum(column) for column in zip(*map(_progress_of, pages), strict=True))
        look = (time.perf_counter(), [_cpu_seconds(pid) for pid in pids])
        said.at(read)
        if (read, applied) != moved:  # both only grow
            moved, deadline = (read, applied), time.monotonic() + STALL_SECONDS
        if first is None and (quiet is not None or all(_reads_input(page) for page in pages)):
            if not read:
                quiet = look
            elif quiet is not None:
                first = quiet
            else:
                first, read_before = look, read
        if first is not None and read >= count and applied >= made:
            if read_before >= count:
                progress("the group settled after the whole stream was read: no figure (more --devices)")
                return GroupRun(None)
            if read_before > count / 2:
                progress(
                    f"the group settled only after {read_before:,.0f} of {count:,} records: "
                    "the figure rests on a short stretch (use more --devices)"
                )
            seconds = look[0] - first[0]
            cores = [round((end - start) / seconds, 2) for start, end in zip(first[1], look[1], strict=True)]
            return GroupRun(
                (count - read_before) / seconds,
                tuple(cores[: len(processes)]),
                cores[-1] if broker_pid else None,
            )
        started = first[0] if first is not None else None
        time.sleep(_next_look_in(started, look[0], read - read_before, count - read))
    raise RuntimeError(f"{len(processes)} worker(s) read nothing more for {STALL_SECONDS:.0f} s")


def _next_look_in(started: float | None, now: float, done: float, left: float) -> float:
    """Seconds until the next look: every 50 ms where the clock starts and stops, rarer between.

    Each look renders the workers' whole `/metrics` page, about a millisecond
    of their CPU: twenty a second took 2 % of a worker's py-spy samples. In
    mid-stream a look can wait a quarter of the time the rest should take.
    `started` is when the clock started (None: not yet), `done` the records
    read since then and `left` those still to read.
    """
    if started is None or done <= 0 or left <= 0:
        return LOOK_SECONDS
    remaining = left / (done / max(now - started, LOOK_SECONDS))
    return min(MAX_LOOK_SECONDS, max(LOOK_SECONDS, remaining / 4))


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux `/proc`; 0 where unreadable)."""
    return stat_cpu_seconds(Path(f"/proc/{pid}/stat"))


def stat_cpu_seconds(stat: Path) -> float:
    """User and system CPU time so far in a `/proc` stat file, of a process or one of its
    threads (`/proc/PID/task/TID/stat`); 0 where unreadable."""
    try:
        # The command name in parentheses may hold spaces: count fields after it.
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _reads_input(metrics: str) -> bool:
    """Whether a worker's sieve has event partitions of its own."""
    for line in metrics.splitlines():
        if line.startswith('kbwatch_partitions_assigned{source="winlogbeat"}'):
            return float(line.rsplit(" ", 1)[1]) > 0
    return False


def _progress_of(metrics: str) -> tuple[float, float, float]:
    read = made = applied = 0.0
    for line in metrics.splitlines():
        if line.startswith("kbwatch_records_total{"):
            value = float(line.rsplit(" ", 1)[1])
            read += value
            if 'outcome="relevant"' in line or 'outcome="seen"' in line:
                made += value
        elif line.startswith("kbwatch_signals_total{"):
            applied += float(line.rsplit(" ", 1)[1])
    return read, made, applied


def _peak_rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def latency(settings: Settings, workdir: Path, rate: float, incidents: int) -> list[float]:
    """Seconds from producing each loop's completing record to its alert, at `rate` records/s."""
    return asyncio.run(_latency(settings, workdir, rate, incidents))


async def _latency(settings: Settings, workdir: Path, rate: float, incidents: int) -> list[float]:
    process = start_worker(settings, workdir / "bench-latency-worker.log")
    url = f"http://{settings.web_host}:{settings.web_port}/metrics"
    sent_at: dict[str, float] = {}
    arrived: dict[str, float] = {}
    try:
        await asyncio.to_thread(wait_until_consuming, url, process, 60)
        await _warm_up(settings, url)
        consumer = AIOKafkaConsumer(
            settings.alerts_topic,
            bootstrap_servers=settings.bootstrap_servers(),
            auto_offset_reset="latest",
            fetch_max_wait_ms=settings.fetch_max_wait_ms,  # the stopwatch must not lag either
        )
        await consumer.start()
        await consumer.seek_to_end()
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers(), linger_ms=1)
        await producer.start()
        watcher = asyncio.create_task(_watch_alerts(consumer, arrived))
        try:
            # Paced against a schedule, not by a sleep per record: the event loop cannot
            # sleep 50 us, and per-record sleeps offered a sixth of the rate asked for.
            started = time.perf_counter()
            for number, (record, completes) in enumerate(_load(incidents)):
                await producer.send(settings.events_topic, value=record)
                if completes:
                    await producer.flush()
                    sent_at[completes] = time.perf_counter()
                ahead = started + (number + 1) / rate - time.perf_counter()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            deadline = time.monotonic() + 60
            while len(arrived) < len(sent_at) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
        finally:
            watcher.cancel()
            await producer.stop()
            await consumer.stop()
    finally:
        stop_worker(process)
    return [arrived[device] - sent_at[device] for device in sent_at if device in arrived]


async def _warm_up(settings: Settings, url: str) -> None:
    """Wait until both consumer groups have joined: one record must go all the way through."""
    host = documents.Host(host_id="bench-warm-up", name="WARM-UP")
    now_ms = time.time_ns() // 1_000_000 - HOUR_MS
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers())
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.events_topic, codec.dumps(documents.kernel_general_12(host, now_ms - HOUR_MS, 1))
        )
    finally:
        await producer.stop()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        read, _, applied = _progress_of(await asyncio.to_thread(scrape, url))
        if read >= 1 and applied >= 1:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("the worker did not take a first record within 60 s")


async def _watch_alerts(consumer: AIOKafkaConsumer, arrived: dict[str, float]) -> None:
    while True:
        batch = await consumer.getmany(timeout_ms=100)
        now = time.perf_counter()
        for messages in batch.values():
            for message in messages:
                alert = codec.loads(message.value)
                device = alert["labels"].get("device", "")
                if alert["status"] == "firing" and device not in arrived:
                    arrived[device] = now


def _load(incidents: int) -> list[tuple[bytes, str]]:
    """Everyday noise with `incidents` boot loops, in event-time order, today's times.

    Each item is (record, device) where the record completes that device's loop, else "".
    """
    now_ms = time.time_ns() // 1_000_000 - HOUR_MS
    records: list[tuple[int, bytes, str]] = []
    for number in range(incidents):
        host = documents.Host(host_id=f"bench-loop-{number:05d}", name=f"LOOP-{number:05d}")
        start = now_ms + number * 20_000
        records.append((start, codec.dumps(documents.update_installed_19(host, start, 1, "KB5055523")), ""))
        for crash in range(3):
            at = start + 60_000 + crash * 2_000
            records.append(
                (
                    at,
                    codec.dumps(documents.kernel_power_41(host, at, 10 + crash)),
                    host.host_id if crash == 2 else "",
                )
            )
        for noise in range(40):
            noisy = documents.Host(host_id=f"bench-noise-{number:05d}-{noise}", name=f"N-{number}-{noise}")
            at = start + noise * 500
            records.append((at, codec.dumps(documents.security_4624(noisy, at, noise, "bob")), ""))
    records.sort(key=lambda item: item[0])
    return [(record, device) for _, record, device in records]


def state_bytes_per_device(devices: int) -> float:
    """Mean encoded state of a device at `devices` devices: installed, booted, a few records."""
    engine = Engine({}, Catalog(), Metrics.create())
    start = parse_event_time("2025-04-08T14:00:00Z", 2**62)
    for number in range(devices):
        device = f"{uuid.UUID(int=number, version=4)}"
        at = start + (number % 600) * 1000
        engine.process(
            Signal(
                device,
                SignalKind.INSTALL,
                at,
                host=f"PC-{number:06d}",
                kb="KB5055523",
                build="26100.3775",
                arch="x86_64",
                source="winlogbeat",
            )
        )
        engine.process(
            Signal(device, SignalKind.BOOT_START, at + 5 * MINUTE_MS, record_key=f"System/{number}")
        )
        engine.process(Signal(device, SignalKind.SEEN, at + HOUR_MS))
    return sum(len(value) for value in engine.states.values()) / max(1, len(engine.states))


def run_bench(plan: BenchPlan, broker: str = "") -> dict[str, Any]:
    """Everything, in order; returns the figures and the parameters."""
    from streams.broker import FETCH_MAX_WAIT_MS, EmbeddedBroker, free_port

    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"kbwatch-bench-{uuid.uuid4().hex[:6]}"
    workdir.mkdir(parents=True)
    embedded = None if broker else EmbeddedBroker(log_path=workdir / "broker.log").start()
    bootstrap = broker or (embedded.bootstrap if embedded else "")
    try:
        records = fleet_records(plan)
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        keying = "keyed by device" if plan.keyed else "unkeyed"
        progress(
            f"producing {len(records):,} records to {topic} ({plan.partitions} partitions, {keying})"
            f" on {bootstrap}"
        )
        asyncio.run(create_topic(bootstrap, topic, plan.partitions))
        asyncio.run(produce(bootstrap, topic, records, device_keys(records) if plan.keyed else None))
        count = len(records)
        faust_rate = None
        if not plan.skip_peers:
            progress("peer: a faust-streaming agent with a table")
            faust_rate = peer("faust", bootstrap, topic, count, plan.partitions, workdir)
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        base = Settings.from_env(
            {},
            broker=bootstrap,
            partitions=plan.partitions,
            web_port=free_port(),
            session_timeout_seconds=20.0,
            rebalance_timeout_seconds=6.0,
            data_dir=str(workdir / "data"),
            log_level="warning",
            store=plan.store,
            sieve_client=plan.sieve_client,
            event_loop=plan.event_loop,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS if embedded is not None else None,
        )
        settings = replace(base.isolated(prefix), events_topic=topic)
        from streams.topics import ensure_topics

        broker_pid = embedded.pid if embedded is not None else None
        rounds: list[Round] = []
        for number in range(1, plan.rounds + 1):
            of = f" (round {number} of {plan.rounds})" if plan.rounds > 1 else ""
            progress(f"ceiling: bare aiokafka getmany + orjson.loads{of}")
            ceiling_rate = asyncio.run(ceiling(bootstrap, topic, count))
            quix_rate = None
            if not plan.skip_peers:
                progress(f"peer: Quix Streams with its state store{of}")
                quix_rate = peer("quix", bootstrap, topic, count, plan.partitions, workdir)
            # Each round's worker starts afresh: its own group, topics and state.
            own = settings if number == 1 else settings.isolated(f"{prefix}-round{number}")
            own = replace(own, events_topic=topic, data_dir=f"{settings.data_dir}-round{number}")
            asyncio.run(ensure_topics(own))
            progress(f"product: a kbwatch worker, first record to last{of}")
            run, rss = product(own, workdir, count, broker_pid)
            rounds.append(Round(ceiling_rate, quix_rate, run, rss))
        single = median_round(rounds).product
        product_rate = statistics.median(round_.product_rate for round_ in rounds)
        ceiling_rate = statistics.median(round_.ceiling_rate for round_ in rounds)
        quix_rates = [round_.quix_rate for round_ in rounds if round_.quix_rate]
        quix_rate = statistics.median(quix_rates) if quix_rates else None
        peak_rss = max(round_.peak_rss for round_ in rounds)
        several = None
        if plan.workers > 1:
            progress(f"scaling: {plan.workers} workers in one consumer group")
            scale_settings = replace(settings.isolated(f"{prefix}-scale"), events_topic=topic)
            asyncio.run(ensure_topics(scale_settings))
            several = several_workers(scale_settings, workdir, count, plan.workers, broker_pid)
        offered = product_rate / 2
        progress(f"alert latency: {plan.incidents} boot loops in noise at {offered:,.0f} records/s")
        latency_settings = settings.isolated(f"{prefix}-latency")
        asyncio.run(ensure_topics(latency_settings))
        latencies = sorted(latency(latency_settings, workdir, offered, plan.incidents))
        progress(f"state bytes per device at {plan.state_devices:,} devices")
        state_bytes = state_bytes_per_device(plan.state_devices)
    except BaseException:
        progress(f"the bench failed; its logs and state are kept in {workdir}")
        raise
    finally:
        if embedded is not None:
            embedded.stop()
    shutil.rmtree(workdir, ignore_errors=True)  # state of peers and workers, logs: all spent
    figures = _figures(
        plan, count, ceiling_rate, faust_rate, quix_rate, product_rate, latencies, state_bytes, peak_rss
    )
    figures["workers"] = plan.workers
    figures["rounds"] = plan.rounds
    figures["round_records_per_second"] = [round(round_.product_rate) for round_ in rounds]
    figures["round_ceiling_records_per_second"] = [round(round_.ceiling_rate) for round_ in rounds]
    figures["round_quix_records_per_second"] = [
        round(round_.quix_rate) if round_.quix_rate else None for round_ in rounds
    ]
    workers_rate = several.records_per_second if several is not None else None
    figures["workers_records_per_second"] = round(workers_rate) if workers_rate else None
    figures["speedup_over_one_worker"] = round(workers_rate / product_rate, 2) if workers_rate else None
    # How much of the machine each run took: what says whether more workers can help here.
    figures["cpu_cores"] = {"worker": single.worker_cores[0], "broker": single.broker_cores}
    figures["workers_cpu_cores"] = (
        {"workers": list(several.worker_cores), "broker": several.broker_cores}
        if several is not None and several.records_per_second
        else None
    )
    return figures


def _figures(
    plan: BenchPlan,
    count: int,
    ceiling_rate: float,
    faust_rate: float | None,
    quix_rate: float | None,
    product_rate: float,
    latencies: list[float],
    state_bytes: float,
    peak_rss: int,
) -> dict[str, Any]:
    def quantile(share: float) -> float | None:
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, int(share * len(latencies)))]

    return {
        "records_per_second": round(product_rate),
        "ceiling_records_per_second": round(ceiling_rate),
        "ratio_to_ceiling": round(product_rate / ceiling_rate, 3),
        "peer_records_per_second": round(faust_rate) if faust_rate else None,
        "speedup_over_peer": round(product_rate / faust_rate, 2) if faust_rate else None,
        "quix_records_per_second": round(quix_rate) if quix_rate else None,
        "speedup_over_quix": round(product_rate / quix_rate, 3) if quix_rate else None,
        "alert_latency_p50_seconds": quantile(0.5),
        "alert_latency_p99_seconds": quantile(0.99),
        "alert_latency_samples": len(latencies),
        "alert_latency_mean_seconds": statistics.fmean(latencies) if latencies else None,
        "state_bytes_per_device": round(state_bytes, 1),
        "peak_rss_bytes": peak_rss,
        "records": count,
        "devices": plan.devices if not plan.input_file else None,
        "noise_per_hour": plan.noise_per_hour if not plan.input_file else None,
        "input": plan.input_file or "simulated",
        "partitions": plan.partitions,
        "keyed": plan.keyed,
        "store": plan.store,
        "sieve_client": plan.sieve_client,
        "event_loop": plan.event_loop,
        "incidents": plan.incidents,
        "state_devices": plan.state_devices,
        "machine": f"{os.cpu_count()} cores, {_cpu_model()}",
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def table(figures: dict[str, Any]) -> str:
    """The figures for a person."""
    rows = [
        ("kbwatch worker", figures["records_per_second"], ""),
        (
            "ceiling (aiokafka + orjson)",
            figures["ceiling_records_per_second"],
            f"ratio {figures['ratio_to_ceiling']}",
        ),
        (
            "faust-streaming agent",
            figures["peer_records_per_second"],
            f"speedup {figures['speedup_over_peer']}",
        ),
        ("Quix Streams", figures["quix_records_per_second"], f"speedup {figures['speedup_over_quix']}"),
    ]
    if figures.get("workers_records_per_second"):
        rows.insert(
            1,
            (
                f"{figures['workers']} kbwatch workers",
                figures["workers_records_per_second"],
                f"speedup {figures['speedup_over_one_worker']} over one",
            ),
        )
    lines = [
        f"{name:<30} {rate if rate is not None else 'n/a':>12} records/s  {note}" for name, rate, note in rows
    ]
    p50, p99 = figures["alert_latency_p50_seconds"], figures["alert_latency_p99_seconds"]
    lines.append(f"alert latency p50 {p50} s, p99 {p99} s over {figures['alert_latency_samples']} incidents")
    lines.append(_cpu_line(figures))
    state, rss = figures["state_bytes_per_device"], figures["peak_rss_bytes"]
    lines.append(f"state {state} bytes/device; worker peak RSS {rss:,} bytes")
    lines.append(f"{figures['records']:,} records, {figures['partitions']} partitions, {figures['machine']}")
    return "\n".join(lines)


def _cpu_line(figures: dict[str, Any]) -> str:
    """`cpu cores: worker 0.99, broker 0.13; 2 workers 0.85 + 0.84, broker 0.28`."""

    def broker(share: float | None) -> str:
        return f", broker {share}" if share is not None else ""

    one = figures["cpu_cores"]
    text = f"cpu cores: worker {one['worker']}{broker(one['broker'])}"
    several = figures.get("workers_cpu_cores")
    if several:
        shares = " + ".join(str(share) for share in several["workers"])
        text += f"; {len(several['workers'])} workers {shares}{broker(several['broker'])}"
    return text
