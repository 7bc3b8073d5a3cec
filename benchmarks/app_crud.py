"""App CRUD latency: 50 simulated counselors doing client/note CRUD over HTTP for 30 s, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/app_crud.py [--backends sqlite,postgresql] [--seconds 30] [--users 50] [--think 1]

Starts the real `psyassist app --no-model` (a subprocess, what users run; no model calls) on a
loopback port, once per database backend, with one counselor account per simulated user (made
before the server starts).  Each user logs in through /api/v1/login and then loops, pausing a
mean `--think` seconds (exponential, default 1 s: ~50 requests/s from 50 users, far busier than
counselors writing notes) before each request, over one session write-up of the JSON API:

    list clients · search clients (?q=) · create a client (1 in 4 loops, or when it has none) ·
    read the client · update basic information (1 in 3) · create a draft (generate=false, a
    0.5-2.5 KB Chinese+English session input) · edit two items (PATCH, with the revision) ·
    save the draft into a note · read the notes timeline · sign the note · add an addendum (1 in 3)

Every request is timed from send to the end of the body.  Any non-2xx answer is an error (none
is expected: every user works on its own records, one request at a time).  Reported per
backend: requests/s and latency p50/p95/p99, overall and per operation, errors, CPU seconds
of the server and of this load generator.  Target: **p95 < 100 ms** on the 2-core machine at
that pace.  `--think 0` sends back to back: the server is saturated and the latency is queueing
(Little's law: mean latency = users / requests per s), so that run measures capacity (requests/s
and server CPU per request), not the latency a counselor sees.
The load generator (one asyncio loop, httpx) runs on the SAME 2 cores as the server, so the
latency includes its share of the CPU: the JSON line carries both CPU times and the load average.

PostgreSQL: a fresh database on $PSYASSIST_TEST_POSTGRES_URL's server when set, else a
throwaway cluster in a temp dir (initdb/pg_ctl from /usr/lib/postgresql/*/bin, run as the
`postgres` user under root; default durability, fsync on, like SQLite's synchronous=FULL),
stopped and deleted at the end, also on Ctrl-C.  Prints one JSON line last and appends a row
to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "tests"))
from _common import record  # noqa: E402

from app_helpers import PASSWORD, Server, free_port, prepare_accounts  # noqa: E402

TARGET_P95_MS = 100

# --- realistic text: a counselor's session notes, Chinese and English mixed -------------------------

ZH = ["来访者自述近两个月入睡困难，常在凌晨两三点醒来，醒后难以再次入睡。",
      "本次咨询主要讨论了与母亲的冲突，来访者说每次通话后都会感到内疚和愤怒。",
      "来访者提到期末考试临近，注意力难以集中，经常反复检查已经完成的作业。",
      "工作上被领导当众批评后，来访者连续几天不想上班，食欲也有所下降。",
      "咨询师引导来访者识别自动化思维，例如“我什么都做不好”，并寻找反例。",
      "来访者与室友关系紧张，宿舍里很少说话，周末大多一个人待在图书馆。",
      "布置家庭作业：每天记录三件让自己感到平静的小事，下次咨询时一起回顾。",
      "来访者表示愿意尝试正念呼吸练习，但担心自己坚持不下来。",
      "父母离异后，来访者一直跟随外婆生活，谈到童年时情绪明显低落。",
      "本周睡眠有所改善，平均每晚睡六个小时，白天疲劳感减轻。"]
EN = ["Client reports low mood since the start of the semester and difficulty concentrating in class.",
      "We explored the argument with her partner last weekend; she noticed her heart racing before it started.",
      "He described avoiding the subway for three weeks after a panic attack on the morning commute.",
      "Homework from last session was partly done: two of five thought records completed.",
      "Client denies suicidal ideation; sleep about five hours a night, appetite reduced.",
      "We practised a grounding exercise (5-4-3-2-1) in session; client rated anxiety 7/10 before and 4/10 after.",
      "She feels guilty about setting limits with her mother and worries about being seen as selfish.",
      "Plan: continue CBT for insomnia, introduce a fixed wake-up time, review the sleep diary next week.",
      "Client started a new job and says the team is friendly, but he still eats lunch alone.",
      "Discussed grief after his father's death last spring; he cried for the first time in session."]
SURNAMES = ["王", "李", "张", "刘", "陈", "杨", "赵", "黄", "Smith", "Garcia", "Chen", "Nguyen"]


def session_text(rng: random.Random, size: int) -> str:
    """Chinese and English sentences, alternating from a random start, until the text is `size` UTF-8 bytes."""
    parts, n, zh = [], 0, rng.random() < 0.5
    while n < size:
        s = rng.choice(ZH if zh else EN)
        parts.append(s)
        n += len(s.encode()) + 1
        zh = not zh
    return " ".join(parts)


# --- PostgreSQL: a fresh database, on the CI server or a throwaway cluster ---------------------------

def pg_programs() -> tuple[str, str] | None:
    """(initdb, pg_ctl): on PATH, else the newest /usr/lib/postgresql/N/bin (Debian keeps them off PATH)."""
    if shutil.which("initdb") and shutil.which("pg_ctl"):
        return shutil.which("initdb"), shutil.which("pg_ctl")
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        return None
    initdb = max(found, key=lambda p: int(Path(p).parents[1].name) if Path(p).parents[1].name.isdigit() else 0)
    return initdb, str(Path(initdb).with_name("pg_ctl"))


def postgres_available() -> bool:
    return bool(os.environ.get("PSYASSIST_TEST_POSTGRES_URL")) or pg_programs() is not None


@contextmanager
def postgres_database() -> Iterator[str]:
    """A SQLAlchemy URL of a fresh, empty PostgreSQL database; everything made for it is gone afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    server = os.environ.get("PSYASSIST_TEST_POSTGRES_URL")
    if server:
        name = f"psyassist_bench_{secrets.token_hex(4)}"
        admin = create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(server).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        return
    programs = pg_programs()
    if programs is None:
        raise SystemExit("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): `apt-get install "
                         "postgresql`, set PSYASSIST_TEST_POSTGRES_URL, or pass --backends sqlite")
    initdb, pg_ctl = programs
    # postgres refuses to run as root: under root its programs run as the `postgres` system user.
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    tmp = Path(tempfile.mkdtemp(prefix="psyassist-bench-pg-"))
    if as_pg:
        shutil.chown(tmp, "postgres", "postgres")
    data = tmp / "data"

    def pg(*args: str) -> None:
        p = subprocess.run([*as_pg, *args], cwd=tmp, capture_output=True, text=True, timeout=120)
        if p.returncode:
            log = (tmp / "server.log").read_text(errors="replace")[-2000:] if (tmp / "server.log").exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({p.returncode}):\n{p.stdout}{p.stderr}{log}")

    try:
        pg(initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        port = free_port()
        with open(data / "postgresql.conf", "a") as f:  # durability left at the defaults (fsync on)
            f.write(f"\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{tmp}'\n")
        pg(pg_ctl, "-D", str(data), "-l", str(tmp / "server.log"), "-w", "-t", "60", "start")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*as_pg, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], cwd=tmp,
                           capture_output=True, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


