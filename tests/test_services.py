"""The services the counselor app's tests stand on: an empty database on SQLite and on a real
PostgreSQL (db_url, postgres_url), and a real headless Chromium (page).  If one of these fails, the
app's storage and UI tests cannot say anything; see tests/conftest.py and .ci/run."""

from __future__ import annotations

import asyncio
import functools
import http.server
import struct
import threading

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, create_engine, inspect, select, text

# Databases that postgres_url handed out; a later test checks they were dropped.
_PG_DATABASES: list[str] = []


def test_db_url_writes_and_reads_a_row(db_url):
    engine = create_engine(db_url)
    try:
        expected = "postgresql" if db_url.startswith("postgresql") else "sqlite"
        assert engine.dialect.name == expected
        assert inspect(engine).get_table_names() == []  # a fresh database for every test

        md = MetaData()
        notes = Table("notes", md, Column("id", Integer, primary_key=True), Column("body", Text))
        md.create_all(engine)
        with engine.begin() as c:
            c.execute(notes.insert().values(body="Session 1: héllo, 你好"))
        with engine.connect() as c:
            assert c.execute(select(notes.c.body)).scalar_one() == "Session 1: héllo, 你好"

        if expected == "postgresql":
            # The real server, not something that merely accepts the dialect.
            with engine.connect() as c:
                assert c.execute(text("select version()")).scalar_one().startswith("PostgreSQL ")
                name = c.execute(text("select current_database()")).scalar_one()
                # C.UTF-8 ctype: case folding beyond ASCII works, as on a production server.
                assert c.execute(text("select lower('ÉLAN')")).scalar_one() == "élan"
            assert engine.url.database == name
            _PG_DATABASES.append(name)
    finally:
        engine.dispose()


@pytest.mark.slow
def test_postgres_databases_are_dropped_after_their_test(postgres_url):
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as c:
            names = set(c.execute(text("select datname from pg_database")).scalars())
        assert engine.url.database in names
        assert not names & set(_PG_DATABASES)
    finally:
        engine.dispose()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def tiny_site(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(
        '<!doctype html><meta charset="utf-8"><title>psyassist</title>'
        '<h1 id="hello">Counselor notes 心理咨询</h1><p id="n">3 sessions</p>', encoding="utf-8")
    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(site)))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/"
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


@pytest.mark.slow
def test_page_loads_reads_and_screenshots(page, tiny_site, tmp_path):
    page.goto(tiny_site)
    assert page.title() == "psyassist"
    assert page.inner_text("#hello") == "Counselor notes 心理咨询"
    assert page.locator("#n").text_content() == "3 sessions"
    assert page.evaluate("[window.innerWidth, window.innerHeight]") == [1366, 800]

    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot))
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (1366, 800)  # IHDR width, height


def test_asyncio_run_works_beside_the_browser():
    # Runs after the browser test above: the session's Playwright must not make asyncio.run() refuse
    # ("cannot be called from a running event loop"); conftest._hide_playwright_loop sees to that.
    async def two():
        await asyncio.sleep(0)
        return 2

    assert asyncio.run(two()) == 2
