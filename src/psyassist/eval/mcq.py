"""Multiple-choice evaluation: log-likelihood scoring (default) or generation + answer extraction.

    psyassist eval mcq --bench sample --model default --format all
    psyassist eval mcq --bench PsychCounsel-Bench.json --mode generate --format chat --no-thinking
    psyassist eval mcq --compare results/base.json results/tuned.json

logprob mode (style item 7, pitfall 7): the prompt (+ the format's `answer_prefix`) is the
context and each option letter (with the format's `letter_prefix`, e.g. " A") is a
continuation.  Continuation tokens are `tokens(context + continuation)[len(tokens(context)):]`,
exactly as lm-evaluation-harness computes them.  When every letter is ONE token (checked per
question, for this tokenizer), a question costs one forward pass: the log-probabilities at the
answer position, read for the letter tokens only.  Otherwise each option is its own sequence and
its score is the SUM of the continuation tokens' log-probabilities.  Sequences are sorted by
length, left-padded (explicit position ids, so padding changes nothing) and run in batches with
`logits_to_keep`, so only the answer positions' logits are ever materialised.
Multi-answer questions (CPsyExam "BD"): the letters' probabilities are renormalised over the
options and every option at or above the uniform share 1/n is predicted (the top option always
is); the item is right only if that set equals the gold set exactly (MULTI_RULE).

generate mode: the model writes an answer with the recommended sampling for its thinking mode
(never greedy unless forced), and `extract.extract_answer` reads the letter; unparsed replies
are counted as such (never as guesses) and shown with their raw text.

Every result file records the exact prompt of every item, the template, mode, parsing rule,
model, adapter, seed, data hashes and package versions, and the command that reproduces it.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.metadata
import json
import os
import platform
import shlex
import string
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields, replace
from importlib.resources import files
from pathlib import Path

import yaml

from psyassist.data.io import write_json_atomic
from psyassist.errors import PsyassistError
from psyassist.eval.extract import PARSING_RULE, extract_answer
from psyassist.eval.mcq_loaders import LETTERS, MCQItem, load_mcq
from psyassist.eval.stats import mcnemar, wilson

FORMATS = ("professional", "plain", "chat")  # seed 000's three; "all" = these
MODES = ("logprob", "generate")
LOGPROB_RULE = ("logprob: argmax over options of the summed log-probability of the continuation "
                "letter_prefix + LETTER after the context (lm-evaluation-harness `acc`)")
MULTI_RULE = ("multi-answer: option probabilities renormalised over the options; predicted set = options with "
              "p >= 1/n_options (the top one always); correct only on an exact set match")
RESULTS_KIND = "psyassist.eval.mcq"

# lm-evaluation-harness tasks over the local CSVs, with the harness's own prompts — the prompts of
# `--format mmlu` / `--format cmmlu` (description, doc_to_text, target_delimiter " ": continuations
# " A".." D").  tests/test_mcq_agreement.py and benchmarks/mcq_agreement.py run them to show that every
# prompt, continuation and log-likelihood equals lm-eval's.
# MMLU: the harness's mmlu_* tasks read cais/mmlu ({question, choices, answer: int}); the hendrycks CSV has
# no header, so this task writes the same prompt over its columns (tests/test_mcq_agreement.py checks the
# strings against the shipped task).  Fill: name, csv, subject ("professional psychology").
LM_EVAL_MMLU_TASK = """task: {name}
dataset_path: csv
dataset_kwargs:
  data_files:
    test: {csv}
  column_names: [question, A, B, C, D, answer]
  keep_default_na: false
output_type: multiple_choice
test_split: test
description: "The following are multiple choice questions (with answers) about {subject}.\\n\\n"
doc_to_text: "{{{{question.strip()}}}}\\nA. {{{{A}}}}\\nB. {{{{B}}}}\\nC. {{{{C}}}}\\nD. {{{{D}}}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: "{{{{['A', 'B', 'C', 'D'].index(answer)}}}}"
metric_list:
  - metric: acc
"""
# CMMLU: the local CSVs have haonan-li/cmmlu's columns, so this is the harness's shipped task itself, only
# reading local files (keep_default_na: an option "None" stays text, as in the hub's parquet).
# Fill: tasks (the lm_eval/tasks folder), subject (professional_psychology), name, csv, dev.
LM_EVAL_CMMLU_TASK = """include: {tasks}/cmmlu/cmmlu_{subject}.yaml
task: {name}
dataset_path: csv
dataset_name: null
dataset_kwargs:
  data_files:
    test: {csv}
    dev: {dev}
  keep_default_na: false
