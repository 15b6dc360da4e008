"""Runs one ``metaq-bench`` scenario: cluster, child processes, timing, verification.

Imports: stdlib, numpy, kazoo (through zk.session), metaq_fast.zk / protocol, and the other
benchtool modules. The argument namespace comes from ``cli.bench_main``.

Phases of a run (``t0`` = the moment the parent sets ``go``, CLOCK_MONOTONIC):

=============  ==================================================================================
scenario       what is timed
=============  ==================================================================================
produce        producers send everything (the client library: ``send_batch``, or ``send`` per
               message with ``--api send``); then consumers read it all back, timed as well but
               reported as the verification read.
consume        producers fill the topic (reported as ``produce``), then consumers start from the
               offsets the partitions had before the fill and read everything: ``consume``.
e2e            consumers settle first, then producers and consumers run at once; latency = time
               the consumer's ``poll`` returned - the send timestamp inside the payload.
metaq-put      like produce, but each producer process pipelines MetaQ's single ``put`` on one
               connection to a broker's main port (``--put-window`` puts in flight).
=============  ==================================================================================

Before a run the bench writes, for a group of its own (``metaq-bench-<run id>``), each
partition's current end offset as the group's committed offset in ZooKeeper, so consumers start
exactly where this run's messages begin, on a fresh local cluster or a shared one alike; the
group's nodes are deleted afterwards. Consumption ends when the consumers hold as many distinct
messages as were acknowledged, or after ``--idle-timeout`` seconds without a new one (then the
rest is reported missing). ``RunAborted`` is raised on Ctrl-C/SIGTERM; everything started is
stopped by the ``finally`` blocks on every path.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import secrets
import socket
import sys
import time
from datetime import datetime, timezone

import numpy as np

from .payload import LatencyHistogram, Verdict, verdict
from .workers import SAMPLE_INTERVAL_S, Shared, Spec, consumer_process, producer_process, put_process

SCENARIOS = ("produce", "consume", "e2e", "metaq-put")
READY_TIMEOUT_S = 90.0
TOPIC_WAIT_S = 3.0  # --zk: how long a topic may take to appear (a broker just registering)
RESULT_TIMEOUT_S = 120.0
LAG_SAMPLE_S = 0.25  # --slaves: how often the slaves' lag is asked for while producing
LONG_MAX = 2**63 - 1


class BenchError(Exception):
    """The run could not be carried out (a child failed, the cluster died, a timeout)."""


class RunAborted(BaseException):
    """Ctrl-C or SIGTERM: stop everything and exit."""


def machine_facts() -> dict:
    facts = {"cpu_count": os.cpu_count(), "python": sys.version.split()[0],
             "python_implementation": platform.python_implementation(),
             "platform": platform.platform(), "machine": platform.machine()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    facts["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    facts["memory_bytes"] = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return facts


class Group:
    """``n`` child processes of one kind, with their shared objects and results."""

    def __init__(self, ctx, kind: str, target, n: int, spec: Spec):
        self.kind = kind
        self.n = n
        self.shared = Shared(ctx, n)
        self.procs = [ctx.Process(target=target, args=(spec, i, self.shared), daemon=True,
                                  name=f"metaq-bench-{kind}-{i}") for i in range(n)]
        self.results: dict[int, dict] = {}
        self.t0 = 0

    def start(self) -> None:
        for proc in self.procs:
            proc.start()

    def poll(self, timeout_s: float = 0.0) -> None:
        """Take results off the queue; a child's error becomes a ``BenchError``."""
        import queue
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                remaining = deadline - time.monotonic()
                item = (self.shared.results.get(timeout=remaining) if remaining > 0
                        else self.shared.results.get_nowait())
            except queue.Empty:
                return
            kind, index, payload = item
            if kind == "error":
                raise BenchError(f"a {self.kind} process failed: {payload}")
            self.results[index] = payload
            deadline = 0  # got one: drain the rest without waiting

    def check_alive(self) -> None:
        for i, proc in enumerate(self.procs):
            if i not in self.results and proc.exitcode is not None:
                self.poll(1.0)  # its result may still be in the pipe
                if i not in self.results:
                    raise BenchError(f"{self.kind} process {i} (pid {proc.pid}) exited with "
                                     f"{proc.exitcode} without a result")

    def all_ready(self) -> bool:
        return all(self.shared.ready[:])

    def go(self, t0: int) -> None:
        self.t0 = t0
        self.shared.t0.value = t0
        self.shared.go.set()

    def progress(self) -> int:
        return sum(self.shared.progress[:])

    def done(self) -> bool:
        return len(self.results) == self.n

    def shutdown(self) -> None:
        """Stop every child (by its own pid): ask, wait (reading results meanwhile, so no child
        blocks on a full pipe), then SIGTERM, then SIGKILL."""
        self.shared.stop.set()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(p.is_alive() for p in self.procs):
            try:
                self.poll(0.05)
            except BenchError:
                pass
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self.procs:
            if proc.pid is not None:
                proc.join(5)
                if proc.is_alive():
                    proc.kill()
                    proc.join(5)
        self.shared.results.close()
        self.shared.results.cancel_join_thread()


