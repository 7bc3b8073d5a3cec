"""Similar cases (issue 12 §3): the counselor's own earlier notes ranked by likeness to a draft or a note —
never another counselor's, never the note itself, nothing in plain text in the database, dropped on logout.

    pytest tests/test_app_similar.py
"""

from __future__ import annotations

import time
from datetime import date

import pytest
from sqlalchemy import select

from app_helpers import login, make_state, web_client
from psyassist.app.accounts import actor_of
from psyassist.app.notes.draft import empty_content, new_item
from psyassist.app.records import NotFound, Workspace
from psyassist.app.similar import SimilarCache, snippet
from psyassist.app.store.models import User

MARKER = "MARKERZQX相似标记"
EXAM = ["高三复读，考试前严重失眠、头痛，担心再次高考失利", "父母期望很高，自我要求苛刻"]
MARRIAGE = ["与丈夫长期冲突，婚姻关系紧张，考虑离婚", "沟通方式以指责为主"]
PANIC = ["Repeated panic attacks on the subway; heart racing, fear of dying", "Avoids crowded trains since March"]
GRIEF = ["Grief after her mother's death last winter; crying most evenings", "Sleep broken, appetite low"]


@pytest.fixture
def app(tmp_path):
    st = make_state(tmp_path)
    with web_client(st) as client:
        yield st, client
    st.close()


def _ws(st, username: str) -> Workspace:
    with st.db.read() as s:
        return Workspace(st, actor_of(s.scalar(select(User).where(User.username == username))))


def _note(ws: Workspace, cid: str, reasons: list[str], day: str, question: str = "") -> str:
    t = ws.st.template("seed004")
    content = empty_content(t)
    content["sections"]["counseling_question"] = [new_item(question or reasons[0][:20], "counselor")]
    content["sections"]["reasons"] = [new_item(x, "counselor") for x in reasons]
    did = ws.create_draft(cid, "", t, date.fromisoformat(day), generate=False, content=content)
    return ws.save_draft(did, t)


def _draft(ws: Workspace, cid: str, text: str) -> str:
    return ws.create_draft(cid, text, ws.st.template("seed004"), date(2026, 12, 5), generate=False)


@pytest.fixture
def records(app):
    """alice: 孙某 (exam anxiety, then a marriage note), Mr P (panic, grief); bob: a client with the same exam note."""
    st, client = app
    alice, bob = _ws(st, "alice"), _ws(st, "bob")
    sun, p = alice.create_client("孙某"), alice.create_client("Mr P")
    ids = {"sun": sun, "p": p, "exam": _note(alice, sun, EXAM, "2026-11-01"),
           "marriage": _note(alice, sun, MARRIAGE + [MARKER], "2026-11-08"),
           "panic": _note(alice, p, PANIC, "2026-10-01"), "grief": _note(alice, p, GRIEF, "2026-10-15")}
    bob_client = bob.create_client("Bob's client")
    ids["bob_exam"] = _note(bob, bob_client, EXAM, "2026-11-02")
    ids["bob_draft"] = _draft(bob, bob_client, "高考前失眠，考试焦虑")
    return st, client, alice, ids


def _ids(result: dict) -> list[str]:
    return [r["note_id"] for r in result["results"]]


def test_a_chinese_and_an_english_query_each_find_the_right_earlier_note(records):
    st, client, alice, ids = records
    login(client, "alice")
    zh = client.get(f"/api/v1/drafts/{_draft(alice, ids['sun'], '又到考试前，失眠头痛，害怕高考再失利')}/similar").json()
    assert _ids(zh)[0] == ids["exam"] and ids["bob_exam"] not in _ids(zh)
    top = zh["results"][0]
    assert top["client_name"] == "孙某" and top["date"] == "2026-11-01" and "失眠" in top["snippet"]
    assert zh["mode"] == "bm25" and zh["reason"] == "dense_off" and zh["notes"] == 4  # bob's note is not in alice's
    en = client.get(f"/api/v1/drafts/{_draft(alice, ids['sun'], 'She had another panic attack on the train')}"
                    "/similar").json()
    assert _ids(en)[0] == ids["panic"] and en["results"][0]["client_name"] == "Mr P"  # another client's note


