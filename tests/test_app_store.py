"""The app's storage on SQLite and PostgreSQL: encryption at rest, ownership, versions, keys, backups, migrations.

    pytest tests/test_app_store.py            # the postgresql cases need a server (see conftest.postgres_url)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text, update
from sqlalchemy.engine import make_url

from app_helpers import PASSWORD, make_state
from psyassist.app.accounts import actor_of, create_user
from psyassist.app.backup import BackupError, backup, restore
from psyassist.app.config import AppConfig
from psyassist.app.notes.draft import content_from_model, new_item
from psyassist.app.records import Conflict, NotFound, Workspace
from psyassist.app.state import open_state
from psyassist.app.store.crypto import MasterKey, MasterKeyError
from psyassist.app.store.db import HEAD, Database, migrate, open_database
from psyassist.app.store.models import Client, DataKeyRow, NoteVersion, User

NAME = "孙小雨 Sun Xiaoyu"
NOTE_TEXT = "考试前心慌手抖，担心丢家族的脸 exam-panic-7f3a"
CHAT_TEXT = "她说最近一直失眠 insomnia-marker-91c2"


def _actor(st, username):
    with st.db.read() as s:
        return actor_of(s.scalar(select(User).where(User.username == username)))


def _client_with_note(st, username="alice", sign=False):
    ws = Workspace(st, _actor(st, username))
    cid = ws.create_client(NAME, ["考试焦虑"], {"demographics": "19岁 女 复读生", "mental_state": "焦虑 失眠"})
    t = st.templates["seed004"]
    content, _ = content_from_model(t, {"counseling_question": NOTE_TEXT, "symptom_type": "学业焦虑",
                                        "reasons": ["父母期望高", "前次高考失利"], "advice": ["认知行为疗法"],
                                        "basic_info_updates": {"social": "不主动与同学交流"}})
    did = ws.create_draft(cid, "raw input " + NOTE_TEXT, t, date(2026, 12, 1), generate=False, content=content)
    nid = ws.save_draft(did, t)
    if sign:
        ws.sign_note(nid)
    chat = ws.create_chat(cid, use_notes=True)
    ws.add_message(chat, "user", CHAT_TEXT)
    return ws, cid, did, nid


@pytest.fixture
def st(tmp_path, db_url):
    s = make_state(tmp_path, db_url)
    yield s
    s.close()


def test_records_round_trip_and_versions(st):
    ws, cid, did, nid = _client_with_note(st)
    assert ws.client(cid).name == NAME
    note = ws.note(nid)
    assert note.sections["counseling_question"] == [NOTE_TEXT] and note.version == 1
    assert ws.basic_info(cid).data["social"] == "不主动与同学交流"  # the draft's update became version 2
    assert ws.basic_info(cid).version == 2 and ws.basic_info_history(cid)[-1].data["demographics"] == "19岁 女 复读生"

    def edit(content):
        content["sections"]["reasons"][0]["text"] = "父母期望过高"
    ws.edit_draft(did, edit)
    ws.save_draft(did, st.templates["seed004"])
    versions = ws.note_versions(nid)
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["sections"]["reasons"][0] == "父母期望过高" and versions[1]["sections"]["reasons"][0] == "父母期望高"
    assert versions[0]["by"] == "alice"


def test_signed_note_takes_only_addenda(st):
    ws, cid, did, nid = _client_with_note(st, sign=True)
    with pytest.raises(Conflict, match="signed"):
        ws.save_draft(did, st.templates["seed004"])
    with pytest.raises(Conflict, match="signed"):
        ws.draft_for_note(nid, st.templates)
    with pytest.raises(Conflict):
        ws.sign_note(nid)
    ws.add_addendum(nid, "电话随访：情况稳定")
    n = ws.note(nid)
    assert n.status == "signed" and n.version == 1 and n.addenda[0]["text"] == "电话随访：情况稳定"


def test_a_counselor_sees_only_their_own_clients_and_an_admin_none(st):
    ws_a, cid, did, nid = _client_with_note(st, "alice")
    ws_b = Workspace(st, _actor(st, "bob"))
    admin = Workspace(st, _actor(st, "root"))
    assert ws_b.list_clients() == []
    for ws in (ws_b, admin):
        for call in (lambda w: w.client(cid), lambda w: w.notes(cid), lambda w: w.note(nid), lambda w: w.draft(did),
                     lambda w: w.basic_info(cid), lambda w: w.note_versions(nid), lambda w: w.delete_client(cid),
                     lambda w: w.update_client(cid, name="x"), lambda w: w.add_addendum(nid, "x"),
                     lambda w: w.create_draft(cid, "x", st.templates["seed004"], date.today()),
                     lambda w: w.edit_draft(did, lambda c: None), lambda w: w.create_chat(cid)):
            with pytest.raises(NotFound):
                call(ws)
    assert ws_a.client(cid).name == NAME  # untouched by the attempts


def test_every_access_is_audited_without_text(st):
    ws, cid, did, nid = _client_with_note(st)
    ws.note(nid)
    entries = st.audit.entries()
    actions = {e["action"] for e in entries if e["kind"] == "access"}
    assert {"client.create", "draft.create", "note.save", "note.read", "chat.write"} <= actions
    assert all(e["who"] == "alice" for e in entries if e["kind"] == "access")
    raw = st.cfg.audit_path.read_text(encoding="utf-8")
    for secret in (NAME, NOTE_TEXT, CHAT_TEXT, "考试焦虑"):
        assert secret not in raw
    assert st.audit.verify()[0] == len(entries)


def _dump(st, tmp_path) -> bytes:
    """The bytes at rest: the SQLite file and its WAL, or a pg_dump of the PostgreSQL database."""
    if st.db.dialect == "sqlite":
        db_file = Path(make_url(st.db.url).database)
        with st.db.engine.connect() as c:
            c.exec_driver_sql("PRAGMA wal_checkpoint(FULL)")
        return b"".join(p.read_bytes() for p in db_file.parent.glob(db_file.name + "*"))
    pg_dump = shutil.which("pg_dump") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))), None)
    if pg_dump is None:
        pytest.fail("pg_dump not found next to the PostgreSQL server")
    u = make_url(st.db.url)
    out = subprocess.run([str(pg_dump), "-h", u.host or "127.0.0.1", "-p", str(u.port or 5432), "-U", u.username,
                          "-d", u.database, "--data-only"], capture_output=True, check=True)
    return out.stdout


def test_no_plaintext_at_rest(st, tmp_path):
    _client_with_note(st)
    blob = _dump(st, tmp_path)
    assert b"basic_info_versions" in blob or st.db.dialect == "sqlite"  # the dump holds the tables
    for secret in (NAME, NOTE_TEXT, CHAT_TEXT, "父母期望高", "考试焦虑", "19岁 女 复读生"):
        for enc in ("utf-8", "utf-16-le"):
            assert secret.encode(enc) not in blob, f"{secret!r} found in plain text at rest"
        assert secret.split()[-1].encode() not in blob


def test_swapped_or_tampered_ciphertext_breaks_only_that_record(st):
    ws, cid, did, nid = _client_with_note(st)
    ws.save_draft(did, st.templates["seed004"])  # version 2
    with st.db.write() as s:
        v1, v2 = s.scalars(select(NoteVersion).where(NoteVersion.note_id == nid).order_by(NoteVersion.version)).all()
        v1.content_ct, v2.content_ct = v2.content_ct, v1.content_ct  # a swap between two rows
    versions = ws.note_versions(nid)
    assert all(v["error"] and "integrity" in v["error"] for v in versions)
    assert ws.note(nid).error
    assert ws.client(cid).name == NAME and ws.basic_info(cid).error is None  # the rest still reads
    with st.db.write() as s:
        c = s.get(Client, cid)
        c.name_ct = c.name_ct[:-1] + bytes([c.name_ct[-1] ^ 1])  # one flipped bit
    view = ws.client(cid)
    assert view.error and view.name == "" and ws.basic_info(cid).data["demographics"] == "19岁 女 复读生"
    assert [c.error is not None for c in ws.list_clients()] == [True]


def test_wrong_master_key_is_refused_before_anything_changes(tmp_path, db_url, monkeypatch):
    st = make_state(tmp_path, db_url)
    _client_with_note(st)
    st.close()
    db_file = tmp_path / "data" / "app.db"
    before = hashlib.sha256(db_file.read_bytes()).hexdigest() if db_file.exists() else None
    monkeypatch.setenv("PSYASSIST_APP_MASTER_KEY", MasterKey.generate().encoded())
    with pytest.raises(MasterKeyError, match="not the key this database was created with"):
        open_state(AppConfig(data_dir=tmp_path / "data", database_url=db_url))
    if before:
        assert hashlib.sha256(db_file.read_bytes()).hexdigest() == before
    monkeypatch.delenv("PSYASSIST_APP_MASTER_KEY")
    (tmp_path / "data" / "master.key").rename(tmp_path / "elsewhere.key")
    with pytest.raises(MasterKeyError, match="does not exist"):
        open_state(AppConfig(data_dir=tmp_path / "data", database_url=db_url))


def test_key_file_is_private_and_checked(tmp_path):
    st = make_state(tmp_path)
    key = st.cfg.key_path
    st.close()
    assert key.stat().st_mode & 0o777 == 0o600
    key.chmod(0o644)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        open_state(AppConfig(data_dir=tmp_path / "data"))


def test_rotation_rewraps_keys_and_notes_stay_readable(tmp_path, db_url):
    from psyassist.app.vault import rotate_master_key

    st = make_state(tmp_path, db_url)
    ws, cid, did, nid = _client_with_note(st)
    with st.db.read() as s:
        before_ct = s.get(Client, cid).name_ct
        before_wrapped = s.get(DataKeyRow, f"client:{cid}").wrapped
    old_id = st.master.key_id
    new, n = rotate_master_key(st.db, st.master, st.cfg.key_path)
    st.close()
    assert n >= 1 and new.key_id != old_id
    st2 = open_state(AppConfig(data_dir=tmp_path / "data", database_url=db_url))
    try:
        with st2.db.read() as s:
            assert s.get(Client, cid).name_ct == before_ct  # no note was re-encrypted
            assert s.get(DataKeyRow, f"client:{cid}").wrapped != before_wrapped
        assert Workspace(st2, _actor(st2, "alice")).note(nid).sections["counseling_question"] == [NOTE_TEXT]
    finally:
        st2.close()
    old = MasterKey.from_text((st.cfg.key_path.parent / "master.key.old").read_text(), "old")
    assert old.key_id == old_id


def test_a_rotation_cut_short_after_commit_is_finished_at_start(tmp_path):
    from psyassist.app.vault import rotate_master_key

    st = make_state(tmp_path)
    _client_with_note(st)
    key_file = st.cfg.key_path
    new, _ = rotate_master_key(st.db, st.master, key_file)
    st.close()
    # Simulate a crash between the database commit and the rename: the old key is back in place.
    (key_file.parent / "master.key.old").replace(key_file)
    from psyassist.app.store.crypto import write_key_file

    write_key_file(key_file.with_name("master.key.next"), new)
    st2 = open_state(AppConfig(data_dir=tmp_path / "data"))
    assert st2.master.key_id == new.key_id
    st2.close()


def test_delete_client_is_irrecoverable_even_from_an_earlier_backup(tmp_path, db_url):
    st = make_state(tmp_path, db_url, backup_dir=tmp_path / "backups")
    ws, cid, _, _ = _client_with_note(st)
    ws2 = Workspace(st, _actor(st, "bob"))
    ws2.create_client("保留的来访者 Keep", ["x"])
    snap, _ = backup(st.db, st.master, st.cfg.audit_path, tmp_path / "backups")
    ws.delete_client(cid)
    with st.db.read() as s:
        assert s.get(DataKeyRow, f"client:{cid}") is None and s.get(Client, cid) is None
    with pytest.raises(NotFound):
        ws.client(cid)
    master = st.master
    st.close()
    # The older snapshot restored with the CURRENT key store (refreshed by the deletion): the deleted
    # client's rows come back without a key, so they are dropped; the other client is intact.
    new_url = f"sqlite:///{tmp_path / 'restored' / 'app.db'}"
    db = Database(new_url)
    counts = restore(snap, tmp_path / "backups" / "keystore", db, master, tmp_path / "restored" / "audit.jsonl")
    db.dispose()
    assert counts["clients_dropped_deleted_after_snapshot"] == 1
    key_file = tmp_path / "restored" / "master.key"
    from psyassist.app.store.crypto import write_key_file

    write_key_file(key_file, master)
    st2 = open_state(AppConfig(data_dir=tmp_path / "restored", database_url=new_url))
    try:
        with st2.db.read() as s:
            assert s.get(Client, cid) is None
        assert [c.name for c in Workspace(st2, _actor(st2, "bob")).list_clients()] == ["保留的来访者 Keep"]
    finally:
        st2.close()


def test_backup_restores_on_another_backend_and_refuses_a_wrong_key(tmp_path, db_url):
    st = make_state(tmp_path, db_url)
    ws, cid, did, nid = _client_with_note(st, sign=True)
    snap, keys = backup(st.db, st.master, st.cfg.audit_path, tmp_path / "b")
    master = st.master
    st.close()
    raw = snap.read_bytes()
    for secret in (NAME, NOTE_TEXT, "alice"):
        assert secret.encode() not in raw  # the snapshot is sealed as a whole, account names included
    with pytest.raises(BackupError, match="master key"):
        restore(snap, keys, Database(f"sqlite:///{tmp_path / 'x' / 'a.db'}"), MasterKey.generate(), tmp_path / "x" / "a")
    damaged = tmp_path / "damaged.snapshot"
    damaged.write_bytes(raw[:-40] + bytes(40))
    with pytest.raises(BackupError, match="integrity|cut"):
        restore(damaged, keys, Database(f"sqlite:///{tmp_path / 'y' / 'a.db'}"), master, tmp_path / "y" / "a")
    target = tmp_path / "r"
    db = Database(f"sqlite:///{target / 'app.db'}")  # a SQLite target whatever the source was
    restore(snap, keys, db, master, target / "audit.jsonl")
    db.dispose()
    from psyassist.app.store.crypto import write_key_file

    write_key_file(target / "master.key", master)
    st2 = open_state(AppConfig(data_dir=target))
    try:
        ws2 = Workspace(st2, _actor(st2, "alice"))
        n = ws2.note(nid)
        assert n.status == "signed" and n.sections["counseling_question"] == [NOTE_TEXT]
        assert ws2.chat(ws2.chats(cid)[0]["id"])["messages"][0]["content"] == CHAT_TEXT
        assert st2.audit.verify()[0] > 0
    finally:
        st2.close()


def test_migrations_upgrade_from_empty_and_from_the_previous_revision(tmp_path, db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from psyassist.app.store.models import Base
    from psyassist.kb.store import Base as KbBase

    db = Database(db_url)
    migrate(db, "0001")
    assert db.current_revision() == "0001"
    key = MasterKey.generate()
    with db.engine.begin() as c:  # data written by the previous revision's schema
        c.execute(text("INSERT INTO meta (key, value) VALUES ('key_check', :v)"), {"v": key.key_check()})
        c.execute(text("INSERT INTO users (id, username, display_name, password_hash, role, locale, note_template, "
                       "active, must_change_password, created_at, updated_at) VALUES ('u1', 'old', '', 'x', "
                       "'counselor', 'en', 'seed004', true, false, '2026-01-01', '2026-01-01')"))
    for rev in ("0002", "0003", "0004"):  # one revision at a time, as a deployment that upgraded at each release did
        migrate(db, rev)
        assert db.current_revision() == rev
    migrate(db)
    assert db.current_revision() == HEAD
    with db.engine.connect() as c:
        assert c.execute(text("SELECT username FROM users")).scalar() == "old"
        # The app's models and the library's (psyassist.kb.store: the same tables `psyassist kb` creates).
        diff = compare_metadata(MigrationContext.configure(c, opts={"compare_type": False}),
                                [Base.metadata, KbBase.metadata])
    assert diff == [], f"the models and the migrations disagree: {diff}"
    db.dispose()
    # A brand-new database goes straight to the newest revision.
    db2, _, _ = open_database(_other(db_url, tmp_path), tmp_path / "k2.key")
    assert db2.current_revision() == HEAD
    db2.dispose()


def _other(db_url: str, tmp_path: Path) -> str:
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'other.db'}"
    u = make_url(db_url)
    eng = create_engine(u, isolation_level="AUTOCOMMIT")
    name = u.database + "_2"
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return u.set(database=name).render_as_string(hide_password=False)


def test_chat_without_a_client_uses_the_counselors_own_key(st):
    ws = Workspace(st, _actor(st, "alice"))
    chat = ws.create_chat(None)
    ws.add_message(chat, "user", CHAT_TEXT)
    assert ws.chat(chat)["messages"][0]["content"] == CHAT_TEXT
    with st.db.read() as s:
        assert s.get(DataKeyRow, f"user:{_actor(st, 'alice').id}") is not None
    with pytest.raises(NotFound):
        Workspace(st, _actor(st, "bob")).chat(chat)


def test_restart_marks_a_draft_that_was_being_written_as_interrupted(tmp_path, db_url):
    st = make_state(tmp_path, db_url)
    ws = Workspace(st, _actor(st, "alice"))
    cid = ws.create_client("X")
    did = ws.create_draft(cid, "input kept " + NOTE_TEXT, st.templates["seed004"], date.today(), generate=True)
    st.close()  # the process "died" while the draft was generating
    st2 = open_state(AppConfig(data_dir=tmp_path / "data", database_url=db_url))
    try:
        d = Workspace(st2, _actor(st2, "alice")).draft(did)
        assert d.status == "interrupted" and d.input == "input kept " + NOTE_TEXT and "Regenerate" in d.error
        assert d.content["sections"]["reasons"] == []  # an empty, editable draft
        assert Workspace(st2, _actor(st2, "alice")).notes(cid) == []  # no half-written note
    finally:
        st2.close()


def test_hand_written_items_survive_a_section_regeneration():
    from psyassist.app.notes.draft import apply_section, live_items
    from psyassist.app.notes.templates import load_templates

    t = load_templates()["seed004"]
    content, _ = content_from_model(t, {"reasons": ["model one", "model two"]})
    content["sections"]["reasons"].append(new_item("mine", "counselor"))
    content["sections"]["reasons"][0]["text"], content["sections"]["reasons"][0]["origin"] = "edited one", "edited"
    apply_section(t, content, "reasons", ["fresh a", "fresh b"])
    texts = [i["text"] for i in live_items(content, "reasons")]
    assert texts == ["edited one", "mine", "fresh a", "fresh b"]
    assert any(i["deleted"] and i["text"] == "model two" for i in content["sections"]["reasons"])


def test_account_rules(tmp_path):
    from psyassist.app.accounts import AuthError, RateLimited, authenticate

    st = make_state(tmp_path)
    try:
        with pytest.raises(AuthError, match="taken"):
            create_user(st.db, "Alice", PASSWORD)
        with pytest.raises(AuthError, match="10 characters"):
            create_user(st.db, "carol", "short")
        with st.db.read() as s:
            h = s.scalar(select(User.password_hash).where(User.username == "alice"))
        assert h.startswith("$argon2id$")
        for _ in range(5):
            with pytest.raises(AuthError):
                authenticate(st.db, "alice", "wrong-password!", "10.0.0.1", max_failures=5, window_minutes=15)
        with pytest.raises(RateLimited):  # even the right password is refused inside the window
            authenticate(st.db, "alice", PASSWORD, "10.0.0.1", max_failures=5, window_minutes=15)
        with st.db.write() as s:
            s.execute(update(User).where(User.username == "bob").values(active=False))
        with pytest.raises(AuthError):
            authenticate(st.db, "bob", PASSWORD, "10.0.0.2", max_failures=5, window_minutes=15)
    finally:
        st.close()


def test_audit_log_keeps_its_chain_across_processes_and_notices_edits(tmp_path):
    from psyassist.safety.audit import AuditError, AuditLog

    path = tmp_path / "a.jsonl"
    a, b = AuditLog(path), AuditLog(path)
    a.access(who="x", action="note.read", client="c1")
    b.access(who="y", action="note.read", client="c2")  # another writer: a must chain onto b's line
    a.access(who="x", action="note.save", client="c1")
    assert [e["who"] for e in AuditLog(path).entries()] == ["x", "y", "x"]
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace('"c2"', '"c9"')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AuditError, match=":3:"):  # line 3 no longer chains onto the edited line 2
        AuditLog(path).verify()
    with pytest.raises(AuditError):
        a.verify()
    assert json.loads(lines[0])["kind"] == "access"
