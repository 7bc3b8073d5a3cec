"""The one conversation schema every reader produces and every stage consumes.

    python -c "from psyassist.data.schema import Conversation; print(Conversation.from_dict({'id': 'x', 'messages': [{'role': 'user', 'content': 'hi'}]}, file='-'))"

On disk a conversation is one JSON object per line:
    {"id": str, "messages": [{"role": "system"|"user"|"assistant", "content": str, "meta"?: {...}}],
     "tags": [str], "source": str, "meta": {...}}
A message's optional `meta` holds per-turn labels (ESConv's support strategies: {"strategy": [...]});
it travels with the turn through cleaning and is never shown to a chat template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psyassist.errors import DataError

ROLES = ("system", "user", "assistant")


@dataclass(slots=True)
class Message:
    role: str
    content: str
    meta: dict[str, Any] | None = None  # per-turn labels; not part of to_dict(), which chat templates see

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(slots=True)
class Conversation:
    id: str
    messages: list[Message]
    tags: list[str] = field(default_factory=list)
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def system(self) -> str | None:
        return self.messages[0].content if self.messages and self.messages[0].role == "system" else None

    def n_assistant(self) -> int:
        return sum(1 for m in self.messages if m.role == "assistant")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "messages": [{**m.to_dict(), "meta": m.meta} if m.meta else m.to_dict() for m in self.messages],
            "tags": list(self.tags),
            "source": self.source,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(
        cls,
        d: Any,
        *,
        file: str,
        line: int | None = None,
        record: int | None = None,
        default_id: str | None = None,
    ) -> Conversation:
        """Validate a dict in the on-disk shape; raise DataError naming the bad field."""

        def err(expected: str, field_name: str | None, got: object = None, reason: str = "invalid") -> DataError:
            return DataError(file, expected, line=line, record=record, field=field_name, got=got, reason=reason)

        if not isinstance(d, dict):
            raise err("a JSON object", None, type(d).__name__, reason="not_an_object")
        raw_id = d.get("id", default_id)
        if raw_id is None:
            raise err("an 'id' (string or number)", "id", reason="missing_id")
        if not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool):
            raise err("a string or number", "id", raw_id, reason="bad_id")
        msgs = d.get("messages")
        if not isinstance(msgs, list):
            raise err("a list of {role, content} objects", "messages", msgs if msgs is None else type(msgs).__name__,
                      reason="missing_messages")
        messages = [validate_message(m, i, err) for i, m in enumerate(msgs)]
        tags = d.get("tags", [])
        if isinstance(tags, str):
            tags = [tags]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise err("a list of strings", "tags", tags, reason="bad_tags")
        source = d.get("source", "")
        meta = d.get("meta", {})
        if not isinstance(meta, dict):
            raise err("an object", "meta", type(meta).__name__, reason="bad_meta")
        return cls(id=str(raw_id), messages=messages, tags=list(tags), source=str(source or ""), meta=meta)


def validate_message(m: Any, i: int, err) -> Message:
    """Check one message; `err(expected, field, got, reason)` builds the DataError."""
    if not isinstance(m, dict):
        raise err("an object with 'role' and 'content'", f"messages[{i}]", type(m).__name__, "bad_message")
    role = m.get("role")
    if role is None:
        raise err("a role (system, user or assistant)", f"messages[{i}].role", None, "missing_role")
    if role not in ROLES:
        raise err("one of system, user, assistant", f"messages[{i}].role", role, "bad_role")
    content = m.get("content")
    if not isinstance(content, str):
        raise err("a string", f"messages[{i}].content", content if content is None else type(content).__name__,
                  "bad_content")
    meta = m.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise err("an object", f"messages[{i}].meta", type(meta).__name__, "bad_meta")
    return Message(role=role, content=content, meta=meta or None)
