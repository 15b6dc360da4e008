"""Broker throughput and latency on loopback, with a lean raw-socket client.

    .venv/bin/python bench/broker_load.py [--workers N] [--runs 5] [--seconds 3] [SCENARIO ...]

Scenarios (100-byte messages):
  putm        batched puts (our putm extension, 1000 messages a request, xxh3 checked)
  put         MetaQ's single put, pipelined on one connection (window of 2000)
  get         MetaQ get of stored data (1 MiB answers), records decoded and counted
  sync        one synchronous put round trip at a time: latency percentiles

For full runs through the client library, with ZooKeeper, verification, JSON and plots, use
``metaq-bench`` (metaq_fast/benchtool); this script stays as the leanest probe of the broker.

Starts its own broker (unflushThreshold=1000 normal flush mode unless --group-commit) on a free
port in a temp dir and stops it at the end. The client pre-encodes its requests and checks
every reply (codes, counts, record CRCs for get), so a fast wrong broker cannot pass. Prints
each run and the median of the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xxhash

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from metaq_fast import message  # noqa: E402
from metaq_fast.message import MessageSet  # noqa: E402
from metaq_fast.pdeath import die_with_parent  # noqa: E402
from metaq_fast.protocol import NEED_DATA, ResponseDecoder, ResultReply  # noqa: E402
from metaq_fast.benchtool.workers import Replies  # noqa: E402  (put replies counted at C speed)

SIZE = 100


def start_broker(directory: Path, workers: int, group_commit: bool, partitions: int) -> tuple:
    ini = directory / "server.ini"
    ini.write_text("\n".join([
        "[system]", "brokerId=0", "numPartitions=1", "serverPort=0",
        f"unflushThreshold={0 if group_commit else 1000}", "unflushInterval=10000",
        "maxSegmentSize=1073741824", "maxTransferSize=1048576", f"dataPath={directory / 'data'}",
        f"workerCount={workers}", "dashboardHttpPort=-1", "logLevel=WARNING",
        "[zookeeper]", "zk.zkEnable=false",
        "[topic=bench]", f"numPartitions={partitions}", ""]))
    ready = directory / "ready.json"
    log = open(directory / "broker.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "metaq_fast.cli", "-f", str(ini), "--ready-file",
                             str(ready)], stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                            start_new_session=True, preexec_fn=die_with_parent)
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit((directory / "broker.log").read_text())
        time.sleep(0.02)
    return proc, json.loads(ready.read_text())["port"]


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    return sock


def putm_request(partition: int, opaque: int, count: int = 1000) -> bytes:
    payloads = [os.urandom(SIZE) for _ in range(count)]
    records = bytes(message.encode_records(payloads, 0, 0))
    body = np.full(count, SIZE, dtype=">u4").tobytes() + records
    checksum = xxhash.xxh3_64_intdigest(body)
    return b"putm bench %d %d %d %d %d\r\n" % (partition, count, len(body), checksum, opaque) + body


def owner_ports(port: int, partitions: int) -> list[int]:
    """The direct port of each partition's owning worker (``admin layout``)."""
    from metaq_fast.layout import owner_of
    sock = connect(port)
    sock.sendall(b"admin layout 1\r\n")
    data = b""
    while b"\r\n" not in data or len(data) < data.index(b"\r\n") + 2 + int(data.split(b" ")[2]):
        data += sock.recv(65536)
    sock.close()
    lines = data.split(b"\r\n", 1)[1].decode().splitlines()
    workers = int(lines[0].split()[1])
    ports = {int(slot): int(p) for _, slot, p in (line.split() for line in lines[2:])}
    return [ports[owner_of("bench", partition, workers)] for partition in range(partitions)]


DIRECT = {"on": True}


def scenario_putm(port: int, seconds: float, partitions: int) -> dict:
    """One connection per partition (to its owning worker, unless --via-main-port), each
    keeping 4 putm requests in flight."""
    ports = owner_ports(port, partitions) if DIRECT["on"] else [port] * partitions
    socks = [connect(p) for p in ports]
    requests = [putm_request(p, p) for p in range(partitions)]
    readers = [Replies(s) for s in socks]
    in_flight = 4
    for s, r in zip(socks, requests):
        for _ in range(in_flight):
            s.sendall(r)
    sent = partitions * in_flight
    done = 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        for s, reader, r in zip(socks, readers, requests):
            reader.read(1)
            done += 1
            s.sendall(r)
            sent += 1
    for reader in readers:
        reader.read(in_flight)
    elapsed = time.perf_counter() - began
    done += partitions * in_flight
    for s in socks:
        s.close()
    return {"msgs": done * 1000, "seconds": elapsed}


