"""The `psyassist` command: wires subcommands to stage entry points, nothing else.

    psyassist --help
    psyassist data --help
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

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
) -> None:
    """Read → validate → clean → deduplicate → split → write train/validation JSONL + report.

    psyassist data prepare corpus.jsonl --out prepared/
    """
    raise typer.Exit(_not_yet("data prepare"))


@data_app.command("stats")
def data_stats(sources: list[str] = typer.Argument(..., help="Files, directories or globs.")) -> None:
    """Dialogues, turns, length percentiles, tags and supervised-token share.

    psyassist data stats corpus.jsonl
    """
    raise typer.Exit(_not_yet("data stats"))


@data_app.command("show")
def data_show(sources: list[str] = typer.Argument(..., help="Files, directories or globs.")) -> None:
    """A readable terminal viewer for dialogues.

    psyassist data show corpus.jsonl --index 3
    """
    raise typer.Exit(_not_yet("data show"))


@data_app.command("overlap")
def data_overlap(train: str = typer.Argument(...), eval_: str = typer.Argument(..., metavar="EVAL")) -> None:
    """Contamination check between a training and an evaluation set (character n-grams).

    psyassist data overlap prepared/train.jsonl eval.jsonl
    """
    raise typer.Exit(_not_yet("data overlap"))


@data_app.command("fetch")
def data_fetch(name: str = typer.Argument(..., help="Dataset name; `psyassist data fetch --list`.")) -> None:
    """Download a known dataset from its upstream home, verified and cached.

    psyassist data fetch smilechat --to data/
    """
    raise typer.Exit(_not_yet("data fetch"))


@data_app.command("check")
def data_check(
    sources: list[str] = typer.Argument(..., help="Files, directories or globs."),
    tokenizer: str = typer.Option(..., "--tokenizer", "-t", help="Tokenizer directory or hub id."),
) -> None:
    """Render samples with the chat template and show exactly which tokens are supervised.

    psyassist data check prepared/train.jsonl --tokenizer .cache/tokenizers/qwen3
    """
    raise typer.Exit(_not_yet("data check"))


def _not_yet(what: str) -> int:
    err_console.print(f"[red]{what} is not implemented yet[/]")
    return 1


def main(argv: Optional[list[str]] = None) -> None:
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
