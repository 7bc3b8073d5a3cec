"""Per-client adapters under kill -9: a training worker killed mid-job is retried, killed again it fails with
its reason, and through all of it the client's previous adapter stays the one drafts use, opens, and loads
into the real model; the killed workers leave no adapter file, and no plaintext of one, on disk.

    pytest -m slow tests/test_app_adapter_reliability.py      # ~2.5 min per database on 2 CPU cores

Real `psyassist app worker` subprocesses (each in its own process group, killed with SIGKILL: no handler
runs) train the real default model on CPU.  One job of 1 step makes v1; a second job of many steps is
killed after its first reported step, retried by a new worker (attempt 2 trains again), killed again,
and the next worker fails it ("stopped responding 2 time(s)") instead of retrying a third time.  That
covers both outcomes of `jobs.reap` in one chain: a job that max_attempts 1 would fail is the same
branch as this job's second death.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from app_helpers import make_state
from psyassist.app.accounts import actor_of
from psyassist.app.adapters import blob_key, for_client, open_adapter
from psyassist.app.records import Workspace
from psyassist.app.store.models import Job, User, utcnow
from test_app_adapters import _sessions  # the same saved, edited sessions

pytestmark = pytest.mark.slow

TIMEOUT_S = 6  # the restarted workers' job_timeout_s: just above the 5 s heartbeat of a live worker
LONG_JOB_STEPS = 100  # never finishes here: ~20-40 s a step on CPU, the job is killed after its first


def _worker(data: Path, db_url: str, log: Path, *args: str, timeout_s: int | None = None) -> subprocess.Popen:
    """`psyassist app worker` in a process group of its own, its temp files in tmp_path/worker-tmp."""
    tmp = data.parent / "worker-tmp"
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "PSYASSIST_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", "TMPDIR": str(tmp),
           "OMP_NUM_THREADS": "1"}  # 2 busy cores: two OpenMP threads spin against each other (conftest)
    if timeout_s is not None:
        env["PSYASSIST_APP_JOB_TIMEOUT_S"] = str(timeout_s)
    cmd = [sys.executable, "-m", "psyassist", "app", "--data-dir", str(data), "--database-url", db_url,
           "worker", "--poll", "0.5", *args]
    with open(log, "ab") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _kill9(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def _job(st, job_id: str) -> dict:
    with st.db.read() as s:
        j = s.get(Job, job_id)
        return {"status": j.status, "attempts": j.attempts, "worker": j.worker, "error": j.error,
                "progress": json.loads(j.progress), "heartbeat_at": j.heartbeat_at, "adapter_id": j.adapter_id}


def _wait(st, job_id: str, ok, what: str, proc: subprocess.Popen, log: Path, timeout: float = 600) -> dict:
    """Poll the job row until ok(row); fails with the worker's log when it exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        j = _job(st, job_id)
        if ok(j):
            return j
        if proc.poll() is not None or time.monotonic() > deadline:
            why = f"exited with {proc.returncode}" if proc.poll() is not None else f"not within {timeout} s"
            pytest.fail(f"waiting for {what}: {why}; job {j}\n--- {log} ---\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.5)


def _files(roots: list[Path]) -> set[Path]:
    """Every file under roots (os.walk: a directory another process removes meanwhile is skipped, not an error)."""
    return {Path(d, f) for root in roots for d, _, names in os.walk(root) for f in names}


def _slices(weights: bytes, n: int = 24, width: int = 64) -> list[bytes]:
    """n slices of the tensor data of a safetensors blob (after its JSON header, which names only the layers)."""
    start = 8 + int.from_bytes(weights[:8], "little")
    step = max(1, (len(weights) - start - width) // n)
    return [weights[i:i + width] for i in range(start, len(weights) - width, step)][:n]


def test_a_killed_training_worker_is_retried_then_failed_and_the_previous_adapter_stays(tmp_path, db_url):
    system_tmp = Path(tempfile.gettempdir())
    before = _files([tmp_path, system_tmp])
    data, log = tmp_path / "data", tmp_path / "worker.log"
    st = make_state(tmp_path, db_url, job_max_attempts=2)  # max_attempts is fixed on the job row when it is queued
    try:
        with st.db.read() as s:
            ws = Workspace(st, actor_of(s.scalar(select(User).where(User.username == "alice"))))
        cid = ws.create_client("A")
        _sessions(st, ws, cid, n=2)

        # v1: a real job of one step, run by the worker subprocess that is killed later.
        first = ws.start_training(cid, steps=1)
        a = _worker(data, db_url, log)
        try:
            _wait(st, first, lambda j: j["status"] not in ("queued", "running"), "v1", a, log)
            assert _job(st, first)["status"] == "done", _job(st, first)
            v1 = for_client(st, cid)
            assert v1 is not None and v1["version"] == 1, ws.adapters(cid)
            config, v1_weights = open_adapter(st, v1)

            # A long job: killed once it has reported a training step (the heartbeat carries the progress).
            job = ws.start_training(cid, steps=LONG_JOB_STEPS)
            j = _wait(st, job, lambda j: j["status"] == "running" and j["progress"].get("step", 0) >= 1,
                      "the first step of attempt 1", a, log)
            assert for_client(st, cid)["id"] == v1["id"]  # while it trains, drafts use v1
        finally:
            _kill9(a)
        first_worker = j["worker"]
        j = _job(st, job)
        assert (j["status"], j["attempts"], j["worker"]) == ("running", 1, first_worker)  # the row can't know yet
        assert for_client(st, cid)["id"] == v1["id"]

        # A new worker re-queues the stale job (attempt 1 of 2 used) and trains it again.
        b = _worker(data, db_url, log, timeout_s=TIMEOUT_S)
        try:
            j = _wait(st, job, lambda j: j["attempts"] == 2 and j["progress"].get("step", 0) >= 1,
                      "the first step of attempt 2", b, log)
            assert j["status"] == "running" and j["worker"] != first_worker, j
            assert for_client(st, cid)["id"] == v1["id"]
        finally:
            _kill9(b)

        # Killed again: the next worker fails the job with its reason instead of a third attempt.
        while (utcnow() - _job(st, job)["heartbeat_at"]).total_seconds() <= TIMEOUT_S + 1:
            time.sleep(0.5)
        c = _worker(data, db_url, log, "--once", timeout_s=TIMEOUT_S)
        try:
            assert c.wait(180) == 0, log.read_text(errors="replace")[-4000:]
        finally:
            if c.poll() is None:  # it retried the job instead of failing it
                _kill9(c)
        j = _job(st, job)
        assert j["status"] == "failed" and j["attempts"] == 2 and j["adapter_id"] is None, j
        assert "stopped responding 2 time(s)" in j["error"] and "previous adapter is still in use" in j["error"], j
        assert ws.jobs(cid)[0]["status"] == "failed"  # what the client page shows

        # v1 is still the choice, the only version and the only object in the store, and opens to the same bytes.
        assert for_client(st, cid) == v1
        adapters, choice = ws.adapters(cid)
        assert [(x["version"], x["status"]) for x in adapters] == [(1, "ready")] and choice is None
        assert st.blobs.list(f"adapters/{cid}/") == [blob_key(cid, v1["id"])]
        config2, weights2 = open_adapter(st, for_client(st, cid))
        assert (config2, weights2) == (config, v1_weights)

        # ... and loads into the real model, from memory, and drafts with it.
        from psyassist.app.llm import InProcess

        backend = InProcess(st.cfg)
        backend.start()
        try:
            backend.add_adapter(v1["name"], config2, weights2)

            async def stream():
                return [ev async for ev in backend.stream([{"role": "user", "content": "Hello"}], max_tokens=8,
                                                          adapter=v1["name"])]

            events = asyncio.run(stream())
            assert events[-1][0] == "done" and backend.hf.pool.loads == 1, events
        finally:
            backend.close()
    finally:
        st.close()

    # No adapter file and no plaintext of v1 anywhere the workers or this test wrote.  The workers' temp
    # dir is inside tmp_path, so every new file there is ours; the system temp dir is shared with other
    # processes, so there only the content is checked.
    new = _files([tmp_path, system_tmp]) - before
    named = [p for p in new if p.is_relative_to(tmp_path) and (p.suffix == ".safetensors" or p.name.startswith(
        ("adapter_model", "adapter_config")))]
    assert named == [], named
    slices = _slices(v1_weights)
    assert len(slices) == 24 and len(v1_weights) > 100_000
    for p in new:
        try:
            if not p.is_file() or p.stat().st_size > 1 << 30:
                continue
            blob = p.read_bytes()
        except OSError:  # removed meanwhile, or not ours to read
            continue
        assert not any(s in blob for s in slices), f"plaintext adapter bytes in {p}"
