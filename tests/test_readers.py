"""Readers on small invented fixtures: detection, every format's mapping, every documented error."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import time
from pathlib import Path

import pytest

from psyassist.data.readers import FORMATS, expand_sources, read_conversations
from psyassist.data.schema import ROLES
from psyassist.errors import DataError, PsyassistError

FIX = Path(__file__).parent / "fixtures" / "readers"

# fixture file, the format auto-detection must pick, conversations it holds
CASES = [
    ("openai.jsonl", "openai", 2),
    ("psydt_array.json", "openai", 2),
    ("cpsycoun_packed.jsonl", "openai", 2),
    ("sharegpt.json", "sharegpt", 2),
    ("xtuner.json", "xtuner", 2),
    ("alpaca.jsonl", "alpaca", 2),
    ("prompt_response.jsonl", "prompt_response", 2),
    ("smilechat/3.json", "smilechat", 1),
    ("cpsycound/case_2.txt", "cpsycoun", 1),
    ("cpsycoune/Career/1.json", "cpsycoun", 1),
    ("cpsycoune_eval.jsonl", "cpsycoun", 1),
    ("counsel_chat.csv", "counsel_chat", 3),
    ("imhi/DR.csv", "imhi", 2),
    ("esconv/ESConv.json", "esconv", 2),  # the GitHub release: seeker/supporter, content, annotation.strategy
    ("esconv/esconv_hub.jsonl", "esconv", 2),  # thu-coai/esconv: {"text": "<JSON string>"}, usr/sys, text
    ("esconv/esconv_reupload.jsonl", "esconv", 2),  # usr/sys + content + annotation; seeker/supporter + text
]
NEVER_DETECTED = {"mapped"}  # --format mapped --map ...: tested below on files written by the tests


def read(path, **kw):
    return read_conversations([path], show_progress=False, **kw)


def roles(conv):
    return [m.role for m in conv.messages]


def write(tmp_path, name, text, encoding="utf-8"):
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(text.encode(encoding))
    return p


def jsonl(*rows):
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def conv(*pairs, **extra):
    return {"messages": [{"role": r, "content": c} for r, c in pairs], **extra}


def error_of(path, **kw) -> DataError:
    with pytest.raises(DataError) as e:
        read(path, **kw)
    return e.value


# --- every format, detected and forced ---------------------------------------------------------


def test_every_format_has_a_fixture():
    assert {fmt for _, fmt, _ in CASES} == set(FORMATS) - NEVER_DETECTED


@pytest.mark.parametrize("name,fmt,n", CASES, ids=[c[0] for c in CASES])
def test_auto_detects_format(name, fmt, n):
    path = FIX / name
    res = read(path)
    assert res.formats == {str(path): fmt}
    assert res.files == [str(path)]
    assert len(res.conversations) == n
    assert not res.skipped and not res.warnings
    for c in res.conversations:
        assert c.source == str(path)
        assert c.messages and all(m.role in ROLES and m.content for m in c.messages)
        assert "user" in roles(c) and "assistant" in roles(c)
    assert len({c.id for c in res.conversations}) == n


@pytest.mark.parametrize("name,fmt,n", CASES, ids=[c[0] for c in CASES])
def test_forced_format_reads_the_same(name, fmt, n):
    auto = read(FIX / name).conversations
    forced = read(FIX / name, fmt=fmt).conversations
    assert [c.to_dict() for c in forced] == [c.to_dict() for c in auto]


def test_openai_tags_and_default_ids():
    a, b = read(FIX / "openai.jsonl").conversations
    assert (a.id, a.tags, roles(a)) == ("o1", ["学业"], ["system", "user", "assistant"])
    assert b.id == "openai-1"  # no id: <file stem>-<record index>
    arr = read(FIX / "psydt_array.json").conversations
    assert [(c.id, c.tags) for c in arr] == [("7", ["婚恋"]), ("8", ["家庭"])]


def test_sharegpt_mapping():
    a, b = read(FIX / "sharegpt.json").conversations
    assert roles(a) == ["system", "user", "assistant", "user", "assistant"]
    assert a.messages[0].content == "You are a supportive counselor."
    assert a.messages[3].content == "My sister."
    assert (a.id, b.id, roles(b)) == ("sharegpt-0", "s2", ["user", "assistant"])


def test_xtuner_system_from_first_turn():
    a, b = read(FIX / "xtuner.json").conversations
    assert roles(a) == ["system", "user", "assistant", "user", "assistant"]
    assert a.system == "现在你是一个心理专家。"
    assert a.messages[3].content == "他们一看到我就不说话了。"
    assert roles(b) == ["system", "user", "assistant"]


def test_alpaca_history_instruction_and_input():
    a, b = read(FIX / "alpaca.jsonl").conversations
    assert roles(a) == ["system", "user", "assistant", "user", "assistant"]
    assert [m.content for m in a.messages[1:3]] == ["你好", "你好，今天想聊些什么？"]
    assert a.messages[3].content == "请以心理咨询师的身份回答。\n我害怕在会上发言。"
    assert b.messages[0].content == "Give one tip for test anxiety."  # empty input adds nothing


def test_prompt_response_optional_system():
    a, b = read(FIX / "prompt_response.jsonl").conversations
    assert roles(a) == ["system", "user", "assistant"] and roles(b) == ["user", "assistant"]
    assert b.messages[1].content.startswith("Yes, crying")


def test_smilechat_upstream_file_per_dialogue():
    (c,) = read(FIX / "smilechat" / "3.json").conversations
    assert c.id == "3"
    assert roles(c) == ["user", "assistant", "user", "assistant"]
    assert c.messages[2].content == "大概一个月前换了工作。"


def test_cpsycound_text_prefixes_and_stage_directions():
    (c,) = read(FIX / "cpsycound" / "case_2.txt").conversations
    assert c.id == "case_2"
    assert roles(c) == ["user", "assistant", "user", "assistant", "user"]
    assert c.messages[1].content == "失眠多久了？每天大概睡几个小时？"  # ASCII colon
    # The unprefixed stage direction continues the previous turn; CRLF leaves no \r behind.
    assert c.messages[2].content == "两周了，每天只睡四个小时。\n（一段时间后）"
    assert not any("\r" in m.content for m in c.messages)


def test_cpsycoune_list_and_packed_eval_get_topic():
    (a,) = read(FIX / "cpsycoune" / "Career" / "1.json").conversations
    assert (a.id, a.tags, roles(a)) == ("Career/1", ["Career"], ["user", "assistant"] * 2)
    (b,) = read(FIX / "cpsycoune_eval.jsonl").conversations
    assert (b.id, b.tags) == ("Family/2", ["Family"])
    assert b.messages[0].content == "我和父亲很少说话。"


def test_cpsycound_packed_raw_text_agrees_with_messages():
    auto = read(FIX / "cpsycoun_packed.jsonl")
    text = read(FIX / "cpsycoun_packed.jsonl", fmt="cpsycoun")
    assert auto.formats[str(FIX / "cpsycoun_packed.jsonl")] == "openai"
    assert [(c.id, c.messages) for c in text.conversations] == [(c.id, c.messages) for c in auto.conversations]
    assert text.conversations[0].messages[-1].content.endswith("\n（咨询结束）")


def test_counsel_chat_top_keeps_best_answer_first_on_ties():
    res = read(FIX / "counsel_chat.csv")
    q10, q11, q12 = res.conversations
    assert [c.meta["questionID"] for c in res.conversations] == ["10", "11", "12"]  # first-seen order
    assert q10.meta == {"questionID": "10", "upvotes": 3, "split": "train"}
    assert q10.messages[1].content.startswith("Nervousness often means you care")
    assert q10.messages[0].content == "How do I calm down before a date?\n\nI get so nervous I feel sick."
    assert q11.meta["upvotes"] == 2 and q11.messages[1].content.startswith("Emptiness")  # tie: first
    assert "\nEven my hobbies." in q11.messages[0].content  # a quoted field spanning lines
    assert q12.messages[0].content == "Is therapy worth it?"  # empty questionText
    assert (q10.tags, q12.tags, q10.id) == (["anxiety"], ["counseling-fundamentals"], "counsel_chat-q10")


def test_counsel_chat_all_answers():
    res = read(FIX / "counsel_chat.csv", counsel_chat="all")
    assert [c.id for c in res.conversations] == [f"counsel_chat-{i}" for i in range(5)]
    assert [c.meta["upvotes"] for c in res.conversations] == [1, 2, 3, 2, 0]
    with pytest.raises(PsyassistError, match="counsel_chat"):
        read(FIX / "counsel_chat.csv", counsel_chat="best")


def test_imhi_tags_from_file_or_folder():
    a, b = read(FIX / "imhi" / "DR.csv").conversations
    assert (a.tags, a.id, b.id) == (["DR"], "imhi/DR-0", "imhi/DR-1")
    assert a.messages[1].content.startswith("Yes. Reasoning:")
    (t,) = read(FIX / "imhi" / "train_data" / "dreaddit" / "train.csv").conversations
    assert (t.tags, t.id) == (["dreaddit"], "dreaddit/train-0")
    assert '"My rent is late again' in t.messages[0].content  # doubled quotes unescaped


# --- ESConv ---------------------------------------------------------------------------------------


def strategies(c):
    return [m.meta["strategy"] if m.meta else None for m in c.messages]


def test_esconv_original_release():
    a, b = read(FIX / "esconv" / "ESConv.json").conversations
    # consecutive utterances of one speaker are one turn, joined with "\n" (as --same-role merge joins them);
    # the trailing "\n" of every original utterance is stripped
    assert roles(a) == ["assistant", "user", "assistant", "user", "assistant"]
    assert a.messages[1].content == "I dislike my job.\nBut I am afraid to quit."
    assert a.messages[2].content == "That sounds frightening.\nWhat worries you most about leaving?"
    assert strategies(a) == [["Question"], None, ["Reflection of feelings", "Question"], None, ["Self-disclosure"]]
    # the situation is context kept as metadata (not a system turn: no prompt at inference would carry it)
    assert a.system is None and a.meta["situation"].startswith("I dislike my job")
    assert (a.meta["emotion_type"], a.meta["experience_type"], a.tags) == ("anxiety", "Previous Experience",
                                                                            ["job crisis"])
    assert a.meta["survey_score"]["seeker"]["final_emotion_intensity"] == "2" and "dialog" not in a.meta
    assert (a.id, b.id) == ("ESConv-0", "ESConv-1")
    assert strategies(b) == [None, None, None, ["Affirmation and Reassurance"]]  # {} annotates nothing


def test_esconv_hub_and_reuploads_read_like_the_original():
    a, b = read(FIX / "esconv" / "esconv_hub.jsonl").conversations
    assert roles(a) == ["user", "assistant", "user", "assistant", "user"]
    assert a.messages[3].content == "That sounds exhausting.\nWould a short walk each morning be possible?"
    assert strategies(a)[3] == ["Reflection of feelings", "Providing Suggestions"]
    assert (a.meta, a.tags) == ({"emotion_type": "depression", "problem_type": "ongoing depression",
                                 "situation": "I have felt low for months."}, ["ongoing depression"])
    assert b.tags == ["problems with friends"]
    c, d = read(FIX / "esconv" / "esconv_reupload.jsonl").conversations
    assert (roles(c), strategies(c)) == (["user", "assistant"], [None, ["Reflection of feelings"]])
    assert [m.content for m in d.messages] == ["I lost my job.", "I am sorry.\nWhat happened?"]
    assert strategies(d) == [None, ["Affirmation and Reassurance", "Question"]]


def test_esconv_strategies_stay_on_their_turns_through_prepare(cli, tmp_path):
    import datasets

    out = tmp_path / "prep"
    code, _, err = cli(["data", "prepare", FIX / "esconv", "--out", out, "--val-size", "1", "--no-stratify"])
    assert code == 0, err
    rows = [json.loads(x) for f in ("train.jsonl", "validation.jsonl")
            for x in (out / f).read_text(encoding="utf-8").splitlines()]
    a = next(r for r in rows if r["id"] == "ESConv-0")
    # the leading supporter greeting is dropped (leading_assistant): each label still sits on its own reply
    assert [(m["role"], m.get("meta")) for m in a["messages"]] == [
        ("user", None), ("assistant", {"strategy": ["Reflection of feelings", "Question"]}),
        ("user", None), ("assistant", {"strategy": ["Self-disclosure"]})]
    assert a["meta"]["situation"].startswith("I dislike") and a["tags"] == ["job crisis"]
    dd = datasets.load_from_disk(str(out / "dataset_dict"))
    row = next(r for split in dd.values() for r in split if r["id"] == "ESConv-0")
    assert json.loads(row["meta"])["message_meta"][1] == {"strategy": ["Reflection of feelings", "Question"]}
    assert set(row["messages"][0]) == {"role", "content"}
    again = tmp_path / "again"  # prepare on its own output changes nothing, per-turn labels included
    assert cli(["data", "prepare", out / "train.jsonl", "--out", again, "--val-size", "0"])[0] == 0
    assert (again / "train.jsonl").read_text(encoding="utf-8") == (out / "train.jsonl").read_text(encoding="utf-8")


def test_cleaning_merges_per_turn_labels_with_the_turns():
    from psyassist.data.clean import clean_conversation
    from psyassist.data.schema import Conversation, Message

    c = Conversation("x", [Message("user", "q"), Message("assistant", "a", {"strategy": ["Question"]}),
                           Message("assistant", "b", {"strategy": ["Self-disclosure"], "note": 1}),
                           Message("assistant", "c")])
    (m,) = [m for m in clean_conversation(c).conversation.messages if m.role == "assistant"]
    assert (m.content, m.meta) == ("a\nb\nc", {"strategy": ["Question", "Self-disclosure"], "note": 1})
    assert m.to_dict() == {"role": "assistant", "content": "a\nb\nc"}  # chat templates never see it


# --- format mapped ---------------------------------------------------------------------------------

# A layout no reader knows: another speaker vocabulary, other key names, ints as speakers in one file.
MAPPED = [
    {"conv_id": "c1", "context": "A student worried about exams.",
     "turns": [{"who": "client", "utterance": "I can't focus."}, {"who": "counselor", "utterance": "Since when?"},
               {"who": "client", "utterance": "A week."}, {"who": "counselor", "utterance": "What changed?"}]},
    {"conv_id": "c2", "context": "",
     "turns": [{"who": "patient", "utterance": "Hello."}, {"who": "counselor", "utterance": "Hi, welcome."}]},
]
MAP = ["messages=turns", "role=who", "content=utterance", "user=client,patient", "assistant=counselor",
       "system=context", "id=conv_id"]


@pytest.mark.parametrize("name", ["mine.jsonl", "mine.json"])
def test_mapped_reads_any_list_of_turns(tmp_path, name):
    p = write(tmp_path, name, jsonl(*MAPPED) if name.endswith(".jsonl") else json.dumps(MAPPED))
    res = read(p, fmt="mapped", mapping=MAP)
    a, b = res.conversations
    assert res.formats == {str(p): "mapped"}
    assert (a.id, roles(a)) == ("c1", ["system", "user", "assistant", "user", "assistant"])
    assert a.system == "A student worried about exams." and a.messages[4].content == "What changed?"
    assert (b.id, roles(b)) == ("c2", ["user", "assistant"])  # an empty system field adds no turn
    # --map alone means --format mapped; the same mapping as a dict (a recipe's data.map) reads the same
    same = read(p, mapping=dict(x.split("=", 1) for x in MAP)).conversations
    assert [c.to_dict() for c in same] == [c.to_dict() for c in res.conversations]


def test_mapped_reads_the_issue_example_on_an_esconv_reupload(tmp_path):
    rec = {"situation": "Exams next week.", "dialog": [
        {"speaker": "usr", "text": "I can't sleep."}, {"speaker": "sys", "text": "That sounds hard."}]}
    p = write(tmp_path, "esconv_flat.jsonl", jsonl(rec))
    (c,) = read(p, fmt="mapped", mapping=["messages=dialog", "role=speaker", "content=text", "user=usr",
                                          "assistant=sys", "system=situation"]).conversations
    assert [(m.role, m.content) for m in c.messages] == [
        ("system", "Exams next week."), ("user", "I can't sleep."), ("assistant", "That sounds hard.")]
    ints = write(tmp_path, "ints.jsonl", jsonl({"t": [{"s": 0, "x": "q"}, {"s": 1, "x": "a"}]}))
    (c,) = read(ints, mapping=["messages=t", "role=s", "content=x", "user=0", "assistant=1"]).conversations
    assert roles(c) == ["user", "assistant"]


@pytest.mark.parametrize(("mapping", "field", "reason", "words"), [
    (["messages=dialogue"], "dialogue", "missing_messages", ["under 'dialogue'", "--map messages=dialogue",
                                                              "keys: context, conv_id, turns"]),
    (["role=speaker"], "turns[0].speaker", "missing_role", ["'speaker' (--map role=speaker)",
                                                             "keys: utterance, who"]),
    (["content=text"], "turns[0].text", "missing_content", ["'text' (--map content=text)"]),
    (["user=client"], "turns[0].who", "bad_role", ["among client, counselor", "got 'patient'"]),
    (["system=situation"], "situation", "missing_system", ["under 'situation' (--map system=situation)"]),
    (["id=uuid"], "uuid", "missing_id", ["under 'uuid'"]),
])
def test_a_wrong_mapping_names_the_first_record_and_the_missing_key(tmp_path, mapping, field, reason, words):
    p = write(tmp_path, "mine.jsonl", jsonl(*MAPPED))
    keys = {m.split("=")[0] for m in mapping}
    e = error_of(p, fmt="mapped", mapping=[m for m in MAP if m.split("=")[0] not in keys] + mapping)
    assert (e.field, e.reason) == (field, reason)
    assert e.record == (1 if reason == "bad_role" else 0)  # the first record it concerns ("patient": record 1)
    msg = str(e)
    assert f"mine.jsonl:{e.line}" in msg and all(w in msg for w in words), msg


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"fmt": "mapped"}, "--format mapped needs the keys of the layout, e.g. --map messages=dialog"),
    ({"fmt": "sharegpt", "mapping": MAP}, "it does not apply to --format sharegpt"),
    ({"mapping": ["messages=turns", "role=who", "content=utterance", "user=client"]},
     "--format mapped needs --map assistant=..."),
    ({"mapping": [*MAP, "speaker=who"]}, "unknown key 'speaker'; the keys are messages"),
    ({"mapping": [*MAP, "system"]}, "expected system=VALUE"),
    ({"mapping": [*MAP[:4], "assistant=counselor,client"]}, "'client' is given for both user and assistant"),
    ({"mapping": [*MAP, "role=speaker"]}, "--map role is given twice"),
])
def test_mapping_option_errors(kwargs, message):
    with pytest.raises(PsyassistError, match=re.escape(message)):
        read(FIX / "openai.jsonl", **kwargs)


def test_mapped_in_every_data_command_and_in_generate(cli, tmp_path):
    from psyassist.infer.generate import read_items

    p = write(tmp_path, "mine.jsonl", jsonl(*MAPPED))
    args = ["--format", "mapped", *[x for m in MAP for x in ("--map", m)]]
    code, out, err = cli(["data", "stats", p, *args, "--json"])
    assert code == 0, err
    assert json.loads(out)["dialogues"] == 2
    code, out, err = cli(["data", "show", p, *args, "--id", "c1"])
    assert code == 0 and "What changed?" in out, err
    code, _, err = cli(["data", "prepare", p, *args, "--out", tmp_path / "prep", "--val-size", "0"])
    assert code == 0, err
    report = json.loads((tmp_path / "prep" / "report.json").read_text(encoding="utf-8"))
    assert report["options"]["mapping"]["messages"] == "turns" and report["inputs"][0]["format"] == "mapped"
    wrong = [x for m in ["messages=dialogue", *MAP[1:]] for x in ("--map", m)]  # --map alone means mapped
    code, _, err = cli(["data", "stats", p, *wrong])
    assert code == 2 and "record 0" in err and "'dialogue'" in err and "Traceback" not in err
    items, _ = read_items([str(p)], mapping=MAP)
    assert [it.id for it in items] == ["c1", "c2"] and items[0].messages[0]["role"] == "system"
    assert items[0].reference == "What changed?"


def test_mapped_in_data_check(cli, tmp_path):
    from tiny_tokenizer import tiny_tokenizer

    tok = tmp_path / "tok"
    tiny_tokenizer().save_pretrained(tok)
    p = write(tmp_path, "mine.json", json.dumps(MAPPED))
    code, out, err = cli(["data", "check", p, "-t", tok, "--json", *[x for m in MAP for x in ("--map", m)]])
    assert code == 0, err
    assert json.loads(out)["samples"] == 2


# --- sources ------------------------------------------------------------------------------------


def test_directory_is_recursive_and_naturally_sorted():
    res = read(FIX / "smilechat")
    assert [c.id for c in res.conversations] == ["3", "17"]  # 3 before 17, not "17" < "3"
    assert set(res.formats.values()) == {"smilechat"}
    files = expand_sources([FIX])
    assert FIX / "imhi" / "train_data" / "dreaddit" / "train.csv" in files
    assert len(files) == len(set(files)) == 18


def test_whole_fixture_tree_reads_with_every_format():
    res = read(FIX)
    assert set(res.formats.values()) == set(FORMATS) - NEVER_DETECTED
    assert len(res.conversations) == sum(n for *_, n in CASES) + 1 + 1  # + smilechat/17, + dreaddit train


def test_glob_and_duplicates(tmp_path):
    res = read_conversations([str(FIX / "*.jsonl"), FIX / "openai.jsonl"], show_progress=False)
    assert sorted(Path(f).name for f in res.files) == ["alpaca.jsonl", "cpsycoun_packed.jsonl",
                                                       "cpsycoune_eval.jsonl", "openai.jsonl",
                                                       "prompt_response.jsonl"]
    e = error_of(str(tmp_path / "*.jsonl"))
    assert e.reason == "missing_file" and "*.jsonl" in str(e)
    e = error_of(tmp_path / "nope.jsonl")
    assert e.reason == "missing_file" and "nope.jsonl" in str(e)


def test_a_single_string_source_is_one_path():
    res = read_conversations(str(FIX / "openai.jsonl"), show_progress=False)
    assert len(res.conversations) == 2


def test_gzip(tmp_path):
    gz = tmp_path / "openai.jsonl.gz"
    gz.write_bytes(gzip.compress((FIX / "openai.jsonl").read_bytes()))
    res = read(gz)
    assert res.formats[str(gz)] == "openai"
    assert res.conversations[1].id == "openai-1"  # stem without .jsonl.gz
    assert [c.messages for c in res.conversations] == [c.messages for c in read(FIX / "openai.jsonl").conversations]


def test_utf8_bom_and_gb18030(tmp_path):
    text = (FIX / "xtuner.json").read_text(encoding="utf-8")
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    res = read(bom)
    assert len(res.conversations) == 2 and not res.warnings
    gb = write(tmp_path, "gb.json", text, "gb18030")
    res = read(gb)
    assert res.conversations[0].messages[1].content == "我总觉得同事在背后议论我。"
    assert len(res.warnings) == 1 and "GB18030" in res.warnings[0] and "gb.json" in res.warnings[0]


def test_unicode_line_separators_inside_jsonl_strings(tmp_path):
    # str.splitlines() would cut this line at U+2028; JSONL lines end at \n only.
    p = write(tmp_path, "u.jsonl", jsonl(conv(("user", "a\u2028b\x1cc"), ("assistant", "ok"))))
    (c,) = read(p).conversations
    assert c.messages[0].content == "a\u2028b\x1cc"


def test_pretty_printed_single_object(tmp_path):
    p = write(tmp_path, "one.json", json.dumps(conv(("user", "hi"), ("assistant", "hello"), id="x"), indent=2))
    (c,) = read(p).conversations
    assert c.id == "x" and roles(c) == ["user", "assistant"]


def test_source_already_in_record_is_kept(tmp_path):
    p = write(tmp_path, "prepared.jsonl", jsonl(conv(("user", "q"), ("assistant", "a"), source="raw/a.json")))
    assert read(p).conversations[0].source == "raw/a.json"


def test_duplicate_ids_are_warned(tmp_path):
    row = conv(("user", "q"), ("assistant", "a"), id="same")
    res = read(write(tmp_path, "d.jsonl", jsonl(row, row)))
    assert len(res.conversations) == 2
    assert any("'same'" in w for w in res.warnings)


# --- detection errors -------------------------------------------------------------------------------


def test_unknown_keys_list_keys_and_formats(tmp_path):
    p = write(tmp_path, "odd.jsonl", jsonl({"question": "q", "answer": "a"}))
    e = error_of(p)
    msg = str(e)
    assert e.reason == "unknown_format"
    assert "odd.jsonl:1" in msg and "answer, question" in msg and "--format" in msg
    assert all(name in msg for name in FORMATS)


def test_ambiguous_keys(tmp_path):
    p = write(tmp_path, "amb.jsonl", jsonl({"messages": [], "conversations": []}))
    e = error_of(p)
    assert e.reason == "ambiguous_format"
    assert "openai, sharegpt" in str(e) and "--format" in str(e)


def test_unknown_csv_header(tmp_path):
    p = write(tmp_path, "t.csv", "a,b\n1,2\n")
    e = error_of(p)
    assert e.reason == "unknown_format" and "t.csv:1" in str(e) and "a, b" in str(e)


def test_unknown_text_file_errors_but_is_skipped_in_a_directory(tmp_path):
    shutil.copy(FIX / "openai.jsonl", tmp_path / "openai.jsonl")
    lic = write(tmp_path, "LICENSE.txt", "MIT License\n\nPermission is hereby granted...\n")
    assert error_of(lic).reason == "unknown_format"
    res = read(tmp_path)
    assert len(res.conversations) == 2 and res.files == [str(tmp_path / "openai.jsonl")]
    assert any("LICENSE.txt" in w and "not a known format" in w for w in res.warnings)


def test_forced_json_format_on_text(tmp_path):
    e = error_of(FIX / "cpsycound" / "case_2.txt", fmt="openai")
    assert e.reason == "bad_json" and "format openai" in str(e)
    with pytest.raises(PsyassistError, match="unknown format 'chatml'"):
        read(FIX / "openai.jsonl", fmt="chatml")


def test_forced_csv_format_missing_column():
    e = error_of(FIX / "imhi" / "DR.csv", fmt="counsel_chat")
    assert e.reason == "missing_column" and e.field == "questionID" and "DR.csv:1" in str(e)


# --- malformed records ------------------------------------------------------------------------------


def test_broken_jsonl_line_names_line_and_skips_only_it(tmp_path):
    good = json.dumps(conv(("user", "q"), ("assistant", "a")))
    p = write(tmp_path, "bad.jsonl", f"{good}\n{good[:-5]}\n\n{good}\n")
    e = error_of(p)
    assert e.reason == "bad_json" and e.line == 2 and e.record == 1
    assert "bad.jsonl:2" in str(e) and "record 1" in str(e) and "--skip-invalid" in str(e)
    res = read(p, skip_invalid=True)
    assert len(res.conversations) == 2 and res.skipped == {"bad_json": 1}
    assert [c.id for c in res.conversations] == ["bad-0", "bad-2"]  # indices stay stable across a skip
    assert any("bad.jsonl" in w and "bad_json 1" in w for w in res.warnings)


def test_broken_first_jsonl_line_is_still_jsonl(tmp_path):
    good = json.dumps(conv(("user", "q"), ("assistant", "a")))
    p = write(tmp_path, "first.jsonl", f'{{"messages": [\n{good}\n{good}\n')
    assert error_of(p).line == 1
    res = read(p, skip_invalid=True)
    assert len(res.conversations) == 2 and res.skipped == {"bad_json": 1}
    assert res.formats[str(p)] == "openai"  # detected from the first good record


def test_truncated_json_array_gives_position(tmp_path):
    text = (FIX / "psydt_array.json").read_text(encoding="utf-8")
    cut = text[: text.index("父母总是")]
    p = write(tmp_path, "cut.json", cut)
    e = error_of(p)
    assert e.reason == "bad_json"
    assert e.line == cut.count("\n") + 1 and f"cut.json:{e.line}" in str(e) and "char" in str(e)
    res = read_conversations([p, FIX / "openai.jsonl"], skip_invalid=True, show_progress=False)
    assert len(res.conversations) == 2 and res.skipped == {"bad_json": 1}
    assert any("cut.json" in w and "whole file" in w for w in res.warnings)


@pytest.mark.parametrize("record,field,reason", [
    (conv(("user", "q"), ("assistant", 5)), "messages[1].content", "bad_content"),
    ({"messages": [{"content": "q"}]}, "messages[0].role", "missing_role"),
    (conv(("user", "q"), ("assistant", "a"), ("bot", "x"), ("user", "y")), "messages[2].role", "bad_role"),
    ({"messages": "hello"}, "messages", "missing_messages"),
    (conv(("user", "q"), id=[1]), "id", "bad_id"),
])
def test_openai_record_errors(tmp_path, record, field, reason):
    good = conv(("user", "q"), ("assistant", "a"))
    p = write(tmp_path, "c.jsonl", jsonl(good, good, record))
    e = error_of(p)
    assert (e.line, e.record, e.field, e.reason) == (3, 2, field, reason)
    assert "c.jsonl:3" in str(e) and f"field '{field}'" in str(e)


@pytest.mark.parametrize("name,text,field,reason", [
    ("s.json", json.dumps([{"conversations": [{"from": "human", "value": "q"}, {"from": "robot", "value": "a"}]}]),
     "conversations[1].from", "bad_role"),
    ("s.json", json.dumps([{"conversations": [{"from": "human"}]}]), "conversations[0].value", "bad_content"),
    ("x.json", json.dumps([{"conversation": [{"input": "q"}]}]), "conversation[0].output", "bad_content"),
    ("a.jsonl", jsonl({"instruction": "q", "output": "a", "history": [["only one"]]}), "history[0]", "bad_history"),
    ("a.jsonl", jsonl({"instruction": 3, "output": "a"}), "instruction", "bad_content"),
    ("p.jsonl", jsonl({"prompt": "q", "response": None}), "response", "bad_content"),
    ("sm.json", json.dumps([{"role": "client", "content": "q"}, {"role": "therapist", "content": "a"}]),
     "[1].role", "bad_role"),
    ("e.jsonl", jsonl({"utterances": ["你好", "支持者：你好"]}), "utterances[0]", "no_speaker"),
    ("e.jsonl", jsonl({"utterances": ["求助者：你好", 7]}), "utterances[1]", "bad_content"),
    ("d.jsonl", jsonl({"id": "case_1", "raw_text": "（开始）\n来访者：你好"}), "raw_text line 1", "no_speaker"),
    ("es.json", json.dumps([{"dialog": [{"speaker": "usr", "text": "q"}, {"speaker": "therapist", "text": "a"}]}]),
     "dialog[1].speaker", "bad_role"),
    ("es.json", json.dumps([{"dialog": [{"speaker": "seeker", "annotation": {}}]}]), "dialog[0].text", "bad_content"),
    ("es.jsonl", jsonl({"dialog": [{"speaker": "sys", "content": "a", "annotation": "Question"}]}),
     "dialog[0].annotation", "bad_annotation"),
    ("es.jsonl", jsonl({"dialog": [{"speaker": "sys", "content": "a", "strategy": ["Question"]}]}),
     "dialog[0].strategy", "bad_strategy"),
    ("es.jsonl", jsonl({"text": '{"situation": "x", "dialog": [oops]}'}), "text", "bad_json"),
])
def test_format_specific_errors_name_the_formats_own_field(tmp_path, name, text, field, reason):
    e = error_of(write(tmp_path, name, text))
    assert (e.field, e.reason) == (field, reason)
    assert name in str(e) and f"field '{field}'" in str(e)


def test_text_file_error_names_the_line(tmp_path):
    p = write(tmp_path, "case_9.txt", "\n（开场白）\n来访者：你好\n")
    e = error_of(p, fmt="cpsycoun")
    assert (e.line, e.reason) == (2, "no_speaker") and "case_9.txt:2" in str(e) and "来访者" in str(e)


def test_csv_row_errors(tmp_path):
    header = (FIX / "counsel_chat.csv").read_text(encoding="utf-8").split("\n")[0]
    p = write(tmp_path, "cc.csv", header + "\n0,1,T,Q,l,topic,i,u,Answer,many,3,train\n1,2,T,Q,l,topic,i,u,A,1,3,train\n")
    for mode in ("top", "all"):
        e = error_of(p, counsel_chat=mode)
        assert (e.line, e.record, e.field, e.reason) == (2, 0, "upvotes", "bad_upvotes") and "cc.csv:2" in str(e)
        res = read(p, counsel_chat=mode, skip_invalid=True)
        assert len(res.conversations) == 1 and res.skipped == {"bad_upvotes": 1}
    p = write(tmp_path, "DR.csv", 'query,gpt-3.5-turbo\n"q","a"\n"only one"\n')
    e = error_of(p)
    assert (e.line, e.record, e.reason) == (3, 1, "bad_row")


def test_skip_invalid_counts_by_reason(tmp_path):
    good = conv(("user", "q"), ("assistant", "a"))
    p = write(tmp_path, "mix.jsonl", jsonl(good, conv(("bot", "x")), {"messages": [{"content": "y"}]},
                                          conv(("user", 1)), conv(("robot", "z"))) + "{oops\n")
    res = read(p, skip_invalid=True)
    assert len(res.conversations) == 1
    assert res.skipped == {"bad_role": 2, "missing_role": 1, "bad_content": 1, "bad_json": 1}


@pytest.mark.parametrize("content", ["", "\n\n  \n", "[]"])
def test_empty_file_is_no_records(tmp_path, content):
    p = write(tmp_path, "empty.jsonl", content)
    e = error_of(p)
    assert e.reason == "no_records" and "empty.jsonl" in str(e)
    res = read_conversations([p, FIX / "openai.jsonl"], skip_invalid=True, show_progress=False)
    assert res.skipped == {"no_records": 1} and len(res.conversations) == 2


def test_nothing_valid_at_all_is_an_error(tmp_path):
    p = write(tmp_path, "allbad.jsonl", jsonl(conv(("bot", "x")), conv(("bot", "y"))))
    e = error_of(p, skip_invalid=True)
    assert e.reason == "no_records" and "bad_role 2" in str(e)


def test_ten_megabyte_single_line(tmp_path):
    big = "很" * 10_000_000
    line = json.dumps(conv(("user", big), ("assistant", "ok")), ensure_ascii=False)
    p = write(tmp_path, "big.jsonl", line + "\n")
    t = time.perf_counter()
    (c,) = read(p).conversations
    assert len(c.messages[0].content) == 10_000_000
    broken = write(tmp_path, "broken.jsonl", jsonl(conv(("user", "q"), ("assistant", "a"))) + line[:-3] + "\n")
    e = error_of(broken)
    assert e.line == 2 and e.reason == "bad_json"
    assert len(str(e)) < 600  # the message shows a window around the error, not the 10 MB line
    arr = write(tmp_path, "broken.json", "[" + line[:-3])
    assert error_of(arr).reason == "bad_json"
    assert time.perf_counter() - t < 10  # about 1 s; a quadratic scan would take minutes


def test_cli_formats_table(cli):
    code, out, _ = cli(["data", "formats"])
    assert code == 0
    assert all(name in out for name in FORMATS)
    assert "questionID" in out and "--format" in out
    assert "[[question," in out  # shown literally, not eaten as Rich markup


def test_corrupt_gzip_is_a_whole_file_error(tmp_path):
    gz = write(tmp_path, "broken.jsonl.gz", "not gzip at all")
    assert error_of(gz).reason == "bad_gzip"
    res = read_conversations([gz, FIX / "openai.jsonl"], skip_invalid=True, show_progress=False)
    assert res.skipped == {"bad_gzip": 1} and len(res.conversations) == 2
