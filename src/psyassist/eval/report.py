"""Render a `psyassist compare` result as report.md and a self-contained report.html (+ PNG charts).

    python -c "import json; from psyassist.eval.report import write_report; \
write_report(json.load(open('results/compare-sample/compare.json')), 'results/compare-sample')"

Every number is rendered from compare.json alone, so a report can be re-rendered without the
models.  The HTML has no external asset: its CSS is inline and each chart is a PNG embedded as a
base64 data URI (the same PNGs are saved beside it).  Every text that came from a model, a
prompt or a file is HTML-escaped, in the HTML and in the Markdown tables alike.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from psyassist.data.io import atomic_path, write_json_atomic, write_text_atomic
from psyassist.optional import require

ALPHA = 0.05
LENGTH_NOTE = ("Length (and seed 002's length-based 'quality') measures how long the replies are, not how good "
               "they are.")
COLORS = {"base": "#8c8c8c", "tuned": "#2a7ab9"}


# --- numbers as text --------------------------------------------------------------------------------


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def acc_ci(side: dict) -> str:
    lo, hi = side["wilson95"]
    return f"{pct(side['accuracy'])} [{100 * lo:.1f}–{100 * hi:.1f}]"


def num(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def pval(p: float) -> str:
    return f"{p:.3g}" if p >= 1e-4 else f"{p:.1e}"


def mcq_note(row: dict, n_formats: int) -> str:
    """Honest wording for one format's base-vs-tuned difference."""
    if row["p_value"] >= ALPHA:
        return (f"{row['format']}: difference not significant at 0.05 (McNemar p = {pval(row['p_value'])}; only "
                f"base right {row['base_only_right']}, only tuned right {row['tuned_only_right']})")
    more = "tuned" if row["delta"] > 0 else "base"
    extra = f"; {n_formats} formats tested, no correction for multiple comparisons" if n_formats > 1 else ""
    return f"{row['format']}: {more} is more accurate, significant at 0.05 (McNemar p = {pval(row['p_value'])}{extra})"


def delta(row: dict) -> str:
    return "—" if row["delta"] is None else f"{row['delta']:+.3f}"


def gen_paired(row: dict) -> str:
    p = row["paired"]
    if not p:
        return "—"
    lo, hi = p["ci95"]
    sig = "" if lo <= 0 <= hi else " *"
    return f"{p['mean']:+.2f} [{lo:+.2f}, {hi:+.2f}]{sig}"


def _md(text) -> str:
    """A Markdown table cell: HTML-escaped, pipes and newlines neutralised."""
    return html.escape(str(text), quote=False).replace("|", "&#124;").replace("\r", "").replace("\n", "<br>")


