"""The JSON API (/api/v1): the same Workspace calls as the pages, for scripts and integrations.

    curl -c jar -H 'content-type: application/json' -d '{"username":"c7","password":"..."}' localhost:8765/api/v1/login
    curl -b jar -H "X-CSRF-Token: TOKEN" -H 'content-type: application/json' -d '{"name":"S.L."}' localhost:8765/api/v1/clients

Authentication is the session cookie (from /api/v1/login or the web login); every state-changing
call needs the session's CSRF token in `X-CSRF-Token` (the login answer carries it).  Errors are
{"error": message} with 400 (bad value), 401, 403 (CSRF), 404 (not yours or not there), 409
(conflict: signed note, stale revision, draft still generating), 422 (body does not fit the
schema), 429 (login rate limit).  The OpenAPI schema is /api/openapi.json.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi import Path as FPath
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from psyassist.app import accounts
from psyassist.app.accounts import AuthError, RateLimited
from psyassist.app.notes.draft import find_item
from psyassist.app.notes.templates import BASIC_KEYS
from psyassist.app.records import Invalid, NotFound


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginBody(_Body):
    username: str = Field(max_length=200)
    password: str = Field(max_length=1000)


class BasicInfo(_Body):
    demographics: str = Field("", max_length=4000)
    development: str = Field("", max_length=4000)
    mental_state: str = Field("", max_length=4000)
    physical: str = Field("", max_length=4000)
    social: str = Field("", max_length=4000)


class ClientBody(_Body):
    name: str = Field(min_length=1, max_length=200)
    tags: list[str] = Field(default_factory=list, max_length=20)
    basic_info: BasicInfo | None = None


class ClientPatch(_Body):
    name: str | None = Field(None, min_length=1, max_length=200)
    tags: list[str] | None = Field(None, max_length=20)
    archived: bool | None = None


class DraftBody(_Body):
    input: str = Field("", max_length=20_000)
    template: str = Field("seed004", max_length=64)
    session_date: date | None = None
    generate: bool = True
    use_library: bool = True  # offer library passages to the model (cited items carry `citations`)


class LibrarySwitch(_Body):
    use_library: bool


class ItemPatch(_Body):
    text: str | None = Field(None, max_length=20_000)
    comment: str | None = Field(None, max_length=2000)
    deleted: bool | None = None
    revision: int | None = None


class TrainBody(_Body):
    method: str | None = Field(None, pattern="^(sft|dpo)$")
    steps: int | None = Field(None, ge=1, le=10_000)


class ChoiceBody(_Body):
    choice: str = Field(pattern="^(auto|base|v[0-9]{1,6})$")


class SaveBody(_Body):
    revision: int | None = None


class AddendumBody(_Body):
    text: str = Field(min_length=1, max_length=20_000)


def _client(v) -> dict:
    return {"id": v.id, "name": v.name, "tags": v.tags, "archived": v.archived, "notes": v.notes,
            "last_session": v.last_session, "created_at": v.created_at, "updated_at": v.updated_at, "error": v.error}


def _note(n) -> dict:
    return {"id": n.id, "client_id": n.client_id, "template": n.template, "session_date": n.session_date,
            "status": n.status, "version": n.version, "sections": n.sections, "signed_at": n.signed_at,
            "signed_by": n.signed_by, "addenda": [{k: a[k] for k in ("id", "text", "at", "by", "error")}
                                                  for a in n.addenda], "error": n.error}


def _draft(d) -> dict:
    return {"id": d.id, "client_id": d.client_id, "template": d.template, "session_date": d.session_date,
            "status": d.status, "input": d.input, "content": d.content, "provenance": d.provenance,
            "error": d.error, "note_id": d.note_id, "revision": d.revision, "unreadable": d.unreadable,
            "use_library": d.use_library}


def add_api(app: FastAPI, st, *, workspace, screen, set_session_cookie, library_upload, library_enabled) -> None:
    cfg = st.cfg
    run = run_in_threadpool  # anyio's pool (40 threads), shared with the plain `def` routes

    @app.post("/api/v1/login", tags=["auth"])
    async def api_login(body: LoginBody, request: Request):
        ip = request.client.host if request.client else "?"
        try:
            user = await run(accounts.authenticate, st.db, body.username, body.password, ip,
                             max_failures=cfg.login_max_failures, window_minutes=cfg.login_window_minutes)
        except RateLimited as e:
            return JSONResponse({"error": str(e)}, status_code=429, headers={"Retry-After": str(e.retry_after)})
        except AuthError:
            return JSONResponse({"error": "wrong username or password"}, status_code=401)
        token, csrf = await run(accounts.start_session, st.db, user, cfg.session_hours)
        r = JSONResponse({"csrf_token": csrf, "username": user.username, "role": user.role})
        set_session_cookie(r, token)
        st.audit.access(who=user.username, action="login", client=None, target="api")
        return r

    @app.get("/api/v1/me", tags=["auth"])
    def api_me(request: Request):
        ws, c = workspace(request)
        a = c.actor
        return {"id": a.id, "username": a.username, "role": a.role, "locale": a.locale, "note_template": a.note_template}

    @app.get("/api/v1/templates", tags=["notes"])
    def api_templates(request: Request):
        workspace(request)
        return [{"name": t.name, "label": t.label, "sections": [
            {"key": s.key, "label": s.label, "kind": s.kind, "min_items": s.min_items, "max_items": s.max_items,
             "max_chars": s.max_chars} for s in t.sections]} for t in st.templates.values()]

    @app.get("/api/v1/clients", tags=["clients"])
    def api_clients(request: Request, q: str = "", archived: bool = False):
        ws, _ = workspace(request)
        return [_client(v) for v in ws.list_clients(q[:200], archived=archived)]

    @app.post("/api/v1/clients", status_code=201, tags=["clients"])
    async def api_client_create(body: ClientBody, request: Request):
        ws, _ = workspace(request)
        cid = await run(ws.create_client, body.name, body.tags, body.basic_info.model_dump() if body.basic_info else None)
        return _client(await run(ws.client, cid))

    @app.get("/api/v1/clients/{cid}", tags=["clients"])
    def api_client(cid: str, request: Request):
        ws, _ = workspace(request)
        return _client(ws.client(cid))

    @app.patch("/api/v1/clients/{cid}", tags=["clients"])
    async def api_client_patch(cid: str, body: ClientPatch, request: Request):
        ws, _ = workspace(request)
        if body.name is not None or body.tags is not None:
            await run(lambda: ws.update_client(cid, name=body.name, tags=body.tags))
        if body.archived is not None:
            await run(ws.set_archived, cid, body.archived)
        return _client(await run(ws.client, cid))

    @app.delete("/api/v1/clients/{cid}", status_code=204, tags=["clients"])
    async def api_client_delete(cid: str, request: Request):
        ws, _ = workspace(request)
        await run(ws.delete_client, cid)

    @app.get("/api/v1/clients/{cid}/basic-info", tags=["clients"])
    def api_basic(cid: str, request: Request):
        ws, _ = workspace(request)
        v = ws.basic_info(cid)
        return {"version": v.version, "data": v.data, "created_at": v.created_at, "created_by": v.created_by,
                "source": v.source, "error": v.error}

    @app.put("/api/v1/clients/{cid}/basic-info", tags=["clients"])
    async def api_basic_put(cid: str, body: BasicInfo, request: Request):
        ws, _ = workspace(request)
        data = body.model_dump()

        def save() -> int:
            version = ws.update_basic_info(cid, data)
            for k in BASIC_KEYS:
                screen(data[k], cid, "note", f"text:basic:{k}")
            return version
        return {"version": await run(save)}

    @app.get("/api/v1/clients/{cid}/notes", tags=["notes"])
    def api_notes(cid: str, request: Request):
        ws, _ = workspace(request)
        return [_note(n) for n in ws.notes(cid)]

    @app.get("/api/v1/notes/{nid}", tags=["notes"])
    def api_note(nid: str, request: Request):
        ws, _ = workspace(request)
        return _note(ws.note(nid))

    @app.get("/api/v1/notes/{nid}/versions", tags=["notes"])
    def api_note_versions(nid: str, request: Request):
        ws, _ = workspace(request)
        return ws.note_versions(nid)

    @app.get("/api/v1/notes/{nid}/similar", tags=["notes"])
    def api_note_similar(nid: str, request: Request, k: int = Query(5, ge=1, le=50)):
        """The counselor's earlier notes most like this one (never itself): dated snippets with scores."""
        ws, _ = workspace(request)
        return ws.similar_cases(note_id=nid, k=k)

    @app.post("/api/v1/notes/{nid}/sign", tags=["notes"])
    async def api_sign(nid: str, request: Request):
        ws, _ = workspace(request)
        await run(ws.sign_note, nid)
        return _note(await run(ws.note, nid))

    @app.post("/api/v1/notes/{nid}/addenda", status_code=201, tags=["notes"])
    async def api_addendum(nid: str, body: AddendumBody, request: Request):
        ws, _ = workspace(request)
        rid = await run(ws.add_addendum, nid, body.text)
        note = await run(ws.note, nid)
        await run(screen, body.text, note.client_id, "note", f"text:addendum:{rid}")
        return {"id": rid}

    @app.post("/api/v1/clients/{cid}/drafts", status_code=201, tags=["drafts"])
    async def api_draft_create(cid: str, body: DraftBody, request: Request):
        ws, _ = workspace(request)
        if body.template not in st.templates:
            raise Invalid(f"unknown template {body.template!r}; GET /api/v1/templates lists them")
        if body.generate and not body.input.strip():
            raise Invalid("generate=true needs an input to draft from")
        generate = body.generate and st.runner is not None
        did = await run(ws.create_draft, cid, body.input, st.templates[body.template],
                        body.session_date or date.today(), generate=generate, use_library=body.use_library)
        await run(screen, body.input, cid, "note", f"draft:{did}")
        if generate:
            st.runner.start_draft(ws, did)
        return _draft(await run(ws.draft, did))

    @app.get("/api/v1/drafts/{did}", tags=["drafts"])
    def api_draft(did: str, request: Request):
        ws, _ = workspace(request)
        return _draft(ws.draft(did))

    @app.get("/api/v1/drafts/{did}/similar", tags=["drafts"])
    def api_draft_similar(did: str, request: Request, k: int = Query(5, ge=1, le=50)):
        """The counselor's earlier notes most like this draft's input: dated snippets with scores."""
        ws, _ = workspace(request)
        return ws.similar_cases(draft_id=did, k=k)

    @app.patch("/api/v1/drafts/{did}/items/{iid}", tags=["drafts"])
    async def api_item(did: str, iid: str, body: ItemPatch, request: Request):
        ws, c = workspace(request)

        def change(content):
            f = find_item(content, iid)
            if f is None:
                raise NotFound("no such item in this draft")
            item = f[2]
            if body.text is not None and body.text.strip() != item["text"]:
                item["text"] = body.text.strip()
                if item["origin"] in ("model", "regenerated"):
                    item["origin"] = "edited"
            if body.comment:
                item["comments"].append({"by": c.actor.username, "at": date.today().isoformat(),
                                         "text": body.comment.strip()})
            if body.deleted is not None:
                item["deleted"] = body.deleted
        def apply():
            ws.edit_draft(did, change, revision=body.revision)
            d = ws.draft(did, audit=False)
            for text in (body.text, body.comment):
                if text:
                    screen(text, d.client_id, "note", f"text:item:{iid}")
            return d
        return _draft(await run(apply))

    @app.put("/api/v1/drafts/{did}/library", tags=["drafts"])
    async def api_draft_library(did: str, body: LibrarySwitch, request: Request):
        """Library passages in this draft's next generations, or none."""
        ws, _ = workspace(request)
        await run(ws.set_draft_library, did, body.use_library)
        return _draft(await run(ws.draft, did, audit=False))

    # --- the library -------------------------------------------------------------------------------

    @app.get("/api/v1/library/documents", tags=["library"])
    def api_library_documents(request: Request):
        """The counselor's own documents and the clinic's shared ones, with the upload limits."""
        _, c = workspace(request)
        library_enabled(c)
        return st.library.documents(c.actor.id)

    @app.post("/api/v1/library/documents", tags=["library"])
    async def api_library_upload(request: Request):
        """multipart/form-data with one or more `files`: the report lists added, replaced, unchanged and
        skipped files (each skipped one with its reason); the batch goes on past a bad file."""
        _, c = workspace(request)
        return await library_upload(request, c)

    @app.delete("/api/v1/library/documents/{doc_id}", status_code=204, tags=["library"])
    async def api_library_remove(doc_id: Annotated[int, FPath(ge=1, le=2**31 - 1)], request: Request):
        _, c = workspace(request)
        library_enabled(c)
        await run(st.library.remove, c.actor.id, doc_id)

    @app.get("/api/v1/library/search", tags=["library"])
    def api_library_search(request: Request, q: str = Query(..., min_length=1, max_length=2000),
                           k: int = Query(10, ge=1, le=50), mode: str = Query("hybrid", pattern="^(hybrid|bm25|dense)$")):
        """Ranked passages with title, page / section, score and each retriever's rank."""
        _, c = workspace(request)
        library_enabled(c)
        return st.library.search(c.actor.id, q, k=k, mode=mode)

    @app.get("/api/v1/library/passages/{chunk_id}", tags=["library"])
    def api_library_passage(chunk_id: Annotated[int, FPath(ge=1, le=2**31 - 1)], request: Request):
        _, c = workspace(request)
        library_enabled(c)
        return st.library.passage(c.actor.id, chunk_id)

    @app.post("/api/v1/drafts/{did}/save", tags=["drafts"])
    async def api_draft_save(did: str, body: SaveBody, request: Request):
        ws, _ = workspace(request)
        d = await run(ws.draft, did, audit=False)
        nid = await run(ws.save_draft, did, st.template(d.template), revision=body.revision)
        return _note(await run(ws.note, nid))

    @app.get("/api/v1/clients/{cid}/adapters", tags=["adapters"])
    def api_adapters(cid: str, request: Request):
        from psyassist.app.adapters import for_client

        ws, _ = workspace(request)
        adapters, choice = ws.adapters(cid)
        active = for_client(st, cid)
        return {"choice": choice or "auto", "active_version": active["version"] if active else None,
                "adapters": adapters, "jobs": ws.jobs(cid)}

    @app.post("/api/v1/clients/{cid}/train", status_code=201, tags=["adapters"])
    async def api_train(cid: str, body: TrainBody, request: Request):
        ws, _ = workspace(request)
        job = await run(lambda: ws.start_training(cid, method=body.method, steps=body.steps))
        return {"job_id": job}

    @app.post("/api/v1/clients/{cid}/jobs/{job_id}/cancel", tags=["adapters"])
    async def api_cancel(cid: str, job_id: str, request: Request):
        ws, _ = workspace(request)
        await run(ws.cancel_training, cid, job_id)
        return {"job_id": job_id}

    @app.put("/api/v1/clients/{cid}/adapter-choice", tags=["adapters"])
    async def api_choice(cid: str, body: ChoiceBody, request: Request):
        ws, _ = workspace(request)
        await run(ws.set_adapter_choice, cid, None if body.choice == "auto" else body.choice)
        return {"choice": body.choice}

    @app.delete("/api/v1/clients/{cid}/adapters/{version}", status_code=204, tags=["adapters"])
    async def api_adapter_delete(cid: str, version: int, request: Request):
        ws, _ = workspace(request)
        await run(ws.delete_adapter, cid, version)

