"""Per-client adapters: the training job, sealed storage, which version a draft uses, loading into the model.

    psyassist app worker        # runs the training jobs ("Train" on a client page queues one)

The data a job trains on (through the project's one rendering, in memory):
- **SFT** — every saved session whose draft came from an input: the prompt the app drafts with
  (basic information as it was then + the notes before that session within the history budget
  + the session's input) → the note as the counselor saved it, written as the JSON the model
  produces (the template's sections, then the basic-information updates).
- **Preference pairs** (method "dpo") — the same prompt, chosen = the counselor's final note,
  rejected = the model's original draft, when they differ: the counselor's edits, deletions and
  additions are exactly what separates the two.
Newest sessions first until `train_max_note_tokens`; the manifest lists the notes used.

Storage: the weights (safetensors bytes + the LoRA config) are sealed with the CLIENT's data key,
bound to the adapter's id, and put in the blob store (`adapter_store`: local directory or S3).
Nothing of an adapter is ever written in plain text: training returns bytes, loading opens the
blob into memory and hands PEFT a state dict.

Choice: a client's drafts use its newest version whose memorization check passed, unless the
counselor pinned a version or chose the base model.  The adapter's name in the model is derived
from the client's id and the adapter's id, and only `for_client(client_id)` chooses it: no
request can name an adapter, so client A's adapter can never draft for client B.
"""

from __future__ import annotations

import hashlib
import json
import time

from sqlalchemy import func, select

from psyassist.app.accounts import actor_of
from psyassist.app.notes.draft import (
    PastNote,
    draft_messages,
    final_sections,
    note_text,
    parse_draft,
    select_context,
)
from psyassist.app.notes.templates import BASIC_KEYS
from psyassist.app.records import Workspace
from psyassist.app.store.models import Adapter, Client, User, new_id, utcnow
from psyassist.app.training import Example, TrainSpec, pack, train, unpack
from psyassist.errors import PsyassistError


def blob_key(client_id: str, adapter_id: str) -> str:
    return f"adapters/{client_id}/{adapter_id}.bin"


def model_name(client_id: str, adapter_id: str) -> str:
    """The adapter's name inside the model: unique per client AND version."""
    return f"c{client_id[:12]}-{adapter_id[:12]}"


def note_json(t, sections: dict[str, list[str]], updates: dict[str, str]) -> str:
    """A note as the JSON the model writes under the template's schema (same key order, same separators)."""
    obj = {}
    for s in t.sections:
        items = sections.get(s.key, [])
        obj[s.key] = (items[0] if items else "") if s.kind == "text" else list(items)
    obj["basic_info_updates"] = {k: updates.get(k, "") for k in BASIC_KEYS}
    return json.dumps(obj, ensure_ascii=False)


