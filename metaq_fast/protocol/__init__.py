"""Sans-IO MetaQ protocol: command/reply value types (``commands``), the decoders
(``_decoding``, ``_readers``), the encoders (``_writers``), the batch put-reply formatter (``_put_replies``)
and the replication fetch (``replication``).

This package is the one public face: import from ``metaq_fast.protocol``; see the modules'
docstrings for the rules.
"""

from metaq_fast.protocol._put_replies import encode_put_ok_many
from metaq_fast.protocol._decoding import (
    BODY_COPY_BYTES_MAX_DEFAULT,
    FRAME_BYTES_MAX_DEFAULT,
    NEED_DATA,
    REPLY_BODY_BYTES_MAX_DEFAULT,
)
from metaq_fast.protocol._readers import RequestDecoder, ResponseDecoder, parse_putm_ok
from metaq_fast.protocol._writers import (
    encode,
    encode_put_ok,
    encode_putm_ok,
    encode_result,
    encode_stats_body,
    encode_value_header,
    encode_values_header,
)
from metaq_fast.protocol.replication import (
    FetchPosition,
    ReplicaEntry,
    ReplicateCommand,
    encode_replica_entries,
    encode_replicate,
    parse_replica_entries,
    replica_name,
)
from metaq_fast.protocol.commands import (
    OPAQUE_DEFAULT,
    TRANSACTION_TYPES,
    AdminCommand,
    GetBatchCommand,
    GetCommand,
    OffsetCommand,
    PutBatchCommand,
    PutCommand,
    PutRun,
    QuitCommand,
    ResultReply,
    StatsCommand,
    SyncCommand,
    TransactionCommand,
    ValueReply,
    ValuesReply,
    VersionCommand,
    canonical_tx_key,
)

__all__ = [
    "AdminCommand",
    "FetchPosition",
    "ReplicaEntry",
    "ReplicateCommand",
    "encode_replica_entries",
    "encode_replicate",
    "parse_replica_entries",
    "replica_name",
    "BODY_COPY_BYTES_MAX_DEFAULT",
    "FRAME_BYTES_MAX_DEFAULT",
    "GetBatchCommand",
    "GetCommand",
    "NEED_DATA",
    "OPAQUE_DEFAULT",
    "OffsetCommand",
    "PutBatchCommand",
    "PutCommand",
    "PutRun",
    "QuitCommand",
    "REPLY_BODY_BYTES_MAX_DEFAULT",
    "RequestDecoder",
    "ResponseDecoder",
    "ResultReply",
    "StatsCommand",
    "SyncCommand",
    "TRANSACTION_TYPES",
    "TransactionCommand",
    "ValueReply",
    "ValuesReply",
    "VersionCommand",
    "canonical_tx_key",
    "encode",
    "encode_put_ok",
    "encode_put_ok_many",
    "encode_putm_ok",
    "encode_result",
    "encode_stats_body",
    "encode_value_header",
    "encode_values_header",
    "parse_putm_ok",
]