"""


# --- prompt formats ------------------------------------------------------------------------

# The placeholders each template key may use ({{ and }} are literal braces).
PLACEHOLDERS = {"user": ("question", "options", "letters", "subject"), "description": ("subject",),
                "option_line": ("letter", "text")}
# lm-evaluation-harness task keys: the same meaning under another name ...
LM_EVAL_ALIASES = {"target_delimiter": "letter_prefix", "fewshot_delimiter": "fewshot_separator"}
# ... and the ones with no template key of their own: what does their job here.
LM_EVAL_EQUIVALENTS = {
    "doc_to_text": "'user' ({question} {options} {letters} {subject}; options are written with option_line)",
    "doc_to_choice": "nothing: the choices are the question's own letters A, B, ... after 'letter_prefix'",
    "doc_to_target": "nothing: the gold answer is the benchmark's answer column (eval mcq --map answer=COL)",
    "gen_prefix": "'answer_prefix' (text between the prompt and the letter)",
    "num_fewshot": "the option --fewshot K (with --dev FILE)",
    "fewshot_config": "the options --fewshot K --dev FILE (the first K dev items, lm-eval's first_n sampler)",
    "fewshot_split": "the option --dev FILE",
    "output_type": "the option --mode (logprob = multiple_choice, generate = generate_until)",
    "metric_list": "nothing: accuracy with a Wilson interval is always reported",
    **dict.fromkeys(("task", "dataset_path", "dataset_name", "dataset_kwargs", "test_split"),
                    "the option --bench FILE (and --layout / --map for its columns)"),
}


@dataclass(frozen=True)
class PromptFormat:
    name: str
    user: str
    system: str | None = None
    description: str = ""  # written once, before the few-shot examples (lm-eval's `description`)
    chat: bool = False  # render through the model's chat template (psyassist.render)
    answer_prefix: str = ""  # text between the prompt and the answer letter
    letter_prefix: str = ""  # before each letter continuation: " " for lm-eval's " A" (its target_delimiter)
    option_line: str = "{letter}. {text}"
    fewshot_separator: str = "\n\n"
    subject_names: dict[str, str] | None = None  # subject id → what {subject} shows (CMMLU: Chinese names)
    source: str = ""

    def subject_text(self, item: MCQItem) -> str:
        """{subject}: the template's name for it, else the id with spaces ("professional psychology", as
        lm-eval's MMLU description writes it)."""
        return (self.subject_names or {}).get(item.subject, item.subject.replace("_", " "))

    def user_text(self, item: MCQItem) -> str:
        opts = "\n".join(self.option_line.format(letter=ltr, text=t) for ltr, t in zip(item.letters, item.options, strict=True))
        return self.user.format(question=item.question, options=opts, letters="/".join(item.letters),
                                subject=self.subject_text(item))

    def description_text(self, item: MCQItem) -> str:
        return self.description.format(subject=self.subject_text(item))


def _placeholder_error(key: str, text: str) -> str | None:
    allowed = PLACEHOLDERS[key]
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as e:
        return f"{key}: {e} (write {{{{ and }}}} for literal braces)"
    for f in names:
        if f not in allowed:
            close = difflib.get_close_matches(f.lower(), allowed, n=1, cutoff=0.6)
            hint = f"did you mean {{{close[0]}}}? " if close else ""
            return (f"{key} uses the placeholder {{{f}}}; {hint}{key} may use "
                    + " ".join(f"{{{a}}}" for a in allowed) + " (and {{ }} for literal braces)")
    return None