# --- one simulated counselor ----------------------------------------------------------------------------

class Failed(Exception):
    pass


class TimeUp(Exception):
    pass


class Counselor:
    def __init__(self, url: str, username: str, seed: int, samples: list, errors: list, think: float):
        self.http = httpx.AsyncClient(base_url=url, timeout=120)
        self.username, self.rng, self.think = username, random.Random(seed), think
        self.samples, self.errors = samples, errors  # shared: (op, seconds, status), error messages
        self.clients: list[tuple[str, str]] = []  # (id, name)
        self.deadline = 0.0

    async def login(self) -> None:
        r = await self.http.post("/api/v1/login", json={"username": self.username, "password": PASSWORD})
        r.raise_for_status()
        self.http.headers["X-CSRF-Token"] = r.json()["csrf_token"]

    async def call(self, op: str, method: str, path: str, **kw):
        pause = self.rng.expovariate(1 / self.think) if self.think else 0.0
        if time.perf_counter() + pause >= self.deadline:
            raise TimeUp  # mid-write-up is fine: the window ends on time, also with think time
        await asyncio.sleep(pause)
        t = time.perf_counter()
        try:
            r = await self.http.request(method, path, **kw)
        except httpx.HTTPError as e:
            self.samples.append((op, time.perf_counter() - t, 0))
            self.errors.append(f"{op}: {type(e).__name__}: {e}")
            raise Failed from e
        self.samples.append((op, time.perf_counter() - t, r.status_code))
        if not 200 <= r.status_code < 300:
            self.errors.append(f"{op} {method} {path}: {r.status_code} {r.text[:200]}")
            raise Failed
        return r.json() if r.content else None

    def basic_info(self) -> dict:
        rng = self.rng
        return {"demographics": f"{rng.randint(16, 65)}岁，{rng.choice(['女', '男'])}，{rng.choice(['大学生', '教师', 'engineer', 'nurse'])}",
                "development": session_text(rng, 200), "mental_state": session_text(rng, 150),
                "physical": rng.choice(["无重大躯体疾病", "mild asthma, no medication", ""]),
                "social": session_text(rng, 150)}

    async def loop(self) -> None:
        """One session write-up (see the module docstring)."""
        rng = self.rng
        await self.call("list", "GET", "/api/v1/clients")
        if not self.clients or rng.random() < 0.25:
            name = f"{rng.choice(SURNAMES)} {secrets.token_hex(2).upper()}"
            body = {"name": name, "tags": rng.sample(["焦虑", "depression", "学业", "family", "sleep"], 2)}
            if rng.random() < 0.5:
                body["basic_info"] = self.basic_info()
            c = await self.call("client.create", "POST", "/api/v1/clients", json=body)
            self.clients.append((c["id"], name))
        cid, name = rng.choice(self.clients)
        await self.call("list.search", "GET", "/api/v1/clients", params={"q": name.split()[-1][:3]})
        await self.call("client.read", "GET", f"/api/v1/clients/{cid}")
        if rng.random() < 1 / 3:
            await self.call("basic_info.update", "PUT", f"/api/v1/clients/{cid}/basic-info", json=self.basic_info())
        d = await self.call("draft.create", "POST", f"/api/v1/clients/{cid}/drafts",
                            json={"input": session_text(rng, rng.randint(500, 2500)), "generate": False})
        question = d["content"]["sections"]["counseling_question"][0]["id"]
        symptom = d["content"]["sections"]["symptom_type"][0]["id"]
        d = await self.call("item.patch", "PATCH", f"/api/v1/drafts/{d['id']}/items/{question}",
                            json={"text": session_text(rng, 250)[:300], "revision": d["revision"]})
        d = await self.call("item.patch", "PATCH", f"/api/v1/drafts/{d['id']}/items/{symptom}",
                            json={"text": rng.choice(["失眠", "考试焦虑", "low mood", "grief", "人际关系困扰"]),
                                  "comment": "check with supervisor", "revision": d["revision"]})
        n = await self.call("draft.save", "POST", f"/api/v1/drafts/{d['id']}/save", json={"revision": d["revision"]})
        await self.call("notes.timeline", "GET", f"/api/v1/clients/{cid}/notes")
        await self.call("note.sign", "POST", f"/api/v1/notes/{n['id']}/sign")
        if rng.random() < 1 / 3:
            await self.call("note.addendum", "POST", f"/api/v1/notes/{n['id']}/addenda",
                            json={"text": "补充 / addendum: " + session_text(rng, 300)})

    async def run(self, deadline: float) -> None:
        self.deadline = deadline
        while True:
            try:
                await self.loop()
            except Failed:
                await asyncio.sleep(0.05)  # an error ends the write-up; the next one starts fresh
            except TimeUp:
                return


