"""Note templates: seed 004's format (the default), SOAP, DAP, BIRP, and a clinic's own YAML files.

    python -c "from psyassist.app.notes.templates import load_templates; print(sorted(load_templates()))"

A template is a list of sections; a section is `text` (one paragraph) or `list` (numbered
items, min/max count).  Everything downstream is driven by it, nothing is hard-coded to one
format: the JSON schema the model is constrained to, the draft editor, regeneration, the note
timeline, export, and the `notes` evaluation stage.

Personal Basic Information is not part of a template: every client has seed 004's five fields,
and every draft may propose updates to them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import yaml

from psyassist.errors import DataError, PsyassistError

# Seed 004's Personal Basic Information: (key, English label, Chinese label, what belongs there).
BASIC_INFO = [
    ("demographics", "Demographic data", "人口学资料", "age, gender, ethnicity, occupation or school, family, residence"),
    ("development", "Personal developmental history", "个人成长史",
     "upbringing, education, important life events, earlier difficulties"),
    ("mental_state", "Mental state", "精神状态", "mood, anxiety, sleep, thinking, insight, risk"),
    ("physical", "Physical condition", "身体状态", "illness, medication, family medical history, somatic complaints"),
    ("social", "Social functioning", "社会功能", "study or work, relationships, daily functioning"),
]
BASIC_KEYS = [k for k, *_ in BASIC_INFO]
BASIC_MAX_CHARS = 300
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass(frozen=True)
class Section:
    key: str
    label: dict[str, str]
    kind: str  # text | list
    guide: str = ""
    group: str | None = None
    min_items: int = 1
    max_items: int = 1
    max_chars: int = 300

    def title(self, locale: str) -> str:
        return self.label.get(locale) or self.label.get("en") or self.key


@dataclass(frozen=True)
class Template:
    name: str
    label: dict[str, str]
    sections: tuple[Section, ...]
    groups: dict[str, dict[str, str]] = field(default_factory=dict)
    source: str = ""

    def title(self, locale: str) -> str:
        return self.label.get(locale) or self.label.get("en") or self.name

    def section(self, key: str) -> Section:
        for s in self.sections:
            if s.key == key:
                return s
        raise PsyassistError(f"template {self.name} has no section {key!r}")

    def group_title(self, group: str, locale: str) -> str:
        g = self.groups.get(group, {})
        return g.get(locale) or g.get("en") or group

    def json_schema(self, *, basic_info: bool = True) -> dict:
        """The JSON schema a draft is constrained to: sections in template order, then the basic-info updates.

        String caps (maxLength) bound what a small model can spend on one item; an empty
        basic-info string means "no change"."""
        props: dict = {}
        for s in self.sections:
            text = {"type": "string", "maxLength": s.max_chars}
            if s.kind == "text":
                props[s.key] = text
            else:
                props[s.key] = {"type": "array", "items": text, "minItems": s.min_items, "maxItems": s.max_items}
        if basic_info:
            props["basic_info_updates"] = {
                "type": "object", "additionalProperties": False, "required": BASIC_KEYS,
                "properties": {k: {"type": "string", "maxLength": BASIC_MAX_CHARS} for k in BASIC_KEYS}}
        return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def _labels(value, where: str, fld: str) -> dict[str, str]:
    if isinstance(value, str):
        return {"en": value}
    if isinstance(value, dict) and value and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return dict(value)
    raise DataError(where, "a string or a mapping {en: ..., zh: ...}", field=fld, got=value, hint="")


def parse_template(data, where: str) -> Template:
    """A Template from parsed YAML; errors name the file, the section index and the field."""
    if not isinstance(data, dict):
        raise DataError(where, "a mapping with name, label and sections", got=type(data).__name__, hint="")
    unknown = set(data) - {"name", "label", "sections", "groups"}
    if unknown:
        raise DataError(where, "only the keys name, label, sections, groups", field=sorted(unknown)[0], hint="")
    name = data.get("name")
    if not isinstance(name, str) or not _KEY.match(name):
        raise DataError(where, "a lowercase identifier (a-z, 0-9, _)", field="name", got=name, hint="")
    raw_sections = data.get("sections")
    if not isinstance(raw_sections, list) or not raw_sections:
        raise DataError(where, "a non-empty list of sections", field="sections", got=raw_sections, hint="")
    groups = {}
    for g, lab in (data.get("groups") or {}).items():
        groups[str(g)] = _labels(lab, where, f"groups.{g}")
    sections, seen = [], set()
    for i, raw in enumerate(raw_sections):
        f = f"sections[{i}]"
        if not isinstance(raw, dict):
            raise DataError(where, "a mapping", field=f, got=raw, hint="")
        extra = set(raw) - {"key", "label", "kind", "guide", "group", "min_items", "max_items", "max_chars"}
        if extra:
            raise DataError(where, "only key, label, kind, guide, group, min_items, max_items, max_chars",
                            field=f"{f}.{sorted(extra)[0]}", hint="")
        key = raw.get("key")
        if not isinstance(key, str) or not _KEY.match(key) or key == "basic_info_updates":
            raise DataError(where, "a lowercase identifier (not basic_info_updates)", field=f"{f}.key", got=key, hint="")
        if key in seen:
            raise DataError(where, "a key used once", field=f"{f}.key", got=key, hint="")
        seen.add(key)
        kind = raw.get("kind", "text")
        if kind not in ("text", "list"):
            raise DataError(where, "'text' or 'list'", field=f"{f}.kind", got=kind, hint="")
        nums = {}
        for n, default in (("min_items", 1), ("max_items", 6 if kind == "list" else 1), ("max_chars", 300)):
            v = raw.get(n, default)
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if n == "min_items" else 1):
                raise DataError(where, "a positive whole number", field=f"{f}.{n}", got=v, hint="")
            nums[n] = v
        if kind == "text":
            nums["min_items"] = nums["max_items"] = 1
        if nums["min_items"] > nums["max_items"] or nums["max_items"] > 20 or nums["max_chars"] > 4000:
            raise DataError(where, "min_items ≤ max_items ≤ 20 and max_chars ≤ 4000", field=f, got=nums, hint="")
        group = raw.get("group")
        if group is not None and group not in groups:
            groups[group] = {"en": str(group)}
        sections.append(Section(key, _labels(raw.get("label", key), where, f"{f}.label"), kind,
                                str(raw.get("guide", "")), group, **nums))
    return Template(name, _labels(data.get("label", name), where, "label"), tuple(sections), groups, where)


def builtin_dir() -> Path:
    return Path(str(files("psyassist") / "resources" / "note_templates"))


def load_templates(extra_dir: str | Path | None = None) -> dict[str, Template]:
    """The built-in templates plus every *.yaml in `extra_dir` (a clinic's own; a name may replace a built-in)."""
    out: dict[str, Template] = {}
    dirs = [builtin_dir()] + ([Path(extra_dir)] if extra_dir else [])
    for d in dirs:
        if not d.is_dir():
            raise PsyassistError(f"templates directory {d} does not exist")
        for path in sorted(d.glob("*.yaml")):
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except yaml.YAMLError as e:
                raise PsyassistError(f"{path}: not valid YAML: {e}") from e
            t = parse_template(data, str(path))
            out[t.name] = t
    if "seed004" not in out:
        raise PsyassistError(f"the built-in template seed004 is missing from {builtin_dir()}; reinstall psyassist")
    return out


def basic_label(key: str, locale: str) -> str:
    for k, en, zh, _ in BASIC_INFO:
        if k == key:
            return zh if locale == "zh" else en
    raise PsyassistError(f"unknown basic information field {key!r}")