def load_format(name_or_path: str) -> PromptFormat:
    """A shipped format (shipped_formats()) or a YAML file of the same shape, checked before any model loads:
    keys (lm-eval's target_delimiter / fewshot_delimiter accepted), types and placeholders."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or "/" in name_or_path or os.sep in name_or_path:
        if not p.is_file():
            raise PsyassistError(f"prompt template file {name_or_path} does not exist (looked at "
                                 f"{p.resolve()}); shipped formats: {', '.join(shipped_formats())}")
        path, name = p, p.stem
    else:
        path = Path(str(files("psyassist") / "resources" / "mcq_prompts" / f"{name_or_path}.yaml"))
        name = name_or_path
        if not path.is_file():
            raise PsyassistError(f"unknown prompt format '{name_or_path}': use {', '.join(shipped_formats())}, "
                                 "all, or a .yaml template file (docs/eval.md, Prompt formats)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise PsyassistError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(raw, dict) or not isinstance(raw.get("user", raw.get("doc_to_text")), str):
        raise PsyassistError(f"{path}: expected a mapping with a 'user' template string")
    for alias, key in LM_EVAL_ALIASES.items():
        if alias in raw:
            if key in raw:
                raise PsyassistError(f"{path}: '{alias}' (lm-evaluation-harness) and '{key}' mean the same; "
                                     "keep one")
            raw[key] = raw.pop(alias)
    known = [f.name for f in fields(PromptFormat) if f.name not in ("name", "source")]
    problems = []
    for k in raw:
        if k in known:
            continue
        if k in LM_EVAL_EQUIVALENTS:
            problems.append(f"'{k}' is lm-evaluation-harness's; here use {LM_EVAL_EQUIVALENTS[k]}")
        else:
            close = difflib.get_close_matches(str(k), known, n=1)
            problems.append(f"unknown key '{k}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    if problems:
        raise PsyassistError(f"{path}: " + "; ".join(problems) + f". Known keys: {', '.join(known)}; also "
                             f"accepted: {', '.join(f'{a} (= {b})' for a, b in LM_EVAL_ALIASES.items())}")
    for k, v in raw.items():
        want = {"chat": bool, "subject_names": dict}.get(k, str)
        if not (isinstance(v, want) or (v is None and k in ("system", "subject_names"))):
            what = "a mapping" if want is dict else want.__name__
            raise PsyassistError(f"{path}: '{k}' must be {what}, got {v!r}")
    if raw.get("subject_names") and not all(isinstance(v, str) for v in raw["subject_names"].values()):
        raise PsyassistError(f"{path}: 'subject_names' must map each subject id to a name (a string)")
    for key in PLACEHOLDERS:
        msg = _placeholder_error(key, raw[key]) if key in raw else None
        if msg:
            raise PsyassistError(f"{path}: {msg}")
    fmt = PromptFormat(name=name, source=str(path), **raw)
    if fmt.system and not fmt.chat:
        raise PsyassistError(f"{path}: 'system' needs chat: true (a raw prompt has no system turn; "
                             "'description' is written once at the top of a raw prompt)")
    return fmt


def shipped_formats() -> list[str]:
    d = Path(str(files("psyassist") / "resources" / "mcq_prompts"))
    return sorted(p.stem for p in d.glob("*.yaml"))


def parse_formats(spec: str) -> list[PromptFormat]:
    names = [s.strip() for s in spec.split(",") if s.strip()]
    out: list[str] = []
    for n in names:
        out.extend(FORMATS if n == "all" else [n])
    return [load_format(n) for n in dict.fromkeys(out)]


def build_prompt(fmt: PromptFormat, item: MCQItem, shots: list[MCQItem], renderer=None) -> str:
    """The exact text the model reads; the answer letter comes right after it.

    Raw formats: description + shot_1 + sep + ... + shot_K + sep + question, each shot answered with
    answer_prefix + letter_prefix + LETTER — lm-evaluation-harness's description + fewshot examples
    (target_delimiter + target, fewshot_delimiter) + doc_to_text.  Chat formats: the description ends the
    system message, as lm-eval puts it there when it applies a chat template.
    """
    desc = fmt.description_text(item)
    if fmt.chat:
        system = "\n\n".join(x for x in (fmt.system, desc.strip()) if x)
        msgs = [{"role": "system", "content": system}] if system else []
        for s in shots:
            msgs += [{"role": "user", "content": fmt.user_text(s)},
                     {"role": "assistant", "content": fmt.answer_prefix + fmt.letter_prefix.lstrip() + s.answer}]
        msgs.append({"role": "user", "content": fmt.user_text(item)})
        return renderer.inference_prompt(msgs) + fmt.answer_prefix
    parts = [fmt.user_text(s) + fmt.answer_prefix + fmt.letter_prefix + s.answer for s in shots]
    return desc + fmt.fewshot_separator.join([*parts, fmt.user_text(item) + fmt.answer_prefix])


def rotate(item: MCQItem, r: int) -> MCQItem:
    """Circular shift by r: the option at new position j is the old option (j + r) mod n."""
    n = len(item.options)
    opts = [item.options[(j + r) % n] for j in range(n)]
    gold = "".join(sorted(LETTERS[(LETTERS.index(c) - r) % n] for c in item.answer))
    return replace(item, options=opts, answer=gold)


# --- logprob scoring -----------------------------------------------------------------------


@dataclass
class _Request:
    q: int  # question index
    opt: int | None  # None: one sequence scores all options (single-token letters)
    ids: list[int]
    targets: list[int]  # token ids whose log-probs are read: letters (opt None) or the continuation


def continuation_ids(tok, context: str, conts: list[str]) -> tuple[list[int], list[list[int]]]:
    """lm-evaluation-harness's split: cont = tokens(context + c)[len(tokens(context)):]."""
    ctx = tok(context, add_special_tokens=False)["input_ids"]
    wholes = tok([context + c for c in conts], add_special_tokens=False)["input_ids"]
    out = [w[len(ctx):] for w in wholes]
    for c, ids in zip(conts, out, strict=True):
        if not ids:
            raise PsyassistError(f"the continuation {c!r} adds no token after the prompt; check letter_prefix")
    return ctx, out


