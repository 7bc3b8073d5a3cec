"""Generation metrics: our ROUGE equals rouge-score on English, Chinese is segmented, BLEU names its tokenizer."""

from __future__ import annotations

import math
import statistics

import pytest

from psyassist.errors import PsyassistError
from psyassist.eval import metrics as M

EN_PAIRS = [
    ("I hear how tired you are. What keeps you awake at night?",
     "It sounds like you are exhausted. What keeps you up at night, do you think?"),
    ("The cat sat on the mat.", "The cat is on the mat, the cat sat."),
    ("Let's try a breathing exercise together!", "Would you like to try a short breathing exercise?"),
    ("completely different words here", "nothing in common at all"),
    ("It's OK -- 100% normal to feel anxious (sometimes).", "it is ok to feel anxious sometimes 100"),
]


@pytest.mark.parametrize("cand, ref", EN_PAIRS)
def test_rouge_equals_rouge_score_on_english(cand, ref):
    from rouge_score import rouge_scorer

    want = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False).score(ref, cand)
    c, r = M.tokens(cand, "en"), M.tokens(ref, "en")
    for ours, key in ((M.rouge_n(c, r, 1), "rouge1"), (M.rouge_n(c, r, 2), "rouge2"), (M.rouge_l(c, r), "rougeL")):
        assert ours == pytest.approx((want[key].precision, want[key].recall, want[key].fmeasure), abs=1e-12)


def test_chinese_is_segmented_where_rouge_score_sees_nothing():
    from rouge_score import rouge_scorer

    cand, ref = "我很难过。", "我非常难过！"
    assert rouge_scorer.RougeScorer(["rouge1"]).score(ref, cand)["rouge1"].fmeasure == 0  # pitfall 9
    c, r = M.tokens(cand, "zh-char"), M.tokens(ref, "zh-char")
    assert c == ["我", "很", "难", "过"] and r == ["我", "非", "常", "难", "过"]  # punctuation dropped
    # unigrams: 3 shared of 4 / 5; bigrams: only 难过 shared of 3 / 4; LCS 我…难过 = 3
    f = lambda p, q: 2 * p * q / (p + q)  # noqa: E731
    assert M.rouge(c, r) == pytest.approx({"rouge1": f(3 / 4, 3 / 5), "rouge2": f(1 / 3, 1 / 4),
                                           "rougeL": f(3 / 4, 3 / 5)})


def test_jieba_words_and_mixed_script_tokens():
    words = M.tokens("我今天很难过，不想上班。", "zh-word")
    assert "今天" in words and "难过" in words and "，" not in words and "。" not in words
    assert M.tokens("我用iPhone 15打电话", "zh-char") == ["我", "用", "iphone", "15", "打", "电", "话"]
    with pytest.raises(PsyassistError, match="unknown tokenization"):
        M.tokens("x", "zh")


def test_lcs_and_empty_inputs():
    assert M.lcs_len(list("ABCBDAB"), list("BDCABA")) == 4  # the textbook example
    assert M.rouge([], ["a"]) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


def test_detect_lang():
    assert M.detect_lang(["我最近总是睡不着，心里很烦。", "好的"]) == "zh"
    assert M.detect_lang(["I can't sleep.", "OK"]) == "en"
    assert M.detect_lang(["我用 Zoom 和 Slack 开会"]) == "zh"


def test_bleu_uses_the_chinese_tokenizer():
    import sacrebleu

    hyps, refs = ["我最近总是睡不好，心里很烦"], ["我最近总是睡不着，心里特别烦"]
    b = M.bleu4(hyps, refs, "zh")
    assert b["tokenize"] == "zh" and "tok:zh" in b["signature"]
    assert b["score"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score)
    assert b["score"] > 10 and sacrebleu.corpus_bleu(hyps, [refs], tokenize="13a").score == 0  # one "word" each
    assert M.bleu4(["the cat sat on the mat"], ["the cat sat on the mat"], "en")["score"] == pytest.approx(100)


def test_distinct_n_and_lengths():
    assert M.distinct_n(["我我我"], 1, "char") == pytest.approx(1 / 3)
    assert M.distinct_n(["我我我"], 2, "char") == pytest.approx(1 / 2)
    assert M.distinct_n(["the cat the cat"], 2, "word") == pytest.approx(2 / 3)
    assert M.distinct_n([""], 1, "word") == 0.0
    assert M.length("你 好\n吗", "zh") == 3 and M.length("How are you?", "en") == 3
    s = M.length_stats([1, 2, 3, 4, 100])
    assert s["median"] == 3 and s["max"] == 100 and s["mean"] == pytest.approx(22)
    q = M.length_quality([10, 60, 80, 49], "zh")
    assert q["share_at_least"] == 0.5 and q["threshold"] == 50 and "length" in q["note"]


def test_mean_ci_uses_student_t():
    m = M.mean_ci([1, 2, 3, 4, 5])
    half = 2.776 * statistics.stdev([1, 2, 3, 4, 5]) / math.sqrt(5)
    assert m["mean"] == 3 and m["ci95"] == pytest.approx([3 - half, 3 + half])
    assert M.mean_ci([4])["ci95"] is None and M.mean_ci([])["mean"] is None


def test_t_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 5, 29, 30, 31, 50, 200, 5000):
        assert M.t975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=2e-3)


def test_model_metrics_refuse_non_local_paths():
    with pytest.raises(PsyassistError, match="not a local directory"):
        M.embedding_cosine(["a"], ["b"], "sentence-transformers/all-MiniLM-L6-v2")
    with pytest.raises(PsyassistError, match="not a local directory"):
        M.bertscore(["a"], ["b"], "bert-base-chinese")


@pytest.mark.slow
def test_embedding_cosine_and_bertscore_with_local_models_offline():
    model = M.default_embed_model()
    cos = M.embedding_cosine(["I feel sad today", "I feel sad today"],
                             ["I am unhappy today", "The stock market rose sharply"], model, device="cpu")
    assert -1 <= cos[1] < cos[0] <= 1 and cos[0] > 0.5
    # BERTScore machinery with a local BERT (the MiniLM directory is a 6-layer BERT): no download.
    bs = M.bertscore(["I feel sad today", "I feel sad today"], ["I feel sad today", "The stock market rose"],
                     model, device="cpu")
    assert bs["num_layers"] == 6 and bs["layer"] == "last layer" and not bs["rescaled"]
    assert bs["per_item_f1"][0] == pytest.approx(1, abs=1e-4) and bs["per_item_f1"][1] < bs["per_item_f1"][0]
