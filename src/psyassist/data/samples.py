"""The project's own sample corpus and multiple-choice items, shipped inside the package.

    python -c "from psyassist.data.samples import sample_corpus_path; print(sample_corpus_path())"

`sample_corpus.jsonl`: 40 counseling dialogues (24 Chinese, 16 English) in the
Conversation schema, 8 of them behind a PsyDT-style long Chinese system prompt and 4
with a crisis disclosure handled safely (tag "crisis").  `sample_mcq.json`: 33
psychology multiple-choice items in the PsychCounsel-Bench shape.  Both were written
for this project (Apache-2.0), so demos, docs and fast tests run with no downloaded
data; see src/psyassist/resources/README.md.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from psyassist.errors import PsyassistError


def _resource(name: str) -> Path:
    # A regular (non-zip) install gives a real directory, so str() is a usable path;
    # a zipped or half-copied install fails here with a message instead of later.
    path = Path(str(files("psyassist") / "resources" / name))
    if not path.is_file():
        raise PsyassistError(
            f"{name} is missing from the installed psyassist package (looked for {path}). "
            "Reinstall it: pip install --force-reinstall psyassist"
        )
    return path


def sample_corpus_path() -> Path:
    """Path of the bundled sample corpus (JSONL, one Conversation per line)."""
    return _resource("sample_corpus.jsonl")


def sample_mcq_path() -> Path:
    """Path of the bundled MCQ items (JSON list of {id, question, options, answer, subject, lang})."""
    return _resource("sample_mcq.json")
