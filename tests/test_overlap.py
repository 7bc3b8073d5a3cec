"""Contamination check: copies are flagged, paraphrases are not."""

import json

import numpy as np
import pytest

from psyassist.data.overlap import check_overlap, ngram_hashes
from psyassist.data.schema import Conversation, Message

SYSTEM = "你是一位专业、温和、有耐心的心理咨询师，请用共情的方式回应来访者。"

TRAIN = [
    ("我最近总是失眠，躺在床上脑子停不下来，一直在想工作上的事情。",
     "听起来工作的压力一直跟着你到了夜里。能说说最近工作上发生了什么吗？"),
    ("我和妈妈每次打电话都会吵起来，她总觉得我的选择都是错的。",
     "被最亲近的人否定一定很难受。你们通常是因为哪些选择起争执的？"),
    ("考研复习了一年，模拟考成绩还是不理想，我开始怀疑自己是不是不适合读书。",
     "付出这么多却没看到想要的结果，失落和自我怀疑都很自然。这次成绩里哪部分最让你担心？"),
    ("室友经常半夜打游戏，我提醒过两次，他还是照旧，我不知道该怎么办。",
     "你已经尝试沟通过了，对方却没有改变，这让人很无奈。你希望事情变成什么样子？"),
]
PARAPHRASES = [  # same situations, different wording
    ("这阵子晚上老是睡不着，一闭眼就开始琢磨白天单位里的烦心事。",
     "好像白天的担子到了晚上也放不下来。最近单位里有什么特别让你挂心的吗？"),
    ("每回跟我妈通话最后都不欢而散，在她眼里我做什么决定都不对。",
     "自己的决定总被家人否认，这种滋味不好受。一般是哪类决定让你们意见不合？"),
]


def conv(id_, user, reply, system=None):
    msgs = ([Message("system", system)] if system else []) + [Message("user", user), Message("assistant", reply)]
    return Conversation(id_, msgs)


def train_set():
    return [conv(f"t{i}", u, a, SYSTEM) for i, (u, a) in enumerate(TRAIN)]


def test_copies_flagged_paraphrases_not():
    evals = [conv("copy0", *TRAIN[0]),
             conv("copy2-reformatted", TRAIN[2][0].replace("，", " "), TRAIN[2][1] + "！"),
             conv("para0", *PARAPHRASES[0]), conv("para1", *PARAPHRASES[1])]
    r = check_overlap(train_set(), evals, n=13, threshold=0.5)
    flagged = {f["id"]: f for f in r["flagged"]}
    assert set(flagged) == {"copy0", "copy2-reformatted"}
    assert flagged["copy0"]["share"] == 1.0
    assert len(flagged["copy0"]["example_span"]) >= 13
    assert "CONTAMINATED: 2 of 4" in r["verdict"]


def test_system_prompts_are_ignored():
    # every eval record shares the training system prompt, as PsyDTCorpus's do
    evals = [conv("p", *PARAPHRASES[0], system=SYSTEM)]
    r = check_overlap(train_set(), evals)
    assert r["flagged"] == [] and r["records_with_any_overlap"] == 0
    assert r["verdict"].startswith("clean")


def test_ngrams_do_not_cross_messages():
    cp = np.array([ord(c) for c in "abc\x00de\x00"], dtype=np.uint64)
    h, valid = ngram_hashes(cp, 2)
    assert valid.tolist() == [True, True, False, False, True, False]
    assert h[0] != h[1]


def test_too_short_records_counted():
    r = check_overlap(train_set(), [conv("s", "嗯", "好")])
    assert r["eval"]["too_short"] == 1 and r["flagged"] == []


def test_cli_json_and_out(cli, tmp_path):
    tr, ev = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    tr.write_text("".join(json.dumps(c.to_dict(), ensure_ascii=False) + "\n" for c in train_set()), encoding="utf-8")
    rows = [conv("copy1", *TRAIN[1]), conv("para1", *PARAPHRASES[1])]
    ev.write_text("".join(json.dumps(c.to_dict(), ensure_ascii=False) + "\n" for c in rows), encoding="utf-8")
    out = tmp_path / "o.json"
    code, stdout, err = cli(["data", "overlap", tr, ev, "--json", "--out", out])
    assert code == 0, err
    r = json.loads(stdout)
    assert [f["id"] for f in r["flagged"]] == ["copy1"]
    assert json.loads(out.read_text(encoding="utf-8")) == r
    code, stdout, _ = cli(["data", "overlap", tr, ev, "--threshold", "0.0"])
    assert code == 0 and "CONTAMINATED" in stdout and "copy1" in stdout


@pytest.mark.slow
def test_real_data_halves(test_data):
    from psyassist.data.readers import read_conversations

    convs = read_conversations([test_data / "SMILECHAT" / "smilechat_messages_sample200.jsonl"],
                               show_progress=False).conversations
    train, held = convs[:150], convs[150:]
    r = check_overlap(train, held + train[:10])
    flagged = {f["id"] for f in r["flagged"]}
    assert {c.id for c in train[:10]} <= flagged
    assert len(flagged - {c.id for c in train[:10]}) <= 2  # distinct real dialogues rarely share half their text
