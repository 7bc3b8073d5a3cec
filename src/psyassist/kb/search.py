"""Hybrid retrieval: BM25 (bm25s; jieba words for Chinese) + dense (numpy dot), fused by reciprocal rank
with the dense ranks weighted (Searcher's default dense ×6, k = 20; `rrf` itself defaults to equal weights, k 60).

    python -c "from psyassist.kb.search import rrf; print(rrf([[3, 1, 2], [1, 2, 3]]))"

Everything is in memory: the BM25 index is built from the tokens stored with each chunk (no jieba
pass at load) and the vectors are one (n, dim) float32 matrix; a query is one tokenization, one
sparse BM25 scoring, one query embedding and one matrix–vector product (docs/kb.md has the sizes).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import numpy as np

from psyassist.kb.store import LoadedChunks
from psyassist.optional import require

MODES = ("hybrid", "bm25", "dense")
RRF_K = 60  # the constant of Cormack et al. (2009); ranks below ~60 add little
# Searcher's hybrid: score = 1/(k + BM25 rank) + dense_weight/(k + dense rank). Chosen on half the
# CounselChat queries (weights 1-6 × k 10/20/60) with the packaged MiniLM; on the held-out CounselChat half
# and on IMHI (never used for choosing) it is not below dense and beats it on IMHI, while plain RRF (k 60,
# equal weights) is below dense on CounselChat. benchmarks/kb_retrieval.py, docs/kb.md "Measured quality".
HYBRID_RRF_K = 20
HYBRID_DENSE_WEIGHT = 6.0

_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+|[a-z0-9]+(?:'[a-z]+)?")
_ZH_STOP = set("的 了 是 在 和 也 就 都 而 及 与 着 或 吗 呢 吧 啊 呀 哦 嗯 把 被 让 给 这 那 之 其 很 还 又 么 个 有 我 你 他 她 它 "
               "我们 你们 他们 一个 一些 这个 那个 什么 怎么 没有 自己 可以 因为 所以 但是 如果 就是 还是".split())
_EN_STOP: set[str] | None = None


def _en_stop() -> set[str]:
    global _EN_STOP
    if _EN_STOP is None:
        from bm25s.stopwords import STOPWORDS_EN

        _EN_STOP = set(STOPWORDS_EN)
    return _EN_STOP


def _stem(w: str) -> str:
    """Plural/verb -s only (feelings → feeling, worries → worry); enough for BM25, no stemmer package."""
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def tokenize(text: str) -> list[str]:
    """BM25 terms: jieba search-mode words for Chinese runs, lower-cased words (-s stripped) otherwise."""
    jieba = require("jieba", "Chinese BM25 in the knowledge library")
    jieba.setLogLevel(logging.WARNING)
    out: list[str] = []
    stop = _en_stop()
    for run in _RUN.findall(text.lower()):
        if "\u3400" <= run[0] <= "\ufaff":
            out += [w for w in jieba.lcut_for_search(run) if w not in _ZH_STOP]
        elif run not in stop:
            out.append(_stem(run))
    return out


def query_language(text: str) -> str:
    """'zh' when at least 30% of the letters are CJK characters, else 'en'."""
    cjk = len(re.findall(r"[\u3400-\u9fff\uf900-\ufaff]", text))
    letters = cjk + len(re.findall(r"[A-Za-z]", text))
    return "zh" if letters and cjk / letters >= 0.3 else "en"


def rrf(rankings: Sequence[Sequence[int]], k: float = RRF_K,
        weights: Sequence[float] | None = None) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: score(d) = Σ w_i / (k + rank_i), rank 1-based, w_i = 1 unless `weights` (one
    per ranking) says otherwise; ties → best single rank, then id."""
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    if any(w < 0 for w in weights) or k < 0:
        raise ValueError(f"weights and k must be ≥ 0, got weights {list(weights)}, k {k}")
    score: dict[int, float] = {}
    best: dict[int, int] = {}
    for w, ranking in zip(weights, rankings, strict=True):
        for r, d in enumerate(ranking, start=1):
            score[d] = score.get(d, 0.0) + w / (k + r)
            best[d] = min(best.get(d, r), r)
    return sorted(score.items(), key=lambda x: (-x[1], best[x[0]], x[0]))


