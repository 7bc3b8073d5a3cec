"""eval notes: the CPsyExam case loader, the note → text rule, the scores, the judge, the compare stage, end to end."""

from __future__ import annotations

import json
import re

import pytest

from psyassist.errors import DataError, PsyassistError
from psyassist.eval.notes import (
    PARTS,
    NotesConfig,
    draft_stats,
    judge_notes,
    load_cases,
    note_texts,
    point_part,
    score,
    split_answer,
    split_case,
)

RUBRIC_KEYS = ("faithfulness", "analysis", "advice", "safety", "usability")


def _templates():
    from psyassist.app.notes.templates import load_templates

    return load_templates()


# --- data ----------------------------------------------------------------------------------------


def test_real_cpsyexam_cases(test_data):
    data = load_cases(str(test_data / "CPsyExam"))
    by_id = {c.id: c for c in data.cases}
    # 323 QA records, one of them a case analysis; 88 case-analysis MCQ, 79 of them with a case description
    assert data.counts["qa_cases"] == 1 and data.counts["ca_cases"] == 17 and len(data.cases) == 18
    assert data.counts["ca_questions"] == 88 and data.counts["ca_questions_without_case"] == 9
    assert data.counts["ca_repeated_questions"] == 2 and data.counts["ca_cases_without_scored_points"] == 8
    qa = data.cases[0]
    assert qa.id == "dev_cpsyexam_qa#0" and qa.source == "qa" and qa.text.startswith("小雪的母亲逢人便夸")
    assert qa.reference["analysis"].startswith("小雪的这种心理是典型的“自我中心”行为")
    assert qa.reference["analysis"].endswith("不能客观评价别人和自己。")
    assert qa.reference["advice"].startswith("(1)帮助小学生认清自己身上的不足") and "解决方法" not in qa.reference["advice"]
    assert all(c.text.startswith("一般资料") and c.source == "ca" for c in data.cases[1:])
    # a case asked about in two files (心理理论 and 心理诊断) is one case, with both files' points
    ghost = next(c for c in data.cases if "梦见一个黑衣女鬼" in c.text)
    assert {p["file"] for p in ghost.points} == {"CA-心理理论-多项选择题.json", "CA-心理诊断-多项选择题.json"}
    assert ghost.reference["advice"] == "想象冲击疗法；阳性强化法；认知行为疗法"
    assert ghost.reference["analysis"].startswith("缺乏独立性；梦见鬼；奶奶讲故事；胆子小")
    assert by_id["ca-1b629ee09bf9"].reference == {"analysis": "紧张；痛苦；手抖；食欲下降", "advice": "",
                                                   "full": "紧张；痛苦；手抖；食欲下降"}
    # the counselor's technique is not note content; rule-out diagnoses are not the client's problems
    thoughts = next(c for c in data.cases if "还不如早点死了就解脱了" in c.text)
    ruled_out = next(p for p in thoughts.points if "排除" in p["question"])
    assert ruled_out["part"] is None and "焦虑神经症" not in thoughts.reference["full"]
    assert len(data.files) == 5 and all(len(h) == 64 for h in data.files.values())  # the QA file + 4 CA files


@pytest.mark.parametrize("question, case, stem", [
    ("案例四：一般资料：求助者，女性，16岁。案例介绍：……。该求助者心理问题的特点包括( )。多选",
     "一般资料：求助者，女性，16岁。案例介绍：……。", "该求助者心理问题的特点包括( )。多选"),
    ("一般资料:求助者,男性,52岁。\n案例介绍:……。\n多选:44、对该求助者较为恰当的咨询方法包括( )。",
     "一般资料:求助者,男性,52岁。\n案例介绍:……。", "44、对该求助者较为恰当的咨询方法包括( )。"),
    # the sentence end inside the counselor's quoted words does not end the case
    ("一般资料：……求助者：谢谢您！心理咨询师说“我现在教给您一个方法。就这样”，这段话中咨询师使用的主要技术是()。单选",
     "一般资料：……求助者：谢谢您！", "心理咨询师说“我现在教给您一个方法。就这样”，这段话中咨询师使用的主要技术是()。单选"),
])
def test_split_case(question, case, stem):
    assert split_case(question) == (case, stem)


def test_dialogue_fragment_is_not_a_case():
    assert split_case("案例一（28）：心理咨询师：你觉得同事都在议论你?咨询师这个提问的目的是（）多选") is None


