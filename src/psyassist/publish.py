"""Merge an adapter into its base, and publish an adapter or a model to the Hugging Face hub with a model card.

    psyassist merge --model Qwen/Qwen3-1.7B --adapter runs/psydt/adapter --out merged/psydt
    psyassist push runs/psydt/adapter --repo-id me/qwen3-1.7b-psydt-lora --eval results/mcq.json --dry-run
    HF_TOKEN=hf_... psyassist push runs/psydt/adapter --repo-id me/qwen3-1.7b-psydt-lora --eval results/mcq.json

- `merge()` wraps models.merge_lora (UNQUANTIZED base, merged logits verified against
  base+adapter, atomic save with tokenizer and psyassist_merge.json) with the refusals a person
  needs before minutes of loading: missing adapter files, a quantized base, an existing output.
- `push()` uploads SOURCE (an adapter, a `psyassist merge` output or any model directory) in one
  commit through huggingface_hub's HfApi (create_repo + create_commit), plus a generated
  README.md model card: base model, training data (from the run's manifest.json next to the
  adapter), recipe knobs, eval summary (`--eval` results of `eval mcq` / `eval gen`), the merge
  check, intended use, limits and crisis resources.  The card is built in memory; nothing is
  ever written into SOURCE.  Optimizer/scheduler/RNG states, checkpoints, pickled training
  arguments and hidden or secret-looking files are never uploaded (and are listed), and a file
  that contains the HF_TOKEN value stops the push.
- Uploads use the hub's HTTP + Git-LFS protocol: huggingface_hub would switch to Xet whenever
  hf_xet is installed; the hub accepts LFS uploads into Xet-backed repos and converts them
  (https://huggingface.co/docs/hub/xet/legacy-git-lfs), and plain LFS works against any
  hub-compatible endpoint (HF_ENDPOINT mirrors, the test stand-in).  Cost: no chunk
  deduplication when re-uploading a changed multi-GB model.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from psyassist.errors import PsyassistError
from psyassist.ui import console, err_console, warn

MERGE_MANIFEST = "psyassist_merge.json"  # written by models.merge_lora
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# Base models the shipped recipes use: hub id prefix -> license id on the hub.
KNOWN_LICENSES = {"HuggingFaceTB/SmolLM2-": "apache-2.0", "Qwen/Qwen3-": "apache-2.0",
                  "meta-llama/Llama-3.2-": "llama3.2", "mistralai/Mixtral-8x7B": "apache-2.0"}
DEFAULT_BASE_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what models.default_model_dir() converts
SCAN_LIMIT = 64 * 2**20  # files up to 64 MiB (configs, tokenizers) are searched for the token value
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_SNAPSHOT = re.compile(r"models--([^/\\]+?)--([^/\\]+)[/\\]snapshots[/\\]")  # a hub cache path

# (reason, test on the path relative to SOURCE): the first rule that matches skips the file.
SKIP_RULES = [
    ("hidden file or folder (.env, .git, temp files; may hold secrets)",
     lambda parts: any(p.startswith(".") for p in parts)),
    ("training checkpoint (resume state, not a model)",
     lambda parts: any(p == "checkpoints" or p.startswith("checkpoint-") for p in parts[:-1])),
    ("PyTorch pickle (optimizer / scheduler / RNG state; pickles run code when loaded)",
     lambda parts: parts[-1].endswith((".pt", ".pth")) or parts[-1] in ("optimizer.bin", "scheduler.bin")),
    ("pickled training arguments (may hold a hub token)", lambda parts: parts[-1] == "training_args.bin"),
    ("secret-looking file name",
     lambda parts: any(fnmatch.fnmatch(parts[-1].lower(), p) for p in
                       ("*.env", "*.pem", "*.key", "*secret*", "*credential*", "id_rsa*", "*.netrc"))),
    ("replaced by the generated model card", lambda parts: parts == ("README.md",)),
]


# --- merge -----------------------------------------------------------------------------------


def merge(base: str, adapter: str | Path, out: str | Path, *, dtype: str = "fp32", device=None,
          force: bool = False) -> dict:
    """Check the inputs, run models.merge_lora, print the verification; returns psyassist_merge.json."""
    from psyassist.models import merge_lora, resolve_model

    adapter, out = Path(adapter), Path(out)
    if not (adapter / "adapter_config.json").is_file():
        hint = " (a training run: use RUN/adapter)" if (adapter / "adapter" / "adapter_config.json").is_file() else ""
        raise PsyassistError(f"{adapter} is not a LoRA adapter directory: adapter_config.json is missing{hint}.")
    if not any((adapter / w).is_file() for w in ADAPTER_WEIGHTS):
        raise PsyassistError(f"{adapter} has adapter_config.json but no weights ({' or '.join(ADAPTER_WEIGHTS)}): "
                             "an incomplete copy? A training run writes both to OUTPUT_DIR/adapter.")
    base_dir, gguf = resolve_model(base)
    if out.resolve() in (adapter.resolve(), base_dir.resolve()):
        raise PsyassistError(f"--out {out} is the adapter or the base model directory: choose a new directory.")
    if out.exists() and not force:
        raise PsyassistError(f"{out} already exists: choose another --out, or pass --force to replace it.")
    qc = None if gguf else json.loads((base_dir / "config.json").read_text(encoding="utf-8")).get(
        "quantization_config")
    if qc:
        method = qc.get("quant_method", "?") if isinstance(qc, dict) else qc
        raise PsyassistError(f"{base} is a quantized checkpoint ({method}): merge onto the unquantized base weights "
                             "(the original model), or the merged model silently loses the adapter's precision.")
    recorded = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8")).get(
        "base_model_name_or_path")
    recorded_id = base_hub_id(recorded)
    same = recorded_id is not None and recorded_id == base_hub_id(str(base_dir))
    if recorded and not same and Path(recorded).resolve() != base_dir.resolve():
        warn(f"{adapter} was trained on {recorded}, but --model is {base}: if they are different models the "
             "adapter's shapes will not fit (an error below) or, worse, fit and mean nothing.")
    merge_lora(base, adapter, out, dtype=dtype, device=device)
    manifest = json.loads((out / MERGE_MANIFEST).read_text(encoding="utf-8"))
    console.print(f"[green]verified[/]: merged logits equal base+adapter logits within tolerance — max |Δlogit| "
                  f"{manifest['max_abs_logit_diff']:.3g} ≤ {manifest['tolerance']:.3g} ({manifest['dtype']}, "
                  f"sample dialogues); the adapter itself moves logits by up to "
                  f"{manifest['adapter_effect_max_abs_logit']:.3g}", soft_wrap=True)
    console.print(f"merged model: {out}\n  chat with it: psyassist chat --merged {out}", soft_wrap=True)
    return manifest


# --- what SOURCE is, what goes up ---------------------------------------------------------------


def source_kind(src: Path) -> str:
    """'adapter', 'merged' or 'model' (an error for anything else, e.g. a whole training run)."""
    if not src.is_dir():
        raise PsyassistError(f"{src} is not a directory: push an adapter (RUN/adapter), a `psyassist merge` "
                             "output or a model directory.")
    if (src / "adapter_config.json").is_file():
        return "adapter"
    if (src / MERGE_MANIFEST).is_file():
        return "merged"
    if (src / "config.json").is_file():
        return "model"
    if (src / "adapter" / "adapter_config.json").is_file():
        raise PsyassistError(f"{src} is a training run directory: push its adapter, `psyassist push {src / 'adapter'} "
                             "--repo-id …` (the card reads the run's manifest from here).")
    raise PsyassistError(f"{src} holds neither adapter_config.json (an adapter), {MERGE_MANIFEST} (a merged model) "
                         "nor config.json (a model).")


def plan_files(src: Path) -> tuple[list[tuple[str, Path]], list[tuple[str, str]]]:
    """(files to upload as (path in repo, local path), skipped as (path, reason)), sorted."""
    upload, skipped = [], []
    for p in sorted(src.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(src)
        reason = next((why for why, hit in SKIP_RULES if hit(rel.parts)), None)
        if reason:
            skipped.append((rel.as_posix(), reason))
        else:
            upload.append((rel.as_posix(), p))
    return upload, skipped


def check_no_token(files: list[tuple[str, Path]], token: str | None) -> None:
    """Stop if any uploadable file up to SCAN_LIMIT bytes contains the token's value."""
    if not token or len(token) < 8:
        return
    needle = token.encode()
    for rel, p in files:
        if p.stat().st_size <= SCAN_LIMIT and needle in p.read_bytes():
            raise PsyassistError(f"{p} contains the value of HF_TOKEN: nothing was uploaded. Remove the token "
                                 f"from {rel} (and revoke it if the file was ever shared).")


