"""How often a real model cites the library passages a draft is offered: CounselChat answers as one counselor's
library, held-out CounselChat questions as the session input, each drafted with the library on and off.

    PSYASSIST_TEST_DATA=../shared/data OMP_NUM_THREADS=1 .venv/bin/python benchmarks/app_citations.py [--n 30]
    ... benchmarks/app_citations.py --endpoint http://127.0.0.1:8000/v1 --model NAME   # another model, served

The app in this process (AppState + the web app through FastAPI's TestClient, the JSON API a page uses), with
the default in-process model (SmolLM2-135M-Instruct, draft_max_tokens 768, the app's sampling) unless
--endpoint names an OpenAI-compatible server.  The library: `--n` CounselChat questions are drawn with
`--seed` and held out (every answer to them, matched by id and by title, stays out); the other questions'
answers, shuffled with the seed, up to `--library-words`, are uploaded through `AppLibrary.upload` as one
Markdown document per topic (each answer under its question's title) with the packaged MiniLM embedder,
the app's default `kb_embed_model`.  So retrieval is honest: a question's own answers are never offered.

Each question (title + text) is drafted twice, library on and off, with the same sampling seed (the app
does not seed drafts; this wrapper passes `--seed + i` to the backend) and alternating which goes first.
Counted per draft: passages offered, citation chips attached (valid [n]), numbers removed as not offered
(the draft's repairs), model items with ≥1 chip / all model items, whether the reply was a JSON object and
whether it ended (finish "stop"), and with the library off, the [n] marks the model writes anyway (kept in
the text: without passages the app reads no marks).  Rates carry 95% Wilson intervals; the item rate's
treats items as independent, and items of one draft are not, so the draft rate's interval is the honest
one.  Time, from each draft's provenance: generation seconds, seconds to the first item (the longer prompt's
prefill is in it) and milliseconds per completion token, on vs off, and the p50 of each question's on/off
ratio (drafts differ in length: the per-token figure is the cost of the longer prompt).  No warm-up draft:
the first one, library on, also compiles the JSON grammar (a few seconds out of 60 drafts).  Default run:
27-28 minutes on 2 cores shared with another job (load 3-7); about half that on a quiet machine.  Prints one
JSON line last and appends a row to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "tests"))
from _common import peak_rss_mb, record  # noqa: E402

from app_helpers import PASSWORD, wait_draft, web_client  # noqa: E402
from psyassist.app.accounts import create_user  # noqa: E402
from psyassist.app.config import AppConfig  # noqa: E402
from psyassist.app.library import parse_citations  # noqa: E402
from psyassist.app.llm import build_backend  # noqa: E402
from psyassist.app.runner import Runner  # noqa: E402
from psyassist.app.state import open_state  # noqa: E402
from psyassist.eval.stats import wilson  # noqa: E402
from psyassist.kb.embed import load_embedder  # noqa: E402

# Anything that looks like a reference mark, strict or not ("[1]", "[1-2]", "(1)", "[Passage 1]", "【1】"): what is
# left of these after the app's parsing are formats parse_citations does not read.
LOOSE = re.compile(r"[\[【(（]\s*(?:passage|source|ref\w*)?\s*#?\d{1,2}\s*(?:[-–,，、]\s*\d{1,2}\s*)*[\]】)）]", re.I)


class Seeded:
    """The app's backend with a fixed sampling seed per draft, keeping the raw text of the last reply."""

    def __init__(self, backend):
        self.backend, self.seed, self.last = backend, None, ""

    def __getattr__(self, name):
        return getattr(self.backend, name)

    async def stream(self, messages, **kw):
        parts = []
        async for ev in self.backend.stream(messages, **{**kw, "seed": self.seed}):
            if ev[0] == "delta":
                parts.append(ev[1])
            yield ev
        self.last = "".join(parts)


def counselchat(data: Path, n: int, seed: int, words: int) -> tuple[list[str], dict[str, str]]:
    """(n held-out questions as draft inputs, {topic: Markdown document} of the other questions' answers)."""
    with (data / "CounselChat" / "20200325_counsel_chat.csv").open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if (r.get("answerText") or "").strip() and (r["questionTitle"] or "").strip()]
    questions = {}
    for r in rows:
        questions.setdefault(r["questionTitle"].strip().lower(), r)  # one question can sit under several ids
    rng = random.Random(seed)
    held = rng.sample(sorted(questions), n)
    held_ids = {questions[t]["questionID"] for t in held}
    rest = [r for r in rows if r["questionID"] not in held_ids and r["questionTitle"].strip().lower() not in held]
    rng.shuffle(rest)
    by_topic, total = defaultdict(list), 0
    for r in rest:
        if total >= words:
            break
        by_topic[r["topic"] or "general"].append(f"## {r['questionTitle'].strip()}\n\n{r['answerText'].strip()}\n")
        total += len(r["answerText"].split())
    docs = {t: f"# CounselChat answers: {t}\n\n" + "\n".join(a).replace("\r", "") for t, a in sorted(by_topic.items())}
    inputs = [f"{questions[t]['questionTitle'].strip()}\n{(questions[t]['questionText'] or '').strip()}" for t in held]
    return inputs, docs


