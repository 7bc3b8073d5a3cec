"""The app's tables (SQLAlchemy 2).  Columns ending in `_ct` hold AES-GCM ciphertext (crypto.py).

    python -c "from psyassist.app.store.models import Base; print(sorted(Base.metadata.tables))"

What is NOT encrypted, on purpose (the threat model in docs/app.md): ids, account names, password
hashes (argon2id), roles, timestamps, note dates, template names, statuses and version numbers,
draft provenance (model, adapter, sampling, prompt hash — no client text), crisis levels.  Everything
a client said or a counselor wrote about a client is a `_ct` column: names, tags, basic information,
note contents, addenda, drafts (input, content, comments), chat titles and messages.

Times are naive UTC (`utcnow()`): SQLite has no time zones and both backends must agree.
The schema is created and changed only by Alembic migrations (store/migrations); `Base.metadata`
is what the migrations are checked against in the tests.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timezone

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    pass


ID = String(32)


class Meta(Base):
    """Key/value facts about this database: the master key check, its key id, when it was created."""
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128), default="")
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))  # admin | counselor
    locale: Mapped[str] = mapped_column(String(8), default="en")
    note_template: Mapped[str] = mapped_column(String(64), default="seed004")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class DataKeyRow(Base):
    """One wrapped data key per owner ('client:<id>' or 'user:<id>').  Kept apart from the data so a
    backup can carry the data without the keys (see backup.py: deleted clients stay unrecoverable)."""
    __tablename__ = "data_keys"
    owner: Mapped[str] = mapped_column(String(48), primary_key=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    master_id: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AuthSession(Base):
    __tablename__ = "auth_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie's token
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class LoginAttempt(Base):
    __tablename__ = "login_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    ok: Mapped[bool] = mapped_column(Boolean)
    __table_args__ = (Index("ix_login_attempts_username_at", "username", "at"), Index("ix_login_attempts_ip_at", "ip", "at"))


class Client(Base):
    __tablename__ = "clients"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id"), index=True)
    name_ct: Mapped[bytes] = mapped_column(LargeBinary)
    tags_ct: Mapped[bytes] = mapped_column(LargeBinary)  # JSON list of strings
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    # Which adapter drafts use (revision 0003): None = the newest usable version, "base", or "v<N>" pinned.
    adapter_choice: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class BasicInfoVersion(Base):
    """Personal Basic Information (seed 004's five fields), one row per version (JSON, encrypted)."""
    __tablename__ = "basic_info_versions"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(ID, ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    data_ct: Mapped[bytes] = mapped_column(LargeBinary)
    source: Mapped[str] = mapped_column(String(16), default="manual")  # manual | draft
    draft_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(ID, ForeignKey("users.id"))
    __table_args__ = (UniqueConstraint("client_id", "version"),)


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(ID, ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    template: Mapped[str] = mapped_column(String(64))
    session_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="saved")  # saved | signed
    version: Mapped[int] = mapped_column(Integer, default=1)  # the current (newest) version
    signed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    signed_by: Mapped[str | None] = mapped_column(ID, ForeignKey("users.id"), nullable=True)
    draft_id: Mapped[str | None] = mapped_column(ID, nullable=True)  # the working draft that saves into it
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(ID, ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class NoteVersion(Base):
    __tablename__ = "note_versions"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    note_id: Mapped[str] = mapped_column(ID, ForeignKey("notes.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    content_ct: Mapped[bytes] = mapped_column(LargeBinary)  # JSON {section key: [item text, ...]}
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(ID, ForeignKey("users.id"))
    draft_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    __table_args__ = (UniqueConstraint("note_id", "version"),)


class Addendum(Base):
    """A dated addition to a signed note (the note itself no longer changes)."""
    __tablename__ = "addenda"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    note_id: Mapped[str] = mapped_column(ID, ForeignKey("notes.id", ondelete="CASCADE"), index=True)
    text_ct: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(ID, ForeignKey("users.id"))


# --- revision 0002: drafts and chat ---------------------------------------------------------------


class Draft(Base):
    """A model draft and the counselor's work on it.  `content_ct` is the live draft (items with
    their origin, the model's text and comments); `model_ct` is the model's first output, kept
    unchanged: together they are the "model draft → counselor's final" pairs adapters learn from."""
    __tablename__ = "drafts"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(ID, ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id"))
    template: Mapped[str] = mapped_column(String(64))
    session_date: Mapped[date] = mapped_column(Date)
    # generating | ready | failed | interrupted | saved
    status: Mapped[str] = mapped_column(String(16), default="generating")
    input_ct: Mapped[bytes] = mapped_column(LargeBinary)
    content_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    model_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    provenance: Mapped[str] = mapped_column(Text, default="{}")  # JSON, no client text
    error: Mapped[str | None] = mapped_column(Text, nullable=True)  # for the counselor; no client text
    note_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    revision: Mapped[int] = mapped_column(Integer, default=0)  # bumps on every edit (lost-update check)
    use_library: Mapped[bool] = mapped_column(Boolean, default=True)  # passages from the library in its prompts
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Chat(Base):
    __tablename__ = "chats"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id"), index=True)
    client_id: Mapped[str | None] = mapped_column(ID, ForeignKey("clients.id", ondelete="CASCADE"), nullable=True,
                                                  index=True)
    title_ct: Mapped[bytes] = mapped_column(LargeBinary)
    use_notes: Mapped[bool] = mapped_column(Boolean, default=False)
    use_library: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ChatMessage(Base):
    __tablename__ = "chat_messages"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    chat_id: Mapped[str] = mapped_column(ID, ForeignKey("chats.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))  # user | assistant
    content_ct: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default="done")  # generating | done | failed | interrupted
    crisis_level: Mapped[str | None] = mapped_column(String(16), nullable=True)
    provenance: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    __table_args__ = (UniqueConstraint("chat_id", "seq"),)


# --- revision 0003: per-client adapters and durable jobs ------------------------------------------


class Adapter(Base):
    """One version of a client's LoRA adapter.  The weights are in the blob store, sealed with the
    client's data key (`blob_key`); this row holds only figures (no client text)."""
    __tablename__ = "adapters"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(ID, ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id"))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="ready")  # ready | held (memorization) | deleted
    method: Mapped[str] = mapped_column(String(16))  # sft | dpo
    base_model: Mapped[str] = mapped_column(String(256))
    blob_key: Mapped[str] = mapped_column(String(200))
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    manifest: Mapped[str] = mapped_column(Text, default="{}")  # JSON: data hash, notes used, steps, loss, tokens
    memorization: Mapped[str] = mapped_column(Text, default="{}")  # JSON: the safety check's figures and verdict
    job_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    __table_args__ = (UniqueConstraint("client_id", "version"),)


class Job(Base):
    """A durable background job (training a client's adapter), claimed by one worker at a time."""
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32))  # train_adapter
    client_id: Mapped[str] = mapped_column(ID, ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id"))
    # queued | running | done | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    params: Mapped[str] = mapped_column(Text, default="{}")
    progress: Mapped[str] = mapped_column(Text, default="{}")  # step, steps, loss, tokens_per_s, eta_s, phase
    error: Mapped[str | None] = mapped_column(Text, nullable=True)  # for the counselor; no client text
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=2)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(128), nullable=True)
    adapter_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


# --- revision 0005: the similar-case index entries, sealed ----------------------------------------


class SimilarEntry(Base):
    """What the in-memory similar-case index needs of one note, so that a login does not re-tokenize and
    re-embed every note: its BM25 tokens and (with similar_dense) its vector, both sealed with the
    client's key (associated data similar_entries:<note id>:tokens|vector).  Valid for `version` of the
    note only; a deleted client's rows go with it."""
    __tablename__ = "similar_entries"
    note_id: Mapped[str] = mapped_column(ID, ForeignKey("notes.id", ondelete="CASCADE"), primary_key=True)
    client_id: Mapped[str] = mapped_column(ID, ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    tokens_ct: Mapped[bytes] = mapped_column(LargeBinary)
    vector_model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    vector_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
