"""The counselor app in headless Chromium against a real `psyassist app` server: the whole workflow with the
real default model, another counselor's records out of reach, and hostile text shown as text.

    PSYASSIST_SCREENSHOTS=/tmp/shots pytest -m slow tests/test_app_browser.py   # keep the screenshots

A screenshot is taken at every step of the workflow (into $PSYASSIST_SCREENSHOTS, else the test's tmp
dir) so a person can look at what a counselor sees.  The pages run under a strict CSP (no inline script,
no eval), so the tests wait with locators and `expect`, never with evaluated JavaScript.
"""

from __future__ import annotations

import re
from io import BytesIO
from pathlib import Path

import httpx
import pytest

from app_helpers import PASSWORD, Server, prepare_accounts, serving, sign_in

pytestmark = pytest.mark.slow

# First person on purpose: the detector rates a third-person report ("she said she wants to die") lower.
URGENT = "The client told me: I am going to kill myself tonight, I have the pills ready."
XSS_SCRIPT = "<script>alert('x')</script>"
XSS_IMG = '<img src=x onerror="alert(1)">'
# SmolLM2-135M writes ~1-2 tokens/s on 2 busy cores: caps keep the run short (a cut draft is closed and
# kept, never lost).  One torch thread: two spin against each other on 2 cores (see conftest's
# one_torch_thread: 0.5 vs ~2 tokens/s).
MODEL_ENV = {"PSYASSIST_APP_DRAFT_MAX_TOKENS": "96", "PSYASSIST_APP_CHAT_MAX_TOKENS": "32",
             "OMP_NUM_THREADS": "1"}