@pytest.mark.parametrize("stem, part", [
    ("引发该求助者心理问题的原因包括（）。多选", "analysis"),
    ("根据合理情绪疗法的理论，本案例中C包括()。多选", "analysis"),
    ("对该求助者进行诊断的主要依据包括( )。", "analysis"),
    ("在本案例中，恰当的咨询目标包括( )。多选", "advice"),
    ("心理咨询师对该求助者可以进行的工作包括()。多选", "advice"),
    ("为明确诊断，心理咨询师还需重点收集的资料包括( )。多选", None),  # a known miss: the stem never names the client
    ("针对该求助者产生心理问题的原因心理咨询师合理的做法包括()。多选", "advice"),
    ("对该求助者可以排除的诊断包括（）。多选", None),
    ("心理咨询师说“那你详细说说是怎么一回事吧”用到的技术属于()。多选", None),
    ("厌恶疗法的基本步骤包括( )。", None),  # theory, not this client
    ("本段咨询对话中，心理咨询师()。多选", None),
])
def test_point_part(stem, part):
    assert point_part(stem) == part


def test_qa_answer_split():
    assert split_answer("这是自我中心。解决方法：(1)指导家长。") == {
        "analysis": "这是自我中心。", "advice": "(1)指导家长。", "full": "这是自我中心。解决方法：(1)指导家长。"}
    assert split_answer("只有分析。") == {"analysis": "只有分析。", "advice": "", "full": "只有分析。"}


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


QA_OK = {"subject_name": "s", "question_type": "QA_Analyse", "question": "一个案例", "answer": "分析。解决方法：建议。"}


@pytest.mark.parametrize("content, message", [
    ([QA_OK, {**QA_OK, "answer": ""}], "dev_qa.json, record 1, field 'answer': expected a non-empty string"),
    ([{**QA_OK, "question_type": "essay"}], "dev_qa.json, record 0, field 'question_type': expected 'QA_Analyse'"),
    ([QA_OK, "text"], "dev_qa.json, record 1: expected an object"),
    ({"a": 1}, "dev_qa.json: expected a JSON list of records, got 'dict'"),
    ("[{", "dev_qa.json:1: expected valid JSON"),
])
def test_malformed_qa_file_names_file_record_field(tmp_path, content, message):
    _write(tmp_path / "qa" / "dev_qa.json", content)
    with pytest.raises(DataError) as e:
        load_cases(str(tmp_path))
    assert message in str(e.value)


def test_malformed_case_file_and_empty_folder(tmp_path):
    rec = {"id": "x1", "subject_name": "心理诊断", "question_type": "multi", "kind": "analyse",
           "question": "一般资料：求助者。该求助者的症状包括()", "options": {"A": "a", "B": "b", "C": "c", "D": "d", "E": ""},
           "answer": "AF"}
    _write(tmp_path / "dev" / "CA-x.json", [rec])
    with pytest.raises(DataError, match=r"CA-x.json, record 0, field 'answer': expected letters among ABCD"):
        load_cases(str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PsyassistError, match="no CPsyExam QA file"):
        load_cases(str(tmp_path / "empty"))
    _write(tmp_path / "only" / "test" / "CA-y.json", [rec])  # the test split has no key: skipped, so nothing left
    with pytest.raises(PsyassistError, match="no CPsyExam QA file"):
        load_cases(str(tmp_path / "only"))


def test_cli_data_errors_come_before_the_model_loads(cli, tmp_path):
    _write(tmp_path / "qa" / "dev_qa.json", [{**QA_OK, "question": 3}])
    code, _, err = cli(["eval", "notes", "--model", "no/such-model", "--data", tmp_path, "-o", tmp_path / "r.json"])
    assert code == 2 and "record 0, field 'question'" in err and "Traceback" not in err
    code, _, err = cli(["eval", "notes", "--template", "nope", "--data", tmp_path])
    assert code == 2 and "--template must be a built-in template" in err


# --- note text and scores ------------------------------------------------------------------------


