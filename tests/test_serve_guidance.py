"""Guided replies (issue 13): the crisis-response instruction, and serve adding it to a flagged turn.

    pytest tests/test_serve_guidance.py -q

The serve tests run the real FastAPI app in-process against a stand-in backend that records the
prompt it was given, so they can read exactly what the model would have seen.
"""

from __future__ import annotations

import json

import pytest

from psyassist.errors import DataError
from psyassist.safety.crisis import Detection, detect
from psyassist.safety.guidance import crisis_guidance, message_lang, with_guidance
from tiny_tokenizer import tiny_tokenizer

URGENT = "I took all my pills an hour ago and I feel dizzy."
URGENT_ZH = "我今晚就从楼上跳下去"
CALM = "I can't sleep before exams."


def test_urgent_guidance_names_the_steps_the_resources_and_the_construct():
    g = crisis_guidance(detect(URGENT), "uk", lang="en")
    assert "level urgent" in g and "an attempt" in g  # level and the constructs, in words
    assert "Ask directly whether they are safe right now" in g
    assert "Samaritans" in g and "116 123" in g  # the region's resources, as configured
    assert "emergency services (999)" in g  # an attempt or medical danger: emergency services now
    assert "Never give information about methods, doses" in g


def test_chinese_guidance_and_concern_level():
    d = detect(URGENT_ZH)
    g = crisis_guidance(d, "cn", lang="zh")
    assert "直接询问对方现在是否安全" in g and "010-82951332" in g and "绝不提供任何关于方法" in g
    concern = crisis_guidance(detect("有时候真希望睡一觉就再也不用醒来。"), "cn", lang="zh")
    assert "直接而温和地询问对方是否有自杀或伤害自己的想法" in concern and "想死的念头" in concern
    assert message_lang(URGENT_ZH) == "zh" and message_lang(URGENT) == "en"


@pytest.mark.parametrize(("text", "line"), [
    ("He put his hands around my neck last night and said next time he'll finish the job.",
     "whether the person who hurt them is nearby"),
    ("I'm going to stab my boss tomorrow, the knife is in my bag.", "whether anyone is in danger now"),
    ("The cuts are getting deeper every week and I probably needed stitches.", "Ask about the injury"),
])
def test_constructs_add_what_to_ask(text, line):
    assert line in crisis_guidance(detect(text), "us", lang="en")


def test_nothing_for_a_calm_message_and_a_bad_language_is_refused():
    assert crisis_guidance(detect(CALM), "us", lang="en") == ""
    with pytest.raises(ValueError):
        crisis_guidance(Detection("urgent", ["suicide"]), "us", lang="fr")


def test_with_guidance_joins_the_first_system_message_or_creates_one():
    msgs = [{"role": "user", "content": "hi"}]
    assert with_guidance(msgs, "") is msgs
    assert with_guidance(msgs, "G") == [{"role": "system", "content": "G"}, *msgs]
    sys_msgs = [{"role": "system", "content": "You are kind."}, *msgs]
    assert with_guidance(sys_msgs, "G")[0]["content"] == "You are kind.\n\nG" and sys_msgs[0]["content"] == "You are kind."


def test_a_deployment_file_replaces_the_text_and_is_validated(tmp_path, monkeypatch):
    from psyassist.safety import guidance

    src = guidance.default_path().read_text(encoding="utf-8")
    own = tmp_path / "g.yaml"
    own.write_text(src.replace("Acknowledge what they said and that it took courage", "OUR CLINIC says acknowledge"),
                   encoding="utf-8")
    monkeypatch.setenv("PSYASSIST_CRISIS_GUIDANCE", str(own))
    assert "OUR CLINIC says acknowledge" in crisis_guidance(detect(URGENT), "us", lang="en")
    bad = tmp_path / "bad.yaml"
    bad.write_text(src.replace("exactly as written: {resources}", "exactly as written: {numbers}"), encoding="utf-8")
    monkeypatch.setenv("PSYASSIST_CRISIS_GUIDANCE", str(bad))
    with pytest.raises(DataError, match="placeholders"):
        crisis_guidance(detect(URGENT), "us", lang="en")


# --- serve: the instruction in the model's context for that turn --------------------------------------


class _Backend:
    """Stand-in for HFBackend: records each job and answers "ok" at once."""

    base_name, context = "tiny", 32768

    def __init__(self):
        self.tok = tiny_tokenizer()
        self.jobs = []

    def start(self):
        pass

    def close(self):
        pass

    def adapters(self):
        return {}

    def health(self):
        return {}

    def submit(self, job):
        self.jobs.append(job)
        job.emit(("delta", "ok"))
        job.emit(("done", "stop", 1))


def _serve(tmp_path, **cfg):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from psyassist.serve.app import ServeConfig, create_app

    backend = _Backend()
    conf = ServeConfig(region="us", safety_log=tmp_path / "log.jsonl", **cfg)
    return TestClient(create_app(conf, backend)), backend


def _ask(client, text: str, stream: bool = False):
    return client.post("/v1/chat/completions", json={"model": "tiny", "stream": stream, "max_tokens": 4,
                                                     "messages": [{"role": "user", "content": text}]})


def test_serve_adds_the_guidance_to_a_flagged_turn_only_and_says_so(tmp_path):
    client, backend = _serve(tmp_path)
    with client:
        r = _ask(client, URGENT)
        calm = _ask(client, CALM)
        streamed = _ask(client, URGENT, stream=True)
    safety = r.json()["psyassist_safety"]
    assert safety["guidance"] is True and safety["level"] == "urgent" and "attempt" in safety["constructs"]
    guided, plain, again = (backend.tok.decode(j.prompt_ids) for j in backend.jobs)
    assert "Ask directly whether they are safe right now" in guided and "988" in guided and URGENT in guided
    assert "Ask directly" not in plain and "psyassist_safety" not in calm.json()
    last = [json.loads(ln[6:]) for ln in streamed.text.splitlines() if ln.startswith("data: {")][-1]
    assert last["psyassist_safety"]["guidance"] is True and "Ask directly" in again
    events = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [e["guidance"] for e in events] == [True, True] and events[0]["constructs"]


def test_serve_off_switch_and_a_guidance_that_does_not_fit(tmp_path):
    client, backend = _serve(tmp_path, crisis_guidance=False)
    with client:
        r = _ask(client, URGENT)
    assert r.json()["psyassist_safety"]["guidance"] is False
    assert "Ask directly" not in backend.tok.decode(backend.jobs[0].prompt_ids)
    client, backend = _serve(tmp_path, max_prompt_tokens=200)  # the message fits, message + instruction do not
    with client:
        r = _ask(client, URGENT)
    assert r.status_code == 200, r.text  # a crisis message is never refused for the instruction's sake
    safety = r.json()["psyassist_safety"]
    assert safety["guidance"] is False and "left out" in safety["guidance_note"]
    assert "Ask directly" not in backend.tok.decode(backend.jobs[0].prompt_ids)
