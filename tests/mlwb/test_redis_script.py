"""FastScript: one round trip per call, and it survives what redis-py's Script survives."""

from __future__ import annotations

import threading

import pytest
import redis

from mlwb.redis_script import FastScript

ADD = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


def test_runs_the_script_and_agrees_with_redis_py(redis_client: redis.Redis) -> None:
    script = FastScript(redis_client, ADD)
    assert script(["n"], [2]) == 2
    assert redis_client.register_script(ADD)(keys=["n"], args=[3]) == 5  # same sha, same key
    assert script(["n"], [1]) == 6


def test_reloads_a_flushed_script(redis_client: redis.Redis) -> None:
    script = FastScript(redis_client, ADD)
    assert script(["n"], [1]) == 1
    redis_client.script_flush()  # a restarted server has no scripts
    assert script(["n"], [1]) == 2


def test_reopens_a_killed_connection(redis_client: redis.Redis) -> None:
    script = FastScript(redis_client, ADD)
    assert script(["n"], [1]) == 1
    mine = script._local.conn
    mine.send_command("CLIENT", "ID")
    assert redis_client.client_kill_filter(_id=mine.read_response()) == 1
    assert script(["n"], [1]) == 2  # retried once on a fresh connection
    assert script._local.conn is not mine


def test_script_errors_reach_the_caller_and_leave_a_usable_connection(
        redis_client: redis.Redis) -> None:
    script = FastScript(redis_client, ADD)
    redis_client.set("text", "not a number")
    with pytest.raises(redis.ResponseError):
        script(["text"], [1])
    assert script(["n"], [4]) == 4


def test_threads_each_use_their_own_connection(redis_client: redis.Redis) -> None:
    script = FastScript(redis_client, ADD)
    conns: set[int] = set()

    def work() -> None:
        for _ in range(200):
            script(["n"], [1])
        conns.add(id(script._local.conn))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert int(redis_client.get("n") or 0) == 1600
    assert len(conns) == 8


def test_a_forked_child_opens_its_own_connection(redis_client: redis.Redis) -> None:
    import os

    script = FastScript(redis_client, ADD)
    assert script(["n"], [1]) == 1
    parent_conn = script._local.conn
    pid = os.fork()
    if pid == 0:  # the child: must not read the parent's socket
        code = 0
        try:
            ok = script(["n"], [10]) == 11 and script._local.conn is not parent_conn
            code = 0 if ok else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert script(["n"], [100]) == 111  # the parent's connection is intact
    assert script._local.conn is parent_conn
