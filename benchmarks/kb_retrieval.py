"""Knowledge-library retrieval benchmark (issue 12 §4): recall@5/10, MRR@10 with 95% intervals for BM25,
dense and hybrid (plain and tuned reciprocal rank fusion) on two English sets and one Chinese set, and query
latency on a 10,000-chunk index.

    PSYASSIST_TEST_DATA=../shared/data OMP_NUM_THREADS=1 .venv/bin/python benchmarks/kb_retrieval.py [--latency-only]

Relevance comes from the data, never from hand-picking:
- en, CounselChat: query = a question's title + text; relevant = the chunks of the licensed therapists'
  answers to THAT question; the corpus = every answer in the file (2,129), chunked like a library document.
- en, IMHI (MentalLLaMA test_complete: dreaddit, DR, loneliness, CAMS, Irf — the sets of whole Reddit
  posts; t-sid's tweets, SAD's one-liners and MultiWD's six near-identical explanations per post left out):
  query = a post (the text between "Post:" and the last "Question:", the question dropped); relevant = every
  explanation written about THAT post (the answer after "Reasoning:", the label before it dropped; a post
  asked two questions, or found in two sets, has two or more); the corpus = all 4,084 explanations, queries =
  the 2,724 distinct posts. Not degenerate: the explanations paraphrase the post ("The post mentions the
  poster's feelings of …") and share a stock vocabulary across posts, so BM25 finds the right one in the top
  10 for under half the posts.
- zh, CPsyCoun (CPsyCounD): query = a dialogue's opening client turn; relevant = the chunks of THAT
  dialogue's counselor replies (the replies only, one paragraph each); the corpus = the counselor sides of
  --zh-dialogues dialogues, the queried ones among them.
recall@k = relevant chunks in the top k / all relevant chunks (a question with 4 answers × 2 chunks cannot
reach 1.0 at k=5); success@k = any relevant chunk in the top k; MRR@10 = 1/rank of the first relevant.
Intervals: percentile bootstrap over queries (2,000 resamples); "X beats Y" is the paired bootstrap
interval of the difference lying above 0.

Fusion, no tuning on test data: the hybrid's (dense weight, k) is chosen by MRR@10 on a random half of the
CounselChat queries (dev; weights 1, 2, 3, 4, 6 × k 10, 20, 60), then that one setting is measured, fixed,
beside plain RRF (k 60, equal weights) on the other CounselChat half and on all of IMHI (never used for
choosing). `decision.make_default` says whether it may be Searcher's default: not below dense on MRR@10 on
both held-out sets (mean paired difference ≥ 0) and above it on at least one (paired interval above 0); the
Searcher's actual default is printed beside it. Query vectors are computed once per query for all modes and
settings (so no latency is reported from those runs).

Chinese dense: the packaged MiniLM is English-only, so the benchmark trains the library's Chinese model
with `psyassist kb train-embedder` on SMILECHAT (55k dialogues; a different source from CPsyCoun, which is
never trained on) unless --zh-embedder names one, and runs every set with "en=default;zh=MODEL" (English
texts go to MiniLM exactly as before). Its fusion for Chinese (dense weight, k) was chosen by the trainer
on 600 held-out SMILECHAT dialogues; CPsyCoun measures it once, fixed. "minilm_only" is the old default
on the same chunks (MiniLM left out of Chinese queries: hybrid = BM25).

Latency: the en + zh indexes together, padded to 10,000 chunks with other CPsyCoun dialogues' counselor
replies (real text and BM25 tokens; their vectors are random unit vectors — the dot-product cost does
not depend on the values), loaded from SQLite; each query end to end with the default Searcher (tokenize,
BM25, embed the query, matrix-vector product, fuse). Prints one JSON line last and appends a row to
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import copy
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
from psyassist.kb.search import HYBRID_DENSE_WEIGHT, HYBRID_RRF_K, RRF_K, Searcher, tokenize  # noqa: E402
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
    if lang == "imhi":
        return build_imhi(data, n_queries=n_queries, seed=seed)
    raise ValueError(lang)


IMHI_FILES = ("dreaddit", "DR", "loneliness", "CAMS", "Irf")  # the Reddit sets with whole posts (not tweets/SMS)


def build_imhi(data: str | Path, *, n_queries: int | None, seed: int = 0, files=IMHI_FILES):
    """IMHI (MentalLLaMA) test_complete: query = a Reddit post (the text between "Post:" and the last
    "Question:"); relevant = every explanation written about THAT post (the answer after "Reasoning:", one
    per row; a post asked several questions — Irf's two, or the same post in two sets — has several); the
    corpus = every explanation of `files`."""
    import re

    rng = random.Random(seed)
    posts: dict[str, str] = {}  # post text → group
    corpus = []
    for name in files:
        with (Path(data) / "IMHI_MentalLLaMA" / "test_data" / "test_complete" / f"{name}.csv").open(
                encoding="utf-8", newline="") as f:
            for i, r in enumerate(csv.DictReader(f)):
                q, a = r["query"], r["gpt-3.5-turbo"]
                m = re.match(r"\s*Post:\s*(.*)\s+Question:", q, re.S)
                if not m or "Reasoning:" not in a:
                    continue
                post = " ".join(m.group(1).split())
                reason = a.split("Reasoning:", 1)[1].strip()
                if not post or not reason:
                    continue
                group = posts.setdefault(post, f"p{len(posts)}")
                corpus.append((group, f"{name}{i}", [reason]))
    queries = [(post, g) for post, g in posts.items()]
    chosen = rng.sample(queries, min(n_queries or len(queries), len(queries)))
    return corpus, chosen


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

def evaluate(searcher: Searcher, queries, modes=MODES, *, boot: int = 2000, seed: int = 0,
             per_query: bool = False) -> dict:
    """psyassist.kb.evaluate's scoring (the same as `psyassist kb eval`), relevance = the query's group."""
    n_rel = defaultdict(int)
    for r in searcher.rows:
        n_rel[_group(r["path"])] += 1
    qs = [Query(text=text, id=str(i), n_relevant=n_rel[group],
                is_relevant=lambda row, g=group: _group(row["path"]) == g) for i, (text, group) in enumerate(queries)]
    out = kb_evaluate(searcher, qs, modes, boot=boot, seed=seed)
    pq = out.pop("per_query")
    if per_query:
        out["per_query"] = {m: {k: np.array([q[k] for q in pq[m]]) for k in PAIRED} for m in modes}
    return out


PAIRED = ("recall@5", "recall@10", "mrr@10")
GRID_WEIGHTS = (1, 2, 3, 4, 6)
GRID_K = (10, 20, 60)


class CachedEmbedder:
    """The embedder with each single query's vector remembered, so dense, plain and tuned hybrid embed a
    query once (the same vector either way); everything else is the wrapped embedder's. `languages`
    overrides the declared languages (None: ungated, for the zh "fuse it anyway" figure)."""

    _UNSET = object()

    def __init__(self, embedder, languages=_UNSET, cache: dict | None = None):
        self._e = embedder
        self._cache = {} if cache is None else cache
        self.languages = embedder.languages if languages is CachedEmbedder._UNSET else languages

    def __getattr__(self, name):
        return getattr(self._e, name)

    def encode(self, texts):
        if len(texts) != 1:
            return self._e.encode(texts)
        if texts[0] not in self._cache:
            self._cache[texts[0]] = self._e.encode(texts)[0]
        return self._cache[texts[0]][None, :]


def with_fusion(searcher: Searcher, *, rrf_k: float, dense_weight: float, embedder=None) -> Searcher:
    """The same index (no BM25 rebuild) with other fusion parameters (and embedder)."""
    s = copy.copy(searcher)
    s.rrf_k, s.dense_weight, s.per_language = rrf_k, dense_weight, False
    if embedder is not None:
        s.embedder = embedder
    return s


def split_dev_test(queries, seed: int = 7):
    """A random half for choosing the fusion (dev) and the other half for measuring it (test). Seed 7 is
    the split of the earlier one-split study (RESULTS.md, 2026-12-06 06:22), so its test half has never
    been used to choose anything."""
    order = list(range(len(queries)))
    random.Random(seed).shuffle(order)
    half = len(order) // 2
    return [queries[i] for i in order[:half]], [queries[i] for i in order[half:]]


def tune(searcher: Searcher, dev, *, weights=GRID_WEIGHTS, ks=GRID_K) -> dict:
    """MRR@10 of the hybrid for every (dense weight, k) on the dev queries; the best is chosen (ties → the
    earlier grid point: the smaller weight, then the smaller k)."""
    grid = {}
    for w in weights:
        for k in ks:
            r = evaluate(with_fusion(searcher, rrf_k=k, dense_weight=w), dev, ("hybrid",), boot=10)
            grid[(w, k)] = r["hybrid"]["mrr@10"]
    w, k = max(grid, key=lambda wk: (grid[wk], -list(grid).index(wk)))
    return {"dense_weight": w, "k": k, "dev_queries": len(dev),
            "dev_mrr@10": {f"w{w_}_k{k_}": v for (w_, k_), v in grid.items()}}


def _ci(d: np.ndarray, idx: np.ndarray) -> list[float]:
    bs = d[idx].mean(axis=1)
    return [round(float(d.mean()), 4), round(float(np.percentile(bs, 2.5)), 4), round(float(np.percentile(bs, 97.5)), 4)]


def held_out(searcher: Searcher, queries, tuned: dict, *, boot: int = 2000, seed: int = 0) -> dict:
    """BM25, dense, plain RRF (k 60, equal weights) and the tuned RRF on the same queries, each metric with
    its bootstrap interval, and paired intervals [mean, lo, hi] of each hybrid minus BM25 / dense / each
    other (the same resamples for every difference)."""
    plain = evaluate(with_fusion(searcher, rrf_k=RRF_K, dense_weight=1.0), queries, boot=boot, seed=seed,
                     per_query=True)
    mine = evaluate(with_fusion(searcher, rrf_k=tuned["k"], dense_weight=tuned["dense_weight"]), queries,
                    ("hybrid",), boot=boot, seed=seed, per_query=True)
    per = {**plain.pop("per_query"), "tuned": mine.pop("per_query")["hybrid"]}
    per["rrf"] = per.pop("hybrid")
    out = {"queries": len(queries), "bm25": plain["bm25"], "dense": plain["dense"],
           "rrf": {k: v for k, v in plain["hybrid"].items() if not k.startswith("mrr_minus")},
           "tuned": {k: v for k, v in mine["hybrid"].items() if not k.startswith("mrr_minus")}}
    idx = np.random.default_rng(seed + 1).integers(0, len(queries), size=(boot, len(queries)))
    for h, others in (("rrf", ("bm25", "dense")), ("tuned", ("bm25", "dense", "rrf"))):
        for o in others:
            out[h][f"minus_{o}"] = {m: _ci(per[h][m] - per[o][m], idx) for m in PAIRED}
    for m in ("bm25", "dense", "rrf", "tuned"):
        for k in ("p50_ms", "p95_ms"):  # query vectors are cached here: latency is measured in latency_10k
            out[m].pop(k, None)
    return out


def decide(sets: dict) -> dict:
    """The tuned RRF becomes Searcher's default only if, on MRR@10, it is not below dense on every held-out
    set (mean paired difference ≥ 0) and beats it on at least one (paired 95% interval above 0)."""
    diffs = {name: r["tuned"]["minus_dense"]["mrr@10"] for name, r in sets.items()}
    not_below = all(d[0] >= 0 for d in diffs.values())
    beats = [name for name, d in diffs.items() if d[1] > 0]
    return {"tuned_minus_dense_mrr@10": diffs, "not_below_dense_on_all": not_below, "beats_dense_on": beats,
            "make_default": bool(not_below and beats)}


def verdict(res: dict, hybrid: str = "hybrid") -> str:
    """Does the hybrid beat the best single retriever on MRR@10 (paired interval above 0)?"""
    best = max(("bm25", "dense"), key=lambda m: res[m]["mrr@10"])
    h = res[hybrid]
    if f"minus_{best}" in h:
        mean, lo, hi = h[f"minus_{best}"]["mrr@10"]
    else:
        mean, (lo, hi) = h[f"mrr_minus_{best}"], h[f"mrr_minus_{best}_ci95"]
    word = "beats" if lo > 0 else ("is below" if hi < 0 else "ties (interval spans 0)")
    return f"{word} {best} ({mean:+.3f} [{lo:+.3f}, {hi:+.3f}])"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("PSYASSIST_TEST_DATA", "../shared/data"))
    ap.add_argument("--en-queries", type=int, default=None, help="Default: every CounselChat question (815).")
    ap.add_argument("--en-answers", type=int, default=None, help="Default: every answer (2,129); fewer for a "
                                                                     "quick run (the queried questions' answers kept).")
    ap.add_argument("--imhi-queries", type=int, default=None, help="Default: every distinct IMHI post (2,724).")
    ap.add_argument("--imhi-files", default=",".join(IMHI_FILES), help="IMHI test_complete sets in the corpus.")
    ap.add_argument("--zh-dialogues", type=int, default=600, help="CPsyCoun dialogues in the zh corpus.")
    ap.add_argument("--zh-queries", type=int, default=300, help="Of them, how many are queried.")
    ap.add_argument("--zh-embedder", default="", help="A model from `psyassist kb train-embedder`; default: "
                                                          "train one on SMILECHAT into the workdir (~3 min).")
    ap.add_argument("--latency-only", action="store_true", help="Only the 10k-chunk latency (CounselChat and "
                                                                   "CPsyCoun indexed, no retrieval quality).")
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
    timing = {}
    zh_model = args.zh_embedder
    if not zh_model:
        from psyassist.kb.train_embedder import train_embedder

        zh_model = str(work / "zh-static")
        t0 = time.time()
        train_embedder([Path(args.data) / "SMILECHAT" / "smilechat_messages.jsonl.gz"], zh_model,
                       log=lambda m: print(m, file=sys.stderr))
        timing["train_zh_embedder_s"] = round(time.time() - t0, 1)
    zh_meta = json.loads((Path(zh_model) / "psyassist_embedder.json").read_text(encoding="utf-8"))
    embedder = load_embedder(f"en=default;zh={zh_model}")
    cached = CachedEmbedder(embedder)
    sizes, embedded, searchers = {}, {}, {}
    corpora = {"en": build("en", args.data, n_queries=args.en_queries, en_answers=args.en_answers),
               "zh": build("zh", args.data, n_queries=args.zh_queries, zh_dialogues=args.zh_dialogues)}
    if not args.latency_only:
        corpora["imhi"] = build_imhi(args.data, n_queries=args.imhi_queries, files=args.imhi_files.split(","))
    for lang, (corpus, queries) in corpora.items():
        t0 = time.time()
        embedded[lang] = embed_corpus(corpus, embedder)
        sizes[lang] = {"documents": len(corpus), "chunks": write_index(embedded[lang], work / f"{lang}.sqlite"),
                       "queries": len(queries)}
        timing[f"index_{lang}_s"] = round(time.time() - t0, 1)
        searchers[lang] = Searcher(KbStore(work / f"{lang}.sqlite").load(), cached)

    results: dict = {}
    if not args.latency_only:
        # --- English: choose (dense weight, k) on CounselChat dev, measure it on CounselChat test and IMHI ----
        t0 = time.time()
        dev, test = split_dev_test(corpora["en"][1])
        tuned = tune(searchers["en"], dev)
        sizes["en"].update(dev_queries=len(dev), test_queries=len(test))
        print("tuned on CounselChat dev:", json.dumps(tuned), file=sys.stderr)
        results = {"tuned_on_counselchat_dev": tuned,
                   "counselchat_test": held_out(searchers["en"], test, tuned),
                   "imhi": held_out(searchers["imhi"], corpora["imhi"][1], tuned)}
        for name in ("counselchat_test", "imhi"):
            for h in ("rrf", "tuned"):
                results[name][h]["verdict"] = verdict(results[name], h)
            print(name, json.dumps(results[name]), file=sys.stderr)
        results["decision"] = decide({n: results[n] for n in ("counselchat_test", "imhi")})
        timing["english_eval_s"] = round(time.time() - t0, 1)

        # --- Chinese: the default Searcher (the trained model, its own fusion), and the old MiniLM-only default ---
        t0 = time.time()
        zq = corpora["zh"][1]
        results["zh"] = evaluate(searchers["zh"], zq)
        results["zh"]["verdict"] = verdict(results["zh"])
        results["zh"]["fusion"] = dict(zip(("rrf_k", "dense_weight"), searchers["zh"].fusion_for(zq[0][0]), strict=True))
        results["zh"]["model"] = {k: zh_meta[k] for k in ("fusion", "dev", "dialogues", "settings", "trained_on")}
        minilm_only = with_fusion(searchers["zh"], rrf_k=HYBRID_RRF_K, dense_weight=HYBRID_DENSE_WEIGHT,
                                  embedder=CachedEmbedder(embedder, languages=("en",), cache=cached._cache))
        results["zh"]["minilm_only_mrr@10"] = evaluate(minilm_only, zq, ("hybrid",), boot=10)["hybrid"]["mrr@10"]
        print("zh", json.dumps(results["zh"], ensure_ascii=False), file=sys.stderr)
        timing["zh_eval_s"] = round(time.time() - t0, 1)

    # --- latency on 10k chunks: en + zh + padding from other dialogues (the default Searcher, no cache) ---
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
    default = {"rrf_k": searcher.rrf_k, "dense_weight": searcher.dense_weight}
    res = {"embedder": embedder.name, "chunk_tokens": 200, "overlap_tokens": 40, "sizes": sizes,
           "searcher_default": default, "retrieval": results, "latency_10k": latency, "timing": timing,
           "wall_s": round(time.time() - t_start, 1), "peak_rss_mb": round(peak_rss_mb()),
           "torch_threads": torch.get_num_threads(), "load_avg": round(load, 1)}

    if args.latency_only:
        record("kb_retrieval_latency", res, f"{embedder.name}; latency only (retrieval quality not rerun): "
               f"{latency['chunks']:,} chunks ({latency['vectors_mb']} MB of vectors), {len(lat_q)} queries "
               f"half English half Chinese, end to end incl. the query embedding: p50/p95 bm25 "
               f"{latency['bm25']['p50_ms']}/{latency['bm25']['p95_ms']} ms, dense {latency['dense']['p50_ms']}/"
               f"{latency['dense']['p95_ms']} ms, hybrid {latency['hybrid']['p50_ms']}/{latency['hybrid']['p95_ms']} "
               f"ms (target p95 < 100 ms: **{'met' if latency['hybrid']['p95_ms'] < 100 else 'missed'}**); "
               f"{torch.get_num_threads()} torch thread(s), load avg {load:.1f}")
        return

    def ci(x):
        return f"[{x[0]:.3f}, {x[1]:.3f}]"

    def held(name):
        r = results[name]
        parts = [f"{m} R@5 {r[m]['recall@5']:.3f} R@10 {r[m]['recall@10']:.3f} MRR {r[m]['mrr@10']:.3f} "
                 f"{ci(r[m]['mrr@10_ci95'])}" for m in ("bm25", "dense")]
        for h, label in (("rrf", "plain RRF"), ("tuned", "tuned RRF")):
            d = r[h]["minus_dense"]
            parts.append(f"{label} R@5 {r[h]['recall@5']:.3f} R@10 {r[h]['recall@10']:.3f} MRR {r[h]['mrr@10']:.3f} "
                         f"{ci(r[h]['mrr@10_ci95'])} {r[h]['verdict']}, R@5 vs dense {d['recall@5'][0]:+.3f} "
                         f"[{d['recall@5'][1]:+.3f}, {d['recall@5'][2]:+.3f}]")
        return "; ".join(parts)

    z = results["zh"]
    dec = results["decision"]
    w, k = tuned["dense_weight"], tuned["k"]
    dev_mrr, dev_plain = tuned["dev_mrr@10"][f"w{w}_k{k}"], tuned["dev_mrr@10"][f"w1_k{RRF_K}"]
    summary = (f"{embedder.name}; fusion chosen on {len(dev)} CounselChat dev queries from dense weight "
               f"{{{','.join(map(str, GRID_WEIGHTS))}}} × k {{{','.join(map(str, GRID_K))}}}: dense ×"
               f"{w}, k={k} (dev MRR {dev_mrr:.3f} vs plain {dev_plain:.3f}); held out — CounselChat test "
               f"({len(test)} queries, {sizes['en']['chunks']} chunks): {held('counselchat_test')}; IMHI "
               f"({sizes['imhi']['queries']} posts, {sizes['imhi']['chunks']} chunks): {held('imhi')}; "
               f"→ tuned as default: **{'yes' if dec['make_default'] else 'no'}** (Searcher default now dense ×"
               f"{default['dense_weight']}, k={default['rrf_k']}); zh ({sizes['zh']['queries']} over "
               f"{sizes['zh']['chunks']}, CPsyCoun): bm25 R@5 {z['bm25']['recall@5']:.3f} R@10 "
               f"{z['bm25']['recall@10']:.3f} MRR {z['bm25']['mrr@10']:.3f} {ci(z['bm25']['mrr@10_ci95'])}; dense MRR "
               f"{z['dense']['mrr@10']:.3f} {ci(z['dense']['mrr@10_ci95'])} (a static model trained on "
               f"{z['model']['dialogues']:,} SMILECHAT dialogues, {timing.get('train_zh_embedder_s', 'n/a')} s); "
               f"hybrid (dense ×{z['fusion']['dense_weight']:g}, k {z['fusion']['rrf_k']:g}, chosen on held-out "
               f"SMILECHAT) R@5 {z['hybrid']['recall@5']:.3f} R@10 {z['hybrid']['recall@10']:.3f} MRR "
               f"{z['hybrid']['mrr@10']:.3f} {ci(z['hybrid']['mrr@10_ci95'])} {z['verdict']} (hybrid − BM25 "
               f"{z['hybrid']['mrr_minus_bm25']:+.3f} {ci(z['hybrid']['mrr_minus_bm25_ci95'])}); old MiniLM-only "
               f"default = BM25 {z['minilm_only_mrr@10']:.3f}; p95 at {latency['chunks']:,} chunks: bm25 {latency['bm25']['p95_ms']} "
               f"ms, dense {latency['dense']['p95_ms']} ms, hybrid {latency['hybrid']['p95_ms']} ms (target < 100 ms: "
               f"**{'met' if latency['hybrid']['p95_ms'] < 100 else 'missed'}**); {torch.get_num_threads()} torch "
               f"thread(s), load avg {load:.1f}")
    record("kb_retrieval", res, summary)


if __name__ == "__main__":
    main()
