"""The app under kill -9: every save it acknowledged is there after a restart and the database is sound;
a draft cut off while the model was writing it comes back as an interrupted, editable draft.

    pytest -m slow tests/test_app_reliability.py

Both run a real `psyassist app` subprocess on SQLite and on PostgreSQL and kill its whole process group
(SIGKILL: no shutdown handler runs).  The streaming draft is held in "generating" by a small
OpenAI-compatible endpoint (the app's `--backend openai`) that streams a valid draft slowly: the same
runner, channel and database writes as the in-process model, without 30 s of model loading per start.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from sqlalchemy.engine import make_url

from app_helpers import PASSWORD, Server, prepare_accounts

pytestmark = pytest.mark.slow

WORKERS = 4
KILL_AFTER = 16  # acknowledged saves before the kill: the burst is well under way, and still going


def api(base: str, username: str = "alice") -> tuple[httpx.Client, dict]:
    """A signed-in API client and its CSRF header."""
    c = httpx.Client(base_url=base, timeout=10)
    r = c.post("/api/v1/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return c, {"X-CSRF-Token": r.json()["csrf_token"]}


def saved_note(c: httpx.Client, h: dict, cid: str, text: str) -> dict:
    """A note saved from a hand-written draft (no model)."""
    d = c.post(f"/api/v1/clients/{cid}/drafts", json={"generate": False, "input": text}, headers=h).json()
    iid = d["content"]["sections"]["counseling_question"][0]["id"]
    assert c.patch(f"/api/v1/drafts/{d['id']}/items/{iid}", json={"text": text}, headers=h).status_code == 200
    r = c.post(f"/api/v1/drafts/{d['id']}/save", json={}, headers=h)
    assert r.status_code == 200, r.text
    return r.json()


# --- kill -9 during a burst of saves -----------------------------------------------------------------


def _burst(base: str, cid: str, worker: int, acked: list, in_flight: list, stop: threading.Event) -> None:
    """Draft → edit → save (v1) → edit → save (v2), over and over; every 2xx save is appended to `acked`
    as (note id, version, text).  Stops at the first transport error (the server is gone)."""
    c, h = api(base)
    i = 0
    try:
        while not stop.is_set():
            i += 1
            d = c.post(f"/api/v1/clients/{cid}/drafts", json={"generate": False, "input": f"w{worker} #{i}"},
                       headers=h).json()
            iid = d["content"]["sections"]["counseling_question"][0]["id"]
            for version in (1, 2):
                text = f"worker {worker} draft {i} v{version}"
                in_flight[worker] = 1
                c.patch(f"/api/v1/drafts/{d['id']}/items/{iid}", json={"text": text}, headers=h).raise_for_status()
                r = c.post(f"/api/v1/drafts/{d['id']}/save", json={}, headers=h)
                r.raise_for_status()
                in_flight[worker] = 0
                note = r.json()
                assert note["version"] == version and note["sections"]["counseling_question"] == [text]
                acked.append((note["id"], version, text))
    except httpx.TransportError:
        pass  # killed under us: whatever was not answered was not acknowledged
    finally:
        c.close()


def _check_sqlite(path: str) -> None:
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            db.execute(f'SELECT count(*) FROM "{table}"').fetchone()


def _check_postgres(url: str) -> None:
    """Every table reads in full; with amcheck (contrib, needs a superuser to CREATE EXTENSION) every
    B-tree index is checked against its heap and every heap page is verified.  A server without amcheck
    or without a superuser (e.g. a managed CI database) gets the full scans only."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            tables = conn.execute(text("SELECT c.oid, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = "
                                       "c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'")).all()
            assert len(tables) >= 8, tables
            for _, name in tables:
                conn.execute(text(f'SELECT count(*) FROM "{name}"')).scalar()
            amcheck = conn.execute(text("SELECT count(*) FROM pg_available_extensions WHERE name = 'amcheck'")
                                   ).scalar() and conn.execute(text("SELECT rolsuper FROM pg_roles WHERE "
                                                                    "rolname = current_user")).scalar()
            if not amcheck:
                return
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS amcheck"))
            indexes = conn.execute(text(
                "SELECT i.indexrelid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON "
                "a.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND a.amname = 'btree'")).scalars().all()
            assert indexes
            for oid in indexes:  # heapallindexed: every heap tuple has its index entry
                conn.execute(text("SELECT bt_index_check(:oid, true)"), {"oid": oid})
            for oid, name in tables:
                problems = conn.execute(text("SELECT * FROM verify_heapam(:oid)"), {"oid": oid}).all()
                assert problems == [], (name, problems)
    finally:
        engine.dispose()


