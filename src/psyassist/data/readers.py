"""Readers: every supported corpus layout → one list of `Conversation`s, format detected per file.

    psyassist data formats
    python -c "from psyassist.data.readers import read_conversations as r; print(len(r(['corpus.jsonl']).conversations))"

Detection (`fmt="auto"`), per file, `.gz` read transparently:
  * `.csv` → by the header: questionID + answerText = counsel_chat, query + gpt-3.5-turbo = imhi.
  * text that starts with `[` or `{` → JSON: a JSON array, one pretty-printed object, or JSONL
    (one object per line).  The first record's keys pick the reader (`messages` = openai,
    `conversations` = sharegpt, `dialog` = esconv, ...); a JSON list of strings is one CPsyCounE
    dialogue and a JSON list of {role, content} one upstream SMILECHAT dialogue.
  * `mapped` is never detected: `--format mapped --map messages=KEY --map role=KEY ...` (parse_map)
    reads any JSON layout of a list of turns; a wrong key is an error naming the record and the key.
  * other text (`.txt`) → CPsyCounD paragraphs prefixed 来访者：/心理咨询师：.
  Unknown or ambiguous shapes are a DataError that lists the keys seen and the formats that
  exist; `--format NAME` forces a reader.  Files found by scanning a directory whose shape is
  unknown (LICENSE.txt, a dataset card) are skipped with a warning instead.

Errors name the file, the line (1-based) or record (0-based) and the field in the format's
own terms (`conversations[2].from`, `history[0]`, `raw_text line 7`).  With skip_invalid a bad
record (one JSONL line, one CSV row) is skipped and counted by reason; JSON that is broken
inside an array or a single object loses the rest of that file (counted once as bad_json).
Speed: the 55,165-dialogue SMILECHAT JSONL (174 MB unpacked) is one json.loads per line plus
Conversation.from_dict per record, nothing else per record.
"""

from __future__ import annotations

import csv
import functools
import glob
import io
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psyassist.data.io import read_text
from psyassist.data.schema import Conversation
from psyassist.errors import DataError, PsyassistError
from psyassist.ui import console, track

FORMATS: dict[str, str] = {
    "openai": "{id?, messages:[{role, content}]} as JSONL or a JSON array (PsyDTCorpus: normalizedTag → tags)",
    "sharegpt": "{system?, conversations:[{from: human|user|gpt|assistant|system, value}]}",
    "xtuner": "{conversation:[{system?, input, output}]} (EmoLLM); the system prompt comes from the first turn",
    "alpaca": "{instruction, input?, output, system?, history?:[[question, answer], ...]}",
    "smilechat": "upstream SMILECHAT: one dialogue per .json file, [{role: client|counselor, content}]",
    "cpsycoun": "CPsyCounD case_<n>.txt (来访者：/心理咨询师： paragraphs) or its packed raw_text; "
                "CPsyCounE [\"求助者：…\", \"支持者：…\"] or {utterances}",
    "counsel_chat": "CounselChat CSV: user = questionTitle + questionText, assistant = answerText; "
                    "top-voted answer per question (or all)",
    "imhi": "IMHI / MentalLLaMA CSV (query → user, gpt-3.5-turbo → assistant); tag = dataset name",
    "prompt_response": "{prompt, response, system?} as JSONL or a JSON array",
    "esconv": "ESConv {situation, emotion_type, problem_type, dialog:[{speaker: usr|sys|seeker|supporter, "
              "content|text, annotation?{strategy}|strategy?}]}; consecutive turns of one speaker merged; "
              "situation and the other fields → meta, problem_type → tag, strategies → each reply's meta",
    "mapped": "any JSON/JSONL list-of-turns layout, keys named with --map messages=, role=, content=, user=, "
              "assistant= (role values), system=, id= (docs/data.md)",
}
_DETECTED_BY = {
    "openai": "key messages",
    "sharegpt": "key conversations",
    "xtuner": "key conversation",
    "alpaca": "keys instruction + output",
    "smilechat": "a JSON list of {role, content}",
    "cpsycoun": ".txt with speaker prefixes; key utterances or raw_text; a JSON list of strings",
    "counsel_chat": "CSV header questionID + answerText",
    "imhi": "CSV header query + gpt-3.5-turbo",
    "prompt_response": "keys prompt + response",
    "esconv": "key dialog; or a single key text holding such a record as a JSON string (thu-coai/esconv)",
    "mapped": "never detected: --format mapped --map ...",
}
# Keys that identify a JSON record's format; exactly one entry must match the first record.
_KEYS = {
    "openai": {"messages"},
    "sharegpt": {"conversations"},
    "xtuner": {"conversation"},
    "alpaca": {"instruction", "output"},
    "cpsycoun": {"utterances"},
    "prompt_response": {"prompt", "response"},
    "esconv": {"dialog"},
}
_CSV_FORMATS = ("counsel_chat", "imhi")
_DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".txt")
_FORMAT_HINT = "Pass --format NAME to choose the reader; `psyassist data formats` lists them."
_WS = re.compile(r"[ \t\r\n]*")