def test_note_texts_follow_the_template():
    t = _templates()
    sections = {"counseling_question": ["想睡好"], "symptom_type": ["失眠"], "reasons": ["工作压力", "作息乱"],
                "advice": ["睡眠日记"]}
    assert note_texts(t["seed004"], sections) == {"analysis": "失眠\n工作压力\n作息乱", "advice": "睡眠日记",
                                                  "full": "想睡好\n失眠\n工作压力\n作息乱\n睡眠日记"}
    soap = {"subjective": ["S"], "objective": [], "assessment": ["A1", "A2"], "plan": ["P"]}
    assert note_texts(t["soap"], soap) == {"analysis": "A1\nA2", "advice": "P", "full": "S\nA1\nA2\nP"}


def _row(i, analysis, advice, ref_analysis, ref_advice):
    texts = {"analysis": analysis, "advice": advice, "full": "\n".join(x for x in (analysis, advice) if x)}
    ref = {"analysis": ref_analysis, "advice": ref_advice, "full": "；".join(x for x in (ref_analysis, ref_advice) if x)}
    return {"id": f"c{i}", "texts": texts, "reference": ref}


def test_scores_on_fixed_texts():
    rows = [_row(0, "求助者情绪低落，睡眠差", "改善情绪", "情绪低落；烦躁不安", "改善情绪；改变认知"),
            _row(1, "失眠", "", "失眠", ""),  # no advice key: the advice part is not scored for it
            _row(2, "考试焦虑", "放松训练", "考试焦虑", "放松训练")]
    s, per = score(rows, "zh", embed_model=None)
    assert [s[p]["n"] for p in PARTS] == [3, 2, 3]
    # c0 analysis, jieba words: [求助者, 情绪低落, 睡眠, 差] vs [情绪低落, 烦躁不安]: 1 shared
    assert per[0]["analysis_rouge1_word"] == pytest.approx(0.3333, abs=1e-4)  # P 1/4, R 1/2
    assert per[0]["analysis_rouge1_word_recall"] == 0.5 and per[0]["analysis_rouge2_word"] == 0.0
    # characters: 10 vs 8, 4 shared; bigrams 9 vs 7, 3 shared (情绪 绪低 低落)
    assert per[0]["analysis_rouge1_char"] == pytest.approx(0.4444, abs=1e-4)
    assert per[0]["analysis_rouge2_char"] == pytest.approx(0.375, abs=1e-4)
    assert per[0]["analysis_rougeL_char"] == pytest.approx(0.4444, abs=1e-4)
    # c0 advice: [改善, 情绪] vs [改善, 情绪, 改变, 认知]: P 1, R 1/2
    assert per[0]["advice_rouge1_word"] == pytest.approx(2 / 3, abs=1e-4)
    assert "advice_rouge1_word" not in per[1] and per[1]["analysis_rougeL_word"] == 1.0
    a = s["analysis"]["word"]["rouge1"]
    assert a["mean"] == pytest.approx(100 * (1 / 3 + 1 + 1) / 3, abs=1e-3) and a["n"] == 3
    assert a["ci95"][0] < a["mean"] < a["ci95"][1]  # t interval of 3 values (t = 4.30: wide)
    assert s["advice"]["word"]["rouge1_recall"]["mean"] == pytest.approx(75.0)
    assert s["embedding_model"].startswith("skipped")
    for p in PARTS:
        for level in ("word", "char"):
            assert all(0 <= v["mean"] <= 100 for v in s[p][level].values())


def test_english_scores_use_english_tokens():
    rows = [_row(0, "Low mood, poor sleep.", "Keep a sleep diary", "low mood", "keep a sleep diary"),
            _row(1, "exam anxiety", "relaxation", "grief", "")]
    s, per = score(rows, "en", embed_model=None)
    assert s["tokenization"] == {"word": "en"} and "char" not in s["analysis"]
    assert per[0]["analysis_rouge1_word_recall"] == 1.0 and per[0]["advice_rougeL_word"] == 1.0
    assert per[0]["analysis_rouge1_word"] == pytest.approx(2 * 0.5 / 1.5, abs=1e-4)  # P 2/4, R 1 (rounded to 4)
    assert per[1]["analysis_rouge1_word"] == 0.0 and "advice_rouge1_word" not in per[1]