class Progress:
    """The live line on stderr: ``\\r``-rewritten on a terminal, one line a second otherwise."""

    def __init__(self, enabled: bool, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last = {}
        self.last_print = 0.0
        self.shown = False

    def update(self, t0: int, counts: dict[str, int], note: str = "") -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last_print < (0.5 if self.tty else 1.0):
            return
        parts = []
        for name, count in counts.items():
            before, at = self.last.get(name, (0, now - 1e-9))
            self.last[name] = (count, now)
            if self.last_print:
                rate = (count - before) / max(now - at, 1e-9)
                parts.append(f"{name} {count:>12,} msg ({rate:>11,.0f} msg/s)")
            else:
                parts.append(f"{name} {count:>12,} msg")
        self.last_print = now
        line = f"[{(time.monotonic_ns() - t0) / 1e9:7.1f} s] " + "   ".join(parts) + (f"  {note}" if note else "")
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.enabled and self.tty and self.shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
        self.last = {}
        self.last_print = 0.0
        self.shown = False


# ---- offsets ---------------------------------------------------------------------------------


def end_offsets(view, topic: str, partitions: list[str], timeout_s: float = 10.0) -> dict[str, int]:
    """Current end offset of each partition (``"<brokerId>-<partition>"``), with MetaQ's
    ``offset`` command (the nearest valid offset to LONG_MAX is the end)."""
    from ..protocol import NEED_DATA, ResponseDecoder
    from ..zk.paths import parse_broker_url, parse_partition_string

    by_broker: dict[int, list[tuple[str, int]]] = {}
    for name in partitions:
        broker_id, number = parse_partition_string(name)
        by_broker.setdefault(broker_id, []).append((name, number))
    out = {}
    for broker_id, items in by_broker.items():
        url = view.broker_url(broker_id)
        if url is None:
            raise BenchError(f"broker {broker_id} is not registered in ZooKeeper")
        host, port = parse_broker_url(url)
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            request = b"".join(b"offset %s metaq-bench %d %d %d\r\n" % (topic.encode(), number, LONG_MAX, i + 1)
                               for i, (_name, number) in enumerate(items))
            sock.sendall(request)
            decoder = ResponseDecoder()
            for name, _number in items:
                while (reply := decoder.next_command()) is NEED_DATA:
                    data = sock.recv(65536)
                    if not data:
                        raise BenchError(f"broker {url} closed the connection")
                    decoder.feed(data)
                code = getattr(reply, "code", None)
                if code == 404:
                    out[name] = 0  # the broker creates a partition's files at its first put
                elif code == 200:
                    out[name] = int(bytes(reply.body))
                else:
                    raise BenchError(f"offset of {topic} {name} on {url}: {reply!r}")
    return out


def preset_group_offsets(zk, root: str, group: str, topic: str, offsets: dict[str, int]) -> None:
    from ..zk import paths
    for name, offset in offsets.items():
        zk.create(paths.offset_path(root, group, topic, name), paths.encode_offset(-1, offset),
                  makepath=True)


def delete_group(zk, root: str, group: str) -> None:
    from ..zk import paths
    try:
        zk.delete(paths.consumer_group_path(root, group), recursive=True)
    except Exception:  # noqa: BLE001 - best effort cleanup of our own nodes
        pass


# ---- the runner ------------------------------------------------------------------------------


def split(total: int, parts: int) -> tuple:
    return tuple(total // parts + (1 if i < total % parts else 0) for i in range(parts))


class Runner:
    def __init__(self, args, log=None):
        self.args = args
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self.progress = Progress(bool(args.progress) or sys.stderr.isatty())
        self.cluster = None
        self.zk = None
        self.view = None
        self.groups: list[Group] = []
        self.lag_samples: list[tuple[int, int]] = []  # (bytes, ms) the slaves were behind
        self._next_lag_sample = 0.0

    # ---- set-up and tear-down -----------------------------------------------------------------

    def setup(self) -> str:
        args = self.args
        from ..zk.cluster import ClusterView
        from ..zk.session import open_client
        if args.local:
            from .cluster import LocalCluster, parse_settings
            self.cluster = LocalCluster(
                config=args.config, brokers=args.brokers, topic=args.topic,
                partitions=args.partitions, workers=args.workers,
                settings=parse_settings(args.set), data_dir=args.data_dir, keep=args.keep,
                log=self.log if not args.quiet else None, slaves=getattr(args, "slaves", 0))
            connect = self.cluster.start()
        else:
            connect = args.zk
        self.zk = open_client(connect)
        self.view = ClusterView(self.zk, args.zk_root)
        if self.cluster is not None:
            self.cluster.wait_published(self.zk, args.zk_root, self.cluster.partitions_total())
            self.cluster.wait_in_sync(self.zk, args.zk_root)
        else:
            deadline = time.monotonic() + TOPIC_WAIT_S
            while not self.view.publish_partitions(args.topic):
                if time.monotonic() > deadline:
                    raise BenchError(f"no broker publishes topic {args.topic!r} under "
                                     f"{connect}{args.zk_root} (configure it on the brokers)")
                time.sleep(0.1)
        return connect

    def teardown(self) -> None:
        for group in self.groups:
            try:
                group.shutdown()
            except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                self.log(f"metaq-bench: stopping {group.kind} processes: {exc}")
        self.groups = []
        if self.view is not None:
            self.view.close()
            self.view = None
        if self.zk is not None:
            try:
                self.zk.stop()
                self.zk.close()
            except Exception:  # noqa: BLE001
                pass
            self.zk = None
        if self.cluster is not None:
            self.cluster.stop()

    def run(self) -> dict:
        """Set up, run ``--runs`` times, tear down; returns the result document."""
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        try:
            connect = self.setup()
            runs = []
            for i in range(self.args.runs):
                runs.append(self.run_once(connect))
                if self.args.runs > 1 and not self.args.quiet:
                    from .report import run_line
                    self.log(run_line(i + 1, runs[-1]))
            cluster = self.cluster.describe() if self.cluster is not None else {"zk": connect}
        finally:
            self.progress.clear()
            self.teardown()
        from .report import assemble
        return assemble(self.args, runs, cluster, machine_facts(), started)

    # ---- one run --------------------------------------------------------------------------------

    def spec(self, connect: str, run_id: int, partitions_total: int) -> Spec:
        a = self.args
        producers = a.producers
        return Spec(
            zk=connect, zk_root=a.zk_root, topic=a.topic, size=a.size, run_id=run_id,
            group=f"metaq-bench-{run_id:08x}", producers=producers, consumers=a.consumers,
            partitions_total=partitions_total,
            counts=split(a.messages, producers) if a.duration is None else None,
            duration_s=a.duration, batch_size=a.batch_size, linger_ms=a.linger_ms,
            in_flight=a.in_flight, api=a.api, random_payload=a.random_payload,
            fetch_bytes=a.fetch_bytes, max_fetch_delay_ms=a.max_fetch_delay_ms, rate=a.rate,
            put_window=a.put_window, put_chunk=min(a.put_chunk, a.put_window),
            log_level="DEBUG" if a.verbose else "WARNING", fault=a.inject_fault)

    def start_group(self, kind: str, target, n: int, spec: Spec) -> Group:
        ctx = multiprocessing.get_context("spawn")
        group = Group(ctx, kind, target, n, spec)
        self.groups.append(group)
        group.start()
        return group

    def wait_ready(self, *groups: Group) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(g.all_ready() for g in groups):
            for g in groups:
                g.poll(0.02)
                g.check_alive()
            self.check_cluster()
            if time.monotonic() > deadline:
                raise BenchError(f"{'/'.join(g.kind for g in groups)} processes not ready after "
                                 f"{READY_TIMEOUT_S:g} s")

    def check_cluster(self) -> None:
        if self.cluster is not None and not self.cluster.alive():
            raise BenchError("a broker of the local cluster died; its log:\n"
                             + "\n".join(self.cluster.log_tail(i) for i in range(self.cluster.brokers)))

    def run_once(self, connect: str) -> dict:
        a = self.args
        run_id = secrets.randbits(32)
        subs = self.view.subscribe_partitions(a.topic)
        spec = self.spec(connect, run_id, len(subs))
        preset_group_offsets(self.zk, a.zk_root, spec.group, a.topic,
                             end_offsets(self.view, a.topic, subs))
        sender = put_process if a.scenario == "metaq-put" else producer_process
        try:
            if a.scenario == "e2e":
                consumers = self.start_group("consumer", consumer_process, a.consumers, spec)
                self.wait_ready(consumers)
                producers = self.start_group("producer", sender, a.producers, spec)
                self.wait_ready(producers)
                t0 = time.monotonic_ns()
                consumers.go(t0)
                producers.go(t0)
                self.watch(t0, producers, consumers)
            else:
                producers = self.start_group("producer", sender, a.producers, spec)
                self.wait_ready(producers)
                t0 = time.monotonic_ns()
                producers.go(t0)
                self.watch(t0, producers, None)
                self.progress.clear()
                consumers = self.start_group("consumer", consumer_process, a.consumers, spec)
                self.wait_ready(consumers)
                consumers.go(time.monotonic_ns())
                self.watch(t0, producers, consumers)
            self.progress.clear()
            return self.collect(spec, t0, producers, consumers)
        finally:
            for group in self.groups:
                group.shutdown()
            self.groups = []
            delete_group(self.zk, a.zk_root, spec.group)

    def watch(self, t0: int, producers: Group, consumers: Group | None) -> None:
        """Until the producers are done and (if given) the consumers have everything."""
        idle_since = None
        last = -1
        while True:
            for g in (producers, consumers):
                if g is not None:
                    g.poll(0.05)
                    g.check_alive()
            self.check_cluster()
            counts = {"produce": producers.progress()}
            if consumers is not None:
                counts["consume"] = consumers.progress()
            if not producers.done():
                self.sample_lag()
                self.progress.update(t0, counts)
                continue
            if consumers is None:
                return
            expected = sum(r["acked"] for r in producers.results.values())
            got = counts["consume"]
            if got >= expected:
                break
            now = time.monotonic()
            if got != last or idle_since is None:
                last, idle_since = got, now
            elif now - idle_since > self.args.idle_timeout:
                self.progress.clear()
                self.log(f"metaq-bench: consumers received nothing new for {self.args.idle_timeout:g} s "
                         f"({got:,} of {expected:,}); stopping them")
                break
            self.progress.update(t0, counts, "(waiting for the consumers)")
        consumers.shared.stop.set()
        deadline = time.monotonic() + RESULT_TIMEOUT_S
        while not consumers.done():
            consumers.poll(0.1)
            consumers.check_alive()
            if time.monotonic() > deadline:
                raise BenchError("consumer processes gave no result after being stopped")

    def sample_lag(self) -> None:
        """With slaves: how far behind they are, every ``LAG_SAMPLE_S`` while producing."""
        if self.cluster is None or not self.cluster.slaves:
            return
        now = time.monotonic()
        if now >= self._next_lag_sample:
            self._next_lag_sample = now + LAG_SAMPLE_S
            lag = self.cluster.replica_lag()
            if lag[0] >= 0:
                self.lag_samples.append(lag)

    def lag_summary(self) -> dict | None:
        samples, self.lag_samples = self.lag_samples, []
        if not samples:
            return None
        lag_bytes = np.array([b for b, _ms in samples])
        lag_ms = np.array([ms for _b, ms in samples])
        return {"samples": len(samples), "bytes_p50": float(np.median(lag_bytes)),
                "bytes_max": int(lag_bytes.max()), "ms_p50": float(np.median(lag_ms)),
                "ms_max": int(lag_ms.max())}

    def collect(self, spec: Spec, t0: int, producers: Group, consumers: Group) -> dict:
        size = spec.size
        prod = [producers.results[i] for i in range(producers.n)]
        cons = [consumers.results[i] for i in range(consumers.n)]
        sent = {i: r["sent"] for i, r in enumerate(prod)}
        failed = {i: r["failed"] for i, r in enumerate(prod) if r["failed"] is not None}
        check: Verdict = verdict(sent, failed, [r["state"] for r in cons])
        acked = sum(r["acked"] for r in prod)
        produce_s = max((r["end_ns"] for r in prod), default=t0) - t0
        ack_latency = LatencyHistogram()
        for r in prod:
            ack_latency.merge(r["latency"])
        e2e_latency = LatencyHistogram()
        if self.args.scenario == "e2e":  # otherwise the consumers started after the producers
            for r in cons:
                e2e_latency.merge(r["latency"])
        consume_t0 = consumers.t0
        last_ns = max((r["state"].last_ns for r in cons), default=consume_t0)
        consume_s = max(last_ns - consume_t0, 1)
        produce_s = max(produce_s, 1)

        def phase(messages: int, nanos: int) -> dict:
            seconds = nanos / 1e9
            return {"messages": int(messages), "bytes": int(messages) * size, "seconds": seconds,
                    "msgs_per_s": messages / seconds, "mb_per_s": messages * size / 1e6 / seconds}

        def merged(arrays) -> list[int]:
            length = max((len(a) for a in arrays), default=0)
            total = np.zeros(length, dtype=np.int64)
            for a in arrays:
                total[: len(a)] += a
            return total.tolist()

        errors = [f"producer {i}: {e}" for i, r in enumerate(prod) for e in r["errors"]]
        check.examples = (check.examples + errors)[:10]
        return {
            "run_id": f"{spec.run_id:08x}",
            "produce": phase(acked, produce_s),
            "consume": phase(check.unique, consume_s),
            "ack_latency": {"summary_ms": ack_latency.summary_ms(), "histogram": ack_latency.to_json()},
            "e2e_latency": {"summary_ms": e2e_latency.summary_ms(), "histogram": e2e_latency.to_json()},
            "samples": {"interval_s": SAMPLE_INTERVAL_S,
                        "produce": {"start_s": 0.0, "counts": merged([r["samples"] for r in prod])},
                        "consume": {"start_s": (consume_t0 - t0) / 1e9,
                                    "counts": merged([r["samples"] for r in cons])}},
            "verification": check.to_json(),
            "send_errors": errors[:10],
            "replication_lag": self.lag_summary(),
        }
