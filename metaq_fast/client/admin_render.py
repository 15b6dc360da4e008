"""What ``metaq-admin`` prints: the results of ``client.admin.Admin`` as aligned text tables
(``--json`` prints them as they are).

Imports: the standard library only.
"""

from __future__ import annotations

import json


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """Rows as an aligned text table; ``columns`` = (key, header); None shows as ``-``."""
    cells = [[h for _k, h in columns]]
    for row in rows:
        cells.append(["-" if row.get(k) is None else str(row.get(k)) for k, _h in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def render(command: str, result) -> str:
    """Human text for the result of ``command`` (a metaq-admin subcommand)."""
    if command == "brokers":
        return table([dict(r, slaves=", ".join(f"{k}={v}" for k, v in r["slaves"].items()) or None)
                      for r in result],
                     [("broker_id", "BROKER"), ("master", "MASTER"), ("slaves", "SLAVES")])
    if command == "replication":
        return table(result, [("broker_id", "BROKER"), ("node", "NODE"), ("replica", "REPLICA"),
                              ("role", "ROLE"), ("url", "URL"), ("epoch", "EPOCH"),
                              ("isr", "IN_SYNC"), ("lag_bytes", "LAG_BYTES"),
                              ("lag_ms", "LAG_MS"), ("error", "ERROR")])
    if command == "topics":
        rows = [dict(r, brokers=", ".join(
            f"{b['broker']}({b['partitions']}{'' if b['publish'] else ',no-pub'}"
            f"{'' if b['subscribe'] else ',no-sub'})" for b in r["brokers"])) for r in result]
        return table(rows, [("topic", "TOPIC"), ("partitions", "PARTITIONS"),
                            ("brokers", "BROKERS")])
    if command == "partitions":
        return table(result, [("partition", "PARTITION"), ("url", "BROKER"),
                              ("first_offset", "FIRST_OFFSET"), ("end_offset", "END_OFFSET"),
                              ("error", "ERROR")] if any("error" in r for r in result) else
                     [("partition", "PARTITION"), ("url", "BROKER"),
                      ("first_offset", "FIRST_OFFSET"), ("end_offset", "END_OFFSET")])
    if command == "groups":
        return "\n".join(result)
    if command == "group":
        lines = [f"group {result['group']}: {len(result['members'])} live member(s)"]
        lines += [f"  {m['id']}  topics: {','.join(m['topics'])}" for m in result["members"]]
        lines.append("")
        lines.append(table(result["partitions"], [
            ("topic", "TOPIC"), ("partition", "PARTITION"), ("owner", "OWNER"),
            ("committed_offset", "COMMITTED"), ("end_offset", "END"),
            ("lag_bytes", "LAG_BYTES"), ("lag_messages", "LAG_MESSAGES")]))
        lines.append(f"total lag: {_or_dash(result['total_lag_messages'])} message(s), "
                     f"{_or_dash(result['total_lag_bytes'])} byte(s)")
        return "\n".join(lines)
    if command == "reset-offsets":
        return table(result, [("topic", "TOPIC"), ("partition", "PARTITION"),
                              ("old_offset", "OLD_OFFSET"), ("new_offset", "NEW_OFFSET")])
    if command == "peek":
        head = (f"{result['topic']}:{result['partition']} on {result['url']} from offset "
                f"{result['start_offset']}: {len(result['messages'])} message(s), next offset "
                f"{result['next_offset']}")
        return head + "\n" + table(result["messages"], [
            ("offset", "OFFSET"), ("msg_id", "MSG_ID"), ("attribute", "ATTRIBUTE"),
            ("size", "SIZE"), ("payload", "PAYLOAD")])
    if command in ("close-partitions", "open-partitions"):
        return "\n".join(f"broker {r['broker_id'] if r['broker_id'] is not None else r['url']}: "
                         f"{r['answer']}" for r in result)
    return json.dumps(result, indent=1)


def _or_dash(value) -> str:
    return "-" if value is None else str(value)
