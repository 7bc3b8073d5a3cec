"""MCQ scoring on a tiny random Qwen3 (built here, nothing downloaded): logprob maths, rules, CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from psyassist.errors import PsyassistError
from psyassist.eval import mcq
from psyassist.eval.mcq import (
    build_prompt,
    compare_results,
    continuation_ids,
    decide,
    load_format,
    rotate,
    score_logprob,
)
from psyassist.eval.mcq_loaders import MCQItem, load_mcq
from psyassist.render import ChatRenderer
from tiny_tokenizer import tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py



@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from psyassist.models import save_tiny_qwen3

    tok_dir = tmp_path_factory.mktemp("tok")
    tiny_tokenizer().save_pretrained(tok_dir)
    return save_tiny_qwen3(tmp_path_factory.mktemp("tiny") / "model", tok_dir, seed=1)


@pytest.fixture(scope="module")
def model_tok(model_dir):
    from psyassist.models import load_model

    return load_model(str(model_dir), dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def sample():
    return load_mcq(["sample"]).items


def _hand_scores(model, tok, context: str, conts: list[str]) -> list[float]:
    """log P(cont | context), one unbatched forward per option, no shortcuts."""
    ctx, cids = continuation_ids(tok, context, conts)
    out = []
    with torch.no_grad():
        for c in cids:
            ids = torch.tensor([ctx + c])
            lp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
            out.append(sum(float(lp[len(ctx) - 1 + j, t]) for j, t in enumerate(c)))
    return out


def test_logprob_equals_hand_computed_argmax(model_tok, sample):
    model, tok = model_tok
    fmt = load_format("plain")
    items = sample[:6]
    contexts = [build_prompt(fmt, it, []) for it in items]
    conts = [list(it.letters) for it in items]
    scores, perf = score_logprob(model, tok, contexts, conts, batch_size=4)
    assert perf["questions_multi_token_letters"] == 0  # every letter is one token here
    assert perf["forward_passes"] == 2  # 6 questions, 4 per batch: one forward per question, batched
    for it, ctx, sc in zip(items, contexts, scores, strict=True):
        hand = _hand_scores(model, tok, ctx, list(it.letters))
        assert sc == pytest.approx(hand, abs=1e-4)
        assert decide(sc, it) == it.letters[max(range(len(hand)), key=hand.__getitem__)]


def test_multi_token_continuations_are_summed(model_tok, sample):
    model, tok = model_tok
    it = sample[0]
    conts = [f" Option {ltr}" for ltr in it.letters]  # several tokens each with the tiny BPE
    ctx = build_prompt(load_format("plain"), it, [])
    assert all(len(c) > 1 for c in continuation_ids(tok, ctx, conts)[1])
    scores, perf = score_logprob(model, tok, [ctx], [conts], batch_size=3)
    assert perf["questions_multi_token_letters"] == 1 and perf["sequences"] == len(conts)
    assert scores[0] == pytest.approx(_hand_scores(model, tok, ctx, conts), abs=1e-4)


def test_batching_and_left_padding_change_nothing(model_tok, sample):
    model, tok = model_tok
    fmt = load_format("professional")
    items = sample[:7]  # en and zh questions: lengths differ a lot, so rows get padded
    contexts = [build_prompt(fmt, it, []) for it in items]
    conts = [list(it.letters) for it in items]
    one, _ = score_logprob(model, tok, contexts, conts, batch_size=1)
    many, perf = score_logprob(model, tok, contexts, conts, batch_size=7)
    assert perf["padding_ratio"] > 0.05
    for a, b in zip(one, many, strict=True):
        assert a == pytest.approx(b, abs=1e-4)


def test_multi_answer_rule():
    item = MCQItem("m", "q", ["w", "x", "y", "z"], "AB", multi=True)
    lp = [math.log(p) for p in (0.40, 0.30, 0.20, 0.10)]  # threshold 1/4: A and B are in
    assert decide(lp, item) == "AB"
    assert decide([math.log(p) for p in (0.9, 0.05, 0.03, 0.02)], item) == "A"  # the top one always
    assert decide([0.0, 0.0, 0.0, 0.0], item) == "ABCD"  # uniform: every option reaches 1/n
    single = MCQItem("s", "q", ["w", "x", "y", "z"], "B")
    assert decide(lp, single) == "A"


def test_rotation_keeps_the_gold_option_text():
    item = MCQItem("r", "q", ["v", "w", "x", "y", "z"], "BD", multi=True)
    seen = set()
    for r in range(5):
        rot = rotate(item, r)
        assert sorted(rot.options[rot.letters.index(c)] for c in rot.answer) == ["w", "y"]
        seen.add(tuple(rot.options))
    assert len(seen) == 5 and rotate(item, 0) == item


def test_circular_scoring_catches_a_position_biased_model(model_dir, sample, monkeypatch):
    def always_first(model, tok, contexts, conts, batch_size=8):
        return [[-float(i) for i in range(len(c))] for c in conts], {"seconds": 0.0}

    monkeypatch.setattr(mcq, "score_logprob", always_first)
    cfg = mcq.MCQConfig(bench=["sample"], model=str(model_dir), formats="plain", shuffle_options=True)
    res = mcq.run_mcq(cfg)["formats"]["plain"]
    gold_a = sum(it.answer == "A" for it in sample)
    assert res["correct"] == gold_a > 0  # plain accuracy rewards the bias when gold is A
    assert res["circular"]["correct"] == 0  # no rotation-robust item: right in exactly one rotation each
    rots = res["items"][0]["rotations"]
    assert len(rots) == len(sample[0].options) and sum(r["correct"] for r in rots) == 1


def test_circular_scoring_keeps_a_position_free_model(model_dir, monkeypatch):
    monkeypatch.setattr(mcq, "decide", lambda scores, item: item.answer)  # an oracle
    cfg = mcq.MCQConfig(bench=["sample"], model=str(model_dir), formats="plain", shuffle_options=True, limit=5)
    res = mcq.run_mcq(cfg)["formats"]["plain"]
    assert res["accuracy"] == 1.0 and res["circular"]["accuracy"] == 1.0


def test_prompts_raw_chat_and_fewshot(model_tok, sample):
    _, tok = model_tok
    item, shot = sample[0], sample[1]
    prof = load_format("professional")
    text = build_prompt(prof, item, [shot])
    assert text.startswith("你是一位专业的心理咨询师") and text.endswith("\n答案：")
    assert f"答案：{shot.answer}\n\n你是一位" in text  # the shot is answered, then the question
    assert "请只输出选项字母（A/B/C/D）" in text  # letters follow the question's own options
    chat = build_prompt(load_format("chat"), item, [shot], ChatRenderer(tok))
    assert chat.startswith("<|im_start|>system\n你是一位专业的心理咨询师")
    assert f"<|im_start|>assistant\n{shot.answer}<|im_end|>" in chat
    assert chat.endswith("请只输出选项字母：<|im_end|>\n<|im_start|>assistant\n")
    body = f"{item.question}\n" + "\n".join(f"{ltr}. {o}" for ltr, o in zip("ABCD", item.options, strict=True)) + "\nAnswer:"
    assert build_prompt(load_format("mmlu_no_description"), item, []) == body
    subject = item.subject.replace("_", " ")
    assert build_prompt(load_format("mmlu"), item, []) == \
        f"The following are multiple choice questions (with answers) about {subject}.\n\n{body}"


def test_custom_template_files(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text('user: "Q: {question}\\n{options}\\nPick {letters}:"\nletter_prefix: " "\n', encoding="utf-8")
    fmt = load_format(str(good))
    item = MCQItem("1", "Why?", ["a", "b"], "B")
    assert (fmt.name, build_prompt(fmt, item, [])) == ("mine", "Q: Why?\nA. a\nB. b\nPick A/B:")
    with pytest.raises(PsyassistError, match="unknown prompt format 'fancy'"):
        load_format("fancy")


def _template(tmp_path, text: str, name: str = "t.yaml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


def test_description_is_written_once_before_the_fewshot_examples(tmp_path):
    fmt = load_format(_template(tmp_path, 'description: "About {subject}.\\n\\n"\nuser: "{question}\\n{options}\\nAnswer:"\n'
                                          'letter_prefix: " "\n'))
    item = MCQItem("q", "Q?", ["x", "y"], "A", subject="social_work")
    shots = [MCQItem("s1", "S1?", ["a", "b"], "B", subject="social_work"),
             MCQItem("s2", "S2?", ["c", "d"], "A", subject="social_work")]
    assert build_prompt(fmt, item, shots) == ("About social work.\n\nS1?\nA. a\nB. b\nAnswer: B\n\n"
                                              "S2?\nA. c\nB. d\nAnswer: A\n\nQ?\nA. x\nB. y\nAnswer:")
    named = load_format(_template(tmp_path, 'description: "关于{subject}。"\nuser: "{question}"\n'
                                            "subject_names: {social_work: 社会工作}\n", "named.yaml"))
    assert build_prompt(named, item, []) == "关于社会工作。Q?"


def test_description_goes_to_the_system_turn_of_a_chat_format(tmp_path, model_tok):
    _, tok = model_tok
    fmt = load_format(_template(tmp_path, 'chat: true\nsystem: "You are a counselor."\n'
                                          'description: "Questions about {subject}.\\n\\n"\nuser: "{question}"\n'))
    shot = MCQItem("s", "S?", ["a", "b"], "A", subject="ethics")
    text = build_prompt(fmt, MCQItem("q", "Q?", ["x", "y"], "B", subject="ethics"), [shot], ChatRenderer(tok))
    assert text.startswith("<|im_start|>system\nYou are a counselor.\n\nQuestions about ethics.<|im_end|>")
    assert text.count("Questions about ethics") == 1


def test_lm_eval_key_names_are_accepted_or_named(tmp_path):
    aliased = load_format(_template(tmp_path, 'user: "{question}\\n答案："\ntarget_delimiter: " "\n'
                                              'fewshot_delimiter: "\\n###\\n"\ndescription: "D\\n"\n'))
    assert (aliased.letter_prefix, aliased.fewshot_separator, aliased.description) == (" ", "\n###\n", "D\n")
    with pytest.raises(PsyassistError, match="'target_delimiter' .* and 'letter_prefix' mean the same"):
        load_format(_template(tmp_path, 'user: q\ntarget_delimiter: " "\nletter_prefix: ""\n', "both.yaml"))
    with pytest.raises(PsyassistError) as e:
        load_format(_template(tmp_path, 'user: q\ndoc_to_choice: [A, B]\nanswer_prefx: y\n', "keys.yaml"))
    msg = str(e.value)
    assert "'doc_to_choice' is lm-evaluation-harness's; here use nothing: the choices are the question's own letters" \
        in msg and "unknown key 'answer_prefx' (did you mean 'answer_prefix'?)" in msg and "keys.yaml" in msg
    with pytest.raises(PsyassistError, match="'chat' must be bool"):
        load_format(_template(tmp_path, "user: q\nchat: yes please\n", "types.yaml"))


@pytest.mark.parametrize(("text", "message"), [
    ("user: '{Question}\\n{options}'\n", r"user uses the placeholder \{Question\}; did you mean \{question\}\?"),
    ("user: '{question} {nope}'\n", r"user uses the placeholder \{nope\}; user may use \{question\} \{options\}"),
    ("user: '{question'\n", r"user: .*literal braces"),
    ("user: q\ndescription: 'About {question}'\n", r"description uses the placeholder \{question\}.* \{subject\}"),
    ("user: q\noption_line: '{letter}) {txt}'\n", r"did you mean \{text\}"),
])
def test_placeholders_are_checked_when_the_template_loads(tmp_path, text, message):
    with pytest.raises(PsyassistError, match=message):
        load_format(_template(tmp_path, text))


def test_a_template_file_that_does_not_exist_says_so(tmp_path):
    with pytest.raises(PsyassistError, match=r"prompt template file .*missing\.yaml does not exist"):
        load_format(str(tmp_path / "missing.yaml"))
    with pytest.raises(PsyassistError, match="prompt template file x.yaml does not exist"):
        load_format("x.yaml")


def test_template_errors_stop_eval_mcq_before_data_or_model(cli, tmp_path, monkeypatch):
    import psyassist.infer.engine as engine

    def never(*a, **k):
        raise AssertionError("the model must not load for a broken template")

    monkeypatch.setattr(engine, "load", never)
    bad = _template(tmp_path, "user: '{Question}'\n")
    code, _, err = cli(["eval", "mcq", "-b", "no-such-bench.json", "-m", "no-such-model", "-f", f"plain,{bad}"])
    assert code == 2 and "did you mean {question}" in err and "Traceback" not in err
    code, _, err = cli(["eval", "mcq", "-b", "sample", "-f", "mine.yaml"])
    assert code == 2 and "prompt template file mine.yaml does not exist" in err


def _fake(ids_correct: dict[str, bool]) -> dict:
    items = [{"id": i, "correct": c} for i, c in ids_correct.items()]
    return {"bench": {"files": {"x": "1"}}, "formats": {"plain": {"items": items}}}


def test_compare_pairs_by_id_and_counts_discordant_items():
    a = _fake({"1": True, "2": True, "3": False, "4": False, "5": True, "only_a": True})
    b = _fake({"1": True, "2": False, "3": True, "4": True, "5": True, "only_b": False})
    r = compare_results(a, b)["formats"]["plain"]
    assert (r["n_paired"], r["a_only_right"], r["b_only_right"]) == (5, 1, 2)
    assert (r["only_in_a"], r["only_in_b"]) == (1, 1)
    assert r["delta"] == pytest.approx(4 / 5 - 3 / 5)
    assert r["mcnemar"]["p_value"] == pytest.approx(1.0)  # 1 vs 2 discordant: exact test, p = 1


# --- the command ---------------------------------------------------------------------------


def test_cli_end_to_end_on_the_sample(cli, model_dir, sample, tmp_path):
    out = tmp_path / "base.json"
    code, stdout, err = cli(["eval", "mcq", "--bench", "sample", "--model", model_dir, "--format", "all",
                             "--out", out])
    assert code == 0, err
    assert "professional" in stdout and "chat" in stdout and str(out) in stdout.replace("\n", "")
    res = json.loads(out.read_text(encoding="utf-8"))
    assert list(res["formats"]) == ["professional", "plain", "chat"]
    assert res["mode"] == "logprob" and "lm-evaluation-harness" in res["scoring"]["rule"]
    assert res["versions"]["torch"] and list(res["bench"]["files"].values())[0] != ""
    assert res["command"].startswith("psyassist eval mcq --bench sample --model ")
    for name, f in res["formats"].items():
        assert f["n"] == 33 and f["correct"] == sum(r["correct"] for r in f["items"])
        assert f["accuracy"] == pytest.approx(f["correct"] / 33)
        assert f["wilson95"][0] <= f["accuracy"] <= f["wilson95"][1]
        assert f["unparsed"] == 0 and f["chance"] == pytest.approx(sum(it.chance for it in sample) / 33)
        assert len(f["errors"]) == 33 - f["correct"]
        assert sum(s["n"] for s in f["per_subject"].values()) == 33
        for it, row in zip(sample, f["items"], strict=True):
            assert row["id"] == it.id and it.question in row["prompt"] and set(row["scores"]) == set(it.letters)
        assert (name == "chat") == f["items"][0]["prompt"].endswith("<|im_start|>assistant\n")

    # the same run with another seed is the same scores: logprob mode has no randomness
    out2 = tmp_path / "again.json"
    assert cli(["eval", "mcq", "-b", "sample", "-m", model_dir, "-f", "plain", "--seed", "5", "-o", out2])[0] == 0
    again = json.loads(out2.read_text(encoding="utf-8"))["formats"]["plain"]["items"]
    for a, b in zip(again, res["formats"]["plain"]["items"], strict=True):  # other batches: float noise only
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-5)
    # full precision in the file (it was rounded to 4 decimals, which capped agreement audits at ~5e-5)
    scores = [v for r in again for v in r["scores"].values()]
    assert sum(round(v, 4) != v for v in scores) > len(scores) // 2

    code, stdout, err = cli(["eval", "mcq", "--compare", out, out2, "--json"])
    assert code == 0, err
    cmp = json.loads(stdout)
    assert list(cmp["formats"]) == ["plain"]
    assert cmp["formats"]["plain"]["a_only_right"] == cmp["formats"]["plain"]["b_only_right"] == 0


def test_cli_generate_mode_counts_unparsed_answers(cli, model_dir, tmp_path):
    out = tmp_path / "gen.json"
    code, _, err = cli(["eval", "mcq", "-b", "sample", "-m", model_dir, "-f", "chat", "--mode", "generate",
                        "--limit", "4", "--max-new-tokens", "6", "--no-thinking", "-o", out])
    assert code == 0, err
    res = json.loads(out.read_text(encoding="utf-8"))
    f = res["formats"]["chat"]
    assert "unparsed" in res["scoring"]["rule"] and res["scoring"]["sampling"]["temperature"] == 0.7
    assert f["unparsed"] == sum(r["pred"] is None for r in f["items"])
    assert all(not r["correct"] for r in f["items"] if r["pred"] is None)  # never a guess
    assert all("output" in r for r in f["items"])
    assert all(e["raw_output"] is not None for e in f["errors"])


@pytest.mark.parametrize(("args", "message"), [
    (["--thinking"], "needs --mode generate"),
    (["--format", "fancy"], "unknown prompt format"),
    (["--fewshot", "2"], "--dev"),
    (["--mode", "guess"], "--mode must be"),
])
def test_cli_user_errors_are_one_line(cli, model_dir, args, message):
    code, _, err = cli(["eval", "mcq", "-b", "sample", "-m", model_dir, *args])
    assert code == 2 and message in err and "Traceback" not in err


def test_cli_compare_refuses_other_json(cli, tmp_path):
    f = tmp_path / "x.json"
    f.write_text("{}", encoding="utf-8")
    code, _, err = cli(["eval", "mcq", "--compare", f, f])
    assert code == 2 and "not a `psyassist eval mcq` results file" in err
    assert cli(["eval", "mcq"])[0] == 2


@pytest.mark.slow
def test_qwen3_letters_are_single_tokens_in_every_shipped_format(qwen3_tokenizer, sample):
    renderer = ChatRenderer(qwen3_tokenizer)  # enable_thinking=False, as logprob mode uses it
    for name in ("professional", "plain", "chat", "mmlu", "mmlu_no_description", "cmmlu"):
        fmt = load_format(name)
        for it in sample:
            ctx = build_prompt(fmt, it, [], renderer)
            _, cids = continuation_ids(qwen3_tokenizer, ctx, [fmt.letter_prefix + ltr for ltr in it.letters])
            assert all(len(c) == 1 for c in cids), (name, it.id, cids)
    # the chat format's answer position follows Qwen3's empty think block (pitfall 2)
    assert build_prompt(load_format("chat"), sample[0], [], renderer).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_shared_prefix_cache_changes_nothing(model_tok, sample):
    model, tok = model_tok
    for name in ("professional", "chat"):  # a long shared instruction / a shared system prompt
        fmt = load_format(name)
        items = sample[:9]
        contexts = [build_prompt(fmt, it, [], ChatRenderer(tok)) for it in items]
        conts = [list(it.letters) for it in items]
        plain, p0 = score_logprob(model, tok, contexts, conts, batch_size=4, share_prefix=False)
        shared, p1 = score_logprob(model, tok, contexts, conts, batch_size=4)
        assert p0["shared_prefix_tokens"] == 0 and p1["shared_prefix_tokens"] > 5
        for a, b in zip(plain, shared, strict=True):
            assert a == pytest.approx(b, abs=1e-4)
