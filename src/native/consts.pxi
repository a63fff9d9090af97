# Record kinds, as stored in records.kind and passed in batch columns.
# Kept in step with unmo.model.Kind (a test checks it).
cdef enum:
    KIND_CLICK = 1
    KIND_IMPRESSION = 2
    KIND_INSTALL = 3
    KIND_OPEN = 4
    KIND_EVENT = 5

# Column codes understood by the binary COPY encoder (unmo.copy.ColType mirrors these).
cdef enum:
    COL_INT2 = 1
    COL_INT4 = 2
    COL_INT8 = 3
    COL_FLOAT8 = 4
    COL_TIMESTAMPTZ_MS = 5
    COL_TEXT = 6
    COL_JSONB = 7
    COL_INET = 8
    COL_BOOL = 9

# Fields a record's segment holds (seg_record; unmo.ingest.rows.SEGMENT_COLUMNS, a test checks it).
cdef enum:
    SEGMENT_FIELDS = 20

# Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01 UTC).
cdef int64_t PG_EPOCH_MS = 946684800000

# records.outcome (unmo.model.Outcome mirrors these).
cdef enum:
    OUT_OK = 0
    OUT_ATTRIBUTED = 1
    OUT_ORGANIC = 2
    OUT_REINSTALL = 3
    OUT_REATTRIBUTED = 4
    OUT_UNATTRIBUTED = 5
    OUT_IP_BLOCKLIST = 6

# How a winning touch was matched (unmo.kernel.MATCH_NAMES).
cdef enum:
    MATCH_NONE = 0
    MATCH_REFERRER = 1
    MATCH_DEVICE = 2
    MATCH_PROBABILISTIC = 3

# Why a touch was skipped (unmo.kernel.REASON_NAMES).
cdef enum:
    REJ_CTIT = 1
    REJ_IP = 2

# touch flags
cdef enum:
    TF_BLOCKED = 1
    TF_HAS_IDS = 2

cdef int NDEV = 5
