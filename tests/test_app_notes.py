"""Note templates, the JSON-prefix parser, draft content and the history budget (no model, no database).

    pytest tests/test_app_notes.py
"""

from __future__ import annotations

import json

import pytest
import yaml

from psyassist.app.notes.draft import (
    PastNote,
    content_from_model,
    draft_messages,
    final_sections,
    keep_hand_items,
    new_item,
    parse_draft,
    select_context,
)
from psyassist.app.notes.pjson import parse_prefix
from psyassist.app.notes.templates import BASIC_KEYS, load_templates, parse_template
from psyassist.errors import DataError, PsyassistError

T = load_templates()


def test_builtin_templates_and_their_schemas():
    assert {"seed004", "soap", "dap", "birp"} <= set(T)
    seed = T["seed004"]
    assert [s.key for s in seed.sections] == ["counseling_question", "symptom_type", "reasons", "advice"]
    schema = seed.json_schema()
    assert schema["required"] == ["counseling_question", "symptom_type", "reasons", "advice", "basic_info_updates"]
    assert schema["properties"]["reasons"]["maxItems"] == 6 and schema["additionalProperties"] is False
    assert set(schema["properties"]["basic_info_updates"]["required"]) == set(BASIC_KEYS)
    for t in T.values():  # every template's schema is one xgrammar can compile
        from psyassist.infer.grammar import json_grammar

        json_grammar(t.json_schema())


def test_a_clinic_template_from_yaml(tmp_path):
    (tmp_path / "girp.yaml").write_text(yaml.safe_dump({
        "name": "girp", "label": {"en": "GIRP", "zh": "GIRP"},
        "sections": [{"key": "goals", "label": "Goals", "kind": "list", "max_items": 3},
                     {"key": "intervention", "kind": "text", "max_chars": 200}]}), encoding="utf-8")
    t = load_templates(tmp_path)["girp"]
    assert [s.kind for s in t.sections] == ["list", "text"] and t.section("goals").max_items == 3
    assert t.json_schema()["properties"]["intervention"] == {"type": "string", "maxLength": 200}


@pytest.mark.parametrize("data, field", [
    ({"name": "Bad Name", "sections": [{"key": "a"}]}, "name"),
    ({"name": "x", "sections": []}, "sections"),
    ({"name": "x", "sections": [{"key": "a", "kind": "table"}]}, "sections[0].kind"),
    ({"name": "x", "sections": [{"key": "a"}, {"key": "a"}]}, "sections[1].key"),
    ({"name": "x", "sections": [{"key": "a", "max_items": 0}]}, "sections[0].max_items"),
    ({"name": "x", "sections": [{"key": "a", "colour": "red"}]}, "sections[0].colour"),
    ({"name": "x", "sections": [{"key": "basic_info_updates"}]}, "sections[0].key"),
])
def test_a_bad_template_names_file_and_field(data, field):
    with pytest.raises(DataError) as e:
        parse_template(data, "clinic/x.yaml")
    assert "clinic/x.yaml" in str(e.value) and f"'{field}'" in str(e.value)


def test_bad_yaml_names_the_file(tmp_path):
    (tmp_path / "broken.yaml").write_text("name: [unclosed", encoding="utf-8")
    with pytest.raises(PsyassistError, match="broken.yaml: not valid YAML"):
        load_templates(tmp_path)


def test_every_prefix_of_a_json_value_parses():
    full = json.dumps({"q": 'a "quoted" 你好\\path', "reasons": ["一", "two\nlines", ""], "n": -12.5, "ok": True,
                       "o": {"x": None, "y": [1, [2, 3]]}}, ensure_ascii=False)
    for i in range(1, len(full) + 1):
        pre = parse_prefix(full[:i])
        assert pre.value is not None or full[:i].strip() in ("{", "{\""), i
    assert parse_prefix(full).complete and parse_prefix(full).value["q"] == 'a "quoted" 你好\\path'
    pre = parse_prefix('{"reasons":["done","half wri')
    assert pre.value == {"reasons": ["done", "half wri"]} and pre.open_string and not pre.complete
    assert parse_prefix('{"a":"x","b').value == {"a": "x"}  # a half-written key is dropped
    assert parse_prefix('{"a":"\\u4f').value == {"a": ""}  # a half escape is dropped, not mangled