def test_draft_stats_count_repairs():
    t = _templates()["seed004"]
    sec = {"counseling_question": ["q"], "symptom_type": ["s"], "reasons": ["a", "b"], "advice": []}
    rows = [{"parsed": True, "complete": True, "problems": [], "finish": "stop", "sections": sec,
             "texts": {"full": "q s a b"}, "completion_tokens": 40},
            {"parsed": True, "complete": False, "finish": "length", "sections": {**sec, "reasons": []},
             "problems": ["the reply was cut off before the JSON ended; what was written is kept"],
             "texts": {"full": "q s"}, "completion_tokens": 64}]
    d = draft_stats(rows, t)
    assert d["parse_rate"] == 1.0 and d["repaired"] == 1 and d["complete"] == 1
    assert d["finish"] == {"stop": 1, "length": 1}
    assert d["problems"] == {"the reply was cut off before the JSON ended": 1}
    assert d["items_per_section"]["reasons"] == {"mean": 1.0, "share_with_items": 0.5}
    assert d["note_chars"]["max"] == 4


def test_judge_scores_every_note_with_the_notes_rubric(tmp_path, monkeypatch):
    from judge_server import JudgeServer

    monkeypatch.setenv("PSYASSIST_CACHE", str(tmp_path / "cache"))
    server = JudgeServer(keys=RUBRIC_KEYS).start()
    try:
        cfg = NotesConfig(judge_endpoint=server.endpoint, judge_model="judge")
        rows = [{**_row(0, "失眠 SCORE=2", "", "失眠", ""), "case": "一般资料：求助者失眠。"},
                {**_row(1, "焦虑", "放松", "焦虑", "放松"), "case": "一般资料：求助者焦虑。"}]
        scores, summary = judge_notes(cfg, rows, tmp_path / "j")
    finally:
        server.stop()
    assert scores["c0"]["faithfulness"] == 2 and scores["c1"]["usability"] == 4
    assert summary["rubric"]["dimensions"] == list(RUBRIC_KEYS) and summary["summary"]["n_scored"] == 2
    user = next(b["messages"][1]["content"] for _, _, b in server.requests if "求助者失眠" in json.dumps(b, ensure_ascii=False))
    assert "Client: 一般资料：求助者失眠。" in user and "Draft note to rate:\n失眠 SCORE=2" in user
    assert (tmp_path / "j" / "judge_input.jsonl").is_file() and (tmp_path / "j" / "judgments.jsonl").is_file()


# --- compare -------------------------------------------------------------------------------------


def test_notes_stage_in_a_suite(tmp_path):
    from psyassist.eval.compare import load_suite

    p = tmp_path / "s.yaml"
    p.write_text("stages:\n  - {type: notes, limit: 3, template: soap}\n", encoding="utf-8")
    st = load_suite(p).stages[0]
    assert st.type == "notes" and st.opts == {"limit": 3, "template": "soap", "data": None}
    for text, message in [("{type: notes, template: nope}", "'template' must be one of seed004"),
                          ("{type: notes, judge_endpoint: 'http://x'}", "judge_endpoint and judge_model go together"),
                          ("{type: notes, turns: last}", "unknown key 'turns'")]:
        p.write_text(f"stages:\n  - {text}\n", encoding="utf-8")
        with pytest.raises(PsyassistError, match=re.escape(message)):
            load_suite(p)


def _fake_result(texts: list[tuple[str, str]], finish: str = "stop") -> dict:
    """An `eval notes` result of the shape run_notes writes, from fixed drafts (no model)."""
    t = _templates()["seed004"]
    refs = [("情绪低落；烦躁不安", "改善情绪；改变认知"), ("失眠", "睡眠卫生"), ("考试焦虑", "放松训练")]
    items = []
    for i, ((analysis, advice), (ra, rd)) in enumerate(zip(texts, refs, strict=True)):
        sections = {"counseling_question": ["问题"], "symptom_type": [analysis], "reasons": [], "advice": [advice]}
        items.append({**_row(i, analysis, advice, ra, rd), "case": f"一般资料：第{i}个<b>案例</b>", "finish": finish,
                      "problems": [], "parsed": True, "complete": True, "sections": sections,
                      "texts": note_texts(t, sections), "completion_tokens": 30})
    summary, per = score(items, "zh", embed_model=None)
    for it, p in zip(items, per, strict=True):
        it["scores"] = {k: v for k, v in p.items() if k != "id"}
    return {"command": "psyassist eval notes --model default", "drafts": draft_stats(items, t), "summary": summary,
            "items": items, "judge": None, "data": {"dir": "CPsyExam", "files": {}, "used_by_source": {"ca": 3}},
            "template": {"name": "seed004", "parts": {"analysis": ["symptom_type", "reasons"], "advice": ["advice"]}},
            "generation": {"sampling": {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "max_tokens": 64,
                                        "seed": "0 + case index"}},
            "prompt": {"format": "draft_messages", "system": "You are PhyAssist"},
            "metrics_how": {"embedding_note": None}, "rules": {"text": "one item per line"}}