# --- charts --------------------------------------------------------------------------------------------


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def mcq_chart(stage: dict) -> bytes:
    """Accuracy per format, base vs tuned, with 95% Wilson intervals and the chance level."""
    require("matplotlib", "psyassist compare charts")
    from matplotlib.figure import Figure

    rows = stage["rows"]
    fig = Figure(figsize=(1.6 + 1.4 * len(rows), 3.2))
    ax = fig.add_subplot()
    w = 0.38
    for k, side in enumerate(("base", "tuned")):
        xs = [i + (k - 0.5) * w for i in range(len(rows))]
        acc = [100 * r[side]["accuracy"] for r in rows]
        err = [[a - 100 * r[side]["wilson95"][0] for a, r in zip(acc, rows, strict=True)],
               [100 * r[side]["wilson95"][1] - a for a, r in zip(acc, rows, strict=True)]]
        ax.bar(xs, acc, w, yerr=err, capsize=3, label=side, color=COLORS[side])
    for i, r in enumerate(rows):
        ax.hlines(100 * r["chance"], i - w, i + w, colors="k", linestyles="dashed", linewidth=1)
    ax.set_xticks(range(len(rows)), [r["format"] for r in rows])
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy % (95% Wilson CI)")
    ax.set_title(f"{stage['name']}: {stage['mode']}, n = {rows[0]['n'] if rows else 0}; dashed: chance", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    return _png(fig)


def gen_chart(stage: dict, noun: str = "replies") -> bytes:
    """One small panel per metric (each on its own scale), base vs tuned, 95% CI where the metric has one."""
    require("matplotlib", "psyassist compare charts")
    from matplotlib.figure import Figure

    by = {r["metric"]: r for r in stage["rows"]}
    names = stage["chart"]
    fig = Figure(figsize=(2.1 * len(names), 3.1), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        r = by[name]
        for k, side in enumerate(("base", "tuned")):
            v, ci = r[side] or 0.0, r[f"{side}_ci95"]
            err = [[v - ci[0]], [ci[1] - v]] if ci else None
            ax.bar([k], [v], 0.7, yerr=err, capsize=3, color=COLORS[side])
        ax.set_xticks([0, 1], ["base", "tuned"], fontsize=8)
        ax.set_title(name + (" *" if name.startswith("length") else ""), fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    length = "; * a length measure, not quality" if any(n.startswith("length") for n in names) else ""
    fig.suptitle(f"{stage['name']}: {stage['n']} {noun} ({stage['lang']}){length}", fontsize=9)
    return _png(fig)


def imhi_chart(stage: dict) -> bytes:
    """Weighted F1 per IMHI dataset (and macro), base vs tuned."""
    require("matplotlib", "psyassist compare charts")
    from matplotlib.figure import Figure

    rows = stage["rows"]
    fig = Figure(figsize=(1.6 + 0.9 * len(rows), 3.2))
    ax = fig.add_subplot()
    w = 0.38
    for k, side in enumerate(("base", "tuned")):
        ax.bar([i + (k - 0.5) * w for i in range(len(rows))], [r[side]["weighted_f1"] or 0 for r in rows], w,
               label=side, color=COLORS[side])
    ax.set_xticks(range(len(rows)), [r["dataset"] for r in rows], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("weighted F1 (0-1)")
    ax.set_title(f"{stage['name']}: IMHI test_{stage['split']}", fontsize=9)
    ax.legend(fontsize=8)
    return _png(fig)


def charts(report: dict) -> dict[str, bytes]:
    """{file name: PNG bytes}: one chart per mcq, gen, imhi and notes stage."""
    out = {}
    for s in report["stages"]:
        if s["type"] == "mcq" and s["rows"]:
            out[f"{s['name']}.png"] = mcq_chart(s)
        elif s["type"] == "gen" and s["chart"]:
            out[f"{s['name']}.png"] = gen_chart(s)
        elif s["type"] == "imhi" and s["rows"]:
            out[f"{s['name']}.png"] = imhi_chart(s)
        elif s["type"] == "notes" and s["chart"]:
            out[f"{s['name']}.png"] = gen_chart(s, "notes")
    return out


# --- header ---------------------------------------------------------------------------------------------


def _adapter_text(m: dict) -> str:
    if m.get("merged_from"):
        return f"merged: {m['merged_from']}"
    c = m.get("adapter_check")
    if not c:
        return "—"
    return (f"{m['adapter']} (r={c['rank']}, alpha={c['alpha']}, weights sha256 {(c['weights_sha256'] or '—')[:16]}…; "
            f"trained on {c['trained_on']}: {c['base_check']})")


def _model_rows(report: dict) -> list[tuple[str, str, str]]:
    b, t = report["models"]["base"], report["models"]["tuned"]
    return [("model", b["spec"], t["spec"]), ("weights", b["path"], t["path"]),
            ("adapter", _adapter_text(b), _adapter_text(t)),
            ("dtype / device", f"{b['dtype']} / {b['device']}", f"{t['dtype']} / {t['device']}")]


def _facts(report: dict) -> list[tuple[str, str]]:
    v = report["versions"]
    mach = report["machine"]
    s = report["suite"]
    return [("suite", f"{s['path']} ({s['name']}; sha256 {s['sha256']})"),
            ("seed", str(report["seed"]) + (f"; --limit {report['limit']} on every stage" if report["limit"] else "")),
            ("date (UTC)", report["date"]),
            ("machine", f"{mach['platform']}, {mach['cpus']} CPUs" + (f", {mach['gpu']}" if mach.get("gpu") else "")),
            ("versions", ", ".join(f"{k} {val}" for k, val in v.items() if val)),
            ("run time", f"{report['seconds']} s")]


def _data_files(report: dict) -> list[tuple[str, str, str]]:
    rows = []
    for s in report["stages"]:
        for f, sha in s.get("files", {}).items():
            rows.append((s["name"], f, sha))
    return rows


def _timing(stage: dict) -> str:
    t = stage.get("seconds") or {}
    return f"Wall time: base {t.get('base')} s, tuned {t.get('tuned')} s."


# --- markdown -------------------------------------------------------------------------------------------


def render_markdown(report: dict, images: dict[str, bytes]) -> str:
    m = report["models"]
    L = [f"# psyassist compare: {_md(m['base']['spec'])} vs {_md(m['tuned']['spec'])}", "",
         "Reproduce every number below with:", "", "```bash", report["command"], "```", "",
         "| | base | tuned |", "|---|---|---|"]
    L += [f"| {a} | {_md(b)} | {_md(c)} |" for a, b, c in _model_rows(report)]
    L += ["", "| | |", "|---|---|"] + [f"| {a} | {_md(b)} |" for a, b in _facts(report)]
    files = _data_files(report)
    if files:
        L += ["", "Data files:", "", "| stage | file | sha256 |", "|---|---|---|"]
        L += [f"| {_md(s)} | {_md(f)} | `{sha}` |" for s, f, sha in files]
    for s in report["stages"]:
        L += ["", f"## {s['index'] + 1}. {s['type']}: {_md(s['name'])}", "", _timing(s), ""]
        L += {"mcq": _md_mcq, "gen": _md_gen, "imhi": _md_imhi, "replies": _md_replies,
              "notes": _md_notes}[s["type"]](s, images)
    return "\n".join(L) + "\n"


def _md_mcq(s: dict, images) -> list[str]:
    L = [f"{s['n_items']} questions from {_md(', '.join(s['bench']))}; scoring mode **{s['mode']}**"
         + (f" (thinking {'on' if s['thinking'] else 'off'})" if s["thinking"] is not None else "")
         + ("; circular option shuffling" if s["shuffle_options"] else "") + ".", "",
         f"Rule: {_md(s['rule'])}", "",
         "| format | n | base acc [95% CI] | tuned acc [95% CI] | Δ (pt) | McNemar p | unparsed base / tuned | chance |",
         "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in s["rows"]:
        L.append(f"| {r['format']} | {r['n']} | {acc_ci(r['base'])} | {acc_ci(r['tuned'])} | "
                 f"{100 * r['delta']:+.1f} | {pval(r['p_value'])} | {r['base']['unparsed']} / {r['tuned']['unparsed']}"
                 f" | {pct(r['chance'])} |")
    L += [""] + [f"- {_md(mcq_note(r, len(s['rows'])))}" for r in s["rows"]]
    L += [f"- warning: {_md(w)}" for w in s["warnings"]]
    if f"{s['name']}.png" in images:
        L += ["", f"![{s['name']} accuracy]({s['name']}.png)"]
    L += ["", "<details><summary>prompt formats (exact prompt of the first question)</summary>", ""]
    for f, p in s["example_prompts"].items():
        L += [f"**{_md(f)}** ({_md(s['templates'][f].get('source', ''))})", "", "~~~~text", p, "~~~~", ""]
    L += ["</details>", "", f"Per-side commands: `{s['commands']['base']}` / `{s['commands']['tuned']}`"]
    return L


def _md_gen(s: dict, images) -> list[str]:
    samp = s.get("sampling") or {}
    L = [f"{s['n']} contexts ({s['lang']}, turns: {s['turns']}) from {_md(', '.join(s['data']))}; sampling "
         f"T={samp.get('temperature')} top_p={samp.get('top_p')} top_k={samp.get('top_k')}, "
         f"max_new_tokens={samp.get('max_new_tokens')}, seed {samp.get('seed')}.", "",
         "| metric | base | tuned | Δ | paired Δ [95% CI] | how |", "|---|---:|---:|---:|---:|---|"]
    for r in s["rows"]:
        L.append(f"| {_md(r['metric'])} | {num(r['base'], 3)} | {num(r['tuned'], 3)} | {delta(r)} | "
                 f"{gen_paired(r)} | {_md(r['how'])} |")
    L += ["", "Scale: percent (0–100) except embedding cosine ([-1, 1]) and length (its unit). Paired Δ: mean of "
          "per-reply differences tuned − base on the same contexts; * its 95% interval excludes 0.",
          f"Finish (stop / length): base {s['finish']['base']['stop']} / {s['finish']['base']['length']}, "
          f"tuned {s['finish']['tuned']['stop']} / {s['finish']['tuned']['length']}; empty replies: base "
          f"{s['empty_replies']['base']}, tuned {s['empty_replies']['tuned']}.", "", f"**Note:** {LENGTH_NOTE}"]
    if f"{s['name']}.png" in images:
        L += ["", f"![{s['name']} metrics]({s['name']}.png)"]
    L += ["", f"Per-side commands: `{s['commands']['base']}` / `{s['commands']['tuned']}`"]
    return L


IMHI_HEADER = ["dataset", "n", "wF1 base", "wF1 tuned", "Δ wF1", "acc base", "acc tuned", "McNemar p (acc)",
               "unparsed base / tuned", "expl. ROUGE-L base / tuned"]


def _imhi_cells(r: dict) -> list[str]:
    b, t = r["base"], r["tuned"]
    dwf1 = None if b["weighted_f1"] is None or t["weighted_f1"] is None else t["weighted_f1"] - b["weighted_f1"]
    return [r["dataset"], str(r["n"]), num(b["weighted_f1"], 3), num(t["weighted_f1"], 3),
            "—" if dwf1 is None else f"{dwf1:+.3f}", num(b["accuracy"], 3), num(t["accuracy"], 3),
            pval(r["mcnemar"]["p_value"]), f"{pct(b['unparsed_rate'])} / {pct(t['unparsed_rate'])}",
            f"{num(b['rougeL'], 3)} / {num(t['rougeL'], 3)}"]


def imhi_note(r: dict) -> str:
    m = r["mcnemar"]
    verdict = "difference not significant at 0.05" if m["p_value"] >= ALPHA else "significant at 0.05"
    return (f"{r['dataset']}: label accuracy {verdict} (McNemar p = {pval(m['p_value'])}; only base right "
            f"{m['base_only_right']}, only tuned right {m['tuned_only_right']})")


def _imhi_intro(s: dict) -> str:
    samp = s.get("sampling") or {}
    return (f"IMHI test_{s['split']} from {s['dir']}; scale {s['scale']}; sampling T={samp.get('temperature')} "
            f"top_p={samp.get('top_p')} top_k={samp.get('top_k')}, max_new_tokens={samp.get('max_new_tokens')}, "
            f"seed {samp.get('seed')}. Label rule: {s['parse_rule']}")


def _md_imhi(s: dict, images) -> list[str]:
    L = [_md(_imhi_intro(s)), "", "| " + " | ".join(IMHI_HEADER) + " |", "|---|" + "---:|" * (len(IMHI_HEADER) - 1)]
    L += ["| " + " | ".join(_md(c) for c in _imhi_cells(r)) + " |" for r in s["rows"]]
    L += [""] + [f"- {_md(imhi_note(r))}" for r in s["rows"]]
    if f"{s['name']}.png" in images:
        L += ["", f"![{s['name']} weighted F1]({s['name']}.png)"]
    L += ["", f"Per-side commands: `{s['commands']['base']}` / `{s['commands']['tuned']}`"]
    return L


def _md_replies(s: dict, images) -> list[str]:
    samp = s["sampling"]
    L = [f"Both models, same seed ({samp['seed']}, re-seeded before every prompt), the recommended sampling "
         f"T={samp['temperature']} top_p={samp['top_p']} top_k={samp['top_k']}, max_new_tokens="
         f"{samp['max_new_tokens']}, thinking {'on' if s['thinking'] else 'off'}"
         + (f"; system prompt: {_md(s['system'])}" if s["system"] else "") + ".", "",
         "| # | prompt | base | tuned |", "|---:|---|---|---|"]
    for i, r in enumerate(s["rows"], 1):
        cut = {k: " (cut at max_new_tokens)" if r["finish"][k] == "length" else "" for k in ("base", "tuned")}
        L.append(f"| {i} | {_md(r['prompt'])} | {_md(r['base'])}{cut['base']} | {_md(r['tuned'])}{cut['tuned']} |")
    return L


NOTES_SCALE = ("Scale: ROUGE in percent (0–100), embedding cosine in [-1, 1], judge 1–5, items and drafts are "
               "counts. Paired Δ: mean of per-case differences tuned − base on the same cases; * its 95% interval "
               "excludes 0.")
NOTES_KEY = ("The key of a CA case is the list of keyed exam options (a derived reference, not prose): ROUGE recall "
             "says how much of it a note covers; F1 is low by construction because a note is longer than its key.")


def _count_or_num(x) -> str:
    """Counts (repaired drafts, cut drafts) as whole numbers, other values as num(x, 3)."""
    return str(x) if isinstance(x, int) else num(x, 3)


def _notes_intro(s: dict) -> str:
    samp = s["sampling"]
    src = ", ".join(f"{v} {k}" for k, v in s["by_source"].items())
    parts = "; ".join(f"{k} = {' + '.join(v)}" for k, v in s["parts"].items())
    return (f"{s['n']} CPsyExam cases ({src}) from {s['data']}; template {s['template']} ({parts}; full = every "
            f"section). The app's own draft prompt and JSON-schema constraint; sampling T={samp.get('temperature')} "
            f"top_p={samp.get('top_p')} top_k={samp.get('top_k')}, max_tokens={samp.get('max_tokens')}, seed "
            f"{samp.get('seed')}, thinking off.")


def notes_checks(s: dict) -> list[str]:
    """The parse rate (must be 100%), repairs and the caveats, as sentences."""
    out = []
    for side in ("base", "tuned"):
        d = s["drafts"][side]
        rate = "—" if d["parse_rate"] is None else f"{100 * d['parse_rate']:.0f}%"
        bad = "" if d["parsed"] == d["n"] else " — BELOW 100%: the JSON constraint failed"
        out.append(f"{side}: parsed {d['parsed']}/{d['n']} ({rate}){bad}; repaired {d['repaired']} "
                   f"({', '.join(f'{k}: {v}' for k, v in d['problems'].items()) or 'none'}); finish "
                   f"{', '.join(f'{k} {v}' for k, v in d['finish'].items())}")
    if s["embedding_note"]:
        out.append(f"embedding cosine: {s['embedding_note']}")
    if s["judge"]:
        out.append(f"judge: {s['judge']['judge']['model']} with {s['judge']['rubric']['source']}")
    return out


def _md_notes(s: dict, images) -> list[str]:
    L = [_md(_notes_intro(s)), "", "| metric | base | tuned | Δ | paired Δ [95% CI] | how |",
         "|---|---:|---:|---:|---:|---|"]
    for r in s["rows"]:
        L.append(f"| {_md(r['metric'])} | {_count_or_num(r['base'])} | {_count_or_num(r['tuned'])} | {delta(r)} | "
                 f"{gen_paired(r)} | {_md(r['how'])} |")
    L += ["", NOTES_SCALE, NOTES_KEY, ""] + [f"- {_md(x)}" for x in notes_checks(s)]
    if f"{s['name']}.png" in images:
        L += ["", f"![{s['name']} metrics]({s['name']}.png)"]
    for e in s["examples"]:
        cut = {k: " (cut at max_tokens)" if e["finish"][k] == "length" else "" for k in ("base", "tuned")}
        L += ["", f"**Case {_md(e['id'])}**", "", "| | |", "|---|---|", f"| case | {_md(e['case'])} |",
              f"| key | {_md(e['reference'])} |", f"| base draft | {_md(e['base'] or '(empty)')}{cut['base']} |",
              f"| tuned draft | {_md(e['tuned'] or '(empty)')}{cut['tuned']} |"]
    L += ["", "<details><summary>prompt and rules</summary>", "", f"Prompt: {_md(s['prompt_format'])}", "",
          "~~~~text", s["system"] or "", "~~~~", ""]
    L += [f"- {k}: {_md(v)}" for k, v in s["rules"].items()]
    L += ["", "</details>", "", f"Per-side commands: `{s['commands']['base']}` / `{s['commands']['tuned']}`"]
    return L


# --- html -------------------------------------------------------------------------------------------------

CSS = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ccc;padding:.3em .6em;
vertical-align:top;text-align:left}td.n{text-align:right;white-space:nowrap}pre{background:#f5f5f5;padding:.6em;
overflow-x:auto;white-space:pre-wrap}code{background:#f5f5f5}.note{color:#555}.warn{color:#a33}
td.reply{white-space:pre-wrap;max-width:28em}img{max-width:100%}"""


def _e(x) -> str:
    return html.escape(str(x))


def _table(header: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    """Cells are already-escaped HTML."""
    h = "".join(f"<th>{c}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td class=\"n\">{c}</td>" if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _img(images: dict[str, bytes], name: str, alt: str) -> str:
    if name not in images:
        return ""
    return f'<p><img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(images[name]).decode()}"></p>'


def render_html(report: dict, images: dict[str, bytes]) -> str:
    m = report["models"]
    title = f"psyassist compare: {m['base']['spec']} vs {m['tuned']['spec']}"
    P = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
         f"<style>{CSS}</style></head><body>", f"<h1>{_e(title)}</h1>",
         "<p>Reproduce every number below with:</p>", f"<pre><code>{_e(report['command'])}</code></pre>",
         _table(["", "base", "tuned"], [[_e(a), _e(b), _e(c)] for a, b, c in _model_rows(report)]),
         _table(["", ""], [[_e(a), _e(b)] for a, b in _facts(report)])]
    files = _data_files(report)
    if files:
        P.append("<p>Data files:</p>" + _table(["stage", "file", "sha256"],
                                              [[_e(s), _e(f), f"<code>{_e(sha)}</code>"] for s, f, sha in files]))
    for s in report["stages"]:
        P.append(f"<h2>{s['index'] + 1}. {_e(s['type'])}: {_e(s['name'])}</h2><p class=\"note\">{_e(_timing(s))}</p>")
        P.append({"mcq": _html_mcq, "gen": _html_gen, "imhi": _html_imhi, "replies": _html_replies,
                  "notes": _html_notes}[s["type"]](s, images))
    P.append("</body></html>")
    return "\n".join(P) + "\n"


def _html_mcq(s: dict, images) -> str:
    head = (f"<p>{s['n_items']} questions from {_e(', '.join(s['bench']))}; scoring mode <b>{_e(s['mode'])}</b>"
            + (f" (thinking {'on' if s['thinking'] else 'off'})" if s["thinking"] is not None else "")
            + ("; circular option shuffling" if s["shuffle_options"] else "") + f".</p><p class=\"note\">Rule: "
            f"{_e(s['rule'])}</p>")
    rows = [[_e(r["format"]), str(r["n"]), acc_ci(r["base"]), acc_ci(r["tuned"]), f"{100 * r['delta']:+.1f}",
             pval(r["p_value"]), f"{r['base']['unparsed']} / {r['tuned']['unparsed']}", pct(r["chance"])]
            for r in s["rows"]]
    t = _table(["format", "n", "base acc [95% CI]", "tuned acc [95% CI]", "Δ (pt)", "McNemar p",
                "unparsed base / tuned", "chance"], rows, numeric={1, 2, 3, 4, 5, 6, 7})
    notes = "".join(f"<li>{_e(mcq_note(r, len(s['rows'])))}</li>" for r in s["rows"])
    notes += "".join(f"<li class=\"warn\">warning: {_e(w)}</li>" for w in s["warnings"])
    prompts = "".join(f"<p><b>{_e(f)}</b> ({_e(s['templates'][f].get('source', ''))})</p><pre>{_e(p)}</pre>"
                      for f, p in s["example_prompts"].items())
    return (head + t + f"<ul>{notes}</ul>" + _img(images, f"{s['name']}.png", f"{s['name']} accuracy")
            + f"<details><summary>prompt formats (exact prompt of the first question)</summary>{prompts}</details>"
            + f"<p class=\"note\">Per-side commands: <code>{_e(s['commands']['base'])}</code> / "
            f"<code>{_e(s['commands']['tuned'])}</code></p>")


def _html_gen(s: dict, images) -> str:
    samp = s.get("sampling") or {}
    head = (f"<p>{s['n']} contexts ({_e(s['lang'])}, turns: {_e(s['turns'])}) from {_e(', '.join(s['data']))}; "
            f"sampling T={_e(samp.get('temperature'))} top_p={_e(samp.get('top_p'))} top_k={_e(samp.get('top_k'))}, "
            f"max_new_tokens={_e(samp.get('max_new_tokens'))}, seed {_e(samp.get('seed'))}.</p>")
    rows = [[_e(r["metric"]), num(r["base"], 3), num(r["tuned"], 3),
             delta(r), _e(gen_paired(r)), _e(r["how"])] for r in s["rows"]]
    t = _table(["metric", "base", "tuned", "Δ", "paired Δ [95% CI]", "how"], rows, numeric={1, 2, 3, 4})
    f = s["finish"]
    notes = (f"<p class=\"note\">Scale: percent (0–100) except embedding cosine ([-1, 1]) and length (its unit). "
             "Paired Δ: mean of per-reply differences tuned − base on the same contexts; * its 95% interval "
             f"excludes 0. Finish (stop / length): base {f['base']['stop']} / {f['base']['length']}, tuned "
             f"{f['tuned']['stop']} / {f['tuned']['length']}; empty replies: base {s['empty_replies']['base']}, "
             f"tuned {s['empty_replies']['tuned']}.</p><p><b>Note:</b> {_e(LENGTH_NOTE)}</p>")
    return (head + t + notes + _img(images, f"{s['name']}.png", f"{s['name']} metrics")
            + f"<p class=\"note\">Per-side commands: <code>{_e(s['commands']['base'])}</code> / "
            f"<code>{_e(s['commands']['tuned'])}</code></p>")


def _html_imhi(s: dict, images) -> str:
    t = _table(IMHI_HEADER, [[_e(c) for c in _imhi_cells(r)] for r in s["rows"]], numeric=set(range(1, 10)))
    notes = "".join(f"<li>{_e(imhi_note(r))}</li>" for r in s["rows"])
    return (f"<p>{_e(_imhi_intro(s))}</p>" + t + f"<ul>{notes}</ul>"
            + _img(images, f"{s['name']}.png", f"{s['name']} weighted F1")
            + f"<p class=\"note\">Per-side commands: <code>{_e(s['commands']['base'])}</code> / "
            f"<code>{_e(s['commands']['tuned'])}</code></p>")


def _html_replies(s: dict, images) -> str:
    samp = s["sampling"]
    head = (f"<p>Both models, same seed ({samp['seed']}, re-seeded before every prompt), the recommended sampling "
            f"T={samp['temperature']} top_p={samp['top_p']} top_k={samp['top_k']}, max_new_tokens="
            f"{samp['max_new_tokens']}, thinking {'on' if s['thinking'] else 'off'}"
            + (f"; system prompt: {_e(s['system'])}" if s["system"] else "") + ".</p>")
    rows = []
    for i, r in enumerate(s["rows"], 1):
        cut = {k: " <i>(cut at max_new_tokens)</i>" if r["finish"][k] == "length" else "" for k in ("base", "tuned")}
        rows.append([str(i), _e(r["prompt"]), _e(r["base"]) + cut["base"], _e(r["tuned"]) + cut["tuned"]])
    h = "".join(f"<th>{c}</th>" for c in ("#", "prompt", "base", "tuned"))
    body = "".join(f"<tr><td class=\"n\">{a}</td><td class=\"reply\">{b}</td><td class=\"reply\">{c}</td>"
                   f"<td class=\"reply\">{d}</td></tr>" for a, b, c, d in rows)
    return head + f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _html_notes(s: dict, images) -> str:
    rows = [[_e(r["metric"]), _count_or_num(r["base"]), _count_or_num(r["tuned"]), delta(r), _e(gen_paired(r)),
             _e(r["how"])] for r in s["rows"]]
    t = _table(["metric", "base", "tuned", "Δ", "paired Δ [95% CI]", "how"], rows, numeric={1, 2, 3, 4})
    checks = "".join(f"<li>{_e(x)}</li>" for x in notes_checks(s))
    ex = ""
    for e in s["examples"]:
        cut = {k: " <i>(cut at max_tokens)</i>" if e["finish"][k] == "length" else "" for k in ("base", "tuned")}
        ex += (f"<h3>Case {_e(e['id'])}</h3><table><tbody>"
               f"<tr><th>case</th><td class=\"reply\">{_e(e['case'])}</td></tr>"
               f"<tr><th>key</th><td class=\"reply\">{_e(e['reference'])}</td></tr>"
               f"<tr><th>base draft</th><td class=\"reply\">{_e(e['base'] or '(empty)')}{cut['base']}</td></tr>"
               f"<tr><th>tuned draft</th><td class=\"reply\">{_e(e['tuned'] or '(empty)')}{cut['tuned']}</td></tr>"
               "</tbody></table>")
    rules = "".join(f"<li>{_e(k)}: {_e(v)}</li>" for k, v in s["rules"].items())
    return (f"<p>{_e(_notes_intro(s))}</p>" + t + f"<p class=\"note\">{_e(NOTES_SCALE)} {_e(NOTES_KEY)}</p>"
            + f"<ul>{checks}</ul>" + _img(images, f"{s['name']}.png", f"{s['name']} metrics") + ex
            + f"<details><summary>prompt and rules</summary><p>{_e(s['prompt_format'])}</p><pre>{_e(s['system'] or '')}"
            f"</pre><ul>{rules}</ul></details>"
            + f"<p class=\"note\">Per-side commands: <code>{_e(s['commands']['base'])}</code> / "
            f"<code>{_e(s['commands']['tuned'])}</code></p>")


# --- files ------------------------------------------------------------------------------------------------


def write_report(report: dict, out: str | Path) -> dict[str, Path]:
    """Write compare.json, the chart PNGs, report.md and report.html into `out`; returns their paths."""
    out = Path(out)
    images = charts(report)
    paths = {"json": out / "compare.json", "md": out / "report.md", "html": out / "report.html"}
    write_json_atomic(paths["json"], report)
    for name, data in images.items():
        with atomic_path(out / name) as tmp:
            tmp.write_bytes(data)
        paths[name] = out / name
    write_text_atomic(paths["md"], render_markdown(report, images))
    write_text_atomic(paths["html"], render_html(report, images))
    return paths
