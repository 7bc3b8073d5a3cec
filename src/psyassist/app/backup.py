"""Encrypted backups that restore on a new machine, and that a client's deletion makes useless for that client.

    psyassist app backup /mnt/backups          # → psyassist-<time>.snapshot + keystore (refreshed)
    psyassist app restore /mnt/backups/psyassist-20261206T101500Z.snapshot --keystore /mnt/backups/keystore \\
        --database-url sqlite:///new/app.db --key-file master.key

Two files, on purpose:
- A **snapshot** is every table except the data keys, read in ONE transaction (a consistent
  point in time on SQLite and PostgreSQL alike), plus the audit log up to that point.  Portable:
  a SQLite snapshot restores into PostgreSQL and back.
- The **key store** holds the data keys (still wrapped by the master key).  There is one, and
  every backup and every client deletion rewrites it (when `backup_dir` is set).  A client deleted
  after a snapshot was taken has no key in the current key store, so restoring that older
  snapshot brings back everything except that client: their rows are dropped as unreadable.
  Keep old snapshots as long as you like; do not keep old key stores (that is the whole point).

Both files are sealed: a random file key encrypts 1 MiB chunks with AES-256-GCM (the header
and the chunk's index and "last" flag are associated data, so a reordered, cut or spliced
file fails), and the file key is wrapped by the master key.  A snapshot therefore needs the
master key that was current when it was made: after `rotate-key`, keep master.key.old as long
as you keep snapshots made before the rotation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import struct
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timezone
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import LargeBinary, delete, insert, select, text

from psyassist.app.store.crypto import MasterKey
from psyassist.app.store.db import Database, migrate
from psyassist.app.store.models import Base, Client, DataKeyRow, Meta
from psyassist.errors import PsyassistError

MAGIC = b"PSYASSIST-BACKUP 1\n"
CHUNK = 1 << 20
KEYSTORE = "keystore"
# Parents before children, so a restore inserts without violating foreign keys.
ORDER = ["meta", "users", "auth_sessions", "login_attempts", "clients", "basic_info_versions", "notes",
         "note_versions", "addenda", "drafts", "chats", "chat_messages", "adapters", "jobs",
         "kb_meta", "kb_documents", "kb_chunks"]
SERIAL = ("kb_documents", "kb_chunks")  # integer ids: PostgreSQL's sequences must follow the restored rows


def _table(name: str):
    from psyassist.kb.store import Base as KbBase

    return Base.metadata.tables.get(name) if name in Base.metadata.tables else KbBase.metadata.tables[name]


class BackupError(PsyassistError):
    pass


# --- the sealed container -------------------------------------------------------------------------


def _write_sealed(path: Path, kind: str, master: MasterKey, chunks: Iterable[bytes], extra: dict) -> None:
    file_key = secrets.token_bytes(32)
    header = {"format": "psyassist-backup", "version": 1, "kind": kind, "master_id": master.key_id,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "file_key": base64.b64encode(master.wrap(file_key, f"backup:{kind}")).decode(), **extra}
    head = json.dumps(header, sort_keys=True).encode() + b"\n"
    head_hash = hashlib.sha256(head).digest()
    aead = AESGCM(file_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC + head)
            buf, index = b"", 0
            pending: bytes | None = None
            for piece in chunks:
                buf += piece
                while len(buf) >= CHUNK:
                    if pending is not None:
                        _chunk(f, aead, head_hash, index, pending, last=False)
                        index += 1
                    pending, buf = buf[:CHUNK], buf[CHUNK:]
            if buf or pending is None:
                if pending is not None:
                    _chunk(f, aead, head_hash, index, pending, last=False)
                    index += 1
                pending = buf
            _chunk(f, aead, head_hash, index, pending, last=True)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _chunk(f, aead: AESGCM, head_hash: bytes, index: int, data: bytes, *, last: bool) -> None:
    nonce = os.urandom(12)
    ad = head_hash + struct.pack(">Q?", index, last)
    ct = aead.encrypt(nonce, data, ad)
    f.write(struct.pack(">I?", len(ct), last) + nonce + ct)


def _read_sealed(path: Path, master: MasterKey, kind: str) -> tuple[dict, Iterator[bytes]]:
    f = open(path, "rb")  # noqa: SIM115 — closed by the generator
    if f.read(len(MAGIC)) != MAGIC:
        f.close()
        raise BackupError(f"{path}: not a psyassist backup file")
    head = f.readline()
    try:
        header = json.loads(head)
    except ValueError as e:
        f.close()
        raise BackupError(f"{path}: the header is damaged ({e})") from e
    if header.get("kind") != kind:
        f.close()
        raise BackupError(f"{path}: this is a {header.get('kind')} file, expected a {kind}")
    try:
        file_key = master.unwrap(base64.b64decode(header["file_key"]), f"backup:{kind}")
    except PsyassistError as e:
        f.close()
        raise BackupError(f"{path}: the master key given is not the one this {kind} was made with (made with key "
                          f"{header.get('master_id')}, given {master.key_id}); after a rotation use master.key.old") from e
    aead, head_hash = AESGCM(file_key), hashlib.sha256(head).digest()

    def chunks() -> Iterator[bytes]:
        with f:
            index = 0
            while True:
                lead = f.read(5)
                if len(lead) < 5:
                    raise BackupError(f"{path}: the file ends early (chunk {index} missing): it was cut short")
                n, last = struct.unpack(">I?", lead)
                nonce, ct = f.read(12), f.read(n)
                if len(ct) < n:
                    raise BackupError(f"{path}: chunk {index} is cut short")
                try:
                    yield aead.decrypt(nonce, ct, head_hash + struct.pack(">Q?", index, last))
                except InvalidTag as e:
                    raise BackupError(f"{path}: chunk {index} failed its integrity check (damaged or altered)") from e
                if last:
                    if f.read(1):
                        raise BackupError(f"{path}: data after the last chunk (altered)")
                    return
                index += 1

    return header, chunks()


# --- rows <-> JSON ----------------------------------------------------------------------------------


def _encode(v):
    if isinstance(v, bytes):
        return {"$b": base64.b64encode(v).decode()}
    if isinstance(v, datetime):
        return {"$dt": v.isoformat()}
    if isinstance(v, date):
        return {"$d": v.isoformat()}
    return v


def _decode(v):
    if isinstance(v, dict):
        if "$b" in v:
            return base64.b64decode(v["$b"])
        if "$dt" in v:
            return datetime.fromisoformat(v["$dt"])
        if "$d" in v:
            return date.fromisoformat(v["$d"])
    return v


def _snapshot_lines(db: Database, audit_path: Path, blobs=None) -> Iterator[bytes]:
    with db.engine.connect() as conn:
        if db.dialect == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            yield json.dumps({"revision": revision}).encode() + b"\n"
            for name in ORDER:
                table = _table(name)
                for row in conn.execute(select(table)).mappings():
                    yield json.dumps({"t": name, "r": {k: _encode(v) for k, v in row.items()}},
                                     ensure_ascii=False).encode() + b"\n"
            # The audit log as of now: appended under its own lock, read after the tables (it may hold a few
            # entries newer than the snapshot, never fewer).
            if audit_path.exists():
                yield json.dumps({"audit": audit_path.read_text(encoding="utf-8")}, ensure_ascii=False).encode() + b"\n"
            # The adapter store: blobs sealed with their client's key, copied as they are.  Only blobs of
            # adapter rows in this snapshot (a job finishing meanwhile adds a blob the rows don't know).
            if blobs is not None:
                keys = {r[0] for r in conn.execute(text("SELECT blob_key FROM adapters WHERE status != 'deleted'"))}
                for key in sorted(keys):
                    try:
                        data = blobs.get(key)
                    except Exception as e:  # noqa: BLE001 — a missing blob is reported, the backup goes on
                        yield json.dumps({"blob_missing": key, "error": str(e)[:200]}).encode() + b"\n"
                        continue
                    yield json.dumps({"blob": key, "data": base64.b64encode(data).decode()}).encode() + b"\n"


def _keystore_lines(db: Database) -> Iterator[bytes]:
    with db.read() as s:
        for row in s.scalars(select(DataKeyRow)):
            yield json.dumps({"owner": row.owner, "wrapped": base64.b64encode(row.wrapped).decode(),
                              "master_id": row.master_id, "created_at": row.created_at.isoformat()}).encode() + b"\n"


def write_keystore(db: Database, master: MasterKey, out_dir: Path) -> Path:
    path = Path(out_dir) / KEYSTORE
    _write_sealed(path, "keystore", master, _keystore_lines(db), {})
    return path


def backup(db: Database, master: MasterKey, audit_path: Path, out_dir: Path, blobs=None) -> tuple[Path, Path]:
    """(snapshot, key store) written atomically into out_dir; `blobs` adds the adapter store."""
    out_dir = Path(out_dir)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    snap = out_dir / f"psyassist-{stamp}.snapshot"
    _write_sealed(snap, "snapshot", master, _snapshot_lines(db, Path(audit_path), blobs), {"dialect": db.dialect})
    keys = write_keystore(db, master, out_dir)
    return snap, keys


def _lines(chunks: Iterator[bytes]) -> Iterator[dict]:
    buf = b""
    for c in chunks:
        buf += c
        *whole, buf = buf.split(b"\n")
        for line in whole:
            if line:
                yield json.loads(line)
    if buf.strip():
        yield json.loads(buf)


def restore(snapshot: Path, keystore: Path, db: Database, master: MasterKey, audit_path: Path, *,
            snapshot_master: MasterKey | None = None, blobs=None) -> dict:
    """Restore into an EMPTY database; returns counts.  Clients whose key is not in the key store (deleted
    after the snapshot) are dropped with all their rows."""
    from sqlalchemy import inspect

    if "clients" in inspect(db.engine).get_table_names():
        with db.read() as s:
            if s.scalar(select(Client.id).limit(1)) is not None:
                raise BackupError(f"{db.url} already holds clients: restore only into a new, empty database")
    _, key_chunks = _read_sealed(Path(keystore), master, "keystore")
    keys = {k["owner"]: k for k in _lines(key_chunks)}
    _, chunks = _read_sealed(Path(snapshot), snapshot_master or master, "snapshot")
    records = _lines(chunks)
    first = next(records)
    migrate(db, first["revision"])
    counts: dict[str, int] = {}
    audit_text = None
    blob_records: list[tuple[str, bytes]] = []
    with db.write() as s:
        s.execute(delete(Meta))
        for rec in records:
            if "audit" in rec:
                audit_text = rec["audit"]
                continue
            if "blob" in rec:
                blob_records.append((rec["blob"], base64.b64decode(rec["data"])))
                continue
            if "blob_missing" in rec:
                counts["blobs_missing_at_backup"] = counts.get("blobs_missing_at_backup", 0) + 1
                continue
            table = _table(rec["t"])
            row = {k: _decode(v) for k, v in rec["r"].items()}
            if rec["t"] == "meta" and row["key"] in ("key_check", "master_id"):
                continue  # the restored database answers to the key given here (set below)
            for col in table.columns:  # JSON-encoded bytes columns come back as bytes
                if isinstance(col.type, LargeBinary) and isinstance(row.get(col.name), str):
                    row[col.name] = base64.b64decode(row[col.name])
            s.execute(insert(table).values(**row))
            counts[rec["t"]] = counts.get(rec["t"], 0) + 1
        for owner, k in keys.items():
            s.add(DataKeyRow(owner=owner, wrapped=base64.b64decode(k["wrapped"]), master_id=k["master_id"],
                             created_at=datetime.fromisoformat(k["created_at"])))
        s.flush()
        gone = [cid for cid in s.scalars(select(Client.id)) if f"client:{cid}" not in keys]
        for cid in gone:
            from psyassist.app.store.models import (
                Addendum,
                BasicInfoVersion,
                Chat,
                ChatMessage,
                Draft,
                Note,
                NoteVersion,
            )

            notes = select(Note.id).where(Note.client_id == cid)
            chats = select(Chat.id).where(Chat.client_id == cid)
            s.execute(delete(Addendum).where(Addendum.note_id.in_(notes)))
            s.execute(delete(NoteVersion).where(NoteVersion.note_id.in_(notes)))
            s.execute(delete(Note).where(Note.client_id == cid))
            s.execute(delete(BasicInfoVersion).where(BasicInfoVersion.client_id == cid))
            s.execute(delete(Draft).where(Draft.client_id == cid))
            s.execute(delete(ChatMessage).where(ChatMessage.chat_id.in_(chats)))
            s.execute(delete(Chat).where(Chat.client_id == cid))
            from psyassist.app.store.models import Adapter, Job

            s.execute(delete(Adapter).where(Adapter.client_id == cid))
            s.execute(delete(Job).where(Job.client_id == cid))
            s.execute(delete(Client).where(Client.id == cid))
        if db.dialect == "postgresql":  # rows came with their ids: move each sequence past the largest
            for name in SERIAL:
                if counts.get(name):
                    s.execute(text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                   f"(SELECT MAX(id) FROM {name}))"))
        # The database now answers to the CURRENT master key (the key store is wrapped by it).
        s.add(Meta(key="key_check", value=master.key_check()))
        s.add(Meta(key="master_id", value=master.key_id.encode()))
    migrate(db)
    if audit_text is not None:
        audit_path = Path(audit_path)
        if audit_path.exists() and audit_path.stat().st_size:
            raise BackupError(f"{audit_path} already exists; move it away before restoring the audit log")
        audit_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = audit_path.with_name(audit_path.name + ".tmp")
        tmp.write_text(audit_text, encoding="utf-8")
        os.replace(tmp, audit_path)
    counts["clients_dropped_deleted_after_snapshot"] = len(gone)
    kept = [(k, d) for k, d in blob_records if k.split("/")[1] not in set(gone)]
    if blob_records and blobs is None:
        raise BackupError(f"the snapshot holds {len(blob_records)} adapter blob(s) but no adapter store was given")
    for key, data in kept:
        blobs.put(key, data)
    counts["adapter_blobs"] = len(kept)
    return counts