@dataclass
class ReadResult:
    conversations: list[Conversation] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    warnings: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    formats: dict[str, str] = field(default_factory=dict)  # file -> detected format


class _Bad(Exception):
    """A record-level problem; the read loop adds file, line and record and makes it a DataError."""

    def __init__(self, expected: str, field: str | None = None, got: object = None, reason: str = "invalid",
                 line: int | None = None):
        super().__init__(expected)
        self.expected, self.field, self.got, self.reason, self.line = expected, field, got, reason, line


# --- record converters: one source record → the on-disk dict Conversation.from_dict validates ----


def _typename(v: Any) -> Any:
    return v if v is None else type(v).__name__


def _obj(rec: Any) -> dict:
    if not isinstance(rec, dict):
        raise _Bad("a JSON object", None, _typename(rec), "not_an_object")
    return rec


def _str(v: Any, field_name: str, reason: str = "bad_content") -> str:
    if not isinstance(v, str):
        raise _Bad("a string", field_name, _typename(v), reason)
    return v


def _list(rec: dict, key: str, what: str) -> list:
    v = rec.get(key)
    if not isinstance(v, list):
        raise _Bad(f"a list of {what}", key, _typename(v), f"missing_{key}")
    return v


def _out(rec: dict, messages: list[dict], **extra: Any) -> dict:
    d = {"messages": messages, **extra}
    if "id" in rec:  # absent → Conversation.from_dict falls back to `<file stem>-<index>`
        d["id"] = rec["id"]
    return d


def _system(rec: dict, key: str = "system") -> list[dict]:
    s = rec.get(key)
    return [{"role": "system", "content": _str(s, key)}] if s else []


def _openai(rec: Any) -> Any:
    if isinstance(rec, dict) and "normalizedTag" in rec and "tags" not in rec:  # PsyDTCorpus
        return {**rec, "tags": [_str(rec["normalizedTag"], "normalizedTag", "bad_tags")]}
    return rec


_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "system": "system"}


def _sharegpt(rec: Any) -> dict:
    rec = _obj(rec)
    msgs = _system(rec)
    for i, turn in enumerate(_list(rec, "conversations", "{from, value} objects")):
        where = f"conversations[{i}]"
        if not isinstance(turn, dict):
            raise _Bad("an object with 'from' and 'value'", where, _typename(turn), "bad_message")
        frm = turn.get("from")
        role = _SHAREGPT_ROLES.get(frm) if isinstance(frm, str) else None
        if role is None:
            raise _Bad("one of human, user, gpt, assistant, system", f"{where}.from", frm,
                       "missing_role" if frm is None else "bad_role")
        msgs.append({"role": role, "content": _str(turn.get("value"), f"{where}.value")})
    return _out(rec, msgs)


def _xtuner(rec: Any) -> dict:
    rec = _obj(rec)
    msgs: list[dict] = []
    for i, turn in enumerate(_list(rec, "conversation", "{system?, input, output} objects")):
        where = f"conversation[{i}]"
        if not isinstance(turn, dict):
            raise _Bad("an object with 'input' and 'output'", where, _typename(turn), "bad_message")
        if i == 0 and turn.get("system"):  # XTuner: the system prompt sits on the first turn only
            msgs.append({"role": "system", "content": _str(turn["system"], f"{where}.system")})
        msgs.append({"role": "user", "content": _str(turn.get("input"), f"{where}.input")})
        msgs.append({"role": "assistant", "content": _str(turn.get("output"), f"{where}.output")})
    return _out(rec, msgs)


def _alpaca(rec: Any) -> dict:
    rec = _obj(rec)
    msgs = _system(rec)
    history = rec.get("history") or []
    if not isinstance(history, list):
        raise _Bad("a list of [question, answer] pairs", "history", _typename(history), "bad_history")
    for i, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise _Bad("a [question, answer] pair of strings", f"history[{i}]", pair, "bad_history")
        msgs += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    instruction = _str(rec.get("instruction"), "instruction")
    inp = _str(rec.get("input") or "", "input")
    # LLaMA-Factory's alpaca convention: instruction and input joined by one newline.
    msgs.append({"role": "user", "content": "\n".join(x for x in (instruction, inp) if x)})
    msgs.append({"role": "assistant", "content": _str(rec.get("output"), "output")})
    return _out(rec, msgs)


def _prompt_response(rec: Any) -> dict:
    rec = _obj(rec)
    msgs = _system(rec)
    msgs.append({"role": "user", "content": _str(rec.get("prompt"), "prompt")})
    msgs.append({"role": "assistant", "content": _str(rec.get("response"), "response")})
    return _out(rec, msgs)


_SMILECHAT_ROLES = {"client": "user", "counselor": "assistant", "user": "user", "assistant": "assistant",
                    "system": "system"}


