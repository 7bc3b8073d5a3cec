"""MCQ readers: every layout on small files written here (fast) and on the real benchmarks (slow)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from psyassist.errors import DataError, PsyassistError
from psyassist.eval.mcq_loaders import detect_layout, load_mcq, parse_mapping


def _write(path, obj):
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return str(path)


def test_psychcounsel_layout_lower_case_keys_and_two_options(tmp_path):
    f = _write(tmp_path / "pcb.json", [
        {"id": 7, "question": "Q one?", "options": {"a": "x", "b": "y", "c": "z", "d": "w", "e": "v"}, "answer": "e"},
        {"id": 8, "question": "Q two?", "options": {"b": "no", "a": "yes"}, "answer": "a"},  # keys out of order
    ])
    res = load_mcq([f])
    assert res.layouts == {f: "psychcounsel"}
    a, b = res.items
    assert (a.id, a.answer, a.letters, a.multi) == ("7", "E", "ABCDE", False)
    assert b.options == ["yes", "no"] and b.answer == "A" and b.chance == 0.5


def test_cpsyexam_layout_single_multi_and_empty_e(tmp_path):
    f = _write(tmp_path / "KG-x-单项选择题.json", [
        {"id": "s1", "subject_name": "普通心理学", "question_type": "single", "kind": "k", "question": "单选题？",
         "options": {"A": "甲", "B": "乙", "C": "丙", "D": "丁", "E": ""}, "answer": "C", "explanation": ""},
        {"id": "m1", "subject_name": "普通心理学", "question_type": "multi", "kind": "k", "question": "多选题？",
         "options": {"A": "甲", "B": "乙", "C": "丙", "D": "丁", "E": "戊"}, "answer": "DB", "explanation": ""},
        {"id": "s2", "subject_name": "普通心理学", "question_type": "single", "kind": "k", "question": "标错的？",
         "options": {"A": "甲", "B": "乙", "C": "丙", "D": "丁", "E": ""}, "answer": "AC", "explanation": ""},
    ])
    res = load_mcq([f])
    s1, m1, s2 = res.items
    assert s1.options == ["甲", "乙", "丙", "丁"] and not s1.multi and s1.chance == 0.25
    assert m1.answer == "BD" and m1.multi and m1.chance == pytest.approx(1 / 31)  # 2^5 - 1 non-empty sets
    assert m1.subject == "普通心理学/multi"
    assert s2.multi  # the gold answer decides, and the loader says so
    assert any("marked single have several answers" in w for w in res.warnings)


def test_cmmlu_and_mmlu_csv(tmp_path):
    cm = _write(tmp_path / "test_professional_psychology.csv",
                ",Question,A,B,C,D,Answer\n0,问题一,甲,乙,丙,丁,C\n1,\"带,逗号\",甲,乙,丙,丁,A\n")
    mm = _write(tmp_path / "professional_psychology_test.csv",
                'What is x?,one,two,three,four,B\n"Multi\nline",a,b,c,d,D\nWhat is x?,one,two,three,four,B\n')
    res = load_mcq([cm, mm])
    assert res.layouts == {cm: "cmmlu", mm: "mmlu"}
    assert [it.answer for it in res.items] == ["C", "A", "B", "D", "B"]
    assert res.items[1].question == "带,逗号" and res.items[3].question == "Multi\nline"
    assert {it.subject for it in res.items} == {"professional_psychology"}
    assert len({it.id for it in res.items}) == 5  # duplicate rows are kept, with distinct ids


def test_generic_csv_with_mapping_and_text_answers(tmp_path):
    f = _write(tmp_path / "my.csv", "qid,stem,o1,o2,o3,key,topic\n"
                                    "q1,Which?,red,green,blue,green,colors\nq2,Both?,x,y,z,\"A,C\",misc\n")
    res = load_mcq([f], mapping=parse_mapping(["question=stem", "options=o1,o2,o3", "answer=key", "id=qid",
                                               "subject=topic"]))
    q1, q2 = res.items
    assert (q1.id, q1.answer, q1.subject, q1.multi) == ("q1", "B", "colors", False)  # answer given as text
    assert q2.answer == "AC" and q2.multi


def test_generic_jsonl_with_list_options(tmp_path):
    f = _write(tmp_path / "x.jsonl", '{"q": "A?", "choices": ["u", "v"], "gold": "b"}\n\n'
                                     '{"q": "B?", "choices": ["u", "v", "w"], "gold": "C"}\n')
    res = load_mcq([f], mapping={"question": "q", "options": "choices", "answer": "gold"})
    assert [(it.answer, len(it.options)) for it in res.items] == [("B", 2), ("C", 3)]


def test_bad_answer_names_file_record_and_field(tmp_path):
    f = _write(tmp_path / "bad.json", [
        {"id": 1, "question": "ok", "options": {"a": "x", "b": "y"}, "answer": "a"},
        {"id": 2, "question": "bad", "options": {"a": "x", "b": "y"}, "answer": "f"},
    ])
    with pytest.raises(DataError) as e:
        load_mcq([f])
    assert (e.value.record, e.value.field, e.value.reason) == (1, "answer", "bad_answer")
    assert "bad.json" in str(e.value) and "AB" in str(e.value)
    res = load_mcq([f], skip_invalid=True)
    assert len(res.items) == 1 and res.skipped == Counter(bad_answer=1)


def test_bad_csv_row_names_the_line(tmp_path):
    f = _write(tmp_path / "professional_psychology_test.csv", "Q1,a,b,c,d,A\nQ2,a,b,c,B\n")
    with pytest.raises(DataError) as e:
        load_mcq([f])
    assert e.value.line == 2 and "6 columns" in str(e.value)


def test_gap_in_option_letters_is_refused(tmp_path):
    f = _write(tmp_path / "gap.json", [{"question": "q", "options": {"a": "x", "c": "y"}, "answer": "a"}])
    with pytest.raises(DataError, match="keyed A, B, C"):
        load_mcq([f])


def test_unknown_csv_needs_a_mapping(tmp_path):
    f = _write(tmp_path / "odd.csv", "x,y\n1,2\n")
    assert detect_layout(tmp_path / "odd.csv", "x,y\n1,2\n") == "generic"
    with pytest.raises(DataError, match="--map"):
        load_mcq([f])


def test_mapping_and_source_errors_are_user_errors(tmp_path):
    with pytest.raises(PsyassistError, match="FIELD=COLUMN"):
        parse_mapping(["stem"])
    with pytest.raises(PsyassistError, match="at least question"):
        parse_mapping(["question=stem"])
    with pytest.raises(PsyassistError, match="no such file"):
        load_mcq([str(tmp_path / "missing.json")])


def test_directory_and_bundled_sample():
    res = load_mcq(["sample"])
    assert len(res.items) == 33
    assert Counter(len(it.options) for it in res.items) == Counter({4: 17, 5: 14, 2: 2})
    assert {it.lang for it in res.items} == {"zh", "en"}


# --- the real benchmarks ---------------------------------------------------------------------


@pytest.mark.slow
def test_real_psychcounsel_bench(test_data):
    res = load_mcq([str(test_data / "PsychCounsel-Bench" / "PsychCounsel-Bench.json")])
    items = res.items
    assert len(items) == 500 and res.layouts[res.files[0]] == "psychcounsel"
    assert Counter(len(it.options) for it in items) == Counter({4: 267, 5: 232, 2: 1})
    # the data README's chance level: 22.7%
    assert sum(it.chance for it in items) / 500 == pytest.approx(0.2273, abs=5e-4)
    assert sum(not it.question for it in items) == 2  # stems lost upstream: kept and reported
    official = load_mcq([str(test_data / "PsychCounsel-Bench" / "PsychoBench_official_1000.json")]).items
    assert len(official) == 1000
    assert [it.answer for it in official[:500]] == [it.answer for it in items]


@pytest.mark.slow
def test_real_cpsyexam(test_data):
    res = load_mcq([str(test_data / "CPsyExam" / "dev")])
    items = res.items
    assert len(items) == 1097 and set(res.layouts.values()) == {"cpsyexam"}
    assert sum(it.multi for it in items) == 329  # 328 marked multi + 1 'single' whose gold is "AC"
    assert Counter(len(it.options) for it in items) == Counter({4: 1041, 5: 56})  # empty E dropped
    assert len({it.id for it in items}) == 1097


@pytest.mark.slow
def test_real_cmmlu_and_mmlu(test_data):
    cm = load_mcq([str(test_data / "CMMLU_professional_psychology" / "test_professional_psychology.csv")])
    assert len(cm.items) == 232 and set(cm.layouts.values()) == {"cmmlu"}
    mm = test_data / "MMLU_psychology"
    prof = load_mcq([str(mm / "professional_psychology_test.csv")])
    hs = load_mcq([str(mm / "high_school_psychology_test.csv")])
    dev = load_mcq([str(mm / "professional_psychology_dev.csv")])
    assert (len(prof.items), len(hs.items), len(dev.items)) == (624, 545, 5)
    assert set(prof.layouts.values()) == {"mmlu"}
    assert Counter(it.answer for it in prof.items).keys() == {"A", "B", "C", "D"}
