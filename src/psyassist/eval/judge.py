"""LLM judge: score generated counseling replies with a rubric through any OpenAI-compatible endpoint.

    psyassist eval judge --endpoint http://127.0.0.1:8000 --model qwen3-8b --data results/gen/replies.jsonl
    OPENAI_API_KEY=... psyassist eval judge --endpoint https://api.example.com/v1 --model gpt-4o \\
        --api-key-env OPENAI_API_KEY --data replies.jsonl --price-in 0.0025 --price-out 0.01

- Rubric: resources/judge_rubric.yaml (PsyDT's emotional empathy, cognitive empathy,
  conversation strategy, state and attitude, plus safety; integers 1-5 with anchors) or --rubric FILE.
- One POST to {endpoint}/v1/chat/completions per reply, temperature 0.  The answer must be
  ONE JSON object with exactly the rubric's keys (+ optional "rationale"), integer values in
  range; `<think>` blocks and a ```json fence are removed first, nothing else is forgiven.
  A malformed answer is retried with the reason appended to the conversation; timeouts,
  connection errors, 429 and 5xx are retried with exponential backoff (1, 2, 4 s ...).
  Any other 4xx (bad key, unknown model) stops the run: every request would fail the same way.
  A reply still unscored after the retries is counted as failed, never given a score.
- Cache: SQLite (default $PSYASSIST_CACHE/judge.sqlite, else ~/.cache/psyassist/judge.sqlite),
  key = sha256(endpoint, model, rubric hash, prompt hash); only valid judgments are stored,
  so a rerun sends requests only for what is missing.  The API key is never stored.
- Accounting: prompt/completion tokens from each response's `usage` (every attempt, retries
  included), request seconds and wall seconds, and cost when --price-in/--price-out (per
  1,000 tokens) are given.  Cached judgments cost nothing in this run and are counted apart.
- Aggregation: per dimension mean, SD, n, 95% t interval of the mean, and the 1-5 histogram.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path

import yaml

from psyassist.data.io import write_json_atomic, write_jsonl_atomic
from psyassist.errors import DataError, PsyassistError
from psyassist.eval.metrics import mean_ci
from psyassist.ui import console, track, warn

DEFAULT_RUBRIC = "judge_rubric.yaml"
_FENCE = re.compile(r"^\s*```(?:json)?\s*\n?(.*?)\n?\s*```\s*$", re.S)
_THINK = re.compile(r"<think>.*?</think>", re.S)
CONTEXT_CHARS = 6000  # older turns beyond this many characters are cut from the judge prompt (cost)


class BadJudgment(Exception):
    """The judge's answer is not the JSON object the rubric asks for; `reason` is a short key."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


class Transient(Exception):
    """A failure worth retrying: timeout, connection error, 429 or 5xx."""


# --- rubric ----------------------------------------------------------------------------------


@dataclass
class Rubric:
    dimensions: list[dict]
    system: str
    user: str
    scale: tuple[int, int]
    source: str
    sha256: str

    @property
    def keys(self) -> list[str]:
        return [d["key"] for d in self.dimensions]

    def rubric_text(self) -> str:
        lines = []
        for d in self.dimensions:
            lines.append(f"- {d['key']}: {d['name']}. {d['description']}")
            lines += [f"    {k}: {v}" for k, v in sorted(d["anchors"].items())]
        return "\n".join(lines)

    def schema_text(self) -> str:
        lo, hi = self.scale
        body = ", ".join(f'"{k}": <integer {lo}-{hi}>' for k in self.keys)
        return "{" + body + ', "rationale": "<one or two sentences>"}'