def _smilechat(rec: Any) -> dict:
    if not isinstance(rec, list):
        raise _Bad("a JSON list of {role: client|counselor, content}", None, _typename(rec), "not_a_list")
    msgs = []
    for i, turn in enumerate(rec):
        if not isinstance(turn, dict):
            raise _Bad("an object with 'role' and 'content'", f"[{i}]", _typename(turn), "bad_message")
        role = turn.get("role")
        mapped = _SMILECHAT_ROLES.get(role) if isinstance(role, str) else None
        if mapped is None:
            raise _Bad("client or counselor", f"[{i}].role", role, "missing_role" if role is None else "bad_role")
        msgs.append({"role": mapped, "content": _str(turn.get("content"), f"[{i}].content")})
    return {"messages": msgs}


# CPsyCounD (来访者/心理咨询师) and CPsyCounE (求助者/支持者); full-width or ASCII colon.
_SPEAKER = re.compile(r"(来访者|心理咨询师|求助者|支持者)\s*[：:]")
_SPEAKER_ROLE = {"来访者": "user", "求助者": "user", "心理咨询师": "assistant", "支持者": "assistant"}
_SPEAKER_EXPECTED = "a paragraph starting with 来访者：/心理咨询师： (CPsyCounD) or 求助者：/支持者： (CPsyCounE)"


def _speaker_turns(paragraphs: list, where: Callable[[int], tuple[str | None, int | None]]) -> list[dict]:
    """Speaker-prefixed paragraphs → messages; an unprefixed paragraph (a stage direction such
    as （一段时间后）) continues the previous turn, joined by one newline as in the packed file."""
    msgs: list[dict] = []
    for i, para in enumerate(paragraphs):
        if not isinstance(para, str):
            field_name, line = where(i)
            raise _Bad("a string", field_name, _typename(para), "bad_content", line)
        text = para.strip()
        if not text:
            continue
        m = _SPEAKER.match(text)
        if m:
            msgs.append({"role": _SPEAKER_ROLE[m[1]], "content": text[m.end():].strip()})
        elif msgs:
            msgs[-1]["content"] += "\n" + text
        else:
            field_name, line = where(i)
            raise _Bad(_SPEAKER_EXPECTED, field_name, text[:40], "no_speaker", line)
    if not msgs:
        raise _Bad("at least one speaker-prefixed turn", None, None, "no_turns")
    return msgs


def _cpsycoun_text(text: str) -> dict:
    return {"messages": _speaker_turns(text.split("\n"), lambda i: (None, i + 1))}


def _cpsycoun(rec: Any) -> dict:
    if isinstance(rec, list):  # upstream CPsyCounE file: a bare list of utterances
        return {"messages": _speaker_turns(rec, lambda i: (f"[{i}]", None))}
    rec = _obj(rec)
    if "utterances" in rec:
        msgs = _speaker_turns(_list(rec, "utterances", "strings"), lambda i: (f"utterances[{i}]", None))
    elif "raw_text" in rec:  # packed CPsyCounD: the upstream case_<n>.txt verbatim
        msgs = _speaker_turns(_str(rec["raw_text"], "raw_text").split("\n"),
                              lambda i: (f"raw_text line {i + 1}", None))
    else:
        raise _Bad("'utterances' (CPsyCounE) or 'raw_text' (CPsyCounD)", "utterances", None,
                   "missing_utterances")
    topic, case = rec.get("topic"), rec.get("case")
    d = _out(rec, msgs, tags=[topic] if isinstance(topic, str) else [])
    if "id" not in rec and isinstance(topic, str) and isinstance(case, (str, int)):
        d["id"] = f"{topic}/{case}"  # same id as the upstream CPsyCounE/<topic>/<case>.json
    return d


# ESConv (Liu et al. 2021): the original ESConv.json says seeker/supporter + content + annotation.strategy;
# thu-coai/esconv on the hub says usr/sys + text + strategy, each record a JSON string in a `text` column.
_ESCONV_ROLES = {"usr": "user", "seeker": "user", "sys": "assistant", "supporter": "assistant"}


def _esconv(rec: Any) -> dict:
    rec = _obj(rec)
    if "dialog" not in rec and isinstance(rec.get("text"), str):
        try:
            rec = json.loads(rec["text"])
        except json.JSONDecodeError as e:
            raise _Bad(f"an ESConv record as a JSON string ({e.msg} at char {e.pos})", "text",
                       rec["text"][max(0, e.pos - 20):e.pos + 20], "bad_json") from None
        if not isinstance(rec, dict):
            raise _Bad("an ESConv record (a JSON object) as a JSON string", "text", _typename(rec),
                       "not_an_object")
    msgs: list[dict] = []
    for i, turn in enumerate(_list(rec, "dialog", "{speaker, content} objects")):
        where = f"dialog[{i}]"
        if not isinstance(turn, dict):
            raise _Bad("an object with 'speaker' and 'content' (or 'text')", where, _typename(turn),
                       "bad_message")
        spk = turn.get("speaker")
        role = _ESCONV_ROLES.get(spk) if isinstance(spk, str) else None
        if role is None:
            raise _Bad("one of usr, sys, seeker, supporter", f"{where}.speaker", spk,
                       "missing_role" if spk is None else "bad_role")
        key = "content" if "content" in turn else "text"
        text = _str(turn.get(key), f"{where}.{key}").strip()  # the original ends most turns with "\n"
        ann = turn.get("annotation") or {}
        if not isinstance(ann, dict):
            raise _Bad("an object such as {strategy: ...}", f"{where}.annotation", _typename(ann),
                       "bad_annotation")
        strategy = turn.get("strategy", ann.get("strategy"))
        if strategy is not None and not isinstance(strategy, str):
            raise _Bad("a strategy name", f"{where}.strategy", strategy, "bad_strategy")
        # A supporter often answers in several utterances, one strategy each: one turn, joined with "\n"
        # as `data prepare --same-role merge` joins them, every strategy kept in order.
        if msgs and msgs[-1]["role"] == role:
            msgs[-1]["content"] = "\n".join(x for x in (msgs[-1]["content"], text) if x)
        else:
            msgs.append({"role": role, "content": text})
        if strategy:
            msgs[-1].setdefault("meta", {"strategy": []})["strategy"].append(strategy)
    problem = rec.get("problem_type")
    return _out(rec, msgs, tags=[problem] if isinstance(problem, str) and problem else [],
                meta={k: v for k, v in rec.items() if k not in ("dialog", "id")})


