"""The library inside the app (issue 12): uploads of every format with their report, limits, search in both
languages, one counselor's library out of another's reach, the clinic's shared library, and passages in
drafts and chat with citations that point at what the model was offered.

    pytest tests/test_app_library.py
"""

from __future__ import annotations

import json
import re
import time

import pytest

from app_helpers import ScriptedBackend, login, make_state, wait_draft, web_client
from test_kb import PANIC_ZH, SLEEP_EN, make_library, write_pdf

GROUNDING = ("# Grounding for panic\n\nWhen panic rises, the 5-4-3-2-1 grounding exercise helps: name five things "
             "you see, four you can touch, three you hear.\n\n# 考试焦虑\n\n考试焦虑的来访者可以练习渐进式肌肉放松，每天十五分钟。\n")
DRAFT_CITING = json.dumps({
    "counseling_question": "考试前焦虑，如何应对？", "symptom_type": "学业焦虑",
    "reasons": ["父母期望高", "考前焦虑明显 [1]"],
    "advice": ["练习渐进式肌肉放松 [1]", "使用着陆练习 [2][9]"],
    "basic_info_updates": {"demographics": "", "development": "", "mental_state": "", "physical": "", "social": ""}},
    ensure_ascii=False)


@pytest.fixture
def app(tmp_path, db_url):
    """The app on SQLite and on PostgreSQL (the clinic setup; slow-marked), with a scripted model."""
    backend = ScriptedBackend([DRAFT_CITING])
    st = make_state(tmp_path, db_url, backend=backend)
    with web_client(st) as client:
        yield st, client, backend
    st.close()


def _upload(client, csrf, files: list[tuple[str, bytes]]):
    return client.post("/api/v1/library/documents", headers={"X-CSRF-Token": csrf},
                       files=[("files", (name, data)) for name, data in files])


def _client(client, csrf) -> str:
    r = client.post("/api/v1/clients", json={"name": "孙某"}, headers={"X-CSRF-Token": csrf})
    return r.json()["id"]


