"""Shared pieces of the app tests: a scripted model, an app state on any database, a logged-in client,
and a real `psyassist app` server in a subprocess.

    from app_helpers import make_state, web_client, login   # tests/ is on sys.path (pytest rootdir)

The scripted backend stands in for the model in fast tests (it streams a fixed reply in small
pieces, like a model, through the same interface as app.llm.InProcess); the slow tests use the
real default model.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from psyassist.app.accounts import create_user
from psyassist.app.config import AppConfig
from psyassist.app.state import open_state

PASSWORD = "correct-horse-battery"


class ScriptedBackend:
    """Streams `replies` (one per call, the last one repeated) in 7-character pieces."""

    name = "scripted"

    def __init__(self, replies: list[str], *, delay: float = 0.0, fail: bool = False):
        self.replies, self.delay, self.fail = list(replies), delay, fail
        self.calls: list[dict] = []
        self.adapters: dict = {}
        self.sampling = {"temperature": 0.7, "top_p": 0.8, "top_k": 20}

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 2)

    def has_adapter(self, name: str) -> bool:
        return name in self.adapters

    def add_adapter(self, name: str, config: dict, weights: bytes) -> None:
        self.adapters[name] = (config, weights)

    def forget_adapter(self, name: str) -> None:
        self.adapters.pop(name, None)

    def describe(self) -> dict:
        return {"backend": self.name, "model": "scripted"}

    async def stream(self, messages, *, schema=None, max_tokens=512, adapter=None, seed=None):
        self.calls.append({"messages": messages, "schema": schema, "adapter": adapter})
        if self.fail:
            raise RuntimeError("the scripted model is set to fail")
        reply = self.replies[min(len(self.calls) - 1, len(self.replies) - 1)]
        for i in range(0, len(reply), 7):
            if self.delay:
                await asyncio.sleep(self.delay)
            yield ("delta", reply[i:i + 7])
        yield ("done", "stop", len(reply) // 3)


class WordEmbedder:
    """Hashed bag-of-words vectors (a stand-in for MiniLM in fast tests: same interface, no model load)."""

    name, dim, languages, max_tokens = "test:hashed-words", 64, None, 256

    def count_tokens(self, texts):
        from psyassist.kb.embed import estimate_tokens

        return estimate_tokens(texts)

    def encode(self, texts):
        import zlib

        import numpy as np

        from psyassist.kb.search import tokenize

        v = np.full((len(texts), self.dim), 1e-3, dtype=np.float32)
        for i, t in enumerate(texts):
            for w in tokenize(t):
                v[i, zlib.crc32(w.encode()) % self.dim] += 1.0
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def make_state(tmp_path: Path, db_url: str | None = None, *, backend=None, users=("alice", "bob"),
               embedder: object | None = "words", **cfg):
    """An opened AppState with counselor accounts `users` (password PASSWORD) and an admin 'root'.
    `embedder`: the library's ("words": WordEmbedder; None: the configured model, loaded at first use)."""
    from psyassist.app.runner import Runner

    config = AppConfig(data_dir=tmp_path / "data", database_url=db_url, **cfg)
    st = open_state(config)
    for u in users:
        create_user(st.db, u, PASSWORD, role="counselor", display_name=u.title())
    create_user(st.db, "root", PASSWORD, role="admin")
    if embedder is not None:
        st.library.set_embedder(WordEmbedder() if embedder == "words" else embedder)
    if backend is not None:
        st.backend = backend
        st.runner = Runner(st)
    return st


def web_client(st):
    from fastapi.testclient import TestClient

    from psyassist.app.web.server import create_app

    return TestClient(create_app(st), base_url="http://testserver", follow_redirects=False)


def login(client, username: str, password: str = PASSWORD) -> str:
    """Sign in through the JSON API; returns the CSRF token (the session cookie stays in the client)."""
    r = client.post("/api/v1/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return r.json()["csrf_token"]


def wait_draft(client, did: str, timeout: float = 20, every: float = 0.05) -> dict:
    """The draft's JSON once its generation ended (the scripted model streams in the server's event loop);
    polled every `every` seconds (a benchmark polls slowly: each poll takes CPU from the model)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = client.get(f"/api/v1/drafts/{did}").json()
        if d["status"] != "generating":
            return d
        time.sleep(every)
    raise AssertionError(f"draft {did} still generating after {timeout} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`psyassist app` in a subprocess (its own process group, so kill -9 takes all of it)."""

    def __init__(self, data_dir: Path, *, db_url: str | None = None, with_model: bool = False, port: int | None = None,
                 extra: list[str] | None = None, env: dict | None = None):
        self.data_dir, self.db_url, self.with_model = data_dir, db_url, with_model
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra, self.env = extra or [], env or {}
        self.proc: subprocess.Popen | None = None
        self.log = data_dir.parent / f"server-{self.port}.log"

    def start(self, timeout: float = 180) -> Server:
        args = [sys.executable, "-m", "psyassist", "app", "--data-dir", str(self.data_dir), "--port", str(self.port)]
        if self.db_url:
            args += ["--database-url", self.db_url]
        if not self.with_model:
            args.append("--no-model")
        args += self.extra
        env = {**os.environ, "PSYASSIST_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", **self.env}
        self._fh = open(self.log, "ab")  # noqa: SIM115 — closed in stop()
        self.proc = subprocess.Popen(args, stdout=self._fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"psyassist app exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"psyassist app did not answer within {timeout} s:\n{self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._fh.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        if getattr(self, "_fh", None) and not self._fh.closed:
            self._fh.close()


def prepare_accounts(data_dir: Path, db_url: str | None = None, users=("alice", "bob")) -> None:
    """Create the database, key and accounts before a subprocess server starts on them."""
    st = open_state(AppConfig(data_dir=data_dir, database_url=db_url))
    try:
        for u in users:
            create_user(st.db, u, PASSWORD, role="counselor", display_name=u.title())
    finally:
        st.close()


@contextmanager
def serving(server: Server):
    """The started server; its log is printed (shown by pytest) when the test fails."""
    server.start()
    try:
        yield server
    except BaseException:
        print(f"--- {server.log} ---\n{server.log.read_text(errors='replace')[-5000:]}")
        raise
    finally:
        server.stop()


def sign_in(page, base: str, username: str) -> None:
    """Log in through the login page (Playwright) and land on the client list."""
    page.goto(base + "/login")
    page.locator("#username").fill(username)
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base + "/")
