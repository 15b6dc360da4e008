"""``metaq-admin replication``: every broker id's replicas, their roles and how far behind.

Imports: metaq_fast.errors / protocol / zk.paths / zk.replica_state and the admin helpers (an
``Admin`` is passed in; this module adds one question to it without growing admin.py).

For each broker id with a ``/meta/replication/<id>`` node: its epoch, master and in-sync set
from ZooKeeper, then each registered replica (the master node, every ``slave<n>``) asked for
``stats replication`` over the MetaQ protocol: its own view of its role, and its lag (a slave:
bytes behind summed over its partitions, and the oldest partition's time since it last had
everything). A replica that does not answer is listed with the error.
"""

from __future__ import annotations

from ..errors import SUCCESS, MetaqError
from ..protocol import ResultReply
from ..zk import paths
from ..zk.replica_state import ReplicaState
from .connection import next_opaque


def replication_status(admin) -> list[dict]:
    rows = []
    root = admin.root
    for name in sorted(admin._children(f"{root}/replication"), key=lambda n: (len(n), n)):
        if not name.isdigit():
            continue
        broker_id = int(name)
        data = admin._data(paths.replication_state_path(root, broker_id))
        try:
            state = ReplicaState.parse(data) if data else None
        except ValueError:
            state = None
        urls = {"master": admin._master_url(broker_id)}
        for child in admin._children(paths.broker_id_path(root, broker_id)):
            try:
                slave_id = paths.parse_slave_node_name(child)
            except ValueError:
                continue
            node = admin._data(paths.broker_slave_path(root, broker_id, slave_id))
            urls[child] = paths.decode_text(node) if node else None
        for node, url in urls.items():
            if url is None:
                continue
            row = {"broker_id": broker_id, "node": node, "url": url,
                   "epoch": state.epoch if state else None,
                   "isr": ",".join(state.isr) if state else None}
            row.update(_ask(admin, url))
            rows.append(row)
    return rows


def _ask(admin, url: str) -> dict:
    """The replica's own ``stats replication`` figures."""
    opaque = next_opaque()
    try:
        reply = admin._call(url, b"stats replication %d\r\n" % opaque, opaque)
    except MetaqError as exc:
        return {"error": str(exc)}
    if not isinstance(reply, ResultReply) or reply.code != SUCCESS:
        return {"error": f"stats replication answered {reply!r:.80}"}
    lines = bytes(reply.body).decode("utf-8", "replace").splitlines()
    fields = dict(line.split(" ", 1) for line in lines if " " in line)  # STATS ... END
    out = {"replica": fields.get("replica"), "role": fields.get("role")}
    if fields.get("role") == "follower":
        out["lag_bytes"] = int(fields.get("lag_bytes", 0))
        ages = [int(part.split("=", 1)[1]) for line in lines if line.startswith("partition_")
                for part in line.split() if part.startswith("lag_ms=")]
        out["lag_ms"] = max(ages) if ages else None
    return out