async def drive(url: str, pid: int, users: list[str], seconds: float, think: float) -> dict:
    """Log everyone in, then run the loops for `seconds`; the samples and what the measured window cost."""
    samples: list = []
    errors: list = []
    counselors = [Counselor(url, u, i, samples, errors, think) for i, u in enumerate(users)]
    try:
        t = time.perf_counter()
        await asyncio.gather(*(c.login() for c in counselors))  # argon2 verify: not part of the measurement
        login_s = time.perf_counter() - t
        cpu0, me0, load0 = cpu_seconds(pid), time.process_time(), os.getloadavg()[0]
        t0 = time.perf_counter()
        await asyncio.gather(*(c.run(t0 + seconds) for c in counselors))
        wall = time.perf_counter() - t0
        server_cpu, my_cpu, load1 = cpu_seconds(pid) - cpu0, time.process_time() - me0, os.getloadavg()[0]
    finally:
        await asyncio.gather(*(c.http.aclose() for c in counselors))
    return {"samples": samples, "errors": errors, "wall": wall, "login_s": login_s, "server_cpu": server_cpu,
            "my_cpu": my_cpu, "load": (load0, load1)}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def stats(secs: list[float], wall: float) -> dict:
    ms = [s * 1000 for s in secs]
    return {"n": len(ms), "per_s": round(len(ms) / wall, 1), "p50_ms": round(pct(ms, 0.50), 1),
            "p95_ms": round(pct(ms, 0.95), 1), "p99_ms": round(pct(ms, 0.99), 1), "max_ms": round(max(ms), 1)}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_backend(backend: str, db_url: str | None, users: list[str], seconds: float, think: float, tmp: Path) -> dict:
    data_dir = tmp / backend / "data"
    t = time.perf_counter()
    prepare_accounts(data_dir, db_url, users=users)
    accounts_s = time.perf_counter() - t
    server = Server(data_dir, db_url=db_url).start()
    try:
        d = asyncio.run(drive(server.url, server.proc.pid, users, seconds, think))
    finally:
        server.stop()
    samples, errors, wall = d["samples"], d["errors"], d["wall"]
    by_op: dict[str, list[float]] = {}
    for op, s, _ in samples:
        by_op.setdefault(op, []).append(s)
    return {"requests": len(samples), "errors": len(errors), "error_examples": errors[:5], "wall_s": round(wall, 1),
            **stats([s for _, s, _ in samples], wall), "ops": {op: stats(v, wall) for op, v in by_op.items()},
            "server_cpu_s": round(d["server_cpu"], 1), "server_cpu_ms_per_request": round(d["server_cpu"] * 1000
                                                                                          / max(1, len(samples)), 2),
            "loadgen_cpu_s": round(d["my_cpu"], 1), "load_avg_1m": [round(x, 1) for x in d["load"]],
            "accounts_s": round(accounts_s, 1), "logins_s": round(d["login_s"], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--think", type=float, default=1.0,
                    help="mean pause before each request, seconds (exponential); 0: back to back, the server saturated")
    args = ap.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    bad = set(backends) - {"sqlite", "postgresql"}
    if bad or not backends:
        ap.error(f"--backends takes sqlite and/or postgresql, got {args.backends!r}")
    # SIGTERM (a killed job) takes the same path as Ctrl-C: the finally blocks stop the server and cluster.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    users = [f"counselor{i:02d}" for i in range(args.users)]
    results = {}
    tmp = Path(tempfile.mkdtemp(prefix="psyassist-bench-crud-"))
    try:
        for b in backends:
            if b == "sqlite":
                results[b] = run_backend(b, None, users, args.seconds, args.think, tmp)
            else:
                with postgres_database() as url:
                    results[b] = run_backend(b, url, users, args.seconds, args.think, tmp)
            r = results[b]
            print(f"{b}: {r['requests']} requests, {r['per_s']}/s, p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, "
                  f"p99 {r['p99_ms']} ms, {r['errors']} errors", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    met = all(r["p95_ms"] < TARGET_P95_MS and r["errors"] == 0 for r in results.values())
    result = {"users": args.users, "seconds": args.seconds, "think_s": args.think, "target_p95_ms": TARGET_P95_MS, "met": met,
              "backends": results,
              "note": f"load generator (one asyncio loop, httpx) shares the {os.cpu_count()} cores with the server"}
    parts = [f"{b} {r['per_s']} req/s, p50/p95/p99 {r['p50_ms']}/{r['p95_ms']}/{r['p99_ms']} ms, {r['errors']} "
             f"errors (server {r['server_cpu_ms_per_request']} CPU-ms/request, {r['server_cpu_s']} CPU-s; load "
             f"generator {r['loadgen_cpu_s']} CPU-s; load avg {r['load_avg_1m'][0]} → {r['load_avg_1m'][1]})"
             for b, r in results.items()]
    summary = (f"{args.users} counselors × {args.seconds:g} s of client/note CRUD over HTTP, "
               + (f"mean think time {args.think:g} s, " if args.think else "no think time (saturation), ")
               + f"load generator on the same {os.cpu_count()} cores: " + "; ".join(parts)
               + f"; target p95 < {TARGET_P95_MS} ms: **{'met' if met else 'missed'}**")
    record("app_crud", result, summary)


if __name__ == "__main__":
    main()