# `--format mapped`: the keys of any list-of-turns layout (LLaMA-Factory's dataset_info columns + tags).
MAP_KEYS = {
    "messages": "the record's key holding the list of turns",
    "role": "the turn's key holding the speaker",
    "content": "the turn's key holding the text",
    "user": "speaker value(s) of the user, comma-separated",
    "assistant": "speaker value(s) of the assistant, comma-separated",
    "system": "the record's key holding the system prompt (optional)",
    "id": "the record's key holding its id (optional)",
}
_MAP_REQUIRED = ("messages", "role", "content", "user", "assistant")
MAP_EXAMPLE = "--map messages=dialog --map role=speaker --map content=text --map user=usr --map assistant=sys"


def parse_map(spec: Sequence[str] | dict | None) -> dict[str, str] | None:
    """`--map KEY=VALUE` pairs (CLI) or a {KEY: VALUE} dict (recipe `data.map`) → a checked dict."""
    if not spec:
        return None
    if isinstance(spec, dict):
        pairs = [(str(k), v) for k, v in spec.items()]
    else:
        pairs = [(p.partition("=")[0], p.partition("=")[2] if "=" in p else None) for p in spec]
    out: dict[str, str] = {}
    for key, val in pairs:
        if key not in MAP_KEYS:
            raise PsyassistError(f"--map {key}=...: unknown key {key!r}; the keys are "
                                 + "; ".join(f"{k} ({v})" for k, v in MAP_KEYS.items()))
        if not isinstance(val, str) or not val.strip():
            raise PsyassistError(f"--map {key}: expected {key}=VALUE with a non-empty VALUE "
                                 f"({MAP_KEYS[key]}), got {val!r}")
        if key in out:
            raise PsyassistError(f"--map {key} is given twice ({out[key]!r} and {val.strip()!r})")
        out[key] = val.strip()
    missing = [k for k in _MAP_REQUIRED if k not in out]
    if missing:
        raise PsyassistError(f"--format mapped needs --map {missing[0]}=... ({MAP_KEYS[missing[0]]}); "
                             f"e.g. {MAP_EXAMPLE}")
    both = set(out["user"].split(",")) & set(out["assistant"].split(","))
    if both:
        raise PsyassistError(f"--map: the speaker value {sorted(both)[0]!r} is given for both user and "
                             "assistant")
    return out


def _keys(d: dict) -> str:
    return ", ".join(sorted(map(str, d))[:20]) or "none"


def _mapped(rec: Any, m: dict[str, str]) -> dict:
    rec = _obj(rec)
    key, rk, ck = m["messages"], m["role"], m["content"]
    turns = rec.get(key)
    if not isinstance(turns, list):
        raise _Bad(f"a list of turns under '{key}' (--map messages={key}); this record's keys: {_keys(rec)}",
                   key, _typename(turns), "missing_messages")
    roles = {**dict.fromkeys(m["user"].split(","), "user"), **dict.fromkeys(m["assistant"].split(","), "assistant")}
    msgs: list[dict] = []
    if "system" in m:
        if m["system"] not in rec:
            raise _Bad(f"a system prompt under '{m['system']}' (--map system={m['system']}); this record's "
                       f"keys: {_keys(rec)}", m["system"], None, "missing_system")
        msgs += _system(rec, m["system"])
    for i, turn in enumerate(turns):
        where = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise _Bad(f"an object with '{rk}' and '{ck}'", where, _typename(turn), "bad_message")
        if rk not in turn or ck not in turn:
            k, flag = (rk, "role") if rk not in turn else (ck, "content")
            raise _Bad(f"a key '{k}' (--map {flag}={k}); this turn's keys: {_keys(turn)}", f"{where}.{k}",
                       None, f"missing_{flag}")
        val = turn[rk]
        role = roles.get(str(val)) if isinstance(val, (str, int)) and not isinstance(val, bool) else None
        if role is None:
            raise _Bad(f"a speaker value among {', '.join(roles)} (--map user=... --map assistant=...)",
                       f"{where}.{rk}", val, "bad_role")
        msgs.append({"role": role, "content": _str(turn[ck], f"{where}.{ck}")})
    out = {"messages": msgs}
    if "id" in m:
        if m["id"] not in rec:
            raise _Bad(f"an id under '{m['id']}' (--map id={m['id']}); this record's keys: {_keys(rec)}",
                       m["id"], None, "missing_id")
        out["id"] = rec[m["id"]]
    return out