class Searcher:
    """An in-memory index over loaded chunks; `embedder` is needed for the dense and hybrid modes.
    Hybrid = `rrf` of the BM25 and dense rankings with constant `rrf_k` and the dense ranks weighted
    `dense_weight` (BM25's weight 1); a query the embedder's languages leave out is ranked by BM25 alone.
    With `per_language` (the default), an embedder that declares a fusion for the query's language (one
    trained by `psyassist kb train-embedder` chose it on its held-out dialogues) is fused that way instead."""

    def __init__(self, loaded: LoadedChunks, embedder=None, *, rrf_k: float = HYBRID_RRF_K,
                 dense_weight: float = HYBRID_DENSE_WEIGHT, per_language: bool = True):
        if rrf_k < 0 or dense_weight < 0:
            raise ValueError(f"rrf_k and dense_weight must be ≥ 0, got {rrf_k}, {dense_weight}")
        self.rows, self.vectors, self.embedder = loaded.rows, loaded.vectors, embedder
        self.rrf_k, self.dense_weight, self.per_language = rrf_k, dense_weight, per_language
        self.bm25 = None
        if self.rows:
            bm25s = require("bm25s", "BM25 in the knowledge library")
            self.bm25 = bm25s.BM25()
            self.bm25.index(loaded.tokens, show_progress=False)

    def bm25_ranking(self, query: str, n: int) -> list[tuple[int, float]]:
        terms = tokenize(query)
        if self.bm25 is None or not terms:
            return []
        scores = self.bm25.get_scores(terms)
        return _top(scores, n, positive=True)

    def dense_ranking(self, query: str, n: int) -> list[tuple[int, float]]:
        if self.vectors is None or self.embedder is None or not query.strip():
            return []
        q = self.embedder.encode([query])[0]
        if q.shape[0] != self.vectors.shape[1]:
            raise ValueError(f"query vector has {q.shape[0]} dimensions, the index {self.vectors.shape[1]}")
        return _top(self.vectors @ q, n)

    def dense_applies(self, query: str) -> bool:
        """False when the embedder is declared for other languages than the query's (hybrid → BM25 only)."""
        return self.embedder is not None and (self.embedder.languages is None
                                              or query_language(query) in self.embedder.languages)

    def fusion_for(self, query: str) -> tuple[float, float]:
        """(rrf_k, dense_weight) for this query: the embedder's own for its language, else the Searcher's."""
        if self.per_language:
            f = (getattr(self.embedder, "fusion", None) or {}).get(query_language(query))
            if f:
                return float(f["rrf_k"]), float(f["dense_weight"])
        return self.rrf_k, self.dense_weight

    def search(self, query: str, k: int = 10, mode: str = "hybrid") -> list[dict]:
        """Ranked passages: the chunk's row plus rank, score and each retriever's own rank."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        n = max(50, 5 * k)  # candidates per retriever before fusion
        b = self.bm25_ranking(query, n) if mode in ("hybrid", "bm25") else []
        use_dense = mode == "dense" or (mode == "hybrid" and self.dense_applies(query))
        d = self.dense_ranking(query, n) if use_dense else []
        if mode == "hybrid":
            rrf_k, dense_weight = self.fusion_for(query)
            fused = rrf([[i for i, _ in b], [i for i, _ in d]], k=rrf_k, weights=(1.0, dense_weight))
        else:
            fused = b or d
        b_rank = {i: r for r, (i, _) in enumerate(b, 1)}
        d_rank = {i: r for r, (i, _) in enumerate(d, 1)}
        d_score = dict(d)  # cosine similarity: the one score with a meaning across queries (prompt cut-offs use it)
        return [{**self.rows[i], "rank": r, "score": round(float(s), 6), "bm25_rank": b_rank.get(i),
                 "dense_rank": d_rank.get(i), "dense_score": None if i not in d_score else round(d_score[i], 4)}
                for r, (i, s) in enumerate(fused[:k], 1)]


def _top(scores: np.ndarray, n: int, positive: bool = False) -> list[tuple[int, float]]:
    """Indices of the n highest scores, best first (stable for ties); BM25 keeps only scores > 0."""
    n = min(n, len(scores))
    if n <= 0:
        return []
    idx = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
    idx = idx[np.lexsort((idx, -scores[idx]))]
    return [(int(i), float(scores[i])) for i in idx if not positive or scores[i] > 0]
