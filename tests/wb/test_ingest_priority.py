"""The ingest is background work: it yields the CPU to the API's requests."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil

from mlwb.settings import Settings
from tests.factories import child_env


def _group_nice(pid: int | str) -> int | None:
    """The nice value of a process's autogroup: None without autogroup scheduling, or for a
    process in no autogroup of its own (the kernel prints nothing for one that has never
    been in a new session since boot, as in CI's containers)."""
    path = Path(f"/proc/{pid}/autogroup")
    words = path.read_text().split() if path.exists() else []
    return int(words[-1]) if words else None


def _threads_nice(pid: int) -> set[int]:
    """The nice values of every thread of a process."""
    threads = psutil.Process(pid).threads()
    assert len(threads) > 1  # the check means something only with several
    return {int(Path(f"/proc/{pid}/task/{t.id}/stat").read_text().rsplit(")", 1)[1].split()[16])
            for t in threads}


def _ingest(settings: Settings, log: Path, own_session: bool, nice: str | None
            ) -> subprocess.Popen[bytes]:
    env = child_env(settings)
    if nice is not None:
        env["WB_INGEST_NICE"] = nice
    proc = subprocess.Popen([sys.executable, "-m", "wb", "ingest"], env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=own_session)
    deadline = time.monotonic() + 60
    while "ingest: landing" not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the ingest did not start"
        time.sleep(0.1)
    return proc


def test_the_ingest_lowers_its_priority_and_its_sessions(settings: Settings,
                                                         tmp_path: Path) -> None:
    """As `wb up` starts it (its own session): its nice value and its session's group's
    are both 10, or as WB_INGEST_NICE says (0: unchanged)."""
    for nice, expected in ((None, 10), ("0", 0), ("3", 3)):
        proc = _ingest(settings, tmp_path / "ingest.log", True, nice)
        try:
            assert _threads_nice(proc.pid) == {expected}  # pyarrow's threads too
            assert _group_nice(proc.pid) in (None, expected)
        finally:
            proc.terminate()
            assert proc.wait(timeout=30) == 0


def test_an_ingest_sharing_a_session_leaves_the_sessions_group_alone(
        settings: Settings, tmp_path: Path) -> None:
    """Started from a shell (or the tests): only the ingest itself yields, never the other
    processes of the session it shares."""
    before = _group_nice("self")
    proc = _ingest(settings, tmp_path / "ingest.log", False, None)
    try:
        assert _threads_nice(proc.pid) == {10}
        assert _group_nice("self") == before
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_the_ingest_gives_arrows_memory_to_jemalloc(settings: Settings, tmp_path: Path
                                                    ) -> None:
    """Its flushes and merges allocate and free megabytes of Arrow buffers: jemalloc, which
    the Linux pyarrow wheels carry, costs a fraction of the default's CPU for them (the
    process reports the allocator it really uses)."""
    log = tmp_path / "ingest.log"
    proc = _ingest(settings, log, False, None)
    try:
        assert "; Arrow memory: jemalloc)" in log.read_text()
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
