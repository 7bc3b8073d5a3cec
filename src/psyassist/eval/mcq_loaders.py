"""Multiple-choice benchmark readers: one `MCQItem` shape for every layout.

    python -c "from psyassist.eval.mcq_loaders import load_mcq; print(len(load_mcq(['sample'])))"

Layouts (detected from the content, or forced with `fmt`):
- `psychcounsel`  JSON list of {id, question, options: {a: .., b: ..}, answer: "e"} — PsychCounsel-Bench
  (lower-case keys, 2–5 options) and the bundled sample (`sample`, with subject and lang).
- `cpsyexam`      JSON list of {id, subject_name, question_type: single|multi, question,
  options: {A..E}, answer: "BD"}; an empty trailing option ("E": "") is not an option.
- `cmmlu`         CSV with header `,Question,A,B,C,D,Answer` (first column: row number).
- `mmlu`          CSV without header: question,A,B,C,D,answer (hendrycks/test); duplicate rows kept,
  as lm-evaluation-harness keeps them.
- `generic`       CSV / JSON / JSONL with a column mapping, e.g.
  {"question": "stem", "options": "A,B,C,D", "answer": "key", "subject": "topic", "id": "qid"};
  `options` names one column per option, or one column holding a list or a {letter: text} dict.
Answers are letters ("b", "BD"); a generic answer may also be the exact text of one option.
A bad record is a DataError naming file, line (CSV/JSONL, 1-based) or record (JSON, 0-based),
field and what was expected; `skip_invalid` skips and counts them instead.
"""

from __future__ import annotations

import csv
import glob
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from psyassist.data.io import read_text
from psyassist.errors import DataError, PsyassistError

LETTERS = "ABCDEFGHIJ"
SUFFIXES = (".json", ".jsonl", ".csv", ".gz")


@dataclass
class MCQItem:
    id: str
    question: str
    options: list[str]  # in order: options[0] is A
    answer: str  # gold letter(s), upper case, sorted: "B" or "BD"
    subject: str = ""
    multi: bool = False  # several letters may be right (scored as an exact set)
    lang: str | None = None

    @property
    def letters(self) -> str:
        return LETTERS[: len(self.options)]

    @property
    def chance(self) -> float:
        # single: one of n; multi: one of the 2^n - 1 non-empty subsets (exact-set scoring)
        n = len(self.options)
        return 1 / (2**n - 1) if self.multi else 1 / n

    def to_dict(self) -> dict:
        return {"id": self.id, "question": self.question, "options": self.options, "answer": self.answer,
                "subject": self.subject, "multi": self.multi}


@dataclass
class LoadResult:
    items: list[MCQItem]
    files: list[str]
    layouts: dict[str, str] = field(default_factory=dict)  # file -> layout
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    warnings: list[str] = field(default_factory=list)


def _answer(raw, options: list[str], where: dict, *, multi_ok: bool) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise DataError(**where, field="answer", expected="option letter(s) such as 'B' or 'BD'", got=raw,
                        reason="bad_answer")
    s = raw.strip()
    letters = LETTERS[: len(options)]
    up = "".join(ch for ch in s.upper() if not ch.isspace() and ch not in ",，、")
    if up and all(ch in letters for ch in up) and (multi_ok or len(up) == 1):
        return "".join(sorted(set(up)))
    hits = [i for i, o in enumerate(options) if o.strip() == s]
    if len(hits) == 1:
        return letters[hits[0]]
    raise DataError(**where, field="answer", got=raw, reason="bad_answer",
                    expected=f"{'letters' if multi_ok else 'one letter'} among {letters} (or one option's exact text)")


def _options_from_dict(opts: dict, where: dict) -> list[str]:
    """{a: .., b: ..} or {A: .., ..., E: ""} → list in letter order; keys must be consecutive letters."""
    # Sorted by letter: PsychoBench-1000 has records written {c: .., a: .., d: .., b: ..}.
    # Values are kept as written (not stripped): lm-evaluation-harness inserts them verbatim too.
    pairs = sorted((str(k).strip().upper(), "" if v is None else str(v)) for k, v in opts.items())
    keys, vals = [k for k, _ in pairs], [v for _, v in pairs]
    while vals and not vals[-1].strip():  # CPsyExam: "E": "" means a 4-option question
        keys.pop()
        vals.pop()
    if keys != list(LETTERS[: len(keys)]) or len(keys) < 2 or not all(v.strip() for v in vals):
        raise DataError(**where, field="options", got=opts, reason="bad_options",
                        expected="2-10 non-empty options keyed A, B, C, ... in order (an empty last one is dropped)")
    return vals


