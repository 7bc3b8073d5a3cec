"""What the crisis detector costs per message, against tokenizing the same message for the model.

    .venv/bin/python benchmarks/crisis_detect.py            # ~30 s; needs the Qwen3 tokenizer (make tokenizer)

Every chat, serve and app message goes through `psyassist.safety.detect` before the model sees it, and
every one of them is tokenized anyway.  So the baseline is the real Qwen3 tokenizer's `encode` (Rust,
the `tokenizers` package) of the same text in the same run: the ratio says how much the safety screen
adds to work the message costs regardless, and it does not depend on how fast the machine is.

Texts: every item of the packaged evaluation set (`resources/crisis_eval.jsonl`, Chinese and English,
short messages) and a 1,000-character Chinese message whose urgent sentence is its last 20 characters
(the detector has to read the whole message).  Each is timed as the best of --repeats rounds of
--n calls (best-of: the least disturbed by other processes), per 1,000 characters.

Target: the detector costs at most 10× the tokenizer per character — at the tokenizer's speed that
is still well under a millisecond for a typical message (measured figures in RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import record  # noqa: E402


def best_ms(fn, texts: list[str], n: int, repeats: int) -> float:
    """Best of `repeats` rounds: the mean ms of one pass over `texts`, `n` passes a round."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            for t in texts:
                fn(t)
        best = min(best, (time.perf_counter() - t0) / n * 1000)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5, help="passes over the texts per round")
    ap.add_argument("--repeats", type=int, default=5, help="rounds; the best counts")
    args = ap.parse_args()

    from tokenizers import Tokenizer

    from psyassist.safety.crisis import detect

    tok_dir = os.environ.get("PSYASSIST_QWEN3_TOKENIZER") or str(Path(__file__).resolve().parents[1] /
                                                                  ".cache" / "tokenizers" / "qwen3")
    tok_file = Path(tok_dir) / "tokenizer.json"
    if not tok_file.is_file():
        raise SystemExit(f"{tok_file} not found: run `make tokenizer` (or set PSYASSIST_QWEN3_TOKENIZER)")
    tok = Tokenizer.from_file(str(tok_file))

    items = [json.loads(line) for line in resources.files("psyassist.resources").joinpath(
        "crisis_eval.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    short = [it["text"] for it in items]
    long_msg = ("我最近工作压力很大，晚上总是睡不着，" * 60)[:960] + "我觉得活着没意思，今晚就想从楼上跳下去。"
    if detect(long_msg).level != "urgent":  # what is timed must still be the detector doing its job
        raise SystemExit("the 1,000-character message is no longer detected as urgent")

    out = {}
    for name, texts in (("eval_set", short), ("long_message", [long_msg])):
        chars = sum(len(t) for t in texts)
        det = best_ms(detect, texts, args.n, args.repeats) / chars * 1000
        enc = best_ms(tok.encode, texts, args.n, args.repeats) / chars * 1000
        out[name] = {"texts": len(texts), "chars": chars, "detect_ms_per_1k_chars": round(det, 3),
                     "tokenize_ms_per_1k_chars": round(enc, 3), "ratio": round(det / enc, 2)}
        print(f"{name:13s} {len(texts):5d} texts {chars:7d} chars: detect {det:.3f} ms / 1k chars, "
              f"tokenize {enc:.3f} ms / 1k chars, ×{det / enc:.1f}")
    worst = max(v["ratio"] for v in out.values())
    summary = (f"crisis detect vs Qwen3 tokenize, per 1k chars: eval set ({out['eval_set']['texts']} messages) "
               f"{out['eval_set']['detect_ms_per_1k_chars']} vs {out['eval_set']['tokenize_ms_per_1k_chars']} ms "
               f"(×{out['eval_set']['ratio']}); one 1,000-char message {out['long_message']['detect_ms_per_1k_chars']}"
               f" vs {out['long_message']['tokenize_ms_per_1k_chars']} ms (×{out['long_message']['ratio']}); "
               f"target ≤ ×10: {'met' if worst <= 10 else 'NOT met'}")
    record("crisis_detect", {**out, "target_ratio": 10, "met": worst <= 10,
                             "load_avg_1m": round(os.getloadavg()[0], 2)}, summary)


if __name__ == "__main__":
    main()
