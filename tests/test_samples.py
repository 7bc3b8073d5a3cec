"""The bundled sample corpus and MCQ items: shape, coverage, safety and packaging.

    pytest tests/test_samples.py -q            # fast checks
    pytest tests/test_samples.py -q -m slow    # wheel build + no text shared with public datasets
"""

from __future__ import annotations

import collections
import fnmatch
import json
import re
import shutil
import subprocess
import sys
import zipfile
from importlib.resources import files
from pathlib import Path

import pytest

from psyassist.data.samples import sample_corpus_path, sample_mcq_path
from psyassist.data.schema import Conversation

ROOT = Path(__file__).resolve().parents[1]
CJK = re.compile(r"[\u4e00-\u9fff]")
ZH_TAGS = {"婚恋", "家庭", "学业", "职场", "情绪", "人际", "成长", "睡眠"}
EN_TAGS = {"relationships", "family", "work", "anxiety", "depression", "grief", "sleep", "self-esteem"}
# A counselor must never hand out an invented hotline: no run of 3+ digits unless it is a year.
PHONE_LIKE = re.compile(r"(?<!\d)(?!(?:19|20)\d\d(?!\d))\d[\d\- ]{1,}\d")


@pytest.fixture(scope="module")
def convs() -> list[Conversation]:
    path = sample_corpus_path()
    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf") and raw.endswith(b"\n"), "plain UTF-8 JSONL, newline-terminated"
    lines = raw.decode("utf-8").split("\n")[:-1]
    assert all(ln.strip() for ln in lines), "no blank lines"
    return [Conversation.from_dict(json.loads(ln), file=str(path), line=i) for i, ln in enumerate(lines, 1)]


@pytest.fixture(scope="module")
def mcq() -> list[dict]:
    return json.loads(sample_mcq_path().read_text(encoding="utf-8"))


def test_accessors_point_into_the_package():
    res = Path(str(files("psyassist") / "resources"))
    assert sample_corpus_path() == res / "sample_corpus.jsonl"
    assert sample_mcq_path() == res / "sample_mcq.json"
    assert sample_corpus_path().stat().st_size > 50_000  # 40 dialogues, not a stub


def test_project_reader_reads_every_line(convs):
    from psyassist.data.readers import read_conversations

    got = read_conversations([sample_corpus_path()]).conversations
    assert [c.id for c in got] == [c.id for c in convs]
    assert [c.to_dict() for c in got] == [c.to_dict() for c in convs]


def test_counts_ids_and_languages(convs):
    assert len(convs) >= 38
    ids = [c.id for c in convs]
    assert len(set(ids)) == len(ids)
    langs = collections.Counter(c.meta.get("lang") for c in convs)
    assert set(langs) == {"zh", "en"} and langs["zh"] >= 20 and langs["en"] >= 12
    for c in convs:
        assert re.fullmatch(r"(zh|en)-\d{3}", c.id) and c.id[:2] == c.meta["lang"], c.id
        assert c.source == "psyassist-sample"
        text = "".join(m.content for m in c.messages if m.role != "system")
        # the lang field must describe the text: zh dialogues are mostly Chinese, en has no Chinese
        if c.meta["lang"] == "zh":
            assert len(CJK.findall(text)) > 0.5 * len(text), c.id
        else:
            assert not CJK.search(text), c.id


def test_tags_allow_a_stratified_split(convs):
    for c in convs:
        allowed = (ZH_TAGS if c.meta["lang"] == "zh" else EN_TAGS) | {"crisis"}
        assert c.tags and set(c.tags) <= allowed, (c.id, c.tags)
        assert c.tags[0] != "crisis", c.id  # the split stratifies by the first tag
    per_tag = collections.Counter(t for c in convs for t in c.tags)
    assert sum(n >= 3 for n in per_tag.values()) >= 5
    first = collections.Counter(c.tags[0] for c in convs)
    assert sum(n >= 3 for n in first.values()) >= 5, first
    assert {t for t, n in first.items() if n >= 3} & EN_TAGS, "English strata too, not only Chinese"


