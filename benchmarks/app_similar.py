"""Similar cases: cost of the in-memory index over 1,000 encrypted notes, and of a query, vs just decrypting them.

    PSYASSIST_TEST_DATA=../shared/data OMP_NUM_THREADS=1 .venv/bin/python benchmarks/app_similar.py [--notes 1000] [--no-dense]

One counselor, `--notes` notes over 50 clients, saved through the Workspace (SQLite, WAL,
synchronous=FULL, every value sealed with its client's key).  Note text: the client turns of a
CPsyCoun dialogue (Chinese, ~0.5-2 KB per note) when $PSYASSIST_TEST_DATA holds it, else the mixed
Chinese/English sentences of app_crud.py.  Measured, each the median of 3 runs:
- baseline: `Workspace.similar_corpus()` — read and decrypt every note (what any full read costs),
- tokenize (jieba search mode, kb.search.tokenize) and BM25 build (bm25s) on top of it,
- the first query ever (`SimilarCache.search` on an empty cache, nothing stored: decrypt + tokenize +
  seal and store the entries + build + query), and a later login's first query (the sealed entries
  stored: decrypt notes and entries + build + query; the median of 3 new caches),
- warm query p50/p95 over 100 queries (other dialogues' openings, so most have real matches),
- after one note is saved, the next query (re-reads that one client and rebuilds BM25),
- dense (unless --no-dense): loading the packaged MiniLM, embedding every note with it on this CPU (the
  app's background thread; BM25 answers meanwhile), the hybrid query p50/p95 of English queries, and the
  next login's first query (the vectors stored sealed: hybrid at once, nothing re-embedded).
Prints one JSON line last and appends a row to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import peak_rss_mb, record  # noqa: E402
from app_crud import session_text  # noqa: E402

from psyassist.app.accounts import actor_of, create_user  # noqa: E402
from psyassist.app.config import AppConfig  # noqa: E402
from psyassist.app.notes.draft import empty_content, new_item  # noqa: E402
from psyassist.app.records import Workspace  # noqa: E402
from psyassist.app.similar import SimilarCache  # noqa: E402
from psyassist.app.state import open_state  # noqa: E402
from psyassist.app.store.models import User  # noqa: E402
from psyassist.kb.search import tokenize  # noqa: E402

CLIENTS = 50
RUNS = 3
QUERIES = 100


def texts(n: int, data: str | None, rng: random.Random) -> tuple[list[list[str]], list[str], str]:
    """(note items per note, query texts, source name)."""
    path = Path(data or "") / "CPsyCoun" / "cpsycound.jsonl"
    if data and path.is_file():
        ds = [json.loads(line) for line in path.open(encoding="utf-8")]
        ds = [d for d in ds if sum(m["role"] == "user" for m in d["messages"]) >= 3]
        rng.shuffle(ds)
        notes = [[m["content"].strip() for m in d["messages"] if m["role"] == "user"][:8] for d in ds[:n]]
        queries = [d["messages"][0]["content"] for d in ds[n:n + QUERIES]]
        return notes, queries, "CPsyCoun client turns"
    notes = [[session_text(rng, rng.randint(500, 2000))] for _ in range(n)]
    return notes, [session_text(rng, 300) for _ in range(QUERIES)], "app_crud sentences"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def med(fn) -> float:
    return statistics.median(timed(fn)[0] for _ in range(RUNS))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--notes", type=int, default=1000)
    ap.add_argument("--data", default=os.environ.get("PSYASSIST_TEST_DATA"))
    ap.add_argument("--no-dense", action="store_true", help="skip the MiniLM embedding figures")
    args = ap.parse_args()
    rng = random.Random(0)
    notes, queries, source = texts(args.notes, args.data, rng)
    jieba_s, _ = timed(lambda: tokenize("初始化结巴词典"))  # once per process: jieba loads its dictionary

    with tempfile.TemporaryDirectory() as tmp:
        st = open_state(AppConfig(data_dir=Path(tmp)))
        create_user(st.db, "c1", "correct-horse-battery")
        with st.db.read() as s:
            ws = Workspace(st, actor_of(s.query(User).filter_by(username="c1").one()))
        t = st.template("seed004")
        cids = [ws.create_client(f"client {i}") for i in range(CLIENTS)]
        t0 = time.perf_counter()
        for i, items in enumerate(notes):
            content = empty_content(t)
            content["sections"]["counseling_question"] = [new_item(items[0][:200], "counselor")]
            content["sections"]["reasons"] = [new_item(x, "counselor") for x in items[1:]]
            did = ws.create_draft(cids[i % CLIENTS], "", t, date(2026, 1, 1) + timedelta(days=i // CLIENTS),
                                  generate=False, content=content)
            ws.save_draft(did, t)
        setup_s = time.perf_counter() - t0
        corpus = ws.similar_corpus()
        chars = sum(len(r["text"]) for r in corpus)

        decrypt = med(lambda: ws.similar_corpus())
        tok = med(lambda: [tokenize(r["text"]) for r in corpus])
        tokens = [tokenize(r["text"]) for r in corpus]

        def build():
            import bm25s

            bm25s.BM25().index(tokens, show_progress=False)
        bm25 = med(build)

        def cold():
            cache = SimilarCache()
            cache.search(ws, queries[0])
            return cache
        # The first query ever (nothing stored yet: tokenize every note, seal and store the entries), then
        # a login's first query (the entries stored: decrypt them, build BM25) — the usual case.
        cold_s, _ = timed(cold)
        login_s = med(cold)
        cache = cold()
        st.similar = cache  # so a save below marks its client stale in this cache, as in the app
        warm = [timed(lambda q=q: cache.search(ws, q))[0] for q in queries]
        hits = sum(bool(cache.search(ws, q)["results"]) for q in queries)

        content = empty_content(t)
        content["sections"]["reasons"] = [new_item(notes[0][1] if len(notes[0]) > 1 else notes[0][0], "counselor")]
        did = ws.create_draft(cids[0], "", t, date(2026, 12, 1), generate=False, content=content)
        ws.save_draft(did, t)
        update_s, _ = timed(lambda: cache.search(ws, queries[1]))
        rss_bm25 = peak_rss_mb()

        dense = None
        if not args.no_dense:
            dcache = SimilarCache(dense=True)
            load_s, state = timed(dcache.dense_state)
            if state == "on":
                def embed_all():
                    first = dcache.search(ws, queries[0])  # answers by BM25 and starts the embedding thread
                    idx = dcache._index(ws.actor.id)
                    while idx.embedding:
                        time.sleep(0.05)
                    return first
                embed_s, first = timed(embed_all)
                assert first["reason"] == "dense_pending", first
                en = [session_text(random.Random(i), 200) for i in range(QUERIES)]
                en = [" ".join(w for w in q.split() if w.isascii()) or "anxiety before exams" for q in en]
                dq = [timed(lambda q=q: dcache.search(ws, q))[0] for q in en]
                # The next login: the vectors were stored sealed, so the first query is already hybrid.
                relog = SimilarCache(dense=True)
                relog._embedder, relog._embedder_state = dcache._embedder, "on"
                relog_s, again = timed(lambda: relog.search(ws, en[0]))
                dense = {"model_load_s": round(load_s, 2), "embed_all_s": round(embed_s, 2), "hybrid_query_p50_ms": round(pct(dq, .5) * 1e3, 2),
                         "hybrid_query_p95_ms": round(pct(dq, .95) * 1e3, 2),
                         "mode": dcache.search(ws, en[0])["mode"], "next_login_first_query_s": round(relog_s, 3),
                         "next_login_mode": again["mode"]}
        st.close()

    res = {"jieba_init_s": round(jieba_s, 2), "notes": len(corpus), "clients": CLIENTS, "source": source, "chars": chars, "setup_s": round(setup_s, 1),
           "decrypt_s": round(decrypt, 3), "tokenize_s": round(tok, 3), "bm25_build_s": round(bm25, 3),
           "cold_first_query_s": round(cold_s, 3), "cold_over_decrypt": round(cold_s / decrypt, 2),
           "login_first_query_s": round(login_s, 3), "login_over_decrypt": round(login_s / decrypt, 2),
           "query_p50_ms": round(pct(warm, .5) * 1e3, 2), "query_p95_ms": round(pct(warm, .95) * 1e3, 2),
           "queries": len(queries), "queries_with_results": hits, "after_save_query_s": round(update_s, 3),
           "peak_rss_mb": round(rss_bm25), "dense": dense, "torch_threads": os.environ.get("OMP_NUM_THREADS"),
           "load_avg": round(os.getloadavg()[0], 1)}
    dense_txt = (f"; dense (MiniLM, English queries; model load {dense['model_load_s']} s once per process): "
                 f"embedding every note (background thread) {dense['embed_all_s']} s, "
                 f"hybrid query p50 {dense['hybrid_query_p50_ms']} / p95 {dense['hybrid_query_p95_ms']} ms; next login's "
                 f"first query {dense['next_login_first_query_s']} s, {dense['next_login_mode']} (vectors stored sealed)") \
        if dense else \
        "; dense not measured"
    summary = (f"{res['notes']} notes ({source}, {chars:,} chars) of 1 counselor, {CLIENTS} clients, SQLite: decrypt only "
               f"(baseline) {res['decrypt_s']} s; + tokenize {res['tokenize_s']} s + BM25 build {res['bm25_build_s']} s; "
               f"first query ever (tokenize, seal and store the entries) {res['cold_first_query_s']} s "
               f"(×{res['cold_over_decrypt']} the baseline); a later login's first query (stored entries) "
               f"{res['login_first_query_s']} s (×{res['login_over_decrypt']}); "
               f"(+ jieba's dictionary {res['jieba_init_s']} s once per process); warm query p50 {res['query_p50_ms']} / p95 {res['query_p95_ms']} ms; after a save "
               f"{res['after_save_query_s']} s{dense_txt}; load avg {res['load_avg']}")
    record("app_similar", res, summary)


if __name__ == "__main__":
    main()
