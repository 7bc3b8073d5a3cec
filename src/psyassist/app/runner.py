"""Background generation: drafts and chat replies run as tasks of the server's event loop, not of a request.

    python -c "from psyassist.app.runner import Runner; help(Runner)"

A draft keeps being written when the page is closed or reloaded; the page subscribes to its
channel and gets a snapshot, then every change.  What is durable and when:
- the counselor's input is saved (encrypted) BEFORE generation starts: never lost;
- the draft's content is written once, when generation ends (ready, or failed with an empty
  editable draft and the reason); a restart in between marks it interrupted (state.py), so no
  half-written note exists at any time;
- chat: the counselor's message is saved first; the reply when it is complete.

Regenerating one item or one section is short and answers the request directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from psyassist.app.library import attach_citations, cite_item, parse_citations, passages_text, public_passage
from psyassist.app.notes.draft import (
    Context,
    apply_section,
    content_from_model,
    draft_messages,
    find_item,
    item_messages,
    item_schema,
    keep_hand_items,
    live_items,
    parse_draft,
    prompt_hash,
    section_messages,
    section_schema,
    select_context,
)
from psyassist.app.notes.pjson import parse_prefix
from psyassist.app.notes.templates import BASIC_MAX_CHARS, Template
from psyassist.app.records import Conflict, Workspace

log = logging.getLogger("psyassist.app")


@dataclass
class Channel:
    """Events of one running generation: late subscribers first get `snapshot`."""
    snapshot: dict = field(default_factory=dict)
    queues: list[asyncio.Queue] = field(default_factory=list)
    closed: bool = False

    def publish(self, event: dict) -> None:
        if event["type"] in ("context", "partial", "delta"):
            self.snapshot[event["type"]] = event
        else:
            self.snapshot["end"] = event
        for q in self.queues:
            q.put_nowait(event)


class Runner:
    def __init__(self, state):
        self.st = state
        self.channels: dict[str, Channel] = {}
        self.tasks: set[asyncio.Task] = set()

    def close(self) -> None:
        for t in list(self.tasks):
            t.cancel()

    # --- subscriptions -----------------------------------------------------------------------------

    async def events(self, key: str) -> AsyncIterator[dict]:
        """The channel's snapshot, then its events until it ends; nothing when no generation is running."""
        ch = self.channels.get(key)
        if ch is None:
            return
        q: asyncio.Queue = asyncio.Queue()
        for k in ("context", "partial", "delta", "end"):
            if k in ch.snapshot:
                q.put_nowait(ch.snapshot[k])
        if ch.closed and "end" in ch.snapshot:
            while not q.empty():
                yield q.get_nowait()
            return
        ch.queues.append(q)
        try:
            while True:
                ev = await q.get()
                yield ev
                if ev["type"] in ("done", "error"):
                    return
        finally:
            if q in ch.queues:
                ch.queues.remove(q)

    def running(self, key: str) -> bool:
        ch = self.channels.get(key)
        return ch is not None and not ch.closed

    def _spawn(self, key: str, coro) -> None:
        ch = Channel()
        self.channels[key] = ch

        async def run():
            try:
                await coro(ch)
            finally:
                ch.closed = True
                await asyncio.sleep(30)  # a page that reloads just after the end still gets the last events
                if self.channels.get(key) is ch:
                    del self.channels[key]

        task = asyncio.get_running_loop().create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- context -------------------------------------------------------------------------------------

    def _context(self, ws: Workspace, client_id: str, *, exclude_note: str | None = None) -> Context:
        info = ws.basic_info(client_id).data
        notes = ws.past_notes(client_id, self.st.templates, exclude=exclude_note)
        return select_context(info, notes, self.st.cfg.context_tokens, self.st.backend.count_tokens)

    async def _passages(self, ws: Workspace, query: str, use: bool) -> list[dict]:
        """Library passages for this prompt (none when switched off, or when the library cannot answer:
        a draft without passages beats no draft)."""
        lib = getattr(self.st, "library", None)
        if not use or lib is None:
            return []
        try:
            return await asyncio.to_thread(lib.for_prompt, ws.actor.id, query, self.st.backend.count_tokens)
        except Exception:  # noqa: BLE001
            log.exception("library passages could not be retrieved; generating without them")
            return []

    @staticmethod
    def _library_prov(use: bool, passages: list[dict]) -> dict:
        return {"on": bool(use), "passages": [public_passage(p) for p in passages]}

    def _provenance(self, messages: list[dict], schema: dict | None, adapter: dict | None, **extra) -> dict:
        return {**self.st.backend.describe(), "adapter": adapter, "sampling": self.st.backend.sampling,
                "prompt_hash": prompt_hash(messages, schema), "prompt_version": 1, **extra}

    def _adapter(self, client_id: str) -> tuple[str | None, dict | None]:
        """(name for the model, what provenance records) of the client's adapter; (None, None) = base model.

        Chosen from the client id alone (adapters.for_client): nothing a request sends can name an
        adapter, so another client's adapter is never applied.  A blob that cannot be opened falls
        back to the base model and says so."""
        from psyassist.app.adapters import ensure_loaded, for_client

        chosen = for_client(self.st, client_id)
        if chosen is None:
            return None, None
        info = {"version": chosen["version"], "id": chosen["id"], "method": chosen["method"]}
        try:
            return ensure_loaded(self.st, chosen), info
        except Exception as e:  # noqa: BLE001 — a draft with the base model beats no draft
            log.exception("adapter v%s of client %s could not be loaded", chosen["version"], client_id)
            return None, {**info, "error": f"not loaded ({type(e).__name__}); the base model drafted"}

    # --- drafts --------------------------------------------------------------------------------------

    def start_draft(self, ws: Workspace, draft_id: str) -> None:
        self._spawn(f"draft:{draft_id}", lambda ch: self._draft(ch, ws, draft_id))

    async def _draft(self, ch: Channel, ws: Workspace, did: str) -> None:
        started = time.time()
        t0 = time.perf_counter()
        text_parts: list[str] = []
        prov: dict = {}
        try:
            d = await asyncio.to_thread(ws.draft, did, audit=False)
            adapter, adapter_info = await asyncio.to_thread(self._adapter, d.client_id)
            t = self.st.template(d.template)
            ctx = await asyncio.to_thread(self._context, ws, d.client_id, exclude_note=d.note_id)
            ch.publish({"type": "context", **ctx.describe()})
            passages = await self._passages(ws, d.input, d.use_library)
            messages, guidance = guided(draft_messages(t, ctx, d.input, passages_text(passages) if passages else ""),
                                        d.input, self.st.cfg.region)
            schema = t.json_schema()
            prov = self._provenance(messages, schema, adapter_info, context=ctx.describe(), crisis_guidance=guidance,
                                    started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                                    library=self._library_prov(d.use_library, passages))
            first_item = None
            finish, tokens = "stop", 0
            async for ev in self.st.backend.stream(messages, schema=schema, max_tokens=self.st.cfg.draft_max_tokens,
                                                   adapter=adapter):
                if ev[0] == "delta":
                    text_parts.append(ev[1])
                    pre = parse_prefix("".join(text_parts))
                    if pre.value is not None:
                        content, _ = content_from_model(t, pre.value)
                        shown = _items(content)
                        n = shown - (1 if pre.open_string else 0)  # complete items: the last string may be half done
                        if n > 0 and first_item is None:
                            first_item = time.perf_counter() - t0
                        ch.publish({"type": "partial", "content": content, "open": pre.open_string, "items": n,
                                    "shown": shown})
                else:
                    finish, tokens = ev[1], ev[2]
            raw = "".join(text_parts)
            content, problems = parse_draft(t, raw)
            problems += attach_citations(content, passages)
            content = keep_hand_items(t, d.content, content)
            prov.update(finish=finish, completion_tokens=tokens, seconds=round(time.perf_counter() - t0, 2),
                        first_item_seconds=round(first_item, 2) if first_item is not None else None,
                        repaired=problems)
            await asyncio.to_thread(ws.finish_draft, did, content=content, model_output=raw, provenance=prov,
                                    status="ready")
            ch.publish({"type": "done", "status": "ready"})
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 — any failure leaves an empty editable draft and a message
            log.exception("draft %s failed", did)
            msg = f"the model could not write this draft ({type(e).__name__}: {e}); your input is kept — press " \
                  "Regenerate or write the note by hand"
            prov["error"] = type(e).__name__
            try:
                await asyncio.to_thread(ws.finish_draft, did, content=None,
                                        model_output="".join(text_parts) or None, provenance=prov,
                                        status="failed", error=msg)
            except Exception:  # noqa: BLE001
                log.exception("could not record the failure of draft %s", did)
            ch.publish({"type": "error", "message": msg})

    async def _complete(self, messages: list[dict], schema: dict, max_tokens: int, adapter: str | None) -> str:
        parts = []
        async for ev in self.st.backend.stream(messages, schema=schema, max_tokens=max_tokens, adapter=adapter):
            if ev[0] == "delta":
                parts.append(ev[1])
        return "".join(parts)

    async def regenerate_item(self, ws: Workspace, did: str, item_id: str, revision: int | None = None) -> int:
        """Rewrite one item (a reason, an advice point, a basic-information field) from the counselor's comments."""
        d = await asyncio.to_thread(ws.draft, did, audit=False)
        if d.status == "generating":
            raise Conflict("the draft is still being written")
        t = self.st.template(d.template)
        found = find_item(d.content, item_id)
        if found is None:
            raise Conflict("that item is not in the draft any more; reload the page")
        where, key, _ = found
        cap = BASIC_MAX_CHARS if where == "basic" else t.section(key).max_chars
        ctx = await asyncio.to_thread(self._context, ws, d.client_id, exclude_note=d.note_id)
        passages = await self._passages(ws, d.input, d.use_library)
        messages = item_messages(t, ctx, d.input, d.content, item_id, passages_text(passages) if passages else "")
        schema = item_schema(cap)
        adapter, _ = await asyncio.to_thread(self._adapter, d.client_id)
        raw = await self._complete(messages, schema, min(256, self.st.cfg.draft_max_tokens), adapter)
        value = parse_prefix(raw).value
        new = (value.get("text") if isinstance(value, dict) else "") or ""
        new = str(new).strip()[:cap]
        prov = self._provenance(messages, schema, None, kind="item", adapter_name=adapter)

        def change(content):
            f = find_item(content, item_id)
            if f is None:
                raise Conflict("that item was deleted meanwhile")
            item = f[2]
            item.update(text=new, origin="regenerated", model_text=new)
            if f[0] == "section":
                cite_item(item, {p["n"]: public_passage(p) for p in passages})
            item.setdefault("history", []).append({"provenance": prov["prompt_hash"], "at": int(time.time())})
        _, rev = await asyncio.to_thread(ws.edit_draft, did, change, revision=revision, action="draft.regenerate")
        return rev

    async def regenerate_section(self, ws: Workspace, did: str, key: str, revision: int | None = None) -> int:
        """Redo a section's model items; what the counselor wrote or edited stays."""
        d = await asyncio.to_thread(ws.draft, did, audit=False)
        if d.status == "generating":
            raise Conflict("the draft is still being written")
        t: Template = self.st.template(d.template)
        sec = t.section(key)
        if sec.kind == "text":
            item = live_items(d.content, key)
            if not item:
                raise Conflict("the section is empty")
            return await self.regenerate_item(ws, did, item[0]["id"], revision)
        kept = [i for i in live_items(d.content, key) if i["origin"] in ("counselor", "edited")]
        n_new = max(1, min(sec.max_items - len(kept),
                           max(len(live_items(d.content, key)) - len(kept), sec.min_items)))
        if len(kept) >= sec.max_items:
            raise Conflict(f"the section already holds the most items it can ({sec.max_items}), all written by you")
        ctx = await asyncio.to_thread(self._context, ws, d.client_id, exclude_note=d.note_id)
        passages = await self._passages(ws, d.input, d.use_library)
        messages = section_messages(t, ctx, d.input, d.content, key, n_new,
                                    passages_text(passages) if passages else "")
        schema = section_schema(sec.max_chars, n_new)
        adapter, _ = await asyncio.to_thread(self._adapter, d.client_id)
        raw = await self._complete(messages, schema, self.st.cfg.draft_max_tokens, adapter)
        value = parse_prefix(raw).value
        texts = [str(x) for x in (value.get("items") if isinstance(value, dict) else None) or [] if str(x).strip()]

        def change(content):
            before = {i["id"] for i in content["sections"][key]}
            apply_section(t, content, key, texts)
            by_n = {p["n"]: public_passage(p) for p in passages}
            for item in content["sections"][key]:
                if item["id"] not in before:
                    cite_item(item, by_n)
        _, rev = await asyncio.to_thread(ws.edit_draft, did, change, revision=revision, action="draft.regenerate")
        return rev

    async def redo_draft(self, ws: Workspace, did: str) -> None:
        """Generate a whole draft again (after a failure or interruption, or on request), keeping hand-written items."""
        def change(content):
            return content
        await asyncio.to_thread(ws.edit_draft, did, change, action="draft.redo")
        await asyncio.to_thread(_set_generating, ws, did)
        self.start_draft(ws, did)

    # --- chat ----------------------------------------------------------------------------------------

    def start_reply(self, ws: Workspace, chat_id: str, reply_id: str) -> None:
        self._spawn(f"chat:{reply_id}", lambda ch: self._reply(ch, ws, chat_id, reply_id))

    async def _reply(self, ch: Channel, ws: Workspace, chat_id: str, reply_id: str) -> None:
        parts: list[str] = []
        prov: dict = {}
        t0 = time.perf_counter()
        try:
            chat = await asyncio.to_thread(ws.chat, chat_id)
            messages = [{"role": "system", "content": CHAT_SYSTEM}]
            if chat["client_id"] and chat["use_notes"]:
                ctx = await asyncio.to_thread(self._context, ws, chat["client_id"])
                messages[0]["content"] += "\n\nThe client's record, for context:\n" + ctx.text
            history = [m for m in chat["messages"] if m["id"] != reply_id and m["status"] == "done" and m["content"]]
            history = history[-2 * self.st.cfg.chat_history_turns:]
            messages += [{"role": m["role"], "content": m["content"]} for m in history]
            while len(messages) > 2 and messages[1]["role"] != "user":
                del messages[1]
            last_user = next((m["content"] for m in reversed(history) if m["role"] == "user"), "")
            use_library = chat.get("use_library", True)
            passages = await self._passages(ws, last_user, use_library)
            if passages:
                messages[0]["content"] += "\n\n" + passages_text(passages, unit="sentence")
            messages, guidance = guided(messages, last_user, self.st.cfg.region)
            adapter, adapter_info = (await asyncio.to_thread(self._adapter, chat["client_id"])) \
                if chat["client_id"] else (None, None)
            prov = self._provenance(messages, None, adapter_info, crisis_guidance=guidance)
            finish, tokens = "stop", 0
            async for ev in self.st.backend.stream(messages, max_tokens=self.st.cfg.chat_max_tokens, adapter=adapter):
                if ev[0] == "delta":
                    parts.append(ev[1])
                    ch.publish({"type": "delta", "text": "".join(parts)})
                else:
                    finish, tokens = ev[1], ev[2]
            prov.update(finish=finish, completion_tokens=tokens, seconds=round(time.perf_counter() - t0, 2))
            _, cited, bad = parse_citations("".join(parts), len(passages))
            prov["library"] = {**self._library_prov(use_library, passages), "cited": cited, "not_offered": bad}
            await asyncio.to_thread(ws.finish_message, chat_id, reply_id, "".join(parts), "done", prov)
            ch.publish({"type": "done", "status": "done"})
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001
            log.exception("chat reply %s failed", reply_id)
            msg = f"the model could not answer ({type(e).__name__}: {e})"
            try:
                await asyncio.to_thread(ws.finish_message, chat_id, reply_id, "".join(parts), "failed",
                                        {**prov, "error": type(e).__name__})
            except Exception:  # noqa: BLE001
                log.exception("could not record the failure of reply %s", reply_id)
            ch.publish({"type": "error", "message": msg})