def test_a_note_is_never_its_own_similar_case(records):
    st, client, alice, ids = records
    login(client, "alice")
    r = client.get(f"/api/v1/notes/{ids['exam']}/similar?k=50").json()
    assert ids["exam"] not in _ids(r) and ids["bob_exam"] not in _ids(r)
    # A draft that edits a note does not find that note either (its items are the note's words).
    did = alice.draft_for_note(ids["exam"], st.templates)
    r = client.get(f"/api/v1/drafts/{did}/similar?k=50").json()
    assert ids["exam"] not in _ids(r) and r["notes"] == 4


def test_another_counselor_gets_404_on_every_similar_route(records):
    st, client, alice, ids = records
    login(client, "bob")
    did = _draft(alice, ids["sun"], "考试前失眠")
    for url in (f"/api/v1/drafts/{did}/similar", f"/drafts/{did}/similar", f"/api/v1/notes/{ids['exam']}/similar",
                f"/notes/{ids['exam']}/similar"):
        assert client.get(url).status_code == 404, url
    # Bob's own search sees his one note only, although alice's index is warm in the same process.
    login(client, "alice")
    client.get(f"/api/v1/drafts/{did}/similar")
    login(client, "bob")
    r = client.get(f"/api/v1/drafts/{ids['bob_draft']}/similar").json()
    assert _ids(r) == [ids["bob_exam"]] and r["notes"] == 1
    login(client, "root")  # an admin opens no client record, similar cases included
    assert client.get(f"/api/v1/notes/{ids['exam']}/similar").status_code == 404
    with pytest.raises(NotFound):
        _ws(st, "root").similar_cases(note_id=ids["exam"])


def test_the_database_holds_no_plaintext_of_a_note_or_its_snippet_after_indexing(records):
    st, client, alice, ids = records
    login(client, "alice")
    assert client.get(f"/api/v1/notes/{ids['exam']}/similar?k=50").status_code == 200
    r = client.get(f"/api/v1/drafts/{_draft(alice, ids['sun'], MARKER)}/similar").json()
    assert _ids(r)[0] == ids["marriage"] and MARKER in r["results"][0]["snippet"]
    data = st.cfg.data_dir
    for f in [data / "app.db", data / "app.db-wal", data / "audit.jsonl"]:
        if f.exists():
            raw = f.read_bytes()
            for text in (MARKER, EXAM[0], PANIC[0]):
                assert text.encode() not in raw, f"{text!r} in {f.name}"


def test_logout_drops_the_index_and_a_new_login_rebuilds_it(records):
    st, client, alice, ids = records
    csrf = login(client, "alice")
    client.get(f"/api/v1/notes/{ids['exam']}/similar")
    assert st.similar.holds(alice.actor.id)
    assert client.post("/logout", data={"csrf_token": csrf}).status_code == 303
    assert not st.similar.holds(alice.actor.id)
    login(client, "alice")
    assert not st.similar.holds(alice.actor.id)  # built on demand, not at login
    assert client.get(f"/api/v1/notes/{ids['panic']}/similar").json()["notes"] == 4
    assert st.similar.holds(alice.actor.id) and st.similar._index(alice.actor.id).builds == 1
    csrf = login(client, "root")  # an administrator's password reset ends alice's sessions: the index goes too
    assert client.post(f"/admin/users/{alice.actor.id}/reset", data={"csrf_token": csrf}).status_code == 200
    assert not st.similar.holds(alice.actor.id)


