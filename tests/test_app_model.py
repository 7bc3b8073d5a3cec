"""Drafting with the real default model: every draft parses (50 varied inputs, Chinese and English), and the app
drafts through a `psyassist serve` endpoint with response_format the same way.

    pytest -m slow tests/test_app_model.py
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from psyassist.app.config import AppConfig
from psyassist.app.notes.draft import PastNote, draft_messages, final_sections, parse_draft, select_context
from psyassist.app.notes.templates import load_templates

pytestmark = pytest.mark.slow

ZH = ["来访者19岁，高三复读，考试前心慌手抖，失眠，父母期望很高。", "她说最近和男朋友分手了，每天哭，吃不下饭。",
      "男，35岁，工作压力大，经常加班，对孩子发脾气后很内疚。", "大一新生，不适应宿舍生活，和室友冲突，想退学。",
      "母亲去世半年，仍然每天梦到她，无法集中精力工作。", "来访者说自己总是担心别人怎么看她，不敢在课堂上发言。",
      "退休教师，觉得生活没有意义，整天待在家里。", "孩子沉迷游戏，父母和他一说话就吵架，来访者是母亲。",
      "来访者反复洗手，每天超过两个小时，知道没必要但停不下来。", "怀孕七个月，担心生产，晚上睡不着，丈夫不理解。",
      "高中生，被同学孤立，不想去学校，成绩下降。", "创业失败，欠了债，觉得对不起家人，酒喝得越来越多。",
      "来访者：我就是觉得很累，什么都不想做，也说不清为什么。", "父母离婚后跟着奶奶生活，十四岁，经常逃课。",
      "研究生，导师要求严格，论文写不出来，头发大把掉。", "护士，疫情期间连续工作，现在一听到救护车声音就心跳加速。",
      "来访者说婆媳关系紧张，丈夫总站在母亲那边。", "刚搬到新城市，没有朋友，周末一个人待着很孤单。",
      "中年男性，体检查出高血压后一直担心自己会猝死。", "来访者说她暴饮暴食后又催吐，已经持续半年。",
      "大学生，出柜后家里断了生活费，压力很大。", "来访者经常头痛胃痛，去医院检查都正常，医生建议心理咨询。",
      "独生子女，父母生病需要照顾，工作和家庭两头顾不上。", "来访者说自己一紧张就结巴，面试总是失败。",
      "初中生，被网络上的评论伤害，开始不愿意出门。"]
EN = ["A 19-year-old repeating her final school year panics before exams, sleeps badly and her parents expect a lot.",
      "He lost his job three months ago and stays in bed until noon.", "She feels her partner controls her money.",
      "A nurse keeps reliving a patient's death and avoids the ward where it happened.",
      "The client says he has no friends since moving for work and drinks alone most nights.",
      "Teenager, parents divorcing, grades dropping, angry outbursts at school.",
      "She cannot stop checking the stove and door locks before leaving home.",
      "Grieving father, son died in an accident last year, blames himself.",
      "A graduate student procrastinates on her thesis and feels like a fraud.",
      "He reports panic attacks on the subway and now takes taxis everywhere.",
      "New mother, tearful most days, worries she is not bonding with the baby.",
      "Client describes constant worry about health despite normal test results.",
      "Retired engineer feels useless and irritable, conflicts with his wife.",
      "She was bullied at work and now dreads Monday mornings.",
      "A student athlete injured his knee and lost his scholarship.", "Client hears criticism in every comment.",
      "He gambles online at night and hides the losses from his family.",
      "She has trouble saying no and feels exhausted by everyone's requests.",
      "Adolescent self-conscious about acne, skips social events.", "Couple argues about chores every evening.",
      "Caregiver for a mother with dementia, no time for herself, sleeps four hours.",
      "A musician with stage fright is considering quitting the orchestra.",
      "He feels numb since his military deployment and startles easily.",
      "She binge-watches shows until 4 am and misses morning classes.",
      "Client says: I just want to feel something again."]


@pytest.fixture(scope="module")
def inprocess():
    from psyassist.app.llm import InProcess

    b = InProcess(AppConfig(max_batch=16))
    b.start()
    yield b
    b.close()


async def _draft(backend, template, text: str, history: list[PastNote], max_tokens: int = 768) -> tuple[str, tuple]:
    ctx = select_context({"mental_state": "焦虑 anxious"}, history, 600, backend.count_tokens)
    parts, end = [], None
    async for ev in backend.stream(draft_messages(template, ctx, text), schema=template.json_schema(),
                                    max_tokens=max_tokens):
        if ev[0] == "delta":
            parts.append(ev[1])
        else:
            end = ev
    return "".join(parts), end


def test_fifty_varied_inputs_all_parse_with_the_default_model(inprocess):
    templates = load_templates()
    seed = templates["seed004"]
    history = [PastNote("n1", "2026-11-20", seed, {"counseling_question": ["exam stress"], "symptom_type": ["anxiety"],
                                                   "reasons": ["parental pressure"], "advice": ["CBT"]})]
    names = ["seed004", "soap", "dap", "birp"]  # the schema drives drafting: every built-in format is exercised
    jobs = [(templates[names[i % 4]], text) for i, text in enumerate(ZH + EN)]
    assert len(jobs) == 50

    async def run():
        return await asyncio.gather(*[_draft(inprocess, t, text, history) for t, text in jobs])

    t0 = time.perf_counter()
    results = asyncio.run(run())
    secs = time.perf_counter() - t0
    parsed, cut, items = 0, 0, 0
    for (t, _text), (raw, end) in zip(jobs, results, strict=True):
        content, problems = parse_draft(t, raw)
        assert isinstance(content["sections"], dict) and set(content["sections"]) == {s.key for s in t.sections}
        strict = json.loads(raw) if end[1] == "stop" else None  # a finished reply is complete, valid JSON
        if strict is not None:
            assert set(strict) == {s.key for s in t.sections} | {"basic_info_updates"}
            parsed += 1
        else:
            cut += 1
        items += sum(len(v) for v in final_sections(t, content).values())
    print(f"50 drafts in {secs:.0f} s: {parsed} finished as complete JSON, {cut} cut by the 768-token cap and "
          f"closed; {items} items")
    # Measured here: 42 of 50 end on their own (SmolLM2 sometimes loops until a string cap); all 50 parse.
    assert parsed + cut == 50 and parsed >= 40
    assert items >= 50


def test_the_app_drafts_through_psyassist_serve_with_response_format(tmp_path):
    """`--backend openai` against a real `psyassist serve`: the endpoint enforces the same schema."""
    import subprocess
    import sys

    import httpx

    from app_helpers import free_port
    from psyassist.app.llm import OpenAIEndpoint

    port = free_port()
    # What is tested is the schema the endpoint enforces, not the length: 256 tokens (a cut draft is closed and
    # kept) and a generous request timeout, since a loaded 2-core CI machine writes only a few tokens a second.
    proc = subprocess.Popen([sys.executable, "-m", "psyassist", "serve", "--model", "default", "--port", str(port),
                             "--request-timeout", "1200"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        backend = OpenAIEndpoint(AppConfig(backend="openai", endpoint=f"http://127.0.0.1:{port}/v1", model="default"))
        t = load_templates()["seed004"]

        async def run():
            out = await asyncio.gather(*[_draft(backend, t, x, [], max_tokens=256) for x in (ZH[0], EN[0])])
            await backend.client.aclose()
            return out

        for raw, end in asyncio.run(run()):
            assert end[0] == "done"
            content, problems = parse_draft(t, raw)
            if end[1] == "stop":
                assert not problems and json.loads(raw)["reasons"]
    finally:
        proc.terminate()
        proc.wait(30)
