"""The library's tables (SQLAlchemy 2): documents, chunks with their BM25 tokens and float32 vectors, meta.

    python -c "from psyassist.kb.store import KbStore; s = KbStore('library.sqlite'); print(s.documents())"

A SQLite file by default (a plain path), any SQLAlchemy URL otherwise (postgresql+psycopg://…): the
columns are portable (Text, LargeBinary → BLOB / BYTEA, BigInteger). Each document is written in one
transaction — its old chunks deleted and the new ones inserted together — so a crash leaves the old
version or the new one, never a mix. The tables are prefixed kb_ so they can live in the app's database.

One set of tables holds several libraries (`library`: "" for a CLI index, "u:<user id>" for a counselor's
own library in the app, a clinic's shared name): every read and write of a KbStore is scoped to its
library, and a document's identity is (library, path).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from psyassist.errors import PsyassistError


class Base(DeclarativeBase):
    pass


class KbMeta(Base):
    __tablename__ = "kb_meta"
    library: Mapped[str] = mapped_column(String(64), primary_key=True, default="")
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class KbDocument(Base):
    __tablename__ = "kb_documents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    library: Mapped[str] = mapped_column(String(64), default="", index=True)
    path: Mapped[str] = mapped_column(String(1024))  # absolute path (CLI) or upload name (app): a file's identity
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    format: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(Text, default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    n_chunks: Mapped[int] = mapped_column(Integer)
    ingested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    __table_args__ = (UniqueConstraint("library", "path"),)


class KbChunk(Base):
    __tablename__ = "kb_chunks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("kb_documents.id", ondelete="CASCADE"), index=True)
    ord: Mapped[int] = mapped_column(Integer)  # position in the document
    section: Mapped[str] = mapped_column(Text, default="")
    page: Mapped[int | None] = mapped_column(Integer, nullable=True)
    page_end: Mapped[int | None] = mapped_column(Integer, nullable=True)
    text: Mapped[str] = mapped_column(Text)
    n_tokens: Mapped[int] = mapped_column(Integer)
    bm25_tokens: Mapped[str] = mapped_column(Text)  # space-joined, so loading needs no jieba pass
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # float32, L2-normalized


@dataclass
class NewChunk:
    text: str
    section: str
    page: int | None
    page_end: int | None
    n_tokens: int
    bm25_tokens: list[str]
    embedding: np.ndarray | None


@dataclass
class LoadedChunks:
    """Everything search needs, in memory: row i of `vectors` is chunk `rows[i]`."""
    rows: list[dict]
    tokens: list[list[str]]
    vectors: np.ndarray | None  # (n, dim) float32, or None when no chunk has a vector

    @staticmethod
    def join(parts: list[LoadedChunks]) -> LoadedChunks:
        """Several libraries searched as one (a counselor's own and the clinic's); vectors only when every
        part has them with one dimension (two embedding models cannot share a matrix)."""
        parts = [p for p in parts if p.rows]
        if len(parts) == 1:
            return parts[0]
        rows = [r for p in parts for r in p.rows]
        tokens = [t for p in parts for t in p.tokens]
        vecs = [p.vectors for p in parts]
        same = all(v is not None for v in vecs) and len({v.shape[1] for v in vecs}) == 1
        return LoadedChunks(rows, tokens, np.concatenate(vecs) if vecs and same else None)


def _engine(index: str | Path) -> Engine:
    s = str(index)
    if "://" not in s:
        Path(s).expanduser().parent.mkdir(parents=True, exist_ok=True)
        s = f"sqlite:///{Path(s).expanduser()}"
    try:
        url = make_url(s)
    except ArgumentError as e:
        raise PsyassistError(f"index {index!r} is neither a file path nor a database URL ({e})") from e
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves: IMMEDIATE takes the write lock up front
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
                dbapi_conn.execute(f"PRAGMA {pragma}")

        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return create_engine(url, pool_pre_ping=True)


def _check_schema(engine: Engine, index: str) -> None:
    """An index written before libraries existed (no `library` column) is refused with the way out."""
    insp = inspect(engine)
    if insp.has_table("kb_documents") and "library" not in {c["name"] for c in insp.get_columns("kb_documents")}:
        raise PsyassistError(f"index {index} was built by an earlier psyassist (its tables have no library column); "
                             "build it again: `psyassist kb ingest YOUR_FILES --index NEW_INDEX`")


class KbStore:
    """`index`: a SQLite path or database URL (tables created when missing); or `engine`: an open engine
    whose database already has the tables (the app's, created by its migrations)."""

    def __init__(self, index: str | Path | None = None, *, engine: Engine | None = None, library: str = ""):
        if (index is None) == (engine is None):
            raise ValueError("give exactly one of index and engine")
        self.library = library
        if engine is not None:
            self.index, self.engine = str(engine.url), engine
            return
        self.index = str(index)
        self.engine = _engine(index)
        _check_schema(self.engine, self.index)
        Base.metadata.create_all(self.engine)

    # --- meta ---
    def meta(self) -> dict[str, str]:
        with Session(self.engine) as s:
            return {m.key: m.value for m in s.scalars(select(KbMeta).where(KbMeta.library == self.library))}

    def set_meta(self, values: dict[str, str]) -> None:
        with Session(self.engine) as s, s.begin():
            for k, v in values.items():
                s.merge(KbMeta(library=self.library, key=k, value=str(v)))

    # --- documents ---
    def documents(self) -> list[dict]:
        with Session(self.engine) as s:
            docs = s.scalars(select(KbDocument).where(KbDocument.library == self.library)
                             .order_by(KbDocument.path)).all()
            return [_doc_dict(d) for d in docs]

    def find(self, *, path: str | None = None, sha256: str | None = None, doc_id: int | None = None) -> dict | None:
        with Session(self.engine) as s:
            q = select(KbDocument).where(KbDocument.library == self.library)
            if doc_id is not None:
                q = q.where(KbDocument.id == doc_id)
            elif path is not None:
                q = q.where(KbDocument.path == path)
            else:
                q = q.where(KbDocument.sha256 == sha256)
            d = s.scalars(q.limit(1)).first()
            return _doc_dict(d) if d else None

    def signature(self) -> tuple:
        """Changes whenever a document is added, replaced or removed: (count, newest id, newest ingest time)."""
        with Session(self.engine) as s:
            row = s.execute(select(func.count(KbDocument.id), func.max(KbDocument.id), func.max(KbDocument.ingested_at))
                            .where(KbDocument.library == self.library)).one()
            # re-embedding changes no document, so the model's name and time are part of it too
            meta = dict(s.execute(select(KbMeta.key, KbMeta.value).where(
                KbMeta.library == self.library, KbMeta.key.in_(("embed_name", "reembedded_at")))).all())
            return (int(row[0]), row[1], str(row[2]), meta.get("embed_name"), meta.get("reembedded_at"))

    def libraries(self) -> list[str]:
        """Every library of this index that has documents."""
        with Session(self.engine) as s:
            return sorted(s.scalars(select(KbDocument.library).distinct()).all())

    def reembed(self, embedder, settings: dict[str, str], *, batch: int = 256,
                progress: Callable[[int, int], None] | None = None) -> int:
        """Replace every chunk's vector with `embedder`'s, in one transaction (a failure leaves the old
        vectors and model in place), and record the new model in the meta; returns the chunks. The chunk
        boundaries stay as they were cut (sized for the old model's tokens)."""
        from psyassist.kb.ingest import with_context

        q = (select(KbChunk.id, KbChunk.section, KbChunk.text).join(KbDocument, KbDocument.id == KbChunk.document_id)
             .where(KbDocument.library == self.library).order_by(KbChunk.id))
        with Session(self.engine) as s, s.begin():
            rows = s.execute(q).all()
            for i in range(0, len(rows), batch):
                part = rows[i:i + batch]
                vecs = np.asarray(embedder.encode([with_context(r.section, r.text) for r in part]), dtype="<f4")
                s.execute(update(KbChunk), [{"id": r.id, "embedding": v.tobytes()}
                                            for r, v in zip(part, vecs, strict=True)])
                if progress is not None:
                    progress(min(i + batch, len(rows)), len(rows))
            for k, v in {**settings, "embed_name": embedder.name, "embed_dim": str(embedder.dim),
                         "reembedded_at": datetime.now(timezone.utc).isoformat()}.items():
                s.merge(KbMeta(library=self.library, key=k, value=str(v)))
        return len(rows)

    def put_document(self, *, path: str, sha256: str, format: str, title: str, author: str, size_bytes: int,
                     chunks: list[NewChunk]) -> int:
        """Insert or replace the document at `path` with its chunks, in one transaction; returns its id."""
        with Session(self.engine) as s, s.begin():
            old = s.scalars(select(KbDocument).where(KbDocument.library == self.library,
                                                     KbDocument.path == path)).first()
            if old is not None:
                s.execute(delete(KbChunk).where(KbChunk.document_id == old.id))
                s.delete(old)
                s.flush()
            doc = KbDocument(library=self.library, path=path, sha256=sha256, format=format, title=title, author=author,
                             size_bytes=size_bytes, n_chunks=len(chunks), ingested_at=datetime.now(timezone.utc))
            s.add(doc)
            s.flush()
            s.add_all(KbChunk(document_id=doc.id, ord=i, section=c.section, page=c.page, page_end=c.page_end,
                              text=c.text, n_tokens=c.n_tokens, bm25_tokens=" ".join(c.bm25_tokens),
                              embedding=None if c.embedding is None else
                              np.asarray(c.embedding, dtype="<f4").tobytes())
                      for i, c in enumerate(chunks))
            return doc.id

    def remove(self, doc_id: int) -> bool:
        """Delete a document of this library with its chunks; False when it is not in this library."""
        with Session(self.engine) as s, s.begin():
            mine = s.scalar(select(KbDocument.id).where(KbDocument.id == doc_id, KbDocument.library == self.library))
            if mine is None:
                return False
            s.execute(delete(KbChunk).where(KbChunk.document_id == doc_id))
            s.execute(delete(KbDocument).where(KbDocument.id == doc_id))
            return True

    def remove_all(self) -> int:
        """Delete the whole library (a deleted account's); returns the number of documents."""
        with Session(self.engine) as s, s.begin():
            ids = s.scalars(select(KbDocument.id).where(KbDocument.library == self.library)).all()
            if ids:
                s.execute(delete(KbChunk).where(KbChunk.document_id.in_(ids)))
                s.execute(delete(KbDocument).where(KbDocument.id.in_(ids)))
            s.execute(delete(KbMeta).where(KbMeta.library == self.library))
            return len(ids)

    def count_chunks(self) -> int:
        with Session(self.engine) as s:
            return int(s.scalar(select(func.count()).select_from(KbChunk).join(KbDocument)
                                .where(KbDocument.library == self.library)) or 0)

    def chunks(self, chunk_ids: list[int]) -> dict[int, dict]:
        """Chunks of this library by id (with their document's title, author, path); missing ids are left out."""
        if not chunk_ids:
            return {}
        q = (select(KbChunk, KbDocument).join(KbDocument, KbDocument.id == KbChunk.document_id)
             .where(KbChunk.id.in_(chunk_ids), KbDocument.library == self.library))
        with Session(self.engine) as s:
            return {c.id: {"chunk_id": c.id, "document_id": d.id, "title": d.title, "author": d.author,
                           "path": d.path, "section": c.section, "page": c.page, "page_end": c.page_end,
                           "text": c.text, "ord": c.ord, "library": self.library} for c, d in s.execute(q)}

    def neighbours(self, document_id: int, ord: int) -> tuple[int | None, int | None]:
        """Ids of the chunks before and after position `ord` of a document (None at either end)."""
        with Session(self.engine) as s:
            rows = dict(s.execute(select(KbChunk.ord, KbChunk.id).where(KbChunk.document_id == document_id,
                                                                        KbChunk.ord.in_((ord - 1, ord + 1)))).all())
        return rows.get(ord - 1), rows.get(ord + 1)

    def load(self) -> LoadedChunks:
        """All chunks with their document's title/author/path, in a stable order (document, position)."""
        q = (select(KbChunk.id, KbChunk.document_id, KbChunk.section, KbChunk.page, KbChunk.page_end,
                    KbChunk.text, KbChunk.bm25_tokens, KbChunk.embedding, KbDocument.title, KbDocument.author,
                    KbDocument.path)
             .join(KbDocument, KbDocument.id == KbChunk.document_id)
             .where(KbDocument.library == self.library)
             .order_by(KbChunk.document_id, KbChunk.ord))
        rows, tokens, vecs = [], [], []
        with Session(self.engine) as s:
            for r in s.execute(q):
                rows.append({"chunk_id": r.id, "document_id": r.document_id, "title": r.title, "author": r.author,
                             "path": r.path, "section": r.section, "page": r.page, "page_end": r.page_end,
                             "text": r.text, "library": self.library})
                tokens.append(r.bm25_tokens.split())
                vecs.append(r.embedding)
        vectors = None
        if rows and all(v is not None for v in vecs):
            vectors = np.frombuffer(b"".join(vecs), dtype="<f4").reshape(len(vecs), -1)
        return LoadedChunks(rows, tokens, vectors)


def _doc_dict(d: KbDocument) -> dict:
    return {"id": d.id, "path": d.path, "sha256": d.sha256, "format": d.format, "title": d.title,
            "author": d.author, "size_bytes": d.size_bytes, "n_chunks": d.n_chunks,
            "ingested_at": d.ingested_at.isoformat() if d.ingested_at else None}