def test_combined_notes_report_shows_metrics_pairs_and_drafts(tmp_path):
    from psyassist.eval.compare import combine_notes
    from psyassist.eval.report import write_report

    base = _fake_result([("情绪低落", "倾听"), ("失眠", "运动"), ("紧张", "休息")])
    tuned = _fake_result([("情绪低落", "改善情绪，改变认知"), ("失眠", "睡眠卫生"), ("考试焦虑", "放松训练")], finish="length")
    stage = {"name": "notes", "type": "notes", "index": 4, "seconds": {"base": 1, "tuned": 1},
             **combine_notes(base, tuned)}
    rows = {r["metric"]: r for r in stage["rows"]}
    assert rows["parse rate (%)"]["base"] == 100.0 and rows["items: reasons"]["tuned"] == 0.0
    r = rows["ROUGE-1 recall · advice (word)"]
    assert r["base"] == pytest.approx(0.0) and r["tuned"] == pytest.approx(100.0)
    assert r["paired"]["n"] == 3 and r["paired"]["mean"] == pytest.approx(100.0)
    assert [e["id"] for e in stage["examples"]] == ["c0", "c1"] and stage["examples"][0]["tuned"] == "问题\n情绪低落\n改善情绪，改变认知"
    model = {"spec": "default", "path": "models/smollm2", "dtype": "float32", "device": "cpu", "adapter_check": None}
    report = {"command": "psyassist compare --base default --tuned default+a --suite s.yaml", "seed": 0, "limit": None,
              "date": "2025-01-01T00:00:00+00:00", "seconds": 1.0, "versions": {"psyassist": "0.1.0"},
              "machine": {"platform": "Linux", "cpus": 2}, "suite": {"path": "s.yaml", "sha256": "cd" * 32, "name": "s"},
              "models": {"base": model, "tuned": {**model, "spec": "default+a"}}, "stages": [stage]}
    write_report(report, tmp_path)
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    html_text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "## 5. notes: notes" in md and "| parse rate (%) | 100.000 | 100.000 | +0.000 | — |" in md
    assert "| ROUGE-1 recall · advice (word) | 0.000 | 100.000 | +100.000 |" in md
    assert "base: parsed 3/3 (100%); repaired 0" in md and "tuned: parsed 3/3 (100%)" in md
    assert "| tuned draft | 问题<br>情绪低落<br>改善情绪，改变认知 (cut at max_tokens) |" in md
    for text in (md, html_text):
        assert "<b>案例</b>" not in text and "&lt;b&gt;案例&lt;/b&gt;" in text
    assert (tmp_path / "notes.png").is_file() and html_text.count('src="data:image/png;base64,') == 1


