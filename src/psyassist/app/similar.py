"""Similar cases (issue 12 §3): a counselor's own earlier notes ranked by how much they share with a
draft's input or a note's text.

    python -c "from psyassist.app.similar import note_text, snippet; print(snippet(note_text({'a': ['考试前失眠，头痛']}), '失眠'))"

Where the index lives: in this process's memory, one per counselor (`SimilarCache`, held by the
AppState), built the first time they ask for similar cases and dropped on logout, on a password change
or deactivation, and after `session_hours` unused; a saved note, a renamed client or a deleted client
marks that one client stale, and the next query re-reads only that client's notes (a deleted client's
entries leave memory at once).  What it is built from is kept between logins: each note's BM25 tokens
and vector, sealed with its client's key in `similar_entries` (Workspace.store_similar), valid for that
version of the note, so a login decrypts them instead of re-running jieba and the model on every note.

Ranking reuses the knowledge library's pieces: BM25 (bm25s) over `kb.search.tokenize` words (jieba
for Chinese) is the core, because notes are mostly Chinese; with `similar_dense: true` the packaged
English MiniLM also embeds every note (in a background thread; BM25 answers until it is done) and
ranks English queries, fused by reciprocal rank (`kb.search.rrf`).  Dense is off by default:
embedding 1,000 notes keeps one CPU core busy for 76-176 s the first time (benchmarks/app_similar.py;
later logins reuse the stored vectors), and the model ranks Chinese close to chance.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import numpy as np

from psyassist.errors import MissingDependency
from psyassist.kb.search import RRF_K, _top, query_language, rrf, tokenize
from psyassist.optional import require

if TYPE_CHECKING:
    from psyassist.app.records import Workspace

SNIPPET_CHARS = 140
CANDIDATES = 50  # per retriever before fusion, as in kb.search
EMBED_BATCH = 32  # notes per encode call of the embedding thread (the index lock is free in between)


def note_text(sections: dict | None) -> str:
    """A note's words in template order, one item a line (what is indexed and what a note queries with)."""
    return "\n".join(str(x).strip() for items in (sections or {}).values() for x in (items or []) if str(x).strip())


def draft_text(content: dict | None) -> str:
    """The live items of a draft (used when a draft has no input, e.g. a note opened for editing)."""
    out = []
    for items in ((content or {}).get("sections") or {}).values():
        out += [str(it.get("text", "")).strip() for it in items or [] if not it.get("deleted")]
    return "\n".join(x for x in out if x)


def snippet(text: str, query_terms: set[str] | str, limit: int = SNIPPET_CHARS) -> str:
    """The line of `text` that holds the most query terms, cut to `limit` characters."""
    terms = set(tokenize(query_terms)) if isinstance(query_terms, str) else query_terms
    lines = [x for x in text.splitlines() if x.strip()] or [""]
    best = max(lines, key=lambda x: sum(t in x.lower() for t in terms))  # max keeps the first of equals
    return best if len(best) <= limit else best[:limit - 1] + "…"


@dataclass
class Entry:
    note_id: str
    client_id: str
    client_name: str
    session_date: date
    text: str
    tokens: list[str]
    vector: np.ndarray | None = None
    version: int = 1


@dataclass
class CounselorIndex:
    """One counselor's notes in memory; `stale` holds client ids to re-read (None: build everything)."""

    entries: dict[str, Entry] = field(default_factory=dict)
    stale: set[str] | None = None
    pending: set[str] = field(default_factory=set)  # changed clients not yet applied (guarded by the cache lock)
    used_at: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    dirty: bool = True  # the BM25 index must be rebuilt from `entries`
    bm25: object | None = None  # None while there are no notes (bm25s cannot index nothing)
    order: list[str] = field(default_factory=list)
    vectors: np.ndarray | None = None
    vectors_dirty: bool = False  # new vectors arrived: restack `vectors`
    embedding: bool = False  # a thread is embedding notes that lack a vector
    embed_failed: bool = False
    dropped: bool = False  # forgotten (logout): the embedding thread stops
    builds: int = 0  # full builds (a test checks that a new login rebuilds)