# --- facts for the card ------------------------------------------------------------------------


def base_hub_id(name: str | None) -> str | None:
    """The hub id behind a base-model name or local path, when it can be told; else None."""
    if not name:
        return None
    from psyassist.models import DEFAULT_ALIASES, SMOLLM2_DIRNAME

    if name in DEFAULT_ALIASES or Path(name).name == SMOLLM2_DIRNAME:
        return DEFAULT_BASE_ID
    m = _SNAPSHOT.search(name)
    if m:
        return f"{m.group(1)}/{m.group(2)}"
    if _HUB_ID.fullmatch(name) and not Path(name).exists():
        return name
    return None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise PsyassistError(f"{path}: cannot read it as JSON ({e}).") from e


@dataclass
class Facts:
    kind: str  # adapter | merged | model
    base: str | None = None  # as recorded (name or path)
    base_id: str | None = None  # hub id when known
    lora: dict | None = None  # adapter_config.json
    merge: dict | None = None  # psyassist_merge.json
    run: dict | None = None  # the training run's manifest.json
    recipe: dict | None = None  # manifest["recipe"] or recipe.resolved.yaml
    language: list[str] = field(default_factory=list)


def gather_facts(src: Path, kind: str) -> Facts:
    """Everything the card says, read from SOURCE and the training run that produced it."""
    facts = Facts(kind)
    adapter = src if kind == "adapter" else None
    if kind == "merged":
        facts.merge = _read_json(src / MERGE_MANIFEST)
        facts.base = facts.merge.get("base")
        adapter = Path(facts.merge.get("adapter", ""))
    if adapter is not None and (adapter / "adapter_config.json").is_file():
        facts.lora = _read_json(adapter / "adapter_config.json")
        facts.base = facts.base or facts.lora.get("base_model_name_or_path")
        run = adapter.parent
        if (run / "manifest.json").is_file():
            facts.run = _read_json(run / "manifest.json")
            facts.recipe = facts.run.get("recipe")
        elif (run / "recipe.resolved.yaml").is_file():  # an interrupted run: the recipe is written first
            facts.recipe = yaml.safe_load((run / "recipe.resolved.yaml").read_text(encoding="utf-8"))
    if kind == "model":
        facts.base = _read_json(src / "config.json").get("_name_or_path") or None
    recipe_model = (facts.recipe or {}).get("model", {}).get("name")
    facts.base_id = base_hub_id(recipe_model) or base_hub_id(facts.base)
    facts.base = recipe_model or facts.base
    return facts