def test_turns_alternate_from_user_to_assistant(convs):
    exchanges = []
    for c in convs:
        roles = [m.role for m in c.messages]
        turns = roles[1:] if roles[0] == "system" else roles
        assert "system" not in turns, c.id
        # starts with user, alternates strictly, ends with assistant
        assert turns == ["user", "assistant"] * (len(turns) // 2), f"{c.id}: {turns}"
        exchanges.append(len(turns) // 2)
        for m in c.messages:
            assert m.content == m.content.strip() and m.content, c.id
            assert not re.match(r"^[UA]: ", m.content, re.M), f"{c.id}: authoring marker left in text"
    assert min(exchanges) >= 3 and max(exchanges) <= 12
    assert min(exchanges) <= 4 and max(exchanges) >= 10, "lengths should vary"


def test_psydt_style_system_prompts(convs):
    zh_prompts = [c.system for c in convs if c.meta["lang"] == "zh" and c.system]
    assert len(zh_prompts) >= 8
    assert all(500 <= len(p) <= 800 for p in zh_prompts), sorted(len(p) for p in zh_prompts)
    distinct = collections.Counter(zh_prompts)
    assert len(distinct) >= 2 and all(n >= 2 for n in distinct.values()), "a few prompts, each reused"
    en_prompts = [c.system for c in convs if c.meta["lang"] == "en" and c.system]
    assert en_prompts and all(len(p) < 500 for p in en_prompts)


def test_crisis_dialogues_are_answered_safely(convs):
    crisis = [c for c in convs if "crisis" in c.tags]
    assert len(crisis) >= 3 and {c.meta["lang"] for c in crisis} == {"zh", "en"}
    asks = re.compile(r"自杀|结束自己的生命|结束生命|不想活|ending your life|end your life|not wanting to be here", re.I)
    refers = re.compile(r"紧急求助电话|急救电话|危机干预热线|emergency number|crisis hotline", re.I)
    for c in crisis:
        replies = [m.content for m in c.messages if m.role == "assistant"]
        assert any(asks.search(r) for r in replies), f"{c.id}: counselor never asks about suicide directly"
        assert any(refers.search(r) for r in replies), f"{c.id}: no emergency number or crisis line offered"
    for c in convs:
        for m in c.messages:
            if m.role != "user":
                assert not PHONE_LIKE.search(m.content), f"{c.id}: phone-like number {PHONE_LIKE.search(m.content)[0]!r}"


def test_phone_pattern_catches_numbers_but_not_years():
    assert PHONE_LIKE.search("call 988 now") and PHONE_LIKE.search("拨打12356") and PHONE_LIKE.search("400-161-9995")
    assert not PHONE_LIKE.search("something I said in 2014, at 10:30, 39度, 0到10分")


def test_mcq_items(mcq):
    assert len(mcq) >= 30
    assert len({q["id"] for q in mcq}) == len(mcq)
    sizes = collections.Counter(len(q["options"]) for q in mcq)
    assert set(sizes) <= {2, 4, 5} and sizes[2] == 2 and sizes[4] and sizes[5]
    for q in mcq:
        keys = list(q["options"])
        assert keys == list("abcde"[: len(keys)]), q["id"]  # lower-case, from 'a', no gaps
        assert q["answer"] in q["options"], q["id"]
        values = [v.strip() for v in q["options"].values()]
        assert all(values) and len(set(values)) == len(values), q["id"]
        assert q["question"].strip() and q["subject"], q["id"]
        assert q["lang"] == q["id"][:2] and bool(CJK.search(q["question"])) == (q["lang"] == "zh"), q["id"]
    letters = collections.Counter(q["answer"] for q in mcq)
    assert set(letters) == set("abcde") and max(letters.values()) <= 0.4 * len(mcq), letters
    langs = collections.Counter(q["lang"] for q in mcq)
    assert min(langs["zh"], langs["en"]) >= 0.4 * len(mcq)
    assert {"ethics", "diagnosis", "developmental", "research_methods", "counseling_theories"} <= {
        q["subject"] for q in mcq}


def test_package_data_globs_cover_every_resource():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["psyassist"]
    pkg = ROOT / "src" / "psyassist"
    for name in ("sample_corpus.jsonl", "sample_mcq.json", "README.md"):
        rel = (pkg / "resources" / name).relative_to(pkg).as_posix()
        assert any(fnmatch.fnmatch(rel, g) for g in globs), f"{rel} not matched by package-data {globs}"


@pytest.mark.slow
def test_wheel_ships_the_samples(tmp_path):
    # Build from a copy so the working tree gets no build/ or egg-info; about 5 s, no network.
    src = tmp_path / "proj"
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "pyproject.toml", src)
    readme = ROOT / "README.md"
    (src / "README.md").write_text(readme.read_text() if readme.exists() else "psyassist\n")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("psyassist-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("sample_corpus.jsonl", "sample_mcq.json", "README.md"):
        assert f"psyassist/resources/{name}" in names
    assert zipfile.ZipFile(wheel).read("psyassist/resources/sample_corpus.jsonl") == sample_corpus_path().read_bytes()


def _strings(obj) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    return [s for x in obj for s in _strings(x)] if isinstance(obj, list) else []


@pytest.mark.slow
def test_no_text_shared_with_public_datasets(test_data, convs, mcq):
    """License guard: no span of 20 Chinese-containing or 40 Latin characters matches the public data.

    Common phrases overlap up to ~13 Chinese / ~30 English characters (measured when the
    files were written), so these lengths flag copied sentences, not shared idioms.
    About 5 s for ~13 MB of reference text; SMILECHAT (174 MB) is left out for time.
    """
    def norm(s: str) -> str:
        return re.sub(r"\s+", " ", s).lower()

    ours: dict[str, str] = {}
    texts = [(c.id, m.content) for c in convs for m in c.messages]
    # MCQ options are left out: they are short labels and proper names ("Tarasoff v. Regents of the
    # University of California") that any psychology test shares.
    texts += [(q["id"], q["question"]) for q in mcq]
    for key, text in texts:
        t = norm(text)
        for n in (20, 40):
            for i in range(len(t) - n + 1):
                w = t[i:i + n]
                if (n == 20) == bool(CJK.search(w)):
                    ours[w] = key
    refs = ["PsyDTCorpus/psydtcorpus_readme_example_1record.json", "PsyDTCorpus/DATASET_CARD_modelscope_README.md",
            "CounselChat/20200325_counsel_chat.csv", "EmoLLM_data/emollm_data.json",
            "CPsyCoun/cpsycoune_eval.jsonl", "CPsyCoun/cpsycound.jsonl",
            "PsychCounsel-Bench/PsychoBench_official_1000.json",
            "CMMLU_professional_psychology/test_professional_psychology.csv",
            "MMLU_psychology/professional_psychology_test.csv", "MMLU_psychology/high_school_psychology_test.csv"]
    refs += sorted(p.relative_to(test_data).as_posix() for p in (test_data / "CPsyExam").rglob("*.json"))
    hits = []
    for rel in refs:
        raw = (test_data / rel).read_text(encoding="utf-8")
        if rel.endswith(".json"):
            raw = "\n".join(_strings(json.loads(raw)))
        elif rel.endswith(".jsonl"):
            raw = "\n".join(s for ln in raw.splitlines() if ln.strip() for s in _strings(json.loads(ln)))
        t = norm(raw)
        for n in (20, 40):
            hits += [(rel, ours[t[i:i + n]], t[i:i + n]) for i in range(len(t) - n + 1) if t[i:i + n] in ours]
    assert not hits, hits[:10]
