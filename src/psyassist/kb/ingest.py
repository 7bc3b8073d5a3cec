"""Ingest a batch of files into a library index; open an index for search.

    psyassist kb ingest books/ notes.md --index library.sqlite

Per file: size limit → sha256 → unchanged (same path, same hash): nothing to do → parse → chunk
(in the embedder's tokens) → BM25 tokens + vectors → one transaction that replaces the file's old
chunks. A file that fails is reported with its reason and the batch goes on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from psyassist.errors import PsyassistError
from psyassist.kb.chunk import chunk_blocks
from psyassist.kb.embed import load_embedder
from psyassist.kb.parse import SUFFIXES, KbFileError, parse_file
from psyassist.kb.search import Searcher, tokenize
from psyassist.kb.store import KbStore, NewChunk
from psyassist.ui import track

DEFAULT_MAX_MB = 200  # a whole textbook PDF is 5–50 MB; 2 GB is an upload mistake, not a book
DEFAULTS = {"embed_model": "default", "embed_url": "", "chunk_tokens": "200", "overlap_tokens": "40"}


@dataclass
class IngestReport:
    added: list[tuple[str, int]] = field(default_factory=list)      # (path, chunks)
    replaced: list[tuple[str, int]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)    # (path, reason)

    def as_dict(self) -> dict:
        return {"added": [{"path": p, "chunks": n} for p, n in self.added],
                "replaced": [{"path": p, "chunks": n} for p, n in self.replaced],
                "unchanged": self.unchanged,
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped]}


def expand(paths: Iterable[str | Path]) -> list[Path | tuple[Path, str]]:
    """Files to ingest: files as given, directories walked for the supported suffixes (sorted)."""
    out: list = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            out.append((p, "no such file or directory"))
    return out


def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with p.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def index_settings(store: KbStore, embed_model: str | None, embed_url: str | None) -> dict[str, str]:
    """The index's embedder and chunk sizes: fixed at its first ingest; a different embedder is refused."""
    meta = store.meta()
    if "embed_model" not in meta:
        return {**DEFAULTS, "embed_model": embed_model or "default", "embed_url": embed_url or ""}
    wanted = (embed_model or meta["embed_model"], embed_url or meta["embed_url"])
    if wanted != (meta["embed_model"], meta["embed_url"]):
        raise PsyassistError(
            f"index {store.index} was built with embedding model {meta['embed_model']!r}"
            f"{' at ' + meta['embed_url'] if meta['embed_url'] else ''}; its vectors cannot be mixed with "
            f"{wanted[0]!r}. Use the same model, or a new --index.")
    return meta


def open_embedder(settings: dict[str, str], tokenizer: str | None = None):
    return load_embedder(settings["embed_model"], url=settings["embed_url"] or None, tokenizer=tokenizer)