def load_rubric(path: str | Path | None = None) -> Rubric:
    """The shipped rubric or a YAML file of the same shape; DataError names the bad field."""
    if path is None:
        text, source = files("psyassist.resources").joinpath(DEFAULT_RUBRIC).read_text(encoding="utf-8"), \
            f"psyassist/resources/{DEFAULT_RUBRIC}"
    else:
        if not Path(path).is_file():
            raise PsyassistError(f"rubric file {path} not found")
        text, source = Path(path).read_text(encoding="utf-8"), str(path)

    def bad(expected: str, fld: str, got: object = None) -> DataError:
        return DataError(source, expected, field=fld, got=got, reason="bad_rubric",
                         hint=f"Compare with psyassist/resources/{DEFAULT_RUBRIC}.")

    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DataError(source, "valid YAML", reason="bad_yaml", hint=str(e).replace("\n", " ")) from e
    if not isinstance(d, dict):
        raise bad("a mapping with dimensions, system, user", "(top level)", type(d).__name__)
    scale = d.get("scale", [1, 5])
    if not (isinstance(scale, list) and len(scale) == 2 and all(type(x) is int for x in scale)
            and scale[0] < scale[1]):
        raise bad("[low, high] integers", "scale", scale)
    dims = d.get("dimensions")
    if not isinstance(dims, list) or not dims:
        raise bad("a non-empty list of dimensions", "dimensions", dims)
    seen = set()
    for i, dim in enumerate(dims):
        if not isinstance(dim, dict):
            raise bad("a mapping {key, name, description, anchors}", f"dimensions[{i}]", type(dim).__name__)
        for k in ("key", "name", "description"):
            if not isinstance(dim.get(k), str) or not dim[k].strip():
                raise bad("a non-empty string", f"dimensions[{i}].{k}", dim.get(k))
        if not re.fullmatch(r"[a-z][a-z0-9_]*", dim["key"]) or dim["key"] in seen or dim["key"] == "rationale":
            raise bad("a unique snake_case key other than 'rationale'", f"dimensions[{i}].key", dim["key"])
        seen.add(dim["key"])
        anchors = dim.get("anchors")
        want = set(range(scale[0], scale[1] + 1))
        if not isinstance(anchors, dict) or set(anchors) != want or not all(isinstance(v, str) for v in
                                                                            anchors.values()):
            raise bad(f"one text anchor for each score {scale[0]}..{scale[1]}", f"dimensions[{i}].anchors",
                      sorted(anchors) if isinstance(anchors, dict) else anchors)
    for k, needs in (("system", ("{rubric}", "{schema}")), ("user", ("{context}", "{reply}"))):
        if not isinstance(d.get(k), str) or not all(n in d[k] for n in needs):
            raise bad(f"a template string containing {' and '.join(needs)}", k, d.get(k))
    return Rubric(dims, d["system"], d["user"], (scale[0], scale[1]), source,
                  hashlib.sha256(text.encode("utf-8")).hexdigest())


def format_context(context: list[dict], limit: int = CONTEXT_CHARS) -> str:
    """The conversation as 'Client:/Counselor:' lines, oldest turns dropped past `limit` characters.

    The system prompt is left out: it instructs the counselor model, not the judge.
    """
    names = {"user": "Client", "assistant": "Counselor"}
    lines = [f"{names[m['role']]}: {m['content']}" for m in context if m.get("role") in names]
    while len(lines) > 1 and sum(len(x) for x in lines) > limit:
        lines.pop(0)
    return "\n".join(lines)


def build_messages(rubric: Rubric, row: dict) -> list[dict]:
    # str.replace, not str.format: replies and rubric text are full of braces ({} in JSON, code).
    system = rubric.system.replace("{rubric}", rubric.rubric_text()).replace("{schema}", rubric.schema_text())
    user = rubric.user.replace("{context}", format_context(row["context"])).replace("{reply}", row["reply"])
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_scores(text: str, rubric: Rubric) -> dict:
    """{key: int, ..., 'rationale': str} from the judge's answer, or BadJudgment saying what is wrong."""
    s = _THINK.sub("", text).strip()
    m = _FENCE.match(s)
    if m:
        s = m.group(1).strip()
    try:
        obj = json.loads(s)
    except json.JSONDecodeError as e:
        raise BadJudgment("not_json", f"the answer is not one JSON object ({e.msg} at char {e.pos})") from e
    if not isinstance(obj, dict):
        raise BadJudgment("not_object", f"the answer is a JSON {type(obj).__name__}, not an object")
    missing = [k for k in rubric.keys if k not in obj]
    extra = [k for k in obj if k not in rubric.keys and k != "rationale"]
    if missing or extra:
        raise BadJudgment("wrong_keys", f"missing keys {missing}, unexpected keys {extra}")
    lo, hi = rubric.scale
    for k in rubric.keys:
        v = obj[k]
        if type(v) is not int or not lo <= v <= hi:
            raise BadJudgment("out_of_range", f"'{k}' must be an integer {lo}-{hi}, got {v!r}")
    rationale = obj.get("rationale", "")
    return {**{k: obj[k] for k in rubric.keys}, "rationale": rationale if isinstance(rationale, str) else
            json.dumps(rationale, ensure_ascii=False)}