def test_the_whole_counselor_workflow_with_the_default_model(tmp_path, page, shots):
    from playwright.sync_api import expect
    from pypdf import PdfReader

    data = tmp_path / "data"
    prepare_accounts(data, users=("alice",))
    page.set_default_timeout(60_000)  # a busy 2-core machine: clicks and navigations can take a while
    expect.set_options(timeout=60_000)  # expect()'s own default is 5 s, not the page's: the same allowance
    with serving(Server(data, with_model=True, env=MODEL_ENV)) as server:
        base = server.url
        page.goto(base + "/")
        page.wait_for_url(re.compile(r"/login"))
        shots(page, "login")
        sign_in(page, base, "alice")
        expect(page.get_by_role("heading", name="Your clients")).to_be_visible()
        shots(page, "clients-empty")

        # A client.
        page.locator("#new-name").fill("Lin S.")
        page.locator("#new-tags").fill("exam anxiety, insomnia")
        page.get_by_role("button", name="Create").click()
        page.wait_for_url(re.compile(r"/clients/\w+\?notice=client_created"))
        cid = re.search(r"/clients/(\w+)", page.url).group(1)
        expect(page.get_by_role("heading", name=re.compile("Lin S."))).to_be_visible()
        shots(page, "client-created")

        # Analysis: the stream area first (partial items as the model writes them), then the editor.
        page.locator("#input").fill("Lin, 19, retaking the exam. Sleeps 4 hours, fears failing again.")
        shots(page, "session-input")
        page.locator("button[name=mode][value=analysis]").click()
        page.wait_for_url(re.compile(r"/drafts/\w+$"))
        expect(page.locator("#stream")).to_be_visible()
        assert page.locator("#draft-body").count() == 0
        shots(page, "draft-waiting")
        page.wait_for_selector("#stream-box .item-text", timeout=120_000)
        shots(page, "draft-streaming")
        page.wait_for_selector("#draft-body", timeout=240_000)
        assert page.locator("#stream").count() == 0
        expect(page.get_by_role("button", name="Save to notes")).to_be_visible()
        shots(page, "draft-ready")

        # Edit the first item (Counseling Question), comment on the second (Symptom Type), regenerate it.
        items = page.locator("#draft-body .draft-item")
        first, second = (page.locator("#" + items.nth(i).get_attribute("id")) for i in (0, 1))
        first.locator("summary", has_text="Edit").click()
        first.get_by_label("Edit").fill("How to sleep and study before the retake without panicking.")
        first.get_by_role("button", name="Save", exact=True).click()
        expect(first.locator(".item-text")).to_have_text("How to sleep and study before the retake without panicking.")
        expect(first.locator(".badge")).to_have_text("edited by you")
        shots(page, "item-edited")
        second.locator("summary", has_text="Comment").click()
        second.get_by_label("Comment").fill("Name the main problem in two or three words.")
        second.get_by_role("button", name="Add comment").click()
        expect(second.locator(".comment")).to_contain_text("Name the main problem in two or three words.")
        shots(page, "item-commented")
        second.get_by_role("button", name=re.compile("Regenerate")).click()
        expect(second.locator(".badge")).to_have_text("regenerated", timeout=120_000)
        expect(page.locator("#draft-body .error")).to_have_count(0)
        # The edit survived the regeneration of another item.
        expect(first.locator(".item-text")).to_have_text("How to sleep and study before the retake without panicking.")
        shots(page, "item-regenerated")

        # Save, sign, addendum.
        page.get_by_role("button", name="Save to notes").click()
        page.wait_for_url(re.compile(rf"/clients/{cid}\?notice=note_saved"))
        expect(page.locator(".notice")).to_have_text("Saved to the client's notes.")
        note = page.locator("details.note").first
        expect(note).to_contain_text("How to sleep and study before the retake without panicking.")
        shots(page, "note-saved")
        note.locator("details.inline > summary", has_text="Sign").click()
        shots(page, "sign-confirm")
        note.get_by_role("button", name="Sign the note").click()
        page.wait_for_url(re.compile(r"notice=signed"))
        expect(note.locator(".badge").first).to_have_text("signed")
        shots(page, "note-signed")
        note.locator("details.inline > summary", has_text="Add addendum").click()
        note.get_by_label("Add addendum").fill("Follow-up call: sleeping 6 hours now.")
        note.get_by_role("button", name="Save addendum").click()
        page.wait_for_url(re.compile(r"notice=addendum_saved"))
        expect(page.locator("details.note").first.locator(".comment")).to_contain_text("sleeping 6 hours now")
        shots(page, "addendum-saved")

        # Chat: a crisis message raises the banner before the reply is written.
        page.get_by_role("link", name="Chat about this client").click()
        page.wait_for_url(re.compile(r"/chats\?client="))
        shots(page, "chats")
        page.get_by_role("button", name="Start").click()
        page.wait_for_url(re.compile(r"/chats/\w+$"))
        chat_url = page.url
        page.locator("#chat-text").fill(URGENT)
        page.get_by_role("button", name="Send").click()
        expect(page.locator(".alert")).to_be_visible()
        # The reply placeholder is still streaming (the page reloads once the reply is done).
        assert page.locator(".msg.assistant.cursor").count() == 1
        expect(page.locator(".alert")).to_contain_text("Possible crisis")
        shots(page, "crisis-banner-while-replying")
        page.wait_for_selector(".msg.assistant.cursor", state="detached", timeout=120_000)
        page.wait_for_selector("[data-reply]", state="detached", timeout=120_000)
        expect(page.locator(".msg.assistant")).to_have_count(1)
        expect(page.locator(".alert")).to_be_visible()  # still there after the reload: not acknowledged yet
        shots(page, "chat-replied")
        page.get_by_label(re.compile("What you did")).fill("Called the client; safety plan agreed.")
        page.get_by_role("button", name="Acknowledge").click()
        page.wait_for_url(re.compile(r"notice=alert_acknowledged"))
        assert page.url.startswith(chat_url)
        expect(page.locator(".alert")).to_have_count(0)
        shots(page, "crisis-acknowledged")

        # Export the record as PDF.
        page.goto(f"{base}/clients/{cid}")
        with page.expect_download() as dl:
            page.get_by_role("link", name="Export PDF").click()
        pdf = Path(dl.value.path()).read_bytes()
        assert pdf.startswith(b"%PDF")
        text = "".join(p.extract_text() for p in PdfReader(BytesIO(pdf)).pages)
        assert "Lin S." in text and "sleeping 6 hours now" in text
        shots(page, "after-export")

        # Chinese, then sign out.
        page.get_by_role("button", name="中文").click()
        page.wait_for_url(f"{base}/clients/{cid}")
        expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        expect(page.get_by_role("link", name="导出 PDF")).to_be_visible()
        expect(page.get_by_role("heading", name="咨询笔记（最新在前）")).to_be_visible()
        expect(page.get_by_role("button", name="English")).to_be_visible()
        shots(page, "client-in-chinese")
        page.get_by_role("button", name="退出").click()
        page.wait_for_url(re.compile(r"/login"))
        expect(page.locator("#username")).to_be_visible()
        shots(page, "signed-out")
        # Signed out means signed out: the client page sends back to the login.
        page.goto(f"{base}/clients/{cid}")
        page.wait_for_url(re.compile(r"/login\?next="))
    assert len(shots.taken) >= 20


