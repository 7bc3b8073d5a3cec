"""Knowledge-library retrieval benchmark (issue 12 §4): recall@5/10, MRR@10 with 95% intervals for BM25,
dense and hybrid in English and Chinese, and query latency on a 10,000-chunk index.

    PSYASSIST_TEST_DATA=../shared/data OMP_NUM_THREADS=1 .venv/bin/python benchmarks/kb_retrieval.py

Relevance comes from the data, never from hand-picking:
- en, CounselChat: query = a question's title + text; relevant = the chunks of the licensed therapists'
  answers to THAT question; the corpus = every answer in the file (2,129), chunked like a library document.
- zh, CPsyCoun (CPsyCounD): query = a dialogue's opening client turn; relevant = the chunks of THAT
  dialogue's counselor replies (the replies only, one paragraph each); the corpus = the counselor sides of
  --zh-dialogues dialogues, the queried ones among them.
recall@k = relevant chunks in the top k / all relevant chunks (a question with 4 answers × 2 chunks cannot
reach 1.0 at k=5); success@k = any relevant chunk in the top k; MRR@10 = 1/rank of the first relevant.
Intervals: percentile bootstrap over queries (2,000 resamples); "hybrid beats X" is the paired bootstrap
interval of the MRR difference lying above 0.

Latency: the en + zh indexes together, padded to 10,000 chunks with other CPsyCoun dialogues' counselor
replies (real text and BM25 tokens; their vectors are random unit vectors — the dot-product cost does
not depend on the values), loaded from SQLite; each query end to end (tokenize, BM25, embed the query,
matrix-vector product, fuse). Prints one JSON line last and appends a row to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import peak_rss_mb, record  # noqa: E402

from psyassist.kb.chunk import chunk_blocks  # noqa: E402
from psyassist.kb.evaluate import Query  # noqa: E402
from psyassist.kb.evaluate import evaluate as kb_evaluate  # noqa: E402
from psyassist.kb.ingest import with_context  # noqa: E402
from psyassist.kb.parse import Block  # noqa: E402
from psyassist.kb.search import RRF_K, Searcher, tokenize  # noqa: E402
from psyassist.kb.store import KbStore, NewChunk  # noqa: E402

MODES = ("bm25", "dense", "hybrid")


def build(lang: str, data: str | Path, *, n_queries: int | None, seed: int = 0, zh_dialogues: int = 600,
          en_answers: int | None = None):
    """(corpus, queries): corpus = [(group, doc_key, [paragraphs])], queries = [(text, group)]."""
    rng = random.Random(seed)
    data = Path(data)
    if lang == "en":
        with (data / "CounselChat" / "20200325_counsel_chat.csv").open(encoding="utf-8", newline="") as f:
            rows = [r for r in csv.DictReader(f) if (r.get("answerText") or "").strip()]
        questions: dict[str, str] = {}
        answers = defaultdict(list)
        for i, r in enumerate(rows):
            questions[r["questionID"]] = f"{r['questionTitle'].strip()}\n{(r['questionText'] or '').strip()}"
            answers[r["questionID"]].append((f"a{i}", r["answerText"].strip()))
        qids = sorted(questions)
        chosen = rng.sample(qids, min(n_queries or len(qids), len(qids)))
        pool = [(q, k, t) for q in qids for k, t in answers[q]]
        if en_answers is not None:  # the chosen questions' answers + random others up to en_answers
            keep = set(chosen)
            mine = [a for a in pool if a[0] in keep]
            others = [a for a in pool if a[0] not in keep]
            pool = mine + rng.sample(others, max(0, min(len(others), en_answers - len(mine))))
        corpus = [(q, k, [p.strip() for p in t.splitlines() if p.strip()]) for q, k, t in pool]
        return corpus, [(questions[q], q) for q in chosen]
    if lang == "zh":
        dialogues = [json.loads(line) for line in (data / "CPsyCoun" / "cpsycound.jsonl").open(encoding="utf-8")]
        dialogues = [d for d in dialogues if d["messages"] and d["messages"][0]["role"] == "user"]
        picked = rng.sample(dialogues, min(zh_dialogues, len(dialogues)))
        corpus = [(d["id"], d["id"], [m["content"].strip() for m in d["messages"] if m["role"] == "assistant"])
                  for d in picked]
        queried = picked[:n_queries] if n_queries else picked
        return corpus, [(d["messages"][0]["content"], d["id"]) for d in queried]
    raise ValueError(lang)


def chunk_corpus(corpus, embedder, *, size: int = 200, overlap: int = 40):
    """[(group, doc_key, Chunk)] — each document chunked exactly as `kb ingest` does a plain-text file."""
    out = []
    for group, key, paras in corpus:
        for c in chunk_blocks([Block(p) for p in paras if p], embedder.count_tokens, size=size, overlap=overlap):
            out.append((group, key, c))
    return out


def embed_corpus(corpus, embedder, *, vectors: bool = True) -> dict:
    """{(group, doc_key): [NewChunk]} — BM25 tokens and vectors as `kb ingest` makes them."""
    chunks = chunk_corpus(corpus, embedder)
    texts = [with_context(c.section, c.text) for _, _, c in chunks]
    if vectors:
        vecs = embedder.encode(texts)
    else:  # latency padding only: random unit vectors
        vecs = np.random.default_rng(0).standard_normal((len(texts), embedder.dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    by_doc = defaultdict(list)
    for (group, key, c), t, v in zip(chunks, texts, vecs, strict=True):
        by_doc[(group, key)].append(NewChunk(c.text, c.section, c.page, c.page_end, c.n_tokens, tokenize(t), v))
    return by_doc


def write_index(by_doc: dict, index: str | Path) -> int:
    """One library document per doc_key, path bench://GROUP/KEY; returns the chunks written."""
    store = KbStore(index)
    for (group, key), new in by_doc.items():
        store.put_document(path=f"bench://{group}/{key}", sha256=f"{group}/{key}", format="text",
                           title=key, author="", size_bytes=sum(len(c.text) for c in new), chunks=new)
    return sum(len(v) for v in by_doc.values())