def test_model_json_becomes_editable_items_and_a_cut_reply_is_kept():
    t = T["seed004"]
    cut = '{"counseling_question":"考试焦虑","symptom_type":"学业焦虑","reasons":["父母期望高","失眠头'
    content, problems = parse_draft(t, cut)
    assert [i["text"] for i in content["sections"]["reasons"]] == ["父母期望高", "失眠头"]
    assert problems[0].startswith("the reply was cut off") and "section advice is missing" in problems
    assert all(i["origin"] == "model" and i["model_text"] == i["text"] for i in content["sections"]["reasons"])
    content, problems = parse_draft(t, "not json at all")
    assert content["sections"]["reasons"] == [] and problems == ["the model wrote no JSON object"] + [
        f"section {s.key} is missing" for s in t.sections]
    content, _ = content_from_model(t, {"reasons": ["x" * 999] * 9, "basic_info_updates": {"social": "  "}})
    assert len(content["sections"]["reasons"]) == 6 and len(content["sections"]["reasons"][0]["text"]) == 240
    assert content["basic_info"]["social"] is None  # blank = no change proposed


def test_final_sections_skip_deleted_and_empty_items():
    t = T["seed004"]
    content, _ = content_from_model(t, {"counseling_question": "q", "reasons": ["a", "b"], "advice": ["c"]})
    content["sections"]["reasons"][0]["deleted"] = True
    content["sections"]["advice"].append(new_item("  ", "counselor"))
    assert final_sections(t, content) == {"counseling_question": ["q"], "symptom_type": [], "reasons": ["b"],
                                          "advice": ["c"]}


def test_redrafting_keeps_what_the_counselor_wrote():
    t = T["seed004"]
    old, _ = content_from_model(t, {"counseling_question": "model q", "reasons": ["m1"]})
    old["sections"]["counseling_question"][0].update(text="my question", origin="edited")
    old["sections"]["reasons"].append(new_item("my reason", "counselor"))
    new, _ = content_from_model(t, {"counseling_question": "new q", "reasons": ["n1", "n2"]})
    merged = keep_hand_items(t, old, new)
    assert [i["text"] for i in merged["sections"]["counseling_question"]] == ["my question"]
    assert [i["text"] for i in merged["sections"]["reasons"]] == ["my reason", "n1", "n2"]


def _note(i: int, size: int) -> PastNote:
    return PastNote(f"n{i}", f"2026-0{i + 1}-01", T["seed004"],
                    {"counseling_question": [f"question {i} " + "x" * size], "symptom_type": ["anxiety"],
                     "reasons": ["r" * size], "advice": ["a" * size]})


def test_history_fits_the_budget_newest_whole_then_summaries_then_dropped():
    count = len  # one token per character keeps the arithmetic visible
    notes = [_note(i, 120) for i in range(6)]  # newest first
    ctx = select_context({"demographics": "19 岁"}, notes, 1500, count)
    assert (ctx.whole, ctx.summarized, ctx.dropped) == (["n0", "n1"], ["n2", "n3"], ["n4", "n5"])
    assert ctx.whole + ctx.summarized + ctx.dropped == [n.id for n in notes]
    assert ctx.tokens <= 1500 and "19 岁" in ctx.text and "(not recorded)" in ctx.text
    assert f"({len(ctx.dropped)} older session notes are not shown.)" in ctx.text
    big = select_context({}, notes, 10_000, count)
    assert big.whole == [n.id for n in notes] and not big.summarized and not big.dropped


def test_the_draft_prompt_names_every_section_and_carries_the_input():
    msgs = draft_messages(T["soap"], select_context({}, [], 500, len), "客户说最近睡不好")
    assert msgs[0]["role"] == "system" and "never speak to the client" in msgs[0]["content"]
    for key in ("subjective", "objective", "assessment", "plan", "basic_info_updates"):
        assert f'"{key}"' in msgs[1]["content"]
    assert "客户说最近睡不好" in msgs[1]["content"]
