"""`psyassist data check`: see exactly what a model will be trained on.

    psyassist data check prepared/train.jsonl --tokenizer .cache/tokenizers/qwen3 --samples 2

Renders conversations with the tokenizer's own chat template (psyassist.render),
prints N samples with the supervised tokens highlighted, and the figures that
catch the classic mistakes: supervised share, samples truncated or dropped for
having no supervised token, and whether every supervised turn ends with the
end-of-turn token (a model that never learned `<|im_end|>` never stops).
"""

from __future__ import annotations

import json

from rich.table import Table
from rich.text import Text

from psyassist.render import (
    IGNORE_INDEX,
    RenderedSample,
    RenderOptions,
    RenderReport,
    load_tokenizer,
    render_many,
)
from psyassist.ui import console

FOLD = 400  # unsupervised runs longer than this many characters are folded unless --full


def sample_text(tok, sample: RenderedSample, full: bool = False) -> Text:
    """Rich text of one sample: supervised tokens green on dark, the rest dim."""
    text = Text()
    run: list[int] = []
    run_sup = None

    def flush():
        if not run:
            return
        s = tok.decode(run, skip_special_tokens=False)
        if run_sup:
            text.append(s, style="bold green on grey15")
        else:
            if not full and len(s) > FOLD:
                s = f"{s[:FOLD // 2]} …[{len(s) - FOLD} characters folded; --full shows them]… {s[-FOLD // 2:]}"
            text.append(s, style="dim")

    for tid, lab in zip(sample.input_ids.tolist(), sample.labels.tolist(), strict=True):
        sup = lab != IGNORE_INDEX
        if sup != run_sup:
            flush()
            run, run_sup = [], sup
        run.append(tid)
    flush()
    return text


def figures_table(report: RenderReport, eot: str) -> Table:
    t = Table(title="supervision figures", show_header=True)
    t.add_column("figure")
    t.add_column("value", justify="right")
    rows = [
        ("conversations rendered", report.conversations),
        ("samples kept", report.samples),
        ("tokens", report.tokens),
        ("supervised tokens", report.supervised_tokens),
        ("supervised share", f"{report.supervised_share:.1%}"),
        ("supervised turns", report.supervised_turns),
        (f"supervised turns not ending in {eot}", report.turns_without_eot),
        ("samples truncated (oldest exchanges dropped)", report.truncated),
        ("exchanges dropped", report.pairs_dropped),
        ("samples cut on the right", report.cut),
        ("dropped: no supervised token left", report.dropped_no_supervision),
        ("think blocks removed (thinking off)", report.think_removed),
        ("tokens straddling a span edge", report.boundary_straddles),
    ]
    for k, v in rows:
        t.add_row(k, str(v))
    return t


def run_check(conversations, tokenizer: str, *, samples: int = 3, start: int = 0, enable_thinking: bool | None,
              max_length: int | None, per_turn: bool, chat_template: str | None, full: bool,
              as_json: bool) -> RenderReport:
    tok = load_tokenizer(tokenizer, chat_template=chat_template)
    opts = RenderOptions(enable_thinking=enable_thinking, max_length=max_length, per_turn=per_turn)
    rendered, report = render_many(tok, conversations, opts, show_progress=not as_json)
    eot = tok.eos_token or "end-of-turn"
    if as_json:
        print(json.dumps({"tokenizer": tokenizer, "options": opts.__dict__, **report.to_dict()}, ensure_ascii=False))
        return report
    for s in rendered[start:start + samples]:
        console.rule(f"[bold]{s.conversation_id}[/]  {s.n_tokens} tokens, {s.n_supervised} supervised")
        console.print(sample_text(tok, s, full))
    console.print(figures_table(report, eot))
    if report.dropped_no_supervision:
        console.print(f"[red]{report.dropped_no_supervision} conversation(s) have no supervised token after "
                      f"truncation to {max_length} tokens and will not be trained on[/] "
                      f"(e.g. {', '.join(report.examples_dropped[:5])}). Raise --max-length or shorten the "
                      "system prompt.")
    if report.turns_without_eot > report.cut:
        console.print(f"[red]{report.turns_without_eot} supervised turn(s) do not end with {eot}: the model will "
                      "not learn to stop.[/]")
    elif report.supervised_turns:
        console.print(f"[green]every complete supervised turn ends with {eot}[/]")
    return report
