"""Serving throughput: 8 concurrent streaming clients vs the same 8 requests one after another.

    PSYASSIST_TEST_DATA=../shared/data .venv/bin/python benchmarks/serve_concurrency.py [--model default]

Starts the real `psyassist serve` (a subprocess, the CLI path users run) on a free loopback
port, then sends the SAME 8 requests — the first 8 CounselChat questions (English, real
client questions; the built-in list when the data directory is absent), max_tokens 64,
seed 0..7, the model card's sampling — twice:
(a) sequentially: one streaming client, one request at a time;
(b) concurrently: 8 streaming clients at once (the HF backend batches them: --max-batch 8).
Reported: completion tokens/s of each run and their ratio (target ≥ 2.5×), time to first
token p50/p95 of each, and the worker's forward calls (how many rows shared a forward).
Per-row seeded sampling makes both runs generate the same tokens (counted, not assumed).

`--backend vllm` runs the same client against the vLLM backend (GPU machine; not measured
in this project yet).  Prints one JSON line last and appends a row to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _common import record  # noqa: E402

FALLBACK = ["I can't sleep the night before exams and my mind keeps racing. What can I do?",
            "My partner and I argue about small things every day. How do we stop?",
            "I feel lonely since I moved to a new city for work.",
            "How do I tell my parents that I am seeing a therapist?",
            "I get panic attacks on the subway. Is something wrong with me?",
            "My friend says she wants to give up on everything. How can I help her?",
            "I procrastinate on everything and then hate myself for it.",
            "Since my father died I can't concentrate at work."]


def prompts(n: int = 8) -> tuple[list[str], str]:
    root = os.environ.get("PSYASSIST_TEST_DATA")
    path = Path(root or ".") / "CounselChat" / "20200325_counsel_chat.csv"
    if not root or not path.is_file():
        return FALLBACK[:n], "built-in list (PSYASSIST_TEST_DATA not set)"
    seen, out = set(), []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            q = (row.get("questionText") or "").strip()
            if q and row["questionID"] not in seen and len(q) < 600:  # one short real question each
                seen.add(row["questionID"])
                out.append(q)
            if len(out) == n:
                break
    return out, f"CounselChat first {n} questions < 600 chars"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one(url: str, model: str, prompt: str, seed: int, max_tokens: int) -> dict:
    """Stream one request; (time to first content token, total seconds, completion tokens)."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "seed": seed, "stream": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    ttft, tokens = None, 0
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if ttft is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                ttft = time.perf_counter() - t0
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return {"ttft": ttft if ttft is not None else time.perf_counter() - t0, "secs": time.perf_counter() - t0,
            "tokens": tokens}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def summarize(runs: list[dict], wall: float) -> dict:
    toks = sum(r["tokens"] for r in runs)
    return {"wall_s": round(wall, 2), "completion_tokens": toks, "tokens_per_s": round(toks / wall, 2),
            "ttft_p50_s": round(statistics.median(r["ttft"] for r in runs), 3),
            "ttft_p95_s": round(pct([r["ttft"] for r in runs], 0.95), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--backend", default="hf", choices=["hf", "vllm"])
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--clients", type=int, default=8)
    # On the busy shared 2-core machine, 2 torch threads ran SmolLM2 3-20x SLOWER than 1 (OpenMP
    # threads wait for each other when other jobs hold the cores): 1 keeps both runs CPU-fair.
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the server (CPU backend).")
    args = ap.parse_args()

    texts, source = prompts(args.clients)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "psyassist", "serve", "--model", args.model, "--port", str(port), "--backend",
           args.backend, "--max-batch", str(args.clients), "--max-tokens", str(args.max_tokens)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        t0 = time.perf_counter()
        while True:
            if server.poll() is not None:
                raise SystemExit(f"server exited: {server.stderr.read()[-2000:]}")
            try:
                health = httpx.get(url + "/health", timeout=2).json()
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        load_s = time.perf_counter() - t0
        model = health["model"]
        one(url, model, "Hello.", 0, 4)  # warm-up: first-call allocations stay out of both runs

        def run(i: int) -> dict:
            return one(url, model, texts[i], i, args.max_tokens)

        h0 = httpx.get(url + "/health").json()
        t = time.perf_counter()
        seq = [run(i) for i in range(len(texts))]
        seq_wall = time.perf_counter() - t
        h1 = httpx.get(url + "/health").json()
        t = time.perf_counter()
        with ThreadPoolExecutor(len(texts)) as ex:
            conc = list(ex.map(run, range(len(texts))))
        conc_wall = time.perf_counter() - t
        h2 = httpx.get(url + "/health").json()
    finally:
        server.terminate()
        server.wait(timeout=30)

    a, b = summarize(seq, seq_wall), summarize(conc, conc_wall)
    ratio = b["tokens_per_s"] / a["tokens_per_s"]
    load = os.getloadavg()[0]
    forwards = {}
    if args.backend == "hf":
        forwards = {"sequential_forwards": h1["forward_calls"] - h0["forward_calls"],
                    "concurrent_forwards": h2["forward_calls"] - h1["forward_calls"],
                    "max_rows_in_forward": h2["max_rows_in_forward"]}
    result = {"model": args.model, "backend": args.backend, "clients": len(texts), "max_tokens": args.max_tokens,
              "prompts": source, "server_threads": args.threads, "server_load_s": round(load_s, 1),
              "sequential": a, "concurrent": b,
              "throughput_ratio": round(ratio, 2), "target_ratio": 2.5, **forwards, "load_avg_1m": round(load, 1),
              "note": f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end"}
    summary = (f"{args.backend} {args.model}, {len(texts)} streaming requests ({source}), max_tokens "
               f"{args.max_tokens}: sequential {a['tokens_per_s']} tok/s (TTFT p50 {a['ttft_p50_s']} s, p95 "
               f"{a['ttft_p95_s']} s) vs {len(texts)} concurrent {b['tokens_per_s']} tok/s (TTFT p50 "
               f"{b['ttft_p50_s']} s, p95 {b['ttft_p95_s']} s): **{ratio:.2f}×** (target ≥ 2.5×)"
               + (f"; forwards {forwards['sequential_forwards']} → {forwards['concurrent_forwards']}" if forwards else "")
               + f"; server {args.threads} thread(s), 2 shared CPU cores, load avg {load:.1f}; GPU vLLM vs HF: "
               "not measured")
    record("serve_concurrency", result, summary)


if __name__ == "__main__":
    main()
