"""Encryption overhead: save and load latency of the same notes with AES-256-GCM and with an identity cipher.

    .venv/bin/python benchmarks/app_crypto.py [--notes 300] [--backends sqlite,postgresql]

In process, at the Workspace level (app/records.py: the code every page and API route calls),
on one database per backend: N notes of 1-3 KB of Chinese+English text (the seed004 sections;
a 1-3 KB draft input with each) are each
- saved: `create_draft(content=...)` then `save_draft` (two write transactions; 4 seals, 1 open),
- loaded: `note(id)` (one open), and each client's timeline `notes(cid)` (one open per note),
once through the real code and once with `DataKey.seal/open` replaced by an identity that keeps
the format byte and the UTF-8 encoding, so only AES-GCM (nonce, associated data, tag) differs.
The two variants alternate operation by operation (AB, BA, AB, …) on separate clients of the
same database, so disk, cache, other jobs and database growth hit both alike.  Everything else
is real: SQLite WAL with synchronous=FULL (a PostgreSQL throwaway cluster with fsync on, see
app_crud.py), the audit log's fsync per access, the key cache.  The timeline is read at the end,
when each client holds N / 5 notes.

Reported: wall-clock p50 and mean, and mean CPU time, of save, load and timeline per variant,
and their ratios (target: AES **< 10 % slower**, judged on the wall p50); the seals/opens each
operation does; raw AES-GCM µs per seal and open of 2 KB (DataKey.seal/open and the bare
AESGCM call), so the overhead the raw cost predicts can be set against the measured one.  On
this VM, fsync waits come in ~4 ms steps and other jobs share the cores: the wall ratios carry
that noise, the CPU ratio much less.  Prints one JSON line last and appends a row to
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
import timeit
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import record  # noqa: E402
from app_crud import postgres_available, postgres_database, session_text  # noqa: E402

from psyassist.app.accounts import actor_of, create_user  # noqa: E402
from psyassist.app.config import AppConfig  # noqa: E402
from psyassist.app.notes.draft import new_item  # noqa: E402
from psyassist.app.notes.templates import BASIC_KEYS  # noqa: E402
from psyassist.app.records import Workspace  # noqa: E402
from psyassist.app.state import open_state  # noqa: E402
from psyassist.app.store.crypto import VERSION, DataKey  # noqa: E402

TARGET_RATIO = 1.10
CLIENTS = 5  # per variant; each client's timeline ends up holding N / 5 notes
TIMELINE_READS = 20  # per client and variant
COUNTS = {"seal": 0, "open": 0}


@contextmanager
def cipher(kind: str):
    """DataKey.seal/open as they are ("aes") or as an identity ("plain"), counting the calls either way."""
    seal, open_ = DataKey.seal, DataKey.open
    if kind == "aes":
        def new_seal(self, plaintext, table, row_id, field):
            COUNTS["seal"] += 1
            return seal(self, plaintext, table, row_id, field)

        def new_open(self, blob, table, row_id, field):
            COUNTS["open"] += 1
            return open_(self, blob, table, row_id, field)
    else:
        def new_seal(self, plaintext, table, row_id, field):
            COUNTS["seal"] += 1
            return VERSION + (plaintext.encode("utf-8") if isinstance(plaintext, str) else plaintext)

        def new_open(self, blob, table, row_id, field):
            COUNTS["open"] += 1
            return blob[1:].decode("utf-8")
    DataKey.seal, DataKey.open = new_seal, new_open
    try:
        yield
    finally:
        DataKey.seal, DataKey.open = seal, open_


def note_content(rng: random.Random, size: int, template) -> dict:
    """A saved draft's content: seed004's sections filled with ~`size` UTF-8 bytes of session text."""
    content = {"sections": {}, "basic_info": {k: None for k in BASIC_KEYS},
               "section_comments": {s.key: [] for s in template.sections}}
    for s in template.sections:
        if s.kind == "text":
            text = session_text(rng, min(s.max_chars, size // 6))[:s.max_chars]
            content["sections"][s.key] = [new_item(text, "counselor")]
        else:
            n = rng.randint(2, 4)
            content["sections"][s.key] = [new_item(session_text(rng, size // (2 * n + 2))[:s.max_chars], "counselor")
                                          for _ in range(n)]
    return content


def raw_aes_us() -> dict:
    """µs per seal and open of 2 KB: through DataKey (encode, associated data, nonce) and the bare AESGCM call."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = DataKey(DataKey.new_raw(), "client:bench")
    text = session_text(random.Random(0), 2048)
    blob = key.seal(text, "note_versions", "0" * 32, "content")
    aead, nonce, data = AESGCM(os.urandom(32)), os.urandom(12), text.encode()
    ct = aead.encrypt(nonce, data, b"ad")
    n = 20_000

    def us(fn) -> float:
        return round(min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6, 2)

    return {"plaintext_bytes": len(text.encode()),
            "datakey_seal_us": us(lambda: key.seal(text, "note_versions", "0" * 32, "content")),
            "datakey_open_us": us(lambda: key.open(blob, "note_versions", "0" * 32, "content")),
            "aesgcm_encrypt_us": us(lambda: aead.encrypt(nonce, data, b"ad")),
            "aesgcm_decrypt_us": us(lambda: aead.decrypt(nonce, ct, b"ad"))}


def summarize(samples: list[tuple[float, float]]) -> dict:
    wall, cpu = [w for w, _ in samples], [c for _, c in samples]
    return {"n": len(samples), "p50_ms": round(statistics.median(wall) * 1000, 3),
            "mean_ms": round(statistics.fmean(wall) * 1000, 3), "cpu_mean_ms": round(statistics.fmean(cpu) * 1000, 3)}


