"""The counselor's library inside the app (issue 12): upload, list, remove, search, and the passages a
draft or a chat reply is offered, with the citations the model makes to them.

    python -c "from psyassist.app.library import parse_citations; print(parse_citations('Use grounding [1][3].', 2))"

Which libraries: each counselor's own ("u:<user id>"; only they see, add and remove its documents) and
the clinic's shared one (`kb_shared_library`, default "clinic"; read-only in the app, filled by an
administrator with `psyassist kb ingest FILES --index <the app's database URL> --library clinic`).
Search, drafts and chat use both, as one ranking.  The tables are the `psyassist kb` tables in the
app's database (migration 0004), so everything docs/kb.md says about parsing, chunking and ranking holds.

Library documents are reference material (books, guidelines, handouts) and are stored as text, not
encrypted per client: the upload page says so, and client records do not belong there.

What a model is offered: the counselor's input (a draft) or last message (chat) is the query; up to
`kb_passages` hybrid hits that BM25 found or whose cosine similarity reaches `kb_min_similarity`
(an unrelated library offers nothing), within `kb_context_tokens`, numbered [1]..[n].  A draft's
provenance records which passages (ids, titles, pages; never the query), so the page shows what was
offered, and every [n] the model writes becomes a citation on its item — only numbers that were
offered; any other number is removed and reported.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path

from psyassist.app.records import Conflict, NotFound
from psyassist.errors import PsyassistError
from psyassist.kb.embed import load_embedder
from psyassist.kb.ingest import Ingestor
from psyassist.kb.parse import SUFFIXES, KbFileError
from psyassist.kb.search import Searcher, query_language
from psyassist.kb.store import KbStore, LoadedChunks

log = logging.getLogger("psyassist.app")

UPLOAD_TTL_S = 3600  # a finished upload's report stays this long for its page
_CITE = re.compile(r"\s*(?:\[|【)\s*(\d{1,2}(?:\s*[,，、]\s*\d{1,2})*)\s*(?:\]|】)")


def own_library(user_id: str) -> str:
    return f"u:{user_id}"


def model_label(embedder, query: str) -> str:
    """The model that ranked this query by meaning, as a person would name it: 'all-MiniLM-L6-v2', or with
    one model per language the query's own ('zh-static')."""
    parts = getattr(embedder, "parts", None)
    if parts:
        embedder = parts.get(query_language(query), embedder)
    return str(getattr(embedder, "name", "")).split(":", 1)[-1]


def where(p: dict) -> str:
    """'p. 3', 'pp. 3–4', '§ Chapter 2 › Panic' or both (the citation's location)."""
    parts = []
    if p.get("page"):
        parts.append(f"p. {p['page']}" if p.get("page_end") in (None, p["page"]) else f"pp. {p['page']}–{p['page_end']}")
    if p.get("section") and p["section"] != p.get("title"):  # a document's only heading is usually its title
        parts.append(f"§ {p['section']}")
    return ", ".join(parts)


def safe_name(name: str) -> str:
    """An upload's file name as stored (its identity in the library): no directories, no control characters."""
    base = Path(str(name).replace("\\", "/")).name
    base = re.sub(r"[\x00-\x1f\x7f]", "", base).strip()
    return base[:200] or "upload"


def parse_citations(text: str, n_offered: int) -> tuple[str, list[int], list[int]]:
    """(text without the [n] marks, cited numbers in order, numbers that were not offered).

    Marks are [1], [1, 3], [1][2] and 【1】; they are only read when passages were offered (n_offered > 0),
    so a note that happens to contain "[1]" without a library is left alone."""
    if n_offered <= 0 or not text:
        return text, [], []
    cited: list[int] = []
    bad: list[int] = []

    def take(m: re.Match) -> str:
        for x in re.split(r"\s*[,，、]\s*", m.group(1)):
            n = int(x)
            (cited if 1 <= n <= n_offered else bad).append(n)
        return ""

    clean = _CITE.sub(take, text).strip()
    seen: set[int] = set()
    return clean, [n for n in cited if not (n in seen or seen.add(n))], bad


