"""The app's HTTP side: pages (Jinja2 + htmx) and the JSON API, both over records.Workspace.

    psyassist app                       # http://127.0.0.1:8765

Security at this layer (the rest is in records.py and accounts.py):
- Session cookie: HttpOnly, SameSite=Strict, Secure when `secure_cookies`; the login form uses a
  double-submit cookie so it is CSRF-protected too.
- CSRF: every POST/PUT/PATCH/DELETE must carry the session's token (form field `csrf_token` or
  header `X-CSRF-Token`); otherwise 403 before any handler runs.
- Content-Security-Policy allows scripts from this origin only (no inline script, no eval):
  even a missed escape could not run a script.  Jinja2 autoescapes every value; the browser
  code inserts model text with textContent.
- No asset from the internet: htmx is vendored (static/vendor).
- No access log of URLs (a search query holds a client's name); the audit log records accesses.
"""

from __future__ import annotations

import difflib
import hmac
import json
import secrets
from datetime import date
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi import Path as FPath
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from psyassist.app import accounts
from psyassist.app.accounts import Actor, AuthError, RateLimited
from psyassist.app.library import where as passage_where
from psyassist.app.notes.draft import find_item, live_items, new_item
from psyassist.app.notes.templates import BASIC_INFO, BASIC_KEYS, basic_label
from psyassist.app.records import Conflict, Invalid, NotFound, Workspace
from psyassist.app.state import AppState
from psyassist.app.web.i18n import translator
from psyassist.errors import PsyassistError
from psyassist.safety.crisis import detect
from psyassist.safety.resources import resources_for

HERE = Path(__file__).parent
COOKIE = "psyassist_session"
LOGIN_COOKIE = "psyassist_login"
LANG_COOKIE = "psyassist_lang"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


class SecurityHeaders:
    """Adds the security headers to every response (plain ASGI: BaseHTTPMiddleware costs ~10% per request)."""

    STATIC = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
              (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        # Client data never sits in a browser or proxy cache; the vendored assets may.
        extra = self.STATIC + ([] if scope["path"].startswith("/static/") else [(b"cache-control", b"no-store")])

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in extra}
                message["headers"] = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names] + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Ctx:
    """What a request knows about its caller."""

    def __init__(self, actor: Actor | None, csrf: str | None, sid: str | None, locale: str):
        self.actor, self.csrf, self.sid, self.locale = actor, csrf, sid, locale


class LoginRequired(Exception):
    pass


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        self.status, self.message, self.headers = status, message, headers or {}


