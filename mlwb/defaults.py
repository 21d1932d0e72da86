"""Documented defaults, one place, one comment each."""

from typing import Literal

# Where every file the product writes lives (lake, state DB, MLflow store, Redis AOF, logs).
DATA_DIR = "data"
# Port of the private redis-server `wb up` starts when REDIS_URL does not answer.
PRIVATE_REDIS_PORT = 6390
# Flask API (gunicorn) and Streamlit workbench ports for the local stack.
API_PORT = 8000
WORKBENCH_PORT = 8501
# gunicorn processes and threads per process for the API.
API_WORKERS = 2
API_THREADS = 4
# Pin each API worker to a core of its own: auto (when the workers fill the cores evenly),
# on, off.
API_PIN_CPUS: Literal["auto", "on", "off"] = "auto"

# Redis stream every process appends events to; the ingest process drains it.
EVENT_STREAM = "wb:events"
# Largest batch the ingest reads from the stream at once.
INGEST_BATCH = 5000
# The ingest flushes at least this often (seconds), so readers see data this fresh.
INGEST_FLUSH_SECONDS = 0.5
INGEST_NICE = 10  # the ingest's nice value: requests first, the log in the gaps
# Segments per table before the ingest compacts the oldest ones into one file.
COMPACT_AFTER_SEGMENTS = 64
# Parquet compression of the segments the ingest writes as events arrive. They are small and
# soon merged by compaction, which writes zstd; compressing them first cost more than the
# rest of writing them (7 of 10 us per prediction row), and reading them back for the merge.
FRESH_SEGMENT_COMPRESSION = "none"
# Segments with at least this many rows are final: compaction never rewrites them.
COMPACT_TARGET_ROWS = 250_000
# While the rest of the host keeps its CPUs at least this busy (a share of all CPU time
# since the last maintenance pass), merges wait: a merge's second of CPU would come out of
# the requests being served...
COMPACT_BUSY = 0.8
# ...until a table has this many segments; then it is compacted anyway, busy or not.
COMPACT_MAX_SEGMENTS = 512
# Merged segments of one level that compaction merges into one of the next level.
COMPACT_FANOUT = 8
# Superseded segment files are kept this long so a reader holding an old manifest still works.
COMPACT_GRACE_SECONDS = 120.0
# How long (seconds) the ingest remembers event ids to drop client retries of the same event,
# and the most ids it keeps for that.
DEDUPE_WINDOW_SECONDS = 600
DEDUPE_MAX_IDS = 500_000
# Event times outside this range (epoch seconds: 2000-01-01 .. 2100-01-01) are refused.
EARLIEST_TS = 946_684_800
LATEST_TS = 4_102_444_800

# A token lookup is cached per process this long: revocation takes effect within it.
TOKEN_CACHE_SECONDS = 2.0
# A token's last-used time is written at most this often.
TOKEN_LAST_USED_EVERY_SECONDS = 60.0
# Browser session lifetime (minutes).
SESSION_MINUTES = 120
# Failed logins allowed per (client address, username) and per address within the window.
LOGIN_MAX_FAILURES = 5
LOGIN_MAX_FAILURES_PER_ADDRESS = 30
LOGIN_WINDOW_SECONDS = 300
# Denied token uses audited per client address per minute (the rest are refused silently).
DENIED_AUDITS_PER_MINUTE = 20
# Largest request body the API accepts (bytes).
MAX_BODY_BYTES = 4 * 1024 * 1024
# Most events one POST /api/events may carry.
MAX_EVENTS_PER_REQUEST = 1000