def passages_text(passages: list[dict], unit: str = "item") -> str:
    """The prompt block: the instructions, then each passage as "[n] Title (where): text".  `unit`: what
    carries a citation — a draft's "item" (a reason, an advice point) or a chat answer's "sentence"."""
    what = "a reason or an advice item" if unit == "item" else "a sentence of your answer"
    head = ("## Passages from the counselor's library\n"
            f"Use a passage only where it fits this client. When {what} draws on a passage, end that {unit} with "
            "the passage's number in brackets, e.g. [2]. Never cite a passage you did not use.")
    body = []
    for p in passages:
        loc = where(p)
        body.append(f"[{p['n']}] {p['title']}{' (' + loc + ')' if loc else ''}: {p['text']}")
    return head + "\n\n" + "\n\n".join(body)


def public_passage(p: dict) -> dict:
    """What provenance keeps of an offered passage: where it is, never the counselor's query."""
    return {k: p.get(k) for k in ("n", "chunk_id", "document_id", "library", "title", "author", "page", "page_end",
                                  "section", "score", "text_sha")}


def attach_citations(content: dict, passages: list[dict]) -> list[str]:
    """Turn the [n] marks in a draft's model items into `citations` (offered passages only); returns
    the problems (numbers that were not offered) for the draft's provenance."""
    if not passages:
        return []
    by_n = {p["n"]: public_passage(p) for p in passages}
    problems = []
    for items in content.get("sections", {}).values():
        for it in items:
            if it.get("origin") not in ("model", "regenerated"):
                continue
            problems += cite_item(it, by_n)
    return problems


def cite_item(item: dict, by_n: dict[int, dict]) -> list[str]:
    text, cited, bad = parse_citations(item.get("text", ""), len(by_n))
    if cited or bad:
        item["text"] = text
        if item.get("model_text") is not None:
            item["model_text"] = text
    item["citations"] = [by_n[n] for n in cited if n in by_n]
    return [f"the model cited [{n}], which it was not offered; the mark was removed" for n in bad]


