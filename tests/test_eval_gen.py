"""`eval gen`: contexts cut once per assistant turn, replies generated in batches and resumable, scores written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from psyassist.data.schema import Conversation
from psyassist.errors import DataError, PsyassistError
from psyassist.eval.gen import GenConfig, cut_contexts, read_replies, run_gen, score
from tiny_tokenizer import tiny_tokenizer

DIALOGUE = [
    {"role": "system", "content": "你是一位心理咨询师。"},
    {"role": "user", "content": "我最近总是睡不着。"},
    {"role": "assistant", "content": "听起来你最近很辛苦，是什么让你睡不着呢？"},
    {"role": "user", "content": "工作压力很大。"},
    {"role": "assistant", "content": "工作压力让你晚上也放不下，我们一起看看压力来自哪里。"},
]


def conv(cid: str, messages: list[dict]) -> Conversation:
    return Conversation.from_dict({"id": cid, "messages": messages}, file="-")


def test_full_dialogue_is_cut_at_every_assistant_turn():
    items, counts = cut_contexts([conv("d1", DIALOGUE)])
    assert [it["id"] for it in items] == ["d1#1", "d1#2"]
    assert items[0]["context"] == DIALOGUE[:2] and items[0]["reference"] == DIALOGUE[2]["content"]
    assert items[1]["context"] == DIALOGUE[:4] and items[1]["reference"] == DIALOGUE[4]["content"]
    assert counts == {"records": 1, "duplicates": 0, "no_user_before": 0, "empty_reference": 0, "items": 2}


def test_pre_cut_records_give_each_pair_once():
    # The PsyDT test split layout: one record per assistant turn, each a prefix of the dialogue.
    pre_cut = [conv("t1", DIALOGUE[:3]), conv("t2", DIALOGUE)]
    items, counts = cut_contexts(pre_cut)
    assert [(len(it["context"]), it["reference"]) for it in items] == [(2, DIALOGUE[2]["content"]),
                                                                       (4, DIALOGUE[4]["content"])]
    assert counts["duplicates"] == 1 and counts["records"] == 2
    last, _ = cut_contexts(pre_cut, "last")
    assert [it["id"] for it in last] == ["t1", "t2"] and len(last[1]["context"]) == 4


def test_turns_without_a_client_message_or_text_are_counted_not_scored():
    msgs = [{"role": "assistant", "content": "你好，我是咨询师。"}, {"role": "user", "content": "你好"},
            {"role": "assistant", "content": "  "}]
    items, counts = cut_contexts([conv("x", msgs)])
    assert items == [] and counts["no_user_before"] == 1 and counts["empty_reference"] == 1


def test_read_replies_names_line_and_field(tmp_path):
    good = {"id": "a", "context": DIALOGUE[:2], "reference": "r", "reply": "x"}
    f = tmp_path / "r.jsonl"
    f.write_text(json.dumps(good) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        read_replies(f)
    assert e.value.line == 2 and e.value.reason == "bad_json"
    f.write_text(json.dumps(good) + "\n" + json.dumps({**good, "reply": None}) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        read_replies(f)
    assert (e.value.line, e.value.field) == (2, "reply")


def test_score_reports_char_and_jieba_rouge_for_chinese():
    rows = [{"id": "1", "reply": "听起来你最近很辛苦", "reference": "听起来你最近很辛苦", "finish": "stop"},
            {"id": "2", "reply": "谢谢分享", "reference": "工作压力让你放不下", "finish": "length"}]
    s, per = score(rows, "zh", embed_model=None)
    assert set(s["rouge"]) == {"char", "word"} and s["rouge"]["word"]["tokenization"] == "zh-word"
    assert per[0]["rouge1_char"] == 1.0 and per[1]["rouge1_char"] == 0.0
    assert s["rouge"]["char"]["rouge1"]["mean"] == pytest.approx(50.0)
    assert s["bleu4"]["tokenize"] == "zh" and s["finish"]["length"] == 1
    assert "skipped" in s["embedding_cosine"] and "skipped" in s["bertscore"]
    assert s["length"]["unit"] == "chars" and per[0]["reply_len"] == 9
    en, _ = score([{"id": "1", "reply": "I hear you.", "reference": "I hear you."}], "en", embed_model=None)
    assert set(en["rouge"]) == {"word"} and en["bleu4"]["tokenize"] == "13a"


# --- end to end with a tiny random Qwen3 (fast: 64-dim, 2 layers) ------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from psyassist.models import save_tiny_qwen3

    tok_dir = tmp_path_factory.mktemp("tok")
    tiny_tokenizer().save_pretrained(tok_dir)
    return save_tiny_qwen3(tmp_path_factory.mktemp("tiny") / "model", tok_dir, seed=0)


@pytest.fixture
def corpus(tmp_path) -> Path:
    f = tmp_path / "dialogues.jsonl"
    rows = [{"id": "d1", "messages": DIALOGUE},
            {"id": "d2", "messages": [{"role": "user", "content": "I feel anxious about work."},
                                      {"role": "assistant", "content": "That sounds exhausting."}]},
            {"id": "d3", "messages": DIALOGUE[:3]}]
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return f


def test_generates_scores_and_resumes(tiny_model, corpus, tmp_path):
    out = tmp_path / "gen"
    cfg = GenConfig(data=[str(corpus)], model=str(tiny_model), batch_size=2, max_new_tokens=6, embed_model="none",
                    lang="zh")
    res = run_gen(cfg, out)
    rows = [json.loads(x) for x in (out / "replies.jsonl").read_text(encoding="utf-8").splitlines()]
    # d1 → 2 turns, d2 → 1, d3 repeats d1's first turn (counted as a duplicate)
    assert sorted(r["id"] for r in rows) == ["d1#1", "d1#2", "d2#1"]
    assert res["data"]["duplicates"] == 1 and res["summary"]["n"] == 3
    assert all(r["finish"] in ("stop", "length") and r["new_tokens"] <= 6 for r in rows)
    assert res["generation"]["generated"] == 3 and res["generation"]["sampling"]["temperature"] == 0.7
    assert len((out / "scores.jsonl").read_text().splitlines()) == 3
    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert saved["command"].startswith("psyassist eval gen --data") and saved["anchor"]["rouge1"] == 36.03

    # Killed after the first batch: generations.json holds 2 of 3 replies; the rerun makes only the third.
    gen_file = out / "generations.json"
    g = json.loads(gen_file.read_text(encoding="utf-8"))
    g["records"] = g["records"][:2]
    gen_file.write_text(json.dumps(g, ensure_ascii=False), encoding="utf-8")
    again = run_gen(cfg, out)
    assert again["generation"]["generated"] == 1 and again["generation"]["resumed"] == 2
    assert again["summary"]["n"] == 3

    with pytest.raises(PsyassistError, match="other settings"):
        run_gen(GenConfig(**{**cfg.__dict__, "seed": 1}), out)


def test_mapped_layout_is_read_and_in_the_command(tmp_path):
    from psyassist.data.readers import parse_map

    cfg = GenConfig(data=["esconv.jsonl"], mapping=parse_map(["messages=dialog", "role=speaker", "content=text",
                                                              "user=usr", "assistant=sys"]))
    assert "--map=messages=dialog --map=role=speaker --map=content=text --map=user=usr --map=assistant=sys" \
        in cfg.command()
    with pytest.raises(PsyassistError, match="record 0.*under 'dialog'"):  # read with the mapping, before any model
        f = tmp_path / "esconv.jsonl"
        f.write_text(json.dumps({"turns": []}) + "\n", encoding="utf-8")
        run_gen(GenConfig(**{**cfg.__dict__, "data": [str(f)]}), tmp_path / "out")


def test_cli_scores_a_replies_file(cli, tmp_path):
    f = tmp_path / "replies.jsonl"
    rows = [{"id": str(i), "context": [{"role": "user", "content": "I can't sleep."}],
             "reference": "What keeps you awake at night?", "reply": r}
            for i, r in enumerate(["What keeps you awake at night?", "Try counting sheep."])]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    code, out, err = cli(["eval", "gen", "--replies", f, "--embed-model", "none", "--out", tmp_path / "o", "--json"])
    assert code == 0, err
    s = json.loads(out.strip().splitlines()[-1])["summary"]
    assert s["lang"] == "en" and s["n"] == 2 and 0 < s["rouge"]["word"]["rouge1"]["mean"] < 100
    f.write_text(json.dumps({**rows[0], "context": "I can't sleep."}) + "\n", encoding="utf-8")
    code, out, err = cli(["eval", "gen", "--replies", f, "--embed-model", "none", "--out", tmp_path / "o"])
    assert code == 2 and "replies.jsonl:1" in err and "context" in err and "Traceback" not in err


@pytest.mark.slow
def test_real_counsel_chat_and_psydt_contexts(test_data, tmp_path):
    from psyassist.data.readers import read_conversations

    psydt = read_conversations([test_data / "PsyDTCorpus" / "psydtcorpus_readme_example_1record.json"])
    items, counts = cut_contexts(psydt.conversations)
    assert counts["items"] == psydt.conversations[0].n_assistant() == len(items) > 1
    assert all(it["context"][-1]["role"] == "user" and it["context"][0]["role"] == "system" for it in items)
    # A perfect reply scores 100 on every overlap metric; a reply from another turn scores less.
    rows = [{"id": it["id"], "reply": it["reference"], "reference": it["reference"]} for it in items]
    s, _ = score(rows, "zh", embed_model=None)
    assert s["bleu4"]["score"] == pytest.approx(100) and s["rouge"]["word"]["rougeL"]["mean"] == pytest.approx(100)
    shifted = [{**r, "reply": rows[(i + 1) % len(rows)]["reference"]} for i, r in enumerate(rows)]
    s2, _ = score(shifted, "zh", embed_model=None)
    assert 0 < s2["rouge"]["char"]["rouge1"]["mean"] < 100 and s2["bleu4"]["score"] < 50

    cc = read_conversations([test_data / "CounselChat" / "20200325_counsel_chat.csv"])
    cc_items, cc_counts = cut_contexts(cc.conversations[:50])
    # One question → one context; a question posted twice with the same top answer is one pair.
    assert len(cc_items) + cc_counts["duplicates"] + cc_counts["empty_reference"] == 50 < len(cc_items) + 5
    assert all(len(it["context"]) == 1 and it["context"][0]["role"] == "user" for it in cc_items)
