"""Crisis resources per region (hotlines, emergency numbers), each with its source and check date.

    psyassist safety resources hk

The data is `resources/crisis_resources.yaml` (shipped with the package); a deployment can
point `PSYASSIST_CRISIS_RESOURCES` (or the `path` argument) at its own file of the same shape.
Numbers are never written in code: a number without a `source` page and a `last_checked`
date is rejected when the file is loaded.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources as ilr
from pathlib import Path

import yaml
from rich.markup import escape
from rich.text import Text

from psyassist.data.io import read_text
from psyassist.errors import DataError, PsyassistError
from psyassist.safety.crisis import Detection
from psyassist.ui import console

KINDS = ("emergency", "crisis_line", "text_line", "directory")
ENV = "PSYASSIST_CRISIS_RESOURCES"


@dataclass(frozen=True, slots=True)
class Resource:
    name: str
    kind: str
    source: str
    last_checked: str  # ISO date
    phone: str | None = None
    text: str | None = None
    url: str | None = None
    hours: str | None = None
    note: str | None = None

    def contact(self) -> str:
        parts = [f"call {self.phone}" if self.phone else "",
                 (self.text if self.text and not self.text.isdigit() else f"text {self.text}") if self.text else "",
                 self.url or ""]
        return " · ".join(p for p in parts if p)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def default_path() -> Path:
    env = os.environ.get(ENV)
    return Path(env) if env else Path(str(ilr.files("psyassist") / "resources" / "crisis_resources.yaml"))


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, tuple[str, list[Resource]]]:
    text, _ = read_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DataError(path, f"valid YAML ({getattr(e, 'problem', e)})", line=mark.line + 1 if mark else None,
                        reason="bad_yaml", hint="") from e
    if not isinstance(data, dict) or not data:
        raise DataError(path, "a mapping from region code to {name, resources}", got=type(data).__name__, hint="")
    out = {}
    for code, region in data.items():
        where = f"{code}"
        if not isinstance(region, dict) or not isinstance(region.get("resources"), list) or not region["resources"]:
            raise DataError(path, "{name, resources: [...]} with at least one resource", field=where, hint="")
        items = []
        for i, r in enumerate(region["resources"]):
            fld = f"{code}.resources[{i}]"
            if not isinstance(r, dict):
                raise DataError(path, "a mapping", record=i, field=fld, got=r, hint="")
            unknown = set(r) - {"name", "kind", "source", "last_checked", "phone", "text", "url", "hours", "note"}
            if unknown:
                raise DataError(path, "only the documented fields", record=i, field=f"{fld}.{sorted(unknown)[0]}", hint="")
            for key in ("name", "source"):
                if not isinstance(r.get(key), str) or not r[key].strip():
                    raise DataError(path, "a non-empty string", record=i, field=f"{fld}.{key}", got=r.get(key), hint="")
            if not r["source"].startswith(("https://", "http://")):
                raise DataError(path, "the URL of the official page that publishes the number", record=i,
                                field=f"{fld}.source", got=r["source"], hint="")
            if r.get("kind") not in KINDS:
                raise DataError(path, "one of " + ", ".join(KINDS), record=i, field=f"{fld}.kind", got=r.get("kind"),
                                hint="")
            checked = r.get("last_checked")
            if isinstance(checked, str):
                try:
                    checked = dt.date.fromisoformat(checked)
                except ValueError:
                    checked = None
            if not isinstance(checked, dt.date):
                raise DataError(path, "a date YYYY-MM-DD", record=i, field=f"{fld}.last_checked", got=r.get("last_checked"),
                                hint="")
            if not any(r.get(k) for k in ("phone", "text", "url")):
                raise DataError(path, "at least one of phone, text, url", record=i, field=fld, hint="")
            items.append(Resource(
                name=r["name"], kind=r["kind"], source=r["source"], last_checked=checked.isoformat(),
                **{k: str(r[k]) for k in ("phone", "text", "url", "hours", "note") if r.get(k) is not None}))
        out[str(code).lower()] = (str(region.get("name", code)), items)
    return out


def regions(path: str | Path | None = None) -> dict[str, str]:
    """Region code → display name."""
    return {code: name for code, (name, _) in _load(str(path or default_path())).items()}


def resources_for(region: str, path: str | Path | None = None) -> list[Resource]:
    """The resources of one region (cn, hk, tw, us, uk, intl, …); unknown region → PsyassistError."""
    data = _load(str(path or default_path()))
    key = region.strip().lower()
    if key not in data:
        known = ", ".join(f"{c} ({n})" for c, (n, _) in data.items())
        raise PsyassistError(f"unknown region {region!r}; known regions: {known}")
    return list(data[key][1])


def attach_resources(detection: Detection, region: str, path: str | Path | None = None) -> dict:
    """The detection as a dict plus `resources` for `region` when it is flagged (empty list otherwise).

    This is what chat, serve and the app show next to a reply: the flag and where to get help.
    """
    found = resources_for(region, path)  # checked even when not flagged: a bad --region fails early
    out = detection.to_dict()
    out["region"] = region
    out["resources"] = [r.to_dict() for r in found] if detection.flagged else []
    return out


def print_detection(where: str, text: str, det: Detection) -> None:
    """One message: its level, categories, the text with the evidence highlighted, and the reasons."""
    style = {"urgent": "bold white on red", "concern": "bold black on yellow", "none": "green"}[det.level]
    head = Text()
    head.append(f" {det.level.upper()} ", style=style)
    if det.categories:
        head.append("  " + ", ".join(det.categories))
    if det.constructs:
        head.append("  [" + ", ".join(det.constructs) + "]", style="bold")
    if where:
        head.append(f"  {where}", style="dim")
    console.print(head)
    body = Text(text)
    for e in det.evidence:
        body.stylize("bold red underline" if det.level == "urgent" else "bold yellow underline", e.start, e.end)
    console.print(body)
    for r in det.reasons:
        console.print(f"  [dim]· {escape(r)}[/]")


def print_resources(region: str, items: list[Resource]) -> None:
    console.print(f"\n[bold]If you or someone else is in danger, get help now[/] ({regions().get(region, region)}):")
    for r in items:
        console.print(f"  • [bold]{escape(r.name)}[/]: {escape(r.contact())}"
                      + (f" ({escape(r.hours)})" if r.hours else ""))
        console.print(f"    [dim]source {escape(r.source)}, last checked {r.last_checked}[/]")


def run_check(target: str, *, region: str, as_json: bool = False, lang: str | None = None,
              engine=None, show_all: bool = False, context: str = "self") -> Counter:
    """`psyassist safety check`: TARGET is a message, a file (.txt one per line, .jsonl) or '-' (stdin lines).

    A single message is always shown; from a file only the flagged ones (all with show_all).
    Returns the count per level.
    """
    from psyassist.safety.crisis import LEVELS, detect, read_messages

    items = resources_for(region)  # an unknown region fails before any work
    if target == "-":
        messages = [(f"stdin:{i}", ln) for i, ln in enumerate(sys.stdin.read().splitlines(), 1) if ln.strip()]
    elif len(target) < 4096 and "\n" not in target and Path(target).is_file():
        messages = read_messages(target)
    else:
        messages = [("", target)]
    run = engine.detect if engine is not None else detect
    counts: Counter = Counter({lv: 0 for lv in LEVELS})
    single = len(messages) == 1 and messages[0][0] == ""
    for where, text in messages:
        det = run(text, lang=lang, context=context)
        counts[det.level] += 1
        if as_json:
            out = attach_resources(det, region)
            print(json.dumps({"where": where, "text": text, **out} if where else out, ensure_ascii=False))
        elif single or show_all or det.flagged:
            print_detection(where, text, det)
    if not as_json:
        if not single:
            console.print(f"\n{len(messages)} messages: " + ", ".join(f"{lv} {counts[lv]}" for lv in LEVELS))
        if counts["concern"] or counts["urgent"]:
            print_resources(region, items)
    return counts
