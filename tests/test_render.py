"""Exact supervision: every assistant turn + its end-of-turn token, nothing else (pitfalls 1–4)."""

from __future__ import annotations

import json

import pytest

from psyassist.data.schema import Conversation
from psyassist.render import (
    IGNORE_INDEX,
    ChatRenderer,
    RenderOptions,
    RenderReport,
    TemplateError,
    render_many,
    supervised_text,
)
from tiny_tokenizer import CHATML, LLAMA3_LIKE, tiny_tokenizer


def conv(*turns: tuple[str, str], cid: str = "c") -> Conversation:
    return Conversation.from_dict({"id": cid, "messages": [{"role": r, "content": c} for r, c in turns]}, file="-")


DIALOGUE = conv(
    ("system", "You are a warm, careful counselor."),
    ("user", "I cannot sleep before exams."),
    ("assistant", "That sounds exhausting. What goes through your mind at night?"),
    ("user", "我总担心考不好。"),
    ("assistant", "担心考不好的时候，你的身体有什么感觉？"),
    ("user", "Thanks, that helps."),
    ("assistant", "I'm glad. Shall we try a short breathing exercise?"),
)
REPLIES = [m.content for m in DIALOGUE.messages if m.role == "assistant"]


@pytest.fixture(scope="module")
def chatml():
    return tiny_tokenizer(CHATML)


@pytest.mark.parametrize("template,eot", [(CHATML, "<|im_end|>"), (LLAMA3_LIKE, "<|eot_id|>")])
def test_labels_decode_to_every_reply_plus_eot(template, eot):
    tok = tiny_tokenizer(template)
    report = RenderReport()
    [sample] = ChatRenderer(tok).render(DIALOGUE, report)
    assert supervised_text(tok, sample) == [r + eot for r in REPLIES]
    assert report.supervised_turns == 3 and report.turns_without_eot == 0 and report.boundary_straddles == 0
    # Without template quirks the one-pass text is exactly the template's own rendering.
    text, _ = ChatRenderer(tok).compose(DIALOGUE)
    assert text == tok.apply_chat_template([m.to_dict() for m in DIALOGUE.messages], tokenize=False)


def test_system_and_user_tokens_are_never_supervised(chatml):
    [sample] = ChatRenderer(chatml).render(DIALOGUE)
    masked = chatml.decode(sample.input_ids[sample.labels == IGNORE_INDEX].tolist())
    assert "counselor" in masked and "我总担心考不好" in masked and "exams" in masked
    assert not any(r in masked for r in REPLIES)


def test_per_turn_supervises_the_same_tokens_with_more_tokens_processed(chatml):
    whole, rep_whole = render_many(chatml, [DIALOGUE], RenderOptions(), show_progress=False)
    per_turn, rep_turn = render_many(chatml, [DIALOGUE], RenderOptions(per_turn=True), show_progress=False)
    assert len(whole) == 1 and len(per_turn) == 3
    assert rep_turn.supervised_tokens == rep_whole.supervised_tokens
    assert rep_turn.tokens > rep_whole.tokens  # the quadratic prefix re-encoding
    assert [supervised_text(chatml, s)[0] for s in per_turn] == [r + "<|im_end|>" for r in REPLIES]


def test_batched_and_single_rendering_agree(chatml):
    convs = [DIALOGUE, conv(("user", "hi"), ("assistant", "hello"), cid="d")]
    batched, _ = render_many(chatml, convs, RenderOptions(), show_progress=False)
    single = [s for c in convs for s in ChatRenderer(chatml).render(c)]
    assert [(s.input_ids.tolist(), s.labels.tolist()) for s in batched] == [(s.input_ids.tolist(), s.labels.tolist()) for s in single]


def test_truncation_drops_oldest_exchanges_and_keeps_system(chatml):
    full = ChatRenderer(chatml).render(DIALOGUE)[0]
    last_two = conv(*[(m.role, m.content) for m in DIALOGUE.messages[:1] + DIALOGUE.messages[3:]])
    need = ChatRenderer(chatml).render(last_two)[0].n_tokens
    assert need < full.n_tokens
    report = RenderReport()
    [s] = ChatRenderer(chatml, RenderOptions(max_length=need)).render(DIALOGUE, report)
    assert s.pairs_dropped == 1 and not s.cut and s.n_tokens <= need
    assert chatml.decode(s.input_ids.tolist()).startswith("<|im_start|>system\nYou are a warm")
    assert supervised_text(chatml, s) == [r + "<|im_end|>" for r in REPLIES[1:]]
    assert report.truncated == 1 and report.dropped_no_supervision == 0


def test_truncation_that_leaves_no_supervision_drops_and_counts(chatml):
    long_system = conv(("system", "rules " * 200), ("user", "hi"), ("assistant", "hello"), cid="long")
    samples, report = render_many(chatml, [long_system, DIALOGUE], RenderOptions(max_length=64), show_progress=False)
    assert "long" not in [s.conversation_id for s in samples]
    assert report.dropped_no_supervision >= 1 and "long" in report.examples_dropped
    assert all(s.n_supervised > 0 and s.n_tokens <= 64 for s in samples)


