"""Peak memory and time of the app's adapter training with and without gradient checkpointing, same job.

    .venv/bin/python benchmarks/app_train_memory.py          # ~5 min on 2 CPU cores

The app trains a client's adapter on the counselor's machine, beside the model that drafts; on CPU,
SDPA's backward keeps every layer's attention matrices, so long notes cost memory fast. The job here
is the app's own `app.training.train` on the default model (SmolLM2-135M-Instruct), 2 SFT steps of
batch 2 over 4 examples cut at the job's 2,048-token limit (the length a history-rich session reaches),
run three times, each in a fresh process so that its peak RSS (ru_maxrss) is its own: the default
(gradient checkpointing, and glibc told to return large freed blocks: psyassist.memory), with glibc's
default heap instead, and without checkpointing. The losses must be equal: neither changes the arithmetic. Prints one JSON line last and appends a row to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import record  # noqa: E402

CHILD = r'''
import json, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[2]))
from psyassist.app.training import Example, TrainSpec, train
system = "You are a counseling assistant. " * 40
user = "来访者最近工作压力很大，晚上睡不着，担心失业，和家人关系紧张。" * 22
note = json.dumps({"counseling_question": "来访者希望改善睡眠", "reasons": ["工作压力" * 20, "家庭冲突" * 20],
                   "advice": ["认知重构" * 30, "行为激活" * 30]}, ensure_ascii=False)
examples = [Example([{"role": "system", "content": system}, {"role": "user", "content": user + str(i)}], note)
            for i in range(4)]
t0 = time.perf_counter()
out = train(TrainSpec(steps=2, batch_size=2, gradient_checkpointing=sys.argv[1] == "1",
                      release_memory=sys.argv[3] == "1"), examples)
print(json.dumps({"seconds": round(time.perf_counter() - t0, 1), "train_tokens": out.figures["train_tokens"],
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  "losses": out.figures["losses"]}))
'''


def run(checkpointing: bool, threads: int, release: bool = True) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PSYASSIST_NO_PROGRESS": "1"}
    p = subprocess.run([sys.executable, "-c", CHILD, "1" if checkpointing else "0", str(threads),
                        "1" if release else "0"],
                       capture_output=True, text=True, env=env, check=False)
    if p.returncode != 0:
        raise SystemExit(f"the training job failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    threads = int(os.environ.get("BENCH_THREADS", "2"))
    # The default job (checkpointing + large frees returned), then each of the two switched off alone.
    on, heap, off = run(True, threads), run(True, threads, release=False), run(False, threads)
    if not on["losses"] == heap["losses"] == off["losses"]:
        raise SystemExit(f"the losses differ: {on['losses']} / {heap['losses']} / {off['losses']}")
    mem = on["peak_rss_mb"] / off["peak_rss_mb"]
    slow = on["seconds"] / off["seconds"]
    heap_mem, heap_time = on["peak_rss_mb"] / heap["peak_rss_mb"], on["seconds"] / heap["seconds"]
    print(f"default (checkpointing, large frees returned): {on['peak_rss_mb']} MB, {on['seconds']} s; glibc's "
          f"default heap: {heap['peak_rss_mb']} MB, {heap['seconds']} s; no checkpointing: {off['peak_rss_mb']} MB, "
          f"{off['seconds']} s; {on['train_tokens']} tokens trained")
    record("app_train_memory", {"default": on, "glibc_heap": heap, "no_checkpointing": off,
                                "memory_ratio": round(mem, 3), "time_ratio": round(slow, 3),
                                "heap_memory_ratio": round(heap_mem, 3), "heap_time_ratio": round(heap_time, 3),
                                "threads": threads, "load_avg_1m": round(os.getloadavg()[0], 2)},
           f"app adapter job, default model, 2 SFT steps × batch 2 × 2,048 tokens: peak RSS {on['peak_rss_mb']} MB "
           f"(checkpointing + large frees returned, the default) vs {heap['peak_rss_mb']} MB with glibc's default heap "
           f"(×{heap_mem:.2f}, time ×{heap_time:.2f}) vs {off['peak_rss_mb']} MB without checkpointing (×{mem:.2f}, "
           f"time ×{slow:.2f}); equal losses; {threads} torch threads")


if __name__ == "__main__":
    main()