def guess_language(facts: Facts, evals: list[dict]) -> list[str]:
    """zh / en from the training data (CJK share of its first 200 KB) or a gen eval; [] when unknown."""
    train = (facts.recipe or {}).get("data", {}).get("train")
    if train and Path(train).is_file():
        with open(train, "rb") as f:
            text = f.read(200_000).decode("utf-8", errors="ignore")
        letters = [c for c in text if c.isalpha()]
        cjk = sum(1 for c in letters if "\u4e00" <= c <= "\u9fff")
        if letters:
            return ["zh"] if cjk / len(letters) > 0.3 else ["en"]
    langs = {e["lang"] for e in evals if e.get("lang") in ("zh", "en")}
    return sorted(langs)


def read_eval(path: str | Path) -> dict:
    """One `psyassist eval mcq` results JSON or `eval gen` results.json, reduced to what the card shows."""
    from psyassist.eval.mcq import RESULTS_KIND

    p = Path(path)
    d = _read_json(p)
    if not isinstance(d, dict):
        raise PsyassistError(f"{p}: expected a results object of `psyassist eval mcq` or `eval gen`.")
    if d.get("kind") == RESULTS_KIND:
        model = d.get("model", {})
        return {"type": "mcq", "file": p.name, "bench": ", ".join(Path(s).name for s in d["bench"]["sources"]),
                "n_items": d["bench"].get("n_items"), "mode": d.get("mode"), "command": d.get("command"),
                "model": model.get("name"), "adapter": model.get("adapter"),
                "rows": [{k: s.get(k) for k in ("format", "n", "accuracy", "wilson95", "unparsed_rate", "chance")}
                         for s in d["summary"]]}
    if str(d.get("command", "")).startswith("psyassist eval gen") and isinstance(d.get("summary"), dict):
        s, cfg = d["summary"], d.get("config", {})
        return {"type": "gen", "file": p.name, "command": d["command"], "model": cfg.get("model"),
                "replies": Path(cfg["replies"]).name if cfg.get("replies") else None,
                "adapter": cfg.get("adapter"), "lang": s.get("lang"), "n": s.get("n"),
                "bleu4": s.get("bleu4", {}).get("score"), "rouge": s.get("rouge", {}),
                "cosine": s.get("embedding_cosine", {}).get("mean"), "bertscore_f1": s.get("bertscore", {}).get("f1")}
    raise PsyassistError(f"{p}: not a results file of `psyassist eval mcq` (kind {RESULTS_KIND!r}) or "
                         "`psyassist eval gen` (OUT/results.json).")


