"""The app's HTTP side with a scripted model: login, CSRF, ownership on every route, escaping, drafting,
regeneration, chat with the crisis banner, export, i18n, the JSON API under schemathesis.

    pytest tests/test_app_web.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app_helpers import (
    PASSWORD,
    ScriptedBackend,
    Server,
    login,
    make_state,
    prepare_accounts,
    wait_draft,
    web_client,
)
from psyassist.app.web.i18n import EN, ZH

XSS_SCRIPT = "<script>alert('x')</script>"
XSS_IMG = '<img src=x onerror="alert(1)">'
DRAFT = json.dumps({
    "counseling_question": "考试前焦虑，如何应对？ " + XSS_SCRIPT,
    "symptom_type": "学业焦虑",
    "reasons": ["父母期望高 " + XSS_IMG, "前次高考失利"],
    "advice": ["认知行为疗法", "放松训练"],
    "basic_info_updates": {"demographics": "", "development": "", "mental_state": "焦虑、失眠", "physical": "",
                           "social": ""}}, ensure_ascii=False)
URGENT = "The client told me: I am going to kill myself tonight, I have the pills ready."


@pytest.fixture
def app(tmp_path):
    backend = ScriptedBackend([DRAFT, json.dumps({"text": "重新生成的原因"}, ensure_ascii=False),
                               json.dumps({"items": ["新的建议一", "新的建议二"]}, ensure_ascii=False)])
    st = make_state(tmp_path, backend=backend)
    with web_client(st) as client:
        yield st, client, backend
    st.close()


def _csrf(client, username) -> str:
    return login(client, username)


def _client(client, csrf, name="孙某 S.L.") -> str:
    r = client.post("/api/v1/clients", json={"name": name, "tags": ["考试焦虑"]}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _analysis(client, csrf, cid, text="来访者19岁，高三复读，考试前失眠头痛。") -> str:
    r = client.post(f"/clients/{cid}/drafts", data={"input": text, "mode": "analysis", "template": "seed004",
                                                    "session_date": "2026-12-01", "csrf_token": csrf})
    assert r.status_code == 303, r.text
    return r.headers["location"].rsplit("/", 1)[1]


def test_login_sets_a_strict_http_only_cookie_and_logout_ends_it(app):
    st, client, _ = app
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    assert client.post("/login", data={"username": "alice", "password": "nope-nope-nope", "csrf_token": token}
                       ).status_code == 401
    r = client.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token, "next": "/"})
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert "psyassist_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    home = client.get("/")
    assert home.status_code == 200 and "Content-Security-Policy" in home.headers
    assert "script-src 'self'" in home.headers["Content-Security-Policy"] and home.headers["Cache-Control"] == "no-store"
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', home.text).group(1)
    assert client.post("/logout", data={"csrf_token": csrf}).status_code == 303
    assert client.get("/").status_code == 303  # back to the login page


def test_login_without_its_csrf_cookie_is_rejected(app):
    _, client, _ = app
    r = client.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": "forged"})
    assert r.status_code == 403


def test_login_is_rate_limited(app):
    _, client, _ = app
    for _ in range(5):
        assert client.post("/api/v1/login", json={"username": "alice", "password": "wrong-wrong-wrong"}).status_code == 401
    r = client.post("/api/v1/login", json={"username": "alice", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


def _routes(app_obj):
    """(method, path template) of every route the app serves, static files and docs excluded."""
    out = []
    for r in app_obj.routes:
        methods = getattr(r, "methods", None)
        if not methods or r.path.startswith(("/static", "/api/openapi")):
            continue
        out += [(m, r.path) for m in sorted(methods) if m != "HEAD"]
    return out


def _fill(path: str, ids: dict) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)


def _alices_records(st, client):
    csrf = _csrf(client, "alice")
    cid = _client(client, csrf)
    did = _analysis(client, csrf, cid)
    d = wait_draft(client, did)
    r = client.post(f"/api/v1/drafts/{did}/save", json={}, headers={"X-CSRF-Token": csrf})
    nid = r.json()["id"]
    r = client.post("/chats", data={"client_id": cid, "use_notes": "1", "csrf_token": csrf})
    chat = r.headers["location"].rsplit("/", 1)[1]
    item = d["content"]["sections"]["reasons"][0]["id"]
    # A queued training job (no worker runs in these tests) and version 1: a real job id, a plausible version.
    r = client.post(f"/api/v1/clients/{cid}/train", json={"steps": 1}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    job = r.json()["job_id"]
    # A document in alice's library, and one of its passages.
    r = client.post("/api/v1/library/documents", headers={"X-CSRF-Token": csrf},
                    files={"files": ("grounding.md", b"# Grounding\n\nName five things you can see.\n")})
    assert r.status_code == 200 and r.json()["added"], r.text
    doc = client.get("/api/v1/library/documents").json()["own"][0]["id"]
    chunk = client.get("/api/v1/library/search", params={"q": "grounding"}).json()["results"][0]["chunk_id"]
    return {"cid": cid, "did": did, "nid": nid, "chat_id": chat, "iid": item, "key": "reasons", "mid": "0" * 32,
            "uid": "0" * 32, "event_id": "0" * 16, "job_id": job, "version": "1", "doc_id": str(doc),
            "chunk_id": str(chunk)}, csrf


def test_every_route_hides_another_counselors_records(app):
    st, client, _ = app
    ids, _ = _alices_records(st, client)
    csrf_b = _csrf(client, "bob")  # the client's cookie jar now holds bob's session
    checked = 0
    for method, path in _routes(client.app):
        if not any(k in path for k in ("{cid}", "{did}", "{nid}", "{chat_id}", "{iid}", "{doc_id}", "{chunk_id}")):
            continue
        url = _fill(path, ids)
        if method == "GET":
            r = client.get(url)
        else:
            r = client.request(method, url, data={"csrf_token": csrf_b, "text": "x", "name": "x", "confirm": "x"},
                               headers={"X-CSRF-Token": csrf_b})
        assert r.status_code in (404, 422), f"{method} {url} gave {r.status_code} to another counselor"
        checked += 1
    assert checked >= 30
    csrf_a = _csrf(client, "alice")
    assert client.get(f"/api/v1/clients/{ids['cid']}").json()["name"] == "孙某 S.L."  # nothing changed
    assert client.get(f"/api/v1/notes/{ids['nid']}").json()["version"] == 1
    assert csrf_a


def test_an_admin_opens_no_client_record(app):
    st, client, _ = app
    ids, _ = _alices_records(st, client)
    _csrf(client, "root")
    for url in (f"/clients/{ids['cid']}", f"/api/v1/clients/{ids['cid']}", f"/notes/{ids['nid']}/versions",
                f"/drafts/{ids['did']}", "/api/v1/clients"):
        assert client.get(url).status_code == 404, url
    assert client.get("/admin").status_code == 200 and client.get("/admin/audit").status_code == 200


def test_every_state_changing_route_needs_the_csrf_token(app):
    st, client, _ = app
    ids, csrf = _alices_records(st, client)
    before = client.get(f"/api/v1/clients/{ids['cid']}").json()
    checked = 0
    for method, path in _routes(client.app):
        if method == "GET" or path in ("/login", "/api/v1/login", "/language"):
            continue
        url = _fill(path, ids)
        r = client.request(method, url, data={"name": "changed", "confirm": "孙某 S.L.", "text": "x"})
        assert r.status_code == 403, f"{method} {url} accepted a request without the CSRF token ({r.status_code})"
        r = client.request(method, url, data={"name": "changed", "csrf_token": "wrong"},
                           headers={"X-CSRF-Token": "also-wrong"})
        assert r.status_code == 403
        checked += 1
    assert checked >= 25
    assert client.get(f"/api/v1/clients/{ids['cid']}").json() == before


def test_model_and_user_text_is_escaped_everywhere(app):
    st, client, _ = app
    ids, csrf = _alices_records(st, client)
    client.post(f"/clients/{ids['cid']}", data={"name": "X " + XSS_IMG, "tags": XSS_SCRIPT, "csrf_token": csrf})
    pages = [client.get(f"/drafts/{ids['did']}"), client.get(f"/clients/{ids['cid']}"), client.get("/"),
             client.get(f"/notes/{ids['nid']}/versions"), client.get("/chats")]
    for p in pages:
        assert p.status_code == 200
        assert "<script>alert" not in p.text and "<img src=x" not in p.text, p.url
    draft_page = pages[0].text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in draft_page and "&lt;img src=x onerror=" in draft_page
    md = client.get(f"/clients/{ids['cid']}/export.md").text
    assert "<script>" not in md and "\\<script\\>" in md


def test_analysis_streams_a_parsed_draft_with_provenance(app):
    st, client, backend = app
    csrf = _csrf(client, "alice")
    cid = _client(client, csrf)
    did = _analysis(client, csrf, cid)
    events = client.get(f"/drafts/{did}/events").text  # the running draft's channel (snapshot, then the rest)
    d = wait_draft(client, did)
    assert d["status"] == "ready"
    reasons = [i["text"] for i in d["content"]["sections"]["reasons"]]
    assert reasons == ["父母期望高 " + XSS_IMG, "前次高考失利"]
    assert d["content"]["basic_info"]["mental_state"]["text"] == "焦虑、失眠"
    p = d["provenance"]
    assert p["backend"] == "scripted" and p["finish"] == "stop" and len(p["prompt_hash"]) == 16 and p["sampling"]
    assert p["context"] == {"whole": [], "summarized": [], "dropped": [], "tokens": p["context"]["tokens"]}
    assert backend.calls[0]["schema"]["required"][-1] == "basic_info_updates"  # the template's schema was sent
    assert '"type": "done"' in events or '"type": "gone"' in events


def test_the_model_failing_leaves_an_editable_draft_and_the_input(tmp_path):
    st = make_state(tmp_path, backend=ScriptedBackend([DRAFT], fail=True))
    with web_client(st) as client:
        csrf = _csrf(client, "alice")
        cid = _client(client, csrf)
        did = _analysis(client, csrf, cid, text="原始输入必须保留")
        d = wait_draft(client, did)
        assert d["status"] == "failed" and d["input"] == "原始输入必须保留" and "Regenerate" in d["error"]
        page = client.get(f"/drafts/{did}")
        assert page.status_code == 200 and "原始输入必须保留" in page.text and "Save to notes" in page.text
    st.close()


def test_history_in_the_prompt_respects_the_budget_and_is_reported(tmp_path):
    st = make_state(tmp_path, backend=ScriptedBackend([DRAFT]), context_tokens=120)
    with web_client(st) as client:
        csrf = _csrf(client, "alice")
        cid = _client(client, csrf)
        for _ in range(4):  # four saved notes of history
            did = _analysis(client, csrf, cid)
            wait_draft(client, did)
            client.post(f"/api/v1/drafts/{did}/save", json={}, headers={"X-CSRF-Token": csrf})
        did = _analysis(client, csrf, cid)
        ctx = wait_draft(client, did)["provenance"]["context"]
        assert ctx["tokens"] <= 120 and (ctx["summarized"] or ctx["dropped"])
        assert len(ctx["whole"]) + len(ctx["summarized"]) + len(ctx["dropped"]) == 4
        page = client.get(f"/drafts/{did}").text
        assert "History the model saw" in page and "2026-12-01" in page
    st.close()


def test_edit_comment_regenerate_and_keep_what_the_counselor_wrote(app):
    st, client, backend = app
    csrf = _csrf(client, "alice")
    cid = _client(client, csrf)
    did = _analysis(client, csrf, cid)
    d = wait_draft(client, did)
    first, second = d["content"]["sections"]["reasons"]
    hx = {"HX-Request": "true"}
    r = client.post(f"/drafts/{did}/items/{first['id']}/edit", data={"text": "我改写的原因", "csrf_token": csrf,
                                                                      "revision": d["revision"]}, headers=hx)
    assert r.status_code == 200 and "我改写的原因" in r.text and 'id="draft-body"' in r.text
    r = client.post(f"/drafts/{did}/items/{second['id']}/comment", data={"text": "更具体一些", "csrf_token": csrf},
                    headers=hx)
    assert "更具体一些" in r.text
    r = client.post(f"/drafts/{did}/items/{second['id']}/regenerate", data={"csrf_token": csrf}, headers=hx)
    assert r.status_code == 200 and "重新生成的原因" in r.text
    assert "更具体一些" in backend.calls[-1]["messages"][-1]["content"]  # the comment reached the model
    stale = client.post(f"/drafts/{did}/items/{first['id']}/edit", data={"text": "x", "csrf_token": csrf,
                                                                          "revision": d["revision"]}, headers=hx)
    assert "changed in another window" in stale.text  # a stale revision is refused, not lost silently
    r = client.post(f"/drafts/{did}/sections/advice/regenerate", data={"csrf_token": csrf}, headers=hx)
    d = client.get(f"/api/v1/drafts/{did}").json()
    live = lambda key: [i["text"] for i in d["content"]["sections"][key] if not i["deleted"]]  # noqa: E731
    assert live("advice") == ["新的建议一", "新的建议二"]
    assert live("reasons") == ["我改写的原因", "重新生成的原因"]
    origins = {i["text"]: i["origin"] for i in d["content"]["sections"]["reasons"]}
    assert origins == {"我改写的原因": "edited", "重新生成的原因": "regenerated"}
    assert d["content"]["sections"]["reasons"][0]["model_text"] == "父母期望高 " + XSS_IMG  # the pair is kept
    r = client.post(f"/drafts/{did}/save", data={"csrf_token": csrf})
    assert r.status_code == 303
    note = client.get(f"/api/v1/clients/{cid}/notes").json()[0]
    assert note["sections"]["reasons"] == ["我改写的原因", "重新生成的原因"]
    assert client.get(f"/api/v1/clients/{cid}/basic-info").json()["data"]["mental_state"] == "焦虑、失眠"


def test_sign_then_only_addenda(app):
    st, client, _ = app
    ids, csrf = _alices_records(st, client)
    assert client.post(f"/notes/{ids['nid']}/sign", data={"csrf_token": csrf}).status_code == 303
    r = client.post(f"/api/v1/drafts/{ids['did']}/save", json={}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 409 and "addendum" in r.json()["error"]
    assert client.post(f"/notes/{ids['nid']}/addenda", data={"text": "随访：稳定", "csrf_token": csrf}).status_code == 303
    page = client.get(f"/clients/{ids['cid']}").text
    assert "随访：稳定" in page and "Add addendum" in page


def test_a_crisis_message_raises_a_banner_until_acknowledged(app):
    st, client, _ = app
    ids, csrf = _alices_records(st, client)
    r = client.post(f"/chats/{ids['chat_id']}/messages", data={"text": URGENT, "csrf_token": csrf},
                    headers={"Accept": "application/json"})
    body = r.json()
    assert body["crisis"] == "urgent" and "role=\"alert\"" in body["alerts_html"]
    pending = st.audit.pending()
    assert len(pending) == 1 and pending[0]["source"] == "chat" and "text" not in pending[0]
    page = client.get(f"/chats/{ids['chat_id']}").text
    assert "Possible crisis" in page and "kill myself" in page  # the evidence, recomputed from the stored message
    event = pending[0]["id"]
    _csrf(client, "bob")
    assert client.post(f"/alerts/{event}/ack", data={"csrf_token": _csrf(client, "bob")}).status_code == 404
    csrf = _csrf(client, "alice")
    r = client.post(f"/alerts/{event}/ack", data={"csrf_token": csrf, "note": "called; safety plan",
                                                  "next": f"/chats/{ids['chat_id']}"})
    assert r.status_code == 303
    assert st.audit.pending() == []
    ack = [e for e in st.audit.entries() if e["kind"] == "ack"][0]
    assert ack["by"] == "alice" and ack["event"] == event and ack["note"] == "called; safety plan"
    assert "Possible crisis" not in client.get(f"/chats/{ids['chat_id']}").text


def test_a_crisis_in_the_session_input_shows_on_the_client(app):
    st, client, _ = app
    csrf = _csrf(client, "alice")
    cid = _client(client, csrf)
    did = _analysis(client, csrf, cid, text="来访者说：我已经写好了遗书，今晚就去跳楼。")
    wait_draft(client, did)
    page = client.get(f"/clients/{cid}").text
    assert "Possible crisis" in page and "session input" in page
    assert client.get("/").text.count('class="badge urgent"') == 1  # the client list marks the client


def test_exports_hold_the_record(app):
    from io import BytesIO

    from pypdf import PdfReader

    st, client, _ = app
    ids, csrf = _alices_records(st, client)
    md = client.get(f"/clients/{ids['cid']}/export.md")
    assert md.status_code == 200 and "孙某 S.L." in md.text and "学业焦虑" in md.text
    pdf = client.get(f"/clients/{ids['cid']}/export.pdf")
    assert pdf.headers["content-type"] == "application/pdf"
    text = "".join(p.extract_text() for p in PdfReader(BytesIO(pdf.content)).pages)
    assert "孙某 S.L." in text and "前次高考失利" in text
    actions = [e["action"] for e in st.audit.entries() if e["kind"] == "access"]
    assert actions.count("client.export") == 2


def test_delete_needs_the_name_typed(app):
    st, client, _ = app
    ids, csrf = _alices_records(st, client)
    assert client.post(f"/clients/{ids['cid']}/delete", data={"csrf_token": csrf, "confirm": "wrong"}).status_code == 400
    assert client.post(f"/clients/{ids['cid']}/delete", data={"csrf_token": csrf, "confirm": "孙某 S.L."}
                       ).status_code == 303
    assert client.get(f"/api/v1/clients/{ids['cid']}").status_code == 404


def test_every_template_word_exists_in_both_languages():
    root = Path(__file__).parents[1] / "src" / "psyassist" / "app" / "web"
    used = set()
    for f in list((root / "templates").glob("*.html")) + [root / "server.py"]:
        used |= set(re.findall(r"""\bt\(['"]([a-z0-9_]+)['"]""", f.read_text(encoding="utf-8")))
    used = {k for k in used if not k.endswith("_")}  # prefixes of t('status_' + x): the values are listed below
    prefixed = {"status_": ["generating", "ready", "failed", "interrupted", "saved", "signed", "done"],
                "origin_": ["model", "edited", "counselor", "regenerated"], "level_": ["urgent", "concern"],
                "role_": ["admin", "counselor"], "source_": ["manual", "draft"],
                "alert_source_": ["note", "chat", "serve", "other"]}
    used |= {p + v for p, vs in prefixed.items() for v in vs}
    missing = {k for k in used if k not in EN or k not in ZH}
    assert not missing, sorted(missing)
    assert set(EN) == set(ZH), sorted(set(EN) ^ set(ZH))


