"""Data-preparation benchmark: full SMILECHAT read → clean → tokenize with the real Qwen3 template.

    PSYASSIST_TEST_DATA=../shared/data .venv/bin/python benchmarks/data_prep.py [--limit N]

Targets (issue: foundation, 2-core machine): ≤ 90 s wall and ≤ 3 GB peak RSS for all
55,165 dialogues.  Also measures what the seed-001 layout costs: one sample per
assistant turn re-encodes the whole prefix each time, so for the SAME supervised tokens
it processes far more tokens; the ratio is what padding-free whole-dialogue training
starts from.  Prints one JSON line last and appends a row to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import peak_rss_mb, record  # noqa: E402

from psyassist.data.clean import CleanOptions, clean_conversation, dedup  # noqa: E402
from psyassist.data.readers import read_conversations  # noqa: E402
from psyassist.render import RenderOptions, load_tokenizer, render_many  # noqa: E402


def per_turn_vs_whole(tok, convs) -> dict:
    whole, rw = render_many(tok, convs, RenderOptions(), show_progress=False)
    per, rp = render_many(tok, convs, RenderOptions(per_turn=True), show_progress=False)
    assert rp.supervised_tokens == rw.supervised_tokens, (rp.supervised_tokens, rw.supervised_tokens)
    return {"dialogues": len(convs), "supervised_tokens": rw.supervised_tokens,
            "tokens_whole_dialogue": rw.tokens, "tokens_per_turn": rp.tokens, "samples_per_turn": len(per),
            "per_turn_over_whole": round(rp.tokens / rw.tokens, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("PSYASSIST_TEST_DATA", "../shared/data"))
    ap.add_argument("--tokenizer", default=os.environ.get("PSYASSIST_QWEN3_TOKENIZER", ".cache/tokenizers/qwen3"))
    ap.add_argument("--limit", type=int, default=None, help="only the first N dialogues (smoke runs)")
    ap.add_argument("--per-turn-dialogues", type=int, default=2000,
                    help="SMILECHAT dialogues for the per-turn comparison (it is quadratic)")
    args = ap.parse_args()
    data = Path(args.data)
    smile = data / "SMILECHAT" / "smilechat_messages.jsonl.gz"

    t0 = time.perf_counter()
    read = read_conversations([smile], show_progress=False)
    convs = read.conversations[: args.limit] if args.limit else read.conversations
    t_read = time.perf_counter()
    cleaned, drops = [], {}
    for c in convs:
        r = clean_conversation(c, CleanOptions())
        if r.conversation is None:
            drops[r.drop_reason] = drops.get(r.drop_reason, 0) + 1
        else:
            cleaned.append(r.conversation)
    kept, dup_counts = dedup(cleaned, "normalized")
    t_clean = time.perf_counter()
    tok = load_tokenizer(args.tokenizer)
    t_tok = time.perf_counter()
    samples, rep = render_many(tok, kept, RenderOptions(enable_thinking=False), show_progress=False)
    t_render = time.perf_counter()
    wall = t_render - t0
    rss = peak_rss_mb()

    # The per-turn comparison runs after the timed pipeline so it does not pollute wall/RSS.
    psydt = read_conversations([data / "PsyDTCorpus" / "psydtcorpus_readme_example_1record.json"],
                               show_progress=False).conversations
    cmp_smile = per_turn_vs_whole(tok, kept[: args.per_turn_dialogues])
    cmp_psydt = per_turn_vs_whole(tok, psydt)

    result = {
        "dialogues_read": len(convs), "dialogues_kept": len(kept), "drops": drops,
        "duplicates": dict(dup_counts), "samples": len(samples), "tokens": rep.tokens,
        "supervised_tokens": rep.supervised_tokens, "supervised_share": round(rep.supervised_share, 4),
        "turns_without_eot": rep.turns_without_eot,
        "seconds": {"read": round(t_read - t0, 1), "clean_dedup": round(t_clean - t_read, 1),
                    "tokenizer_load": round(t_tok - t_clean, 1), "render_tokenize": round(t_render - t_tok, 1),
                    "total": round(wall, 1)},
        "tokens_per_second": round(rep.tokens / (t_render - t_tok)),
        "peak_rss_mb": round(rss),
        "targets": {"wall_le_90s": wall <= 90, "rss_le_3gb": rss <= 3072},
        "per_turn_vs_whole": {"smilechat": cmp_smile, "psydt_record": cmp_psydt},
    }
    summary = (f"SMILECHAT {len(convs):,} dialogues → {rep.tokens:,} tokens: {wall:.1f} s wall, "
               f"{rss:,.0f} MB peak RSS; per-turn/whole tokens at equal supervision: "
               f"SMILECHAT {cmp_smile['per_turn_over_whole']}×, PsyDT record {cmp_psydt['per_turn_over_whole']}×")
    record("data_prep", result, summary)


if __name__ == "__main__":
    main()
