"""The job queues: JSON-serialised RQ queues on the product's Redis."""

from __future__ import annotations

import redis
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from jobs import defaults

SERIALIZER = JSONSerializer


def queue(connection: redis.Redis, name: str = defaults.CPU_QUEUE) -> Queue:
    """A queue whose jobs carry JSON arguments only (never pickles)."""
    return Queue(name, connection=connection, serializer=SERIALIZER)


def all_queues(connection: redis.Redis) -> list[Queue]:
    """The GPU queue then the CPU queue."""
    return [queue(connection, n) for n in defaults.QUEUES]


def gpu_workers(connection: redis.Redis) -> int:
    """Live workers listening on the GPU queue."""
    return len(Worker.all(connection=connection, queue=queue(connection, defaults.GPU_QUEUE)))