def test_switching_the_language_changes_the_pages(app):
    st, client, _ = app
    csrf = _csrf(client, "alice")
    assert "Your clients" in client.get("/").text
    client.post("/settings/language", data={"locale": "zh", "csrf_token": csrf, "next": "/"})
    page = client.get("/").text
    assert "我的来访者" in page and 'lang="zh-CN"' in page


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_in_the_json_api(tmp_path):
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    data = tmp_path / "data"
    prepare_accounts(data)
    server = Server(data).start()
    try:
        import httpx

        s = httpx.Client(base_url=server.url)
        csrf = s.post("/api/v1/login", json={"username": "alice", "password": PASSWORD}).json()["csrf_token"]
        cid = s.post("/api/v1/clients", json={"name": "Fuzz"}, headers={"X-CSRF-Token": csrf}).json()["id"]
        cookie = f"psyassist_session={s.cookies['psyassist_session']}"
        schema = schemathesis.openapi.from_url(server.url + "/api/openapi.json")
        failures, calls = [], []
        for result in schema.get_all_operations():
            op = result.ok()
            if not op.path.startswith("/api/v1/") or op.path == "/api/v1/login":
                continue

            @given(case=op.as_strategy())
            @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def check(case):
                if "cid" in (case.path_parameters or {}) and len(calls) % 2:
                    case.path_parameters["cid"] = cid  # half the calls hit a real client
                r = case.call(base_url=server.url, headers={"Cookie": cookie, "X-CSRF-Token": csrf}, timeout=30)
                calls.append((case.method, r.status_code))
                if r.status_code >= 500:
                    failures.append((case.method, case.formatted_path, case.body, r.status_code, r.text[:300]))

            check()
        assert not failures, failures[:3]
        codes = {c for _, c in calls}
        assert {200, 404} <= codes and (400 in codes or 422 in codes), codes
    finally:
        server.stop()


def test_a_counselors_report_about_the_client_is_urgent_and_the_model_is_told(app):
    """Issue 13 in the app: the counselor writes about the client in the third person; that is the client's
    risk (context "counselor_note"), and the draft's model gets the counselor-facing crisis instruction."""
    st, client, backend = app
    csrf = _csrf(client, "alice")
    cid = _client(client, csrf)
    did = _analysis(client, csrf, cid, text="Client reports she has saved up her sleeping pills and plans to take "
                                            "them all on Friday night.")
    d = wait_draft(client, did)
    pending = st.audit.pending()
    assert len(pending) == 1 and pending[0]["level"] == "urgent" and pending[0]["source"] == "note"
    assert d["provenance"]["crisis_guidance"] == "urgent"
    system = backend.calls[-1]["messages"][0]["content"]
    assert "Safety instruction" in system and "safety plan" in system and "Never describe methods" in system
    did2 = _analysis(client, csrf, cid, text="She enjoyed the weekend hiking with friends.")
    assert wait_draft(client, did2)["provenance"]["crisis_guidance"] is None
    assert "Safety instruction" not in backend.calls[-1]["messages"][0]["content"]
