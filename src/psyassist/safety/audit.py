"""The audit log: crisis detections and their acknowledgements, and every access to client data.

    psyassist safety audit pending audit.jsonl
    psyassist safety audit ack audit.jsonl EVENT_ID --by counselor-7 --note "called the client; safety plan"
    psyassist safety audit verify audit.jsonl

The app shows every flagged detection (a note or a chat message) as a banner until a counselor
acknowledges it; this module is the record behind that banner (issue 6 §2).  The app also logs
every read and write of client data here (who, what, which client, when; never the text), so one
tamper-evident chain holds both.  One append-only JSONL file; three kinds of entry:

    {"kind": "detection", "id", "time", "client", "source", "level", "categories", "rules", ["ref"], "prev"}
    {"kind": "ack", "id", "event", "time", "by", "note", "prev"}
    {"kind": "access", "id", "time", "who", "action", "client", "target", "prev"}

- Tamper evidence: `prev` is the SHA-256 of the previous line's bytes (64 zeros for the first), so
  an edited, inserted, reordered or deleted line breaks the chain and `verify` names the first line
  that does not fit.  (A chain shows tampering; it cannot stop someone who rewrites the whole file —
  keep a copy of the last hash elsewhere when that matters: `verify` prints it.)
- No message text by default (the notes it refers to are the client's; the log is not the place
  for them): level, categories and rule ids only.  `text=` stores it when a deployment wants that.
- Appends take an exclusive `flock` and are flushed and fsynced, so two processes never interleave
  lines or fork the chain; a line cut short by a crash is reported by `verify`, never silently skipped.
- One process keeps what it has read (byte offset, hash of the last line, parsed entries) and on
  the next append or read verifies only the lines added since, chained onto that hash: an append
  costs O(new lines), not O(log).  A log that shrank or changed identity (inode) is read again
  from the start.  Edits to lines this process has already read are found by `verify()` (a full
  re-read), which the app runs at startup and on its admin page.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from psyassist.errors import PsyassistError
from psyassist.safety.crisis import Detection

GENESIS = "0" * 64
SOURCES = ("note", "chat", "serve", "other")
KINDS = ("detection", "ack", "access")


class AuditError(PsyassistError):
    """The audit log is unreadable or its chain is broken (names the file and line)."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _digest(line: bytes) -> str:
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


