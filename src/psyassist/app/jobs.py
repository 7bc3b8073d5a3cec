"""Durable jobs: rows in the app's database, claimed by workers, never "running" forever.

    psyassist app worker            # a worker process (any machine that reaches the database)
    psyassist app                   # also runs one worker thread in process (--workers 0 to turn it off)

- **Claim**: in one write transaction a worker takes the oldest queued job and marks it running
  with its name and a heartbeat.  On PostgreSQL the row is taken with `FOR UPDATE SKIP LOCKED`
  after locking the queue's lock row (`meta.jobs_lock`, so the global concurrency limit is
  counted consistently); on SQLite the transaction is `BEGIN IMMEDIATE`, which admits one writer
  at a time.  Either way two workers never get the same job (tested with two worker processes
  and ten jobs on PostgreSQL).
- **Heartbeat**: a running job's worker writes `heartbeat_at` and the progress every few seconds
  and reads `cancel_requested`.
- **Timeout**: every worker, before claiming, re-queues running jobs whose heartbeat is older than
  `job_timeout_s` (the worker died: kill -9, power cut) — or fails them with the reason once
  they have used `max_attempts`.  Nothing else changes: the client's previous adapter stays active.
- **Limits** (AppConfig): one queued-or-running job per client, `max_running_jobs` across all
  workers, `max_adapters_per_counselor` (active versions, checked when a job is queued), and the
  per-job caps on note tokens and steps.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import traceback
from datetime import timedelta

from sqlalchemy import func, select

from psyassist.app.records import Conflict
from psyassist.app.store.models import Job, Meta, utcnow
from psyassist.errors import PsyassistError

log = logging.getLogger("psyassist.app.jobs")
ACTIVE = ("queued", "running")


class JobLimit(Conflict):
    """A limit refuses the job (the page and the API answer 409 with the message)."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 100000}"


def enqueue(st, *, kind: str, client_id: str, owner_id: str, params: dict) -> str:
    """Queue a job; refuses a second active job for the same client."""
    with st.db.write() as s:
        busy = s.scalar(select(Job.id).where(Job.client_id == client_id, Job.status.in_(ACTIVE)))
        if busy:
            raise JobLimit("this client already has a training job queued or running; wait for it or cancel it")
        job = Job(kind=kind, client_id=client_id, owner_id=owner_id, status="queued",
                  params=json.dumps(params), progress=json.dumps({"phase": "queued"}),
                  max_attempts=st.cfg.job_max_attempts)
        s.add(job)
        s.flush()
        return job.id


def reap(st, now=None) -> int:
    """Re-queue (or fail, after max_attempts) running jobs whose worker stopped sending heartbeats."""
    now = now or utcnow()
    stale = now - timedelta(seconds=st.cfg.job_timeout_s)
    n = 0
    with st.db.write() as s:
        for job in s.scalars(select(Job).where(Job.status == "running", Job.heartbeat_at < stale)):
            n += 1
            if job.attempts >= job.max_attempts:
                job.status, job.finished_at = "failed", now
                job.error = (f"the worker ({job.worker}) stopped responding {job.attempts} time(s) "
                             f"(no heartbeat for {st.cfg.job_timeout_s} s); the previous adapter is still in use")
            else:
                job.status, job.worker = "queued", None
                job.progress = json.dumps({"phase": "queued", "note": "retrying: the previous worker stopped"})
    return n


def claim(st, worker: str) -> str | None:
    """Take the oldest queued job (see the module docstring for why this is exclusive); its id or None."""
    now = utcnow()
    with st.db.write() as s:
        if st.db.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            # The lock row exists after this, whoever created it: two workers starting together used to both
            # see no row, both insert, and one died on the unique key (CI caught it, 1 run in ~5).  ON CONFLICT
            # waits for the other creator's commit, then does nothing.
            s.execute(pg_insert(Meta).values(key="jobs_lock", value=b"1").on_conflict_do_nothing(index_elements=["key"]))
            s.get(Meta, "jobs_lock", with_for_update=True)
        running = s.scalar(select(func.count()).select_from(Job).where(Job.status == "running"))
        if running >= st.cfg.max_running_jobs:
            return None
        q = select(Job).where(Job.status == "queued").order_by(Job.created_at).limit(1)
        if st.db.dialect == "postgresql":
            q = q.with_for_update(skip_locked=True)
        job = s.scalar(q)
        if job is None:
            return None
        job.status, job.worker, job.attempts = "running", worker, job.attempts + 1
        job.started_at = job.heartbeat_at = now
        job.progress = json.dumps({"phase": "starting"})
        return job.id


