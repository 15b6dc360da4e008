"""``--plot FILE.png``: throughput over time and the latency histogram of a result document.

Imports: numpy, matplotlib (the ``bench`` extra; Agg backend, no display needed), benchtool.

Left panel: messages per second of each phase in 0.1 s buckets (smoothed over 0.5 s), every run
on one time axis from the run's start. Right panel: the latency distribution (log-scale time
axis, share of messages per bin) of all runs merged, with p50/p99/p999 marked; end-to-end
latency for e2e, send->ack latency otherwise.
"""

from __future__ import annotations

import numpy as np

from .payload import LatencyHistogram
from .report import LABELS, settings_line

COLOURS = {"produce": "tab:blue", "consume": "tab:orange"}
PLOT_BINS_PER_DECADE = 20
BUCKETS_WANTED = 50


def _phase_end(samples: dict) -> float:
    interval = samples["interval_s"]
    return max((s.get("start_s", 0.0) + len(s.get("counts", [])) * interval
                for s in (samples.get("produce") or {}, samples.get("consume") or {})), default=0.0)


def _nice_bucket(span_s: float) -> float:
    """A round bucket width giving about BUCKETS_WANTED points over ``span_s``."""
    for width in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60):
        if span_s / width <= BUCKETS_WANTED:
            return width
    return 60.0


def _rebinned(samples: dict, phase: str, bucket_s: float):
    """(bucket start times, msg/s in each bucket) of one phase; the phase's last, partial
    bucket is dropped unless it is the only one."""
    s = samples.get(phase) or {}
    counts = np.asarray(s.get("counts", []), dtype=float)
    if not len(counts):
        return np.empty(0), np.empty(0)
    interval = samples["interval_s"]
    step = max(1, int(round(bucket_s / interval)))
    offset = int(round(s.get("start_s", 0.0) / interval)) % step  # align to the time axis
    counts = np.concatenate([np.zeros(offset), counts])
    full = len(counts) // step
    if full == 0:
        sums, n = np.array([counts.sum()]), 1
    else:
        sums, n = counts[: full * step].reshape(full, step).sum(axis=1), full
    start = int(round(s.get("start_s", 0.0) / interval)) - offset
    t = (start + np.arange(n + 1) * step) * interval
    rate = np.append(sums / (step * interval), sums[-1] / (step * interval))  # "post" steps
    return t, rate


def plot(doc: dict, path) -> None:
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - matplotlib is in the bench extra
        raise RuntimeError("--plot needs matplotlib: pip install 'metaq_fast[bench]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.35, 1]})
    labels = dict(zip(("produce", "consume"), LABELS[doc["scenario"]]))
    span_s = max((_phase_end(run["samples"]) for run in doc["runs"]), default=1.0)
    bucket_s = _nice_bucket(span_s)
    for n, run in enumerate(doc["runs"]):
        samples = run["samples"]
        for phase in ("produce", "consume"):
            t, rate = _rebinned(samples, phase, bucket_s)
            if not len(t):
                continue
            left.step(t, rate, where="post", color=COLOURS[phase], alpha=0.9 if n == 0 else 0.45,
                      linewidth=1.4, label=labels[phase] if n == 0 else None)
    left.set_xlabel("time since start (s)")
    left.set_ylabel("throughput (messages/s)")
    left.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:,.0f}"))
    left.set_ylim(bottom=0)
    left.set_xlim(left=0)
    left.grid(alpha=0.3)
    left.set_ylim(top=left.get_ylim()[1] * 1.12)
    left.legend(loc="upper right", ncol=2, fontsize=9)
    left.set_title(f"throughput over time ({bucket_s * 1000:g} ms buckets"
                   + (f", {len(doc['runs'])} runs" if len(doc["runs"]) > 1 else "") + ")", fontsize=10)

    kind, field, title = (("end_to_end", "e2e_latency", "end-to-end latency (send timestamp -> consumer)")
                          if doc["scenario"] == "e2e" else
                          ("ack", "ack_latency", "send -> ack latency (measured per batch of messages)"))
    hist = LatencyHistogram()
    for run in doc["runs"]:
        part = LatencyHistogram.from_json(run[field]["histogram"], run[field]["summary_ms"])
        hist.merge(part)
    if hist.total:
        # 100 bins per decade are kept for percentiles; 20 per decade read better on a chart
        factor = hist.BINS_PER_DECADE // PLOT_BINS_PER_DECADE
        edges_ms = hist.edges_us()[::factor] / 1000.0
        counts = np.add.reduceat(hist.counts, np.arange(0, len(hist.counts), factor))
        edges_ms = np.append(edges_ms[: len(counts)], max(hist.max_us / 1000.0, edges_ms[len(counts) - 1] * 1.01))
        edges_ms[0] = edges_ms[1] / 10 ** (1 / PLOT_BINS_PER_DECADE)
        nz = np.flatnonzero(counts)
        lo, hi = nz[0], nz[-1] + 1
        share = counts[lo:hi] / hist.total * 100
        right.stairs(share, edges_ms[lo : hi + 1], fill=True, color="tab:green", alpha=0.6)
        right.set_xscale("log")
        right.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
        right.xaxis.set_minor_formatter(FuncFormatter(
            lambda v, _p: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
        for name, q, style in (("p50", 50, "-"), ("p99", 99, "--"), ("p99.9", 99.9, ":")):
            value = hist.percentile_us(q) / 1000.0
            right.axvline(value, color="black", linestyle=style, linewidth=1,
                          label=f"{name} {value:.3g} ms")
        right.axvline(hist.max_us / 1000.0, color="tab:red", linewidth=1,
                      label=f"max {hist.max_us / 1000.0:.3g} ms")
        right.set_ylim(0, float(share.max()) * 1.45)  # room for the legend above the bars
        right.legend(loc="upper right", fontsize=8, ncol=2)
    else:
        right.text(0.5, 0.5, "no latency samples", ha="center", va="center", transform=right.transAxes)
    right.set_xlabel("latency (ms, log scale)")
    right.set_ylabel(f"share of messages (% per bin, {PLOT_BINS_PER_DECADE} bins per decade)")
    right.grid(alpha=0.3)
    right.set_title(title, fontsize=10)

    headline = doc["results"][doc["headline"]]
    fig.suptitle(f"metaq-bench {doc['scenario']}: {headline['msgs_per_s']:,.0f} msg/s "
                 f"({headline['mb_per_s']:,.1f} MB/s), verify "
                 f"{'OK' if doc['verification']['ok'] else 'FAILED'}\n{_wrap(settings_line(doc))}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _wrap(text: str, width: int = 150) -> str:
    out, line = [], ""
    for word in text.split(", "):
        if line and len(line) + len(word) + 2 > width:
            out.append(line + ",")
            line = word
        else:
            line = f"{line}, {word}" if line else word
    out.append(line)
    return "\n".join(out)