def model_items(content: dict | None) -> list[dict]:
    """The model-written items of a draft's sections (what attach_citations reads)."""
    return [it for items in (content or {}).get("sections", {}).values() for it in items
            if it.get("origin") in ("model", "regenerated") and it["text"].strip()]


def measure(d: dict, raw: str, wall: float) -> dict:
    prov, items = d["provenance"], model_items(d["content"])
    repaired = prov.get("repaired") or []
    _, cited, bad = parse_citations(raw, 99)  # every [n] mark in the reply, offered or not (distinct numbers)
    return {"status": d["status"], "json": "the model wrote no JSON object" not in repaired and d["status"] == "ready",
            "finish": prov.get("finish"), "offered": len((prov.get("library") or {}).get("passages", [])),
            "chips": sum(len(it.get("citations") or []) for it in items),
            "removed": sum(1 for p in repaired if p.startswith("the model cited [")),
            "items": len(items), "items_cited": sum(1 for it in items if it.get("citations")),
            "raw_marks": len(cited) + len(bad), "left_in_text": sum(len(LOOSE.findall(it["text"])) for it in items),
            "seconds": prov.get("seconds"), "first_item_s": prov.get("first_item_seconds"), "wall_s": round(wall, 2),
            "completion_tokens": prov.get("completion_tokens")}


