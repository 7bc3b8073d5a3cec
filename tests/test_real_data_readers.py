"""Readers on the real public datasets (slow; $PSYASSIST_TEST_DATA).  Counts were checked by hand
against the upstream files and the data README: any change in them means the reader changed."""

from __future__ import annotations

import time
from collections import Counter
from itertools import pairwise

import pytest

from psyassist.data.readers import read_conversations

pytestmark = pytest.mark.slow


def read(*paths, **kw):
    return read_conversations([str(p) for p in paths], show_progress=False, **kw)


def same_role_twice(c) -> bool:
    return any(a.role == b.role for a, b in pairwise(c.messages))


def alternates_from_user(c) -> bool:
    body = [m.role for m in c.messages if m.role != "system"]
    return body == ["user", "assistant"] * (len(body) // 2) + ["user"] * (len(body) % 2)


def test_psydtcorpus_record(test_data):
    res = read(test_data / "PsyDTCorpus")  # the folder: its LFS-pointer .txt is skipped with a warning
    (c,) = res.conversations
    assert (c.id, c.tags, c.n_assistant(), len(c.messages)) == ("0", ["婚恋"], 15, 31)
    assert c.messages[0].role == "system" and 700 < len(c.system) < 800  # the ~740-character prompt
    assert alternates_from_user(c)
    assert any("LFS_POINTERS" in w for w in res.warnings)


def test_smilechat_sample_and_full(test_data):
    sample = read(test_data / "SMILECHAT" / "smilechat_messages_sample200.jsonl").conversations
    t = time.perf_counter()
    res = read(test_data / "SMILECHAT" / "smilechat_messages.jsonl.gz")
    seconds = time.perf_counter() - t
    full = res.conversations
    assert len(sample) == 200 and len(full) == 55_165 and not res.skipped
    assert seconds < 20, f"{seconds:.1f} s for the full SMILECHAT file (about 4 s expected)"
    assert [(c.id, c.messages) for c in sample] == [(c.id, c.messages) for c in full[:200]]
    # Facts from the data README: 628,284 turns, all start with the user, 8,321 end on the
    # user, 350 hold two same-role turns in a row (kept as they are; cleaning decides).
    assert sum(len(c.messages) for c in full) == 628_284
    assert all(c.messages[0].role == "user" for c in full)
    assert sum(c.messages[-1].role == "user" for c in full) == 8_321
    assert sum(same_role_twice(c) for c in full) == 350


def test_cpsycound_messages_and_raw_text_agree(test_data):
    path = test_data / "CPsyCoun" / "cpsycound.jsonl"
    packed = read(path)
    text = read(path, fmt="cpsycoun")  # the upstream case_<n>.txt parser on raw_text
    assert packed.formats[str(path)] == "openai" and text.formats[str(path)] == "cpsycoun"
    assert len(packed.conversations) == len(text.conversations) == 3_084
    assert packed.conversations[0].id == "case_0"
    for a, b in zip(packed.conversations, text.conversations, strict=True):
        assert (a.id, a.messages) == (b.id, b.messages)
    convs = packed.conversations
    assert all(c.messages[0].role == "user" for c in convs)
    assert sum(len(c.messages) for c in convs) == 49_780
    assert sum(same_role_twice(c) for c in convs) == 341
    assert sum("\n（一段时间后）" in m.content for c in convs for m in c.messages) == 177  # stage directions


def test_cpsycoune_eval(test_data):
    convs = read(test_data / "CPsyCoun" / "cpsycoune_eval.jsonl").conversations
    assert len(convs) == 45 and sum(len(c.messages) for c in convs) == 592
    topics = Counter(c.tags[0] for c in convs)
    assert len(topics) == 9 and set(topics.values()) == {5}
    assert convs[0].id == "Career/1"
    assert all(alternates_from_user(c) and not same_role_twice(c) for c in convs)


def test_emollm(test_data):
    res = read(test_data / "EmoLLM_data")
    convs = res.conversations
    assert len(convs) == 1_596 and set(res.formats.values()) == {"xtuner"}
    assert all(c.messages[0].role == "system" and alternates_from_user(c) for c in convs)
    assert all(c.messages[-1].role == "assistant" for c in convs)
    assert sum(c.n_assistant() for c in convs) == 5_072


def test_counsel_chat_top_and_all(test_data):
    top = read(test_data / "CounselChat").conversations
    every = read(test_data / "CounselChat", counsel_chat="all").conversations
    assert len(top) == 815 and len(every) == 2_129
    assert len({c.meta["questionID"] for c in every}) == 815
    assert len({c.tags[0] for c in every}) == 31
    assert Counter(c.meta["split"] for c in every) == {"train": 1_839, "val": 173, "test": 117}
    # The kept answer has the most up-votes of its question.
    most = Counter()
    for c in every:
        most[c.meta["questionID"]] = max(most[c.meta["questionID"]], c.meta["upvotes"])
    assert all(c.meta["upvotes"] == most[c.meta["questionID"]] for c in top)
    assert all([m.role for m in c.messages] == ["user", "assistant"] for c in every)


IMHI_TEST = {"CAMS": 625, "DR": 405, "Irf": 2_113, "MultiWD": 2_441, "SAD": 684, "dreaddit": 414,
             "loneliness": 528, "t-sid": 959}
IMHI_TRAIN = {("DR", "train"): 1_003, ("DR", "val"): 430, ("Irf", "val"): 985, ("MultiWD", "val"): 1_500,
              ("SAD", "train"): 5_547, ("SAD", "val"): 616, ("dreaddit", "train"): 2_837, ("dreaddit", "val"): 300}


@pytest.mark.parametrize("split", ["test_complete", "test_instruction"])
def test_imhi_test_sets(test_data, split):
    res = read(test_data / "IMHI_MentalLLaMA" / "test_data" / split)
    assert Counter(c.tags[0] for c in res.conversations) == IMHI_TEST
    assert len({c.id for c in res.conversations}) == len(res.conversations)
    assert all(c.messages[1].content.strip() for c in res.conversations)


def test_imhi_instruction_data(test_data):
    res = read(test_data / "IMHI_MentalLLaMA" / "train_data")
    counts = Counter((c.tags[0], c.id.split("/")[1].rsplit("-", 1)[0]) for c in res.conversations)
    assert counts == IMHI_TRAIN


def test_every_dialogue_folder_at_once(test_data):
    folders = ["PsyDTCorpus", "SMILECHAT", "CPsyCoun", "EmoLLM_data", "CounselChat", "IMHI_MentalLLaMA"]
    res = read(*(test_data / f for f in folders))
    assert not res.skipped
    assert len(res.conversations) == 1 + 200 + 55_165 + 3_084 + 45 + 1_596 + 815 + 2 * 8_169 + 13_218
    assert set(res.formats.values()) == {"openai", "cpsycoun", "xtuner", "counsel_chat", "imhi"}
    skipped_files = [w for w in res.warnings if "not a known format" in w]
    assert len(skipped_files) == 6  # LFS pointers + five LICENSE files; nothing else is left out