def test_a_saved_note_joins_and_a_deleted_client_vanishes(records):
    st, client, alice, ids = records
    csrf = login(client, "alice")
    query = _draft(alice, ids["sun"], "panic attack on the subway, heart racing")
    assert _ids(client.get(f"/api/v1/drafts/{query}/similar").json())[0] == ids["panic"]
    new = _note(alice, ids["sun"], ["Panic attack on the subway again, heart racing, panic panic"], "2026-12-01")
    r = client.get(f"/api/v1/drafts/{query}/similar").json()
    assert _ids(r)[0] == new and r["notes"] == 5 and st.similar._index(alice.actor.id).builds == 1  # no full rebuild
    assert client.post(f"/clients/{ids['p']}/delete", data={"csrf_token": csrf, "confirm": "Mr P"}).status_code == 303
    idx = st.similar._index(alice.actor.id)
    assert not any(e.client_id == ids["p"] for e in idx.entries.values())  # gone from memory at once
    r = client.get(f"/api/v1/drafts/{query}/similar").json()
    assert ids["panic"] not in _ids(r) and ids["grief"] not in _ids(r) and r["notes"] == 3


def test_the_pages_load_the_card_on_demand(records):
    st, client, alice, ids = records
    login(client, "alice")
    did = _draft(alice, ids["sun"], "考试前失眠头痛")
    page = client.get(f"/drafts/{did}").text
    assert f'hx-get="/drafts/{did}/similar"' in page and "Similar cases" in page
    assert not st.similar.holds(alice.actor.id)  # the page itself builds nothing
    part = client.get(f"/drafts/{did}/similar", headers={"HX-Request": "true"})
    assert part.status_code == 200 and f'href="/clients/{ids["sun"]}#note-{ids["exam"]}"' in part.text
    assert "2026-11-01" in part.text and "BM25" in part.text
    assert f'hx-get="/notes/{ids["exam"]}/similar"' in client.get(f"/clients/{ids['sun']}").text
    full = client.get(f"/notes/{ids['exam']}/similar")  # without htmx (no JavaScript): a page of its own
    assert full.status_code == 200 and "<html" in full.text and f'href="/clients/{ids["sun"]}#note-{ids["exam"]}"' in full.text
    assert "<html" not in part.text


def test_similar_searches_are_audited_without_text(records):
    st, client, alice, ids = records
    login(client, "alice")
    client.get(f"/api/v1/notes/{ids['exam']}/similar")
    log = st.cfg.audit_path.read_text()
    assert '"similar.index"' in log and '"similar.search"' in log and ids["exam"] in log


def test_without_sentence_transformers_similar_cases_use_bm25_and_say_so(records, monkeypatch):
    st, client, alice, ids = records
    from psyassist.app import similar
    from psyassist.errors import MissingDependency

    def missing(module, feature):
        if module == "sentence_transformers":
            raise MissingDependency("sentence-transformers", feature, "kb")
        return __import__(module)
    monkeypatch.setattr(similar, "require", missing)
    st.similar = SimilarCache(dense=True)
    r = alice.similar_cases(draft_id=_draft(alice, ids["sun"], "panic attack on the train"))
    assert r["mode"] == "bm25" and r["reason"] == "dense_missing" and _ids(r)[0] == ids["panic"]


def test_snippet_is_the_line_with_the_most_query_words():
    text = "第一行没有关系\n考试前失眠头痛\n" + "长" * 300
    assert snippet(text, "失眠 头痛") == "考试前失眠头痛"
    assert len(snippet("长" * 300, "x")) == 140


@pytest.mark.slow
def test_dense_ranks_an_english_paraphrase_when_turned_on(records):
    """The packaged MiniLM finds a note that shares meaning, not words, with an English query."""
    st, client, alice, ids = records
    st.similar = SimilarCache(dense=True)
    did = _draft(alice, ids["sun"], "mourning a parent who passed away")
    assert alice.similar_cases(draft_id=did)["reason"] == "dense_pending"  # BM25 answers while the notes embed
    _wait_embedded(st.similar, alice.actor.id, 120)
    r = alice.similar_cases(draft_id=did)
    assert r["mode"] == "hybrid" and _ids(r)[0] == ids["grief"]
    zh = alice.similar_cases(draft_id=_draft(alice, ids["sun"], "考试前失眠"))
    assert zh["mode"] == "bm25" and zh["reason"] == "dense_language"