def index_corpus(corpus, index: str | Path, embedder, *, vectors: bool = True) -> int:
    return write_index(embed_corpus(corpus, embedder, vectors=vectors), index)


def _group(path: str) -> str:
    return path.split("/")[2]


def evaluate(searcher: Searcher, queries, modes=MODES, *, boot: int = 2000, seed: int = 0) -> dict:
    """psyassist.kb.evaluate's scoring (the same as `psyassist kb eval`), relevance = the query's group."""
    n_rel = defaultdict(int)
    for r in searcher.rows:
        n_rel[_group(r["path"])] += 1
    qs = [Query(text=text, id=str(i), n_relevant=n_rel[group],
                is_relevant=lambda row, g=group: _group(row["path"]) == g) for i, (text, group) in enumerate(queries)]
    out = kb_evaluate(searcher, qs, modes, boot=boot, seed=seed)
    out.pop("per_query")
    return out


def fusion_study(searcher: Searcher, queries, *, seed: int = 7, boot: int = 2000) -> dict:
    """Plain RRF of both retrievers with no language gate, and a weighted RRF (dense weight w, constant k)
    chosen on a random half of the queries and measured on the other half against the best single
    retriever there (paired bootstrap of the MRR@10 difference)."""
    groups = [_group(r["path"]) for r in searcher.rows]
    runs = [([i for i, _ in searcher.bm25_ranking(q, 50)], [i for i, _ in searcher.dense_ranking(q, 50)], g)
            for q, g in queries]

    def mrr(ranked, g):
        return next((1 / (i + 1) for i, d in enumerate(ranked[:10]) if groups[d] == g), 0.0)

    def fuse(b, d, w, k):  # kb.search.rrf with a weight on the dense ranks (same tie-breaks)
        sc: dict[int, float] = {}
        best: dict[int, int] = {}
        for weight, ranking in ((1.0, b), (w, d)):
            for r, i in enumerate(ranking, 1):
                sc[i] = sc.get(i, 0.0) + weight / (k + r)
                best[i] = min(best.get(i, r), r)
        return sorted(sc, key=lambda i: (-sc[i], best[i], i))

    def scores(ids, f):
        return np.array([mrr(f(runs[i][0], runs[i][1]), runs[i][2]) for i in ids])

    order = list(range(len(runs)))
    random.Random(seed).shuffle(order)
    dev, test = order[: len(order) // 2], order[len(order) // 2:]
    grid = [(w, k) for w in (0.25, 0.5, 1, 2, 3, 4, 6) for k in (10, 60)]
    w, k = max(grid, key=lambda wk: scores(dev, lambda b, d: fuse(b, d, *wk)).mean())
    tuned = scores(test, lambda b, d: fuse(b, d, w, k))
    single = {"bm25": scores(test, lambda b, d: b), "dense": scores(test, lambda b, d: d)}
    best = max(single, key=lambda m: single[m].mean())
    diff = tuned - single[best]
    bs = diff[np.random.default_rng(0).integers(0, len(diff), (boot, len(diff)))].mean(axis=1)
    return {"plain_rrf_ungated_mrr@10": round(float(scores(order, lambda b, d: fuse(b, d, 1, RRF_K)).mean()), 4),
            "tuned_on_dev": {"dense_weight": w, "k": k, "dev_queries": len(dev), "test_queries": len(test)},
            "test_mrr@10": {"tuned_rrf": round(float(tuned.mean()), 4),
                            **{m: round(float(v.mean()), 4) for m, v in single.items()}},
            f"tuned_minus_{best}": round(float(diff.mean()), 4),
            f"tuned_minus_{best}_ci95": [round(float(np.percentile(bs, q)), 4) for q in (2.5, 97.5)]}


def verdict(res: dict) -> str:
    """Does hybrid beat the best single retriever on MRR@10 (paired interval above 0)?"""
    best = max(("bm25", "dense"), key=lambda m: res[m]["mrr@10"])
    lo, hi = res["hybrid"][f"mrr_minus_{best}_ci95"]
    word = "beats" if lo > 0 else ("is below" if hi < 0 else "ties (interval spans 0)")
    return f"hybrid {word} {best} ({res['hybrid'][f'mrr_minus_{best}']:+.3f} [{lo:+.3f}, {hi:+.3f}])"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("PSYASSIST_TEST_DATA", "../shared/data"))
    ap.add_argument("--en-queries", type=int, default=None, help="Default: every CounselChat question (815).")
    ap.add_argument("--en-answers", type=int, default=None, help="Default: every answer (2,129); fewer for a "
                                                                     "quick run (the queried questions' answers kept).")
    ap.add_argument("--zh-dialogues", type=int, default=600, help="CPsyCoun dialogues in the zh corpus.")
    ap.add_argument("--zh-queries", type=int, default=300, help="Of them, how many are queried.")
    ap.add_argument("--latency-chunks", type=int, default=10_000)
    ap.add_argument("--latency-queries", type=int, default=300)
    ap.add_argument("--workdir", default="/tmp/kb_retrieval_bench")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from psyassist.kb.embed import load_embedder

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    for f in work.glob("*.sqlite*"):
        f.unlink()
    t_start = time.time()
    embedder = load_embedder("default")
    results, sizes, timing, embedded = {}, {}, {}, {}
    corpora = {"en": build("en", args.data, n_queries=args.en_queries, en_answers=args.en_answers),
               "zh": build("zh", args.data, n_queries=args.zh_queries, zh_dialogues=args.zh_dialogues)}
    for lang, (corpus, queries) in corpora.items():
        t0 = time.time()
        embedded[lang] = embed_corpus(corpus, embedder)
        sizes[lang] = {"documents": len(corpus), "chunks": write_index(embedded[lang], work / f"{lang}.sqlite"),
                       "queries": len(queries)}
        timing[f"index_{lang}_s"] = round(time.time() - t0, 1)
        searcher = Searcher(KbStore(work / f"{lang}.sqlite").load(), embedder)
        results[lang] = evaluate(searcher, queries)
        results[lang]["verdict"] = verdict(results[lang])
        results[lang]["fusion_study"] = fusion_study(searcher, queries)
        print(lang, sizes[lang], json.dumps(results[lang], ensure_ascii=False), file=sys.stderr)

    # --- latency on 10k chunks: en + zh + padding from other dialogues -----------------------------
    big = work / "all.sqlite"
    n = write_index({**embedded["en"], **embedded["zh"]}, big)
    used = {g for g, _, _ in corpora["zh"][0]}
    rest = [d for d in (json.loads(line) for line in (Path(args.data) / "CPsyCoun" / "cpsycound.jsonl").open())
            if d["id"] not in used]
    pad = []
    for d in rest:
        if n + len(pad) >= args.latency_chunks:
            break
        for r, m in enumerate(x for x in d["messages"] if x["role"] == "assistant"):
            pad.append((f"pad{d['id']}", f"r{r}", [m["content"]]))
    pad = pad[: max(0, args.latency_chunks - n)]
    n += index_corpus(pad, big, embedder, vectors=False)
    t0 = time.time()
    loaded = KbStore(big).load()
    t_load = time.time() - t0
    t0 = time.time()
    searcher = Searcher(loaded, embedder)
    t_bm25 = time.time() - t0
    rng = random.Random(1)
    lat_q = rng.sample(corpora["en"][1], args.latency_queries // 2) + rng.sample(corpora["zh"][1],
                                                                                 args.latency_queries // 2)
    for q, _ in lat_q[:5]:  # warm-up
        searcher.search(q, k=10)
    latency = {}
    for m in MODES:
        ms = []
        for q, _ in lat_q:
            t0 = time.perf_counter()
            searcher.search(q, k=10, mode=m)
            ms.append(1000 * (time.perf_counter() - t0))
        latency[m] = {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)),
                                                                                        2)}
    latency.update({"chunks": len(loaded.rows), "load_from_sqlite_s": round(t_load, 2),
                    "bm25_build_s": round(t_bm25, 2), "vectors_mb": round(loaded.vectors.nbytes / 1e6, 1),
                    "db_mb": round(big.stat().st_size / 1e6, 1), "queries": len(lat_q)})
    load = os.getloadavg()[0]
    res = {"embedder": embedder.name, "chunk_tokens": 200, "overlap_tokens": 40, "sizes": sizes,
           "retrieval": results, "latency_10k": latency, "timing": timing,
           "wall_s": round(time.time() - t_start, 1), "peak_rss_mb": round(peak_rss_mb()),
           "torch_threads": torch.get_num_threads(), "load_avg": round(load, 1)}

    def fmt(lang):
        r = results[lang]
        return (f"{lang}: " + "; ".join(
            f"{m} R@5 {r[m]['recall@5']:.3f} R@10 {r[m]['recall@10']:.3f} MRR {r[m]['mrr@10']:.3f} "
            f"[{r[m]['mrr@10_ci95'][0]:.3f}, {r[m]['mrr@10_ci95'][1]:.3f}]" for m in MODES) + f" → {r['verdict']}"
            + f"; {fusion_line(r['fusion_study'])}")

    def fusion_line(f):
        d = next(k for k in f if k.startswith("tuned_minus_") and not k.endswith("ci95"))
        lo, hi = f[d + "_ci95"]
        return (f"ungated plain RRF MRR {f['plain_rrf_ungated_mrr@10']:.3f}; RRF tuned on half the queries (dense "
                f"×{f['tuned_on_dev']['dense_weight']}, k={f['tuned_on_dev']['k']}) on the other half "
                f"{f['test_mrr@10']['tuned_rrf']:.3f} vs {d[12:]} {f['test_mrr@10'][d[12:]]:.3f} "
                f"({f[d]:+.3f} [{lo:+.3f}, {hi:+.3f}])")

    summary = (f"{embedder.name}, {sizes['en']['queries']} en queries over {sizes['en']['chunks']} chunks "
               f"(CounselChat), {sizes['zh']['queries']} zh over {sizes['zh']['chunks']} (CPsyCoun); {fmt('en')}; "
               f"{fmt('zh')}; p95 at {latency['chunks']:,} chunks: bm25 {latency['bm25']['p95_ms']} ms, dense "
               f"{latency['dense']['p95_ms']} ms, hybrid {latency['hybrid']['p95_ms']} ms (target < 100 ms: "
               f"**{'met' if latency['hybrid']['p95_ms'] < 100 else 'missed'}**); {torch.get_num_threads()} torch "
               f"thread(s), load avg {load:.1f}")
    record("kb_retrieval", res, summary)


if __name__ == "__main__":
    main()
