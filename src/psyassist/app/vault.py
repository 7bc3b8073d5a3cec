"""Data keys: create, unwrap (cached), delete, and re-wrap them all under a new master key.

    psyassist app rotate-key

Owners are "client:<id>" (everything about one client) and "user:<id>" (a counselor's chats that
belong to no client).  Deleting a client deletes its key row in the same transaction as its
data; backups carry data and keys apart (backup.py), so an older backup cannot bring it back.
"""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from psyassist.app.store.crypto import DataKey, KeyCache, MasterKey, Unreadable, write_key_file
from psyassist.app.store.db import Database
from psyassist.app.store.models import DataKeyRow, Meta
from psyassist.errors import PsyassistError


class Vault:
    def __init__(self, db: Database, master: MasterKey):
        self.db = db
        self.master = master
        self.cache = KeyCache()
        self._lock = threading.Lock()

    def key(self, s: Session, owner: str) -> DataKey:
        with self._lock:
            k = self.cache.get(owner)
        if k is not None:
            return k
        row = s.get(DataKeyRow, owner)
        if row is None:
            raise Unreadable(f"data key of {owner} (deleted)")
        k = DataKey(self.master.unwrap(row.wrapped, owner), owner)
        with self._lock:
            self.cache.put(k)
        return k

    def create(self, s: Session, owner: str) -> DataKey:
        raw = DataKey.new_raw()
        s.add(DataKeyRow(owner=owner, wrapped=self.master.wrap(raw, owner), master_id=self.master.key_id))
        k = DataKey(raw, owner)
        with self._lock:
            self.cache.put(k)
        return k

    def delete(self, s: Session, owner: str) -> None:
        row = s.get(DataKeyRow, owner)
        if row is not None:
            s.delete(row)
        with self._lock:
            self.cache.drop(owner)

    def forget(self, owner: str) -> None:
        with self._lock:
            self.cache.drop(owner)


def rotate_master_key(db: Database, old: MasterKey, key_file: Path) -> tuple[MasterKey, int]:
    """Re-wrap every data key under a new master key; (new key, keys re-wrapped).

    Crash-safe order: the new key is written to KEY_FILE.next first; the database switches in one
    transaction; then KEY_FILE.next replaces KEY_FILE.  If the process dies after the commit but
    before the rename, the next start finds the database's key check matches KEY_FILE.next and
    finishes the rename (see `recover_rotation`)."""
    new = MasterKey.generate()
    nxt = key_file.with_name(key_file.name + ".next")
    write_key_file(nxt, new)
    n = 0
    with db.write() as s:
        for row in s.scalars(select(DataKeyRow)).all():
            raw = old.unwrap(row.wrapped, row.owner)
            row.wrapped, row.master_id = new.wrap(raw, row.owner), new.key_id
            n += 1
        s.get(Meta, "key_check").value = new.key_check()
        s.get(Meta, "master_id").value = new.key_id.encode()
    old_copy = key_file.with_name(key_file.name + ".old")
    if key_file.exists():
        key_file.replace(old_copy)  # kept until the admin has a backup made with the new key, then deleted
    nxt.replace(key_file)
    return new, n


def recover_rotation(key_file: Path, check: bytes) -> bool:
    """A rotation that committed but did not rename its key file: finish it.  True when it did."""
    nxt = key_file.with_name(key_file.name + ".next")
    if not nxt.is_file():
        return False
    try:
        candidate = MasterKey.from_text(nxt.read_text(encoding="ascii"), str(nxt))
        candidate.verify(check, str(nxt))
    except PsyassistError:
        return False
    if key_file.exists():
        key_file.replace(key_file.with_name(key_file.name + ".old"))
    nxt.replace(key_file)
    return True
