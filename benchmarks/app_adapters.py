"""Does "Train" help the counselor?  Base model vs a per-client SFT adapter vs SFT + DPO, on a simulated counselor.

    PSYASSIST_TEST_DATA=../shared/data .venv/bin/python benchmarks/app_adapters.py            # ~35-60 min, 2 cores
    PSYASSIST_TEST_DATA=../shared/data .venv/bin/python benchmarks/app_adapters.py --quick    # smoke run, minutes

Question: after a counselor has saved K sessions' notes, do drafts written with the client's
adapter (the app's "Train", `app/adapters.py` + `app/training.py`) come closer to what the
counselor finally writes than drafts of the base model, and does the preference term
(`train_method: dpo`) add anything over plain SFT?  It decides the app's default `train_method`.

Method (all through the app's own code, on the default model, SmolLM2-135M-Instruct, on CPU):
- Sessions: `--sessions` dialogues of CPsyCounD ($PSYASSIST_TEST_DATA/CPsyCoun/cpsycound.jsonl),
  drawn with random.Random(seed) among those whose client turns hold ≥ `--input-chars`
  characters; the client's turns, joined and cut to `--input-chars` at a sentence end, are the
  counselor's raw input of one session of ONE simulated client, a week apart.  (They are different
  people in the corpus; what is learned here is the counselor's way of writing, not the client.)
- The counselor (`counselor_note`, deterministic): a CBT-oriented writer whose notes in seed004's
  template share a recognisable style and differ in content.  Question "来访者希望：<the client's
  last request sentence>"; symptom "<theme>（<emotion>）" from two small cue lexicons; reasons
  always "自动化思维：“<the client's own 'I think/always…' sentence>”" and "触发情境：<jieba's top
  two noun keywords of the dialogue>"; advice always three numbered steps with fixed openings:
  "认知重构：用思维记录表检验“…”", "行为激活：围绕<keyword>每天完成一件小事，情绪评分0–10",
  "家庭作业：<with whom>练习“我感到…我希望…”的表达"; basic-information update "mental_state".
  Its 10 fixed phrases are the style markers (`MARKERS`).
- Drafts: the base model drafts each of the first K sessions through the app's path: the
  context `select_context` builds from the basic information and the earlier FINAL notes
  (`context_tokens`, counted with the model's tokenizer, as the runner does), `draft_messages`,
  the template's JSON schema (grammar-constrained), `InProcess.stream` (the app's sampling, T 0.7,
  with a fixed seed per session), `parse_draft`.  Each session is then written as the app writes
  it: `Workspace.create_draft` with the counselor's final content, the model's raw output sealed
  into `Draft.model_ct`, `save_draft` (which also applies the basic-information update).
- Train: `adapters.build_examples` on those records (K SFT examples and K preference pairs: chosen
  = the counselor's note, rejected = the model's draft), then `training.train` twice with the
  same steps, seed and lr: method "sft" and method "dpo" (SFT + DPO, β 0.1).  The job is the
  worker's sequence (`run_training_job` without the queue and the database row): load the base
  model, train, the memorization check (`adapters._memorization`, policy from the config), pack,
  seal with the client's key, put in the blob store.  build_examples gets `count=` the model's
  tokenizer, so the training prompts are the drafting prompts (checked, and the run fails if they
  differ); the job in the app counts len/2 instead, see "train/serve skew" in the output.
- Held out: the later sessions are drafted with base, SFT and DPO (same seed per session; the
  adapters opened from the store as the app opens them) and each draft is scored against the
  counselor's final note — the whole note (its sections' items, one a line, as the saved note holds
  them) and the advice alone: normalized character edit distance (Levenshtein / longer length,
  lower is better), ROUGE-L F1 on jieba words (`eval.metrics`), character-bigram cosine
  (language-neutral), embedding cosine with the packaged all-MiniLM-L6-v2 (an ENGLISH model: on
  Chinese text it mostly sees characters it was not trained on, so treat it as weak), and the
  style-marker hit rate.  Each condition: mean and 95% t-interval over held-out sessions; each
  adapter: the paired per-session difference vs base, mean and 95% t-interval.
- Costs: job wall time (the sequence above) and its figures from `train()`, both per 1k tokens
  processed; the process's peak RSS during the job (VmHWM, reset before each job; it includes the
  serving model the app process holds anyway); the sealed adapter's size; loading from the
  encrypted store: `open_adapter` (blob get + key + decrypt + unpack), `InProcess.add_adapter`,
  and the first 1-token request that acquires it vs the same request on the base model.

Reading (2026-12-06, the full run in RESULTS.md): see the RESULTS.md row; in short, the
135M default model is far from the counselor's notes (it writes English or fragments), and the
numbers below say how far each adapter moves it with `--steps` steps on K sessions.

Prints a table and one JSON line last, appends a row to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT / "tests"))
from _common import record  # noqa: E402

from app_helpers import make_state  # noqa: E402


@dataclass
class Settings:
    sessions: int = 14  # one simulated client's sessions: the first train_sessions train, the rest are scored
    train_sessions: int = 8  # K: ~1.5k tokens per example (prompt + note) with the model's tokenizer
    steps: int = 10  # per adapter (the app's default is 30): SFT ~30 s/step on 2 quiet cores, DPO ~3x
    lr: float = 2e-4  # TrainSpec's default
    max_tokens: int = 416  # draft cap: the counselor's notes are 310-365 tokens as the model's JSON
    # History budget: Chinese costs ~1.9 SmolLM2 tokens a character, so 300 holds no whole note (only the
    # 160-character summary of the last one) and 450 holds the last note whole: the base model sees the
    # counselor's style once, as it would in the app (its default 1500 holds ~4 notes).  ~1,050-token prompts.
    context_tokens: int = 450
    input_chars: int = 200  # a session's raw input: ~340 tokens
    seed: int = 0
    threads: int = 2

    def __post_init__(self):
        if not 1 <= self.train_sessions < self.sessions:
            raise SystemExit(f"--train-sessions must be 1..sessions-1, got {self.train_sessions} of {self.sessions}")
        if self.sessions - self.train_sessions < 2:
            raise SystemExit("at least 2 held-out sessions are needed for an interval")
        if min(self.steps, self.max_tokens, self.context_tokens, self.input_chars, self.threads) < 1:
            raise SystemExit("steps, max tokens, context tokens, input chars and threads must be ≥ 1")


QUICK = dict(sessions=4, train_sessions=2, steps=1, max_tokens=48, context_tokens=200, input_chars=100)
METHODS = ("sft", "dpo")
CONDITIONS = ("base", *METHODS)

# --- the sessions ----------------------------------------------------------------------------------


def sessions(data: Path, s: Settings) -> tuple[list[dict], int]:
    """s.sessions seeded CPsyCounD dialogues: {id, text (the client's turns joined, cut to input_chars)}."""
    path = data / "CPsyCoun" / "cpsycound.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path} not found: set PSYASSIST_TEST_DATA to the shared data directory (../shared/data)")
    pool = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        full = "".join(m["content"].strip() for m in row["messages"] if m["role"] == "user")
        if len(full) >= s.input_chars:
            pool.append({"id": row["id"], "full": full})
    chosen = random.Random(s.seed).sample(pool, s.sessions)
    for c in chosen:
        cut = c["full"][:s.input_chars]
        end = max(cut.rfind(p) for p in "。！？")
        c["text"] = cut[:end + 1] if end >= s.input_chars // 2 else cut
    return chosen, len(pool)


# --- the simulated counselor -------------------------------------------------------------------------

THEMES = [  # (cues, theme, with whom the communication homework is practised)
    ("考试|学习|成绩|作业|老师|学校|高考|考研", "学业压力", "与老师或同学"),
    ("工作|同事|领导|老板|加班|职场|公司", "职场压力", "与同事或上级"),
    ("父母|妈妈|爸爸|母亲|父亲|家里|家人|孩子", "家庭关系困扰", "与家人"),
    ("男朋友|女朋友|恋爱|伴侣|老公|老婆|丈夫|妻子|分手|婚姻", "亲密关系困扰", "与伴侣"),
    ("朋友|同学|室友|人际|社交", "人际关系困扰", "与朋友"),
    ("睡|失眠", "睡眠困扰", "与家人"),
]
EMOTIONS = [("焦虑|紧张|担心|害怕|压力|不安", "焦虑"), ("难过|伤心|低落|抑郁|痛苦|失落|沮丧", "低落"),
            ("生气|愤怒|烦|委屈", "愤怒"), ("自卑|不自信|没用|失败", "自我否定")]
MARKERS = ["来访者希望：", "自动化思维：", "触发情境：", "认知重构：", "思维记录表", "行为激活：", "每天完成一件小事",
           "情绪评分0–10", "家庭作业：", "练习“我感到…我希望…”的表达"]
_CLAUSE = re.compile(r"[。！？!?，,；;]")


def _best(cues_table, text: str, default):
    """The row whose cues occur most often in `text` (the first on a tie), else `default`."""
    n, _, row = max((len(re.findall(row[0], text)), -i, row) for i, row in enumerate(cues_table))
    return row if n else default


def counselor_note(text: str) -> dict:
    """The counselor's final note for a session's input (seed004's JSON), deterministic; see the module docstring.
    Built from the input alone: the model sees everything the note's content comes from."""
    from psyassist.optional import require

    require("jieba", "the simulated counselor's keywords")
    import jieba.analyse

    _, theme, whom = _best(THEMES, text, ("", "情绪困扰", "与身边的人"))
    _, emotion = _best(EMOTIONS, text, ("", "困扰"))
    sents = [x.strip() for x in _CLAUSE.split(text) if len(x.strip()) > 3 and not re.search("你好|您好|^(心理)?(咨询师|医生|老师)$", x.strip())] or [text]
    hit = next((m for m in (re.search("我(觉得|总是|是不是|应该|怕|担心|不知道)", x) for x in sents) if m), None)
    thought = hit.string[hit.start():] if hit else next((x for x in sents if "我" in x), sents[0])
    request = next((x for x in sents if re.search("希望|想|怎么|如何|该|帮|建议|吗", x)), sents[0])
    keys = [k for k in jieba.analyse.extract_tags(text, topK=12, allowPOS=("n", "vn", "nz"))
            if len(k) > 1 and not re.search("我|心理|咨询|问题|情况|时候|事情|事件", k)][:2] or [theme]
    return {"counseling_question": f"来访者希望：{request[:24]}",
            "symptom_type": f"{theme}（{emotion}）",
            "reasons": [f"自动化思维：“{thought[:16]}”", f"触发情境：{'、'.join(keys)}相关的事件"],
            "advice": [f"认知重构：用思维记录表检验“{thought[:10]}”",
                       f"行为激活：围绕{keys[0]}每天完成一件小事，情绪评分0–10",
                       f"家庭作业：{whom}练习“我感到…我希望…”的表达"],
            "basic_info_updates": {"mental_state": f"{emotion}，主诉{theme}"}}


# --- metrics -------------------------------------------------------------------------------------------


def edit_distance(a: str, b: str) -> float:
    """Levenshtein distance in characters / the longer length (0 = identical, 1 = nothing in common)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1] / max(len(a), len(b), 1)


def bigram_cosine(a: str, b: str) -> float:
    ca, cb = (Counter(t[i:i + 2] for i in range(len(t) - 1)) for t in ("".join(a.split()), "".join(b.split())))
    dot = sum(v * cb[k] for k, v in ca.items())
    na, nb = sum(v * v for v in ca.values()) ** 0.5, sum(v * v for v in cb.values()) ** 0.5
    return dot / (na * nb) if na and nb else 0.0


def plain(t, sections: dict[str, list[str]], only: str | None = None) -> str:
    """A note's items, one a line, in template order (what the saved note holds); `only` = one section."""
    return "\n".join(x for sec in t.sections if only in (None, sec.key) for x in sections.get(sec.key, []))


def score(drafts: list[str], finals: list[str], embed_model: str) -> list[dict]:
    from psyassist.eval.metrics import embedding_cosine, rouge_l, tokens

    emb = embedding_cosine(drafts, finals, embed_model)
    return [{"edit_distance": edit_distance(d, f), "rougeL": rouge_l(tokens(d, "zh-word"), tokens(f, "zh-word"))[2],
             "bigram_cosine": bigram_cosine(d, f), "embed_cosine": e,
             "marker_hits": sum(m in d for m in MARKERS if m in f) / max(1, sum(m in f for m in MARKERS))}
            for d, f, e in zip(drafts, finals, emb, strict=True)]


# --- the app's pieces --------------------------------------------------------------------------------


async def _draft(backend, messages, schema, max_tokens, adapter, seed) -> dict:
    t0, parts, finish, n = time.perf_counter(), [], None, 0
    async for ev in backend.stream(messages, schema=schema, max_tokens=max_tokens, adapter=adapter, seed=seed):
        if ev[0] == "delta":
            parts.append(ev[1])
        else:
            finish, n = ev[1], ev[2]
    return {"raw": "".join(parts), "finish": finish, "tokens": n, "seconds": round(time.perf_counter() - t0, 2)}


def generate(backend, jobs: list[tuple]) -> tuple[list[dict], float]:
    """Every (messages, schema, max_tokens, adapter, seed) at once: the batcher decodes max_batch together."""
    async def go():
        return await asyncio.gather(*[_draft(backend, *j) for j in jobs])

    t0 = time.perf_counter()
    out = asyncio.run(go())
    return out, time.perf_counter() - t0


def _hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def train_job(st, ws, cid: str, method: str, s: Settings) -> dict:
    """The worker's job (adapters.run_training_job) minus the queue and the Adapter row, timed."""
    from psyassist.app import adapters
    from psyassist.app.training import TrainSpec, pack, train
    from psyassist.models import load_model
    from psyassist.safety.memorization import Thresholds, check_loaded

    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: the peak below is this job's
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    examples, facts = adapters.build_examples(st, ws, cid, count=st.backend.count_tokens,
                                              max_tokens=st.cfg.train_max_note_tokens)
    spec = TrainSpec(base_model=st.cfg.model, method=method, steps=s.steps, lr=s.lr, seed=s.seed,
                     device=st.cfg.device, dtype=st.cfg.dtype)
    model, tok = load_model(spec.base_model, dtype=spec.dtype, device=spec.device)

    def progress(p):
        print(f"  {method} step {p['step']}/{p['steps']}: loss {p['loss']}, {p['step_s']} s", flush=True)

    out = train(spec, examples, progress=progress, loaded=(model, tok))
    train_peak = _hwm_mb()
    t_mem = time.perf_counter()
    mem = adapters._memorization(model, tok, out, facts["_note_texts"], check_loaded, Thresholds(),
                                 st.cfg.memorization_policy)
    mem_s = time.perf_counter() - t_mem
    aid = f"{method}{s.seed:04d}"
    with st.db.read() as db:
        key = st.vault.key(db, f"client:{cid}")
    sealed = key.seal(pack(out.weights, out.config), "adapters", aid, "blob")
    st.blobs.put(adapters.blob_key(cid, aid), sealed)
    job_s = time.perf_counter() - t0
    f = out.figures
    del model
    return {"method": method, "examples": f["examples"], "pairs": f["pairs"], "steps": f["steps"],
            "first_loss": f["first_loss"], "last_loss": f["last_loss"], "losses": f["losses"],
            "dpo_losses": f["dpo_losses"], "tokens_processed": f["tokens"], "train_tokens": f["train_tokens"],
            "train_s": f["seconds"], "memorization_s": round(mem_s, 1), "job_s": round(job_s, 1),
            "job_s_per_1k_tokens": round(job_s / (f["tokens"] / 1000), 2),
            "train_s_per_1k_tokens": round(f["seconds"] / (f["tokens"] / 1000), 2),
            "rss_before_mb": round(rss0), "peak_rss_train_mb": round(train_peak), "peak_rss_mb": round(_hwm_mb()),
            "peak_rss_mb_per_1k_tokens": round(_hwm_mb() / (f["tokens"] / 1000), 1),
            "weights_bytes": f["weights_bytes"], "sealed_bytes": len(sealed),
            "memorization": {k: mem.get(k) for k in ("verdict", "reasons", "excess")},
            "adapter": {"id": aid, "client_id": cid, "blob_key": adapters.blob_key(cid, aid),
                        "name": adapters.model_name(cid, aid)}}


def load_from_store(st, adapter: dict, probe: list[dict]) -> dict:
    """The app's path to a draft with a stored adapter: open (get + decrypt + unpack), add, first request."""
    from psyassist.app.adapters import open_adapter

    t0 = time.perf_counter()
    config, weights = open_adapter(st, adapter)
    t1 = time.perf_counter()
    st.backend.add_adapter(adapter["name"], config, weights)
    t2 = time.perf_counter()
    (base,), _ = generate(st.backend, [(probe, None, 1, None, 0)])
    (first,), _ = generate(st.backend, [(probe, None, 1, adapter["name"], 0)])
    return {"open_s": round(t1 - t0, 4), "add_s": round(t2 - t1, 4), "first_request_s": first["seconds"],
            "same_request_base_s": base["seconds"],
            "total_s": round(t2 - t0 + first["seconds"], 3)}


# --- the run ---------------------------------------------------------------------------------------------


def run(s: Settings, data: Path, tmp: Path) -> dict:
    import torch
    from sqlalchemy import select

    from psyassist.app.accounts import actor_of
    from psyassist.app.adapters import note_json
    from psyassist.app.notes.draft import (
        PastNote,
        content_from_model,
        draft_messages,
        final_sections,
        parse_draft,
        select_context,
    )
    from psyassist.app.notes.templates import BASIC_KEYS
    from psyassist.app.records import Workspace
    from psyassist.app.state import attach_backend
    from psyassist.app.store.models import Draft, User
    from psyassist.eval.metrics import default_embed_model

    torch.set_num_threads(s.threads)
    t_start = time.perf_counter()
    chosen, pool = sessions(data, s)
    finals = [counselor_note(c["text"]) for c in chosen]
    st = make_state(tmp, users=("alice",), context_tokens=s.context_tokens, draft_max_tokens=s.max_tokens,
                    train_steps=s.steps)
    try:
        t0 = time.perf_counter()
        attach_backend(st)  # the app's in-process model (InProcess)
        st.backend.start()
        load_s = time.perf_counter() - t0
        t = st.templates["seed004"]
        schema = t.json_schema()
        with st.db.read() as db:
            actor = actor_of(db.scalar(select(User).where(User.username == "alice")))
        ws = Workspace(st, actor)
        basic = {"demographics": "成年来访者"}
        cid = ws.create_client("S.M.", basic_info=basic)
        dates = [date(2026, 9, 1) + timedelta(weeks=i) for i in range(s.sessions)]

        # Every session's prompt, as the runner builds it: basic information then, the earlier FINAL notes.
        info, past, prompts = {k: basic.get(k, "") for k in BASIC_KEYS}, [], []
        for i, (c, fin) in enumerate(zip(chosen, finals, strict=True)):
            ctx = select_context(info, past, s.context_tokens, st.backend.count_tokens)
            prompts.append(draft_messages(t, ctx, c["text"]))
            past.insert(0, PastNote(str(i), dates[i].isoformat(), t, final_sections(t, content_from_model(t, fin)[0])))
            info = {**info, **{k: v for k, v in fin["basic_info_updates"].items() if v}}
        final_tokens = [st.backend.count_tokens(note_json(t, final_sections(t, content_from_model(t, f)[0]),
                                                          f["basic_info_updates"])) for f in finals]
        prompt_tokens = [st.backend.count_tokens(p[0]["content"] + p[1]["content"]) for p in prompts]
        K = s.train_sessions
        print(f"sessions {s.sessions} (train {K}, held out {s.sessions - K}) from {pool} CPsyCounD dialogues ≥ "
              f"{s.input_chars} client chars; prompt tokens {min(prompt_tokens)}-{max(prompt_tokens)}, counselor "
              f"notes {min(final_tokens)}-{max(final_tokens)} tokens as JSON; model loaded in {load_s:.1f} s", flush=True)

        # 1. The base model drafts the training sessions; the counselor saves their own note over each.
        train_drafts, gen_train_s = generate(st.backend, [(prompts[i], schema, s.max_tokens, None, 1000 + i)
                                                          for i in range(K)])
        print(f"base drafts of {K} training sessions: {gen_train_s:.0f} s", flush=True)
        for i in range(K):
            content, _ = content_from_model(t, finals[i])
            did = ws.create_draft(cid, chosen[i]["text"], t, dates[i], generate=False, content=content)
            with st.db.write() as db:  # the model's original output, as the runner stores it
                db.get(Draft, did).model_ct = st.vault.key(db, f"client:{cid}").seal(
                    train_drafts[i]["raw"], "drafts", did, "model")
            ws.save_draft(did, t)
        skew = _skew(st, ws, cid, prompts[:K])

        # 2. Train the two adapters on the same records (same steps, seed, lr), as the worker would.
        jobs = {}
        for m in METHODS:
            print(f"training {m} ({s.steps} steps)", flush=True)
            jobs[m] = train_job(st, ws, cid, m, s)
            print(f"  {m}: job {jobs[m]['job_s']} s, loss {jobs[m]['first_loss']} → {jobs[m]['last_loss']}, "
                  f"memorization {jobs[m]['memorization']['verdict']}", flush=True)
        loads = {m: load_from_store(st, jobs[m]["adapter"], prompts[K]) for m in METHODS}

        # 3. The held-out sessions: each drafted by base, SFT and DPO with the same seed.
        held = range(K, s.sessions)
        work = [(prompts[i], schema, s.max_tokens, None if c == "base" else jobs[c]["adapter"]["name"], 1000 + i)
                for i in held for c in CONDITIONS]
        outs, gen_held_s = generate(st.backend, work)
        print(f"held-out drafts ({len(work)}): {gen_held_s:.0f} s", flush=True)
    finally:
        st.close()  # closes the backend too

    embed = default_embed_model()
    per: dict = {c: {"note": [], "advice": []} for c in CONDITIONS}
    for field in ("note", "advice"):
        only = None if field == "note" else "advice"
        hyps, refs, keys = [], [], []
        for n, i in enumerate(held):
            ref = plain(t, final_sections(t, content_from_model(t, finals[i])[0]), only)
            for j, c in enumerate(CONDITIONS):
                content, _ = parse_draft(t, outs[n * len(CONDITIONS) + j]["raw"])
                hyps.append(plain(t, final_sections(t, content), only))
                refs.append(ref)
                keys.append(c)
        for c, sc in zip(keys, score(hyps, refs, embed), strict=True):
            per[c][field].append(sc)
    examples = {c: plain(t, final_sections(t, parse_draft(t, outs[j]["raw"])[0])) for j, c in enumerate(CONDITIONS)}
    examples["counselor"] = plain(t, final_sections(t, content_from_model(t, finals[K])[0]))
    return {"chosen": chosen, "pool": pool, "per": per, "jobs": jobs, "loads": loads, "skew": skew,
            "outs": outs, "train_drafts": train_drafts, "gen_train_s": gen_train_s, "gen_held_s": gen_held_s,
            "load_s": load_s, "prompt_tokens": prompt_tokens, "final_tokens": final_tokens, "examples": examples,
            "wall_s": time.perf_counter() - t_start}


def _skew(st, ws, cid: str, prompts: list[list[dict]]) -> dict:
    """Check the training prompts are the drafting prompts; measure what the app's job (count = len/2) builds."""
    from psyassist.app.adapters import build_examples

    ours, _ = build_examples(st, ws, cid, count=st.backend.count_tokens, max_tokens=st.cfg.train_max_note_tokens)
    for e, p in zip(ours, reversed(prompts), strict=True):  # build_examples goes newest first
        if e.messages != p:
            raise SystemExit("the training prompt differs from the drafting prompt: build_examples and the runner "
                             "no longer select the same context")
    app, _ = build_examples(st, ws, cid, max_tokens=st.cfg.train_max_note_tokens)  # what run_training_job uses
    tok = st.backend.count_tokens
    return {"draft_prompt_tokens": sum(tok(e.messages[1]["content"]) for e in ours) // len(ours),
            "app_job_prompt_tokens": sum(tok(e.messages[1]["content"]) for e in app) // len(app)}


def summarize(per: dict) -> dict:
    from psyassist.eval.metrics import mean_ci

    out = {}
    for field in ("note", "advice"):
        for metric in per["base"][field][0]:
            row = {c: mean_ci([x[metric] for x in per[c][field]]) for c in CONDITIONS}
            for c in METHODS:
                row[f"{c}-base"] = mean_ci([a[metric] - b[metric] for a, b in
                                            zip(per[c][field], per["base"][field], strict=True)])
            out[f"{field}.{metric}"] = row
    return out


def _fmt(m: dict, signed: bool = False) -> str:
    if m["mean"] is None:
        return "-"
    ci = m["ci95"]
    sign = "+" if signed else ""
    return f"{m['mean']:{sign}.3f} [{ci[0]:{sign}.3f}, {ci[1]:{sign}.3f}]" if ci else f"{m['mean']:{sign}.3f}"


def verdict(d: dict, lower_better: bool = False) -> str:
    lo, hi = d["ci95"]
    if (hi < 0) if lower_better else (lo > 0):
        return "gain"
    if (lo > 0) if lower_better else (hi < 0):
        return "loss"
    return "no measurable difference"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    d = Settings()
    ap.add_argument("--sessions", type=int, default=d.sessions)
    ap.add_argument("--train-sessions", type=int, default=d.train_sessions, help="K, the sessions trained on")
    ap.add_argument("--steps", type=int, default=d.steps)
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--max-tokens", type=int, default=d.max_tokens, help="draft cap (draft_max_tokens)")
    ap.add_argument("--context-tokens", type=int, default=d.context_tokens, help="history budget (context_tokens)")
    ap.add_argument("--input-chars", type=int, default=d.input_chars)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--threads", type=int, default=d.threads, help="torch threads (1 on a busy machine)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of the whole path")
    args = ap.parse_args()
    root = os.environ.get("PSYASSIST_TEST_DATA")
    if not root:
        raise SystemExit("set PSYASSIST_TEST_DATA to the shared data directory (e.g. ../shared/data)")
    given = {k: v for k, v in vars(args).items() if k not in ("quick",)}
    if args.quick:
        given.update({k: v for k, v in QUICK.items() if getattr(args, k) == getattr(d, k)})
    s = Settings(**given)
    load0 = os.getloadavg()[0]
    print(f"settings: {json.dumps(asdict(s))}; data {root}/CPsyCoun; load avg {load0:.1f}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="psyassist-bench-adapters-"))
    try:
        r = run(s, Path(root), tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load1 = os.getloadavg()[0]
    table = summarize(r["per"])

    print(f"\n{'metric':24} " + " ".join(f"{c:>26}" for c in (*CONDITIONS, "sft-base", "dpo-base")))
    for name, row in table.items():
        cells = [_fmt(row[c]) for c in CONDITIONS] + [_fmt(row[f"{m}-base"], True) for m in METHODS]
        print(f"{name:24} " + " ".join(f"{x:>26}" for x in cells))
    for c, text in r["examples"].items():
        print(f"\n[{c}] first held-out session:\n{text[:400]}")

    jobs = {m: {k: v for k, v in j.items() if k != "adapter"} for m, j in r["jobs"].items()}
    finish = {c: dict(Counter(r["outs"][n * len(CONDITIONS) + j]["finish"] for n in range(s.sessions - s.train_sessions)))
              for j, c in enumerate(CONDITIONS)}
    result = {"settings": asdict(s), "data": f"{root}/CPsyCoun/cpsycound.jsonl", "pool": r["pool"],
              "session_ids": [c["id"] for c in r["chosen"]], "model": "default (SmolLM2-135M-Instruct)",
              "interval": "95% t-interval over held-out sessions (eval.metrics.mean_ci)",
              "embed_model": "all-MiniLM-L6-v2 (English-only)", "table": table, "jobs": jobs, "loads": r["loads"],
              "finish": finish, "train_draft_finish": dict(Counter(x["finish"] for x in r["train_drafts"])),
              "prompt_tokens": [min(r["prompt_tokens"]), max(r["prompt_tokens"])],
              "final_note_tokens": [min(r["final_tokens"]), max(r["final_tokens"])],
              "completion_tokens_mean": {c: round(sum(r["outs"][n * len(CONDITIONS) + j]["tokens"] for n in range(
                  s.sessions - s.train_sessions)) / (s.sessions - s.train_sessions)) for j, c in enumerate(CONDITIONS)},
              "per_session": {c: {f: [{k: round(v, 3) for k, v in x.items()} for x in r["per"][c][f]]
                                  for f in r["per"][c]} for c in CONDITIONS},
              "train_serve_skew": r["skew"], "gen_train_s": round(r["gen_train_s"], 1),
              "gen_held_s": round(r["gen_held_s"], 1), "model_load_s": round(r["load_s"], 1),
              "wall_s": round(r["wall_s"], 1), "load_avg_1m": [round(load0, 1), round(load1, 1)],
              "examples": r["examples"]}
    parts = []
    for m in METHODS:
        rl, mk, ed = table["note.rougeL"][f"{m}-base"], table["note.marker_hits"][f"{m}-base"], \
            table["note.edit_distance"][f"{m}-base"]
        parts.append(f"{m.upper()}: note ROUGE-L {_fmt(rl, True)} ({verdict(rl)}), style markers {_fmt(mk, True)} "
                     f"({verdict(mk)}), edit distance {_fmt(ed, True)} ({verdict(ed, lower_better=True)})")
    j = r["jobs"]
    summary = (f"simulated CBT counselor on {s.sessions} CPsyCounD sessions (train {s.train_sessions}, held out "
               f"{s.sessions - s.train_sessions}), default model on CPU, {s.steps} steps, draft cap {s.max_tokens}, "
               f"context {s.context_tokens}; paired vs base, 95% t: " + "; ".join(parts)
               + f"; base note ROUGE-L {_fmt(table['note.rougeL']['base'])}; job SFT {j['sft']['job_s']} s "
               f"({j['sft']['job_s_per_1k_tokens']} s/1k tok), DPO {j['dpo']['job_s']} s "
               f"({j['dpo']['job_s_per_1k_tokens']} s/1k tok), peak RSS {j['sft']['peak_rss_mb']}/"
               f"{j['dpo']['peak_rss_mb']} MB, sealed adapter {j['sft']['sealed_bytes'] / 1e6:.1f} MB, load from store "
               f"{r['loads']['sft']['total_s']} s; memorization {j['sft']['memorization']['verdict']}/"
               f"{j['dpo']['memorization']['verdict']}; {s.threads} torch thread(s), load avg {load0:.1f} → {load1:.1f}, "
               f"wall {r['wall_s'] / 60:.0f} min" + (" (--quick: smoke run, not a result)" if args.quick else ""))
    if args.quick:  # a smoke run is not a result: no RESULTS.md row
        print(json.dumps({"benchmark": "app_adapters", "summary": summary, **result}, ensure_ascii=False))
    else:
        record("app_adapters", result, summary)


if __name__ == "__main__":
    main()
