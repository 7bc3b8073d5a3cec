"""Envelope encryption at rest: a master key wraps one data key per client; AES-256-GCM everywhere.

    python -c "from psyassist.app.store.crypto import MasterKey; print(MasterKey.generate().key_id)"

- The **master key** (32 random bytes) lives outside the database: a key file created 0600 on
  first start, or base64 in an environment variable.  It never encrypts client data itself; it
  wraps **data keys** (32 random bytes, one per client and one per counselor for chats without a
  client).  Rotating the master key re-wraps the data keys; no note is re-encrypted.
- Every encrypted field is `b"\\x01" + nonce(12) + AES-GCM(ciphertext + tag)` with associated data
  `psyassist:v1:{table}:{row id}:{field}`: a ciphertext copied to another row or another field
  fails authentication, so swapping two notes' contents (or two clients' names) is detected.
- Wrapped data keys are bound the same way to their owner (`key:client:<id>`), so a key moved to
  another client does not unwrap.
- The database holds a **key check** (a known constant encrypted with the master key): a wrong
  master key is refused at startup before anything is read or written.

Nonces are random (96 bits): with at most ~2^32 encryptions per data key the collision
probability stays below NIST SP 800-38D's 2^-32 bound; a client's notes are far fewer.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections import OrderedDict
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from psyassist.errors import PsyassistError

VERSION = b"\x01"
NONCE = 12
KEY_CHECK_PLAINTEXT = b"psyassist master key check v1"
KEY_ENV = "PSYASSIST_APP_MASTER_KEY"


class MasterKeyError(PsyassistError):
    """The master key is missing, malformed or not the one this database was created with."""


class Unreadable(PsyassistError):
    """One encrypted value failed authentication (tampered, swapped, or its key is gone)."""

    def __init__(self, where: str):
        self.where = where
        super().__init__(f"{where}: the encrypted value failed its integrity check (it was altered, moved from "
                         "another record, or its key was deleted); the other records are not affected")


def field_ad(table: str, row_id: str, field: str) -> bytes:
    return f"psyassist:v1:{table}:{row_id}:{field}".encode()


def _seal(aead: AESGCM, plaintext: bytes, ad: bytes) -> bytes:
    nonce = os.urandom(NONCE)
    return VERSION + nonce + aead.encrypt(nonce, plaintext, ad)


def _open(aead: AESGCM, blob: bytes, ad: bytes, where: str) -> bytes:
    if not blob or blob[:1] != VERSION or len(blob) < 1 + NONCE + 16:
        raise Unreadable(where)
    try:
        return aead.decrypt(blob[1:1 + NONCE], blob[1 + NONCE:], ad)
    except InvalidTag as e:
        raise Unreadable(where) from e


class MasterKey:
    def __init__(self, key: bytes):
        if len(key) != 32:
            raise MasterKeyError(f"the master key must be 32 bytes (AES-256), got {len(key)}")
        self._aead = AESGCM(key)
        self._raw = key
        # An id that names the key without revealing it (shown by `app rotate-key`, stored with wrapped keys).
        self.key_id = hashlib.sha256(b"psyassist key id" + key).hexdigest()[:16]

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(32))

    def encoded(self) -> str:
        return base64.b64encode(self._raw).decode()

    # --- the key file / environment ------------------------------------------------------------

    @classmethod
    def from_text(cls, text: str, where: str) -> MasterKey:
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except ValueError as e:
            raise MasterKeyError(f"{where}: not base64 ({e}); expected the 44-character key `psyassist app` wrote") from e
        if len(raw) != 32:
            raise MasterKeyError(f"{where}: decodes to {len(raw)} bytes; a master key is 32 bytes (44 base64 characters)")
        return cls(raw)

    @classmethod
    def load(cls, key_file: Path, *, create: bool) -> tuple[MasterKey, str]:
        """(key, where it came from): the environment variable first, then the key file.

        create=True makes a new key file (0600, written atomically) when neither exists: only for
        a new, empty database — an existing database with a missing key is an error, not a new key.
        """
        env = os.environ.get(KEY_ENV)
        if env:
            return cls.from_text(env, f"${KEY_ENV}"), f"${KEY_ENV}"
        if key_file.is_file():
            mode = key_file.stat().st_mode & 0o077
            if mode:
                raise MasterKeyError(f"{key_file}: the master key file is readable by group or others (mode "
                                f"{oct(key_file.stat().st_mode & 0o777)}); run `chmod 600 {key_file}`")
            return cls.from_text(key_file.read_text(encoding="ascii", errors="replace"), str(key_file)), str(key_file)
        if not create:
            raise MasterKeyError(f"no master key: {key_file} does not exist and ${KEY_ENV} is not set. This database was "
                            "created with a master key; restore that key file (or set the variable) to open it.")
        key = cls.generate()
        write_key_file(key_file, key)
        return key, str(key_file)

    # --- wrapping ------------------------------------------------------------------------------

    def key_check(self) -> bytes:
        return _seal(self._aead, KEY_CHECK_PLAINTEXT, b"psyassist:v1:meta:key_check")

    def verify(self, check: bytes, where: str) -> None:
        try:
            ok = _open(self._aead, check, b"psyassist:v1:meta:key_check", "key check") == KEY_CHECK_PLAINTEXT
        except Unreadable:
            ok = False
        if not ok:
            raise MasterKeyError(f"the master key from {where} is not the key this database was created with (its key "
                            "check does not decrypt). Nothing was read or changed. Use the original key file or "
                            f"${KEY_ENV}; after `psyassist app rotate-key`, the new key.")

    def wrap(self, data_key: bytes, owner: str) -> bytes:
        return _seal(self._aead, data_key, f"psyassist:v1:key:{owner}".encode())

    def unwrap(self, wrapped: bytes, owner: str) -> bytes:
        return _open(self._aead, wrapped, f"psyassist:v1:key:{owner}".encode(), f"data key of {owner}")

    def derive(self, purpose: str) -> bytes:
        """A separate 32-byte key for one purpose (backups), never used for anything else."""
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                    info=b"psyassist derive v1:" + purpose.encode()).derive(self._raw)


def write_key_file(path: Path, key: MasterKey) -> None:
    """Atomically write a key file readable by its owner only (0600 from the first byte)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (key.encoded() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class DataKey:
    """One owner's data key: seals and opens that owner's fields."""

    def __init__(self, raw: bytes, owner: str):
        self._aead = AESGCM(raw)
        self.owner = owner

    @staticmethod
    def new_raw() -> bytes:
        return secrets.token_bytes(32)

    def seal(self, plaintext: str | bytes, table: str, row_id: str, field: str) -> bytes:
        data = plaintext.encode("utf-8") if isinstance(plaintext, str) else plaintext
        return _seal(self._aead, data, field_ad(table, row_id, field))

    def open(self, blob: bytes, table: str, row_id: str, field: str) -> str:
        return self.open_bytes(blob, table, row_id, field).decode("utf-8")

    def open_bytes(self, blob: bytes, table: str, row_id: str, field: str) -> bytes:
        return _open(self._aead, blob, field_ad(table, row_id, field), f"{table} {row_id} field {field}")


class KeyCache:
    """Unwrapped data keys in memory (LRU), so a page view does not unwrap the same key per field."""

    def __init__(self, size: int = 2048):
        self.size = size
        self._keys: OrderedDict[str, DataKey] = OrderedDict()

    def get(self, owner: str) -> DataKey | None:
        k = self._keys.get(owner)
        if k is not None:
            self._keys.move_to_end(owner)
        return k

    def put(self, key: DataKey) -> None:
        self._keys[key.owner] = key
        self._keys.move_to_end(key.owner)
        while len(self._keys) > self.size:
            self._keys.popitem(last=False)

    def drop(self, owner: str) -> None:
        self._keys.pop(owner, None)

    def clear(self) -> None:
        self._keys.clear()
