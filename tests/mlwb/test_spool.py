"""The spool: what a process wrote survives its SIGKILL and is shipped once, by a sibling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import redis

from api.serving.shipper import Shipper, offset_key
from mlwb.ingest import _events
from mlwb.ratelimit import FixedWindow
from mlwb.services import Services
from mlwb.settings import Settings
from mlwb.spool import Spool, orphans

WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mlwb.spool import Spool
    spool = Spool(Path(sys.argv[1]))
    prefix = sys.argv[3].encode() if len(sys.argv) > 3 else b""  # ids "<prefix><i>"
    for i in range(int(sys.argv[2])):
        line = b'predictions\\t{"id": "%s%d"}\\n' % (prefix, i)
        spool.append(line, [line])
    print("written", flush=True)
    time.sleep(60)  # alive, holding its lock, until killed
""")


def _lines(n: int) -> list[bytes]:
    return [b'predictions\t{"id": "%d"}\n' % i for i in range(n)]


def _shipped(client: redis.Redis, stream: str) -> list[bytes]:
    """The rows in ``stream``, in order, as the ingest unpacks its entries."""
    return [event[b"d"] for sid, fields in client.xrange(stream)
            for _, event in _events(sid.decode(), fields)]


def test_a_killed_writers_lines_are_an_orphan_and_a_live_ones_are_not(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "500"],
                            stdout=subprocess.PIPE, cwd=Path(__file__).parents[2])
    assert proc.stdout is not None and proc.stdout.readline() == b"written\n"
    assert list(orphans(tmp_path)) == []  # its owner holds the lock
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    found = list(orphans(tmp_path))
    assert len(found) == 1
    lines, end = found[0].lines_from(0)
    assert lines == _lines(500)
    assert end == sum(len(line) for line in lines)  # zeroes past it: reserved, unwritten
    assert found[0].lines_from(len(lines[0]))[0] == _lines(500)[1:]
    assert list(orphans(tmp_path)) == []  # locked by us until done or released
    found[0].done()
    assert not list(tmp_path.glob("*.spool"))


def test_releasing_a_shipped_orphan_closes_nothing_of_anyone_elses(tmp_path: Path) -> None:
    # The shipper releases an orphan when anything fails, also after done() (deleting the
    # offset key can fail): the descriptor's number may already be another file's.
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "spool"), "3"],
                            stdout=subprocess.PIPE, cwd=Path(__file__).parents[2])
    assert proc.stdout is not None and proc.stdout.readline() == b"written\n"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    [orphan] = orphans(tmp_path / "spool")
    number = orphan.fd
    orphan.done()
    fd = os.open(tmp_path / "other", os.O_WRONLY | os.O_CREAT, 0o600)
    if fd != number:  # usually the lowest free number is the orphan's old one; make it so
        os.dup2(fd, number)
        os.close(fd)
    orphan.release()
    os.write(number, b"still open")  # EBADF if release() closed it
    os.close(number)
    assert (tmp_path / "other").read_bytes() == b"still open"
    orphan.release()  # twice is harmless too


def test_a_torn_last_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "host-1-torn.spool"
    good = b"".join(_lines(3))
    path.write_bytes(good + b'predictions\t{"id": \0\0"9"}\n' + b"\0" * 100)
    (orphan,) = orphans(tmp_path)
    assert orphan.lines_from(0) == (_lines(3), len(good))
    orphan.release()


def test_orphans_are_shipped_from_their_recorded_offset_once(tmp_path: Path,
                                                             redis_client: redis.Redis) -> None:
    stream = f"test:spool:{os.getpid()}"
    redis_client.delete(stream)
    path = tmp_path / "host-2-dead.spool"
    lines = _lines(10)
    path.write_bytes(b"".join(lines))
    redis_client.set(offset_key("host-2-dead"), sum(len(line) for line in lines[:4]))
    limiter = FixedWindow(redis_client, f"spool-test-{os.getpid()}", 100, 60)
    shipper = Shipper(redis_client, stream, limiter, tmp_path)
    assert shipper.ship_orphans() == 6  # the first four were shipped by their owner
    got = _shipped(redis_client, stream)
    assert got == [b'{"id": "%d"}' % i for i in range(4, 10)]
    assert not path.exists() and redis_client.get(offset_key("host-2-dead")) is None
    assert shipper.ship_orphans() == 0