class SimilarCache:
    """Per-counselor indexes.  `dense`: 'off' (setting), 'missing' (no sentence-transformers) or 'on'."""

    def __init__(self, *, dense: bool = False, idle_hours: float = 12.0, embed_model: str = "default"):
        self._indexes: dict[str, CounselorIndex] = {}
        self._lock = threading.Lock()
        self._embed_lock = threading.Lock()
        self.idle_s = idle_hours * 3600
        self.want_dense = dense
        self.embed_model = embed_model  # kb.embed.load_embedder's spec: 'default', a directory, 'en=default;zh=DIR'
        self._embedder = None
        self._embedder_state = "off" if not dense else None  # resolved at the first build

    # --- lifecycle ---------------------------------------------------------------------------------

    def forget(self, user_id: str) -> None:
        """Logout, password change, deactivation: the counselor's decrypted notes leave memory."""
        with self._lock:
            idx = self._indexes.pop(user_id, None)
        if idx is not None:
            idx.dropped = True

    def client_changed(self, user_id: str, cid: str) -> None:
        """A note saved, a client renamed or deleted: drop that client's entries; re-read at the next query.

        Never waits for a build in progress (a save must not wait for it): the change is queued and
        the build applies it before it answers."""
        with self._lock:
            idx = self._indexes.get(user_id)
            if idx is None:
                return
            idx.pending.add(cid)
        if idx.lock.acquire(blocking=False):
            try:
                self._apply_pending(idx)
            finally:
                idx.lock.release()

    def _apply_pending(self, idx: CounselorIndex) -> bool:
        """(caller holds idx.lock) Drop the changed clients' entries and mark them stale; True if any."""
        with self._lock:
            changed, idx.pending = idx.pending, set()
        for nid in [n for n, e in idx.entries.items() if e.client_id in changed]:
            del idx.entries[nid]
        if changed:
            if idx.stale is not None:
                idx.stale |= changed
            idx.dirty = True
        return bool(changed)

    def holds(self, user_id: str) -> bool:
        with self._lock:
            return user_id in self._indexes

    def _index(self, user_id: str) -> CounselorIndex:
        now = time.monotonic()
        with self._lock:
            for uid in [u for u, i in self._indexes.items() if now - i.used_at > self.idle_s]:
                del self._indexes[uid]  # a session that ended without logout
            idx = self._indexes.setdefault(user_id, CounselorIndex())
            idx.used_at = now
            return idx

    # --- building -----------------------------------------------------------------------------------

    def dense_state(self, *, load: bool = True) -> str | None:
        """'off', 'missing' or 'on'; None while not yet loaded and `load` is False."""
        if not load:
            return self._embedder_state
        with self._embed_lock:
            if self._embedder_state is None:
                self._load_embedder()
        return self._embedder_state

    def _load_embedder(self) -> None:
        try:
            require("sentence_transformers", "dense similar-case search")
            from psyassist.kb.embed import load_embedder

            self._embedder = load_embedder(self.embed_model)
            self._embedder_state = "on"
        except MissingDependency:
            self._embedder_state = "missing"  # BM25 alone; the card says why

    def _refresh(self, ws: Workspace, idx: CounselorIndex) -> None:
        """Bring the index up to date (caller holds idx.lock): a full build or the stale clients only."""
        if idx.stale is None or idx.stale:
            full = idx.stale is None
            rows = ws.similar_corpus(None if full else set(idx.stale))
            if full:
                idx.entries.clear()
                idx.builds += 1
            else:
                for nid in [n for n, e in idx.entries.items() if e.client_id in idx.stale]:
                    del idx.entries[nid]
            new, fresh = [], []
            for r in rows:
                # Tokens (and vectors) stored sealed at an earlier login are reused: no jieba, no model.
                tokens = r.get("tokens")
                if tokens is None:
                    tokens = tokenize(r["text"])
                    fresh.append({"note_id": r["note_id"], "client_id": r["client_id"], "version": r["version"],
                                  "tokens": tokens})
                vector = r.get("vector") if r.get("vector_model") == self.embedder_name() else None
                new.append(Entry(r["note_id"], r["client_id"], r["client_name"], r["session_date"], r["text"],
                                 tokens, vector, r.get("version", 1)))
            idx.entries.update({e.note_id: e for e in new})
            if fresh:
                self._store(ws, fresh)
            idx.stale = set()
            idx.dirty = True
        if idx.dirty:
            idx.order = list(idx.entries)
            idx.bm25 = None
            if idx.order:
                idx.bm25 = require("bm25s", "similar-case search").BM25()
                # bm25s needs one term per document: an empty note gets a term no query produces.
                idx.bm25.index([idx.entries[n].tokens or ["\x00"] for n in idx.order], show_progress=False)
            idx.dirty, idx.vectors_dirty = False, True
        if idx.vectors_dirty:
            vecs = [idx.entries[n].vector for n in idx.order]
            idx.vectors = np.stack(vecs) if vecs and all(v is not None for v in vecs) else None
            idx.vectors_dirty = False
        if (self.want_dense and self._embedder_state != "missing" and idx.vectors is None and idx.order
                and not idx.embedding and not idx.embed_failed):
            # Embedding 1,000 notes takes a minute on a CPU: a thread does it, BM25 answers meanwhile.
            idx.embedding = True
            threading.Thread(target=self._embed, args=(idx, ws), name="similar-embed", daemon=True).start()

    def embedder_name(self) -> str:
        """The name stored vectors must carry to be reused (the packaged MiniLM's until one is loaded)."""
        if self._embedder is not None:
            return self._embedder.name
        from psyassist.kb.embed import embedder_name

        return embedder_name(self.embed_model)

    @staticmethod
    def _store(ws: Workspace, entries: list[dict]) -> None:
        """Keep entries sealed for the next login; a failure only costs that login's work again."""
        try:
            ws.store_similar(entries)
        except Exception:  # noqa: BLE001
            logging.getLogger("psyassist.app").exception("similar cases: the index entries could not be stored")

    def _embed(self, idx: CounselorIndex, ws: Workspace | None = None) -> None:
        """Vectors for the notes that lack one, EMBED_BATCH at a time, without holding the index lock."""
        try:
            while self.dense_state() == "on" and not idx.dropped:
                with idx.lock:
                    todo = [(n, e.text) for n, e in idx.entries.items() if e.vector is None][:EMBED_BATCH]
                if not todo:
                    return
                vecs = self._embedder.encode([t for _, t in todo])
                done = []
                with idx.lock:
                    for (n, text), v in zip(todo, vecs, strict=True):
                        e = idx.entries.get(n)
                        if e is not None and e.text == text:  # not changed meanwhile
                            e.vector = v
                            done.append({"note_id": n, "client_id": e.client_id, "version": e.version,
                                         "tokens": e.tokens, "vector": v, "vector_model": self._embedder.name})
                    idx.vectors_dirty = True
                if ws is not None and done:
                    self._store(ws, done)
        except Exception:  # BM25 goes on; the log says why dense never arrived (not retried until logout)
            idx.embed_failed = True
            logging.getLogger("psyassist.app").exception("similar cases: embedding the notes failed")
        finally:
            with idx.lock:
                idx.embedding = False

    # --- searching ----------------------------------------------------------------------------------

    def search(self, ws: Workspace, query: str, *, k: int = 5, exclude: set[str] = frozenset()) -> dict:
        """{"mode", "reason", "notes", "results": [{note_id, client_id, client_name, date, snippet, score}]}."""
        idx = self._index(ws.actor.id)
        with idx.lock:
            self._apply_pending(idx)
            self._refresh(ws, idx)
            while self._apply_pending(idx):  # saves or deletions that came in during the build
                self._refresh(ws, idx)
            terms = tokenize(query)
            n = CANDIDATES + len(exclude)
            b = _top(idx.bm25.get_scores(terms), n, positive=True) if terms and idx.bm25 is not None else []
            dense = self.dense_state(load=False)  # loading the model is the embedding thread's work
            reason = {"off": "dense_off", "missing": "dense_missing"}.get(dense)
            if dense in (None, "on") and idx.vectors is None and idx.order:
                reason = "dense_pending"  # the model is loading or the notes are being embedded
            d = []
            if dense == "on" and idx.vectors is not None and query.strip():
                if query_language(query) in (self._embedder.languages or ("en", "zh")):
                    d = _top(idx.vectors @ self._embedder.encode([query])[0], n)
                else:
                    reason = "dense_language"
            # plain RRF, unless the model chose its own fusion for this language (kb train-embedder)
            fused = b
            if d:
                f = (getattr(self._embedder, "fusion", None) or {}).get(query_language(query))
                k, w = (f["rrf_k"], f["dense_weight"]) if f else (RRF_K, 1.0)
                fused = rrf([[i for i, _ in b], [i for i, _ in d]], k=k, weights=(1.0, w))
            results, term_set = [], set(terms)
            for i, score in fused:
                e = idx.entries[idx.order[i]]
                if e.note_id in exclude:
                    continue
                results.append({"note_id": e.note_id, "client_id": e.client_id, "client_name": e.client_name,
                                "date": e.session_date.isoformat(), "snippet": snippet(e.text, term_set),
                                "score": round(float(score), 4)})
                if len(results) == k:
                    break
            return {"mode": "hybrid" if d else "bm25", "reason": None if d else reason,
                    "notes": len(idx.order), "results": results}
