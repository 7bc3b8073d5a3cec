"""Short invented counseling exchanges for the training, merge and GPU tests (no dataset text).

    cd tests && python -c "from tiny_dialogues import dialogues; print(dialogues(2))"
"""

from __future__ import annotations

LINES = [("I can't sleep before exams.", "That sounds exhausting. What keeps you awake?"),
         ("My thoughts race at night.", "Racing thoughts are common. Shall we try a breathing exercise?"),
         ("I feel anxious about work.", "Work anxiety is hard. What part of work worries you most?"),
         ("Thanks, that helps.", "I'm glad. What would you like to try this week?")]


def dialogues(n: int) -> list[dict]:
    """n dialogues d0..d{n-1}: a system prompt and 1-3 user/assistant exchanges (varied lengths)."""
    out = []
    for i in range(n):
        msgs = [{"role": "system", "content": "You are a warm counselor."}]
        for j in range(1 + i % 3):
            u, a = LINES[(i + j) % len(LINES)]
            msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
        out.append({"id": f"d{i}", "messages": msgs})
    return out