def test_every_acknowledged_save_survives_kill_9_mid_burst(tmp_path, db_url):
    data = tmp_path / "data"
    prepare_accounts(data, db_url)
    server = Server(data, db_url=db_url).start()
    acked: list[tuple[str, int, str]] = []
    try:
        c, h = api(server.url)
        cid = c.post("/api/v1/clients", json={"name": "Burst"}, headers=h).json()["id"]
        before = saved_note(c, h, cid, "saved before the burst")
        c.close()
        stop, in_flight = threading.Event(), [0] * WORKERS
        threads = [threading.Thread(target=_burst, args=(server.url, cid, w, acked, in_flight, stop))
                   for w in range(WORKERS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        # Kill with saves in flight (GIL: the workers barely move between this check and the kill).
        while not (len(acked) >= KILL_AFTER and sum(in_flight) >= 2):
            assert time.monotonic() < deadline, f"only {len(acked)} saves acknowledged in 60 s"
            assert all(t.is_alive() for t in threads), "a worker died before the kill"
            time.sleep(0.002)
        server.kill9()
        stop.set()
        for t in threads:
            t.join(30)
    finally:
        server.stop()

    server = Server(data, db_url=db_url).start()
    try:
        c, h = api(server.url)
        notes = {n["id"]: n for n in c.get(f"/api/v1/clients/{cid}/notes").json()}
        assert notes[before["id"]] == before
        for nid, version, text in acked:
            assert nid in notes, f"acknowledged note {nid} is gone"
            assert notes[nid]["version"] >= version
            versions = {v["version"]: v for v in c.get(f"/api/v1/notes/{nid}/versions").json()}
            assert versions[version]["sections"]["counseling_question"] == [text]
        for n in notes.values():  # no half-written save among the unacknowledged ones either
            versions = [v["version"] for v in c.get(f"/api/v1/notes/{n['id']}/versions").json()]
            assert n["error"] is None and n["sections"] and versions == list(range(n["version"], 0, -1)), n
        # The restarted app takes writes again.
        assert saved_note(c, h, cid, "saved after the restart")["version"] == 1
        c.close()
    finally:
        server.stop()
    if db_url.startswith("sqlite"):
        _check_sqlite(make_url(db_url).database)
    else:
        _check_postgres(db_url)


# --- a restart while a draft streams ------------------------------------------------------------------

DRAFT = json.dumps({
    "counseling_question": "How can she sleep before the retake?", "symptom_type": "exam anxiety",
    "reasons": ["failed the exam last year", "parents' high expectations"],
    "advice": ["sleep diary for two weeks", "relaxation training before study"],
    "basic_info_updates": {"demographics": "19, student", "development": "", "mental_state": "", "physical": "",
                           "social": ""}})


class SlowEndpoint:
    """/v1/chat/completions that streams DRAFT in 4-character pieces, `delay` seconds apart."""

    def __init__(self, delay: float):
        self.delay, self.requests = delay, 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                chunks = [{"delta": {"content": DRAFT[i:i + 4]}} for i in range(0, len(DRAFT), 4)]
                try:
                    for ch in [*chunks, {"delta": {}, "finish_reason": "stop"}]:
                        self.wfile.write(f"data: {json.dumps({'choices': [ch]})}\n\n".encode())
                        self.wfile.flush()
                        time.sleep(outer.delay)
                    self.wfile.write(b"data: [DONE]\n\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the app was killed

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_kill_while_a_draft_streams_leaves_it_interrupted_and_redoable(tmp_path, db_url):
    data = tmp_path / "data"
    prepare_accounts(data, db_url)
    # ~115 pieces × 0.2 s ≈ 23 s per draft: it is surely still streaming when killed.
    endpoint = SlowEndpoint(delay=0.2)
    model = ["--backend", "openai", "--endpoint", endpoint.url, "--model", "scripted"]
    session_input = "Lin, 19, retaking the exam; sleeps 4 hours; fears failing again."
    server = Server(data, db_url=db_url, with_model=True, extra=model).start()
    try:
        c, h = api(server.url)
        cid = c.post("/api/v1/clients", json={"name": "Lin S."}, headers=h).json()["id"]
        saved_note(c, h, cid, "first session")
        signed = saved_note(c, h, cid, "second session")
        c.post(f"/api/v1/notes/{signed['id']}/sign", headers=h).raise_for_status()
        c.post(f"/api/v1/notes/{signed['id']}/addenda", json={"text": "follow-up call"}, headers=h).raise_for_status()
        notes_before = c.get(f"/api/v1/clients/{cid}/notes").json()

        r = c.post(f"/api/v1/clients/{cid}/drafts", json={"input": session_input, "generate": True}, headers=h)
        assert r.status_code == 201 and r.json()["status"] == "generating", r.text
        did = r.json()["id"]
        partials = 0
        with c.stream("GET", f"/drafts/{did}/events") as events:
            for line in events.iter_lines():
                if line.startswith("data:") and json.loads(line[5:])["type"] == "partial":
                    partials += 1
                    if partials == 3:
                        break
            assert c.get(f"/api/v1/drafts/{did}").json()["status"] == "generating"
            server.kill9()
        c.close()
    finally:
        server.stop()

    endpoint.delay = 0.002  # the redo may finish quickly
    server = Server(data, db_url=db_url, with_model=True, extra=model).start()
    try:
        c, h = api(server.url)
        d = c.get(f"/api/v1/drafts/{did}").json()
        assert d["status"] == "interrupted" and "stopped while this draft was being written" in d["error"]
        assert d["input"] == session_input and d["note_id"] is None and not d["unreadable"]
        # The empty draft it was created with: one empty item per text section, no list items, no updates.
        assert {k: [i["text"] for i in items] for k, items in d["content"]["sections"].items()} == {
            "counseling_question": [""], "symptom_type": [""], "reasons": [], "advice": []}
        assert all(v is None for v in d["content"]["basic_info"].values())
        page = c.get(f"/drafts/{did}")
        assert page.status_code == 200 and 'id="draft-body"' in page.text and 'id="stream"' not in page.text
        assert c.get(f"/api/v1/clients/{cid}/notes").json() == notes_before  # no note, nothing else changed

        csrf = h["X-CSRF-Token"]
        r = c.post(f"/drafts/{did}/redo", data={"csrf_token": csrf})
        assert r.status_code == 303 and r.headers["location"] == f"/drafts/{did}"
        assert c.get(f"/api/v1/drafts/{did}").json()["status"] in ("generating", "ready")
        deadline = time.monotonic() + 30
        while (d := c.get(f"/api/v1/drafts/{did}").json())["status"] == "generating":
            assert time.monotonic() < deadline, "the redo did not finish in 30 s"
            time.sleep(0.1)
        assert d["status"] == "ready" and d["error"] is None, d
        assert [i["text"] for i in d["content"]["sections"]["reasons"]] == ["failed the exam last year",
                                                                            "parents' high expectations"]
        assert endpoint.requests == 2
        assert c.get(f"/api/v1/clients/{cid}/notes").json() == notes_before
        c.close()
    finally:
        server.stop()
        endpoint.close()