def _item(rec: dict, i: int, path: Path, line: int | None, layout: str, mapping: dict | None) -> MCQItem:
    where = {"file": str(path), "line": line, "record": None if line else i}
    if not isinstance(rec, dict):
        raise DataError(**where, expected="an object with question, options and answer", got=rec,
                        reason="not_an_object")
    m = mapping or {}
    qkey = m.get("question", "question")
    question = rec.get(qkey)
    # An empty string is kept: PsychCounsel-Bench has 2 (of 500) whose stem was lost upstream; the
    # published numbers include them, so dropping them would change the denominator.  Counted in warnings.
    if not isinstance(question, str):
        raise DataError(**where, field=qkey, expected="a question string", got=question, reason="no_question")
    okey = m.get("options", "options")
    if "," in okey:
        cols = [c.strip() for c in okey.split(",")]
        missing = [c for c in cols if c not in rec]
        if missing:
            raise DataError(**where, field=missing[0], expected=f"option columns {cols}", got=sorted(rec),
                            reason="bad_options")
        options = _options_from_dict(dict(zip(LETTERS, (rec[c] for c in cols), strict=False)), where)
    else:
        raw = rec.get(okey)
        if isinstance(raw, str) and layout == "generic":
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError:
                pass
        if isinstance(raw, list):
            raw = dict(zip(LETTERS, raw, strict=False))
        if not isinstance(raw, dict):
            raise DataError(**where, field=okey, expected="a {letter: text} object or a list of options", got=raw,
                            reason="bad_options")
        options = _options_from_dict(raw, where)
    qtype = str(rec.get("question_type", "single")).strip().lower()
    akey = m.get("answer", "answer")
    answer = _answer(rec.get(akey), options, where, multi_ok=layout in ("cpsyexam", "generic"))
    # The gold answer decides: CPsyExam has a 'single' question whose answer is "AC" (load_file warns).
    multi = len(answer) > 1 or (layout == "cpsyexam" and qtype == "multi")
    ikey = m.get("id", "id")
    id_ = rec.get(ikey)
    subject = rec.get(m.get("subject", "subject_name" if layout == "cpsyexam" else "subject"))
    if layout == "cpsyexam" and subject:
        subject = f"{subject}/{qtype}"
    return MCQItem(id=str(id_) if id_ not in (None, "") else f"{path.stem}:{i}", question=question.strip(),
                   options=options, answer=answer, subject=str(subject or _file_subject(path)), multi=multi,
                   lang=rec.get("lang"))


def _file_subject(path: Path) -> str:
    """'professional_psychology' from MMLU's professional_psychology_test.csv or CMMLU's test_….csv."""
    stem = path.name.removesuffix(".gz").rsplit(".", 1)[0]
    for split in ("test", "val", "dev", "train"):
        stem = stem.removesuffix(f"_{split}").removeprefix(f"{split}_")
    return stem


def _csv_rows(path: Path, text: str, layout: str) -> list[tuple[int, dict]]:
    rows = list(csv.reader(io.StringIO(text)))
    if layout == "mmlu":
        out = []
        for n, r in enumerate(rows, 1):
            if not r:
                continue
            if len(r) != 6:
                raise DataError(str(path), "6 columns: question,A,B,C,D,answer (MMLU has no header)", line=n,
                                got=r, reason="bad_columns")
            out.append((n, {"question": r[0], "options": r[1:5], "answer": r[5]}))
        return out
    if not rows:
        return []
    header = [h.strip() for h in rows[0]]
    out = []
    # csv.reader folds quoted newlines into one row, so line numbers are row numbers (+1 for the header)
    for n, r in enumerate(rows[1:], 2):
        if not r:
            continue
        if len(r) != len(header):
            raise DataError(str(path), f"{len(header)} columns like the header", line=n, got=r,
                            reason="bad_columns")
        out.append((n, dict(zip(header, r, strict=True))))
    if layout == "cmmlu":
        out = [(n, {"id": f"{path.stem}:{r['']}" if r.get("") else None, "question": r["Question"],
                    "options": [r["A"], r["B"], r["C"], r["D"]], "answer": r["Answer"]}) for n, r in out]
    return out


def detect_layout(path: Path, text: str) -> str:
    """psychcounsel | cpsyexam | cmmlu | mmlu | generic, from the first record."""
    name = path.name.removesuffix(".gz")
    if name.endswith(".csv"):
        first = next(csv.reader(io.StringIO(text)), [])
        if [h.strip() for h in first] == ["", "Question", "A", "B", "C", "D", "Answer"]:
            return "cmmlu"
        if len(first) == 6 and first[5].strip().upper() in list(LETTERS[:4]):
            return "mmlu"
        return "generic"
    try:
        if name.endswith(".jsonl"):
            line = next((ln for ln in text.splitlines() if ln.strip()), "{}")
            first = json.loads(line)
        else:
            data = json.loads(text)
            first = data[0] if isinstance(data, list) and data else {}
    except json.JSONDecodeError:
        return "generic"  # the reader reports the exact position
    if isinstance(first, dict):
        if "question_type" in first and "subject_name" in first:
            return "cpsyexam"
        if isinstance(first.get("options"), dict) and "answer" in first and "question" in first:
            return "psychcounsel"
    return "generic"