# --- the card ------------------------------------------------------------------------------------


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _sha(s: str) -> str:
    return s[:12] + "…" if s else "?"


def render_card(repo_id: str, facts: Facts, evals: list[dict], files: list[tuple[str, Path]]) -> str:
    """README.md: YAML front matter the hub indexes, then the sections a reader needs."""
    meta: dict = {}
    if facts.base_id:
        meta["base_model"] = facts.base_id
        license_ = next((v for k, v in KNOWN_LICENSES.items() if facts.base_id.startswith(k)), None)
        if license_:
            meta["license"] = license_
    meta["library_name"] = "peft" if facts.kind == "adapter" else "transformers"
    if facts.language:
        meta["language"] = facts.language
    meta["tags"] = ["psyassist", "counseling", "mental-health"] + (["lora"] if facts.lora else [])
    meta["pipeline_tag"] = "text-generation"
    base_name = facts.base_id or (Path(facts.base).name if facts.base else "an unrecorded base model")
    what = {"adapter": "a LoRA adapter", "merged": "a LoRA adapter merged into its base model",
            "model": "a model"}[facts.kind]
    out = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
           f"# {repo_id.split('/')[-1]}", "",
           f"{what[0].upper() + what[1:]} for supportive, counseling-style conversation, made with "
           f"[psyassist](https://pypi.org/project/psyassist/).", ""]

    out += ["## Base model", ""]
    if facts.base_id:
        out.append(f"[{facts.base_id}](https://huggingface.co/{facts.base_id})"
                   + (f" — license {meta['license']}, which applies to this model too." if "license" in meta else "."))
    else:
        out.append(f"`{base_name}` (a local model; its hub id was not recorded).")
    out.append("")

    out += _usage(repo_id, facts)
    out += _training(facts)
    out += _evaluation(evals)
    if facts.merge:
        m = facts.merge
        out += ["## Merge verification", "",
                f"The adapter was merged into the unquantized base in {m.get('dtype')} with `psyassist merge`. "
                f"Merged logits equal base+adapter logits on sample English and Chinese dialogues: max |Δlogit| "
                f"= {m.get('max_abs_logit_diff', float('nan')):.3g}, tolerance {m.get('tolerance', float('nan')):.3g} "
                f"(the adapter itself moves logits by up to {m.get('adapter_effect_max_abs_logit', float('nan')):.3g}).",
                ""]
    out += _use_and_safety(facts)
    out += ["## Files", "", "| file | bytes |", "|---|---:|"]
    out += [f"| {rel} | {p.stat().st_size:,} |" for rel, p in files]
    out.append("")
    return "\n".join(out)


def _usage(repo_id: str, facts: Facts) -> list[str]:
    thinking = (facts.recipe or {}).get("model", {}).get("enable_thinking")
    if facts.kind == "adapter":
        code = ["from peft import PeftModel", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                f'base = AutoModelForCausalLM.from_pretrained("{facts.base_id or "BASE_MODEL"}")',
                f'model = PeftModel.from_pretrained(base, "{repo_id}")',
                f'tok = AutoTokenizer.from_pretrained("{repo_id}")']
        cli = (f"hf download {repo_id} --local-dir adapter\n"
               f"psyassist chat --model {facts.base_id or 'BASE_MODEL'} --adapter adapter")
    else:
        code = ["from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")',
                f'tok = AutoTokenizer.from_pretrained("{repo_id}")']
        cli = f"hf download {repo_id} --local-dir model\npsyassist chat --merged model"
    out = ["## How to use", "", "```python", *code, "```", "", "```bash", cli, "```", ""]
    if thinking is False:
        out += ["Trained with Qwen3 thinking OFF (`enable_thinking=False` in the chat template): chat in the same "
                "mode, with the recommended sampling T=0.7, top_p=0.8, top_k=20 (greedy decoding makes it repeat).",
                ""]
    elif thinking is True:
        out += ["Trained with Qwen3 thinking ON: sample with T=0.6, top_p=0.95, top_k=20.", ""]
    return out


