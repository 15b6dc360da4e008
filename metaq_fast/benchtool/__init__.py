"""``metaq-bench``: end-to-end load tests of a metaq_fast (or MetaQ) cluster that check what they
measured.

Modules (arguments are parsed in ``metaq_fast.cli.bench_main``):

- ``payload``  self-checking payloads (sequence number, send time, run id, a 64-bit check
               computed per batch) and the verifier that counts missing / duplicate / corrupt messages; pure, unit-tested;
- ``cluster``  the throw-away local cluster of ``--local`` (ZooKeeper + brokers from a server.ini
               with overrides), stopped and deleted at the end;
- ``workers``  the producer, MetaQ-put and consumer child processes;
- ``runner``   the scenarios (produce, consume, e2e, metaq-put), timing and clean-up;
- ``report``   the JSON document, the text table and ``--compare``;
- ``plot``     ``--plot``: throughput over time and the latency histogram (matplotlib, Agg).
"""

from .payload import HEADER_BYTES, LatencyHistogram, PayloadFactory, Verifier, verdict

__all__ = ["HEADER_BYTES", "LatencyHistogram", "PayloadFactory", "Verifier", "verdict"]