_JSON_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "openai": _openai,
    "sharegpt": _sharegpt,
    "xtuner": _xtuner,
    "alpaca": _alpaca,
    "smilechat": _smilechat,
    "cpsycoun": _cpsycoun,
    "prompt_response": _prompt_response,
    "esconv": _esconv,
}

# An item is (line or None, record index or None, default id, record or a DataError to report).
Item = tuple[int | None, int | None, str, Any]
Convert = Callable[[Any], Any]


# --- JSON and JSONL --------------------------------------------------------------------------


def _bad_json(name: str, e: json.JSONDecodeError | RecursionError, line: int | None, record: int | None,
              text: str, what: str) -> DataError:
    if isinstance(e, RecursionError):
        return DataError(name, f"{what} (nesting too deep)", line=line, record=record, reason="bad_json")
    # Only a 60-character window around the error: a broken 10 MB line must not become a 10 MB message.
    return DataError(name, f"{what} ({e.msg} at column {e.colno}, char {e.pos})", line=e.lineno if line is None
                     else line, record=record, got=text[max(0, e.pos - 30):e.pos + 30], reason="bad_json")


def _unknown(name: str, keys: Sequence[str], found: list[str], line: int | None, record: int | None) -> DataError:
    shown = ", ".join(sorted(map(str, keys))[:20]) or "none"
    fit = f"fit several formats ({', '.join(found)})" if found else "fit none of the formats"
    known = "; ".join(f"{k} = {v}" for k, v in _DETECTED_BY.items())
    return DataError(name, f"a record of one known format, but its keys ({shown}) {fit}. Known: {known}",
                     line=line, record=record, reason="ambiguous_format" if found else "unknown_format",
                     hint=_FORMAT_HINT)


def _detect_record(rec: Any, name: str, line: int | None, record: int | None) -> str:
    if not isinstance(rec, dict):
        raise DataError(name, "records that are JSON objects", line=line, record=record, got=_typename(rec),
                        reason="unknown_format", hint=_FORMAT_HINT)
    keys = rec.keys()
    found = [f for f, need in _KEYS.items() if need <= keys]
    if not found and "raw_text" in keys:
        found = ["cpsycoun"]
    if not found and keys == {"text"} and '"dialog"' in str(rec["text"]):  # thu-coai/esconv: a JSON string
        found = ["esconv"]
    if len(found) != 1:
        raise _unknown(name, list(keys), found, line, record)
    return found[0]


def _jsonl_items(text: str, name: str, stem: str) -> Iterator[Item]:
    # split("\n"), not splitlines(): JSON strings may hold U+2028 or \x1c, which splitlines breaks on.
    idx = 0
    for ln, line in enumerate(text.split("\n"), 1):
        if not line or line.isspace():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as e:
            rec = _bad_json(name, e, ln, idx, line, "valid JSON on every line")
        yield ln, idx, f"{stem}-{idx}", rec
        idx += 1