def _training(facts: Facts) -> list[str]:
    out = ["## Training", ""]
    r = facts.recipe
    if not r:
        out += ["No training record was found next to the weights (psyassist writes manifest.json beside "
                "OUTPUT_DIR/adapter), so data and recipe are not described here.", ""]
        if facts.lora:
            lc = facts.lora
            out += [f"LoRA: r={lc.get('r')}, alpha={lc.get('lora_alpha')}, targets {_targets(lc)}.", ""]
        return out
    run = facts.run or {}
    out += ["### Data", ""]
    files = run.get("data_files") or {}
    if files:
        out += ["| file | sha256 |", "|---|---|"] + [f"| {Path(f).name} | `{_sha(h)}` |" for f, h in files.items()]
        out.append("")
    else:
        out += [f"train: `{Path(r['data']['train']).name}`" + (f", validation: `{Path(r['data']['validation']).name}`"
                                                             if r["data"].get("validation") else ""), ""]
    for split, rep in (run.get("render") or {}).items():
        if rep:
            out.append(f"- {split}: {rep.get('conversations', 0):,} conversations → {rep.get('samples', 0):,} samples, "
                       f"{rep.get('tokens', 0):,} tokens of which {rep.get('supervised_tokens', 0):,} supervised "
                       f"(assistant turns only); {rep.get('truncated', 0):,} truncated to max_length, "
                       f"{rep.get('dropped_no_supervision', 0):,} dropped with no supervised token left")
    out += ["", "Check the license of every training dataset before you share this model: several counseling "
            "corpora forbid redistribution or commercial use.", ""]
    lo, op, tr, da = r.get("lora", {}), r.get("optim", {}), r.get("train", {}), r.get("data", {})
    lc = facts.lora or {}
    knobs = [
        ("LoRA r / alpha / dropout", f"{lc.get('r', lo.get('r'))} / {lc.get('lora_alpha', lo.get('alpha'))} / "
                                     f"{lc.get('lora_dropout', lo.get('dropout'))}"),
        ("LoRA target modules", (f"{lo['target_modules']}: " if isinstance(lo.get("target_modules"), str) else "")
         + (_targets(lc) if lc else str(lo.get("target_modules")))),
        ("QLoRA (4-bit base)", str(bool(r.get("quant", {}).get("load_in_4bit")))),
        ("learning rate / schedule", f"{op.get('lr')} / {op.get('scheduler')}, warmup {op.get('warmup_steps') or 0} "
                                     f"steps or ratio {op.get('warmup_ratio') or 0}"),
        ("epochs / max steps", f"{tr.get('epochs')} / {tr.get('max_steps')}"),
        ("batch × grad accum", f"{tr.get('batch_size')} × {tr.get('grad_accum')}"
                               + (f" × {run['world_size']} devices" if run.get("world_size", 1) > 1 else "")),
        ("max_length (tokens per dialogue)", str(da.get("max_length"))),
        ("packing", str(da.get("packing"))),
        ("Qwen3 thinking while training", str(r.get("model", {}).get("enable_thinking"))),
        ("precision", str(run.get("precision", tr.get("precision")))),
        ("seed", str(tr.get("seed"))),
    ]
    if run:
        knobs += [("optimizer steps done", str(run.get("steps"))),
                  ("final train loss / best eval loss", f"{_num(run.get('final_train_loss'))} / "
                                                         f"{_num(run.get('best_eval_loss'))}")]
    out += ["### Recipe", "", "| knob | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in knobs]
    if run.get("command"):
        out += ["", f"Reproduce: `{run['command']}` (psyassist {run.get('packages', {}).get('psyassist', '?')}, "
                f"git {str(run.get('git_sha') or '?')[:10]})."]
    out.append("")
    return out


def _num(x) -> str:
    return "—" if x is None else f"{x:.4f}"


def _targets(lc: dict) -> str:
    # PEFT saves "all-linear" expanded to full module paths (model.layers.0.mlp.down_proj, …): one name per kind.
    t = lc.get("target_modules")
    return ", ".join(sorted({str(x).rsplit(".", 1)[-1] for x in t})) if isinstance(t, list | tuple | set) else str(t)


def _local_names(text: str | None) -> str:
    """Absolute local paths cut to their last component: a public card should not show /home/USER/…."""
    if not text:
        return ""
    return " ".join(Path(w).name if w.startswith(("/", "~")) else w for w in str(text).split(" "))


def _evaluation(evals: list[dict]) -> list[str]:
    out = ["## Evaluation", ""]
    if not evals:
        return out + ["Not evaluated in this card (pass `--eval RESULTS.json` from `psyassist eval mcq` or "
                      "`eval gen`).", ""]
    for e in evals:
        who = (f"replies read from `{e['replies']}`" if e.get("replies") else
               f"`{_local_names(e['model'])}`" + (f" + adapter `{Path(e['adapter']).name}`" if e.get("adapter") else ""))
        e = {**e, "command": _local_names(e["command"])}
        if e["type"] == "mcq":
            out += [f"### {e['bench']} — multiple choice ({e['mode']}, {e['n_items']} questions)", "",
                    f"Model evaluated: {who}. Reproduce: `{e['command']}`", "",
                    "| format | accuracy | 95% interval (Wilson) | n | unparsed | chance |", "|---|---:|---:|---:|---:|---:|"]
            for row in e["rows"]:
                lo, hi = row.get("wilson95") or (None, None)
                out.append(f"| {row['format']} | {_pct(row['accuracy'])} | {_pct(lo)}–{_pct(hi)} | {row['n']} | "
                           f"{_pct(row.get('unparsed_rate'))} | {_pct(row.get('chance'))} |")
        else:
            rl = {level: v.get("rougeL", {}) for level, v in (e.get("rouge") or {}).items()}
            out += [f"### Generation against references ({e['n']} replies, {e['lang']})", "",
                    f"Model evaluated: {who}. Reproduce: `{e['command']}`", "",
                    "| metric | value |", "|---|---:|", f"| BLEU-4 | {e['bleu4']} |"]
            for level, v in rl.items():
                ci = v.get("ci95")
                out.append(f"| ROUGE-L ({level}) | {v.get('mean')}" + (f" (95% CI {ci[0]}–{ci[1]})" if ci else "") + " |")
            if e.get("cosine") is not None:
                out.append(f"| embedding cosine | {e['cosine']:.4f} |")
            if e.get("bertscore_f1") is not None:
                out.append(f"| BERTScore F1 | {e['bertscore_f1']} |")
        out.append("")
    return out


def _use_and_safety(facts: Facts) -> list[str]:
    from psyassist.safety.resources import resources_for

    regions = (["cn"] if "zh" in facts.language else []) + (["us", "uk"] if "en" in facts.language else []) + ["intl"]
    lines = []
    for region in regions:
        for res in resources_for(region):
            lines.append(f"- {res.name}: {res.contact()} ({region})")
    return [
        "## Intended use", "",
        "Research on counseling dialogue, and drafting supportive replies that a trained person reviews: "
        "practising counseling skills, building and evaluating tools for counselors.", "",
        "## Limitations", "",
        "- It can be wrong, inconsistent or overconfident, and it can produce harmful advice; it has no memory of "
        "a person beyond the conversation and no way to check what it is told.",
        "- It reflects its training dialogues (often synthetic or rebuilt from reports) and their cultural "
        "assumptions; it was not evaluated for clinical safety.",
        "- Benchmark scores above measure exam knowledge or overlap with reference replies, not therapeutic "
        "outcomes.", "",
        "## Safety", "",
        "**This model is not a therapist and not a substitute for a mental-health professional, a diagnosis or "
        "treatment.** Do not deploy it to talk to people in distress without human oversight. Screen every user "
        "message for crisis signals (`psyassist chat` and `psyassist safety check` do) and show crisis resources "
        "when one appears. If you or someone you know is in danger or thinking about suicide, call your local "
        "emergency number now or contact a crisis line:", "",
        *lines, "",
        "Numbers per region: `psyassist safety resources REGION`; check them before you rely on them.", ""]


# --- push -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _lfs_uploads():
    """Turn huggingface_hub's Xet upload path off for this block (see the module docstring)."""
    from huggingface_hub import constants

    old = constants.HF_HUB_DISABLE_XET  # read by is_xet_available() at call time
    constants.HF_HUB_DISABLE_XET = True
    try:
        yield
    finally:
        constants.HF_HUB_DISABLE_XET = old


def _hub_error(e: Exception, endpoint: str, repo_id: str) -> PsyassistError:
    status = getattr(getattr(e, "response", None), "status_code", None)
    first = (str(e).splitlines() or [""])[0]
    if status in (401, 403):
        return PsyassistError(f"{endpoint} refused the token ({status}) for {repo_id}: HF_TOKEN must be a token with "
                              f"write access to that namespace. ({first})")
    return PsyassistError(f"push to {endpoint}/{repo_id} failed: {type(e).__name__}: {first}")


def push(source: str | Path, repo_id: str, *, private: bool = False, revision: str = "main",
         endpoint: str | None = None, card_only: bool = False, evals: list[str] | None = None,
         commit_message: str | None = None, language: list[str] | None = None, dry_run: bool = False) -> dict:
    """Upload SOURCE + a generated README.md in one commit; returns what was (or would be) sent."""
    from psyassist.models import _hub_endpoint, _hub_offline

    src = Path(source)
    if not _HUB_ID.fullmatch(repo_id):
        raise PsyassistError(f"--repo-id must be USER/NAME (or ORG/NAME), got '{repo_id}'.")
    kind = source_kind(src)
    files, skipped = plan_files(src)
    if card_only:
        files = []
    token = os.environ.get("HF_TOKEN", "").strip() or None
    check_no_token(files, token)
    results = [read_eval(p) for p in evals or []]
    facts = gather_facts(src, kind)
    facts.language = list(language) if language else guess_language(facts, results)
    card = render_card(repo_id, facts, results, files)
    endpoint = (endpoint or _hub_endpoint()).rstrip("/")
    message = commit_message or (f"psyassist push: {kind}" + (f" of {facts.base_id}" if facts.base_id else ""))
    summary = {"repo_id": repo_id, "endpoint": endpoint, "revision": revision, "kind": kind, "private": private,
               "files": [rel for rel, _ in files] + ["README.md"], "skipped": skipped,
               "bytes": sum(p.stat().st_size for _, p in files) + len(card.encode()), "card": card}
    if dry_run:
        print(card)
        _print_plan(summary)
        err_console.print(f"dry run: nothing sent; would push to {endpoint}/{repo_id} @ {revision}", soft_wrap=True)
        return summary
    if not token:
        raise PsyassistError("HF_TOKEN is not set: create a token with write access at "
                             "https://huggingface.co/settings/tokens and `export HF_TOKEN=hf_…` (psyassist reads it "
                             "from the environment only, never from a flag). `--dry-run` shows the card without it.")
    if _hub_offline():
        raise PsyassistError("HF_HUB_OFFLINE is set: a push needs the network. Unset it, or use --dry-run.")

    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    from psyassist import __version__
    from psyassist.ui import progress_enabled

    ops = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(p)) for rel, p in files]
    ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode()))
    api = HfApi(endpoint=endpoint, token=token, library_name="psyassist", library_version=__version__)
    if not progress_enabled():
        disable_progress_bars()
    try:
        with _lfs_uploads():
            url = api.create_repo(repo_id, private=True if private else None, exist_ok=True)
            if revision != "main":
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            info = api.create_commit(repo_id, ops, commit_message=message, revision=revision)
    except Exception as e:  # HfHubHTTPError, connection errors, offline mode: one message for people
        raise _hub_error(e, endpoint, repo_id) from e
    finally:
        enable_progress_bars()
    summary.update(repo_url=str(url), commit_url=info.commit_url, commit=info.oid)
    _print_plan(summary)
    console.print(f"[green]pushed[/] {len(summary['files'])} file(s), {summary['bytes']:,} bytes → {info.commit_url}",
                  soft_wrap=True)
    return summary


def _print_plan(summary: dict) -> None:
    err_console.print(f"{summary['kind']} → {summary['repo_id']}"
                      + (" (private)" if summary["private"] else "") + ": " + ", ".join(summary["files"]), soft_wrap=True)
    for rel, why in summary["skipped"]:
        err_console.print(f"[yellow]skipped[/] {rel}: {why}", soft_wrap=True)