def test_a_save_during_a_build_does_not_wait_and_is_applied_before_the_answer(records):
    st, client, alice, ids = records
    alice.similar_cases(note_id=ids["exam"])
    idx = st.similar._index(alice.actor.id)
    with idx.lock:  # a build in progress
        t0 = time.monotonic()
        st.similar.client_changed(alice.actor.id, ids["p"])
        assert time.monotonic() - t0 < 0.5 and ids["p"] in idx.pending
        assert any(e.client_id == ids["p"] for e in idx.entries.values())  # not applied yet
    alice.delete_client(ids["p"])
    r = alice.similar_cases(draft_id=_draft(alice, ids["sun"], "panic attack on the subway"))
    assert ids["panic"] not in _ids(r) and r["notes"] == 2 and not idx.pending


def test_a_counselor_without_notes_gets_an_empty_list(app):
    st, client = app
    ws = _ws(st, "alice")
    did = _draft(ws, ws.create_client("first client"), "考试前失眠")
    assert ws.similar_cases(draft_id=did) == {"client_id": ws.draft(did).client_id, "mode": "bm25", "reason": "dense_off", "notes": 0, "results": []}
    only = _note(ws, ws.create_client("second"), EXAM, "2026-11-01")
    assert ws.similar_cases(note_id=only)["results"] == []  # its one note is itself


def _wait_embedded(cache: SimilarCache, user_id: str, timeout: float) -> None:
    idx = cache._index(user_id)
    deadline = time.monotonic() + timeout
    while idx.embedding or any(e.vector is None for e in idx.entries.values()):
        assert time.monotonic() < deadline, "the notes were not embedded in time"
        time.sleep(0.05)


class FakeEmbedder:
    """Vectors from a few English words (a stand-in for MiniLM in fast tests)."""

    name = "test:grief-panic"
    languages = ("en",)
    WORDS = ("grief", "mourning", "death", "panic", "train", "subway")

    def encode(self, texts):
        import numpy as np

        v = np.array([[float(any(w in t.lower() for w in group)) for group in (self.WORDS[:3], self.WORDS[3:])]
                      for t in texts], dtype=np.float32) + 1e-3
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_dense_vectors_are_computed_in_a_thread_while_bm25_answers(records):
    st, client, alice, ids = records
    st.similar = cache = SimilarCache(dense=True)
    cache._embedder, cache._embedder_state = FakeEmbedder(), "on"
    did = _draft(alice, ids["sun"], "mourning")  # no note has this word: BM25 alone finds nothing
    first = alice.similar_cases(draft_id=did)
    assert first["mode"] == "bm25" and first["reason"] == "dense_pending" and first["results"] == []
    _wait_embedded(cache, alice.actor.id, 10)
    r = alice.similar_cases(draft_id=did)
    assert r["mode"] == "hybrid" and _ids(r)[0] == ids["grief"]
    zh = alice.similar_cases(draft_id=_draft(alice, ids["sun"], "考试前失眠"))
    assert zh["mode"] == "bm25" and zh["reason"] == "dense_language" and _ids(zh)[0] == ids["exam"]
    new = _note(alice, ids["p"], ["Mourning again, grief at night"], "2026-12-02")  # only the new note is embedded
    assert alice.similar_cases(draft_id=did)["reason"] == "dense_pending"
    _wait_embedded(cache, alice.actor.id, 10)
    assert new in _ids(alice.similar_cases(draft_id=did))


def test_every_ranking_mode_and_reason_has_words_in_both_languages():
    from psyassist.app.web.i18n import EN, ZH

    for key in ("hybrid", "bm25", "dense_off", "dense_missing", "dense_language", "dense_pending"):
        assert f"similar_mode_{key}" in EN and f"similar_mode_{key}" in ZH, key


def _entries(st) -> dict:
    from psyassist.app.store.models import SimilarEntry

    with st.db.read() as s:
        return {e.note_id: e for e in s.scalars(select(SimilarEntry))}


