"""A broker's replica settings: MetaQ's slave keys (``[slave]`` in server.ini, or the
``async_slave.properties`` file of MetaQ's metaslave plugin given with ``--slave``).

Imports: the standard library and metaq_fast.errors / config_values only.

MetaQ's keys (reference 9.5): ``slaveId`` (>= 0; blank or negative: not a slave, as MetaQ's
own test files write ``slaveId=-1`` in a master's file), ``slaveGroup`` (default
``meta-slave-group_<slaveId>``), ``slaveMaxDelayInMills`` (500: how long the master holds a
slave's fetch when it has nothing new), ``autoSyncMasterConfig`` (accepted; this broker does
not rewrite its own config: a warning says so).

A properties file is Java's format as MetaQ's files use it: ``key=value`` (or ``key: value``)
lines, ``#`` and ``!`` comments, read as UTF-8 with GBK as the fallback MetaQ's files need.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from metaq_fast.config_values import _convert, _ints, _Key
from metaq_fast.errors import ConfigError

log = logging.getLogger("metaq_fast.config")

SLAVE_ID_MAX = 62  # a replica's column in the supervisor's shared block (MetaQ ran 0..few)


@dataclass(frozen=True)
class SlaveConfig:
    """This broker replicates broker ``brokerId``'s master as slave ``slave_id``."""

    slave_id: int
    group: str
    max_delay_ms: int = 500

    @property
    def replica(self) -> str:
        return f"s{self.slave_id}"


SLAVE_KEYS = {
    "slaveId": _ints("slave_id", -1, SLAVE_ID_MAX, "blank or -1: not a slave"),
    "slaveGroup": _Key("group", "str"),
    "slaveMaxDelayInMills": _ints("max_delay_ms", 0, 60_000,
                                  "how long the master holds a fetch with nothing new"),
    "autoSyncMasterConfig": _Key("auto_sync", "bool"),
}


def slave_from_entries(entries: dict[str, tuple[str, int]], where: str,
                       base_dir: Path) -> SlaveConfig | None:
    """The settings of ``[slave]``-style ``entries`` (key -> (value, line)); None when they
    make no slave. Raises ConfigError naming ``where``, the key and the line."""
    values: dict[str, object] = {}
    for key, (value, line) in entries.items():
        spec = SLAVE_KEYS.get(key)
        if spec is None:
            raise ConfigError(f"{where} {key}={value}: unknown slave key (known: "
                              f"{', '.join(SLAVE_KEYS)}) (line {line})")
        if value == "":
            continue
        try:
            values[spec.attr] = _convert(spec, value, base_dir)
        except ValueError as exc:
            raise ConfigError(f"{where} {key}={value}: {exc} (line {line})") from None
    slave_id = values.get("slave_id", -1)
    if slave_id < 0:
        return None
    if values.pop("auto_sync", False):
        log.warning("%s: autoSyncMasterConfig=true is not supported; the slave keeps its own "
                    "configuration (start it with the master's server.ini)", where)
    group = values.get("group") or f"meta-slave-group_{slave_id}"
    return SlaveConfig(slave_id, str(group), int(values.get("max_delay_ms", 500)))


def read_properties(path: str | os.PathLike[str]) -> dict[str, tuple[str, int]]:
    """Key -> (value, line) of a Java properties file (module docstring)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{os.fspath(path)}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("gbk", "replace")
    entries: dict[str, tuple[str, int]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        if cut < 0:
            entries[line] = ("", number)
        else:
            entries[line[:cut].strip()] = (line[cut + 1:].strip(), number)
    return entries


def load_slave_file(path: str | os.PathLike[str]) -> SlaveConfig | None:
    """``--slave FILE``: MetaQ's async_slave.properties, or an ini file's ``[slave]`` section."""
    entries = read_properties(path)
    where = os.fspath(path)
    if any(key.startswith("[") for key in entries):  # an ini file: take its [slave] section
        from metaq_fast.config_values import _read_ini
        sections = _read_ini(Path(path).read_bytes(), where)
        if "slave" not in sections:
            raise ConfigError(f"{where}: no [slave] section")
        entries = sections["slave"].entries
        where += " [slave]"
    slave = slave_from_entries(entries, where, Path(os.path.abspath(where)).parent)
    if slave is None:
        raise ConfigError(f"{where}: slaveId is not set to a number >= 0, so this is no slave")
    return slave
