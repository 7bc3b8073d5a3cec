"""Answer extraction for generate mode: the table of real-world replies, traps included (pitfall 8)."""

from __future__ import annotations

import pytest

from psyassist.eval.extract import PARSING_RULE, extract_answer, strip_think

OPTS = ["Factors within themselves", "Factors outside themselves", "Indirect factors", "Random factors",
        "Unstable factors"]

# (reply, expected letter or None for unparsed); single-answer question with options A–E.
CASES = [
    # Chinese explicit statements
    ("答案是B", "B"),
    ("答案：C", "C"),
    ("答案为 D。", "D"),
    ("正确答案是（A）", "A"),
    ("根据理论分析，故选E。", "E"),
    ("我选择 C", "C"),
    ("应选B项", "B"),
    ("B选项正确，因为……", "B"),
    ("选项D", "D"),
    ("答案是A。不对，应该是C", "C"),  # the last stated answer wins
    ("A项描述的是外部因素，所以答案是B", "B"),
    # English explicit statements
    ("The answer is B.", "B"),
    ("Answer: (C)", "C"),
    ("The correct answer would be D because ...", "D"),
    ("Option D", "D"),
    ("I choose A.", "A"),
    ("The correct option is C", "C"),
    ("(D) is the correct answer.", "D"),
    ("At first I thought B, but the answer is E.", "E"),
    # weak markers: brackets, bold, bare lines, a leading letter
    ("(C)", "C"),
    ("**A**", "A"),
    ("I would say **B. Factors outside themselves**", "B"),
    ("D", "D"),
    ("B. Factors outside themselves", "B"),
    ("\n\nE\n", "E"),
    ("C。", "C"),
    ("Answer: (c)", "C"),  # lower case only counts in brackets
    # thinking blocks
    ("<think>Maybe A? No...</think>\n答案：C", "C"),
    ("<think>\n\n</think>\n\nB", "B"),
    ("<think>The answer is A, I think", None),  # never finished thinking
    # exact option text
    ("Random factors", "D"),
    ("factors within themselves.", "A"),
    # traps: the English article, out-of-range letters, hedging, nothing
    ("This is a difficult question.", None),
    ("A person who credits success to themselves feels better.", None),
    ("The answer is a bit unclear to me.", None),
    ("答案是F", None),  # no option F here
    ("答案是AB", None),  # two letters for a single-answer question
    ("I am not sure.", None),
    ("", None),
    ("Factors", None),  # part of several options
    ("Answer: Based on attribution theory, ...", None),  # "B" of "Based" is not a letter
]


@pytest.mark.parametrize(("reply", "expected"), CASES)
def test_extraction_table(reply, expected):
    assert extract_answer(reply, "ABCDE", options=OPTS) == expected


def test_table_is_large_and_has_both_outcomes():
    assert len(CASES) >= 30
    assert sum(e is None for _, e in CASES) >= 8


@pytest.mark.parametrize(("reply", "expected"), [
    ("答案是ABD", "ABD"),
    ("答案：B、D", "BD"),
    ("The answers are A, C and D. Answer: A, C and D", "ACD"),
    ("选DB", "BD"),  # sorted, deduplicated
    ("B和C", "BC"),
    ("A、B、D", "ABD"),
    ("答案是AB。不对，应为ABC", "ABC"),
])
def test_multi_answer_runs(reply, expected):
    assert extract_answer(reply, "ABCDE", multi=True) == expected


def test_letters_outside_a_question_never_match():
    # a 2-option question: "C" is not an option, so a reply naming C is unparsed, not a guess
    assert extract_answer("答案是C", "AB") is None
    assert extract_answer("The answer is B", "AB") == "B"


def test_strip_think():
    assert strip_think("<think>x</think>y") == "y"
    assert strip_think("<think>x") is None
    assert strip_think("plain") == "plain"


def test_rule_is_recorded_text():
    assert "think" in PARSING_RULE and "unparsed" in PARSING_RULE