class AuditLog:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._mutex = threading.Lock()  # the cache below; flock orders processes, this orders threads
        self._ino: int | None = None
        self._offset = 0  # bytes of the file already read and verified
        self._prev = GENESIS  # hash of the last line read
        self._cache: list[dict] = []
        # Group commit: appends from many threads share one flock + write + fsync (see _commit).
        self._queue: list[dict] = []
        self._queued = self._flushed = 0  # entries ever queued / ever made durable (sequence numbers)
        self._queue_lock = threading.Lock()
        self._flush_lock = threading.Lock()

    # --- writing ---------------------------------------------------------------------------

    def record(self, det: Detection, *, client: str, source: str = "note", text: str | None = None,
               ref: str | None = None) -> str | None:
        """Log a flagged detection; returns its event id (None when the detection is not flagged).

        `ref` names the record the text is in (e.g. "draft:<id>"), so the app can show the evidence
        from the encrypted record without the log holding any text."""
        if not det.flagged:
            return None
        if source not in SOURCES:
            raise PsyassistError(f"audit source must be one of {', '.join(SOURCES)}, got {source!r}")
        if not client:
            raise PsyassistError("audit entries need the client id they belong to")
        entry = {"kind": "detection", "id": secrets.token_hex(8), "time": _now(), "client": client,
                 "source": source, "level": det.level, "categories": sorted(det.categories),
                 "constructs": list(det.constructs), "rules": sorted({e.rule for e in det.evidence})}
        if text is not None:
            entry["text"] = text
        if ref is not None:
            entry["ref"] = ref
        self._commit([entry])
        return entry["id"]

    def access(self, *, who: str, action: str, client: str | None, target: str | None = None) -> str:
        """Log one read or write of client data: who (account), action ("note.read"), which client, which
        record; never the data itself."""
        entry = {"kind": "access", "id": secrets.token_hex(8), "time": _now(), "who": who, "action": action,
                 "client": client, "target": target}
        self._commit([entry])
        return entry["id"]

    def append_many(self, entries: list[dict]) -> None:
        """Append prepared entries (kind, id, time, ...) under one lock and one fsync (group commit)."""
        for e in entries:
            if e.get("kind") not in KINDS or "id" not in e or "time" not in e:
                raise PsyassistError(f"audit entries need kind (one of {KINDS}), id and time; got {sorted(e)}")
        if entries:
            self._commit(entries)

    def _commit(self, entries: list[dict]) -> None:
        """Make `entries` durable before returning, sharing the fsync with other threads' entries.

        Each thread queues its entries; whoever holds the flush lock writes everything queued so
        far under one flock and one fsync; a thread whose entries were written meanwhile returns
        without touching the file.  50 threads reading records cost a few fsyncs, not 50."""
        with self._queue_lock:
            self._queue.extend(entries)
            self._queued += len(entries)
            mine = self._queued
        with self._flush_lock:
            with self._queue_lock:
                if self._flushed >= mine:
                    return
                batch, self._queue = self._queue, []
                upto = self._queued
            try:
                with self._locked() as f:
                    self._append(f, batch)
            except BaseException:
                with self._queue_lock:  # not written: put them back for the next flusher (or the next call)
                    self._queue[:0] = batch
                raise
            with self._queue_lock:
                self._flushed = upto

    def acknowledge(self, event_id: str, *, by: str, note: str = "") -> str:
        """Record that counselor `by` saw and handled event `event_id`; returns the ack's id."""
        if not by.strip():
            raise PsyassistError("an acknowledgement names who acknowledged it (--by)")
        with self._locked() as f:
            entries = self._sync(f)
            events = {e["id"]: e for e in entries if e["kind"] == "detection"}
            if event_id not in events:
                raise PsyassistError(f"{self.path}: no detection with id {event_id!r} "
                                     f"(`psyassist safety audit pending {self.path}` lists the open ones)")
            done = next((e for e in entries if e["kind"] == "ack" and e["event"] == event_id), None)
            if done is not None:
                raise PsyassistError(f"{self.path}: event {event_id} was already acknowledged by {done['by']} "
                                     f"at {done['time']}")
            entry = {"kind": "ack", "id": secrets.token_hex(8), "event": event_id, "time": _now(), "by": by,
                     "note": note}
            self._append(f, [entry])
        return entry["id"]

    # --- reading ---------------------------------------------------------------------------

    def entries(self) -> list[dict]:
        """Every entry; lines added since this process last read are verified onto the known chain."""
        if not self.path.exists():
            return []
        with self.path.open("rb") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH)
            try:
                return list(self._sync(f))
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def pending(self) -> list[dict]:
        """Detections no one has acknowledged yet, oldest first: what the app shows as banners."""
        entries = self.entries()
        acked = {e["event"] for e in entries if e["kind"] == "ack"}
        return [e for e in entries if e["kind"] == "detection" and e["id"] not in acked]

    def verify(self) -> tuple[int, str]:
        """(entries, hash of the last line), re-reading the WHOLE file; raises AuditError at the first line
        that breaks the chain."""
        with self._mutex:
            self._ino, self._offset, self._prev, self._cache = None, 0, GENESIS, []
        entries = self.entries()
        if not entries:
            return 0, GENESIS
        last = self.path.read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        return len(entries), _digest(last)

    # --- internals -------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield f
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _append(self, f, entries: list[dict]) -> None:
        self._sync(f)  # verifies the chain up to the end: never append to a broken log
        with self._mutex:
            prev, lines = self._prev, []
            for entry in entries:
                line = json.dumps({**entry, "prev": prev}, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n"
                lines.append(line)
                prev = _digest(line)
            f.seek(0, os.SEEK_END)
            f.write(b"".join(lines))
            f.flush()
            os.fsync(f.fileno())
            for line in lines:
                self._cache.append(json.loads(line))
                self._offset += len(line)
            self._prev = prev

    def _sync(self, f) -> list[dict]:
        """Read and verify the lines added since the last call (or everything, for a new or changed file)."""
        with self._mutex:
            st = os.fstat(f.fileno())
            if st.st_ino != self._ino or st.st_size < self._offset:
                self._ino, self._offset, self._prev, self._cache = st.st_ino, 0, GENESIS, []
            if st.st_size > self._offset:
                start_line = len(self._cache)
                for entry, raw in self._lines(f, self._offset, self._prev, start_line):
                    self._cache.append(entry)
                    self._offset += len(raw)
                    self._prev = _digest(raw)
            return list(self._cache)

    def _lines(self, f, offset: int = 0, prev: str = GENESIS, before: int = 0) -> Iterator[tuple[dict, bytes]]:
        f.seek(offset)
        for n, raw in enumerate(f, before + 1):
            where = f"{self.path}:{n}"
            if not raw.endswith(b"\n"):
                raise AuditError(f"{where}: the last line is cut short (a crash while writing?); nothing after "
                                 f"line {n - 1} can be trusted — keep the file and investigate, do not edit it")
            try:
                entry = json.loads(raw)
            except ValueError as e:
                raise AuditError(f"{where}: not a JSON object ({e}); the log was edited or damaged") from e
            if not isinstance(entry, dict) or entry.get("kind") not in KINDS:
                raise AuditError(f"{where}: field 'kind' must be one of {', '.join(KINDS)}")
            if entry.get("prev") != prev:
                raise AuditError(f"{where}: field 'prev' does not match the hash of line {n - 1}: a line before "
                                 "it was edited, inserted or deleted (the chain breaks here)")
            prev = _digest(raw)
            yield entry, raw