def rate(k: int, n: int) -> dict:
    lo, hi = wilson(k, n)
    return {"k": k, "n": n, "rate": round(k / n, 3) if n else None, "ci95": [round(lo, 3), round(hi, 3)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("PSYASSIST_TEST_DATA", "../shared/data"))
    ap.add_argument("--n", type=int, default=30, help="held-out questions; each is drafted twice (library on, off)")
    ap.add_argument("--seed", type=int, default=0, help="question draw, library order, sampling seeds")
    ap.add_argument("--library-words", type=int, default=60_000,
                    help="words of answers in the library (60k ≈ 500 chunks ≈ 40 s of MiniLM on 2 busy cores)")
    ap.add_argument("--model", default="default", help="in process: what `psyassist chat --model` takes; "
                    "with --endpoint: the endpoint's model name")
    ap.add_argument("--endpoint", help="an OpenAI-compatible /v1 (psyassist serve, vLLM) instead of in process")
    # Same reason as app_draft.py: on the busy shared 2-core machine 1 torch thread beat 2.
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the model and MiniLM)")
    args = ap.parse_args()
    import torch  # noqa: PLC0415 — after the arguments: --help needs no torch

    torch.set_num_threads(args.threads)
    data = Path(args.data)
    if not (data / "CounselChat").is_dir():
        sys.exit(f"no CounselChat under {data}: set PSYASSIST_TEST_DATA or --data to the shared data directory")

    started = time.perf_counter()
    inputs, docs = counselchat(data, args.n, args.seed, args.library_words)
    runs: dict[str, list[dict]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="psyassist-bench-cite-") as tmp:
        tmp = Path(tmp)
        cfg = AppConfig(data_dir=tmp / "app", model=args.model, backend="openai" if args.endpoint else "inprocess",
                        endpoint=args.endpoint)
        st = open_state(cfg)
        uid = create_user(st.db, "alice", PASSWORD, role="counselor").id
        t0 = time.perf_counter()
        st.library.set_embedder(load_embedder(cfg.kb_embed_model))
        (tmp / "docs").mkdir()
        files = []
        for topic, text in docs.items():
            path = tmp / "docs" / f"counselchat-{topic}.md"
            path.write_text(text, encoding="utf-8")
            files.append((path.name, path))
        report = st.library.upload(uid, files)
        library_s = time.perf_counter() - t0
        chunks = sum(f["chunks"] for f in report["added"])
        if report["skipped"]:
            sys.exit(f"library upload skipped files: {report['skipped']}")

        t0 = time.perf_counter()
        st.backend = Seeded(build_backend(cfg))
        st.runner = Runner(st)
        try:
            with web_client(st) as client:  # its start-up loads the model
                load_s = time.perf_counter() - t0
                r = client.post("/api/v1/login", json={"username": "alice", "password": PASSWORD})
                client.headers["X-CSRF-Token"] = r.raise_for_status().json()["csrf_token"]
                cid = client.post("/api/v1/clients", json={"name": "C.C."}).raise_for_status().json()["id"]

                def draft(text: str, on: bool, seed: int) -> dict:
                    st.backend.seed = seed
                    t = time.perf_counter()
                    r = client.post(f"/api/v1/clients/{cid}/drafts", json={"input": text, "use_library": on})
                    d = wait_draft(client, r.raise_for_status().json()["id"], timeout=900, every=0.5)
                    return measure(d, st.backend.last, time.perf_counter() - t)

                for i, text in enumerate(inputs):
                    order = (True, False) if i % 2 == 0 else (False, True)  # alternate: load drift hits both
                    for on in order:
                        runs["on" if on else "off"].append({"i": i, **draft(text, on, args.seed + i)})
                    print(f"[{i + 1}/{len(inputs)}] on {runs['on'][-1]} | off {runs['off'][-1]}", file=sys.stderr,
                          flush=True)
        finally:
            st.close()

    on, off = runs["on"], runs["off"]
    offered = [r for r in on if r["offered"]]

    def p50(key: str, rs: list[dict]) -> float | None:
        xs = [r[key] for r in rs if r[key] is not None]
        return round(statistics.median(xs), 2) if xs else None

    def ms_per_token(rs: list[dict]) -> float | None:
        tokens = sum(r["completion_tokens"] or 0 for r in rs)
        return round(1000 * sum(r["seconds"] or 0 for r in rs) / tokens, 1) if tokens else None

    ratio = [a["seconds"] / b["seconds"] for a, b in zip(on, off, strict=True) if a["seconds"] and b["seconds"]]
    chips, removed = sum(r["chips"] for r in on), sum(r["removed"] for r in on)
    result = {
        "inputs": len(inputs), "model": st.backend.describe(), "seed": args.seed, "torch_threads": args.threads,
        "library": {"documents": len(docs), "chunks": chunks, "words_cap": args.library_words,
                    "embed_upload_s": round(library_s, 1)},
        "model_load_s": round(load_s, 1), "total_s": round(time.perf_counter() - started),
        "offered_any": rate(len(offered), len(on)),
        "passages_offered_mean": round(statistics.mean(r["offered"] for r in on), 2),
        "drafts_citing": rate(sum(1 for r in offered if r["chips"]), len(offered)),
        "items_cited": rate(sum(r["items_cited"] for r in offered), sum(r["items"] for r in offered)),
        "chips": chips, "removed_not_offered": removed,
        "drafts_with_removed": rate(sum(1 for r in on if r["removed"]), len(on)),
        "marks_left_in_text_on": sum(r["left_in_text"] for r in on),
        "json_on": rate(sum(r["json"] for r in on), len(on)), "json_off": rate(sum(r["json"] for r in off), len(off)),
        "stop_on": rate(sum(r["finish"] == "stop" for r in on), len(on)),
        "stop_off": rate(sum(r["finish"] == "stop" for r in off), len(off)),
        "off_drafts_with_marks": rate(sum(1 for r in off if r["raw_marks"]), len(off)),
        "off_marks": sum(r["raw_marks"] for r in off),
        "seconds_p50": {k: p50("seconds", v) for k, v in runs.items()},
        "first_item_s_p50": {k: p50("first_item_s", v) for k, v in runs.items()},
        "ms_per_token": {k: ms_per_token(v) for k, v in runs.items()},
        "paired_on_over_off_p50": round(statistics.median(ratio), 2) if ratio else None,
        "completion_tokens_mean": {k: round(statistics.mean(r["completion_tokens"] or 0 for r in v), 1)
                                   for k, v in runs.items()},
        "runs": runs, "peak_rss_mb": round(peak_rss_mb()), "load_avg_1m": round(os.getloadavg()[0], 1)}

    def pct(r: dict) -> str:
        return f"{r['k']}/{r['n']} = {100 * (r['rate'] or 0):.0f}% [{100 * r['ci95'][0]:.0f}–{100 * r['ci95'][1]:.0f}%]"

    name = result["model"].get("model", args.model)
    ic = result["items_cited"]
    who = f"the 135M default model (SmolLM2-135M-Instruct, CPU, {args.threads} torch thread(s))" if name == "default" else name
    summary = (f"{who}, "
               f"{len(inputs)} held-out CounselChat questions drafted with the library on and off (library: "
               f"{chunks} chunks of other questions' answers); offered ≥1 passage {pct(result['offered_any'])}; "
               f"drafts with ≥1 valid citation {pct(result['drafts_citing'])}; items cited {ic['k']}/{ic['n']} "
               f"= {100 * (ic['rate'] or 0):.0f}% [{100 * ic['ci95'][0]:.1f}–{100 * ic['ci95'][1]:.1f}%]; {chips} chips, "
               f"{removed} numbers removed as not offered; JSON on {pct(result['json_on'])}, off "
               f"{pct(result['json_off'])}; library off: {result['off_marks']} stray [n] in "
               f"{pct(result['off_drafts_with_marks'])} drafts; per draft on / off: generation p50 "
               f"{result['seconds_p50']['on']} / {result['seconds_p50']['off']} s, first item p50 "
               f"{result['first_item_s_p50']['on']} / {result['first_item_s_p50']['off']} s, "
               f"{result['ms_per_token']['on']} / {result['ms_per_token']['off']} ms per token, paired on/off "
               f"ratio p50 ×{result['paired_on_over_off_p50']}; {result['total_s'] // 60} min in all; a low citation rate "
               f"is a finding about the model, not a failure; load avg {result['load_avg_1m']}")
    record("app_citations", result, summary)


if __name__ == "__main__":
    main()
