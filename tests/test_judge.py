"""`eval judge` against a real HTTP server on 127.0.0.1: strict JSON, retries, timeouts, cache, accounting."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from judge_server import KEYS, JudgeServer
from psyassist.errors import DataError, PsyassistError
from psyassist.eval.judge import (
    BadJudgment,
    JudgeConfig,
    build_messages,
    chat_url,
    load_rubric,
    parse_scores,
    run_judge,
)
from psyassist.eval.metrics import t975

GOOD = {**{k: 4 for k in KEYS}, "rationale": "warm and specific"}


@pytest.fixture(scope="module")
def rubric():
    return load_rubric()


@pytest.fixture
def server():
    s = JudgeServer().start()
    yield s
    s.stop()


@pytest.fixture
def replies(tmp_path) -> Path:
    f = tmp_path / "replies.jsonl"
    ctx = [{"role": "system", "content": "You are a counselor."}, {"role": "user", "content": "I can't sleep {at all}."}]
    rows = [{"id": f"r{i}", "context": ctx, "reference": "What keeps you awake?", "reply": f"I hear you. SCORE={n}"}
            for i, n in enumerate((5, 3, 4))]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return f


def cfg(server, replies, tmp_path, **kw) -> JudgeConfig:
    return JudgeConfig(**{"endpoint": server.endpoint, "model": "judge", "data": str(replies), "concurrency": 1,
                          "backoff": 0.0, "timeout": 5.0, "cache": str(tmp_path / "cache.sqlite"), **kw})


# --- rubric and parsing ------------------------------------------------------------------------


def test_shipped_rubric_has_psydt_dimensions_plus_safety(rubric):
    assert rubric.keys == list(KEYS) and rubric.scale == (1, 5)
    assert all(sorted(d["anchors"]) == [1, 2, 3, 4, 5] for d in rubric.dimensions)
    msgs = build_messages(rubric, {"context": [{"role": "system", "content": "SECRET SYSTEM"},
                                               {"role": "user", "content": "我睡不着 {x}"}], "reply": "嗯 {}"})
    assert "SECRET SYSTEM" not in msgs[1]["content"]  # the counselor's system prompt is not the judge's business
    assert "Client: 我睡不着 {x}" in msgs[1]["content"] and msgs[1]["content"].rstrip().endswith("嗯 {}")
    assert all(f'"{k}": <integer 1-5>' in msgs[0]["content"] for k in KEYS)


def test_a_broken_rubric_names_the_field(tmp_path, rubric):
    from importlib.resources import files

    import yaml

    d = yaml.safe_load(files("psyassist.resources").joinpath("judge_rubric.yaml").read_text(encoding="utf-8"))
    del d["dimensions"][2]["anchors"][3]
    f = tmp_path / "r.yaml"
    f.write_text(yaml.safe_dump(d), encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_rubric(f)
    assert e.value.field == "dimensions[2].anchors" and "1..5" in str(e.value)


@pytest.mark.parametrize("text", [json.dumps(GOOD), f"```json\n{json.dumps(GOOD)}\n```",
                                  f"<think>Let me weigh it {{}}.</think>\n{json.dumps(GOOD)}"])
def test_parse_accepts_json_fenced_or_after_thinking(text, rubric):
    assert parse_scores(text, rubric) == GOOD


@pytest.mark.parametrize("obj, reason", [
    ("I'd give it a 4.", "not_json"),
    ([4, 4, 4, 4, 4], "not_object"),
    ({k: 4 for k in KEYS[:-1]}, "wrong_keys"),
    ({**GOOD, "overall": 4}, "wrong_keys"),
    ({**GOOD, "safety": 6}, "out_of_range"),
    ({**GOOD, "safety": 0}, "out_of_range"),
    ({**GOOD, "safety": 4.5}, "out_of_range"),
    ({**GOOD, "safety": "4"}, "out_of_range"),
    ({**GOOD, "safety": True}, "out_of_range"),
])
def test_parse_rejects_anything_but_the_exact_object(obj, reason, rubric):
    with pytest.raises(BadJudgment) as e:
        parse_scores(obj if isinstance(obj, str) else json.dumps(obj), rubric)
    assert e.value.reason == reason


def test_chat_url():
    assert chat_url("http://h:1") == chat_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert chat_url("https://x/api/v1/chat/completions") == "https://x/api/v1/chat/completions"


# --- against the server -----------------------------------------------------------------------


def test_good_answers_aggregate_with_interval_and_accounting(server, replies, tmp_path):
    res = run_judge(cfg(server, replies, tmp_path, price_in=1.0, price_out=2.0), tmp_path / "out")
    s, acc = res["summary"], res["accounting"]
    assert s["n_scored"] == 3 and s["n_failed"] == 0 and len(server.requests) == 3
    d = s["dimensions"]["emotional_empathy"]
    half = t975(2) * 1.0 / 3**0.5  # scores 5, 3, 4: mean 4, sd 1
    assert d["mean"] == 4 and d["sd"] == pytest.approx(1) and d["ci95"] == pytest.approx([4 - half, 4 + half])
    assert d["histogram"] == {"1": 0, "2": 0, "3": 1, "4": 1, "5": 1}
    assert acc["prompt_tokens"] == 300 and acc["completion_tokens"] == 60 and acc["requests_sent"] == 3
    assert acc["cost"] == pytest.approx(300 / 1000 * 1.0 + 60 / 1000 * 2.0)
    path, _, body = server.requests[0]
    assert path == "/v1/chat/completions" and body["model"] == "judge" and body["temperature"] == 0
    lines = (tmp_path / "out" / "judgments.jsonl").read_text().splitlines()
    assert [json.loads(x)["scores"]["safety"] for x in lines] == [5, 3, 4]  # input order kept


@pytest.mark.parametrize("first", ["bad", "range"])
def test_malformed_answer_is_retried_with_the_reason(first, server, replies, tmp_path):
    server.script = [first]
    res = run_judge(cfg(server, replies, tmp_path, limit=1), tmp_path / "out")
    assert res["summary"]["n_scored"] == 1 and res["accounting"]["retried"] == 1
    assert res["accounting"]["requests_sent"] == 2 and res["accounting"]["prompt_tokens"] == 200  # both counted
    retry = server.requests[1][2]["messages"]
    assert len(retry) == 4 and retry[2]["role"] == "assistant" and "invalid" in retry[3]["content"]
    j = json.loads((tmp_path / "out" / "judgments.jsonl").read_text().splitlines()[0])
    assert j["attempts"] == 2 and j["errors"][0].startswith("not_json" if first == "bad" else "out_of_range")


def test_timeout_is_retried_and_a_persistent_one_fails_without_a_score(replies, tmp_path):
    server = JudgeServer(script=["slow"], slow_seconds=1.5).start()
    try:
        res = run_judge(cfg(server, replies, tmp_path, limit=1, timeout=0.3), tmp_path / "a")
        assert res["summary"]["n_scored"] == 1 and res["accounting"]["retried"] == 1
        j = json.loads((tmp_path / "a" / "judgments.jsonl").read_text())
        assert j["errors"][0].startswith("transient") and "timed out" in j["errors"][0].lower()

        server.script, server.default = [], "slow"
        res = run_judge(cfg(server, replies, tmp_path, timeout=0.3, retries=1), tmp_path / "b")
        # r0 comes from the cache; r1 and r2 time out twice each and stay unscored, never guessed.
        assert res["summary"]["n_scored"] == 1 and res["summary"]["n_failed"] == 2
        assert [f["id"] for f in res["failures"]] == ["r1", "r2"] and len(res["failures"][0]["errors"]) == 2
        assert res["summary"]["dimensions"]["safety"]["n"] == 1
    finally:
        server.stop()


def test_second_run_is_served_from_the_cache(server, replies, tmp_path):
    first = run_judge(cfg(server, replies, tmp_path), tmp_path / "a")
    n = len(server.requests)
    second = run_judge(cfg(server, replies, tmp_path), tmp_path / "b")
    assert len(server.requests) == n == 3  # no request at all
    assert second["accounting"]["from_cache"] == 3 and second["accounting"]["prompt_tokens"] == 0
    assert second["summary"]["dimensions"] == first["summary"]["dimensions"]
    # Another judge model, or another rubric, is another key.
    run_judge(cfg(server, replies, tmp_path, model="other"), tmp_path / "c")
    assert len(server.requests) == 6
    db = sqlite3.connect(tmp_path / "cache.sqlite")
    assert db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0] == 6
    db.close()


def test_api_key_is_sent_but_never_stored(server, replies, tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-test-123")
    run_judge(cfg(server, replies, tmp_path, api_key_env="JUDGE_KEY", limit=1), tmp_path / "out")
    assert server.requests[0][1]["Authorization"] == "Bearer sk-test-123"
    for f in (tmp_path / "out" / "judge_results.json", tmp_path / "out" / "judgments.jsonl", tmp_path / "cache.sqlite"):
        assert b"sk-test-123" not in f.read_bytes()
    monkeypatch.delenv("JUDGE_KEY")
    with pytest.raises(PsyassistError, match="JUDGE_KEY"):
        run_judge(cfg(server, replies, tmp_path, api_key_env="JUDGE_KEY"), tmp_path / "out")


def test_cli_end_to_end_and_a_401_stops_at_once(cli, replies, tmp_path):
    server = JudgeServer().start()
    try:
        base = ["eval", "judge", "--endpoint", server.endpoint + "/v1", "--model", "judge", "--data", replies,
                "--cache", tmp_path / "c.sqlite", "--out", tmp_path / "o"]
        code, out, err = cli([*base, "--concurrency", "2", "--json"])
        assert code == 0, err
        summary = json.loads(out.strip().splitlines()[-1])["summary"]
        assert summary["n_scored"] == 3 and summary["dimensions"]["safety"]["mean"] == 4
        server.default = "error401"
        code, out, err = cli([*base, "--no-cache", "--concurrency", "1"])
        assert code == 2 and "HTTP 401" in err and "--api-key-env" in err and "Traceback" not in err
        assert len(server.requests) == 3 + 1  # neither retried nor tried on the next reply
    finally:
        server.stop()
