"""The results of ``metaq-bench``: the JSON document, the text table, and ``--compare``.

Imports: stdlib, numpy, metaq_fast (version), benchtool.payload (histograms). Pure functions of
the run dictionaries ``runner.Runner.run_once`` returns; no I/O except ``write_json``/``load``.

JSON document (``--json``), version 1::

    tool, version, format, scenario, started_at, command
    config     the options of the run (size, messages or duration, producers, ...)
    cluster    local: brokers, workerCount, unflushThreshold, ... of the brokers; else {zk}
    machine    cpu_count, cpu_model, memory_bytes, python, platform
    results    {produce, consume}: messages, bytes, seconds, msgs_per_s, mb_per_s (MB = 10^6
               bytes of payload); medians over the runs
    latency_ms {ack, end_to_end}: count, mean, min, p50, p90, p99, p999, max (medians over runs)
    verification  summed over runs: acked, failed, delivered, unique, missing, duplicates,
               corrupt, foreign, unacked_delivered, phantom, ok
    runs       one entry per run: the same figures, latency histograms, samples every 10 ms
               and per_second throughput (messages counted in each whole second since t0)
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

from .. import __version__

FORMAT = 1
PHASES = ("produce", "consume")
LATENCY_KEYS = ("p50", "p90", "p99", "p999", "max")
LABELS = {
    "produce": ("produce", "read back (verify)"),
    "consume": ("fill (produce)", "consume"),
    "e2e": ("produce", "consume"),
    "metaq-put": ("metaq put", "read back (verify)"),
}
SHORT_PHASE_S = 1.0
HEADLINE = {"produce": "produce", "consume": "consume", "e2e": "consume", "metaq-put": "produce"}


def _median(values):
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(values) if values else None


def per_second(samples: dict) -> dict:
    """0.1 s sample counts -> messages in each whole second since t0 (the last may be partial)."""
    interval = samples["interval_s"]
    step = max(1, round(1.0 / interval))
    out = {}
    for phase in PHASES:
        s = samples.get(phase) or {}
        counts = s.get("counts", [])
        offset = int(round(s.get("start_s", 0.0) / interval))
        full = [0] * offset + list(counts)
        out[phase] = [sum(full[i : i + step]) for i in range(0, len(full), step)]
    return out


def config_of(args) -> dict:
    keys = ("scenario", "messages", "duration", "size", "random_payload", "producers", "consumers",
            "partitions", "batch_size", "linger_ms", "api", "rate", "in_flight", "put_window", "put_chunk",
            "fetch_bytes", "max_fetch_delay_ms", "topic", "runs", "local", "brokers", "workers",
            "set", "zk", "zk_root")
    out = {}
    for key in keys:
        value = getattr(args, key, None)
        out[key] = str(value) if isinstance(value, Path) else value
    out["config"] = str(args.config) if getattr(args, "config", None) else None
    if out.get("duration") is not None:
        out["messages"] = None
    return out


def assemble(args, runs: list[dict], cluster: dict, machine: dict, started: str) -> dict:
    for run in runs:
        run["per_second"] = per_second(run["samples"])
    results = {}
    for phase in PHASES:
        results[phase] = {key: _median([r[phase][key] for r in runs])
                          for key in ("messages", "bytes", "seconds", "msgs_per_s", "mb_per_s")}
    latency = {}
    for kind, field in (("ack", "ack_latency"), ("end_to_end", "e2e_latency")):
        summaries = [r[field]["summary_ms"] for r in runs if r[field]["summary_ms"].get("count")]
        if summaries:
            latency[kind] = {key: _median([s[key] for s in summaries])
                             for key in ("count", "mean", "min", *LATENCY_KEYS)}
    lags = [r["replication_lag"] for r in runs if r.get("replication_lag")]
    replication = ({key: _median([lag[key] for lag in lags])
                    for key in ("samples", "bytes_p50", "bytes_max", "ms_p50", "ms_max")}
                   if lags else None)
    checks = [r["verification"] for r in runs]
    verification = {key: sum(c[key] for c in checks) for key in (
        "acked", "failed", "delivered", "unique", "missing", "duplicates", "corrupt", "foreign",
        "unacked_delivered", "phantom")}
    verification["ok"] = all(c["ok"] for c in checks)
    verification["examples"] = [e for c in checks for e in c["examples"]][:10]
    return {"tool": "metaq-bench", "version": __version__, "format": FORMAT,
            "scenario": args.scenario, "headline": HEADLINE[args.scenario], "started_at": started,
            "command": " ".join(["metaq-bench", *sys.argv[1:]]), "config": config_of(args),
            "cluster": cluster, "machine": machine, "results": results, "latency_ms": latency,
            "replication_lag": replication,
            "verification": verification, "runs": runs}


def write_json(doc: dict, path) -> None:
    Path(path).write_text(json.dumps(doc, indent=1, default=_jsonable) + "\n")


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def load(path) -> dict:
    doc = json.loads(Path(path).read_text())
    if doc.get("tool") != "metaq-bench":
        raise ValueError(f"{path} is not a metaq-bench result (no \"tool\": \"metaq-bench\")")
    return doc


# ---- text ------------------------------------------------------------------------------------


def settings_line(doc: dict) -> str:
    c = doc["config"]
    amount = f"{c['duration']:g} s" if c.get("duration") is not None else f"{c['messages']:,} messages"
    parts = [f"{c['size']} B {'random' if c.get('random_payload') else 'fixed'} payloads", amount,
             f"{c['producers']} producer(s)", f"{c['consumers']} consumer(s)"]
    if c.get("rate"):
        parts.append(f"paced at {c['rate']:,.0f} msg/s")
    if doc["scenario"] == "metaq-put":
        parts.append(f"put window {c['put_window']}")
    else:
        parts.append(f"batch {c['batch_size']} ({c['api']})")
        if c["api"] == "send":
            parts.append(f"linger {c['linger_ms']:g} ms")
    cl = doc.get("cluster") or {}
    if "brokers" in cl:
        slaves = f" + {cl['slaves']} slave(s) each" if cl.get("slaves") else ""
        parts.append(f"local: {cl['brokers']} broker(s){slaves} x {cl['numPartitions']} partitions, "
                     f"workerCount={cl['workerCount']}, unflushThreshold={cl['unflushThreshold']}, "
                     f"unflushInterval={cl['unflushInterval']}")
        extra = {k: v for k, v in (cl.get("settings") or {}).items() if k not in ("unflushThreshold", "unflushInterval")}
        if extra:
            parts.append(" ".join(f"{k}={v}" for k, v in extra.items()))
    elif cl.get("zk"):
        parts.append(f"cluster {cl['zk']}")
    return ", ".join(parts)


def table(doc: dict) -> str:
    labels = LABELS[doc["scenario"]]
    runs = len(doc["runs"])
    lines = [f"metaq-bench {doc['scenario']}: {settings_line(doc)}"]
    if runs > 1:
        lines.append(f"medians of {runs} runs")
    lines.append("")
    lines.append(f"{'phase':<20}{'messages':>12}{'msg/s':>13}{'MB/s':>9}{'seconds':>10}")
    for phase, label in zip(PHASES, labels):
        r = doc["results"][phase]
        mark = " *" if phase == doc["headline"] else ""
        lines.append(f"{label:<20}{r['messages']:>12,.0f}{r['msgs_per_s']:>13,.0f}{r['mb_per_s']:>9,.1f}"
                     f"{r['seconds']:>10.3f}{mark}")
    lines.append("(* the scenario's figure; MB = 10^6 bytes of payload)")
    if doc["results"][doc["headline"]]["seconds"] < SHORT_PHASE_S:
        lines.append(f"note: the timed phase lasted under {SHORT_PHASE_S:g} s: start-up, the consumers' "
                     f"read-ahead and caches dominate it; use more --messages or --duration")
    lines.append("")
    if doc["latency_ms"]:
        lines.append(f"{'latency (ms)':<20}" + "".join(f"{k:>9}" for k in LATENCY_KEYS))
        names = {"ack": "ack (send->ack)", "end_to_end": "end to end"}
        for kind in ("end_to_end", "ack"):
            s = doc["latency_ms"].get(kind)
            if s:
                lines.append(f"{names[kind]:<20}" + "".join(f"{s[k]:>9.3f}" for k in LATENCY_KEYS))
        lines.append("")
    lag = doc.get("replication_lag")
    if lag:
        lines.append(f"replication lag while producing ({lag['samples']:.0f} samples): median "
                     f"{lag['bytes_p50']:,.0f} B / {lag['ms_p50']:,.0f} ms, max "
                     f"{lag['bytes_max']:,.0f} B / {lag['ms_max']:,.0f} ms")
        lines.append("")
    lines.append(verification_line(doc["verification"]))
    return "\n".join(lines)


def verification_line(v: dict) -> str:
    status = "OK" if v["ok"] else "FAILED"
    text = (f"verify: {status}: {v['acked']:,} acknowledged, {v['unique']:,} consumed "
            f"({v['delivered']:,} deliveries), {v['missing']:,} missing, {v['duplicates']:,} duplicate, "
            f"{v['corrupt']:,} corrupt, {v['failed']:,} failed sends")
    if v.get("foreign"):
        text += f", {v['foreign']:,} from other runs (ignored)"
    if v.get("phantom"):
        text += f", {v['phantom']:,} never sent"
    for example in v.get("examples", [])[:3]:
        text += f"\n  e.g. {example}"
    return text


def run_line(index: int, run: dict) -> str:
    p, c = run["produce"], run["consume"]
    lat = run["e2e_latency"]["summary_ms"] if run["e2e_latency"]["summary_ms"].get("count") else None
    text = (f"run {index}: produce {p['msgs_per_s']:,.0f} msg/s, consume {c['msgs_per_s']:,.0f} msg/s"
            + (f", e2e p99 {lat['p99']:.2f} ms" if lat else "")
            + f", verify {'OK' if run['verification']['ok'] else 'FAILED'}")
    return text


# ---- compare ---------------------------------------------------------------------------------


def metrics(doc: dict) -> dict[str, tuple[float, bool]]:
    """name -> (value, higher is better)."""
    out = {}
    labels = LABELS[doc["scenario"]]
    for phase, label in zip(PHASES, labels):
        r = doc["results"].get(phase) or {}
        if r.get("msgs_per_s") is not None:
            out[f"{phase} msg/s"] = (r["msgs_per_s"], True)
            out[f"{phase} MB/s"] = (r["mb_per_s"], True)
    for kind in ("end_to_end", "ack"):
        s = doc.get("latency_ms", {}).get(kind)
        if s:
            for key in LATENCY_KEYS:
                out[f"{kind.replace('_', '-')} latency {key} ms"] = (s[key], False)
    return out


def compare(a: dict, b: dict, name_a: str = "A", name_b: str = "B") -> str:
    lines = [f"A = {name_a}: {a['scenario']}, {settings_line(a)}",
             f"B = {name_b}: {b['scenario']}, {settings_line(b)}"]
    diffs = []
    for section in ("config", "cluster"):
        ca, cb = a.get(section) or {}, b.get(section) or {}
        for key in sorted(set(ca) | set(cb)):
            if key in ("dataPath",):
                continue
            if ca.get(key) != cb.get(key):
                diffs.append(f"{key}: {ca.get(key)!r} -> {cb.get(key)!r}")
    if diffs:
        lines.append("differences: " + "; ".join(diffs))
    lines.append("")
    lines.append(f"{'metric':<30}{'A':>14}{'B':>14}{'B/A':>9}")
    ma, mb = metrics(a), metrics(b)
    for name in [n for n in ma if n in mb]:
        va, higher = ma[name]
        vb = mb[name][0]
        ratio = vb / va if va else math.inf
        if abs(ratio - 1) < 0.02:
            verdict = "same"
        else:
            verdict = "better" if (ratio > 1) == higher else "worse"
        fmt = "{:>14,.0f}" if "msg/s" in name else "{:>14,.3f}"
        lines.append(f"{name:<30}" + fmt.format(va) + fmt.format(vb) + f"{ratio:>8.2f}x  {verdict}")
    va, vb = a["verification"]["ok"], b["verification"]["ok"]
    lines.append("")
    lines.append(f"verification: A {'OK' if va else 'FAILED'}, B {'OK' if vb else 'FAILED'}")
    return "\n".join(lines)
