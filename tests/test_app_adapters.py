"""Per-client adapters: training data from the records, the durable queue, sealed storage, which version a draft
uses, and that an adapter never drafts for another client.  The `slow` tests train real (tiny) adapters.

    pytest tests/test_app_adapters.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from app_helpers import ScriptedBackend, make_state
from psyassist.app import jobs
from psyassist.app.accounts import actor_of
from psyassist.app.adapters import blob_key, build_examples, for_client, model_name, open_adapter
from psyassist.app.notes.draft import content_from_model
from psyassist.app.records import Conflict, NotFound, Workspace
from psyassist.app.store.crypto import Unreadable
from psyassist.app.store.models import Adapter, Draft, Job, User, new_id, utcnow
from psyassist.app.training import pack

MODEL_DRAFT = {"counseling_question": "exam worry", "symptom_type": "anxiety", "reasons": ["pressure", "sleep"],
               "advice": ["relaxation"], "basic_info_updates": {"mental_state": "anxious"}}


def _actor(st, name):
    with st.db.read() as s:
        return actor_of(s.scalar(select(User).where(User.username == name)))


def _sessions(st, ws, cid, n=3):
    """n saved sessions, each drafted by the 'model' (MODEL_DRAFT) and edited by the counselor."""
    t = st.templates["seed004"]
    for i in range(n):
        content, _ = content_from_model(t, MODEL_DRAFT)
        content["sections"]["advice"][0].update(text=f"Worry time every evening, week {i}", origin="edited")
        did = ws.create_draft(cid, f"Session {i}: she lies awake before exams.", t, date(2026, 11, 1) + timedelta(i),
                              generate=False, content=content)
        with st.db.write() as s:  # the model's original output, as the runner stores it
            d = s.get(Draft, did)
            d.model_ct = st.vault.key(s, f"client:{cid}").seal(json.dumps(MODEL_DRAFT), "drafts", did, "model")
        ws.save_draft(did, t)


@pytest.fixture
def st(tmp_path, db_url):
    s = make_state(tmp_path, db_url, backend=ScriptedBackend([json.dumps(MODEL_DRAFT)]), job_timeout_s=1)
    yield s
    s.close()


def test_training_examples_come_from_saved_sessions_with_the_counselors_edits(st):
    ws = Workspace(st, _actor(st, "alice"))
    cid = ws.create_client("A")
    _sessions(st, ws, cid)
    examples, facts = build_examples(st, ws, cid, max_tokens=100_000)
    assert len(examples) == 3 and facts["pairs"] == 3 and len(facts["notes_used"]) == 3
    newest = examples[0]  # newest session first
    chosen = json.loads(newest.chosen)
    assert chosen["advice"] == ["Worry time every evening, week 2"] and chosen["basic_info_updates"]["mental_state"] == "anxious"
    assert json.loads(newest.rejected)["advice"] == ["relaxation"]  # the model's draft = the rejected side
    prompt = newest.messages[1]["content"]
    assert "Session 2: she lies awake" in prompt and "week 1" in prompt and "week 0" in prompt  # history before it
    oldest_prompt = examples[-1].messages[1]["content"]
    assert "week 1" not in oldest_prompt and "week 2" not in oldest_prompt  # never a later session
    few, facts2 = build_examples(st, ws, cid, max_tokens=1)
    assert len(few) == 1 and facts2["notes_used"] == [facts["notes_used"][0]]  # the budget keeps the newest
    with pytest.raises(NotFound):
        build_examples(st, Workspace(st, _actor(st, "bob")), cid, max_tokens=1000)


def test_the_queue_gives_a_job_to_one_worker_and_retries_a_dead_one(st):
    ws = Workspace(st, _actor(st, "alice"))
    cid, other = ws.create_client("A"), ws.create_client("B")
    job = ws.start_training(cid, steps=2)
    with pytest.raises(Conflict):
        ws.start_training(cid)  # one active job per client
    ws.start_training(other)
    first = jobs.claim(st, "w1")
    assert first == job and jobs.claim(st, "w2") is None  # max_running_jobs = 1
    with st.db.write() as s:  # the worker died: its heartbeat is old
        s.get(Job, job).heartbeat_at = utcnow() - timedelta(seconds=30)
    assert jobs.reap(st) == 1
    with st.db.read() as s:
        j = s.get(Job, job)
        assert (j.status, j.attempts) == ("queued", 1)
    assert jobs.claim(st, "w2") == job  # retried by another worker
    with st.db.write() as s:
        s.get(Job, job).heartbeat_at = utcnow() - timedelta(seconds=30)
    jobs.reap(st)
    with st.db.read() as s:
        j = s.get(Job, job)
        assert j.status == "failed" and "stopped responding 2 time(s)" in j.error
    assert jobs.claim(st, "w3") not in (None, job)  # the other client's job runs now


def test_cancel_a_queued_job(st):
    ws = Workspace(st, _actor(st, "alice"))
    cid = ws.create_client("A")
    job = ws.start_training(cid)
    ws.cancel_training(cid, job)
    assert ws.jobs(cid)[0]["status"] == "cancelled"
    with pytest.raises(NotFound):
        Workspace(st, _actor(st, "bob")).cancel_training(cid, job)


def _fake_adapter(st, cid, owner, version, status="ready") -> tuple[str, bytes]:
    """An adapter row with a sealed blob holding recognisable bytes."""
    aid = new_id()
    weights = bytes(range(256)) * 8 + f"weights of {cid} v{version}".encode()
    blob = pack(weights, {"peft_type": "LORA", "r": 4})
    with st.db.write() as s:
        sealed = st.vault.key(s, f"client:{cid}").seal(blob, "adapters", aid, "blob")
        s.add(Adapter(id=aid, client_id=cid, owner_id=owner, version=version, status=status, method="sft",
                      base_model="default", blob_key=blob_key(cid, aid), size_bytes=len(sealed), manifest="{}",
                      memorization='{"verdict": "ok"}', created_at=utcnow()))
    st.blobs.put(blob_key(cid, aid), sealed)
    return aid, weights


@pytest.mark.parametrize("store", ["file", pytest.param("s3", marks=pytest.mark.slow)])
def test_adapters_are_sealed_per_client_and_bound_to_their_id(st, store, request):
    if store == "s3":  # the same sealing on the S3-compatible store (the s3_url fixture skips/fails without one)
        from psyassist.app.store.blobs import open_store

        st.blobs = open_store(request.getfixturevalue("s3_url"))
    alice = _actor(st, "alice")
    ws = Workspace(st, alice)
    cid = ws.create_client("A")
    aid, weights = _fake_adapter(st, cid, alice.id, 1)
    stored = st.blobs.get(blob_key(cid, aid))
    assert weights[:512] not in stored and b"weights of" not in stored  # no plaintext in the store
    chosen = for_client(st, cid)
    config, opened = open_adapter(st, chosen)
    assert opened == weights and config["r"] == 4
    aid2, _ = _fake_adapter(st, cid, alice.id, 2)
    st.blobs.put(blob_key(cid, aid2), stored)  # v1's ciphertext under v2's name: the binding catches it
    with pytest.raises(Unreadable):
        open_adapter(st, for_client(st, cid))


def test_which_version_drafts_use(st):
    alice = _actor(st, "alice")
    ws = Workspace(st, alice)
    cid = ws.create_client("A")
    assert for_client(st, cid) is None
    _fake_adapter(st, cid, alice.id, 1)
    _fake_adapter(st, cid, alice.id, 2)
    _fake_adapter(st, cid, alice.id, 3, status="held")  # failed the memorization check
    assert for_client(st, cid)["version"] == 2
    ws.set_adapter_choice(cid, "v1")
    assert for_client(st, cid)["version"] == 1
    with pytest.raises(NotFound):
        ws.set_adapter_choice(cid, "v3")  # a held-back version cannot be pinned
    ws.set_adapter_choice(cid, "base")
    assert for_client(st, cid) is None
    ws.set_adapter_choice(cid, None)
    ws.delete_adapter(cid, 2)
    assert for_client(st, cid)["version"] == 1 and len(st.blobs.list(f"adapters/{cid}/")) == 2
    ws.delete_client(cid)
    assert st.blobs.list(f"adapters/{cid}/") == []  # the client's sealed adapters leave the store


def test_a_draft_uses_its_own_clients_adapter_and_no_other(tmp_path):
    from app_helpers import login, web_client

    st = make_state(tmp_path, backend=ScriptedBackend([json.dumps(MODEL_DRAFT)]))
    alice = _actor(st, "alice")
    ws = Workspace(st, alice)
    a, b = ws.create_client("A"), ws.create_client("B")
    aid, _ = _fake_adapter(st, a, alice.id, 1)
    with web_client(st) as client:
        csrf = login(client, "alice")
        h = {"X-CSRF-Token": csrf}
        for cid, expect in ((a, 1), (b, None)):
            did = client.post(f"/api/v1/clients/{cid}/drafts", json={"input": "She sleeps badly."}, headers=h).json()["id"]
            for _ in range(200):
                d = client.get(f"/api/v1/drafts/{did}").json()
                if d["status"] != "generating":
                    break
                time.sleep(0.05)
            got = (d["provenance"]["adapter"] or {}).get("version")
            assert got == expect, (cid, d["provenance"])
        assert [c["adapter"] for c in st.backend.calls] == [model_name(a, aid), None]
        assert list(st.backend.adapters) == [model_name(a, aid)]  # only A's adapter was ever opened
        csrf_b = login(client, "bob")
        assert client.get(f"/api/v1/clients/{a}/adapters").status_code == 404
        r = client.put(f"/api/v1/clients/{a}/adapter-choice", json={"choice": "v1"}, headers={"X-CSRF-Token": csrf_b})
        assert r.status_code == 404
    st.close()


# --- real training (slow) -------------------------------------------------------------------------


@pytest.mark.slow
def test_a_real_training_job_makes_a_sealed_adapter_that_drafts(tmp_path, one_torch_thread):
    from psyassist.app.llm import InProcess

    st = make_state(tmp_path, train_steps=2)
    try:
        alice = _actor(st, "alice")
        ws = Workspace(st, alice)
        cid = ws.create_client("A")
        _sessions(st, ws, cid, n=2)
        job = ws.start_training(cid, method="dpo", steps=1)  # one step: the pipeline, not the learning
        assert jobs.Worker(st).run_once()
        j = ws.jobs(cid)[0]
        assert j["status"] == "done", j
        (adapter,), _ = ws.adapters(cid)
        assert adapter["version"] == 1 and adapter["method"] == "dpo" and adapter["memorization"]["verdict"] in (
            "ok", "warn", "block")
        m = adapter["manifest"]
        assert m["steps"] == 1 and m["pairs"] == 2 and len(m["notes_used"]) == 2 and m["job_id"] == job
        chosen = for_client(st, cid) or {"id": adapter["id"], "version": 1, "client_id": cid,
                                         "blob_key": blob_key(cid, adapter["id"]), "name": model_name(cid, adapter["id"])}
        config, weights = open_adapter(st, chosen)
        sealed = st.blobs.get(chosen["blob_key"])
        for i in range(0, len(weights) - 64, max(1, len(weights) // 50)):  # no slice of the plaintext is stored
            assert weights[i:i + 64] not in sealed
        # Load it into the serving model from memory and draft with it: no file anywhere.
        before = _snapshot_files(tmp_path)
        backend = InProcess(st.cfg)
        backend.start()
        try:
            backend.add_adapter(chosen["name"], config, weights)
            import asyncio

            async def go():
                out = []
                async for ev in backend.stream([{"role": "user", "content": "Hello"}], max_tokens=8,
                                               adapter=chosen["name"]):
                    out.append(ev)
                return out

            events = asyncio.run(go())
            assert events[-1][0] == "done" and backend.hf.pool.loads == 1
        finally:
            backend.close()
        for path, data in _new_files(tmp_path, before):
            assert weights[:256] not in data, f"plaintext adapter bytes in {path}"
    finally:
        st.close()


def _snapshot_files(root: Path) -> set[Path]:
    import tempfile

    return {p for d in (root, Path(tempfile.gettempdir())) for p in d.rglob("*") if p.is_file()}


def _new_files(root: Path, before: set[Path]):
    for p in _snapshot_files(root) - before:
        try:
            yield p, p.read_bytes()
        except OSError:
            continue


WORKER = textwrap.dedent('''
    import json, sys, time
    from psyassist.app.config import AppConfig
    from psyassist.app.state import open_state
    from psyassist.app import jobs
    st = open_state(AppConfig(data_dir=sys.argv[1], database_url=sys.argv[2], max_running_jobs=10), create=False)
    def handler(st, job, report, cancel):
        with open(sys.argv[3], "a") as f:
            f.write(json.dumps({"job": job["id"], "worker": sys.argv[4]}) + "\\n")
        time.sleep(0.2)
        return None, {"phase": "done"}
    jobs.HANDLERS["train_adapter"] = handler
    w = jobs.Worker(st, poll_s=0.1, name=sys.argv[4])
    while w.run_once():
        pass
    st.close()
''')


@pytest.mark.slow
def test_two_worker_processes_run_each_of_ten_jobs_exactly_once(tmp_path, postgres_url):
    st = make_state(tmp_path, postgres_url)
    ws = Workspace(st, _actor(st, "alice"))
    ids = [ws.start_training(ws.create_client(f"C{i}")) for i in range(10)]
    st.close()
    log = tmp_path / "ran.jsonl"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "data"), postgres_url, str(log), f"w{i}"])
             for i in range(2)]
    for p in procs:
        assert p.wait(120) == 0
    ran = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(r["job"] for r in ran) == sorted(ids)  # every job once, none twice
    assert {r["worker"] for r in ran} == {"w0", "w1"}  # both workers took part


@pytest.mark.slow
def test_workers_starting_together_on_a_fresh_database_all_claim_without_error(tmp_path, postgres_url):
    """The first claims on PostgreSQL create the lock row: eight at once must not trip on its unique key."""
    import threading

    st = make_state(tmp_path, postgres_url)
    try:
        ws = Workspace(st, _actor(st, "alice"))
        ids = {ws.start_training(ws.create_client(f"C{i}")) for i in range(3)}
        st.cfg.max_running_jobs = 8
        barrier, got, errors = threading.Barrier(8), [], []

        def worker(i: int) -> None:
            barrier.wait()
            try:
                got.append(jobs.claim(st, f"w{i}"))
            except Exception as e:  # noqa: BLE001 — collected, asserted below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        claimed = [j for j in got if j is not None]
        assert sorted(claimed) == sorted(ids)  # each job exactly once, the other five claims found none
    finally:
        st.close()


def test_backups_carry_the_sealed_adapters_and_drop_a_deleted_clients(tmp_path):
    from psyassist.app.backup import backup, restore
    from psyassist.app.store.blobs import open_store
    from psyassist.app.store.db import Database

    st = make_state(tmp_path, backup_dir=tmp_path / "b")
    alice = _actor(st, "alice")
    ws = Workspace(st, alice)
    keep, gone = ws.create_client("Keep"), ws.create_client("Gone")
    aid_keep, weights = _fake_adapter(st, keep, alice.id, 1)
    _fake_adapter(st, gone, alice.id, 1)
    snap, _ = backup(st.db, st.master, st.cfg.audit_path, tmp_path / "b", blobs=st.blobs)
    assert weights[:512] not in snap.read_bytes()
    ws.delete_client(gone)  # after the snapshot: the key store no longer holds its key
    master = st.master
    st.close()
    target = open_store(str(tmp_path / "restored-adapters"))
    db = Database(f"sqlite:///{tmp_path / 'r' / 'app.db'}")
    counts = restore(snap, tmp_path / "b" / "keystore", db, master, tmp_path / "r" / "audit.jsonl", blobs=target)
    db.dispose()
    assert counts["adapter_blobs"] == 1 and counts["clients_dropped_deleted_after_snapshot"] == 1
    assert target.list("adapters/") == [blob_key(keep, aid_keep)]


@pytest.mark.slow
def test_psyassist_serve_takes_a_client_adapter_in_memory_and_drafts_with_it(tmp_path):
    """--backend openai: the app hands the decrypted adapter to psyassist serve's memory, never its disk."""
    import asyncio

    import httpx
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from safetensors.torch import save

    from app_helpers import free_port
    from psyassist.app.config import AppConfig
    from psyassist.app.llm import OpenAIEndpoint
    from psyassist.models import load_model

    model, _ = load_model("default")
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    peft = get_peft_model(model, cfg)
    weights = save({k: v.contiguous() for k, v in get_peft_model_state_dict(peft).items()})
    config = {k: (sorted(v) if isinstance(v, set) else v) for k, v in cfg.to_dict().items()}
    port = free_port()
    served = tmp_path / "serve-cwd"
    served.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "psyassist", "serve", "--model", "default", "--port", str(port)],
                            cwd=served, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(360):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        backend = OpenAIEndpoint(AppConfig(backend="openai", endpoint=f"http://127.0.0.1:{port}/v1", model="default"))
        name = "cabc123-def456"
        backend.add_adapter(name, config, weights)
        assert backend.has_adapter(name)
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["default"]  # an in-memory client adapter is not listed

        async def go():
            out = [ev async for ev in backend.stream([{"role": "user", "content": "Hi"}], max_tokens=4, adapter=name)]
            await backend.client.aclose()
            return out

        assert asyncio.run(go())[-1][0] == "done"
        health = httpx.get(f"http://127.0.0.1:{port}/health").json()
        assert name in health["adapters_loaded"]
        assert not [p for p in served.rglob("*") if p.is_file()]  # nothing written where serve runs
        r = httpx.put(f"http://127.0.0.1:{port}/psyassist/adapters/bad name!", json={"config": {}, "weights": ""})
        assert r.status_code == 400
    finally:
        proc.terminate()
        proc.wait(30)
