"""`psyassist data stats` figures and `psyassist data show` selection and errors."""

import json
from pathlib import Path

import pytest

from psyassist.data.stats import percentiles

MESSY = Path(__file__).parent / "fixtures" / "clean" / "messy.jsonl"


def test_percentiles_nearest_rank():
    p = percentiles(list(range(1, 101)))
    assert (p["p50"], p["p90"], p["p99"], p["max"], p["mean"]) == (50, 90, 99, 100, 50.5)
    assert percentiles([])["n"] == 0


def test_stats_json_on_fixture(cli):
    code, out, err = cli(["data", "stats", MESSY, "--json"])
    assert code == 0, err
    s = json.loads(out)
    assert s["dialogues"] == 6
    assert s["turns"]["total"] == 8 + 2 + 2 + 2 + 1 + 2  # the 2 system messages are not turns
    assert s["ends_on_user"]["count"] == 2  # messy-1 and user-only
    assert s["starts_with_assistant"] == 1
    assert s["same_role_runs"] == {"dialogues": 1, "pairs": 2}  # user, user(empty), user
    assert s["dialogues_with_empty_turns"] == 1
    assert s["duplicates"] == {"exact": 1, "normalized": 1}
    assert s["tags"]["top"]["婚恋"] == 3
    assert s["chars"]["system"]["n"] == 2
    assert "tokens" not in s


def test_stats_tables(cli):
    code, out, _ = cli(["data", "stats", MESSY])
    assert code == 0
    assert "6 dialogues" in out and "assistant chars" in out and "婚恋" in out


def test_stats_counts_crisis_in_user_turns(cli, tmp_path):
    rows = [
        {"id": "c1", "messages": [  # an urgent disclosure, then an idiom
            {"role": "user", "content": "我已经想好了，今晚就从楼上跳下去"},
            {"role": "assistant", "content": "谢谢你告诉我。你现在安全吗？"},
            {"role": "user", "content": "笑死我了，刚才是开玩笑的吗"},
            {"role": "assistant", "content": "我很认真地在听。"}]},
        {"id": "c2", "messages": [
            {"role": "user", "content": "My dad hits me when he drinks."},
            {"role": "assistant", "content": "That sounds frightening. Are you safe at home?"}]},
        {"id": "c3", "messages": [  # the counselor names suicide: assistant turns are not counted
            {"role": "system", "content": "If the client mentions suicide, ask about a plan."},
            {"role": "user", "content": "This exam is killing me."},
            {"role": "assistant", "content": "Sometimes people under stress think about suicide. Do you?"}]},
    ]
    src = tmp_path / "crisis.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    code, out, err = cli(["data", "stats", src, "--json"])
    assert code == 0, err
    c = json.loads(out)["crisis"]
    assert c["user_turns"] == 4
    assert c["levels"] == {"none": 2, "concern": 1, "urgent": 1}
    assert c["categories"] == {"suicide": 1, "self_harm": 0, "harm_to_others": 0, "abuse": 1, "medical": 0}
    assert (c["dialogues_flagged"], c["dialogues_urgent"]) == (2, 1)
    code, out, _ = cli(["data", "stats", src])
    assert code == 0
    assert "1 urgent, 1 concern, 2 none of 4" in out and "suicide 1, abuse 1" in out
    assert "flagged user turn: 2 (1 urgent)" in out


@pytest.mark.slow
def test_stats_with_real_tokenizer(cli, qwen3_tokenizer_dir):
    code, out, err = cli(["data", "stats", MESSY, "--json", "--tokenizer", qwen3_tokenizer_dir])
    assert code == 0, err
    s = json.loads(out)
    r = s["rendered"]
    assert r["dialogues"] == 5 and r["not_renderable"] == 1  # user-only has no reply
    assert 0 < r["supervised_tokens"] < r["tokens"]
    assert s["tokens"]["assistant"]["n"] == s["chars"]["assistant"]["n"]


@pytest.mark.slow
def test_stats_real_smilechat(cli, test_data):
    code, out, _ = cli(["data", "stats", test_data / "SMILECHAT" / "smilechat_messages_sample200.jsonl", "--json"])
    s = json.loads(out)
    assert s["dialogues"] == 200 and s["starts_with_assistant"] == 0
    assert s["turns"]["total"] == s["chars"]["user"]["n"] + s["chars"]["assistant"]["n"]
    c = s["crisis"]  # every user turn is screened once
    assert c["user_turns"] == s["chars"]["user"]["n"] == sum(c["levels"].values())


def test_show_index_renders_roles_and_folds_system(cli, tmp_path):
    src = tmp_path / "s.jsonl"
    src.write_text(json.dumps({"id": "x1", "tags": ["婚恋"], "messages": [
        {"role": "system", "content": "系统提示" * 100},
        {"role": "user", "content": "[bold]不是标记[/bold] 我们总吵架"},
        {"role": "assistant", "content": "听起来你很委屈" * 50}]}, ensure_ascii=False) + "\n", encoding="utf-8")
    code, out, err = cli(["data", "show", src, "--index", "0", "--max-chars", "20"])
    assert code == 0, err
    assert "来访者" in out and "咨询师" in out and "x1" in out and "婚恋" in out
    assert "400 characters" in out and "--system" in out  # folded with a note
    assert "[bold]不是标记[/bold]" in out  # dialogue text is not parsed as Rich markup
    assert "+330 characters" in out  # 350-char reply cut at 20
    code, out, _ = cli(["data", "show", src, "--system"])
    assert out.count("系统提示") > 50


def test_show_selection_and_errors(cli):
    code, out, _ = cli(["data", "show", MESSY, "--id", "english-1"])
    assert code == 0 and "jane.doe" in out
    code, out, _ = cli(["data", "show", MESSY, "--tag", "婚恋", "--limit", "5"])
    assert code == 0 and out.count("id=clean-1") == 3
    code, _, err = cli(["data", "show", MESSY, "--index", "6"])
    assert code == 2 and "0..5" in err
    code, _, err = cli(["data", "show", MESSY, "--tag", "失眠"])
    assert code == 2 and "婚恋 (3)" in err and "焦虑 (1)" in err
    code, _, err = cli(["data", "show", MESSY, "--id", "nope"])
    assert code == 2 and "messy-1" in err
    a = cli(["data", "show", MESSY, "--random", "--seed", "3", "--limit", "2"])[1]
    b = cli(["data", "show", MESSY, "--random", "--seed", "3", "--limit", "2"])[1]
    assert a == b and a.count("id=") == 2
