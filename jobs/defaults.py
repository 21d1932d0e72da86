"""Documented defaults of the job system, one place, one comment each."""

# Queues: torch jobs that may use a GPU go to GPU_QUEUE when a GPU worker is up; the rest
# (and torch jobs when no GPU worker listens) go to CPU_QUEUE.
CPU_QUEUE = "wb-cpu"
GPU_QUEUE = "wb-gpu"
QUEUES = (GPU_QUEUE, CPU_QUEUE)
# The worker checks on its work horse this often (seconds) and extends the job's heartbeat;
# RQ lets a heartbeat lapse JOB_MONITORING_INTERVAL + 60 s after the last one.
JOB_MONITORING_INTERVAL = 10
# The worker (and `wb jobs maintain`) sweeps for abandoned jobs this often (seconds).
MAINTENANCE_INTERVAL = 15
# A worker that stops heartbeating is dropped from the registry after this many seconds.
WORKER_TTL = 60
# Default and largest run time of one training job (seconds).
JOB_TIMEOUT = 3600
MAX_JOB_TIMEOUT = 7 * 24 * 3600
# Retries after a crash, kill or error (0 disables); cancel is never retried.
RETRIES = 1
# How long finished / failed job records stay in Redis (seconds).
RESULT_TTL = 7 * 24 * 3600
FAILURE_TTL = 30 * 24 * 3600
# Lines of a job's log kept live in Redis (the whole log becomes a run artifact).
LOG_LINES = 5000
# `wb jobs maintain` ends a RUNNING MLflow run whose job no longer claims it after this long
# (seconds): covers a horse killed between creating the run and recording its id.
ORPHAN_RUN_GRACE = 120
# Redis keys of the job index and sweeps.
JOB_INDEX_KEY = "wb:jobs:index"
LOG_KEY = "wb:jobs:log:{job_id}"
SWEEP_KEY = "wb:sweeps:{sweep_id}"
OPEN_SWEEPS_KEY = "wb:sweeps:open"
