"""Batch generation: a reply for every conversation of a file, batched, resumable, timed.

    psyassist generate --model default --input prepared/validation.jsonl --output results.json

Input: any corpus the readers understand (`psyassist data formats`): the conversation up
to its LAST user turn is the context and the assistant turn(s) after it, if any, the
`reference`; with `per_turn` every assistant turn becomes one record (`ID#1`, `ID#2`, …:
the context before it, the turn itself as reference), the layout of PsyDTCorpus's
single-turn test split.  A JSONL of `{id, prompt, system?, reference?}` is read too.

Output: ONE JSON file `{"meta": {...}, "records": [...]}` rewritten atomically after every
batch (a crash or Ctrl-C loses at most the batch in flight).  Each record holds id,
prompt (the exact rendered text), reply, reasoning (Qwen3 thinking, else null),
reference, finish (stop / length), prompt_tokens, new_tokens, seconds (the wall time of
its batch's generate call), batch, seed and sampling.  Running the same command again
skips the ids already in the file; settings that differ from the file's are refused.

Seeding: batch k (input order, `batch_size` records each) is generated right after
torch.manual_seed(seed + k), so a run that was killed and resumed gives exactly the
replies of an uninterrupted run with the same batch size on the same hardware.
Batches are formed in input order, not sorted by length: left padding costs little
next to decoding, and the seed of a record must not depend on the other records.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import signal
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from psyassist import __version__
from psyassist.data.io import read_text, write_json_atomic
from psyassist.errors import DataError, PsyassistError
from psyassist.infer.engine import Loaded, Sampling, generate, split_think
from psyassist.render import TemplateError
from psyassist.ui import console, track, warn

FORMAT_VERSION = 1
# Settings that must match for a resumed run to continue a results file.
RESUME_KEYS = ("model", "adapter", "thinking", "sampling", "system_prompt", "per_turn")


@dataclass
class Item:
    id: str
    messages: list[dict]  # the context: ends with a user turn
    reference: str | None


# --- input ------------------------------------------------------------------------------------


def _is_prompt_jsonl(path: Path) -> bool:
    """A JSONL whose first record has 'prompt' but neither 'response' nor 'messages'."""
    if not path.name.removesuffix(".gz").endswith(".jsonl"):
        return False
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:  # the first line only: corpora are big
            first = b""
            while not first.strip() and (line := f.readline()):
                first = line
    except (OSError, EOFError):  # a broken .gz: the readers report it properly
        return False
    try:
        rec = json.loads(first.decode("utf-8-sig", "replace"))
    except json.JSONDecodeError:
        return False
    return isinstance(rec, dict) and "prompt" in rec and not {"response", "messages"} & rec.keys()


def _read_prompts(path: Path, skip_invalid: bool, skipped: Counter) -> list[Item]:
    text, warning = read_text(path)
    if warning:
        warn(warning)
    items, idx = [], 0
    for ln, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(str(path), f"valid JSON on every line ({e.msg})", line=ln, record=idx,
                                got=line[:40], reason="bad_json") from None
            if not isinstance(rec, dict):
                raise DataError(str(path), "a JSON object {id, prompt}", line=ln, record=idx,
                                got=type(rec).__name__, reason="not_an_object")
            for key, required in (("prompt", True), ("system", False), ("reference", False)):
                if (required or rec.get(key) is not None) and not isinstance(rec.get(key), str):
                    raise DataError(str(path), "a string", line=ln, record=idx, field=key,
                                    got=rec.get(key), reason="bad_content")
            rid = rec.get("id", f"{path.name.split('.')[0]}-{idx}")
            if not isinstance(rid, (str, int)) or isinstance(rid, bool):
                raise DataError(str(path), "a string or number", line=ln, record=idx, field="id", got=rid,
                                reason="bad_id")
        except DataError as e:
            if not skip_invalid:
                raise
            skipped[e.reason] += 1
            idx += 1
            continue
        msgs = ([{"role": "system", "content": rec["system"]}] if rec.get("system") else []) + \
            [{"role": "user", "content": rec["prompt"]}]
        items.append(Item(str(rid), msgs, rec.get("reference")))
        idx += 1
    return items


def _items_of(conv, per_turn: bool) -> list[Item]:
    msgs = [m.to_dict() for m in conv.messages]
    if per_turn:
        out, k = [], 0
        for j, m in enumerate(msgs):
            if m["role"] == "assistant":
                k += 1
                if j and msgs[j - 1]["role"] == "user":  # a reply with no user turn before it has no context
                    out.append(Item(f"{conv.id}#{k}", msgs[:j], m["content"]))
        return out
    last_user = max((j for j, m in enumerate(msgs) if m["role"] == "user"), default=-1)
    if last_user < 0:
        return []
    after = [m["content"] for m in msgs[last_user + 1:] if m["role"] == "assistant"]
    return [Item(conv.id, msgs[:last_user + 1], "\n".join(after) if after else None)]


def read_items(sources: list[str], *, fmt: str = "auto", skip_invalid: bool = False, per_turn: bool = False,
               system_prompt: str | None = None,
               mapping: list[str] | dict | None = None) -> tuple[list[Item], Counter]:
    """The records to generate for and the skipped counts by reason.

    Order: the {id, prompt} JSONL files first, then the corpora, each in the order given.
    `mapping` (--map) reads the corpora with format "mapped" (readers.parse_map).
    """
    from psyassist.data.readers import expand_sources, read_conversations

    skipped: Counter = Counter()
    items: list[Item] = []
    files = expand_sources(sources)
    prompt_files = [p for p in files if fmt == "auto" and not mapping and _is_prompt_jsonl(p)]
    for p in prompt_files:
        items += _read_prompts(p, skip_invalid, skipped)
    rest = [str(p) for p in files if p not in prompt_files]
    if rest:
        res = read_conversations(rest, fmt, skip_invalid=skip_invalid, show_progress=False, mapping=mapping)
        for w in res.warnings:
            warn(w)
        skipped.update(res.skipped)
        for conv in res.conversations:
            got = _items_of(conv, per_turn)
            if not got:
                if not skip_invalid:
                    raise DataError(conv.source, "at least one user turn to reply to" +
                                    (" followed by an assistant turn" if per_turn else ""),
                                    field=f"messages (id {conv.id!r})", reason="no_user_turn")
                skipped["no_user_turn"] += 1
            items += got
    if system_prompt:
        for it in items:
            if it.messages[0]["role"] != "system":
                it.messages.insert(0, {"role": "system", "content": system_prompt})
    seen: dict[str, int] = {}
    for i, it in enumerate(items):
        if it.id in seen:
            raise DataError(str(sources[0]) if len(sources) == 1 else ", ".join(map(str, sources)),
                            "unique ids (a results file is resumed by id)", record=i, field="id", got=it.id,
                            reason="duplicate_id", hint=f"The same id is record {seen[it.id]}; give records "
                            "distinct ids.")
        seen[it.id] = i
    if not items:
        raise DataError(", ".join(map(str, sources)), "at least one record to reply to", reason="no_records",
                        hint="")
    return items, skipped


# --- output -----------------------------------------------------------------------------------


def _read_results(path: Path) -> dict | None:
    if not path.exists():
        return None
    text, _ = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(str(path), f"a results file written by psyassist generate ({e.msg})", line=e.lineno,
                        reason="bad_json", hint="Pass --restart to overwrite it, or choose another --output.") from e
    if not (isinstance(data, dict) and isinstance(data.get("meta"), dict) and isinstance(data.get("records"), list)
            and all(isinstance(r, dict) and isinstance(r.get("id"), str) for r in data["records"])):
        raise DataError(str(path), "a results file {meta, records: [{id, ...}]} written by psyassist generate",
                        reason="bad_results", hint="Pass --restart to overwrite it, or choose another --output.")
    return data


def _settings(loaded: Loaded, sampling: Sampling, system_prompt: str | None, per_turn: bool) -> dict:
    return {"model": loaded.name, "adapter": loaded.adapter, "thinking": loaded.thinking,
            "sampling": sampling.to_dict(), "system_prompt": system_prompt, "per_turn": per_turn}


def _check_resumable(path: Path, old: dict, new: dict) -> None:
    diff = [k for k in RESUME_KEYS if old.get(k) != new.get(k)]
    if diff:
        shown = "; ".join(f"{k}: file {old.get(k)!r}, now {new.get(k)!r}" for k in diff)
        raise PsyassistError(f"{path} was generated with other settings ({shown}). Resuming would mix two "
                             "runs: pass --restart to start over, or choose another --output.")


def _inject_fault(batches_written: int) -> None:
    """Test hook, as in training: PSYASSIST_FAULT="N:KILL|INT" kills or interrupts this process after N batches."""
    spec = os.environ.get("PSYASSIST_FAULT")
    if spec:
        at, _, sig = spec.partition(":")
        if int(at) == batches_written:
            os.kill(os.getpid(), signal.SIGKILL if sig == "KILL" else signal.SIGINT)


# --- the run ----------------------------------------------------------------------------------


def run_generate(loaded: Loaded, items: list[Item], output: Path, *, sampling: Sampling, batch_size: int = 8,
                 restart: bool = False, system_prompt: str | None = None, per_turn: bool = False,
                 inputs: list[str] | None = None) -> dict:
    """Generate what `output` lacks, writing it after every batch; returns the results dict."""
    if batch_size < 1:
        raise PsyassistError(f"--batch-size must be at least 1, got {batch_size}")
    sampling.generate_kwargs()  # refuse greedy-without-allow and bad values before any work
    output = Path(output)
    settings = _settings(loaded, sampling, system_prompt, per_turn)
    old = None if restart else _read_results(output)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    if old is not None:
        _check_resumable(output, old["meta"], settings)
        meta, records = old["meta"], old["records"]
    else:
        meta, records = {"format": FORMAT_VERSION, "psyassist": __version__, "created": now, **settings,
                         "perf": {"seconds": 0.0, "new_tokens": 0, "records": 0, "batches": 0}}, []
    d = loaded.describe()
    meta.update({"updated": now, "inputs": inputs or meta.get("inputs"), "merged_from": d["merged_from"],
                 "device": d["device"], "dtype": d["dtype"], "batch_size": batch_size})
    done = {r["id"] for r in records}
    order = {it.id: i for i, it in enumerate(items)}
    batches = [(k, [it for it in items[s:s + batch_size] if it.id not in done])
               for k, s in enumerate(range(0, len(items), batch_size))]
    batches = [(k, b) for k, b in batches if b]
    todo = sum(len(b) for _, b in batches)
    skipped_done = len(items) - todo
    if skipped_done:
        console.print(f"{output}: {skipped_done} of {len(items)} records already generated, {todo} to go",
                      highlight=False, soft_wrap=True)
    prompts = {}
    for _, b in batches:
        for it in b:
            try:
                prompts[it.id] = loaded.renderer.inference_prompt(it.messages)
            except TemplateError as e:
                raise PsyassistError(f"record {it.id!r}: {e}") from e
    perf, finishes, written = meta["perf"], Counter(), 0
    new_records: list[dict] = []
    try:
        for k, b in track(batches, "generating", total=len(batches)):
            seed = (sampling.seed or 0) + k
            torch.manual_seed(seed)
            gens = generate(loaded, [prompts[it.id] for it in b], sampling)
            for it, g in zip(b, gens, strict=True):
                # Split even with thinking off: a <think> block there is a finding (pitfall 2), not a reply.
                reasoning, answer = split_think(g.text)
                rec = {"id": it.id, "prompt": prompts[it.id], "reply": answer, "reasoning": reasoning,
                       "reference": it.reference, "finish": g.finish, "prompt_tokens": g.prompt_tokens,
                       "new_tokens": g.new_tokens, "seconds": g.seconds, "batch": k, "seed": seed,
                       "sampling": settings["sampling"]}
                new_records.append(rec)
                finishes[g.finish] += 1
            perf["seconds"] = round(perf["seconds"] + gens[0].seconds, 4)
            perf["new_tokens"] += sum(g.new_tokens for g in gens)
            perf["records"] += len(gens)
            perf["batches"] += 1
            perf["new_tokens_per_s"] = round(perf["new_tokens"] / perf["seconds"], 2) if perf["seconds"] else None
            records = sorted(records + new_records, key=lambda r: order.get(r["id"], len(order)))
            new_records = []
            write_json_atomic(output, {"meta": meta, "records": records})
            written += 1
            _inject_fault(written)
    except KeyboardInterrupt:
        console.print(f"[yellow]stopped[/]: {len(records)} of {len(items)} records are in {output}; "
                      "run the same command to resume.", highlight=False, soft_wrap=True)
        raise
    if old is None and not batches:
        write_json_atomic(output, {"meta": meta, "records": records})
    return {"meta": meta, "records": records, "generated": todo, "already_done": skipped_done,
            "finish": dict(finishes)}


def print_summary(result: dict, output: Path) -> None:
    perf = result["meta"]["perf"]
    fin = result["finish"]
    console.print(f"generated {result['generated']} replies ({result['already_done']} already done) → {output}",
                  highlight=False, soft_wrap=True)
    if result["generated"]:
        console.print(f"  finish: stop {fin.get('stop', 0)}, length {fin.get('length', 0)} · all runs: "
                      f"{perf['new_tokens']} new tokens in {perf['seconds']:.1f} s "
                      f"({perf.get('new_tokens_per_s')} tokens/s)", highlight=False, soft_wrap=True)
    if fin.get("length"):
        warn(f"{fin['length']} replies stopped at max_new_tokens={result['meta']['sampling']['max_new_tokens']} "
             "(finish 'length'): raise --max-new-tokens if they matter for evaluation.")