class AppLibrary:
    """The app's side of the library; one per AppState.  Searchers are cached per counselor and rebuilt
    when a document of their libraries changes (a cheap signature query per search)."""

    def __init__(self, st):
        self.st = st
        self._lock = threading.Lock()
        self._embedder = None
        self.embedder_error: str | None = None
        self._searchers: dict[str, tuple[tuple, Searcher]] = {}
        self._uploads: dict[str, dict] = {}  # background uploads (start_upload), by token

    # --- pieces ------------------------------------------------------------------------------------

    def libraries(self, user_id: str) -> list[str]:
        shared = self.st.cfg.kb_shared_library
        return [own_library(user_id)] + ([shared] if shared else [])

    def _reader(self, library: str) -> KbStore:
        return KbStore(engine=self.st.db.engine, library=library)

    def _writer(self, library: str) -> KbStore:
        return KbStore(engine=self.st.db.write_engine, library=library)

    def set_embedder(self, embedder) -> None:
        """Tests and benchmarks hand in their own (the app loads cfg.kb_embed_model at first use)."""
        with self._lock:
            self._embedder, self.embedder_error = embedder, None
            self._searchers.clear()

    def embedder(self):
        """The configured embedding model, loaded once; None (BM25 only) when it cannot be loaded."""
        with self._lock:
            if self._embedder is None and self.embedder_error is None:
                try:
                    self._embedder = load_embedder(self.st.cfg.kb_embed_model, url=self.st.cfg.kb_embed_url)
                except Exception as e:  # noqa: BLE001 — search goes on with BM25; the page says why
                    log.exception("the library's embedding model could not be loaded")
                    self.embedder_error = f"{type(e).__name__}: {e}"
            return self._embedder

    # --- documents ---------------------------------------------------------------------------------

    def documents(self, user_id: str) -> dict:
        own = self._reader(own_library(user_id)).documents()
        shared_name = self.st.cfg.kb_shared_library
        shared = self._reader(shared_name).documents() if shared_name else []
        return {"own": own, "shared": shared, "max_documents": self.st.cfg.kb_max_documents,
                "max_upload_mb": self.st.cfg.kb_max_upload_mb}

    def remove(self, user_id: str, doc_id: int) -> dict:
        store = self._writer(own_library(user_id))
        doc = store.find(doc_id=doc_id)
        if doc is None or not store.remove(doc_id):
            raise KbNotFound("no such document in your library")
        return doc

    def forget_user(self, user_id: str) -> int:
        """A deleted account's library goes with it."""
        self._searchers.pop(user_id, None)
        return self._writer(own_library(user_id)).remove_all()

    def upload(self, user_id: str, files: list[tuple[str, Path]], progress=None) -> dict:
        """Ingest uploaded files (name as the counselor's computer called it, a temp file holding it).
        Each file is added, replaced (same name, new content), unchanged, or skipped with its reason.
        `progress(done, total, name)` is called before each file."""
        cfg = self.st.cfg
        store = self._writer(own_library(user_id))
        report: dict[str, list] = {"added": [], "replaced": [], "unchanged": [], "skipped": []}
        try:
            ing = Ingestor(store, embed_model=cfg.kb_embed_model, embed_url=cfg.kb_embed_url,
                           max_mb=cfg.kb_max_upload_mb, embedder=self.embedder())
        except PsyassistError as e:  # the library was built with another embedding model
            report["skipped"] = [{"name": safe_name(n), "reason": str(e)} for n, _ in files]
            return report
        count = len(store.documents())
        for i, (raw_name, tmp) in enumerate(files):
            name = safe_name(raw_name)
            if progress is not None:
                progress(i, len(files), name)
            if Path(name).suffix.lower() not in SUFFIXES:
                report["skipped"].append({"name": name, "reason": "unsupported file type; the library takes "
                                          + ", ".join(sorted({s.lstrip('.') for s in SUFFIXES}))})
                continue
            if count >= cfg.kb_max_documents and store.find(path=name) is None:
                report["skipped"].append({"name": name, "reason": f"your library holds {count} documents, the "
                                          f"limit (kb_max_documents); remove some first"})
                continue
            with tempfile.TemporaryDirectory(dir=self._tmp_dir()) as d:
                # The parser names an untitled document after its file: give it the counselor's file name.
                named = Path(d) / name
                shutil.move(str(tmp), named)
                try:
                    outcome, n = ing.file(named, name)
                except KbFileError as e:
                    report["skipped"].append({"name": name, "reason": e.reason})
                    continue
                except PsyassistError as e:
                    report["skipped"].append({"name": name, "reason": str(e).replace(str(named), name)})
                    continue
                except OSError as e:
                    report["skipped"].append({"name": name, "reason": f"could not be read ({e.strerror or e})"})
                    continue
            if outcome == "added":
                count += 1
            report[outcome].append({"name": name, "chunks": n})
        return report

    def _tmp_dir(self) -> Path:
        d = self.st.cfg.data_dir / "tmp"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def start_upload(self, user_id: str, files: list[tuple[str, Path]]) -> str:
        """Ingest in a background thread (a book takes about a minute: no request should wait that long);
        the page polls `upload_status`.  One running upload per counselor."""
        with self._lock:
            if any(j["user"] == user_id and j["status"] == "running" for j in self._uploads.values()):
                raise Conflict("an earlier upload is still being indexed; wait for its report")
            token = secrets.token_urlsafe(12)
            job = {"user": user_id, "status": "running", "done": 0, "total": len(files), "current": safe_name(files[0][0]) if files else "",
                   "report": None, "started": time.monotonic()}
            self._uploads[token] = job

        def progress(done: int, total: int, name: str) -> None:
            job.update(done=done, total=total, current=name)

        def run() -> None:
            try:
                job["report"] = self.upload(user_id, files, progress)
            except Exception as e:  # noqa: BLE001 — the page shows it; the files are removed below
                log.exception("library upload failed")
                job["report"] = {"added": [], "replaced": [], "unchanged": [],
                                 "skipped": [{"name": safe_name(n), "reason": f"not indexed ({type(e).__name__}: {e})"}
                                             for n, _ in files]}
            finally:
                for _, tmp in files:
                    Path(tmp).unlink(missing_ok=True)
                job.update(status="done", done=job["total"], current="")

        threading.Thread(target=run, name="library-upload", daemon=True).start()
        return token

    def upload_status(self, user_id: str, token: str) -> dict | None:
        """The upload's progress (and its report once done); None for an unknown or another's token."""
        now = time.monotonic()
        with self._lock:
            for k in [k for k, j in self._uploads.items() if j["status"] == "done" and now - j["started"] > UPLOAD_TTL_S]:
                del self._uploads[k]
            job = self._uploads.get(token)
            return dict(job) if job is not None and job["user"] == user_id else None

    # --- search ------------------------------------------------------------------------------------

    def searcher(self, user_id: str) -> Searcher | None:
        """The counselor's own and the shared library as one index; None when both are empty."""
        libs = self.libraries(user_id)
        sig = tuple(self._reader(lib).signature() for lib in libs)
        cached = self._searchers.get(user_id)
        if cached is not None and cached[0] == sig:
            return cached[1]
        embedder = self.embedder()
        parts = []
        for lib in libs:
            store = self._reader(lib)
            loaded = store.load()
            meta = store.meta()
            # Vectors of another model cannot be compared with this one's queries: that library is BM25 only.
            if embedder is None or meta.get("embed_name", embedder.name) != embedder.name:
                loaded.vectors = None
            parts.append(loaded)
        joined = LoadedChunks.join(parts)
        if not joined.rows:
            self._searchers.pop(user_id, None)
            return None
        searcher = Searcher(joined, embedder if joined.vectors is not None else None)
        self._searchers[user_id] = (sig, searcher)
        return searcher

    def signature_any(self, user_id: str) -> bool:
        """Whether the counselor's own or the shared library holds any document."""
        return any(self._reader(lib).signature()[0] for lib in self.libraries(user_id))

    def search(self, user_id: str, query: str, k: int = 10, mode: str = "hybrid") -> dict:
        query = query.strip()[:2000]
        s = self.searcher(user_id) if query else None
        if s is None:
            return {"query": query, "mode": mode, "results": [], "dense": False, "ranking": "bm25"}
        if s.embedder is None and mode != "bm25":
            mode = "bm25"
        hits = s.search(query, k=k, mode=mode)
        dense = mode == "dense" or (mode == "hybrid" and s.dense_applies(query))
        # What the page says about the ranking: fused, words only, or words only because of the language.
        ranking = "hybrid" if dense else ("zh" if mode == "hybrid" else "bm25")
        mine = own_library(user_id)
        for h in hits:
            h["shared"] = h["library"] != mine
            h["where"] = where(h)
        return {"query": query, "mode": mode, "results": hits, "dense": dense, "ranking": ranking,
                "model": model_label(s.embedder, query) if dense else ""}

    def passage(self, user_id: str, chunk_id: int) -> dict:
        """One passage of the counselor's own or the shared library, with its neighbours' positions."""
        for lib in self.libraries(user_id):
            got = self._reader(lib).chunks([chunk_id])
            if chunk_id in got:
                p = got[chunk_id]
                p["shared"] = lib != own_library(user_id)
                p["where"] = where(p)
                p["previous"], p["next"] = self._reader(lib).neighbours(p["document_id"], p["ord"])
                return p
        raise KbNotFound("no such passage in your library (its document may have been removed or replaced)")

    def passages(self, user_id: str, chunk_ids: list[int]) -> dict[int, dict]:
        """The current text of cited or offered passages (missing: removed or replaced since)."""
        out: dict[int, dict] = {}
        for lib in self.libraries(user_id):
            out.update(self._reader(lib).chunks([i for i in chunk_ids if i not in out]))
        return out

    def for_prompt(self, user_id: str, query: str, count_tokens) -> list[dict]:
        """The passages a model is offered for `query` (numbered from 1), within the token budget."""
        cfg = self.st.cfg
        if not cfg.library or not query.strip():
            return []
        s = self.searcher(user_id)
        if s is None:
            return []
        mode = "hybrid" if s.embedder is not None else "bm25"
        chosen, used = [], 0
        # a model trained by `kb train-embedder` knows the cosine an unrelated passage reaches on its own scale
        floor = (getattr(s.embedder, "min_similarity", None) or {}).get(query_language(query), cfg.kb_min_similarity)
        for h in s.search(query.strip()[:2000], k=cfg.kb_passages * 3, mode=mode):
            if h["bm25_rank"] is None and (h["dense_score"] or 0.0) < floor:
                continue  # dense alone always returns something: an unrelated library must offer nothing
            p = {**h, "n": len(chosen) + 1, "text_sha": hashlib.sha256(h["text"].encode()).hexdigest()[:16]}
            cost = count_tokens(f"[{p['n']}] {p['title']} ({where(p)}): {p['text']}")
            if used + cost > cfg.kb_context_tokens:
                continue
            chosen.append(p)
            used += cost
            if len(chosen) == cfg.kb_passages:
                break
        return chosen


class KbNotFound(NotFound):
    pass