def _records(path: Path, text: str) -> list[tuple[int | None, int, object]]:
    """(line or None, index, record) for JSON / JSONL text."""
    if path.name.removesuffix(".gz").endswith(".jsonl"):
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append((n, len(out), json.loads(line)))
            except json.JSONDecodeError as e:
                raise DataError(str(path), f"one JSON object per line ({e.msg})", line=n, got=line,
                                reason="bad_json") from e
        return out
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(str(path), f"valid JSON ({e.msg} at column {e.colno})", line=e.lineno,
                        reason="bad_json", hint="") from e
    if not isinstance(data, list):
        raise DataError(str(path), "a JSON list of questions", got=type(data).__name__, reason="not_a_list",
                        hint="")
    return [(None, i, r) for i, r in enumerate(data)]


def load_file(path: Path, layout: str = "auto", mapping: dict | None = None,
              skip_invalid: bool = False, result: LoadResult | None = None) -> LoadResult:
    res = result or LoadResult([], [])
    text, warning = read_text(path)
    if warning:
        res.warnings.append(warning)
    if layout == "auto":
        layout = "generic" if mapping else detect_layout(path, text)
    if layout == "generic" and not mapping and path.name.removesuffix(".gz").endswith(".csv"):
        raise DataError(str(path), "a known layout (CMMLU or MMLU CSV) or a column mapping "
                        "(--map question=COL --map options=A,B,C,D --map answer=COL)", reason="unknown_layout",
                        hint="")
    if path.name.removesuffix(".gz").endswith(".csv"):
        recs = [(n, i, r) for i, (n, r) in enumerate(_csv_rows(path, text, layout))]
    else:
        recs = _records(path, text)
    res.files.append(str(path))
    res.layouts[str(path)] = layout
    first = len(res.items)
    for line, i, rec in recs:
        try:
            res.items.append(_item(rec, i, path, line, layout, mapping))
        except DataError as e:
            if not skip_invalid:
                raise
            res.skipped[e.reason] += 1
    odd = [it.id for it in res.items[first:] if it.multi and it.subject.endswith("/single")]
    if odd:
        res.warnings.append(f"{path}: {len(odd)} question(s) marked single have several answers, scored as "
                            f"multi-answer: {', '.join(odd[:3])}")
    return res


def expand(sources: list[str]) -> list[Path]:
    """Files, directories (their *.json/*.jsonl/*.csv, sorted) and the name 'sample'."""
    out: list[Path] = []
    for s in sources:
        if s == "sample":
            from psyassist.data.samples import sample_mcq_path

            out.append(sample_mcq_path())
            continue
        p = Path(s)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.name.endswith(SUFFIXES))
            if not found:
                raise PsyassistError(f"{p}: no .json, .jsonl or .csv files in this directory")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            hits = sorted(Path(h) for h in glob.glob(s))
            if not hits:
                raise PsyassistError(f"{s}: no such file, directory or glob match (or 'sample' for the bundled items)")
            out.extend(hits)
    return out


def load_mcq(sources: list[str], layout: str = "auto", mapping: dict | None = None,
             skip_invalid: bool = False) -> LoadResult:
    """Read every source; item ids are made unique (a repeated id gets '#2', '#3', ...)."""
    res = LoadResult([], [])
    for path in expand(sources):
        load_file(path, layout, mapping, skip_invalid, res)
    if not res.items:
        raise PsyassistError(f"no questions in {', '.join(res.files) or sources}")
    seen: Counter = Counter()
    for it in res.items:
        seen[it.id] += 1
        if seen[it.id] > 1:
            it.id = f"{it.id}#{seen[it.id]}"
    empty = sum(1 for it in res.items if not it.question)
    if empty:
        res.warnings.append(f"{empty} questions have an empty stem (kept, as upstream scores them: options only)")
    dups = sum(c - 1 for c in seen.values() if c > 1)
    if dups:
        res.warnings.append(f"{dups} repeated question ids were renamed with a '#N' suffix")
    return res


def parse_mapping(pairs: list[str]) -> dict | None:
    """['question=stem', 'options=A,B,C,D', 'answer=key'] → dict (CLI --map)."""
    if not pairs:
        return None
    out = {}
    for p in pairs:
        key, sep, val = p.partition("=")
        if not sep or key not in ("question", "options", "answer", "subject", "id") or not val:
            raise PsyassistError(f"--map takes FIELD=COLUMN with FIELD one of question, options, answer, subject, id; "
                                 f"got {p!r}")
        out[key] = val
    if "question" not in out or "answer" not in out or "options" not in out:
        raise PsyassistError("--map needs at least question=..., options=... and answer=...")
    return out
