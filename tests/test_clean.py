"""Cleaning rules, dedup and split: each rule fires, is counted, and is idempotent."""

from collections import Counter

import pytest

from psyassist.data.clean import (
    CleanOptions,
    clean_conversation,
    clean_text,
    dedup,
    normalize_text,
    unique_ids,
)
from psyassist.data.schema import Conversation, Message
from psyassist.data.split import split, subsample, val_target


def conv(*turns, id="c", tags=None):
    return Conversation(id, [Message(r, t) for r, t in turns], tags or [])


def texts(c):
    return [(m.role, m.content) for m in c.messages]


def test_text_rules_remove_junk_special_tokens_urls():
    mod, pii = Counter(), Counter()
    out, had_url = clean_text("a\u200bb\x00c\ufffd\r\nd<|im_end|>e</s>[INST]f <|im_<|endoftext|>end|>g see https://x.org/a.",
                              CleanOptions(), mod, pii)
    assert out == "abc\ndef g see."
    assert not had_url
    assert mod["junk_chars"] == 3 and mod["crlf_normalized"] == 1 and mod["urls_stripped"] == 1
    assert mod["special_tokens"] == 5  # the nested one is found on the second pass


def test_tab_and_newline_survive():
    out, _ = clean_text("line1\n\tline2", CleanOptions(), Counter(), Counter())
    assert out == "line1\n\tline2"


def test_structure_rules():
    c = conv(("system", "S"), ("assistant", "opening"), ("user", "u1"), ("user", " "), ("user", "u2"),
             ("assistant", "a1"), ("system", "late"), ("assistant", "a2"), ("user", "bye"))
    r = clean_conversation(c)
    assert texts(r.conversation) == [("system", "S"), ("user", "u1\nu2"), ("assistant", "a1\na2")]
    assert r.modified["leading_assistant"] == 1
    assert r.modified["empty_turns"] == 1
    assert r.modified["misplaced_system"] == 1
    assert r.modified["same_role_merged"] == 2
    assert r.modified["trailing_user_trimmed"] == 1
    assert texts(c)[1] == ("assistant", "opening")  # input untouched


@pytest.mark.parametrize("opts,reason", [
    (CleanOptions(same_role="drop"), "same_role"),
    (CleanOptions(urls="drop"), "has_url"),
    (CleanOptions(max_chars=10), "too_long_chars"),
])
def test_drop_modes(opts, reason):
    c = conv(("user", "see www.example.com"), ("user", "again"), ("assistant", "reply here"))
    r = clean_conversation(c, opts)
    assert r.conversation is None and r.drop_reason == reason


def test_keep_modes():
    c = conv(("user", "see www.example.com 13812345678"), ("assistant", "ok"), ("user", "more"))
    r = clean_conversation(c, CleanOptions(urls="keep", pii=False, trim_trailing_user=False))
    assert texts(r.conversation) == texts(c)


def test_no_assistant_left_is_dropped():
    r = clean_conversation(conv(("assistant", "hello"), ("user", "hi")))
    assert r.conversation is None and r.drop_reason == "no_assistant"


def test_cleaning_is_idempotent():
    c = conv(("assistant", "x"), ("user", " a\u200b <s>b https://q.cn/x 电话13812345678 "), ("user", "c\r\n"),
             ("assistant", " d<|im_end|> "), ("user", "e"))
    once = clean_conversation(c).conversation
    twice = clean_conversation(once)
    assert texts(twice.conversation) == texts(once)
    assert not +twice.modified and not twice.pii


def test_normalize_text_for_chinese_and_width():
    assert normalize_text("你好，ＡＢＣ！ 12 3。") == "你好abc123"


def test_dedup_counts_exact_and_normalized_separately():
    a = conv(("user", "我很难过。"), ("assistant", "我在听。"), id="a")
    b = conv(("user", "我很难过。"), ("assistant", "我在听。"), id="b")
    c = conv(("user", "我很难过"), ("assistant", "我 在 听！"), id="c")
    d = conv(("user", "我很开心"), ("assistant", "真好"), id="d")
    kept, dropped = dedup([a, b, c, d], "normalized")
    assert [x.id for x in kept] == ["a", "d"]
    assert dropped == {"duplicate_exact": 1, "duplicate_normalized": 1}
    kept, dropped = dedup([a, b, c, d], "exact")
    assert [x.id for x in kept] == ["a", "c", "d"] and dropped == {"duplicate_exact": 1}
    assert len(dedup([a, b, c, d], "none")[0]) == 4


def test_unique_ids():
    cs = [conv(("user", "x"), id="0"), conv(("user", "y"), id="0"), conv(("user", "z"), id="0~2")]
    assert unique_ids(cs) == 1
    assert len({c.id for c in cs}) == 3


def test_split_is_deterministic_stratified_and_exact():
    cs = [conv(("user", str(i)), ("assistant", "r"), id=str(i), tags=["A" if i < 60 else "B"]) for i in range(100)]
    train, val = split(cs, val_ratio=0.1, seed=1)
    assert len(val) == 10 and len(train) == 90
    assert Counter(c.tags[0] for c in val) == {"A": 6, "B": 4}
    assert [c.id for c in split(cs, val_ratio=0.1, seed=1)[1]] == [c.id for c in val]
    assert [c.id for c in split(cs, val_ratio=0.1, seed=2)[1]] != [c.id for c in val]
    assert [int(c.id) for c in train] == sorted(int(c.id) for c in train)  # input order kept
    assert len(split(cs, val_size=7, seed=1)[1]) == 7
    assert split(cs, val_ratio=0.0)[1] == []


def test_val_target_edges():
    assert val_target(1, 0.5, None) == 0
    assert val_target(10, 0.01, None) == 1  # a ratio > 0 never gives an empty validation set
    assert val_target(10, 0.05, 50) == 9  # training keeps at least one


def test_subsample_seeded_and_ordered():
    items = list(range(50))
    s = subsample(items, 10, seed=3)
    assert len(s) == 10 and s == sorted(s) and s == subsample(items, 10, seed=3)
    assert subsample(items, None, 3) == items