def build_examples(st, ws: Workspace, client_id: str, *, count=None, max_tokens: int) -> tuple[list[Example], dict]:
    """The job's training examples (see the module docstring) and what went into them (ids, hash, sizes)."""
    count = count or (lambda text: max(1, len(text) // 2))
    records = ws.training_records(client_id)
    examples, used, total = [], [], 0
    for i in range(len(records) - 1, -1, -1):  # newest first until the budget is spent
        r = records[i]
        if not r["input"].strip():
            continue  # a note written by hand has no input to learn from
        t = st.template(r["template"])
        earlier = [PastNote(x["note_id"], x["date"], st.template(x["template"]), x["sections"])
                   for x in reversed(records[:i])]
        ctx = select_context(r["basic_info"], earlier, st.cfg.context_tokens, count)
        messages = draft_messages(t, ctx, r["input"])
        updates = {k: it["text"].strip() for k, it in (r["content"].get("basic_info") or {}).items()
                   if it and not it.get("deleted") and it.get("text", "").strip()}
        chosen = note_json(t, r["sections"], updates)
        rejected = None
        if r["model_output"]:
            model_content, _ = parse_draft(t, r["model_output"])
            model_updates = {k: it["text"] for k, it in model_content["basic_info"].items() if it}
            rejected = note_json(t, final_sections(t, model_content), model_updates)
        size = count(messages[1]["content"]) + count(chosen)
        if total + size > max_tokens and examples:
            break
        total += size
        examples.append(Example(messages, chosen, rejected))
        used.append(r["note_id"])
    digest = hashlib.sha256(json.dumps([[e.messages, e.chosen, e.rejected] for e in examples], ensure_ascii=False,
                                       sort_keys=True).encode()).hexdigest()[:16]
    notes = [note_text(PastNote(r["note_id"], r["date"], st.template(r["template"]), r["sections"]))
             for r in records if r["note_id"] in used]
    return examples, {"notes_used": used, "sessions_available": len(records), "data_hash": digest,
                      "approx_tokens": total, "pairs": sum(1 for e in examples if e.rejected and e.rejected != e.chosen),
                      "_note_texts": notes}


def run_training_job(st, job: dict, report, cancel) -> tuple[str, dict]:
    """The worker's handler for kind "train_adapter": train, check memorization, seal, store, record."""
    from psyassist.safety.memorization import Thresholds, check_loaded

    t0 = time.perf_counter()
    with st.db.read() as s:
        owner = s.get(User, job["owner_id"])
        if owner is None or not owner.active:
            raise PsyassistError("the counselor's account is no longer active")
        actor = actor_of(owner)
    ws = Workspace(st, actor)
    params = job["params"]
    report({"phase": "preparing"})
    examples, facts = build_examples(st, ws, job["client_id"], max_tokens=st.cfg.train_max_note_tokens)
    if not examples:
        raise PsyassistError("nothing to learn from yet: save at least one note that was drafted from a session input")
    spec = TrainSpec(base_model=st.cfg.model if st.cfg.backend == "inprocess" else "default",
                     method=params.get("method", st.cfg.train_method), steps=int(params.get("steps", st.cfg.train_steps)),
                     seed=job["attempts"], device=st.cfg.device, dtype=st.cfg.dtype)
    from psyassist.models import load_model

    report({"phase": "loading the base model"})
    model, tok = load_model(spec.base_model, dtype=spec.dtype, device=spec.device)
    out = train(spec, examples, progress=report, cancel=cancel, loaded=(model, tok))
    if cancel.is_set():
        from psyassist.app.training import Cancelled

        raise Cancelled("cancelled by the counselor")
    report({"phase": "memorization check", **out.figures, "losses": None})
    mem = _memorization(model, tok, out, facts["_note_texts"], check_loaded, Thresholds(), st.cfg.memorization_policy)
    status = "held" if mem.get("verdict") == "block" else "ready"
    adapter_id = new_id()
    blob = pack(out.weights, out.config)
    with st.db.read() as s:
        key = st.vault.key(s, f"client:{job['client_id']}")
    sealed = key.seal(blob, "adapters", adapter_id, "blob")
    bkey = blob_key(job["client_id"], adapter_id)
    st.blobs.put(bkey, sealed)
    facts = {k: v for k, v in facts.items() if not k.startswith("_")}
    manifest = {**facts, "method": spec.method, "steps": spec.steps, "lr": spec.lr, "r": spec.r, "alpha": spec.alpha,
                "base_model": spec.base_model, "first_loss": out.figures["first_loss"],
                "last_loss": out.figures["last_loss"], "tokens": out.figures["tokens"],
                "train_seconds": out.figures["seconds"], "job_seconds": round(time.perf_counter() - t0, 1),
                "peak_rss_mb": out.figures["peak_rss_mb"], "device": out.figures["device"], "job_id": job["id"]}
    with st.db.write() as s:
        version = (s.scalar(select(func.max(Adapter.version)).where(Adapter.client_id == job["client_id"])) or 0) + 1
        s.add(Adapter(id=adapter_id, client_id=job["client_id"], owner_id=job["owner_id"], version=version,
                      status=status, method=spec.method, base_model=spec.base_model, blob_key=bkey,
                      size_bytes=len(sealed), manifest=json.dumps(manifest), memorization=json.dumps(mem),
                      job_id=job["id"], created_at=utcnow()))
        ws._audit("adapter.created", job["client_id"], f"v{version}")
    return adapter_id, {"phase": "done", "version": version, "status": status, "step": spec.steps, "steps": spec.steps,
                        "loss": out.figures["last_loss"], "seconds": manifest["job_seconds"]}


def _memorization(model, tok, out, notes: list[str], check_loaded, thresholds, policy: str) -> dict:
    """The safety layer's verbatim-recall check of the new adapter against the client's own notes."""
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    from psyassist.app.training import load_weights

    cfg = LoraConfig(**{k: v for k, v in out.config.items() if k in LoraConfig.__dataclass_fields__})
    peft_model = get_peft_model(model, cfg)
    set_peft_model_state_dict(peft_model, load_weights(out.weights))
    peft_model.eval()
    try:
        report = check_loaded(peft_model, tok, notes, prefix_tokens=16, continuation_tokens=16, samples=12,
                              thresholds=thresholds, policy=policy)
        d = report.to_dict()
        return {"verdict": report.verdict, "reasons": report.reasons, "excess": d["excess"],
                "adapter": d["adapter"], "base": d["base"], "windows": len(d["windows"])}
    except PsyassistError as e:  # notes too short for a window: nothing could be recited
        return {"verdict": "ok", "reasons": [f"not measured: {e}"]}
    finally:
        peft_model.unload()


def for_client(st, client_id: str) -> dict | None:
    """The adapter a draft for this client uses (or None = the base model): pinned, else newest usable."""
    with st.db.read() as s:
        c = s.get(Client, client_id)
        if c is None or c.adapter_choice == "base":
            return None
        q = select(Adapter).where(Adapter.client_id == client_id, Adapter.status == "ready")
        if c.adapter_choice and c.adapter_choice.startswith("v"):
            q = q.where(Adapter.version == int(c.adapter_choice[1:]))
        a = s.scalar(q.order_by(Adapter.version.desc()).limit(1))
        if a is None:
            return None
        return {"id": a.id, "version": a.version, "blob_key": a.blob_key, "client_id": a.client_id,
                "name": model_name(a.client_id, a.id), "method": a.method}


def open_adapter(st, adapter: dict) -> tuple[dict, bytes]:
    """(LoRA config, safetensors bytes) of an adapter, decrypted in memory with its client's key."""
    sealed = st.blobs.get(adapter["blob_key"])
    with st.db.read() as s:
        key = st.vault.key(s, f"client:{adapter['client_id']}")
    return unpack(key.open_bytes(sealed, "adapters", adapter["id"], "blob"))


def ensure_loaded(st, adapter: dict | None) -> str | None:
    """Make the chosen adapter available to the model backend; its name for the request (None = base)."""
    if adapter is None:
        return None
    backend = st.backend
    if backend.has_adapter(adapter["name"]):
        return adapter["name"]
    config, weights = open_adapter(st, adapter)
    backend.add_adapter(adapter["name"], config, weights)
    return adapter["name"]