def _json_items(text: str, start: int, path: Path, name: str, stem: str,
                fmt: str) -> tuple[str, Iterator[Item], Convert]:
    """JSON array / single object / JSONL → (format, items, converter); auto looks at the first good record."""
    jsonl = False
    if text[start] == "{":
        end = text.find("\n", start)
        try:
            json.loads(text[start:] if end < 0 else text[start:end])
            jsonl = True
        except (json.JSONDecodeError, RecursionError):
            # A pretty-printed object, or JSONL whose first line is broken: then the next line is a
            # whole object (a pretty-printed object's second line never is), or the document's
            # parse error lies on the first line.
            nxt = ""
            while end >= 0 and not nxt.strip():
                begin, end = end + 1, text.find("\n", end + 1)
                nxt = text[begin:] if end < 0 else text[begin:end]
            try:
                jsonl = isinstance(json.loads(nxt), dict)
            except (json.JSONDecodeError, RecursionError):
                pass
            if not jsonl:
                try:
                    json.loads(text)
                except json.JSONDecodeError as e:
                    jsonl = e.lineno == 1 + text.count("\n", 0, start)
                except RecursionError:
                    jsonl = True
    if jsonl:
        items = _jsonl_items(text, name, stem)
        if fmt == "auto":
            head: list[Item] = []
            for item in items:
                head.append(item)
                if not isinstance(item[3], DataError):
                    fmt = _detect_record(item[3], name, item[0], item[1])
                    break
            items = _chain(head, items)
        return fmt, items, _JSON_CONVERTERS.get(fmt, _openai)  # all lines broken: fmt stays auto

    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise _bad_json(name, e, None, None, text, "a valid JSON document") from None
    if isinstance(doc, dict):
        fmt = fmt if fmt != "auto" else _detect_record(doc, name, None, 0)
        return fmt, iter([(None, 0, f"{stem}-0", doc)]), _JSON_CONVERTERS.get(fmt, _openai)
    if not isinstance(doc, list):
        raise DataError(name, "a JSON array or object", got=_typename(doc), reason="unknown_format",
                        hint=_FORMAT_HINT)
    first = doc[0] if doc else None
    # Upstream one-dialogue-per-file layouts: the whole list is one conversation, id = file stem.
    if fmt == "smilechat" or (fmt == "auto" and isinstance(first, dict) and "role" in first
                              and "messages" not in first):
        return "smilechat", iter([(None, None, stem, doc)]) if doc else iter(()), _smilechat
    if fmt in ("auto", "cpsycoun") and isinstance(first, str):
        topic = path.parent.name  # upstream CPsyCounE/<topic>/<n>.json: the folder is the topic

        def convert(rec: list) -> dict:
            return {**_cpsycoun(rec), "tags": [topic]}

        return "cpsycoun", iter([(None, None, f"{topic}/{stem}", doc)]), convert
    if fmt == "auto" and doc:
        fmt = _detect_record(first, name, None, 0)
    return fmt, ((None, i, f"{stem}-{i}", rec) for i, rec in enumerate(doc)), _JSON_CONVERTERS.get(fmt, _openai)


def _chain(head: list[Item], rest: Iterator[Item]) -> Iterator[Item]:
    yield from head
    yield from rest


# --- CSV ---------------------------------------------------------------------------------------

# Columns each CSV format needs; the first two identify it when detecting.
_CSV_COLUMNS = {
    "counsel_chat": ("questionID", "answerText", "questionTitle", "questionText", "topic", "upvotes", "split"),
    "imhi": ("query", "gpt-3.5-turbo"),
}


def _csv_items(text: str, path: Path, name: str, stem: str, fmt: str,
               counsel_chat: str) -> tuple[str, Iterator[Item], Convert]:
    # The default limit (131,072 characters per field) rejects long posts; the setting is process-wide.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except csv.Error as e:
        raise DataError(name, f"a CSV header ({e})", line=1, reason="bad_csv") from None
    if fmt == "auto":
        found = [f for f, cols in _CSV_COLUMNS.items() if set(cols[:2]) <= set(header)]
        if len(found) != 1:
            raise _unknown(name, header, found, 1, None)
        fmt = found[0]
    missing = [c for c in _CSV_COLUMNS[fmt] if c not in header]
    if missing:
        raise DataError(name, f"a CSV header with the columns {', '.join(_CSV_COLUMNS[fmt])} (format {fmt})",
                        line=1, field=missing[0], got=header, reason="missing_column", hint=_FORMAT_HINT)
    cols = {c: header.index(c) for c in _CSV_COLUMNS[fmt]}
    if fmt == "imhi":
        # IMHI test files are named by dataset (DR.csv); training files are <dataset>/train.csv.
        split = stem.lower() in ("train", "val", "valid", "validation", "test", "dev")
        dataset = path.parent.name if split else stem
        prefix = f"{path.parent.name}/{stem}"  # test_complete/DR-0 and test_instruction/DR-0 differ
        return fmt, _csv_rows(reader, name, prefix, cols), lambda rec: _imhi(rec, dataset)
    items = _csv_rows(reader, name, stem, cols)
    if counsel_chat == "top":
        items = _top_answers(items, name, stem)
    return fmt, items, _counsel_chat


def _csv_rows(reader, name: str, prefix: str, cols: dict[str, int]) -> Iterator[Item]:
    width = max(cols.values()) + 1
    idx = 0
    while True:
        line = reader.line_num + 1  # a quoted field may span lines: the row starts here
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:  # the csv module cannot resynchronise after this: stop the file
            yield line, idx, "", DataError(name, f"valid CSV ({e}); the rest of the file is not read",
                                           line=line, record=idx, reason="bad_csv")
            return
        if not row:
            continue
        if len(row) < width:
            rec: Any = DataError(name, f"at least {width} columns", line=line, record=idx, got=len(row),
                                 reason="bad_row")
        else:
            rec = {c: row[i] for c, i in cols.items()}
        yield line, idx, f"{prefix}-{idx}", rec
        idx += 1


def _top_answers(items: Iterator[Item], name: str, stem: str) -> Iterator[Item]:
    """Keep the most up-voted answer per questionID (the first one on ties), in first-seen order."""
    best: dict[str, tuple[int, Item]] = {}
    for item in items:
        line, idx, _, rec = item
        if isinstance(rec, DataError):
            yield item
            continue
        try:
            votes = int(rec["upvotes"])
        except ValueError:
            yield line, idx, "", DataError(name, "an integer", line=line, record=idx, field="upvotes",
                                           got=rec["upvotes"], reason="bad_upvotes")
            continue
        qid = rec["questionID"]
        if qid not in best or votes > best[qid][0]:  # a dict keeps the first-seen position on update
            best[qid] = (votes, (line, idx, f"{stem}-q{qid}", rec))
    for _, item in best.values():
        yield item