def test_index_entries_are_stored_sealed_and_a_new_login_reuses_them(records, monkeypatch):
    import psyassist.app.similar as similar_mod
    from psyassist.app.store.crypto import Unreadable

    st, client, alice, ids = records
    csrf = login(client, "alice")
    first = client.get(f"/api/v1/notes/{ids['exam']}/similar?k=50").json()
    stored = _entries(st)
    assert set(stored) == {ids["exam"], ids["marriage"], ids["panic"], ids["grief"]}  # alice's only, not bob's
    raw = b"".join(e.tokens_ct for e in stored.values())
    assert "失眠".encode() not in raw and b"panic" not in raw and b"marker" not in raw.lower()
    assert stored[ids["panic"]].version == 1 and stored[ids["panic"]].vector_ct is None  # dense is off
    # Sealed with the client's key and bound to its note: the panic note's tokens do not open as the grief note's.
    with st.db.read() as s:
        key = alice._key_or_none(s, ids["p"])
    assert "panic" in key.open(stored[ids["panic"]].tokens_ct, "similar_entries", ids["panic"], "tokens")
    with pytest.raises(Unreadable):
        key.open(stored[ids["panic"]].tokens_ct, "similar_entries", ids["grief"], "tokens")
    # A new login rebuilds the index from the stored entries without tokenizing a single note again.
    client.post("/logout", data={"csrf_token": csrf})
    login(client, "alice")
    real, calls = similar_mod.tokenize, []
    monkeypatch.setattr(similar_mod, "tokenize", lambda text: calls.append(text) or real(text))
    again = client.get(f"/api/v1/notes/{ids['exam']}/similar?k=50").json()
    assert _ids(again) == _ids(first)
    assert len(calls) == 1  # the query's own words; no note was tokenized


def test_an_edited_note_gets_a_new_entry_and_a_deleted_client_leaves_none(records):
    st, client, alice, ids = records
    csrf = login(client, "alice")
    client.get(f"/api/v1/notes/{ids['exam']}/similar")
    before = _entries(st)[ids["grief"]].tokens_ct
    t = st.template("seed004")
    did = alice.draft_for_note(ids["grief"], st.templates)
    alice.edit_draft(did, lambda c: c["sections"]["reasons"].append(new_item("Nightmares about the hospital",
                                                                             "counselor")))
    alice.save_draft(did, t)
    r = client.get(f"/api/v1/drafts/{_draft(alice, ids['sun'], 'nightmares hospital')}/similar").json()
    assert _ids(r)[0] == ids["grief"]
    e = _entries(st)[ids["grief"]]
    assert e.version == 2 and e.tokens_ct != before
    assert client.post(f"/clients/{ids['p']}/delete", data={"csrf_token": csrf, "confirm": "Mr P"}).status_code == 303
    assert not any(x.client_id == ids["p"] for x in _entries(st).values())


def test_dense_vectors_are_stored_and_not_recomputed_at_the_next_login(records):
    st, client, alice, ids = records
    st.similar = cache = SimilarCache(dense=True)
    fake = FakeEmbedder()
    cache._embedder, cache._embedder_state = fake, "on"
    did = _draft(alice, ids["sun"], "mourning")
    alice.similar_cases(draft_id=did)
    _wait_embedded(cache, alice.actor.id, 10)
    deadline = time.monotonic() + 10
    while sum(e.vector_ct is not None for e in _entries(st).values()) < 4:
        assert time.monotonic() < deadline, "the vectors were not stored"
        time.sleep(0.05)
    assert all(e.vector_model == fake.name for e in _entries(st).values())
    cache.forget(alice.actor.id)  # logout
    encoded = []
    fake.encode = lambda texts, _orig=fake.encode: encoded.append(len(texts)) or _orig(texts)
    r = alice.similar_cases(draft_id=did)
    assert r["mode"] == "hybrid" and _ids(r)[0] == ids["grief"]  # at once: no "dense_pending"
    assert encoded == [1]  # only the query was embedded