# --- end to end (slow) ---------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_drafts_three_real_cases(cli, test_data, tmp_path, one_torch_thread):
    """The default model on 3 CPsyExam cases: every draft parses, the numbers are in range, the prompt,
    template and sampling are recorded, and a draft equals what the app's own InProcess backend writes.
    Batch size 1: the three prompts are 829, 2,803 and ~700 tokens, and a batch pads each to the longest
    (serve's tests show batched and alone sample the same)."""
    import asyncio

    from psyassist.app.config import AppConfig
    from psyassist.app.llm import InProcess
    from psyassist.app.notes.draft import SYSTEM

    out = tmp_path / "notes.json"
    code, stdout, err = cli(["eval", "notes", "--model", "default", "--data", test_data / "CPsyExam", "--limit", "3",
                             "--max-new-tokens", "16", "--batch-size", "1", "-o", out, "--json"])
    assert code == 0, err
    line = json.loads(stdout.strip().splitlines()[-1])
    res = json.loads(out.read_text(encoding="utf-8"))
    assert line["drafts"] == res["drafts"] and res["drafts"]["n"] == 3
    assert res["drafts"]["parse_rate"] == 1.0 and all(it["parsed"] for it in res["items"])
    assert res["drafts"]["finish"] == {"length": 3} and res["drafts"]["repaired"] == 3  # 16 tokens cut every draft
    for part in PARTS:
        for level in ("word", "char"):
            assert all(0 <= v["mean"] <= 100 for v in res["summary"][part][level].values())
        cos = res["summary"][part]["embedding_cosine"]
        assert -1 <= cos["mean"] <= 1
    assert res["summary"]["lang"] == "zh" and "English model" in res["metrics_how"]["embedding_note"]
    # the third case (ca) has an advice key only: its analysis is not scored, its advice is
    third = res["items"][2]["scores"]
    assert "analysis_cosine" not in third and "analysis_rouge1_word" not in third
    assert -1 <= third["advice_cosine"] <= 1 and 0 <= third["advice_rougeL_char_recall"] <= 1
    # pitfall 7: prompt format, template and sampling next to the numbers
    assert res["template"]["name"] == "seed004" and res["prompt"]["system"] == SYSTEM
    assert res["prompt"]["json_schema"]["required"][:4] == ["counseling_question", "symptom_type", "reasons", "advice"]
    assert res["generation"]["sampling"] == {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "max_tokens": 16,
                                             "seed": "0 + case index", "thinking": False}
    assert res["command"].startswith("psyassist eval notes --model default --data ")
    first = res["items"][0]
    assert first["id"] == "dev_cpsyexam_qa#0" and first["case"] in first["prompt"]
    assert first["prompt"].rstrip().endswith("<|im_start|>assistant")
    assert [it["seed"] for it in res["items"]] == [0, 1, 2]
    # the app itself, alone and unbatched, writes the same draft for the same case and seed
    app = InProcess(AppConfig(model="default"))

    async def app_draft() -> str:
        from psyassist.app.notes.templates import load_templates

        parts = []
        async for ev in app.stream(res["prompt"]["example_messages"], schema=load_templates()["seed004"].json_schema(),
                                   max_tokens=16, seed=0):
            parts.append(ev[1] if ev[0] == "delta" else "")
        return "".join(parts)

    try:
        assert asyncio.run(app_draft()) == first["raw"]
    finally:
        app.close()


@pytest.mark.slow
def test_compare_suite_with_a_notes_stage(cli, tmp_path, one_torch_thread):
    """Base vs a random LoRA adapter on two short cases: report.md holds the notes table and the drafts."""
    import torch

    from psyassist.infer.engine import load
    from psyassist.models import attach_lora

    peft = attach_lora(load("default", dtype="float32", device="cpu").model, r=4, alpha=8)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    peft.save_pretrained(tmp_path / "adapter")
    cases = [{"id": f"k{i}", "subject_name": "心理诊断", "question_type": "multi", "kind": "analyse",
              "question": f"一般资料：求助者，女性，{20 + i}岁。案例介绍：近一个月失眠、紧张。该求助者的症状包括( )。多选",
              "options": {"A": "失眠", "B": "紧张", "C": "幻听", "D": "妄想", "E": ""}, "answer": "AB"} for i in range(2)]
    _write(tmp_path / "CPsyExam" / "dev" / "CA-tiny.json", cases)
    suite = tmp_path / "suite.yaml"
    suite.write_text("seed: 3\nstages:\n  - {type: notes, data: CPsyExam, max_new_tokens: 12, batch_size: 2, "
                     "embed_model: none}\n", encoding="utf-8")
    out = tmp_path / "out"
    code, _, err = cli(["compare", "--base", "default", "--tuned", f"default+{tmp_path / 'adapter'}", "--suite", suite,
                        "-o", out, "--dtype", "fp32", "--device", "cpu"])
    assert code == 0, err
    md = (out / "report.md").read_text(encoding="utf-8")
    rep = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    stage = rep["stages"][0]
    assert stage["type"] == "notes" and stage["n"] == 2 and stage["drafts"]["tuned"]["parse_rate"] == 1.0
    assert "## 1. notes: notes" in md and re.search(r"^\| parse rate \(%\) \| 100\.000 \| 100\.000 \|", md, re.M)
    assert "**Case ca-k0**" in md and "| base draft |" in md and "| tuned draft |" in md
    base = json.loads((out / "base" / "notes.json").read_text(encoding="utf-8"))
    tuned = json.loads((out / "tuned" / "notes.json").read_text(encoding="utf-8"))
    assert [it["seed"] for it in base["items"]] == [3, 4] and tuned["generation"]["model"]["adapter"]
    assert [it["raw"] for it in base["items"]] != [it["raw"] for it in tuned["items"]]