class Ingestor:
    """Puts files into one library: the settings (embedder, chunk sizes) checked once, the embedder loaded at
    the first file that needs it.  `file()` is one file; `ingest()` below and the app's upload use it."""

    def __init__(self, store: KbStore, *, embed_model: str | None = None, embed_url: str | None = None,
                 tokenizer: str | None = None, chunk_tokens: int | None = None, overlap_tokens: int | None = None,
                 max_mb: float = DEFAULT_MAX_MB, embedder=None):
        self.store, self.tokenizer, self.max_mb, self.embedder = store, tokenizer, max_mb, embedder
        self.settings = index_settings(store, embed_model, embed_url)
        self.size = int(chunk_tokens or self.settings["chunk_tokens"])
        self.overlap = int(overlap_tokens if overlap_tokens is not None else self.settings["overlap_tokens"])
        if not 0 <= self.overlap < self.size:
            raise PsyassistError(f"--overlap ({self.overlap}) must be at least 0 and below --chunk-tokens "
                                 f"({self.size})")
        self._saved = False

    def file(self, item: Path, identity: str, title: str | None = None) -> tuple[str, int]:
        """('added' | 'replaced' | 'unchanged', chunks) for the file `item` stored as `identity`; a bad file
        raises KbFileError (or PsyassistError / OSError) and changes nothing."""
        n_bytes = item.stat().st_size
        if n_bytes > self.max_mb * 1e6:
            raise KbFileError(identity, f"file is {n_bytes / 1e6:,.0f} MB, over the {self.max_mb:g} MB limit")
        sha = sha256_file(item)
        store = self.store
        old = store.find(path=identity)
        if old is not None and old["sha256"] == sha:
            return "unchanged", old["n_chunks"]
        twin = store.find(sha256=sha)
        if twin is not None and twin["path"] != identity:
            if old is not None:  # its previous version would otherwise stay searchable
                store.remove(old["id"])
            raise KbFileError(identity, f"same content as {twin['path']}, already in the index"
                                        + (" (its previous version was removed)" if old is not None else ""))
        doc = parse_file(item)
        if self.embedder is None:  # loaded only when a file needs it: an all-unchanged batch stays instant
            self.embedder = open_embedder(self.settings, self.tokenizer)
        if not self._saved:  # before the first document: its vectors and the recorded model agree
            self.settings = {**self.settings, "chunk_tokens": str(self.size), "overlap_tokens": str(self.overlap),
                             "embed_name": self.embedder.name, "embed_dim": str(self.embedder.dim)}
            store.set_meta(self.settings)
            self._saved = True
        chunks = chunk_blocks(doc.blocks, self.embedder.count_tokens, size=self.size, overlap=self.overlap)
        texts = [with_context(c.section, c.text) for c in chunks]
        vectors = self.embedder.encode(texts)
        new = [NewChunk(c.text, c.section, c.page, c.page_end, c.n_tokens, tokenize(t), v)
               for c, t, v in zip(chunks, texts, vectors, strict=True)]
        store.put_document(path=identity, sha256=sha, format=doc.format, title=title or doc.title, author=doc.author,
                           size_bytes=n_bytes, chunks=new)
        return ("replaced" if old is not None else "added"), len(new)


def ingest(paths: Iterable[str | Path], index: str | Path, *, embed_model: str | None = None,
           embed_url: str | None = None, tokenizer: str | None = None, chunk_tokens: int | None = None,
           overlap_tokens: int | None = None, max_mb: float = DEFAULT_MAX_MB, embedder=None,
           library: str = "") -> IngestReport:
    """Ingest files and directories into `index` (a SQLite path or a database URL)."""
    ing = Ingestor(KbStore(index, library=library), embed_model=embed_model, embed_url=embed_url, tokenizer=tokenizer,
                   chunk_tokens=chunk_tokens, overlap_tokens=overlap_tokens, max_mb=max_mb, embedder=embedder)
    report = IngestReport()
    files = expand(paths)
    for item in track(files, "ingesting", total=len(files)):
        if isinstance(item, tuple):
            report.skipped.append((str(item[0]), item[1]))
            continue
        path = str(item.resolve())
        try:
            outcome, n = ing.file(item, path)
        except KbFileError as e:
            report.skipped.append((path, e.reason + (" (--max-mb)" if "MB limit" in e.reason else "")))
            continue
        except PsyassistError as e:  # undecodable text, a missing optional package: this file only
            report.skipped.append((path, str(e)))
            continue
        except OSError as e:
            report.skipped.append((path, f"cannot be read ({e.strerror or e})"))
            continue
        if outcome == "unchanged":
            report.unchanged.append(path)
        else:
            (report.replaced if outcome == "replaced" else report.added).append((path, n))
    return report


def with_context(section: str, text: str) -> str:
    """What is embedded and BM25-indexed: the section heading path, then the passage."""
    return f"{section}\n{text}" if section else text


def open_searcher(index: str | Path, *, mode: str = "hybrid", tokenizer: str | None = None, embedder=None,
                  library: str = ""):
    """A Searcher over an existing index; the embedder (as recorded at ingest) only for dense/hybrid."""
    if "://" not in str(index) and not Path(index).expanduser().is_file():
        raise PsyassistError(f"no library index at {index}; build one with `psyassist kb ingest FILES --index "
                             f"{index}`")
    store = KbStore(index, library=library)
    if mode != "bm25" and embedder is None and store.count_chunks():
        embedder = open_embedder(index_settings(store, None, None), tokenizer)
    return Searcher(store.load(), embedder)