def _counsel_chat(rec: dict) -> dict:
    try:
        votes = int(rec["upvotes"])
    except ValueError:
        raise _Bad("an integer", "upvotes", rec["upvotes"], "bad_upvotes") from None
    question = "\n\n".join(x for x in (rec["questionTitle"].strip(), rec["questionText"].strip()) if x)
    answer = rec["answerText"].strip()
    if not question:
        raise _Bad("a question title or text", "questionText", "", "empty_question")
    if not answer:
        raise _Bad("a non-empty answer", "answerText", "", "empty_answer")
    topic = rec["topic"].strip()
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            "tags": [topic] if topic else [],
            "meta": {"questionID": rec["questionID"], "upvotes": votes, "split": rec["split"]}}


def _imhi(rec: dict, dataset: str) -> dict:
    return {"messages": [{"role": "user", "content": rec["query"]},
                         {"role": "assistant", "content": rec["gpt-3.5-turbo"]}],
            "tags": [dataset]}


# --- speaker-prefixed text (.txt) ----------------------------------------------------------------


def _text_items(text: str, name: str, stem: str, fmt: str) -> tuple[str, Iterator[Item], Convert]:
    if fmt == "auto":
        paragraphs = [p.strip() for p in text[:20_000].split("\n") if p.strip()][:5]
        if not any(_SPEAKER.match(p) for p in paragraphs):
            raise DataError(name, "JSON, CSV, or CPsyCounD text whose paragraphs start with 来访者：/心理咨询师：",
                            got=paragraphs[0][:40] if paragraphs else "", reason="unknown_format", hint=_FORMAT_HINT)
    return "cpsycoun", iter([(None, None, stem, text)]), _cpsycoun_text


# --- files and sources ------------------------------------------------------------------------


def _natural(p: Path) -> list:
    # case_2.txt before case_10.txt; re.split with a group alternates text and digits, so
    # ints are only ever compared with ints.
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]


def _is_data_file(p: Path, root: Path) -> bool:
    name = p.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    hidden = any(part.startswith(".") for part in p.relative_to(root).parts)  # also our .NAME.tmp files
    return not hidden and name.endswith(_DATA_SUFFIXES) and p.is_file()


def _expand(sources: Sequence[str | Path]) -> list[tuple[Path, bool]]:
    """Files to read, in order, each with whether it was found by scanning a directory."""
    out: dict[Path, bool] = {}

    def scan(d: Path) -> None:
        files = sorted((p for p in d.rglob("*") if _is_data_file(p, d)), key=_natural)
        if not files:
            raise DataError(str(d), f"a directory holding data files ({', '.join(_DATA_SUFFIXES)}, optionally .gz)",
                            reason="no_files", hint="")
        for p in files:
            out.setdefault(p, True)

    for s in sources:
        p = Path(s)
        if p.is_dir():
            scan(p)
        elif p.exists():
            out[p] = False
        elif any(c in str(s) for c in "*?["):
            matches = sorted(glob.glob(str(s), recursive=True), key=lambda m: _natural(Path(m)))
            if not matches:
                raise DataError(str(s), "at least one file matching this pattern", reason="missing_file", hint="")
            for m in map(Path, matches):
                if m.is_dir():
                    scan(m)
                else:
                    out[m] = False
        else:
            raise DataError(str(s), "an existing file, directory or glob pattern", reason="missing_file", hint="")
    return list(out.items())


