"""benchmarks/app_citations.py's honest parts: a held-out question's answers never reach the library (also under
another id with the same title), and every draft is sampled with the seed the benchmark set.

    .venv/bin/python -m pytest tests/test_bench_citations.py -q
"""

from __future__ import annotations

import asyncio
import csv

from test_bench_train import _load

FIELDS = ["questionID", "questionTitle", "questionText", "topic", "answerText"]
ROWS = [("1", "Can't sleep", "I lie awake.", "sleep-improvement", "Keep a fixed wake-up time."),
        ("1", "Can't sleep", "I lie awake.", "sleep-improvement", "Try a worry diary before bed."),
        ("7", "Can't sleep", "I lie awake.", "anxiety", "Notice the racing thoughts."),  # the same question again
        ("2", "Fights with my son", "We shout.", "parenting", "Start with one calm talk."),
        ("3", "Panic on the bus", "My heart races.", "anxiety", "Grounding: five things you see."),
        ("4", "Grief", "My mother died.", "grief-and-loss", "Grief comes in waves.")]


def test_held_out_answers_stay_out_of_the_library(tmp_path):
    bench = _load("app_citations")
    (tmp_path / "CounselChat").mkdir()
    with (tmp_path / "CounselChat" / "20200325_counsel_chat.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(FIELDS)
        w.writerows(ROWS)
    for seed in range(6):
        inputs, docs = bench.counselchat(tmp_path, 2, seed, words=10_000)
        library = "\n".join(docs.values())
        held = {x.split("\n")[0] for x in inputs}
        assert len(held) == 2
        for _, title, _, _, answer in ROWS:
            assert (answer in library) == (title not in held), (seed, title)
        assert inputs == bench.counselchat(tmp_path, 2, seed, words=10_000)[0]  # the seed fixes the draw


def test_every_draft_is_sampled_with_the_benchmarks_seed():
    bench = _load("app_citations")

    class Fake:
        name = "fake"
        seeds: list = []

        async def stream(self, messages, *, schema=None, max_tokens=512, seed=None):
            self.seeds.append(seed)
            yield ("delta", '{"advice": ["Sleep diary [1]"')
            yield ("delta", "]}")
            yield ("done", "stop", 9)

    async def drain(backend):
        return [ev async for ev in backend.stream([], max_tokens=5)]

    seeded = bench.Seeded(Fake())
    for seed in (3, 4):
        seeded.seed = seed
        assert asyncio.run(drain(seeded))[-1] == ("done", "stop", 9)
    assert Fake.seeds == [3, 4] and seeded.name == "fake"
    assert seeded.last == '{"advice": ["Sleep diary [1]"]}'