def test_another_counselor_cannot_open_the_client_by_url_or_api(tmp_path, page):
    from playwright.sync_api import expect

    data = tmp_path / "data"
    prepare_accounts(data)
    with serving(Server(data)) as server:
        with httpx.Client(base_url=server.url) as alice:
            csrf = alice.post("/api/v1/login", json={"username": "alice", "password": PASSWORD}).json()["csrf_token"]
            h = {"X-CSRF-Token": csrf}
            cid = alice.post("/api/v1/clients", json={"name": "Alice's client"}, headers=h).json()["id"]
            did = alice.post(f"/api/v1/clients/{cid}/drafts", json={"generate": False}, headers=h).json()["id"]
        sign_in(page, server.url, "bob")
        r = page.goto(f"{server.url}/clients/{cid}")
        assert r.status == 404
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        expect(page.locator("body")).not_to_contain_text("Alice's client")
        assert page.goto(f"{server.url}/drafts/{did}").status == 404
        for path in (f"/api/v1/clients/{cid}", f"/api/v1/clients/{cid}/notes", f"/api/v1/drafts/{did}"):
            r = page.request.get(server.url + path)
            assert r.status == 404, path
            assert "Alice" not in r.text()
        assert page.request.get(f"{server.url}/clients/{cid}/export.pdf").status == 404
        assert page.request.get(server.url + "/api/v1/clients").json() == []
        expect(page.locator("body")).not_to_contain_text("Alice's client")


def test_hostile_text_in_a_draft_is_shown_as_text_and_runs_nothing(tmp_path, page):
    from playwright.sync_api import expect

    data = tmp_path / "data"
    prepare_accounts(data, users=("alice",))
    dialogs, console = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("console", lambda m: console.append((m.type, m.text)))
    with serving(Server(data)) as server:
        base = server.url
        sign_in(page, base, "alice")
        # page.request shares the browser's cookies: this is alice's session.
        csrf = page.request.post(base + "/api/v1/login", data={"username": "alice", "password": PASSWORD}
                                 ).json()["csrf_token"]
        h = {"X-CSRF-Token": csrf}
        cid = page.request.post(base + "/api/v1/clients", data={"name": "X " + XSS_IMG, "tags": [XSS_SCRIPT]},
                                headers=h).json()["id"]
        d = page.request.post(f"{base}/api/v1/clients/{cid}/drafts",
                              data={"input": "input " + XSS_SCRIPT, "generate": False}, headers=h).json()
        iid = d["content"]["sections"]["counseling_question"][0]["id"]
        r = page.request.patch(f"{base}/api/v1/drafts/{d['id']}/items/{iid}",
                               data={"text": XSS_SCRIPT + " " + XSS_IMG, "comment": XSS_IMG}, headers=h)
        assert r.ok, r.text()

        page.goto(f"{base}/drafts/{d['id']}")
        item = page.locator(f"#item-{iid}")
        expect(item.locator(".item-text")).to_have_text(XSS_SCRIPT + " " + XSS_IMG)
        expect(item.locator(".comment")).to_contain_text(XSS_IMG)
        expect(page.locator(".pre").first).to_have_text("input " + XSS_SCRIPT)
        # The editor's textarea holds the text as its value, not as markup.
        item.locator("summary", has_text="Edit").click()
        expect(item.get_by_label("Edit")).to_have_value(XSS_SCRIPT + " " + XSS_IMG)
        page.get_by_role("button", name="Save to notes").click()
        page.wait_for_url(re.compile(rf"/clients/{cid}\?notice=note_saved"))
        expect(page.locator("details.note").first.locator(".pre").first).to_have_text(XSS_SCRIPT + " " + XSS_IMG)
        expect(page.locator("h1")).to_contain_text("X " + XSS_IMG)
        page.goto(base + "/")
        expect(page.locator("tbody")).to_contain_text(XSS_SCRIPT)
        # No element was made from the text, on any of these pages.
        for path in (f"/drafts/{d['id']}", f"/clients/{cid}", "/"):
            page.goto(base + path)
            assert page.locator("img[src=x]").count() == 0, path
            assert page.locator("main script").count() == 0, path
    assert dialogs == []
    # The strict CSP would report a blocked inline script or handler as a console error; nothing is
    # blocked because nothing ran: there must be no console error at all.
    assert [m for m in console if m[0] == "error"] == [], console
