"""Every fixed bound of metaq_fast in one place, unit last in each name. Imports nothing.

Bounds that an operator may tune live in server.ini (see config.py); these are the hard limits
and defaults that protect processes from bad input before anything is allocated.
"""

# ---- records (MetaQ MessageUtils) --------------------------------------------------------------
RECORD_HEADER_BYTES = 20
# MetaQ clients refuse records above 2 MiB (MessageIterator, MAX_READ_BUFFER_SIZE).
CLIENT_RECORD_DATA_BYTES_MAX = 2 * 1024 * 1024

# ---- message ids (MetaQ IdWorker layout) -------------------------------------------------------
MSG_ID_EPOCH_MS = 1303895660503
MSG_ID_BROKER_BITS = 10
MSG_ID_SEQUENCE_BITS = 12
BROKER_ID_MAX = (1 << MSG_ID_BROKER_BITS) - 1  # 1023
# The id clock runs ahead of the wall clock when more than 4096 ids per millisecond are asked
# for (or the clock stepped back); beyond this lead it says so in the log.
MSG_ID_RUN_AHEAD_MS_WARN = 10_000

# ---- names ---------------------------------------------------------------------------------
NAME_CHARS_MAX = 249

# ---- protocol framing --------------------------------------------------------------------------
# A command line longer than this (without finding CRLF) is a framing error: close.
LINE_BYTES_MAX = 4096
# Bytes buffered per connection for requests not yet answered; reading pauses above this.
CONNECTION_PENDING_BYTES_MAX = 64 * 1024 * 1024
# Default largest message body accepted by put (server.ini: maxMessageSize).
MESSAGE_BYTES_MAX_DEFAULT = 1024 * 1024 - RECORD_HEADER_BYTES
# Largest body of one batch put (server.ini: maxBatchBytes).
BATCH_BYTES_MAX_DEFAULT = 16 * 1024 * 1024
# Most records in one batch put.
BATCH_RECORDS_MAX = 1_000_000

# ---- storage -----------------------------------------------------------------------------
# Segment data files grow (fallocate) in steps of this size so that a full disk is an error
# at allocation time rather than a SIGBUS on a write into the mapping.
SEGMENT_GROW_STEP_BYTES = 16 * 1024 * 1024
# Pages of the active segment are populated (MADV_POPULATE_WRITE, in a background thread) up to
# this far ahead of the write position, so the appender rarely takes a page fault itself.
PREFAULT_AHEAD_BYTES = 4 * 1024 * 1024
# Record-position index entries are grown in steps of this many entries.
INDEX_GROW_STEP_ENTRIES = 256 * 1024
# Recovery reads at most this many bytes per step when scanning a tail record by record.
RECOVERY_SCAN_CHUNK_BYTES = 8 * 1024 * 1024