def _shared_prefix(seqs: list[list[int]], limit: int) -> int:
    """Length of the token prefix common to all sequences, at most `limit`."""
    first, n = seqs[0], limit
    for s in seqs[1:]:
        n = next((i for i in range(n) if s[i] != first[i]), n)
    return max(n, 0)


def score_logprob(model, tok, contexts: list[str], conts: list[list[str]], batch_size: int = 8,
                  share_prefix: bool = True) -> tuple[list[list[float]], dict]:
    """Per question, per option: log P(continuation | context) summed over its tokens.

    `share_prefix`: the prompt text every question starts with (seed 000's professional
    instruction is 64 of SmolLM2's ~195 tokens per question) is run once and its KV cache is
    reused by every batch.
    """
    import copy

    import torch

    reqs: list[_Request] = []
    multi_token = 0
    for qi, (ctx_text, cs) in enumerate(zip(contexts, conts, strict=True)):
        ctx, cids = continuation_ids(tok, ctx_text, cs)
        firsts = [c[0] for c in cids]
        if all(len(c) == 1 for c in cids) and len(set(firsts)) == len(firsts):
            reqs.append(_Request(qi, None, ctx, firsts))  # one forward scores every option
        else:
            multi_token += 1
            for oi, c in enumerate(cids):
                reqs.append(_Request(qi, oi, ctx + c[:-1], c))
    scores = [[0.0] * len(cs) for cs in conts]
    order = sorted(range(len(reqs)), key=lambda i: -len(reqs[i].ids))  # long first: an OOM shows at once
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    dev = model.device
    real = padded = 0
    t0 = time.perf_counter()
    from psyassist.ui import track

    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    # the positions whose logits are read (the last len(targets), or the last one) stay outside the prefix
    limit = min(len(r.ids) - (1 if r.opt is None else len(r.targets)) for r in reqs)
    P = _shared_prefix([r.ids for r in reqs], limit) if share_prefix else 0
    with torch.inference_mode():
        cache = model(input_ids=torch.tensor([reqs[0].ids[:P]], device=dev)).cache if P else None
        for b in track(batches, "scoring (logprob)"):
            width = max(len(reqs[i].ids) for i in b) - P
            keep = max(1 if reqs[i].opt is None else len(reqs[i].targets) for i in b)
            ids = torch.full((len(b), width), pad, dtype=torch.long)
            mask = torch.zeros((len(b), width), dtype=torch.long)
            for row, i in enumerate(b):
                n = len(reqs[i].ids) - P
                ids[row, width - n:] = torch.tensor(reqs[i].ids[P:])  # left padding: answer positions align
                mask[row, width - n:] = 1
                real += n
            padded += len(b) * width
            pos = P + (mask.cumsum(-1) - 1).clamp(min=0)  # position ids skip the padding
            kw = {}
            if P:  # the prefix's cache, one copy per row; the padding sits between prefix and question
                kw["cache"] = copy.deepcopy(cache)  # transformers ≥ 5.23 names it `cache` (was past_key_values)
                kw["cache"].batch_repeat_interleave(len(b))
                mask = torch.cat([torch.ones((len(b), P), dtype=torch.long), mask], dim=1)
            logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                           logits_to_keep=keep, **kw).logits.float()
            logp = torch.log_softmax(logits, dim=-1).cpu()
            for row, i in enumerate(b):
                r = reqs[i]
                if r.opt is None:
                    scores[r.q] = logp[row, -1, r.targets].tolist()
                else:
                    k = len(r.targets)
                    pos_lp = logp[row, keep - k:, :].gather(-1, torch.tensor(r.targets)[:, None])
                    scores[r.q][r.opt] = float(pos_lp.sum())
    secs = time.perf_counter() - t0
    perf = {"seconds": round(secs, 3), "forward_passes": len(batches), "sequences": len(reqs),
            "shared_prefix_tokens": P, "tokens": real + P, "padding_ratio": round(1 - real / padded, 4) if padded else 0.0,
            "tokens_per_s": round(real / secs, 1) if secs else None,
            "questions_multi_token_letters": multi_token}
    return scores, perf