CHAT_SYSTEM = ("You are PhyAssist, an assistant to a professional psychological counselor. You talk with the "
               "counselor, never with the client. Answer the counselor's questions about counseling knowledge, "
               "techniques and the client's case precisely and briefly, in the counselor's language. If anything "
               "suggests a risk of suicide, self-harm or harm to others, say so first and recommend a risk "
               "assessment and a safety plan.")


def _items(content: dict) -> int:
    n = sum(1 for items in content["sections"].values() for i in items if i["text"])
    return n + sum(1 for it in content["basic_info"].values() if it)


def _set_generating(ws: Workspace, did: str) -> None:
    from psyassist.app.store.models import utcnow

    with ws.st.db.write() as s:
        d = ws._draft_row(s, did)
        if d.status == "saved" or d.note_id:
            raise Conflict("this draft belongs to a saved note; regenerate items or sections instead")
        d.status, d.error, d.updated_at = "generating", None, utcnow()
        d.revision += 1


# --- crisis guidance for the model (issue 13), counselor-facing ------------------------------------
# The safety layer's crisis_guidance() speaks to a model that answers the person at risk.  In the app
# the model answers the COUNSELOR about their client, so the instruction says the same things in
# that frame: name the risk first, a direct risk assessment, a safety plan, emergency help when
# imminent, the region's resources, never method details.
COUNSELOR_GUIDANCE = {
    "en": ("Safety instruction (the counselor does not see it): the counselor's text shows possible crisis signs "
           "in their client — level {level}; signs: {signs}. Whatever else you write: first say plainly that this "
           "is a possible {level} risk; recommend assessing it directly with the client now (thoughts, plan, "
           "means, timing, protective factors — e.g. the C-SSRS questions) and making a safety plan; if the danger "
           "may be imminent, contacting emergency services ({emergency}) and not leaving the client alone; name "
           "these resources: {resources}. Never describe methods, doses or means."),
    "zh": ("安全指引（咨询师看不到）：咨询师写的内容显示其来访者可能存在危机迹象——等级 {level}；迹象：{signs}。无论还写什么，都要首先明确指出这是可能的"
           "{level} 级风险；建议现在就直接与来访者评估（想法、计划、手段、时间、保护因素，例如 C-SSRS 的问题）并制定安全计划；如果危险可能迫在眉睫，"
           "联系急救服务（{emergency}），不要让来访者独处；列出这些资源：{resources}。绝不描述方法、剂量或手段。"),
}


def counselor_guidance(det, region: str, lang: str) -> str:
    from psyassist.safety.guidance import default_path, load_guidance
    from psyassist.safety.resources import resources_for

    if not det.flagged:
        return ""
    labels = load_guidance(str(default_path()))["signs"][lang]
    items = resources_for(region)
    sep = "；" if lang == "zh" else "; "
    return COUNSELOR_GUIDANCE[lang].format(
        level=det.level, signs=(", " if lang == "en" else "、").join(labels[c] for c in det.constructs if c in labels)
        or det.level, resources=sep.join(f"{r.name}: {r.contact()}" for r in items),
        emergency=next((r.phone for r in items if r.kind == "emergency" and r.phone), None)
        or ("本地急救电话" if lang == "zh" else "the local emergency number"))


def guided(messages: list[dict], text: str, region: str) -> tuple[list[dict], str | None]:
    """(messages with the counselor-facing crisis instruction when `text` is flagged, the level or None)."""
    from psyassist.safety.crisis import detect
    from psyassist.safety.guidance import message_lang, with_guidance

    det = detect(text, context="counselor_note")
    if not det.flagged:
        return messages, None
    return with_guidance(messages, counselor_guidance(det, region, message_lang(text))), det.level