def expand_sources(sources: Sequence[str | Path]) -> list[Path]:
    """Files, directories (recursive: .json/.jsonl/.csv/.txt, optionally .gz) and globs → files."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    return [p for p, _ in _expand(sources)]


def _read_file(path: Path, fmt: str, scanned: bool, res: ReadResult, skip_invalid: bool, counsel_chat: str,
               progress: bool, mapping: dict[str, str] | None = None) -> None:
    name = str(path)
    base = Path(path.name[:-3] if path.name.lower().endswith(".gz") else path.name)
    stem, suffix = base.stem, base.suffix.lower()
    try:
        text, warning = read_text(path)  # bad gzip or encoding: a whole-file error like any other
        if warning:
            res.warnings.append(warning)
        start = _WS.match(text).end()
        if fmt in _CSV_FORMATS or (fmt == "auto" and suffix == ".csv"):
            fmt, items, convert = _csv_items(text, path, name, stem, fmt, counsel_chat)
        elif start < len(text) and text[start] in "[{":
            fmt, items, convert = _json_items(text, start, path, name, stem, fmt)
        elif start == len(text):
            items, convert = iter(()), _openai
        elif fmt in ("auto", "cpsycoun"):
            fmt, items, convert = _text_items(text, name, stem, fmt)
        else:
            raise DataError(name, f"JSON (an array, an object, or one object per line) for format {fmt}",
                            got=text[start:start + 30], reason="bad_json", hint=_FORMAT_HINT)
        if fmt == "mapped":
            convert = functools.partial(_mapped, m=mapping)
    except DataError as e:
        if scanned and e.reason in ("unknown_format", "ambiguous_format"):
            res.warnings.append(f"{name}: not read, not a known format (pass --format NAME to read it)")
            return
        if not skip_invalid:
            raise
        res.skipped[e.reason] += 1
        res.warnings.append(f"{name}: skipped the whole file: {e.where()}: expected {e.expected}")
        return
    res.files.append(name)
    res.formats[name] = fmt
    if progress:
        items = track(items, f"reading {path.name}")
    out = res.conversations
    seen, skipped, first = 0, Counter(), None
    for line, idx, default_id, rec in items:
        seen += 1
        try:
            if isinstance(rec, DataError):
                raise rec
            try:
                conv = Conversation.from_dict(convert(rec), file=name, line=line, record=idx, default_id=default_id)
            except _Bad as b:
                raise DataError(name, b.expected, line=b.line or line, record=idx, field=b.field, got=b.got,
                                reason=b.reason) from None
        except DataError as e:
            if not skip_invalid:
                raise
            skipped[e.reason] += 1
            first = first or e
            continue
        if not conv.source:  # a record that already names its source (our own output) keeps it
            conv.source = name
        out.append(conv)
    if not seen:
        e = DataError(name, "at least one record, found none (the file is empty)", reason="no_records", hint="")
        if not skip_invalid:
            raise e
        skipped[e.reason] += 1
        first = e
    if skipped:
        res.skipped.update(skipped)
        counts = ", ".join(f"{k} {v}" for k, v in skipped.most_common())
        res.warnings.append(f"{name}: skipped {sum(skipped.values())} record(s) ({counts}); "
                            f"first at {first.where()}: expected {first.expected}")


def read_conversations(sources, fmt: str = "auto", *, skip_invalid: bool = False,
                       counsel_chat: str = "top", show_progress: bool = True,
                       mapping: Sequence[str] | dict | None = None) -> ReadResult:
    """Read every file of `sources` (files, directories, globs) into one ReadResult.

    fmt: "auto" (detect per file) or a FORMATS name forced on every file.
    counsel_chat: "top" keeps the most up-voted answer per question, "all" every answer.
    mapping: the keys of format "mapped" (see parse_map); given with fmt "auto", it means "mapped".
    Raises DataError on the first bad record unless skip_invalid, and when nothing was read.
    """
    if fmt != "auto" and fmt not in FORMATS:
        raise PsyassistError(f"unknown format {fmt!r}; use auto or one of: {', '.join(FORMATS)}")
    mapping = parse_map(mapping)
    if mapping and fmt not in ("auto", "mapped"):
        raise PsyassistError(f"--map names the keys of --format mapped; it does not apply to --format {fmt}")
    fmt = "mapped" if mapping else fmt
    if fmt == "mapped" and not mapping:
        raise PsyassistError(f"--format mapped needs the keys of the layout, e.g. {MAP_EXAMPLE}")
    if counsel_chat not in ("top", "all"):
        raise PsyassistError(f"counsel_chat must be 'top' or 'all', got {counsel_chat!r}")
    if isinstance(sources, (str, Path)):
        sources = [sources]
    files = _expand(sources)
    res = ReadResult()
    many = show_progress and len(files) > 1  # one bar at a time: over files, or over one file's records
    for path, scanned in (track(files, "reading files") if many else files):
        _read_file(path, fmt, scanned, res, skip_invalid, counsel_chat, show_progress and not many, mapping)
    if not res.conversations:
        where = str(files[0][0]) if len(files) == 1 else f"{len(files)} files ({files[0][0]}, ...)"
        skipped = ", ".join(f"{k} {v}" for k, v in res.skipped.most_common()) or "none"
        raise DataError(where, f"at least one valid conversation (skipped: {skipped})", reason="no_records",
                        hint="; ".join(res.warnings[:3]))
    ids = Counter(c.id for c in res.conversations)
    if len(ids) < len(res.conversations):
        dups = [k for k, v in ids.items() if v > 1]
        res.warnings.append(f"{len(dups)} id(s) occur more than once (e.g. {dups[0]!r}); ids are kept as given, "
                            "so tell records apart by source")
    return res


def describe_formats() -> None:
    """Print the table of formats (`psyassist data formats`)."""
    from rich.table import Table
    from rich.text import Text  # plain Text: "[[question, answer]]" is not Rich markup

    table = Table(title="Input formats (--format NAME; default auto detects per file)", show_lines=False)
    table.add_column("format", style="bold", no_wrap=True)
    table.add_column("layout")
    table.add_column("detected by")
    for name, desc in FORMATS.items():
        table.add_row(name, Text(desc), Text(_DETECTED_BY[name]))
    console.print(table)
    console.print("Files may be .gz. A directory is read recursively (.json, .jsonl, .csv, .txt); "
                  "a glob reads every match.", markup=False)
