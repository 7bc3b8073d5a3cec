"""The app's Library: what uploading a book costs, and what finding a draft's passages costs, on this CPU.

    PSYASSIST_TEST_DATA=../shared/data OMP_NUM_THREADS=1 .venv/bin/python benchmarks/app_library.py [--words 100000]

Two "books" built from real public text (never shipped: they are written to a temp dir):
- en: CounselChat therapists' answers, one `##` section per question topic, up to --words words (a
  100k-word book is a typical practitioner's handbook);
- zh: CPsyCoun counselor replies, one `##` section per dialogue, up to --zh-chars characters.
Each is uploaded through `AppLibrary.upload` (the Library page's path: parse, chunk in MiniLM tokens,
jieba/English BM25 tokens, embed with the packaged all-MiniLM-L6-v2, one transaction into SQLite).
Baseline in the same run: parse + chunk alone (what any ingest costs before a model is involved), so the
ratio says how much of an upload is the embedding model.  Then the first search of the counselor (it
loads and indexes both books) and `for_prompt` (what a draft waits for) p50/p95 over CounselChat question
titles and CPsyCoun openings.  Prints one JSON line last and appends a row to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import peak_rss_mb, record  # noqa: E402

from psyassist.app.accounts import create_user  # noqa: E402
from psyassist.app.config import AppConfig  # noqa: E402
from psyassist.app.state import open_state  # noqa: E402
from psyassist.kb.chunk import chunk_blocks  # noqa: E402
from psyassist.kb.embed import estimate_tokens, load_embedder  # noqa: E402
from psyassist.kb.parse import parse_file  # noqa: E402


def english_book(data: Path, words: int) -> tuple[str, list[str]]:
    with (data / "CounselChat" / "20200325_counsel_chat.csv").open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if (r.get("answerText") or "").strip()]
    by_topic = defaultdict(list)
    for r in rows:
        by_topic[r["topic"] or "general"].append(r["answerText"].strip())
    out, n = ["# A counselor's handbook (CounselChat answers)\n"], 0
    for topic in sorted(by_topic):
        out.append(f"\n## {topic}\n")
        for a in by_topic[topic]:
            out.append(a.replace("\r", "") + "\n")
            n += len(a.split())
            if n >= words:
                return "\n".join(out), sorted({r["questionTitle"] for r in rows if r["questionTitle"]})
    return "\n".join(out), sorted({r["questionTitle"] for r in rows if r["questionTitle"]})


def chinese_book(data: Path, chars: int) -> tuple[str, list[str]]:
    path = data / "CPsyCoun" / "cpsycound.jsonl"
    out, n, openings = ["# 咨询对话选编（CPsyCoun）\n"], 0, []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            msgs = json.loads(line).get("messages") or []
            user = next((m["content"] for m in msgs if m["role"] == "user"), "")
            replies = [m["content"].strip() for m in msgs if m["role"] == "assistant" and m["content"].strip()]
            if n < chars:
                out.append(f"\n## 对话 {i + 1}\n")
                out += [r + "\n" for r in replies]
                n += sum(len(r) for r in replies)
            elif user:
                openings.append(user[:200])  # queries from dialogues NOT in the book: a realistic miss rate
            if n >= chars and len(openings) >= 100:
                break
    return "\n".join(out), openings


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("PSYASSIST_TEST_DATA", "../shared/data"))
    ap.add_argument("--words", type=int, default=100_000, help="Words of the English book.")
    ap.add_argument("--zh-chars", type=int, default=150_000, help="Characters of the Chinese book.")
    ap.add_argument("--queries", type=int, default=100, help="Queries per language for for_prompt.")
    args = ap.parse_args()
    data = Path(args.data)
    if not (data / "CounselChat").is_dir():
        sys.exit(f"no CounselChat under {data}: set PSYASSIST_TEST_DATA to the shared data directory")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        en_text, en_queries = english_book(data, args.words)
        zh_text, zh_queries = chinese_book(data, args.zh_chars)
        books = {"en": tmp / "handbook.md", "zh": tmp / "咨询对话选编.md"}
        books["en"].write_text(en_text, encoding="utf-8")
        books["zh"].write_text(zh_text, encoding="utf-8")

        t0 = time.perf_counter()
        embedder = load_embedder("default")
        load_s = time.perf_counter() - t0

        st = open_state(AppConfig(data_dir=tmp / "app"))
        uid = create_user(st.db, "bench", "bench-password-123", role="counselor").id
        st.library.set_embedder(embedder)
        res: dict = {"embedder_load_s": round(load_s, 2)}
        for lang, path in books.items():
            t0 = time.perf_counter()
            doc = parse_file(path)
            chunks = chunk_blocks(doc.blocks, embedder.count_tokens, size=200, overlap=40)
            base = time.perf_counter() - t0
            copy = tmp / f"upload-{lang}"
            copy.write_bytes(path.read_bytes())
            t0 = time.perf_counter()
            rep = st.library.upload(uid, [(path.name, copy)])
            up = time.perf_counter() - t0
            assert rep["added"], rep
            size = len(path.read_text(encoding="utf-8"))
            res[lang] = {"chars": size, "words": len(path.read_text(encoding="utf-8").split()),
                         "chunks": len(chunks), "parse_chunk_s": round(base, 2), "upload_s": round(up, 1),
                         "upload_vs_parse_chunk": round(up / base, 1), "chunks_per_s": round(len(chunks) / up, 1)}

        t0 = time.perf_counter()
        st.library.search(uid, "panic attack breathing")
        res["first_search_s"] = round(time.perf_counter() - t0, 2)
        def count(text: str) -> int:  # the app's endpoint estimate (a model backend counts exactly)
            return estimate_tokens([text])[0]

        for lang, qs in (("en", en_queries), ("zh", zh_queries)):
            times, offered = [], []
            for q in qs[:args.queries]:
                t0 = time.perf_counter()
                got = st.library.for_prompt(uid, q, count)
                times.append((time.perf_counter() - t0) * 1000)
                offered.append(len(got))
            res[lang].update(for_prompt_p50_ms=round(statistics.median(times), 1),
                             for_prompt_p95_ms=round(pct(times, 0.95), 1),
                             offered_mean=round(statistics.mean(offered), 2), queries=len(times))
        res["peak_rss_mb"] = round(peak_rss_mb())
        st.close()

    en, zh = res["en"], res["zh"]
    summary = (f"upload of a {en['words']:,}-word English book ({en['chunks']} chunks): {en['upload_s']} s "
               f"({en['upload_vs_parse_chunk']}× parse+chunk alone); {zh['chars']:,}-character Chinese book "
               f"({zh['chunks']} chunks): {zh['upload_s']} s; MiniLM load {res['embedder_load_s']} s; first search "
               f"{res['first_search_s']} s; passages for a draft p50/p95 en {en['for_prompt_p50_ms']}/"
               f"{en['for_prompt_p95_ms']} ms, zh {zh['for_prompt_p50_ms']}/{zh['for_prompt_p95_ms']} ms; "
               f"peak RSS {res['peak_rss_mb']} MB")
    print(summary)
    record("app_library", res, summary)


if __name__ == "__main__":
    main()