def run_backend(db_url: str | None, data_dir: Path, n_notes: int, raw: dict) -> dict:
    st = open_state(AppConfig(data_dir=data_dir, database_url=db_url))
    try:
        ws = Workspace(st, actor_of(create_user(st.db, "bench", "correct-horse-battery")))
        t = st.templates["seed004"]
        clients = {v: [ws.create_client(f"{v} {i}") for i in range(CLIENTS)] for v in ("plain", "aes")}
        rng = random.Random(0)
        # The same notes for both variants: (client index, draft input, content).
        notes = [(i % CLIENTS, session_text(rng, rng.randint(1000, 3000)), note_content(rng, rng.randint(1000, 3000), t))
                 for i in range(n_notes)]
        times = {v: {"save": [], "load": [], "timeline": []} for v in clients}  # (wall s, CPU s)
        calls = {v: {"save": [0, 0], "load": [0, 0], "timeline": [0, 0]} for v in clients}  # [seals, opens]

        def timed(v: str, op: str, fn, *args):
            s0, o0 = COUNTS["seal"], COUNTS["open"]
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn(*args)
            times[v][op].append((time.perf_counter() - t0, time.process_time() - c0))
            calls[v][op][0] += COUNTS["seal"] - s0
            calls[v][op][1] += COUNTS["open"] - o0
            return out

        def save(cid: str, text: str, content: dict, day: date) -> str:
            did = ws.create_draft(cid, text, t, day, generate=False, content=content)
            return ws.save_draft(did, t)

        def pair(k: int):  # the two variants in turn, the order swapped every time: drift hits both alike
            return ("plain", "aes") if k % 2 == 0 else ("aes", "plain")

        ids: dict[str, list[str]] = {"plain": [], "aes": []}
        for k, (ci, text, content) in enumerate(notes):
            for v in pair(k):
                with cipher(v):
                    ids[v].append(timed(v, "save", save, clients[v][ci], text, content, date(2026, 1, 1) + timedelta(k)))
        for k in range(len(notes)):
            for v in pair(k):
                with cipher(v):
                    timed(v, "load", ws.note, ids[v][k])
        for k in range(TIMELINE_READS * CLIENTS):
            for v in pair(k):
                with cipher(v):
                    timed(v, "timeline", ws.notes, clients[v][k % CLIENTS])
        out = {}
        for op in ("save", "load", "timeline"):
            a, p = summarize(times["aes"][op]), summarize(times["plain"][op])
            seals, opens = calls["aes"][op][0] / a["n"], calls["aes"][op][1] / a["n"]
            out[op] = {"aes": a, "plain": p, "ratio_p50": round(a["p50_ms"] / p["p50_ms"], 3),
                       "ratio_mean": round(a["mean_ms"] / p["mean_ms"], 3),
                       "ratio_cpu": round(a["cpu_mean_ms"] / p["cpu_mean_ms"], 3),
                       "seals_per_op": round(seals, 1), "opens_per_op": round(opens, 1),
                       # what the raw µs predict (an upper bound: the identity also encodes and decodes)
                       "expected_extra_us": round(seals * raw["datakey_seal_us"] + opens * raw["datakey_open_us"], 1)}
        return out
    finally:
        st.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notes", type=int, default=300, help="notes per variant")
    ap.add_argument("--backends", default="sqlite,postgresql",
                    help="comma-separated; postgresql is skipped when no server can be had")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # cleanup as on Ctrl-C
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if set(backends) - {"sqlite", "postgresql"} or not backends:
        ap.error(f"--backends takes sqlite and/or postgresql, got {args.backends!r}")

    raw = raw_aes_us()
    results, skipped = {}, []
    tmp = Path(tempfile.mkdtemp(prefix="psyassist-bench-crypto-"))
    try:
        for b in backends:
            if b == "sqlite":
                results[b] = run_backend(None, tmp / b, args.notes, raw)
            elif postgres_available():
                with postgres_database() as url:
                    results[b] = run_backend(url, tmp / b, args.notes, raw)
            else:
                skipped.append(b)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    worst = max(r[op]["ratio_p50"] for r in results.values() for op in ("save", "load", "timeline"))
    met = worst < TARGET_RATIO
    result = {"notes": args.notes, "timeline_notes": args.notes // CLIENTS, "raw_2kb": raw, "backends": results, "skipped": skipped,
              "worst_ratio_p50": worst, "target_ratio": TARGET_RATIO, "met": met,
              "load_avg_1m": round(os.getloadavg()[0], 1)}
    parts = [f"{b}: save {r['save']['plain']['p50_ms']:.2f} → {r['save']['aes']['p50_ms']:.2f} ms "
             f"(×{r['save']['ratio_p50']}), load {r['load']['plain']['p50_ms']:.2f} → {r['load']['aes']['p50_ms']:.2f} "
             f"ms (×{r['load']['ratio_p50']}), timeline of {args.notes // CLIENTS} notes "
             f"{r['timeline']['plain']['p50_ms']:.1f} → {r['timeline']['aes']['p50_ms']:.1f} ms "
             f"(×{r['timeline']['ratio_p50']})" for b, r in results.items()]
    summary = (f"{args.notes} notes of 1-3 KB zh+en, Workspace save/load p50, identity cipher → AES-256-GCM: "
               + "; ".join(parts) + f"; raw 2 KB seal {raw['datakey_seal_us']} µs, open {raw['datakey_open_us']} µs"
               + (f"; skipped {', '.join(skipped)} (no server)" if skipped else "")
               + f"; target < {TARGET_RATIO - 1:.0%} slower: **{'met' if met else 'missed'}**"
               + f"; load avg {os.getloadavg()[0]:.1f}")
    record("app_crypto", result, summary)


if __name__ == "__main__":
    main()