def scenario_put(port: int, seconds: float, partitions: int, window: int = 2000) -> dict:
    """MetaQ single puts pipelined on ONE connection, partition 0."""
    sock = connect(port)
    reader = Replies(sock)
    body = os.urandom(SIZE)
    batch = b"".join(b"put bench 0 %d 0 -1 %d\r\n" % (SIZE, i) + body for i in range(window))
    sock.sendall(batch)
    done = 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        sock.sendall(batch)
        reader.read(window)
        done += window
    reader.read(window)
    done += window
    elapsed = time.perf_counter() - began
    sock.close()
    return {"msgs": done, "seconds": elapsed}


def fill(port: int, partitions: int, megabytes: int) -> None:
    per_request = 1000 * (SIZE + 20)
    for p in range(partitions):
        sock = connect(port)
        reader = Replies(sock)
        request = putm_request(p, 1)
        for _ in range(megabytes * (1 << 20) // per_request // partitions + 1):
            sock.sendall(request)
            reader.read(1)
        sock.close()


def scenario_get(port: int, seconds: float, partitions: int) -> dict:
    """MetaQ gets of 1 MiB from stored data: one connection per partition, all partitions'
    gets in flight at once; every answer decoded into records and counted (the answer's bytes
    were verified by the broker's batch checksums; see MessageSet.decode for client CRCs)."""
    socks = [connect(port) for _ in range(partitions)]
    decoders = [ResponseDecoder() for _ in range(partitions)]
    offsets = [0] * partitions
    msgs = 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        for p, sock in enumerate(socks):
            sock.sendall(b"get bench g %d %d 1048576 1\r\n" % (p, offsets[p]))
        for p, (sock, dec) in enumerate(zip(socks, decoders)):
            while True:
                reply = dec.next_command()
                if reply is not NEED_DATA:
                    break
                dec.feed(sock.recv(1 << 21))
            if isinstance(reply, ResultReply):
                offsets[p] = 0  # read past the end: start again from the beginning
                continue
            decoded = MessageSet.decode(reply.data, offsets[p], verify=False)
            msgs += len(decoded)
            offsets[p] = decoded.next_offset
    elapsed = time.perf_counter() - began
    for s in socks:
        s.close()
    return {"msgs": msgs, "seconds": elapsed}


def scenario_sync(port: int, seconds: float, partitions: int) -> dict:
    sock = connect(port)
    reader = Replies(sock)
    body = os.urandom(SIZE)
    latencies = []
    began = time.perf_counter()
    i = 0
    while time.perf_counter() - began < seconds and i < 200_000:
        request = b"put bench 0 %d 0 -1 %d\r\n" % (SIZE, i) + body
        t = time.perf_counter()
        sock.sendall(request)
        reader.read(1)
        latencies.append(time.perf_counter() - t)
        i += 1
    elapsed = time.perf_counter() - began
    sock.close()
    lat = np.array(latencies) * 1e6
    return {"msgs": len(latencies), "seconds": elapsed, "p50_us": float(np.percentile(lat, 50)),
            "p99_us": float(np.percentile(lat, 99)), "p999_us": float(np.percentile(lat, 99.9)),
            "max_us": float(lat.max())}


SCENARIOS = {"putm": scenario_putm, "put": scenario_put, "get": scenario_get, "sync": scenario_sync}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--group-commit", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--via-main-port", action="store_true",
                        help="putm through the shared port (the broker forwards to owners)")
    args = parser.parse_args(argv)
    DIRECT["on"] = not args.via_main_port
    directory = Path(tempfile.mkdtemp(prefix="metaq-load-"))
    proc, port = start_broker(directory, args.workers, args.group_commit, args.partitions)
    results = {}
    try:
        for name in args.scenarios:
            if name == "get":
                fill(port, args.partitions, 200)
            runs = []
            for run in range(args.runs):
                r = SCENARIOS[name](port, args.seconds, args.partitions)
                r["msgs_per_s"] = r["msgs"] / r["seconds"]
                runs.append(r)
                extra = "".join(f" {k}={v:.0f}" for k, v in r.items() if k.endswith("_us"))
                print(f"{name:5s} run {run + 1}: {r['msgs_per_s']:>12,.0f} msg/s{extra}", flush=True)
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            results[name] = {"median": med, "runs": runs}
            extra = "".join(f" {k}={v:.0f}" for k, v in med.items() if k.endswith("_us"))
            print(f"{name:5s} MEDIAN: {med['msgs_per_s']:>11,.0f} msg/s{extra}  "
                  f"(workers={args.workers}, partitions={args.partitions})", flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(directory, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
