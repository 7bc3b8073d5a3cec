"""Guided replies: the crisis-response instruction a model gets for a flagged turn.

    python -c "from psyassist.safety.crisis import detect; from psyassist.safety.guidance import crisis_guidance; \
print(crisis_guidance(detect('I took all my pills an hour ago'), 'uk', lang='en'))"

A flag changes what the person sees (the crisis panel); this changes what the model does.
When a message is flagged, `psyassist chat`, `psyassist serve` (`--crisis-guidance`, on by
default) and the counselor app's chat add `crisis_guidance(detection, region, lang=...)` to the
model's system message for that turn only: acknowledge, ask directly about safety, encourage
contacting someone now, give the configured resources, never give method details — plus one
line per construct that changes what to ask (an attempt or medical danger → emergency services
now; partner violence → is the person nearby; …).  The text comes from
`resources/crisis_guidance.yaml` (English and Chinese); a deployment points
`PSYASSIST_CRISIS_GUIDANCE` at its own file of the same shape.  `psyassist eval safety` measures
replies with and without it (docs/safety.md, "Guided replies").
"""

from __future__ import annotations

import os
import re
import string
from functools import lru_cache
from importlib import resources as ilr
from pathlib import Path

import yaml

from psyassist.data.io import read_text
from psyassist.errors import DataError
from psyassist.safety.crisis import CONSTRUCTS, Detection
from psyassist.safety.resources import resources_for

ENV = "PSYASSIST_CRISIS_GUIDANCE"
LANGS = ("en", "zh")
_KEYS = ("header", "urgent", "concern", "constructs", "resources", "never")
_FIELDS = {"level", "signs", "resources", "emergency"}
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


def default_path() -> Path:
    env = os.environ.get(ENV)
    return Path(env) if env else Path(str(ilr.files("psyassist") / "resources" / "crisis_guidance.yaml"))


def message_lang(text: str) -> str:
    """'zh' when the message has Chinese characters, else 'en': the language of the instruction."""
    return "zh" if _CJK.search(text or "") else "en"


@lru_cache(maxsize=4)
def load_guidance(path: str) -> dict:
    """The templates, validated: every language has every key, no unknown placeholder, known constructs."""
    text, _ = read_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DataError(path, f"valid YAML ({getattr(e, 'problem', e)})", reason="bad_yaml", hint="") from e
    if not isinstance(data, dict):
        raise DataError(path, "a mapping with en, zh and signs", got=type(data).__name__, hint="")
    for lang in LANGS:
        t = data.get(lang)
        if not isinstance(t, dict):
            raise DataError(path, f"a mapping with {', '.join(_KEYS)}", field=lang, got=t, hint="")
        for key in _KEYS:
            v = t.get(key)
            ok = (isinstance(v, list) and v and all(isinstance(x, str) for x in v) if key in ("urgent", "concern")
                  else isinstance(v, dict) and all(k in CONSTRUCTS and isinstance(x, str) for k, x in v.items())
                  if key == "constructs" else isinstance(v, str) and v.strip())
            if not ok:
                raise DataError(path, "a non-empty string (header, resources, never), a list of strings (urgent, "
                                "concern) or a mapping from construct to string (constructs)", field=f"{lang}.{key}",
                                got=v, hint="")
        for piece in [t["header"], t["resources"], t["never"], *t["urgent"], *t["concern"], *t["constructs"].values()]:
            unknown = {f for _, f, _, _ in string.Formatter().parse(piece) if f} - _FIELDS
            if unknown:
                raise DataError(path, f"placeholders drawn from {sorted(_FIELDS)}", field=lang, got=sorted(unknown),
                                hint="")
        signs = (data.get("signs") or {}).get(lang)
        if not isinstance(signs, dict) or set(signs) != set(CONSTRUCTS):
            raise DataError(path, "a label for every construct", field=f"signs.{lang}",
                            got=sorted(set(CONSTRUCTS) ^ set(signs or {})), hint="")
    return data


def crisis_guidance(detection: Detection, region: str, *, lang: str, path: str | Path | None = None) -> str:
    """The instruction text for the model, built from the detection's level and constructs and the region's
    resources; "" when the detection is not flagged.  `lang`: "en" or "zh" (see message_lang)."""
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}, got {lang!r}")
    if not detection.flagged:
        return ""
    data = load_guidance(str(path or default_path()))
    t, labels = data[lang], data["signs"][lang]
    items = resources_for(region)
    sep = "；" if lang == "zh" else "; "
    fields = {
        "level": detection.level,
        "signs": (", " if lang == "en" else "、").join(labels[c] for c in detection.constructs) or detection.level,
        "resources": sep.join(f"{r.name}: {r.contact()}" for r in items),
        "emergency": next((r.phone for r in items if r.kind == "emergency" and r.phone), None)
                     or ("本地急救电话" if lang == "zh" else "your local emergency number"),
    }
    lines = [t["header"].format(**fields)]
    lines += [f"- {s.format(**fields)}" for s in t[detection.level]]
    lines += [f"- {t['constructs'][c].format(**fields)}" for c in detection.constructs if c in t["constructs"]]
    lines += [f"- {t['resources'].format(**fields)}", f"- {t['never'].format(**fields)}"]
    return "\n".join(lines)


def with_guidance(messages: list[dict], guidance: str) -> list[dict]:
    """The messages with the guidance appended to the system message (one is created first when there is none).

    The first system message, not a new one before the last turn: every chat template renders a leading system
    message, and several refuse a system message anywhere else."""
    if not guidance:
        return messages
    if messages and messages[0]["role"] == "system":
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{guidance}"}, *messages[1:]]
    return [{"role": "system", "content": guidance}, *messages]
