"""Answer-letter extraction from generated text (generate mode), Chinese and English.

    python -c "from psyassist.eval.extract import extract_answer; print(extract_answer('<think>A?</think>答案是B', 'ABCD'))"

The rule (recorded as PARSING_RULE next to every generate-mode number; pitfall 8):
1. `<think>…</think>` blocks are removed; an unclosed `<think>` means the model never
   finished reasoning, so the reply is unparsed (its letters are guesses in progress).
   Markdown emphasis (`**`, `__`) is removed.
2. The LAST explicit answer statement wins: "答案是B", "答案：(C)", "正确答案为 D",
   "故选C", "应选B", "选择 A", "B项", "选项B", "the answer is B", "Answer: (C)",
   "Option D", "I choose A", "D is correct".  Taking the last one lets a model correct
   itself ("答案是A……不对，应该是C" → C).
3. Otherwise the last weak marker: a bracketed letter "(C)" / "（C）" / "[C]", a bold
   letter (already unwrapped) on its own, or a line that is only a letter ("B", "B.",
   "B、", "B) text").  A reply that opens with "B." / "B：" counts as a line of that kind.
4. Otherwise the reply equal to one option's text (after trimming punctuation and case).
Letters must be UPPER case outside brackets, so the English article "a" ("a difficult
question", "A person who…") never counts; letters beyond the question's options
("答案是F" on A–D) and several letters for a single-answer question are unparsed.
An unparsed reply is counted as unparsed, never scored as a guess.
Multi-answer questions accept runs such as "ABD", "A、B、D", "A, B and D".
"""

from __future__ import annotations

import re
from functools import lru_cache

PARSING_RULE = (
    "psyassist-extract-v1: <think> blocks stripped (unclosed <think> = unparsed); last explicit answer phrase "
    "(答案是/答案：/选/选项/项, answer is/answer:/option/choose/is correct); else last bracketed, bold or "
    "bare-line letter; else exact option text; upper-case letters only outside brackets; letters outside the "
    "options, or several letters for a single-answer question, = unparsed")

_THINK = re.compile(r"<think>.*?</think>", re.S)
_EMPH = re.compile(r"\*\*|__")
# "**B**" or "**B. text**" is a bracket-strength marker; "**A person**" is not (no punctuation after A).
_BOLD = re.compile(r"(\*\*|__)\s*([A-J])\s*(?:[.．:：)、]\s*[^*_]*)?\1")
_OPEN, _CLOSE = r"[(（\[【]?", r"[)）\]】]?"
_SEP = re.compile(r"[\s,，、/和及与&]|and")


@lru_cache(maxsize=64)
def _patterns(letters: str) -> tuple[list[re.Pattern], list[re.Pattern]]:
    """(strong, weak) patterns for one set of option letters; only those letters can match."""
    L = f"[{letters}]"
    # A run of option letters: "B", "BD", "B、D", "B, D and E", "B和D".  Upper case only.
    run = f"({L}(?:\\s*(?:[,，、/和及与&]|and)?\\s*{L})*)(?![A-Za-z])"
    strong = [
        # zh: 答案是B / 答案为：B / 正确答案：(C) / 答案应该是 D
        r"答案\s*(?:应该|应当|应)?\s*(?:是|为|选)?\s*[:：]?\s*" + _OPEN + r"\s*" + run,
        # zh: 故选C / 应选B / 选择 A / 我选D / 选项B
        r"(?:选择|选项|选)\s*[:：]?\s*" + _OPEN + r"\s*" + run,
        # zh: 应该是C (a correction) / 应为C
        r"应(?:该)?(?:是|为)\s*" + _OPEN + r"\s*" + run,
        # zh: B项 / B选项 / B是正确的 / B正确
        r"(?<![A-Za-z])" + run + r"\s*(?:项|选项|是正确|正确)",
        # en: the answer is B / answer: (C) / correct answer would be D / final answer: option A
        r"(?i:answer)\s*(?:(?i:is|would be|should be|will be)\s*)?[:：]?\s*(?:(?i:option|choice)\s*)?"
        + _OPEN + r"\s*" + run,
        # en: Option D / choice (B) / I choose A / I'd pick C / I select B
        r"(?i:option|choice|choose|pick|select)(?:\s+(?i:is|would be))?\s*[:：]?\s*" + _OPEN + r"\s*" + run,
        # en: D is correct / (D) is the correct answer / B is the best answer
        r"(?<![A-Za-z])" + _OPEN + run + _CLOSE + r"\s+(?i:is)\s+(?:(?i:the)\s+)?(?i:correct|right|best)",
    ]
    weak = [
        # Lower case only inside brackets: "(a)" is a letter, "a" alone is an article.
        f"[(（\\[【]\\s*([{letters}{letters.lower()}])\\s*[)）\\]】]",
        # a line that is only a letter run, optionally followed by punctuation and the option text
        r"(?m)^\s*" + _OPEN + r"\s*" + run + r"\s*" + _CLOSE + r"\s*(?:[.．、:：)。，,]|$)",
    ]
    return [re.compile(p) for p in strong], [re.compile(p) for p in weak]


def strip_think(text: str) -> str | None:
    """Text with `<think>` blocks removed; None when a block was never closed."""
    out = _THINK.sub("", text)
    if "<think>" in out:
        return None
    return out.replace("</think>", "")


def _letters(run: str) -> str:
    return "".join(sorted(set(_SEP.sub("", run).upper())))


def _norm(s: str) -> str:
    return re.sub(r"[\s\W_]+", "", s).lower()


def extract_answer(text: str, letters: str, *, multi: bool = False,
                   options: list[str] | None = None) -> str | None:
    """The chosen letter(s) ("B", or "BD" for multi) or None when unparsed.

    `letters` are the valid option letters of this question ("ABCD").
    """
    body = strip_think(text)
    if body is None:
        return None
    body = _EMPH.sub("", _BOLD.sub(r"(\2)", body))
    for patterns in _patterns(letters):
        found: list[tuple[int, str]] = []
        for pat in patterns:
            found += [(m.start(), m.group(1)) for m in pat.finditer(body)]
        if found:
            return _valid(_letters(max(found)[1]), letters, multi)
    if options:
        target = _norm(body)
        hits = [letters[i] for i, o in enumerate(options) if target and _norm(o) == target]
        if len(hits) == 1:
            return hits[0]
    return None


def _valid(chosen: str, letters: str, multi: bool) -> str | None:
    if not chosen or any(c not in letters for c in chosen):
        return None
    if len(chosen) > 1 and not multi:
        return None
    return chosen