def create_app(st: AppState) -> FastAPI:
    cfg = st.cfg
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["basic_fields_all"] = BASIC_INFO

    async def lifespan(app):
        if st.backend is not None:
            st.backend.start()
        yield
        if st.runner is not None:
            st.runner.close()

    app = FastAPI(title="psyassist app", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json",
                  description="The counselor's assistant: clients, notes, drafts, chat. JSON API under /api/v1.")
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    # --- request context, CSRF ----------------------------------------------------------------------

    def ctx_of(request: Request) -> Ctx:
        cached = getattr(request.state, "ctx", None)
        if cached is not None:
            return cached
        got = accounts.resolve_session(st.db, request.cookies.get(COOKIE), cfg.session_hours)
        lang = request.cookies.get(LANG_COOKIE)
        if got:
            actor, csrf, sid = got
            c = Ctx(actor, csrf, sid, actor.locale)
        else:
            accept = request.headers.get("accept-language", "")
            c = Ctx(None, None, None, lang if lang in ("en", "zh") else ("zh" if accept.lower().startswith("zh") else "en"))
        request.state.ctx = c
        return c

    def is_api(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    async def csrf_guard(request: Request) -> None:
        if request.method not in UNSAFE:
            return
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            # Refused before a byte of the body is read (Starlette would spool all of it to disk first).
            size = request.headers.get("content-length")
            if size is None:
                raise ApiError(411, "an upload must say its size (Content-Length)")
            limit = cfg.kb_max_upload_mb * 1e6
            if int(size) > limit + 1_000_000:  # the form's own fields and boundaries ride on top
                raise ApiError(413, f"the upload is {int(size) / 1e6:,.0f} MB; the limit is {cfg.kb_max_upload_mb:g} MB "
                                    "per upload (kb_max_upload_mb): add the files a few at a time")
        path = request.url.path
        if path in ("/login", "/language", "/api/v1/login"):
            expected = request.cookies.get(LOGIN_COOKIE) if path != "/api/v1/login" else None
            if path == "/api/v1/login":
                return  # JSON login: no cookie to ride on yet; SameSite + JSON content type (no form CSRF)
        else:
            c = await run_in_threadpool(ctx_of, request)
            expected = c.csrf
        given = request.headers.get("x-csrf-token")
        if not given and request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")):
            given = (await request.form()).get("csrf_token")
        if not expected or not given or not hmac.compare_digest(str(given), expected):
            raise ApiError(403, "the form's security token is missing or expired: reload the page and try again")

    app.router.dependencies.append(Depends(csrf_guard))

    def login_required(request: Request) -> Ctx:
        c = ctx_of(request)
        if c.actor is None:
            if is_api(request):
                raise ApiError(401, "not signed in")
            raise LoginRequired()
        return c

    def workspace(request: Request) -> tuple[Workspace, Ctx]:
        c = login_required(request)
        return Workspace(st, c.actor), c

    def admin_only(request: Request) -> Ctx:
        c = login_required(request)
        if not c.actor.is_admin:
            raise NotFound("no such page")
        return c

    # --- rendering -------------------------------------------------------------------------------

    def page(request: Request, name: str, c: Ctx, status: int = 200, **kw) -> HTMLResponse:
        t = translator(c.locale)
        notice_key = request.query_params.get("notice")
        base = {"request": request, "actor": c.actor, "csrf": c.csrf, "locale": c.locale, "t": t,
                "notice": t(f"notice_{notice_key}") if notice_key and t.has(f"notice_{notice_key}") else None,
                "basic_fields": [(k, basic_label(k, c.locale)) for k in BASIC_KEYS], "region": cfg.region,
                "library_on": cfg.library and st.library is not None, "where": passage_where,
                "alerts": kw.pop("alerts", [])}
        return templates.TemplateResponse(request, name, {**base, **kw}, status_code=status)

    def back(path: str, notice: str | None = None) -> RedirectResponse:
        return RedirectResponse(path + (f"?notice={notice}" if notice else ""), status_code=303)

    def error_page(request: Request, status: int, message: str) -> Response:
        c = ctx_of(request)
        if is_api(request) or "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"error": message}, status_code=status)
        t = translator(c.locale)
        if request.headers.get("hx-request"):
            return Response(message, status_code=status, headers={"X-Error": quote(message)})
        return page(request, "error.html", c, status=status, title=t(f"http_{status}") if t.has(f"http_{status}")
                    else t("http_error"), message=message, back=request.headers.get("referer"))

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, e: LoginRequired):
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)

    @app.exception_handler(ApiError)
    async def _api(request: Request, e: ApiError):
        r = error_page(request, e.status, e.message)
        r.headers.update(e.headers)
        return r

    @app.exception_handler(PsyassistError)
    async def _known(request: Request, e: PsyassistError):
        status = 404 if isinstance(e, NotFound) else 409 if isinstance(e, Conflict) else \
            429 if isinstance(e, RateLimited) else 400
        r = error_page(request, status, str(e))
        if isinstance(e, RateLimited):
            r.headers["Retry-After"] = str(e.retry_after)
        return r

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        return error_page(request, e.status_code, str(e.detail))

    @app.exception_handler(Exception)
    async def _crash(request: Request, e: Exception):
        import logging

        logging.getLogger("psyassist.app").exception("unhandled error on %s", request.url.path)
        return error_page(request, 500, "something went wrong on our side; nothing you entered was lost "
                                        "(the error is in the server log)")

    app.add_middleware(SecurityHeaders)

    def set_session_cookie(response: Response, token: str) -> None:
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=cfg.secure_cookies, path="/",
                            max_age=int(cfg.session_hours * 3600))

    # --- crisis screening of everything a counselor types ------------------------------------------

    def screen(text: str, subject: str, source: str, ref: str) -> str | None:
        # The counselor writes ABOUT their client: a reported threat ("she said she will take the pills
        # tonight") is the client's risk, assessed as if first person (issue 13's counselor_note context).
        det = detect(text or "", context="counselor_note")
        if not det.flagged:
            return None
        st.audit.record(det, client=subject, source=source, ref=ref)
        return det.level

    def alerts_for(ws: Workspace, subjects: set[str]) -> list[dict]:
        out = []
        res = [{"name": r.name, "contact": r.contact(), "hours": r.hours, "note": r.note} for r in resources_for(cfg.region)]
        for e in st.audit.pending():
            if e["client"] not in subjects:
                continue
            evidence = []
            ref = e.get("ref") or ""
            try:  # the evidence is recomputed from the (encrypted) record: the log holds no text
                if ref.startswith("draft:"):
                    evidence = [x.text for x in detect(ws.draft(ref[6:], audit=False).input,
                                                       context="counselor_note").evidence]
                elif ref.startswith("message:"):
                    _, chat_id, mid = ref.split(":")
                    msg = next((m for m in ws.chat(chat_id)["messages"] if m["id"] == mid), None)
                    evidence = [x.text for x in detect(msg["content"], context="counselor_note").evidence] if msg else []
                elif ref.startswith("text:"):
                    evidence = []
            except PsyassistError:
                evidence = []
            out.append({"id": e["id"], "level": e["level"], "categories": e["categories"], "time": e["time"][:16]
                        .replace("T", " "), "source": e["source"], "evidence": evidence[:5], "resources": res})
        return out

    # --- auth pages ---------------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/"):
        c = ctx_of(request)
        if c.actor:
            return back("/")
        token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        r = page(request, "login.html", c, login_csrf=token, next=_safe_next(next))
        r.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=cfg.secure_cookies, path="/")
        return r

    @app.post("/login")
    async def login(request: Request):
        form = await request.form()
        c = ctx_of(request)
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        ip = request.client.host if request.client else "?"
        t = translator(c.locale)
        try:
            user = await run_in_threadpool(accounts.authenticate, st.db, username, password, ip,
                                           max_failures=cfg.login_max_failures, window_minutes=cfg.login_window_minutes)
        except RateLimited as e:
            r = page(request, "login.html", c, status=429, login_csrf=request.cookies.get(LOGIN_COOKIE),
                     next=_safe_next(str(form.get("next", "/"))), username=username,
                     error=t("login_rate_limited", minutes=max(1, e.retry_after // 60)))
            r.headers["Retry-After"] = str(e.retry_after)
            return r
        except AuthError:
            return page(request, "login.html", c, status=401, login_csrf=request.cookies.get(LOGIN_COOKIE),
                        next=_safe_next(str(form.get("next", "/"))), username=username, error=t("login_failed"))
        token, _ = await run_in_threadpool(accounts.start_session, st.db, user, cfg.session_hours)
        dest = "/settings" if user.must_change_password else (
            "/admin" if user.role == "admin" else _safe_next(str(form.get("next", "/"))))
        r = RedirectResponse(dest, status_code=303)
        set_session_cookie(r, token)
        r.delete_cookie(LOGIN_COOKIE, path="/")
        st.audit.access(who=user.username, action="login", client=None)
        return r

    @app.post("/language")
    async def language_anon(request: Request):
        form = await request.form()
        loc = str(form.get("locale", "en"))
        r = back("/login")
        r.set_cookie(LANG_COOKIE, loc if loc in ("en", "zh") else "en", samesite="strict", path="/")
        return r

    @app.post("/logout")
    def logout(request: Request):
        c = login_required(request)
        accounts.end_session(st.db, c.sid)
        st.similar.forget(c.actor.id)  # the decrypted notes of the similar-case index leave memory
        st.audit.access(who=c.actor.username, action="logout", client=None)
        r = back("/login", "logged_out")
        r.delete_cookie(COOKIE, path="/")
        r.set_cookie(LANG_COOKIE, c.actor.locale, samesite="strict", path="/")  # the login page keeps their language
        return r

    # --- settings ------------------------------------------------------------------------------------

    @app.get("/settings", response_class=HTMLResponse)
    def settings_page(request: Request):
        c = login_required(request)
        with st.db.read() as s:
            from psyassist.app.store.models import User

            must = s.get(User, c.actor.id).must_change_password
        return page(request, "settings.html", c, nav="settings", templates=list(st.templates.values()),
                    must_change=must)

    @app.post("/settings")
    async def settings_save(request: Request):
        c = login_required(request)
        form = await request.form()
        loc = str(form.get("locale", c.actor.locale))
        tpl = str(form.get("note_template", c.actor.note_template))
        if loc not in ("en", "zh") or tpl not in st.templates:
            raise Invalid("unknown language or note template")
        await run_in_threadpool(_update_user, st, c.actor.id, locale=loc, note_template=tpl)
        return back("/settings", "saved")

    @app.post("/settings/language")
    async def settings_language(request: Request):
        c = login_required(request)
        form = await request.form()
        loc = str(form.get("locale", "en"))
        if loc not in ("en", "zh"):
            raise Invalid("unknown language")
        await run_in_threadpool(_update_user, st, c.actor.id, locale=loc)
        return back(_safe_next(str(form.get("next", "/"))))

    @app.post("/settings/password")
    async def settings_password(request: Request):
        c = login_required(request)
        form = await request.form()
        ip = request.client.host if request.client else "?"
        t = translator(c.locale)
        try:
            user = await run_in_threadpool(accounts.authenticate, st.db, c.actor.username, str(form.get("current", "")),
                                           ip, max_failures=cfg.login_max_failures,
                                           window_minutes=cfg.login_window_minutes)
            await run_in_threadpool(accounts.set_password, st.db, user.id, str(form.get("new", "")))
            st.similar.forget(user.id)  # every session ended: so does the in-memory index
        except AuthError as e:
            return page(request, "settings.html", c, status=400, nav="settings", templates=list(st.templates.values()),
                        error=t("wrong_password") if "wrong" in str(e) else str(e))
        token, _ = await run_in_threadpool(accounts.start_session, st.db, user, cfg.session_hours)
        r = back("/settings", "password_changed")
        set_session_cookie(r, token)
        return r

    # --- admin ---------------------------------------------------------------------------------------

    @app.get("/admin", response_class=HTMLResponse)
    def admin_page(request: Request):
        c = admin_only(request)
        return page(request, "admin.html", c, nav="admin", users=_users(st))

    @app.post("/admin/users")
    async def admin_create(request: Request):
        c = admin_only(request)
        form = await request.form()
        password = secrets.token_urlsafe(12)
        try:
            u = await run_in_threadpool(accounts.create_user, st.db, str(form.get("username", "")).strip(), password,
                                        role=str(form.get("role", "counselor")), locale=str(form.get("locale", "en")),
                                        display_name=str(form.get("display_name", "")), must_change_password=True)
        except AuthError as e:
            return page(request, "admin.html", c, status=400, nav="admin", users=_users(st), error=str(e))
        st.audit.access(who=c.actor.username, action="account.create", client=None, target=u.id)
        return page(request, "admin.html", c, nav="admin", users=_users(st),
                    created={"username": u.username, "password": password})

    @app.post("/admin/users/{uid}/active")
    async def admin_active(uid: str, request: Request):
        c = admin_only(request)
        form = await request.form()
        if uid == c.actor.id:
            raise Invalid("you cannot deactivate your own account")
        await run_in_threadpool(_set_active, st, uid, form.get("active") == "1")
        st.audit.access(who=c.actor.username, action="account.active", client=None, target=uid)
        return back("/admin", "saved")

    @app.post("/admin/users/{uid}/reset")
    async def admin_reset(uid: str, request: Request):
        c = admin_only(request)
        password = secrets.token_urlsafe(12)
        await run_in_threadpool(accounts.set_password, st.db, uid, password, must_change=True)
        st.similar.forget(uid)  # the reset ended the account's sessions
        st.audit.access(who=c.actor.username, action="account.reset_password", client=None, target=uid)
        user = next(u for u in _users(st) if u.id == uid)
        return page(request, "admin.html", c, nav="admin", users=_users(st),
                    created={"username": user.username, "password": password})

    @app.get("/admin/audit", response_class=HTMLResponse)
    def audit_page(request: Request, who: str = "", client: str = ""):
        c = admin_only(request)
        try:
            n, last = st.audit.verify()
            verified = {"ok": True, "n": n, "last": last}
        except PsyassistError as e:
            verified = {"ok": False, "error": str(e)}
        entries = st.audit.entries() if verified["ok"] else []
        total = len(entries)
        if who:
            entries = [e for e in entries if who in (e.get("who") or e.get("by") or "")]
        if client:
            entries = [e for e in entries if client in (e.get("client") or "")]
        st.audit.access(who=c.actor.username, action="audit.read", client=None)
        return page(request, "audit.html", c, nav="audit", entries=list(reversed(entries))[:500], total=total,
                    verified=verified, who=who, client=client)

    # --- clients -------------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request, q: str = "", archived: str = ""):
        c = login_required(request)
        if c.actor.is_admin:
            return back("/admin")
        ws = Workspace(st, c.actor)
        clients = ws.list_clients(q, archived=archived == "1")
        subjects = ws.my_client_ids()
        alerts = [a for a in alerts_for(ws, {s for s in subjects if s.startswith("chat:")})]
        alert_clients = {e["client"] for e in st.audit.pending() if e["client"] in subjects}
        return page(request, "clients.html", c, nav="clients", clients=clients, q=q, archived=archived == "1",
                    alerts=alerts, alert_clients=alert_clients)

    @app.post("/clients")
    async def client_create(request: Request):
        ws, c = workspace(request)
        form = await request.form()
        cid = await run_in_threadpool(ws.create_client, str(form.get("name", "")), str(form.get("tags", "")))
        return back(f"/clients/{cid}", "client_created")

    def training_context(ws: Workspace, cid: str) -> dict:
        from psyassist.app.adapters import for_client

        adapters, choice = ws.adapters(cid)
        jobs = ws.jobs(cid)
        notes = ws.notes(cid)
        return {"adapters": adapters, "choice": choice, "jobs": jobs, "active": for_client(st, cid),
                "job_active": bool(jobs and jobs[0]["status"] in ("queued", "running")),
                "trainable": any(n.draft_id for n in notes), "default_method": cfg.train_method}

    def client_page(request: Request, ws: Workspace, c: Ctx, cid: str, status: int = 200, **kw):
        client = ws.client(cid)
        return page(request, "client.html", c, status=status, nav="clients", client=client,
                    info=ws.basic_info(cid), notes=ws.notes(cid), drafts=ws.drafts(cid),
                    templates=list(st.templates.values()), default_template=c.actor.note_template,
                    template_of=st.template, today=date.today().isoformat(), alerts=alerts_for(ws, {cid}),
                    **training_context(ws, cid), **kw)

    @app.get("/clients/{cid}/training", response_class=HTMLResponse)
    def training_partial(cid: str, request: Request):
        ws, c = workspace(request)
        return page(request, "_training.html", c, client=ws.client(cid), **training_context(ws, cid))

    @app.post("/clients/{cid}/train")
    async def train_start(cid: str, request: Request):
        ws, c = workspace(request)
        form = await request.form()
        await run_in_threadpool(ws.start_training, cid, method=str(form.get("method", "")) or None)
        return RedirectResponse(f"/clients/{cid}?notice=training_queued#training", status_code=303)

    @app.post("/clients/{cid}/jobs/{job_id}/cancel")
    async def train_cancel(cid: str, job_id: str, request: Request):
        ws, c = workspace(request)
        await run_in_threadpool(ws.cancel_training, cid, job_id)
        return RedirectResponse(f"/clients/{cid}#training", status_code=303)

    @app.post("/clients/{cid}/adapter-choice")
    async def adapter_choice(cid: str, request: Request):
        ws, c = workspace(request)
        form = await request.form()
        choice = str(form.get("choice", "auto"))
        await run_in_threadpool(ws.set_adapter_choice, cid, None if choice == "auto" else choice)
        return RedirectResponse(f"/clients/{cid}?notice=adapter_saved#training", status_code=303)

    @app.post("/clients/{cid}/adapters/{version}/delete")
    async def adapter_delete(cid: str, version: str, request: Request):
        ws, c = workspace(request)
        if not version.isdigit():
            raise NotFound("no such adapter version")
        await run_in_threadpool(ws.delete_adapter, cid, int(version))
        return RedirectResponse(f"/clients/{cid}?notice=adapter_saved#training", status_code=303)

    @app.get("/clients/{cid}", response_class=HTMLResponse)
    def client_view(cid: str, request: Request):
        ws, c = workspace(request)
        return client_page(request, ws, c, cid)

    @app.post("/clients/{cid}")
    async def client_update(cid: str, request: Request):
        ws, c = workspace(request)
        form = await request.form()
        await run_in_threadpool(ws.update_client, cid, name=str(form.get("name", "")), tags=str(form.get("tags", "")))
        return back(f"/clients/{cid}", "saved")

    @app.post("/clients/{cid}/archive")
    async def client_archive(cid: str, request: Request):
        ws, c = workspace(request)
        form = await request.form()
        await run_in_threadpool(ws.set_archived, cid, form.get("archived") == "1")
        return back(f"/clients/{cid}", "saved")

    @app.post("/clients/{cid}/delete")
    async def client_delete(cid: str, request: Request):
        ws, c = workspace(request)
        form = await request.form()
        client = await run_in_threadpool(ws.client, cid)
        if str(form.get("confirm", "")).strip() != client.name:
            raise Invalid(translator(c.locale)("delete_mismatch"))
        await run_in_threadpool(ws.delete_client, cid)
        return back("/", "client_deleted")

    @app.post("/clients/{cid}/basic-info")
    async def basic_info_save(cid: str, request: Request):
        ws, c = workspace(request)
        form = await request.form()
        data = {k: str(form.get(k, "")) for k in BASIC_KEYS}

        def save():
            ws.update_basic_info(cid, data)
            for k, v in data.items():
                screen(v, cid, "note", f"text:basic:{k}")
        await run_in_threadpool(save)
        return back(f"/clients/{cid}", "saved")

    @app.get("/clients/{cid}/basic-info", response_class=HTMLResponse)
    def basic_info_history(cid: str, request: Request):
        ws, c = workspace(request)
        return page(request, "basic_history.html", c, nav="clients", client=ws.client(cid),
                    versions=ws.basic_info_history(cid))

    # --- export --------------------------------------------------------------------------------------

    @app.get("/clients/{cid}/export.md")
    def export_md(cid: str, request: Request):
        from psyassist.app.export import to_markdown
        from psyassist.app.exporting import client_record

        ws, c = workspace(request)
        rec = client_record(ws, st, cid, c.locale)
        ws._audit("client.export", cid, "markdown")
        return Response(to_markdown(rec), media_type="text/markdown; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="client-{cid[:8]}.md"'})

    @app.get("/clients/{cid}/export.pdf")
    def export_pdf(cid: str, request: Request):
        from psyassist.app.export import to_pdf
        from psyassist.app.exporting import client_record

        ws, c = workspace(request)
        rec = client_record(ws, st, cid, c.locale)
        ws._audit("client.export", cid, "pdf")
        return Response(to_pdf(rec), media_type="application/pdf",
                        headers={"Content-Disposition": f'attachment; filename="client-{cid[:8]}.pdf"'})

    # --- notes ---------------------------------------------------------------------------------------

    @app.get("/notes/{nid}/versions", response_class=HTMLResponse)
    def note_versions(nid: str, request: Request):
        ws, c = workspace(request)
        note = ws.note(nid)
        versions = ws.note_versions(nid)
        tpl = st.template(note.template)
        for i, v in enumerate(versions):
            older = versions[i + 1]["sections"] if i + 1 < len(versions) else {}
            v["diff"] = {s.key: _diff((older or {}).get(s.key, []), (v["sections"] or {}).get(s.key, []))
                         for s in tpl.sections}
        return page(request, "note_versions.html", c, nav="clients", client=ws.client(note.client_id), note=note,
                    versions=versions, tpl=tpl)

    def similar_page(request: Request, c: Ctx, similar: dict, back_to: str, titled: bool = False) -> HTMLResponse:
        """The card's content for htmx; a whole page when the link is followed without JavaScript.
        `titled`: under a note the list needs its own heading (the draft page's card has one)."""
        name = "_similar.html" if request.headers.get("hx-request") else "similar.html"
        return page(request, name, c, nav="clients", similar=similar, back_to=back_to, titled=titled)

    @app.get("/notes/{nid}/similar", response_class=HTMLResponse)
    def note_similar(nid: str, request: Request, k: int = 5):
        ws, c = workspace(request)
        similar = ws.similar_cases(note_id=nid, k=k)
        return similar_page(request, c, similar, f"/clients/{similar['client_id']}#note-{nid}", titled=True)

    @app.post("/notes/{nid}/sign")
    async def note_sign(nid: str, request: Request):
        ws, c = workspace(request)
        await run_in_threadpool(ws.sign_note, nid)
        note = await run_in_threadpool(ws.note, nid)
        return back(f"/clients/{note.client_id}", "signed")

    @app.post("/notes/{nid}/addenda")
    async def note_addendum(nid: str, request: Request):
        ws, c = workspace(request)
        form = await request.form()
        text = str(form.get("text", ""))
        rid = await run_in_threadpool(ws.add_addendum, nid, text)
        note = await run_in_threadpool(ws.note, nid)
        await run_in_threadpool(screen, text, note.client_id, "note", f"text:addendum:{rid}")
        return back(f"/clients/{note.client_id}", "addendum_saved")

    @app.post("/notes/{nid}/edit")
    async def note_edit(nid: str, request: Request):
        ws, c = workspace(request)
        did = await run_in_threadpool(ws.draft_for_note, nid, st.templates)
        return back(f"/drafts/{did}")

    # --- drafts --------------------------------------------------------------------------------------

    @app.post("/clients/{cid}/drafts")
    async def draft_create(cid: str, request: Request):
        ws, c = workspace(request)
        await run_in_threadpool(ws.client, cid)  # not theirs → 404 before any validation message
        form = await request.form()
        text = str(form.get("input", ""))
        mode = str(form.get("mode", "analysis"))
        tpl = st.template(str(form.get("template", c.actor.note_template)))
        try:
            when = date.fromisoformat(str(form.get("session_date", "")) or date.today().isoformat())
        except ValueError as e:
            raise Invalid("the session date must be a date (YYYY-MM-DD)") from e
        if mode == "analysis" and not text.strip():
            raise Invalid(translator(c.locale)("input_needed"))
        generate = mode == "analysis" and st.runner is not None
        use_library = form.get("use_library") == "1" if form.get("library_field") else True
        did = await run_in_threadpool(ws.create_draft, cid, text, tpl, when, generate=generate, use_library=use_library)
        await run_in_threadpool(screen, text, cid, "note", f"draft:{did}")
        if generate:
            st.runner.start_draft(ws, did)
        return back(f"/drafts/{did}")

    def draft_context(ws: Workspace, c: Ctx, did: str, **kw) -> dict:
        d = ws.draft(did)
        tpl = st.template(d.template)
        content = d.content or {"sections": {}, "basic_info": {}, "section_comments": {}}
        ctx_ids = d.provenance.get("context") if d.provenance else None
        context = None
        if ctx_ids:
            dates = _note_dates(ws, d.client_id)
            context = {k: [dates.get(i, i[:8]) for i in ctx_ids.get(k, [])] for k in ("whole", "summarized", "dropped")}
            context["tokens"] = ctx_ids.get("tokens")
        t = translator(c.locale)
        labels = {"sections": [{"key": s.key, "title": s.title(c.locale), "kind": s.kind} for s in tpl.sections],
                  "basic": [[k, basic_label(k, c.locale)] for k in BASIC_KEYS], "basic_title": t("basic_info_updates"),
                  "items": t("stream_items"), "context": t("stream_context")}
        library = library_view(ws, d, content)
        return {"draft": d, "tpl": tpl, "client": ws.client(d.client_id), "context": context, "budget": cfg.context_tokens,
                "library": library, "passage_text": lambda cid: (library["current"].get(cid) or {}).get("text"),
                "live": lambda key: live_items(content, key),
                "basic_item": lambda key: (lambda it: it if it and not it.get("deleted") else None)(
                    content.get("basic_info", {}).get(key)),
                "section_comments": lambda key: content.get("section_comments", {}).get(key, []),
                "stream_labels": labels, **kw}

    def library_view(ws: Workspace, d, content: dict) -> dict:
        """What the draft page shows of the library: offered passages and the current text of every cited one."""
        prov = (d.provenance or {}).get("library")
        offered = (prov or {}).get("passages", [])
        ids = {p["chunk_id"] for p in offered}
        for items in content.get("sections", {}).values():
            ids |= {c["chunk_id"] for it in items for c in it.get("citations") or []}
        current = st.library.passages(ws.actor.id, sorted(ids)) if st.library is not None and ids else {}
        empty = st.library is None or not st.library.signature_any(ws.actor.id)
        return {"ran": prov is not None, "on": d.use_library, "offered": offered, "current": current, "empty": empty}

    @app.get("/drafts/{did}", response_class=HTMLResponse)
    def draft_view(did: str, request: Request):
        ws, c = workspace(request)
        kw = draft_context(ws, c, did)
        return page(request, "draft.html", c, nav="clients", alerts=alerts_for(ws, {kw["draft"].client_id}), **kw)

    @app.get("/drafts/{did}/similar", response_class=HTMLResponse)
    def draft_similar(did: str, request: Request, k: int = 5):
        ws, c = workspace(request)
        return similar_page(request, c, ws.similar_cases(draft_id=did, k=k), f"/drafts/{did}")

    @app.get("/drafts/{did}/events")
    async def draft_events(did: str, request: Request):
        ws, c = workspace(request)
        await run_in_threadpool(ws.draft, did, audit=False)  # ownership check

        async def gen():
            got = False
            if st.runner is not None:
                async for ev in st.runner.events(f"draft:{did}"):
                    got = True
                    yield f"data: {json.dumps(ev, ensure_ascii=False)}\n\n"
            if not got:
                yield 'data: {"type": "gone"}\n\n'

        return StreamingResponse(gen(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    async def draft_action(request: Request, did: str, change, action: str):
        """Apply an edit; htmx gets the re-rendered editor (with the error, if any), a plain form a redirect."""
        ws, c = workspace(request)
        form = await request.form()
        rev = _revision(form)
        error = None
        try:
            await run_in_threadpool(ws.edit_draft, did, lambda content: change(content, form, c), revision=rev,
                                    action=action)
        except (Conflict, Invalid) as e:
            if not request.headers.get("hx-request"):
                raise
            error = str(e)
        return editor_or_redirect(request, ws, c, did, error)

    def editor_or_redirect(request: Request, ws: Workspace, c: Ctx, did: str, error: str | None = None):
        if request.headers.get("hx-request"):
            return page(request, "_draft_body.html", c, **draft_context(ws, c, did, error=error))
        return back(f"/drafts/{did}")

    def _text(form, limit: int = 20_000) -> str:
        text = str(form.get("text", ""))
        if len(text) > limit:
            raise Invalid(f"the text is {len(text):,} characters; the limit is {limit:,}")
        return text

    def _client_of_draft(ws: Workspace, did: str) -> str:
        return ws.draft(did, audit=False).client_id

    @app.post("/drafts/{did}/items/{iid}/edit")
    async def item_edit(did: str, iid: str, request: Request):
        def change(content, form, c):
            f = find_item(content, iid)
            if f is None:
                raise Conflict("that item is not in the draft any more")
            item, text = f[2], _text(form).strip()
            if text != item["text"]:
                item["text"] = text
                if item["origin"] in ("model", "regenerated"):
                    item["origin"] = "edited"
        r = await draft_action(request, did, change, "draft.edit_item")
        ws, _ = workspace(request)
        form = await request.form()
        await run_in_threadpool(screen, str(form.get("text", "")), await run_in_threadpool(_client_of_draft, ws, did),
                                "note", f"text:item:{iid}")
        return r

    @app.post("/drafts/{did}/items/{iid}/comment")
    async def item_comment(did: str, iid: str, request: Request):
        def change(content, form, c):
            f = find_item(content, iid)
            text = _text(form, 2000).strip()
            if f is None or not text:
                raise Invalid("a comment needs text")
            f[2]["comments"].append({"id": secrets.token_hex(4), "by": c.actor.username, "at": date.today().isoformat(),
                                     "text": text})
        return await draft_action(request, did, change, "draft.comment")

    @app.post("/drafts/{did}/items/{iid}/delete")
    async def item_delete(did: str, iid: str, request: Request):
        ws, _ = workspace(request)
        tpl = st.template((await run_in_threadpool(ws.draft, did, audit=False)).template)

        def change(content, form, c):
            f = find_item(content, iid)
            if f is None:
                raise Conflict("that item is not in the draft any more")
            where, key, item = f
            if where == "section" and tpl.section(key).kind == "text":
                item["text"] = ""  # a text section keeps its one (now empty) item
                if item["origin"] in ("model", "regenerated"):
                    item["origin"] = "edited"
            else:
                item["deleted"] = True  # kept for the adapter's preference data: the counselor rejected it
        return await draft_action(request, did, change, "draft.delete_item")

    @app.post("/drafts/{did}/sections/{key}/add")
    async def section_add(did: str, key: str, request: Request):
        ws, _ = workspace(request)
        d = await run_in_threadpool(ws.draft, did, audit=False)
        tpl = st.template(d.template)
        sec = tpl.section(key)

        def change(content, form, c):
            text = _text(form).strip()
            if not text:
                raise Invalid("an item needs text")
            items = content["sections"].setdefault(key, [])
            if len([i for i in items if not i.get("deleted")]) >= sec.max_items:
                raise Invalid(f"this section holds at most {sec.max_items} items")
            items.append(new_item(text[:max(sec.max_chars, 4000)], "counselor"))
        r = await draft_action(request, did, change, "draft.add_item")
        form = await request.form()
        await run_in_threadpool(screen, str(form.get("text", "")), d.client_id, "note", f"text:item:{key}")
        return r

    @app.post("/drafts/{did}/sections/{key}/comment")
    async def section_comment(did: str, key: str, request: Request):
        def change(content, form, c):
            text = _text(form, 2000).strip()
            if not text:
                raise Invalid("a comment needs text")
            content.setdefault("section_comments", {}).setdefault(key, []).append(
                {"id": secrets.token_hex(4), "by": c.actor.username, "at": date.today().isoformat(), "text": text})
        return await draft_action(request, did, change, "draft.comment")

    @app.post("/drafts/{did}/basic/{key}/set")
    async def basic_set(did: str, key: str, request: Request):
        if key not in BASIC_KEYS:
            raise NotFound("no such field")

        def change(content, form, c):
            text = _text(form, 4000).strip()
            if not text:
                raise Invalid("the field needs text")
            content["basic_info"][key] = new_item(text, "counselor")
        return await draft_action(request, did, change, "draft.basic_info")

    async def regenerate(request: Request, did: str, run):
        ws, c = workspace(request)
        form = await request.form()
        if st.runner is None:
            raise Conflict("no model is configured for this app")
        error = None
        try:
            await run(ws, _revision(form))
        except NotFound:
            raise
        except (Conflict, Invalid) as e:
            if not request.headers.get("hx-request"):
                raise
            error = str(e)
        except PsyassistError as e:  # the model failed: the draft is unchanged, say so
            error = translator(c.locale)("regenerate_failed") + f" ({e})"
            if not request.headers.get("hx-request"):
                raise Conflict(error) from e
        return editor_or_redirect(request, ws, c, did, error)

    @app.post("/drafts/{did}/items/{iid}/regenerate")
    async def item_regenerate(did: str, iid: str, request: Request):
        return await regenerate(request, did, lambda ws, rev: st.runner.regenerate_item(ws, did, iid, rev))

    @app.post("/drafts/{did}/sections/{key}/regenerate")
    async def section_regenerate(did: str, key: str, request: Request):
        return await regenerate(request, did, lambda ws, rev: st.runner.regenerate_section(ws, did, key, rev))

    @app.post("/drafts/{did}/library")
    async def draft_library(did: str, request: Request):
        ws, c = workspace(request)
        form = await request.form()
        await run_in_threadpool(ws.set_draft_library, did, form.get("use_library") == "1")
        return back(f"/drafts/{did}", "library_saved")

    @app.post("/drafts/{did}/redo")
    async def draft_redo(did: str, request: Request):
        ws, c = workspace(request)
        if st.runner is None:
            raise Conflict("no model is configured for this app")
        await st.runner.redo_draft(ws, did)
        return back(f"/drafts/{did}")

    @app.post("/drafts/{did}/save")
    async def draft_save(did: str, request: Request):
        ws, c = workspace(request)
        form = await request.form()
        d = await run_in_threadpool(ws.draft, did, audit=False)
        nid = await run_in_threadpool(ws.save_draft, did, st.template(d.template), revision=_revision(form))
        return RedirectResponse(f"/clients/{d.client_id}?notice=note_saved#note-{nid}", status_code=303)

    # --- chat ----------------------------------------------------------------------------------------

    @app.get("/chats", response_class=HTMLResponse)
    def chats_page(request: Request, client: str = ""):
        ws, c = workspace(request)
        clients = ws.list_clients()
        subjects = {s for s in ws.my_client_ids() if s.startswith("chat:")}
        return page(request, "chats.html", c, nav="chat", chats=ws.chats(), clients=clients,
                    client_names={x.id: x.name for x in clients}, selected_client=client,
                    alerts=alerts_for(ws, subjects))

    @app.post("/chats")
    async def chat_create(request: Request):
        ws, c = workspace(request)
        form = await request.form()
        chat_id = await run_in_threadpool(ws.create_chat, str(form.get("client_id", "")) or None,
                                          use_notes=form.get("use_notes") == "1",
                                          use_library=form.get("use_library") == "1" if form.get("library_field")
                                          else True)
        return back(f"/chats/{chat_id}")

    def chat_subject(chat: dict) -> str:
        return chat["client_id"] or f"chat:{chat['id']}"

    @app.get("/chats/{chat_id}", response_class=HTMLResponse)
    def chat_page(chat_id: str, request: Request):
        ws, c = workspace(request)
        chat = ws.chat(chat_id)
        client = ws.client(chat["client_id"]) if chat["client_id"] else None
        ids = sorted({p["chunk_id"] for m in chat["messages"] for p in (m["provenance"].get("library") or {})
                      .get("passages", [])})
        current = st.library.passages(ws.actor.id, ids) if st.library is not None and ids else {}
        return page(request, "chat.html", c, nav="chat", chat=chat, client=client, passages=current,
                    alerts=alerts_for(ws, {chat_subject(chat)}))

    @app.post("/chats/{chat_id}/messages")
    async def chat_send(chat_id: str, request: Request):
        ws, c = workspace(request)
        form = await request.form()
        text = _text(form).strip()
        if not text:
            raise Invalid("a message needs text")
        if st.runner is None:
            raise Conflict("no model is configured for this app")
        chat = await run_in_threadpool(ws.chat, chat_id)
        det = detect(text, context="counselor_note")
        mid = await run_in_threadpool(ws.add_message, chat_id, "user", text,
                                      crisis_level=det.level if det.flagged else None)
        if det.flagged:
            await run_in_threadpool(st.audit.record, det, client=chat_subject(chat), source="chat",
                                    ref=f"message:{chat_id}:{mid}")
        reply_id = await run_in_threadpool(ws.add_message, chat_id, "assistant", "", status="generating")
        st.runner.start_reply(ws, chat_id, reply_id)
        if "application/json" in request.headers.get("accept", ""):
            out = {"message_id": mid, "reply_id": reply_id, "crisis": det.level if det.flagged else None}
            if det.flagged:
                html = templates.get_template("_alerts.html").render(
                    request=request, alerts=alerts_for(ws, {chat_subject(chat)}), csrf=c.csrf, t=translator(c.locale),
                    region=cfg.region, next_path=f"/chats/{chat_id}")
                out["alerts_html"] = html
            return JSONResponse(out)
        return back(f"/chats/{chat_id}")

    @app.get("/chats/{chat_id}/replies/{mid}/events")
    async def reply_events(chat_id: str, mid: str, request: Request):
        ws, c = workspace(request)
        await run_in_threadpool(ws.chat_client, chat_id)  # ownership check

        async def gen():
            got = False
            if st.runner is not None:
                async for ev in st.runner.events(f"chat:{mid}"):
                    got = True
                    yield f"data: {json.dumps(ev, ensure_ascii=False)}\n\n"
            if not got:
                yield 'data: {"type": "gone"}\n\n'

        return StreamingResponse(gen(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    # --- the library ---------------------------------------------------------------------------------

    def library_enabled(c: Ctx) -> None:
        if not cfg.library or st.library is None:
            raise NotFound("the library is turned off in this app's settings (library: false)")
        if c.actor.is_admin:
            raise NotFound("administrator accounts have no library; sign in as a counselor")

    @app.get("/library", response_class=HTMLResponse)
    def library_page(request: Request, q: str = "", upload: str = ""):
        ws, c = workspace(request)
        library_enabled(c)
        docs = st.library.documents(c.actor.id)
        found = st.library.search(c.actor.id, q, k=10) if q.strip() else None
        job = st.library.upload_status(c.actor.id, upload) if upload else None
        return page(request, "library.html", c, nav="library", docs=docs, q=q, found=found, job=job, token=upload,
                    embedder_error=st.library.embedder_error, shared_name=cfg.kb_shared_library)

    @app.get("/library/uploads/{token}", response_class=HTMLResponse)
    def library_upload_status(token: str, request: Request):
        """The progress card for htmx polling; once done, the whole page again (its document list changed)."""
        ws, c = workspace(request)
        library_enabled(c)
        job = st.library.upload_status(c.actor.id, token)
        if job is None:
            raise NotFound("no such upload (its report is kept for an hour)")
        if job["status"] == "done":
            return Response(status_code=200, headers={"HX-Redirect": f"/library?upload={token}"})
        return page(request, "_upload_progress.html", c, job=job, token=token)

    async def uploaded_files(request: Request) -> list[tuple[str, Path]]:
        """The form's files, each copied to a private temp file (the caller's library.upload moves it)."""
        import shutil
        import tempfile

        form = await request.form()
        files = [f for f in form.getlist("files") if hasattr(f, "filename") and f.filename]
        if not files:
            raise Invalid("choose at least one file to upload")
        out = []
        tmp_dir = cfg.data_dir / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        for f in files:
            fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="upload-")
            with open(fd, "wb") as dst:
                await run_in_threadpool(shutil.copyfileobj, f.file, dst, 1 << 20)
            out.append((f.filename, Path(name)))
        return out

    async def library_upload(request: Request, c: Ctx) -> dict:
        library_enabled(c)
        files = await uploaded_files(request)
        try:
            return await run_in_threadpool(st.library.upload, c.actor.id, files)
        finally:
            for _, tmp in files:  # moved away when ingested; anything left (a refused file) goes here
                tmp.unlink(missing_ok=True)

    @app.post("/library/upload")
    async def library_upload_page(request: Request):
        ws, c = workspace(request)
        library_enabled(c)
        files = await uploaded_files(request)
        try:
            token = st.library.start_upload(c.actor.id, files)  # the thread removes the files when done
        except BaseException:
            for _, tmp in files:
                tmp.unlink(missing_ok=True)
            raise
        return back(f"/library?upload={token}")

    @app.post("/library/documents/{doc_id}/delete")
    async def library_remove(doc_id: Annotated[int, FPath(ge=1, le=2**31 - 1)], request: Request):
        ws, c = workspace(request)
        library_enabled(c)
        await run_in_threadpool(st.library.remove, c.actor.id, doc_id)
        return back("/library", "library_removed")

    @app.get("/library/passages/{chunk_id}", response_class=HTMLResponse)
    def library_passage(chunk_id: Annotated[int, FPath(ge=1, le=2**31 - 1)], request: Request):
        ws, c = workspace(request)
        library_enabled(c)
        return page(request, "passage.html", c, nav="library", p=st.library.passage(c.actor.id, chunk_id),
                    back_to=_referer_path(request))

    # --- alerts --------------------------------------------------------------------------------------

    @app.post("/alerts/{event_id}/ack")
    async def alert_ack(event_id: str, request: Request):
        ws, c = workspace(request)
        form = await request.form()
        event = next((e for e in st.audit.pending() if e["id"] == event_id), None)
        if event is None or not await run_in_threadpool(ws.owns_alert_subject, event["client"]):
            raise NotFound("no such alert (it may have been acknowledged already)")
        await run_in_threadpool(st.audit.acknowledge, event_id, by=c.actor.username,
                                note=str(form.get("note", ""))[:500])
        return back(_safe_next(str(form.get("next", "/"))), "alert_acknowledged")

    # --- JSON API ------------------------------------------------------------------------------------
    from psyassist.app.web.api import add_api

    add_api(app, st, workspace=workspace, screen=screen, set_session_cookie=set_session_cookie,
            library_upload=library_upload, library_enabled=library_enabled)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "database": st.db.dialect, "backend": st.cfg.backend}

    return app


def _safe_next(path: str) -> str:
    """Only same-site paths: an open redirect after login would be a phishing aid."""
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/"


def _referer_path(request: Request, default: str = "/library") -> str:
    """Where "back" goes from a passage: the referring page of this site (path and query only)."""
    from urllib.parse import urlsplit

    ref = urlsplit(request.headers.get("referer") or "")
    if ref.netloc and ref.netloc != request.url.netloc:
        return default
    return _safe_next(ref.path + (f"?{ref.query}" if ref.query else "")) if ref.path else default


def _revision(form) -> int | None:
    raw = form.get("revision")
    try:
        return int(raw) if raw not in (None, "") else None
    except ValueError as e:
        raise Invalid("revision must be a whole number") from e


def _diff(old: list[str], new: list[str]) -> dict:
    lines = []
    for op in difflib.ndiff(old, new):
        if op.startswith("? "):
            continue
        lines.append(({"+ ": "+", "- ": "-", "  ": " "}[op[:2]], op[2:]))
    return {"changed": old != new, "lines": lines}


def _note_dates(ws: Workspace, cid: str) -> dict[str, str]:
    return {n.id: n.session_date.isoformat() for n in ws.notes(cid)}


def _users(st: AppState):
    from sqlalchemy import select

    from psyassist.app.store.models import User

    with st.db.read() as s:
        return s.scalars(select(User).order_by(User.created_at)).all()


def _update_user(st: AppState, uid: str, **values) -> None:
    from psyassist.app.store.models import User

    with st.db.write() as s:
        u = s.get(User, uid)
        for k, v in values.items():
            setattr(u, k, v)
    accounts.forget_sessions(user_id=uid)  # the cached actor carries the locale and template


def _set_active(st: AppState, uid: str, active: bool) -> None:
    from sqlalchemy import delete

    from psyassist.app.store.models import AuthSession, User

    with st.db.write() as s:
        u = s.get(User, uid)
        if u is None:
            raise NotFound("no such account")
        u.active = active
        if not active:
            s.execute(delete(AuthSession).where(AuthSession.user_id == uid))
    accounts.forget_sessions(user_id=uid)
    if not active:
        st.similar.forget(uid)