def test_full_files_are_replaced_and_deleted_once_shipped(tmp_path: Path,
                                                          redis_client: redis.Redis) -> None:
    stream = f"test:spool-rotate:{os.getpid()}"
    redis_client.delete(stream)
    limiter = FixedWindow(redis_client, f"spool-rotate-{os.getpid()}", 10_000, 60)
    shipper = Shipper(redis_client, stream, limiter, tmp_path)
    shipper.spool = Spool(tmp_path, rotate_bytes=2048)
    files: set[str] = set()
    for i in range(300):
        shipper.record([("predictions", b'{"id": "%d"}' % i)])
        assert shipper.hit("caller") == i + 1  # exact within the process
        files.update(p.name for p in tmp_path.glob("*.spool"))
    assert len(files) >= 3  # ~8 KB of lines in files of 2 KB
    shipper.flush()
    got = _shipped(redis_client, stream)
    assert got == [b'{"id": "%d"}' % i for i in range(300)]  # in order, once
    assert len(list(tmp_path.glob("*.spool"))) == 1  # only the file still written
    assert int(redis_client.get(limiter.key("caller")) or 0) == 300
    (last,) = tmp_path.glob("*.spool")
    assert redis_client.get(offset_key(last.stem)) is not None
    shipper.close()  # a clean exit: everything shipped, no file left for a sibling
    assert not list(tmp_path.glob("*.spool"))
    assert redis_client.get(offset_key(last.stem)) is None


def test_a_round_trip_whose_reply_was_lost_leaves_nothing_out(tmp_path: Path,
                                                              redis_client: redis.Redis) -> None:
    """A shipment that ran in Redis while the shipper gave up waiting (a timeout) is put back
    and retried with the lines spooled meanwhile behind it: those are added, once. And if
    Redis lost the offset (a restart without its data), later lines still ship."""
    stream = f"test:spool-lost:{os.getpid()}"
    redis_client.delete(stream)
    limiter = FixedWindow(redis_client, f"spool-lost-{os.getpid()}", 10_000, 60)
    shipper = Shipper(redis_client, stream, limiter, tmp_path)

    def spool(ids: range) -> None:
        for i in ids:
            shipper.record([("predictions", b'{"id": "%d"}' % i)])

    spool(range(3))
    batch = shipper.spool.take(100)
    assert batch is not None
    shipper._round_trip(batch, {})  # it ran in Redis...
    shipper.spool.untake(batch)  # ...but the shipper never heard back
    spool(range(3, 6))
    shipper.flush()
    assert _shipped(redis_client, stream) == [b'{"id": "%d"}' % i for i in range(6)]
    redis_client.delete(offset_key(batch.spool_id))
    spool(range(6, 8))
    shipper.flush()
    assert _shipped(redis_client, stream) == [b'{"id": "%d"}' % i for i in range(8)]
    shipper.close()


def test_a_booting_api_ships_a_stopped_processs_spool_without_a_request(
        settings: Settings, services: Services) -> None:
    from api import create_app

    marker = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(settings.spool_dir), "40",
                             f"{marker}-"], stdout=subprocess.PIPE,
                            cwd=Path(__file__).parents[2])
    assert proc.stdout is not None and proc.stdout.readline() == b"written\n"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    create_app(settings, services)  # and no request
    deadline = time.monotonic() + 30
    mine: list[bytes] = []
    while time.monotonic() < deadline and len(mine) < 40:
        mine = [d for d in _shipped(services.redis, services.sink.stream)
                if marker.encode() in d]
        time.sleep(0.2)
    assert mine == [b'{"id": "%s-%d"}' % (marker.encode(), i) for i in range(40)]
    assert not list(settings.spool_dir.glob("*.spool"))  # shipped, then deleted


def test_a_booting_api_with_no_spool_files_starts_no_thread(settings: Settings,
                                                             services: Services) -> None:
    from api import create_app
    from api.serving.service import serving

    app = create_app(settings, services)
    assert serving(app).shipper._thread is None  # started by the first request instead