def _draft(client, csrf, cid, text="来访者考试焦虑，考前失眠。", use_library=True, timeout=20) -> dict:
    r = client.post(f"/api/v1/clients/{cid}/drafts", json={"input": text, "use_library": use_library},
                    headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    return wait_draft(client, r.json()["id"], timeout)


def test_every_format_uploads_and_a_bad_file_is_skipped_with_its_reason(app, tmp_path):
    st, client, _ = app
    csrf = login(client, "alice")
    root = make_library(tmp_path / "docs")
    files = [(p.name, p.read_bytes()) for p in sorted(root.iterdir())]
    files += [("broken.docx", b"PK\x03\x04 not really a zip"), ("scan.pdf", b""), ("notes.exe", b"MZ"),
              ("../../etc/evil.md", b"# Evil\n\nA path in a file name stays a name.\n")]
    write_pdf(tmp_path / "empty.pdf", [""])
    files.append(("empty.pdf", (tmp_path / "empty.pdf").read_bytes()))
    r = _upload(client, csrf, files)
    assert r.status_code == 200, r.text
    rep = r.json()
    added = {f["name"] for f in rep["added"]}
    assert added == {"anxiety.md", "cbt.html", "自伤评估.txt", "family.docx", "grief.epub", "motivational.pdf",
                     "evil.md"}
    why = {f["name"]: f["reason"] for f in rep["skipped"]}
    assert set(why) == {"broken.docx", "scan.pdf", "notes.exe", "empty.pdf"}
    assert "corrupt" in why["broken.docx"] and "unsupported" in why["notes.exe"]
    assert "text" in why["empty.pdf"]  # a PDF with no text layer is named as such
    assert str(tmp_path) not in json.dumps(rep)  # the report names the counselor's files, not server paths
    docs = client.get("/api/v1/library/documents").json()["own"]
    assert {d["path"] for d in docs} == added
    assert {d["title"] for d in docs} >= {"焦虑手册", "MI Guide", "Grief and Mourning", "家庭治疗讲义", "自伤评估"}
    assert not list((st.cfg.data_dir / "tmp").iterdir())  # every upload's temp file is gone

    # Unchanged: nothing happens; changed: the old passages are replaced.
    again = _upload(client, csrf, [("anxiety.md", (root / "anxiety.md").read_bytes())]).json()
    assert [f["name"] for f in again["unchanged"]] == ["anxiety.md"] and not again["added"]
    before = client.get("/api/v1/library/search", params={"q": "腹式呼吸"}).json()["results"][0]
    changed = _upload(client, csrf, [("anxiety.md", "# 惊恐发作\n\n惊恐发作时先做着陆练习，再做腹式呼吸。\n".encode())]).json()
    assert [f["name"] for f in changed["replaced"]] == ["anxiety.md"]
    after = client.get("/api/v1/library/search", params={"q": "腹式呼吸"}).json()["results"][0]
    assert after["chunk_id"] != before["chunk_id"] and "着陆练习" in after["text"]
    assert client.get(f"/api/v1/library/passages/{before['chunk_id']}").status_code == 404


def test_chinese_and_english_queries_find_the_right_passage(app, tmp_path):
    st, client, _ = app
    csrf = login(client, "alice")
    root = make_library(tmp_path / "docs")
    _upload(client, csrf, [(p.name, p.read_bytes()) for p in root.iterdir()])
    for q, needle, title in [("惊恐发作 呼吸", "腹式呼吸", "焦虑手册"), ("stimulus control insomnia", "stimulus control", "焦虑手册"),
                             ("open questions reflective listening", "reflective listening", "MI Guide"),
                             ("丧亲 哀伤反应", "哀伤反应", "Grief and Mourning")]:
        top = client.get("/api/v1/library/search", params={"q": q}).json()["results"][0]
        assert needle in top["text"] and top["title"] == title, (q, top)
    page = client.get("/library", params={"q": "惊恐发作 呼吸"})
    assert page.status_code == 200 and "腹式呼吸" in page.text and "焦虑手册" in page.text
    assert PANIC_ZH[:10] in page.text and SLEEP_EN  # the passage itself is shown with its source


def test_a_counselors_library_is_theirs_alone_and_the_clinic_library_is_everyones(app, tmp_path):
    from psyassist.kb.ingest import ingest

    st, client, _ = app
    csrf = login(client, "alice")
    _upload(client, csrf, [("grounding.md", GROUNDING.encode())])
    mine = client.get("/api/v1/library/search", params={"q": "grounding exercise"}).json()["results"][0]
    # The clinic's shared library, filled the way an administrator does it: `psyassist kb ingest --library clinic`
    # into the app's own database.
    (tmp_path / "clinic").mkdir()
    (tmp_path / "clinic" / "policy.md").write_text("# Risk policy\n\nEvery suicide risk is assessed with the "
                                                   "C-SSRS on the same day.\n", encoding="utf-8")
    rep = ingest([tmp_path / "clinic"], st.cfg.db_url, library="clinic", embedder=st.library.embedder())
    assert len(rep.added) == 1
    login(client, "bob")
    seen = client.get("/api/v1/library/search", params={"q": "grounding exercise", "k": 50}).json()["results"]
    assert seen and all(r["library"] == "clinic" for r in seen)  # the clinic's, never alice's
    assert client.get(f"/api/v1/library/passages/{mine['chunk_id']}").status_code == 404
    assert client.get(f"/library/passages/{mine['chunk_id']}").status_code == 404
    doc_id = mine["document_id"]
    bob_csrf = login(client, "bob")
    assert client.delete(f"/api/v1/library/documents/{doc_id}", headers={"X-CSRF-Token": bob_csrf}).status_code == 404
    shared = client.get("/api/v1/library/search", params={"q": "suicide risk C-SSRS"}).json()["results"][0]
    assert shared["title"] == "Risk policy" and shared["shared"] is True
    docs = client.get("/api/v1/library/documents").json()
    assert docs["own"] == [] and [d["title"] for d in docs["shared"]] == ["Risk policy"]
    # The shared library is read-only in the app: its document cannot be removed by a counselor.
    assert client.delete(f"/api/v1/library/documents/{shared['document_id']}",
                         headers={"X-CSRF-Token": bob_csrf}).status_code == 404
    login(client, "alice")  # alice's document is still there, and she sees the shared one too
    both = client.get("/api/v1/library/search", params={"q": "grounding C-SSRS", "k": 5}).json()["results"]
    assert {r["title"] for r in both} == {"Grounding for panic", "Risk policy"}


def test_an_upload_over_the_limit_is_refused_before_it_is_read(tmp_path):
    st = make_state(tmp_path, kb_max_upload_mb=1)
    try:
        with web_client(st) as client:
            csrf = login(client, "alice")
            r = _upload(client, csrf, [("huge.txt", b"word " * 500_000)])  # 2.5 MB
            assert r.status_code == 413 and "limit is 1 MB" in r.json()["error"]
            assert client.get("/api/v1/library/documents").json()["own"] == []
    finally:
        st.close()


def test_a_draft_cites_only_passages_it_was_offered(app):
    st, client, backend = app
    csrf = login(client, "alice")
    _upload(client, csrf, [("grounding.md", GROUNDING.encode())])
    cid = _client(client, csrf)
    d = _draft(client, csrf, cid)
    assert d["status"] == "ready", d
    offered = d["provenance"]["library"]["passages"]
    assert d["provenance"]["library"]["on"] is True and 1 <= len(offered) <= st.cfg.kb_passages
    prompt = backend.calls[0]["messages"][1]["content"]
    for p in offered:  # every offered passage was in the prompt, numbered, with its text
        text = client.get(f"/api/v1/library/passages/{p['chunk_id']}").json()["text"]
        assert f"[{p['n']}] {p['title']}" in prompt and text in prompt
    assert "来访者考试焦虑" not in json.dumps(d["provenance"], ensure_ascii=False)  # no client text in provenance
    advice = d["content"]["sections"]["advice"]
    assert advice[0]["text"] == "练习渐进式肌肉放松"  # the mark became a citation
    cited = advice[0]["citations"]
    assert [c["chunk_id"] for c in cited] == [offered[0]["chunk_id"]]
    # [9] was never offered: removed, and the draft says so
    assert all(c["n"] <= len(offered) for it in advice for c in it["citations"])
    assert any("[9]" in p for p in d["provenance"]["repaired"])
    page = client.get(f"/drafts/{d['id']}").text
    assert "Passages offered to the model" in page and cited[0]["title"] in page
    assert "渐进式肌肉放松，每天十五分钟" in page  # the passage's text is on the page, behind the citation
    # Removing the document: the citation stays and says the passage is gone.
    client.delete(f"/api/v1/library/documents/{cited[0]['document_id']}", headers={"X-CSRF-Token": csrf})
    assert "no longer in your library" in client.get(f"/drafts/{d['id']}").text


def test_the_library_switched_off_for_a_draft_offers_nothing(app):
    st, client, backend = app
    csrf = login(client, "alice")
    _upload(client, csrf, [("grounding.md", GROUNDING.encode())])
    cid = _client(client, csrf)
    d = _draft(client, csrf, cid, use_library=False)
    assert d["use_library"] is False and d["provenance"]["library"] == {"on": False, "passages": []}
    assert "Passages from the counselor's library" not in backend.calls[0]["messages"][1]["content"]
    adv = d["content"]["sections"]["advice"]
    assert adv[0]["text"] == "练习渐进式肌肉放松 [1]" and not adv[0].get("citations")  # no library: the text is left as is
    assert "The library was off for this draft" in client.get(f"/drafts/{d['id']}").text
    # The page's switch turns it on for the next generation.
    r = client.post(f"/drafts/{d['id']}/library", data={"csrf_token": csrf, "use_library": "1"})
    assert r.status_code == 303 and client.get(f"/api/v1/drafts/{d['id']}").json()["use_library"] is True


def test_an_unrelated_library_offers_no_passage(app):
    st, client, backend = app
    csrf = login(client, "alice")
    _upload(client, csrf, [("tax.md", b"# Taxes\n\nFile the quarterly VAT return before the deadline.\n")])
    cid = _client(client, csrf)
    d = _draft(client, csrf, cid, text="Client reports nightmares after the accident.")
    assert d["provenance"]["library"] == {"on": True, "passages": []}
    assert "No passage of your library matched" in client.get(f"/drafts/{d['id']}").text


def test_a_chat_answer_lists_the_passages_it_cited(tmp_path):
    backend = ScriptedBackend(["Try the 5-4-3-2-1 grounding exercise [1]. Also [7]."])
    st = make_state(tmp_path, backend=backend)
    try:
        with web_client(st) as client:
            csrf = login(client, "alice")
            _upload(client, csrf, [("grounding.md", GROUNDING.encode())])
            r = client.post("/chats", data={"csrf_token": csrf, "library_field": "1", "use_library": "1"})
            chat = r.headers["location"].rsplit("/", 1)[1]
            client.post(f"/chats/{chat}/messages", data={"csrf_token": csrf, "text": "What helps with panic?"})
            deadline = time.monotonic() + 20
            while "generating" in client.get(f"/chats/{chat}").text and time.monotonic() < deadline:
                time.sleep(0.05)
            system = backend.calls[0]["messages"][0]["content"]
            assert "[1] Grounding for panic" in system and "a sentence of your answer" in system
            page = client.get(f"/chats/{chat}").text
            assert "Sources" in page and re.search(r"\[1\] grounding\.md|\[1\] Grounding for panic", page)
            assert "it cited 1" in page
    finally:
        st.close()


def test_the_library_pages_render_in_both_languages(app):
    st, client, _ = app
    csrf = login(client, "alice")
    r = client.post("/library/upload", data={"csrf_token": csrf},
                    files={"files": ("grounding.md", GROUNDING.encode())})
    assert r.status_code == 303 and "upload=" in r.headers["location"]
    token = r.headers["location"].split("upload=")[1]
    # Indexed in a background thread: the page polls /library/uploads/TOKEN, which says "done" with HX-Redirect.
    deadline = time.monotonic() + 20
    while True:
        poll = client.get(f"/library/uploads/{token}", headers={"HX-Request": "true"})
        assert poll.status_code == 200
        if poll.headers.get("hx-redirect"):
            break
        assert "upload-progress" in poll.text and time.monotonic() < deadline
        time.sleep(0.05)
    assert poll.headers["hx-redirect"] == f"/library?upload={token}"
    page = client.get(poll.headers["hx-redirect"])
    assert page.status_code == 200 and "Upload report" in page.text and "grounding.md" in page.text
    assert not list((st.cfg.data_dir / "tmp").iterdir())  # the thread removed the uploaded temp file
    login(client, "bob")  # another counselor cannot read the upload's report
    assert client.get(f"/library/uploads/{token}").status_code == 404
    assert "grounding.md" not in client.get(f"/library?upload={token}").text
    csrf = login(client, "alice")
    client.post("/settings/language", data={"csrf_token": csrf, "locale": "zh", "next": "/library"})
    zh = client.get("/library", params={"q": "考试焦虑"})
    assert "我的资料库" in zh.text and "渐进式肌肉放松" in zh.text
    chunk = re.search(r'href="/library/passages/(\d+)"', zh.text).group(1)
    assert "渐进式肌肉放松" in client.get(f"/library/passages/{chunk}").text
    doc = client.get("/api/v1/library/documents").json()["own"][0]["id"]
    r = client.post(f"/library/documents/{doc}/delete", data={"csrf_token": csrf})
    assert r.status_code == 303 and client.get("/api/v1/library/documents").json()["own"] == []


def test_backup_and_restore_carry_the_library(app, tmp_path):
    from psyassist.app.backup import backup, restore
    from psyassist.app.store.db import Database
    from psyassist.kb.store import KbStore

    st, client, _ = app
    csrf = login(client, "alice")
    _upload(client, csrf, [("grounding.md", GROUNDING.encode())])
    snap, keys = backup(st.db, st.master, st.cfg.audit_path, tmp_path / "bk")
    db2 = Database(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        counts = restore(snap, keys, db2, st.master, tmp_path / "r.jsonl")
        assert counts["kb_documents"] == 1 and counts["kb_chunks"] >= 1
        lib = KbStore(engine=db2.engine, library=f"u:{_uid(st, 'alice')}")
        assert [d["path"] for d in lib.documents()] == ["grounding.md"]
        assert lib.meta()["embed_name"] == "test:hashed-words"
    finally:
        db2.dispose()


def _uid(st, username: str) -> str:
    from sqlalchemy import select

    from psyassist.app.store.models import User

    with st.db.read() as s:
        return s.scalar(select(User.id).where(User.username == username))