def heartbeat(st, job_id: str, progress: dict | None) -> bool:
    """Record liveness (and progress); True when the counselor asked to cancel."""
    with st.db.write() as s:
        job = s.get(Job, job_id)
        if job is None:
            return True
        job.heartbeat_at = utcnow()
        if progress is not None:
            job.progress = json.dumps(progress)
        return bool(job.cancel_requested)


def finish(st, job_id: str, status: str, *, error: str | None = None, adapter_id: str | None = None,
           progress: dict | None = None) -> None:
    with st.db.write() as s:
        job = s.get(Job, job_id)
        if job is None:
            return
        job.status, job.error, job.finished_at = status, error, utcnow()
        if adapter_id:
            job.adapter_id = adapter_id
        if progress is not None:
            job.progress = json.dumps(progress)


HANDLERS: dict = {}  # kind -> function(st, job_row_dict, report(progress) -> cancel?) -> adapter id


class Worker:
    """Claims and runs jobs until stopped; one job at a time (a training job uses the whole machine)."""

    def __init__(self, st, *, poll_s: float = 2.0, heartbeat_s: float = 5.0, name: str | None = None):
        self.st, self.poll_s, self.heartbeat_s = st, poll_s, heartbeat_s
        self.name = name or worker_name()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.jobs_run = 0

    def start(self) -> Worker:
        self.thread = threading.Thread(target=self.run, name="psyassist-app-worker", daemon=True)
        self.thread.start()
        return self

    def close(self, timeout: float = 30) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                if not self.run_once():
                    self.stop.wait(self.poll_s)
            except Exception:  # noqa: BLE001 — a database hiccup must not end the worker
                log.exception("worker %s: claim failed", self.name)
                self.stop.wait(self.poll_s)

    def run_once(self) -> bool:
        """Reap, claim, run one job; False when there was nothing to do."""
        reap(self.st)
        job_id = claim(self.st, self.name)
        if job_id is None:
            return False
        self.execute(job_id)
        self.jobs_run += 1
        return True

    def execute(self, job_id: str) -> None:
        with self.st.db.read() as s:
            job = s.get(Job, job_id)
            row = {"id": job.id, "kind": job.kind, "client_id": job.client_id, "owner_id": job.owner_id,
                   "params": json.loads(job.params), "attempts": job.attempts}
        cancel = threading.Event()
        latest: dict = {"phase": "starting"}
        beat_stop = threading.Event()

        def beat():
            while not beat_stop.wait(self.heartbeat_s):
                try:
                    if heartbeat(self.st, job_id, latest):
                        cancel.set()
                except Exception:  # noqa: BLE001
                    log.exception("heartbeat of job %s failed", job_id)

        beater = threading.Thread(target=beat, name=f"heartbeat-{job_id[:8]}", daemon=True)
        beater.start()

        def report(progress: dict) -> None:
            latest.clear()
            latest.update(progress)

        handler = HANDLERS.get(row["kind"])
        try:
            if handler is None:
                raise PsyassistError(f"no handler for job kind {row['kind']!r}")
            adapter_id, final = handler(self.st, row, report, cancel)
            finish(self.st, job_id, "done", adapter_id=adapter_id, progress=final)
        except Exception as e:  # noqa: BLE001 — a failed job records its reason; the worker goes on
            from psyassist.app.training import Cancelled

            if isinstance(e, Cancelled) or cancel.is_set():
                finish(self.st, job_id, "cancelled", error="cancelled by the counselor",
                       progress={**latest, "phase": "cancelled"})
            else:
                log.error("job %s failed:\n%s", job_id, traceback.format_exc())
                reason = str(e) if isinstance(e, PsyassistError) else f"{type(e).__name__}: {e}"
                finish(self.st, job_id, "failed", error=reason[:1000], progress={**latest, "phase": "failed"})
        finally:
            beat_stop.set()
            beater.join(10)


def cancel_job(st, job_id: str) -> None:
    with st.db.write() as s:
        job = s.get(Job, job_id)
        if job is None:
            return
        if job.status == "queued":
            job.status, job.finished_at, job.error = "cancelled", utcnow(), "cancelled by the counselor"
        elif job.status == "running":
            job.cancel_requested = True  # the worker notices at its next heartbeat and stops after the step


def wait_idle(st, timeout: float = 600) -> None:
    """Tests and scripts: wait until no job is queued or running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with st.db.read() as s:
            if not s.scalar(select(func.count()).select_from(Job).where(Job.status.in_(ACTIVE))):
                return
        time.sleep(0.5)
    raise TimeoutError(f"jobs still active after {timeout} s")

