"""Retrieval evaluation of a library index: recall@5/10, success@10 and MRR@10 per mode, with 95%
bootstrap intervals, and the paired difference hybrid − each single retriever.

    psyassist kb eval --index library.sqlite --queries queries.jsonl

The queries file (JSON Lines, one object a line) says what is relevant; nothing is judged by hand here:

    {"id": "q1", "query": "how to stop ruminating at night", "relevant": ["sleep-hygiene.pdf", "CBT-I manual"]}

`relevant` names documents: a path as ingested, its file name, its title, or a sha256 prefix (≥ 8 hex
characters). A chunk is relevant when its document is. recall@k = relevant chunks in the top k / all
relevant chunks in the index; success@k = any relevant chunk in the top k; MRR@10 = 1 / rank of the
first relevant chunk (0 if none in the top 10). The same code scores benchmarks/kb_retrieval.py.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from psyassist.errors import DataError, PsyassistError

MODES = ("bm25", "dense", "hybrid")
METRICS = ("recall@5", "recall@10", "success@10", "mrr@10")


@dataclass
class Query:
    text: str
    is_relevant: Callable[[dict], bool]  # a chunk row of the index → relevant?
    n_relevant: int  # relevant chunks in the index (recall's denominator)
    id: str = ""


def evaluate(searcher, queries: Sequence[Query], modes: Sequence[str] = MODES, *, boot: int = 2000,
             seed: int = 0) -> dict:
    """Per-mode means with 95% percentile-bootstrap intervals over queries, latency p50/p95, and the paired
    bootstrap interval of hybrid's MRR minus each other mode's (same resamples)."""
    if not queries:
        raise PsyassistError("no queries to evaluate")
    per = {m: {k: [] for k in (*METRICS, "ms")} for m in modes}
    for q in queries:
        for m in modes:
            t0 = time.perf_counter()
            hits = searcher.search(q.text, k=10, mode=m)
            per[m]["ms"].append(1000 * (time.perf_counter() - t0))
            rel = [q.is_relevant(h) for h in hits]
            per[m]["recall@5"].append(sum(rel[:5]) / q.n_relevant)
            per[m]["recall@10"].append(sum(rel[:10]) / q.n_relevant)
            per[m]["success@10"].append(float(any(rel)))
            per[m]["mrr@10"].append(next((1 / (i + 1) for i, x in enumerate(rel) if x), 0.0))
    idx = np.random.default_rng(seed).integers(0, len(queries), size=(boot, len(queries)))
    out: dict = {}
    for m in modes:
        out[m] = {}
        for name, vals in per[m].items():
            v = np.array(vals)
            if name == "ms":
                out[m]["p50_ms"], out[m]["p95_ms"] = (round(float(np.percentile(v, q)), 2) for q in (50, 95))
                continue
            bs = v[idx].mean(axis=1)
            out[m][name] = round(float(v.mean()), 4)
            out[m][name + "_ci95"] = [round(float(np.percentile(bs, 2.5)), 4), round(float(np.percentile(bs, 97.5)), 4)]
    if "hybrid" in modes:
        h = np.array(per["hybrid"]["mrr@10"])
        for other in (m for m in modes if m != "hybrid"):
            d = h - np.array(per[other]["mrr@10"])
            bs = d[idx].mean(axis=1)
            out["hybrid"][f"mrr_minus_{other}"] = round(float(d.mean()), 4)
            out["hybrid"][f"mrr_minus_{other}_ci95"] = [round(float(np.percentile(bs, 2.5)), 4),
                                                        round(float(np.percentile(bs, 97.5)), 4)]
    out["queries"] = len(queries)
    out["per_query"] = {m: [{"id": q.id, **{k: round(per[m][k][i], 4) for k in METRICS}}
                            for i, q in enumerate(queries)] for m in modes}
    return out


def _doc_keys(doc: dict) -> set[str]:
    p = str(doc["path"])
    return {p, Path(p).name, str(doc.get("title") or "")} - {""}


def _bad(p: Path, n: int, field: str | None, expected: str, got: object) -> DataError:
    return DataError(str(p), expected, line=n, field=field, got=got, reason="bad_query", hint="")


def load_queries(path: str | Path, rows: list[dict], documents: list[dict]) -> list[Query]:
    """Read the queries file against the index (its chunk rows and `KbStore.documents()`); every mistake
    names its line and field."""
    p = Path(path)
    if not p.is_file():
        raise PsyassistError(f"no queries file at {p}")
    chunks_of: dict[int, int] = {}
    for r in rows:
        chunks_of[r["document_id"]] = chunks_of.get(r["document_id"], 0) + 1
    docs = {d["id"]: d for d in documents if d["id"] in chunks_of}
    by_key: dict[str, set[int]] = {}
    for did, d in docs.items():
        for k in _doc_keys(d):
            by_key.setdefault(k, set()).add(did)
    sha = {did: str(d.get("sha256") or "") for did, d in docs.items()}
    out: list[Query] = []
    seen: set[str] = set()
    for n, line in enumerate(p.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise _bad(p, n, None, "a JSON object", f"invalid JSON ({e.msg})") from e
        if not isinstance(rec, dict):
            raise _bad(p, n, None, "a JSON object", type(rec).__name__)
        text = rec.get("query")
        if not isinstance(text, str) or not text.strip():
            raise _bad(p, n, "query", "a non-empty string", text)
        rel = rec.get("relevant")
        if isinstance(rel, str):
            rel = [rel]
        if not isinstance(rel, list) or not rel or not all(isinstance(x, str) and x for x in rel):
            raise _bad(p, n, "relevant", "a non-empty list of document paths, file names, titles or sha256 prefixes",
                       rel)
        qid = str(rec.get("id", n))
        if qid in seen:
            raise _bad(p, n, "id", "an id not used before in the file", qid)
        seen.add(qid)
        ids: set[int] = set()
        for key in rel:
            found = set(by_key.get(key, ()))
            if not found and re.fullmatch(r"[0-9a-fA-F]{8,64}", key):
                found = {did for did, h in sha.items() if h.startswith(key.lower())}
            if not found:
                raise _bad(p, n, "relevant", "a document in the index (see `psyassist kb list`)",
                           f"{key} (matches none)")
            ids |= found
        out.append(Query(text=text, id=qid, n_relevant=sum(chunks_of[d] for d in ids),
                         is_relevant=lambda row, ids=frozenset(ids): row["document_id"] in ids))
    if not out:
        raise PsyassistError(f"{p} holds no queries")
    return out