def decide(scores: list[float], item: MCQItem) -> str:
    """Predicted letter(s) from option scores (MULTI_RULE for multi-answer items)."""
    import math

    best = max(range(len(scores)), key=scores.__getitem__)
    if not item.multi:
        return item.letters[best]
    m = max(scores)
    probs = [math.exp(s - m) for s in scores]
    total = sum(probs)
    n = len(scores)
    # the top option is always in: its share is at least the mean share 1/n
    return "".join(ltr for ltr, p in zip(item.letters, probs, strict=True) if p / total >= 1 / n)


# --- generate ------------------------------------------------------------------------------


def generate_all(loaded, prompts: list[str], sampling, batch_size: int = 8) -> tuple[list[str], dict]:
    """Batched sampling (left padding), length-sorted; replies decoded without special tokens."""
    import torch

    from psyassist.ui import track

    tok, model = loaded.tok, loaded.model
    enc = tok(prompts, add_special_tokens=False)["input_ids"]
    order = sorted(range(len(prompts)), key=lambda i: -len(enc[i]))
    outs: list[str] = [""] * len(prompts)
    pad = tok.pad_token_id if tok.pad_token_id is not None else loaded.stop_ids[0]
    new_tokens = 0
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    t0 = time.perf_counter()
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    with torch.inference_mode():
        for b in track(batches, "generating"):
            width = max(len(enc[i]) for i in b)
            ids = torch.full((len(b), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, i in enumerate(b):
                ids[row, width - len(enc[i]):] = torch.tensor(enc[i])
                mask[row, width - len(enc[i]):] = 1
            out = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                                 eos_token_id=loaded.stop_ids, pad_token_id=pad, **sampling.generate_kwargs())
            for row, i in enumerate(b):
                gen = out[row, width:].tolist()
                stop = next((j for j, t in enumerate(gen) if t in loaded.stop_ids), len(gen))
                new_tokens += stop
                outs[i] = tok.decode(gen[:stop], skip_special_tokens=True).strip()
    secs = time.perf_counter() - t0
    return outs, {"seconds": round(secs, 3), "generate_calls": len(batches), "new_tokens": new_tokens,
                  "new_tokens_per_s": round(new_tokens / secs, 1) if secs else None}


# --- the run -------------------------------------------------------------------------------


@dataclass
class MCQConfig:
    bench: list[str]
    model: str = "default"
    adapter: str | None = None
    formats: str = "professional"  # comma list of shipped names, YAML files, or "all"
    mode: str = "logprob"
    fewshot: int = 0
    dev: list[str] = field(default_factory=list)  # few-shot source (the first K items)
    thinking: bool = False  # generate mode only
    shuffle_options: bool = False
    batch_size: int = 8
    max_new_tokens: int = 512
    seed: int = 0
    greedy: bool = False
    limit: int | None = None
    layout: str = "auto"
    mapping: dict | None = None
    skip_invalid: bool = False
    dtype: str = "auto"
    device: str | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise PsyassistError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.thinking and self.mode == "logprob":
            raise PsyassistError("--thinking needs --mode generate: logprob mode reads the answer letter right "
                                 "after the prompt, with no room to think")
        if self.fewshot < 0 or (self.fewshot and not self.dev):
            raise PsyassistError("--fewshot K needs K >= 0 and --dev FILE (the split the examples come from)")
        if self.batch_size < 1 or self.max_new_tokens < 1 or (self.limit is not None and self.limit < 1):
            raise PsyassistError("--batch-size, --max-new-tokens and --limit must be >= 1")
        parse_formats(self.formats)  # a bad template (key, placeholder, missing file) fails before loading

    def command(self) -> str:
        """The CLI line that reproduces this run."""
        a = ["psyassist", "eval", "mcq", *[x for b in self.bench for x in ("--bench", b)], "--model", self.model]
        if self.adapter:
            a += ["--adapter", self.adapter]
        a += ["--format", self.formats, "--mode", self.mode, "--seed", str(self.seed),
              "--batch-size", str(self.batch_size)]
        if self.fewshot:
            a += ["--fewshot", str(self.fewshot), *[x for d in self.dev for x in ("--dev", d)]]
        if self.mode == "generate":
            a += ["--thinking" if self.thinking else "--no-thinking", "--max-new-tokens", str(self.max_new_tokens)]
            a += ["--greedy"] if self.greedy else []
        a += ["--shuffle-options"] if self.shuffle_options else []
        a += ["--limit", str(self.limit)] if self.limit else []
        a += ["--layout", self.layout] if self.layout != "auto" else []
        a += [f"--map={k}={v}" for k, v in (self.mapping or {}).items()]
        a += ["--skip-invalid"] if self.skip_invalid else []
        a += ["--dtype", self.dtype] if self.dtype != "auto" else []
        return shlex.join(a)


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("psyassist", "torch", "transformers", "tokenizers", "peft"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _block(items: list[dict], chance: list[float]) -> dict:
    n = len(items)
    k = sum(1 for it in items if it["correct"])
    u = sum(1 for it in items if it["pred"] is None)
    lo, hi = wilson(k, n)
    parsed = n - u
    return {"n": n, "correct": k, "accuracy": k / n if n else 0.0, "wilson95": [lo, hi], "unparsed": u,
            "unparsed_rate": u / n if n else 0.0,
            "accuracy_on_parsed": k / parsed if parsed else None,
            "chance": sum(chance) / n if n else 0.0}


def summarize(fmt: PromptFormat, items: list[MCQItem], rows: list[dict], shuffled: bool) -> dict:
    """Accuracy, interval, unparsed, chance, per subject, errors — for one format."""
    by_id = {it.id: it for it in items}
    res = {"format": fmt.name, "template": asdict(fmt), **_block(rows, [by_id[r["id"]].chance for r in rows])}
    subj: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        subj[r["subject"]].append(r)
    res["per_subject"] = {s: _block(rs, [by_id[r["id"]].chance for r in rs]) for s, rs in sorted(subj.items())}
    if any(it.multi for it in items):
        res["per_type"] = {t: _block(rs, [by_id[r["id"]].chance for r in rs]) for t in ("single", "multi")
                           if (rs := [r for r in rows if by_id[r["id"]].multi == (t == "multi")])}
    if shuffled:
        k = sum(1 for r in rows if r["circular_correct"])
        res["circular"] = {"correct": k, "accuracy": k / len(rows), "wilson95": list(wilson(k, len(rows))),
                           "chance": sum(by_id[r["id"]].chance ** len(by_id[r["id"]].options) for r in rows)
                           / len(rows),
                           "rule": "right under every circular rotation of the options (n rotations for n options)"}
    res["errors"] = [{"id": r["id"], "question": by_id[r["id"]].question, "options": by_id[r["id"]].options,
                      "gold": r["gold"], "predicted": r["pred"], "raw_output": r.get("output", r.get("scores"))}
                     for r in rows if not r["correct"]]
    return res


def run_mcq(cfg: MCQConfig, out: str | Path | None = None, loaded=None) -> dict:
    """Load data and model, score every format, write the results JSON (when `out`) and return it.

    `loaded`: a model already loaded by `infer.engine.load` (psyassist compare loads each model
    once for all its stages); cfg.model and cfg.adapter then only label the results.
    """
    from psyassist.infer.engine import Sampling, load

    fmts = parse_formats(cfg.formats)
    data = load_mcq(cfg.bench, cfg.layout, cfg.mapping, cfg.skip_invalid)
    items = data.items[: cfg.limit] if cfg.limit else data.items
    shots = load_mcq(cfg.dev, cfg.layout, cfg.mapping).items[: cfg.fewshot] if cfg.fewshot else []
    if cfg.fewshot and len(shots) < cfg.fewshot:
        raise PsyassistError(f"--fewshot {cfg.fewshot}: the dev split has only {len(shots)} items")
    loaded = load(cfg.model, adapter=cfg.adapter, enable_thinking=cfg.thinking, dtype=cfg.dtype,
                  device=cfg.device) if loaded is None else loaded.with_thinking(cfg.thinking)

    # Every (format, item, rotation) is one variant; all are scored in one length-sorted pass.
    variants: list[tuple[int, int, MCQItem, str]] = []  # (format idx, item idx, shown item, prompt)
    for fi, fmt in enumerate(fmts):
        for ii, item in enumerate(items):
            for r in range(len(item.options) if cfg.shuffle_options else 1):
                shown = rotate(item, r)
                own = [s for s in shots if s.id != item.id]
                variants.append((fi, ii, shown, build_prompt(fmt, shown, own, loaded.renderer)))
    sampling = None
    if cfg.mode == "logprob":
        conts = [[fmts[fi].letter_prefix + ltr for ltr in shown.letters] for fi, _, shown, _ in variants]
        scores, perf = score_logprob(loaded.model, loaded.tok, [v[3] for v in variants], conts, cfg.batch_size)
        preds = [decide(s, v[2]) for s, v in zip(scores, variants, strict=True)]
        outputs = [None] * len(variants)
    else:
        sampling = Sampling.recommended(cfg.thinking, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
        if cfg.greedy:
            sampling = replace(sampling, temperature=0.0, allow_greedy=True)
        outputs, perf = generate_all(loaded, [v[3] for v in variants], sampling, cfg.batch_size)
        preds = [extract_answer(o, v[2].letters, multi=v[2].multi, options=v[2].options)
                 for o, v in zip(outputs, variants, strict=True)]
        scores = [None] * len(variants)

    per: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for (fi, ii, shown, prompt), pred, sc, o in zip(variants, preds, scores, outputs, strict=True):
        row = {"gold": shown.answer, "pred": pred, "correct": pred == shown.answer, "prompt": prompt}
        if sc is not None:
            row["scores"] = dict(zip(shown.letters, sc, strict=True))  # full precision, for agreement audits
        if o is not None:
            row["output"] = o
        per[(fi, ii)].append(row)
    result_formats = {}
    for fi, fmt in enumerate(fmts):
        rows = []
        for ii, item in enumerate(items):
            rots = per[(fi, ii)]
            row = {"id": item.id, "subject": item.subject, **rots[0]}
            if cfg.shuffle_options:
                row["circular_correct"] = all(r["correct"] for r in rots)
                row["rotations"] = [{k: r[k] for k in ("gold", "pred", "correct")} for r in rots]
            rows.append(row)
        result_formats[fmt.name] = {**summarize(fmt, items, rows, cfg.shuffle_options), "items": rows}

    model_path = getattr(loaded.model, "name_or_path", None) or cfg.model
    results = {
        "kind": RESULTS_KIND, "version": 1, "command": cfg.command(), "config": asdict(cfg),
        "bench": {"sources": cfg.bench, "files": {f: _sha256(f) for f in data.files}, "layouts": data.layouts,
                  "n_items": len(items), "n_loaded": len(data.items), "skipped_invalid": dict(data.skipped),
                  "warnings": data.warnings, "fewshot_ids": [s.id for s in shots]},
        "model": {"name": cfg.model, "path": str(model_path), "adapter": cfg.adapter,
                  "dtype": str(next(loaded.model.parameters()).dtype).removeprefix("torch."),
                  "device": str(loaded.model.device)},
        "mode": cfg.mode, "seed": cfg.seed,
        "scoring": {"rule": LOGPROB_RULE if cfg.mode == "logprob" else PARSING_RULE, "multi_answer_rule":
                    MULTI_RULE if cfg.mode == "logprob" else "exact set match of the extracted letters",
                    "thinking": cfg.thinking if cfg.mode == "generate" else None,
                    "sampling": asdict(sampling) if sampling else None},
        "versions": versions(), "perf": {**perf, "variants": len(variants)},
        "summary": [{k: v for k, v in f.items() if k not in ("items", "errors", "per_subject", "template")}
                    for f in result_formats.values()],
        "formats": result_formats,
    }
    if out is not None:
        write_json_atomic(out, results)
    return results


# --- compare -------------------------------------------------------------------------------


def read_results(path: str | Path) -> dict:
    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise PsyassistError(f"{p}: cannot read a results JSON ({e})") from e
    if not isinstance(d, dict) or d.get("kind") != RESULTS_KIND:
        raise PsyassistError(f"{p}: not a `psyassist eval mcq` results file (kind {RESULTS_KIND!r} missing)")
    return d


def compare_results(a: dict, b: dict) -> dict:
    """Paired McNemar per format on the items both runs scored (matched by id)."""
    out = {"formats": {}, "warnings": []}
    if a["bench"]["files"] != b["bench"]["files"]:
        out["warnings"].append("the two runs read different benchmark files (names or sha256 differ)")
    common = [f for f in a["formats"] if f in b["formats"]]
    if not common:
        raise PsyassistError(f"no format in common: {sorted(a['formats'])} vs {sorted(b['formats'])}")
    for f in common:
        ra = {r["id"]: r["correct"] for r in a["formats"][f]["items"]}
        rb = {r["id"]: r["correct"] for r in b["formats"][f]["items"]}
        ids = [i for i in ra if i in rb]
        if not ids:
            raise PsyassistError(f"format {f}: no question ids in common")
        n10 = sum(1 for i in ids if ra[i] and not rb[i])
        n01 = sum(1 for i in ids if rb[i] and not ra[i])
        acc_a = sum(ra[i] for i in ids) / len(ids)
        acc_b = sum(rb[i] for i in ids) / len(ids)
        out["formats"][f] = {"n_paired": len(ids), "only_in_a": len(ra) - len(ids), "only_in_b": len(rb) - len(ids),
                             "accuracy_a": acc_a, "accuracy_b": acc_b, "delta": acc_b - acc_a,
                             "a_only_right": n10, "b_only_right": n01, "mcnemar": mcnemar(n10, n01)}
    return out


# --- terminal output -----------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def print_summary(results: dict, out: str | Path | None, as_json: bool = False) -> None:
    from rich.table import Table

    from psyassist.ui import console

    if as_json:
        print(json.dumps({k: results[k] for k in ("command", "mode", "model", "summary", "perf")},
                         ensure_ascii=False))
        return
    t = Table(title=f"{results['mode']} · {results['model']['name']}"
              + (f" + {results['model']['adapter']}" if results["model"]["adapter"] else "")
              + f" · {results['bench']['n_items']} questions")
    for col in ("format", "accuracy", "95% CI", "unparsed", "chance", "circular"):
        t.add_column(col, justify="left" if col == "format" else "right")
    for s in results["summary"]:
        lo, hi = s["wilson95"]
        circ = s.get("circular")
        t.add_row(s["format"], _pct(s["accuracy"]), f"{100 * lo:.1f}–{100 * hi:.1f}",
                  f"{s['unparsed']} ({_pct(s['unparsed_rate'])})", _pct(s["chance"]),
                  _pct(circ["accuracy"]) if circ else "—")
    console.print(t)
    console.print(f"rule: {results['scoring']['rule']}")
    if out is not None:
        console.print(f"results (every prompt, score and error): {out}")


def print_compare(cmp: dict, names: tuple[str, str], as_json: bool = False) -> None:
    from rich.table import Table

    from psyassist.ui import console, warn

    if as_json:
        print(json.dumps(cmp, ensure_ascii=False))
        return
    for w in cmp["warnings"]:
        warn(w)
    t = Table(title=f"A = {names[0]}   B = {names[1]}")
    for col in ("format", "n", "A", "B", "B − A", "only A right", "only B right", "p (McNemar)", "test"):
        t.add_column(col, justify="left" if col in ("format", "test") else "right")
    for f, r in cmp["formats"].items():
        m = r["mcnemar"]
        t.add_row(f, str(r["n_paired"]), _pct(r["accuracy_a"]), _pct(r["accuracy_b"]),
                  f"{100 * r['delta']:+.2f} pt", str(r["a_only_right"]), str(r["b_only_right"]),
                  f"{m['p_value']:.4g}", m["method"])
    console.print(t)