def test_template_whose_reply_does_not_continue_its_prompt_is_refused():
    broken = CHATML.replace("'<|im_start|>assistant\\n'", "'<|im_start|>bot\\n'")
    with pytest.raises(TemplateError, match="does not continue its own generation prompt"):
        ChatRenderer(tiny_tokenizer(broken)).render(DIALOGUE)


def test_consecutive_assistant_turns_are_refused_with_a_hint(chatml):
    bad = conv(("user", "a"), ("assistant", "b"), ("assistant", "c"))
    with pytest.raises(TemplateError, match="data prepare"):
        ChatRenderer(chatml).render(bad)


# --- the real Qwen3 tokenizer and template (pitfall 2) -----------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("thinking", [False, True])
def test_qwen3_every_turn_supervised_with_im_end(qwen3_tokenizer, thinking):
    [s] = ChatRenderer(qwen3_tokenizer, RenderOptions(enable_thinking=thinking)).render(DIALOGUE)
    prefix = "<think>\n\n</think>\n\n" if thinking else ""
    assert supervised_text(qwen3_tokenizer, s) == [prefix + r + "<|im_end|>" for r in REPLIES]


@pytest.mark.slow
@pytest.mark.parametrize("thinking", [False, True])
def test_qwen3_tokens_before_each_reply_equal_the_inference_prompt(qwen3_tokenizer, thinking):
    """Every supervised span is preceded by exactly what generation sees (pitfall 2)."""
    renderer = ChatRenderer(qwen3_tokenizer, RenderOptions(enable_thinking=thinking))
    [s] = renderer.render(DIALOGUE)
    ids, labels = s.input_ids.tolist(), s.labels.tolist()
    starts = [i for i, lab in enumerate(labels) if lab != IGNORE_INDEX and (i == 0 or labels[i - 1] == IGNORE_INDEX)]
    msgs = [m.to_dict() for m in DIALOGUE.messages]
    turn_idx = [j for j, m in enumerate(msgs) if m["role"] == "assistant"]
    assert len(starts) == len(turn_idx)
    for start, j in zip(starts, turn_idx, strict=True):
        prompt_ids = qwen3_tokenizer(renderer.inference_prompt(msgs[:j]), add_special_tokens=False)["input_ids"]
        last_user = qwen3_tokenizer(f"<|im_start|>user\n{msgs[j - 1]['content']}", add_special_tokens=False)["input_ids"]
        tail = len(prompt_ids) - _last_index(prompt_ids, last_user)
        assert ids[start - tail:start] == prompt_ids[-tail:]
        if j == turn_idx[0]:  # no history yet: the whole prefix is the inference prompt
            assert ids[:start] == prompt_ids
    gen_tail = renderer.inference_prompt(msgs[:2])
    assert gen_tail.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n") != thinking


def _last_index(seq: list[int], sub: list[int]) -> int:
    for i in range(len(seq) - len(sub), -1, -1):
        if seq[i:i + len(sub)] == sub:
            return i
    raise AssertionError("sub-sequence not found")


@pytest.mark.slow
def test_qwen3_reasoning_supervised_when_thinking_and_removed_when_not(qwen3_tokenizer):
    d = conv(("user", "Why do I feel tired?"), ("assistant", "<think>They may be low.</think>Tell me more about your week."))
    [on] = ChatRenderer(qwen3_tokenizer, RenderOptions(enable_thinking=True)).render(d)
    assert supervised_text(qwen3_tokenizer, on) == [
        "<think>\nThey may be low.\n</think>\n\nTell me more about your week.<|im_end|>"]
    report = RenderReport()
    [off] = ChatRenderer(qwen3_tokenizer, RenderOptions(enable_thinking=False)).render(d, report)
    assert supervised_text(qwen3_tokenizer, off) == ["Tell me more about your week.<|im_end|>"]
    assert report.think_removed == 1
    assert "They may be low" not in qwen3_tokenizer.decode(off.input_ids.tolist())


@pytest.mark.slow
def test_psydt_record_all_turns_supervised_and_short_limit_reported(qwen3_tokenizer, test_data):
    record = json.loads((test_data / "PsyDTCorpus" / "psydtcorpus_readme_example_1record.json").read_text("utf-8"))[0]
    c = Conversation.from_dict(record, file="psydt")
    replies = [m.content for m in c.messages if m.role == "assistant"]
    assert len(replies) == 15
    [s] = ChatRenderer(qwen3_tokenizer).render(c)
    assert supervised_text(qwen3_tokenizer, s) == [r.strip() + "<|im_end|>" for r in replies]
    # Seed 000's max_length=384 cannot hold the ~740-character system prompt: the sample is
    # dropped and counted instead of being trained with zero supervised tokens (pitfall 4).
    samples, report = render_many(qwen3_tokenizer, [c], RenderOptions(max_length=384), show_progress=False)
    assert samples == [] and report.dropped_no_supervision == 1


def test_tokens_straddling_a_reply_edge_are_counted_not_silently_supervised():
    # No separator at all between a user turn and the reply: BPE merges "anx|ious" across the edge.
    glued = "{% for m in messages %}{{ m['content'] }}{% if m['role'] == 'assistant' %}<|im_end|>{% endif %}{% endfor %}"
    tok = tiny_tokenizer(glued)
    report = RenderReport()
    ChatRenderer(tok).render(conv(("user", "I feel anx"), ("assistant", "ious about work")), report)
    assert report.boundary_straddles >= 1