# --- HTTP ------------------------------------------------------------------------------------


def chat_url(endpoint: str) -> str:
    """http://host:port, http://host:port/v1 or the full .../chat/completions URL → the full URL."""
    e = endpoint.rstrip("/")
    if e.endswith("/chat/completions"):
        return e
    return e + ("/chat/completions" if e.endswith("/v1") else "/v1/chat/completions")


@dataclass
class Client:
    url: str
    model: str
    api_key: str | None = None
    timeout: float = 60.0
    temperature: float = 0.0
    max_tokens: int = 512

    def chat(self, messages: list[dict]) -> tuple[str, dict]:
        """(content, usage) of one completion; Transient for retryable failures, PsyassistError otherwise."""
        body = json.dumps({"model": self.model, "messages": messages, "temperature": self.temperature,
                           "max_tokens": self.max_tokens}).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = e.read()[:300].decode("utf-8", "replace")
            if e.code == 429 or e.code >= 500:
                raise Transient(f"HTTP {e.code}: {detail}") from e
            raise PsyassistError(f"{self.url} answered HTTP {e.code} for model '{self.model}': {detail}"
                                 + (" (check the key: --api-key-env VAR)" if e.code in (401, 403) else "")) from e
        except (TimeoutError, urllib.error.URLError, ConnectionError, http.client.HTTPException) as e:
            raise Transient(f"{type(e).__name__}: {getattr(e, 'reason', e)}") from e
        try:
            data = json.loads(raw)
            content = data["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
            raise BadJudgment("bad_response", f"not an OpenAI chat completion: {raw[:120]!r}") from e
        usage = data.get("usage") or {}
        return content or "", {"prompt_tokens": int(usage.get("prompt_tokens") or 0),
                               "completion_tokens": int(usage.get("completion_tokens") or 0)}


def judge_one(client: Client, rubric: Rubric, messages: list[dict], retries: int, backoff: float) -> dict:
    """Ask until the answer is valid or `retries` extra attempts are spent; never raises for a bad answer."""
    convo = list(messages)
    usage = {"prompt_tokens": 0, "completion_tokens": 0}
    errors: list[str] = []
    t0 = time.perf_counter()
    for attempt in range(1, retries + 2):
        try:
            text, u = client.chat(convo)
            usage = {k: usage[k] + u[k] for k in usage}
            scores = parse_scores(text, rubric)
            return {"scores": scores, "raw": text, "attempts": attempt, "errors": errors, "usage": usage,
                    "seconds": round(time.perf_counter() - t0, 3)}
        except BadJudgment as e:
            errors.append(f"{e.reason}: {e}")
            if e.reason != "bad_response":
                # Show the model its own answer and what is wrong: a correction, not the same dice roll again.
                convo = [*messages, {"role": "assistant", "content": text},
                         {"role": "user", "content": f"That answer was invalid: {e}. Reply with only the JSON "
                                                     f"object: {rubric.schema_text()}"}]
        except Transient as e:
            errors.append(f"transient: {e}")
            if attempt <= retries:
                time.sleep(backoff * 2 ** (attempt - 1))
    return {"scores": None, "raw": None, "attempts": retries + 1, "errors": errors, "usage": usage,
            "seconds": round(time.perf_counter() - t0, 3)}


# --- cache -----------------------------------------------------------------------------------


def default_cache() -> Path:
    root = os.environ.get("PSYASSIST_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "psyassist") / "judge.sqlite"


class Cache:
    """key → judgment JSON in one SQLite table; used from one thread only."""

    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path))
        self.db.execute("CREATE TABLE IF NOT EXISTS judgments (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
                        "created REAL NOT NULL)")

    def get(self, key: str) -> dict | None:
        row = self.db.execute("SELECT value FROM judgments WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict) -> None:
        self.db.execute("INSERT OR REPLACE INTO judgments VALUES (?, ?, ?)",
                        (key, json.dumps(value, ensure_ascii=False), time.time()))
        self.db.commit()

    def close(self) -> None:
        self.db.close()


def cache_key(url: str, model: str, rubric: Rubric, messages: list[dict], client: Client) -> str:
    prompt = hashlib.sha256(json.dumps([messages, client.temperature, client.max_tokens], ensure_ascii=False,
                                       sort_keys=True).encode("utf-8")).hexdigest()
    return hashlib.sha256(json.dumps([url, model, rubric.sha256, prompt]).encode("utf-8")).hexdigest()


# --- run ---------------------------------------------------------------------------------------


def aggregate(judgments: list[dict], rubric: Rubric) -> dict:
    """Per dimension: mean ± 95% t interval, SD, n and the score histogram, over scored replies only."""
    scored = [j["scores"] for j in judgments if j["scores"] is not None]
    lo, hi = rubric.scale
    dims = {}
    for k in rubric.keys:
        vals = [s[k] for s in scored]
        dims[k] = {**mean_ci(vals), "histogram": {str(v): vals.count(v) for v in range(lo, hi + 1)}}
    return {"n_items": len(judgments), "n_scored": len(scored), "n_failed": len(judgments) - len(scored),
            "dimensions": dims}


@dataclass
class JudgeConfig:
    endpoint: str
    model: str
    data: str
    api_key_env: str | None = None
    rubric: str | None = None
    limit: int | None = None
    concurrency: int = 4
    timeout: float = 60.0
    retries: int = 3
    backoff: float = 1.0  # seconds before the first retry of a transient failure, doubling after
    max_tokens: int = 512
    price_in: float | None = None  # per 1,000 prompt tokens
    price_out: float | None = None  # per 1,000 completion tokens
    cache: str | None = field(default_factory=lambda: str(default_cache()))  # None: no cache

    def __post_init__(self):
        if self.concurrency < 1 or self.retries < 0 or self.timeout <= 0 or (self.limit is not None and self.limit < 1):
            raise PsyassistError("--concurrency and --limit must be >= 1, --retries >= 0, --timeout > 0")

    def api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise PsyassistError(f"--api-key-env {self.api_key_env}: that environment variable is not set or empty")
        return key


def run_judge(cfg: JudgeConfig, out: str | Path) -> dict:
    """Judge every reply of cfg.data; write OUT/judgments.jsonl and OUT/judge_results.json."""
    from psyassist.eval.gen import read_replies

    rubric = load_rubric(cfg.rubric)
    rows = read_replies(cfg.data)[:cfg.limit]
    client = Client(chat_url(cfg.endpoint), cfg.model, cfg.api_key(), cfg.timeout, max_tokens=cfg.max_tokens)
    cache = Cache(cfg.cache) if cfg.cache else None
    t0 = time.perf_counter()
    results: dict[int, dict] = {}
    pending: dict[int, tuple[list[dict], str]] = {}
    for i, row in enumerate(rows):
        messages = build_messages(rubric, row)
        key = cache_key(client.url, cfg.model, rubric, messages, client)
        hit = cache.get(key) if cache else None
        if hit is not None:
            results[i] = {**hit, "cached": True}
        else:
            pending[i] = (messages, key)
    abort = threading.Event()  # set by the first fatal error (bad key, unknown model): no new requests

    def task(messages: list[dict]) -> dict | None:
        if abort.is_set():
            return None
        try:
            return judge_one(client, rubric, messages, cfg.retries, cfg.backoff)
        except PsyassistError:
            abort.set()
            raise

    pool = ThreadPoolExecutor(max_workers=cfg.concurrency)
    try:
        futures = {pool.submit(task, m): i for i, (m, _) in pending.items()}
        for fut in track(as_completed(futures), "judging", total=len(futures)):
            got = fut.result()  # a fatal 4xx re-raises here and ends the run
            if got is None:
                continue
            i = futures[fut]
            j = {**got, "cached": False}
            results[i] = j
            if cache and j["scores"] is not None:
                cache.put(pending[i][1], {k: v for k, v in j.items() if k != "cached"})  # kept if we stop later
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # queued requests are dropped, running ones finish
        if cache:
            cache.close()
    judgments = [{"id": rows[i]["id"], **results[i]} for i in range(len(rows))]
    fresh = [j for j in judgments if not j["cached"]]
    tokens = {k: sum(j["usage"][k] for j in fresh) for k in ("prompt_tokens", "completion_tokens")}
    cost = None
    if cfg.price_in is not None or cfg.price_out is not None:
        cost = round(tokens["prompt_tokens"] / 1000 * (cfg.price_in or 0)
                     + tokens["completion_tokens"] / 1000 * (cfg.price_out or 0), 6)
    accounting = {"requests_sent": sum(j["attempts"] for j in fresh), "judged_now": len(fresh),
                  "from_cache": len(judgments) - len(fresh), "retried": sum(1 for j in fresh if j["attempts"] > 1),
                  **tokens, "cost": cost, "price_per_1k": {"in": cfg.price_in, "out": cfg.price_out},
                  "request_seconds": round(sum(j["seconds"] for j in fresh), 2),
                  "wall_seconds": round(time.perf_counter() - t0, 2)}
    failures = [{"id": j["id"], "errors": j["errors"]} for j in judgments if j["scores"] is None]
    summary = {"command": command(cfg), "config": {**asdict(cfg), "api_key_env": cfg.api_key_env},
               "rubric": {"source": rubric.source, "sha256": rubric.sha256, "dimensions": rubric.keys,
                          "scale": list(rubric.scale)},
               "judge": {"url": client.url, "model": cfg.model, "temperature": client.temperature},
               "summary": aggregate(judgments, rubric), "accounting": accounting, "failures": failures}
    out = Path(out)
    write_jsonl_atomic(out / "judgments.jsonl", judgments)
    write_json_atomic(out / "judge_results.json", summary)
    return summary


def command(cfg: JudgeConfig) -> str:
    import shlex

    a = ["psyassist", "eval", "judge", "--endpoint", cfg.endpoint, "--model", cfg.model, "--data", cfg.data]
    a += ["--api-key-env", cfg.api_key_env] if cfg.api_key_env else []
    a += ["--rubric", cfg.rubric] if cfg.rubric else []
    a += ["--limit", str(cfg.limit)] if cfg.limit else []
    return shlex.join(a)


def print_summary(res: dict, out: str | Path, as_json: bool = False) -> None:
    from rich.table import Table

    if as_json:
        print(json.dumps({k: res[k] for k in ("command", "summary", "accounting")}, ensure_ascii=False))
        return
    s, acc = res["summary"], res["accounting"]
    t = Table(title=f"judge {res['judge']['model']} · {s['n_scored']}/{s['n_items']} replies scored")
    for col in ("dimension", "mean", "95% CI", "sd", "n"):
        t.add_column(col, justify="left" if col == "dimension" else "right")
    for k, d in s["dimensions"].items():
        ci = d["ci95"]
        t.add_row(k, f"{d['mean']:.2f}" if d["mean"] is not None else "—",
                  f"{ci[0]:.2f}–{ci[1]:.2f}" if ci else "—", f"{d['sd']:.2f}" if d["sd"] is not None else "—",
                  str(d["n"]))
    console.print(t)
    cost = f", cost {acc['cost']:.4f}" if acc["cost"] is not None else ""
    console.print(f"{acc['requests_sent']} requests ({acc['retried']} replies retried), {acc['from_cache']} from "
                  f"cache; tokens {acc['prompt_tokens']} in / {acc['completion_tokens']} out{cost}; "
                  f"{acc['wall_seconds']} s")
    if s["n_failed"]:
        warn(f"{s['n_failed']} replies could not be scored (see failures in {Path(out) / 'judge_results.json'})")
    console.print(f"results: {Path(out) / 'judge_results.json'}; per-reply judgments beside it")
