"""Client records as one counselor sees them: every read and write checks ownership, encrypts or
decrypts, and is written to the audit log.  The web routes (and the JSON API) call only this.

    python -c "from psyassist.app.records import Workspace; help(Workspace)"

Rules this module enforces, whatever route calls it:
- A counselor sees only their own clients; anything else is NotFound (never "forbidden", which
  would confirm the record exists).  An admin manages accounts and reads the audit log; an admin
  opens no client record.
- Every value a client said or a counselor wrote is sealed with the client's data key, bound to
  its table, row and field.  A value that fails its check (tampered, swapped) makes that one
  record show an error; the rest of the client's record stays readable.
- A signed note never changes: saving into it is refused; a dated addendum is the only addition.
- Every access is an audit entry (who, action, client, record id; never text).  A write's entry is
  appended inside its transaction, before the commit: a crash can leave an entry for a write that
  never committed, never a committed write without its entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select

from psyassist.app.accounts import Actor
from psyassist.app.notes.draft import PastNote, basic_updates, empty_content, final_sections, new_item
from psyassist.app.notes.templates import BASIC_KEYS, Template
from psyassist.app.store.crypto import DataKey, Unreadable
from psyassist.app.store.models import (
    Addendum,
    BasicInfoVersion,
    Chat,
    ChatMessage,
    Client,
    DataKeyRow,
    Draft,
    Note,
    NoteVersion,
    SimilarEntry,
    User,
    new_id,
    utcnow,
)
from psyassist.errors import PsyassistError

if TYPE_CHECKING:
    from psyassist.app.state import AppState

MAX_NAME = 200
MAX_TAGS = 20
MAX_TEXT = 20_000  # one field a counselor types (an input, an item, an addendum): ~10 pages


class NotFound(PsyassistError):
    pass


class Conflict(PsyassistError):
    pass


class Invalid(PsyassistError):
    pass


@dataclass
class ClientView:
    id: str
    name: str
    tags: list[str]
    archived: bool
    created_at: datetime
    updated_at: datetime
    error: str | None = None
    notes: int = 0
    last_session: date | None = None


@dataclass
class BasicInfoView:
    version: int
    data: dict[str, str]
    created_at: datetime | None
    created_by: str | None
    source: str = "manual"
    error: str | None = None


@dataclass
class NoteView:
    id: str
    client_id: str
    template: str
    session_date: date
    status: str
    version: int
    sections: dict[str, list[str]] | None
    created_at: datetime
    updated_at: datetime
    signed_at: datetime | None
    signed_by: str | None
    draft_id: str | None
    addenda: list[dict] = field(default_factory=list)
    error: str | None = None


@dataclass
class DraftView:
    id: str
    client_id: str
    template: str
    session_date: date
    status: str
    input: str
    content: dict | None
    provenance: dict
    error: str | None
    note_id: str | None
    revision: int
    created_at: datetime
    updated_at: datetime
    unreadable: str | None = None
    use_library: bool = True


def _check_text(text: str, what: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(text, str):
        raise Invalid(f"{what} must be text")
    if len(text) > limit:
        raise Invalid(f"{what} is {len(text):,} characters; the limit is {limit:,}")
    if "\x00" in text:
        raise Invalid(f"{what} contains a NUL character")
    return text


def clean_tags(tags) -> list[str]:
    if isinstance(tags, str):
        tags = tags.replace("，", ",").split(",")
    out = []
    for t in tags or []:
        t = _check_text(str(t), "a tag", 40).strip()
        if t and t not in out:
            out.append(t)
    if len(out) > MAX_TAGS:
        raise Invalid(f"at most {MAX_TAGS} tags per client")
    return out


class Workspace:
    def __init__(self, state: AppState, actor: Actor):
        self.st = state
        self.actor = actor

    # --- helpers -------------------------------------------------------------------------------

    def _audit(self, action: str, client: str | None, target: str | None = None) -> None:
        self.st.audit.access(who=self.actor.username, action=action, client=client, target=target)

    def _counselor(self) -> None:
        if self.actor.is_admin:
            # An admin account manages accounts; client records belong to counselors (seed 004's privacy).
            raise NotFound("administrator accounts do not open client records; sign in as the counselor")

    def _client_row(self, s, cid: str) -> Client:
        self._counselor()
        c = s.get(Client, cid) if isinstance(cid, str) and len(cid) <= 32 else None
        if c is None or c.owner_id != self.actor.id:
            raise NotFound("no such client")
        return c

    def _key(self, s, cid: str) -> DataKey:
        return self.st.vault.key(s, f"client:{cid}")

    @staticmethod
    def _open(key: DataKey | None, blob: bytes | None, table: str, rid: str, fld: str) -> tuple[str, str | None]:
        if blob is None:
            return "", None
        try:
            if key is None:
                raise Unreadable(f"{table} {rid}")
            return key.open(blob, table, rid, fld), None
        except Unreadable as e:
            return "", str(e)

    def _client_view(self, s, c: Client) -> ClientView:
        try:
            key = self._key(s, c.id)
        except Unreadable:
            key = None
        name, e1 = self._open(key, c.name_ct, "clients", c.id, "name")
        tags_raw, e2 = self._open(key, c.tags_ct, "clients", c.id, "tags")
        try:
            tags = json.loads(tags_raw) if tags_raw else []
        except ValueError:
            tags, e2 = [], "tags are not valid JSON"
        return ClientView(c.id, name, tags, c.archived, c.created_at, c.updated_at, e1 or e2)

    # --- clients -------------------------------------------------------------------------------

    def list_clients(self, q: str = "", *, archived: bool = False, tag: str = "") -> list[ClientView]:
        """This counselor's clients, filtered by name/tag text (names are encrypted: the filter runs here)."""
        self._counselor()
        q, tag = q.strip().lower(), tag.strip().lower()
        with self.st.db.read() as s:
            rows = s.scalars(select(Client).where(Client.owner_id == self.actor.id, Client.archived.is_(archived))
                             .order_by(Client.updated_at.desc())).all()
            stats = {cid: (n, last) for cid, n, last in s.execute(
                select(Note.client_id, func.count(), func.max(Note.session_date))
                .join(Client, Client.id == Note.client_id).where(Client.owner_id == self.actor.id)
                .group_by(Note.client_id)).all()}
            out = []
            for c in rows:
                v = self._client_view(s, c)
                v.notes, v.last_session = stats.get(c.id, (0, None))
                if q and q not in v.name.lower() and not any(q in t.lower() for t in v.tags):
                    continue
                if tag and tag not in (t.lower() for t in v.tags):
                    continue
                out.append(v)
        self._audit("client.list", None, f"{len(out)} shown")
        return out

    def create_client(self, name: str, tags=(), basic_info: dict | None = None) -> str:
        self._counselor()
        name = _check_text(name, "the name", MAX_NAME).strip()
        if not name:
            raise Invalid("a client needs a name (or a code, e.g. initials)")
        tags = clean_tags(tags)
        cid = new_id()
        with self.st.db.write() as s:
            key = self.st.vault.create(s, f"client:{cid}")
            s.add(Client(id=cid, owner_id=self.actor.id, name_ct=key.seal(name, "clients", cid, "name"),
                         tags_ct=key.seal(json.dumps(tags, ensure_ascii=False), "clients", cid, "tags"),
                         archived=False))
            s.flush()
            self._add_basic_info(s, key, cid, self._basic(basic_info or {}), "manual", None)
            self._audit("client.create", cid)
        return cid

    def client(self, cid: str) -> ClientView:
        with self.st.db.read() as s:
            v = self._client_view(s, self._client_row(s, cid))
        self._audit("client.read", cid)
        return v

    def update_client(self, cid: str, *, name: str | None = None, tags=None) -> None:
        with self.st.db.write() as s:
            c = self._client_row(s, cid)
            key = self._key(s, cid)
            if name is not None:
                name = _check_text(name, "the name", MAX_NAME).strip()
                if not name:
                    raise Invalid("a client needs a name")
                c.name_ct = key.seal(name, "clients", cid, "name")
            if tags is not None:
                c.tags_ct = key.seal(json.dumps(clean_tags(tags), ensure_ascii=False), "clients", cid, "tags")
            c.updated_at = utcnow()
            self._audit("client.update", cid)
        self.st.similar.client_changed(self.actor.id, cid)  # the name shown with its notes

    def set_archived(self, cid: str, archived: bool) -> None:
        with self.st.db.write() as s:
            c = self._client_row(s, cid)
            c.archived = bool(archived)
            c.updated_at = utcnow()
            self._audit("client.archive" if archived else "client.unarchive", cid)

    def delete_client(self, cid: str) -> None:
        """Irrecoverable: the client's data key goes first (same transaction), then every row."""
        with self.st.db.write() as s:
            self._client_row(s, cid)
            self.st.vault.delete(s, f"client:{cid}")
            s.flush()
            note_ids = select(Note.id).where(Note.client_id == cid)
            chat_ids = select(Chat.id).where(Chat.client_id == cid)
            s.execute(delete(Addendum).where(Addendum.note_id.in_(note_ids)))
            s.execute(delete(NoteVersion).where(NoteVersion.note_id.in_(note_ids)))
            s.execute(delete(SimilarEntry).where(SimilarEntry.client_id == cid))
            s.execute(delete(Note).where(Note.client_id == cid))
            s.execute(delete(BasicInfoVersion).where(BasicInfoVersion.client_id == cid))
            s.execute(delete(Draft).where(Draft.client_id == cid))
            s.execute(delete(ChatMessage).where(ChatMessage.chat_id.in_(chat_ids)))
            s.execute(delete(Chat).where(Chat.client_id == cid))
            from psyassist.app.store.models import Adapter, Job

            s.execute(delete(Adapter).where(Adapter.client_id == cid))
            s.execute(delete(Job).where(Job.client_id == cid))
            s.execute(delete(Client).where(Client.id == cid))
            self._audit("client.delete", cid)
        self.st.vault.forget(f"client:{cid}")
        self.st.similar.client_changed(self.actor.id, cid)  # its notes leave the in-memory index now
        self.st.after_client_deleted(cid)

    # --- basic information -----------------------------------------------------------------------

    @staticmethod
    def _basic(data: dict) -> dict[str, str]:
        unknown = set(data) - set(BASIC_KEYS)
        if unknown:
            raise Invalid(f"unknown basic information field(s): {', '.join(sorted(unknown))}")
        return {k: _check_text(str(data.get(k) or ""), k, 4000).strip() for k in BASIC_KEYS}

    def _add_basic_info(self, s, key: DataKey, cid: str, data: dict, source: str, draft_id: str | None) -> int:
        last = s.scalar(select(func.max(BasicInfoVersion.version)).where(BasicInfoVersion.client_id == cid)) or 0
        rid = new_id()
        s.add(BasicInfoVersion(id=rid, client_id=cid, version=last + 1, source=source, draft_id=draft_id,
                               created_by=self.actor.id,
                               data_ct=key.seal(json.dumps(data, ensure_ascii=False), "basic_info_versions", rid, "data")))
        return last + 1

    def _basic_view(self, s, key, row: BasicInfoVersion | None, names: dict) -> BasicInfoView:
        if row is None:
            return BasicInfoView(0, {k: "" for k in BASIC_KEYS}, None, None)
        raw, err = self._open(key, row.data_ct, "basic_info_versions", row.id, "data")
        data = {k: "" for k in BASIC_KEYS}
        if raw:
            data.update(json.loads(raw))
        return BasicInfoView(row.version, data, row.created_at, names.get(row.created_by, "?"), row.source, err)

    def _names(self, s) -> dict[str, str]:
        return dict(s.execute(select(User.id, User.username)).all())

    def basic_info(self, cid: str) -> BasicInfoView:
        with self.st.db.read() as s:
            self._client_row(s, cid)
            row = s.scalar(select(BasicInfoVersion).where(BasicInfoVersion.client_id == cid)
                           .order_by(BasicInfoVersion.version.desc()).limit(1))
            v = self._basic_view(s, self._key_or_none(s, cid), row, self._names(s))
        self._audit("basic_info.read", cid)
        return v

    def basic_info_history(self, cid: str) -> list[BasicInfoView]:
        with self.st.db.read() as s:
            self._client_row(s, cid)
            key, names = self._key_or_none(s, cid), self._names(s)
            rows = s.scalars(select(BasicInfoVersion).where(BasicInfoVersion.client_id == cid)
                             .order_by(BasicInfoVersion.version.desc())).all()
            out = [self._basic_view(s, key, r, names) for r in rows]
        self._audit("basic_info.history", cid)
        return out

    def update_basic_info(self, cid: str, data: dict, *, source: str = "manual", draft_id: str | None = None) -> int:
        with self.st.db.write() as s:
            c = self._client_row(s, cid)
            v = self._add_basic_info(s, self._key(s, cid), cid, self._basic(data), source, draft_id)
            c.updated_at = utcnow()
            self._audit("basic_info.update", cid, f"v{v}")
        return v

    def _key_or_none(self, s, cid: str) -> DataKey | None:
        try:
            return self._key(s, cid)
        except Unreadable:
            return None

    # --- notes -----------------------------------------------------------------------------------

    def _note_view(self, s, key, n: Note, names: dict, *, with_addenda: bool = True) -> NoteView:
        v = s.scalar(select(NoteVersion).where(NoteVersion.note_id == n.id, NoteVersion.version == n.version))
        sections, err = None, None
        if v is not None:
            raw, err = self._open(key, v.content_ct, "note_versions", v.id, "content")
            sections = json.loads(raw) if raw else None
        view = NoteView(n.id, n.client_id, n.template, n.session_date, n.status, n.version, sections, n.created_at,
                        n.updated_at, n.signed_at, names.get(n.signed_by) if n.signed_by else None, n.draft_id,
                        error=err)
        if with_addenda:
            for a in s.scalars(select(Addendum).where(Addendum.note_id == n.id).order_by(Addendum.created_at)):
                text, e = self._open(key, a.text_ct, "addenda", a.id, "text")
                view.addenda.append({"id": a.id, "text": text, "at": a.created_at, "by": names.get(a.created_by, "?"),
                                     "error": e})
        return view

    def notes(self, cid: str) -> list[NoteView]:
        """The client's notes, newest session first (the timeline)."""
        with self.st.db.read() as s:
            self._client_row(s, cid)
            key, names = self._key_or_none(s, cid), self._names(s)
            rows = s.scalars(select(Note).where(Note.client_id == cid)
                             .order_by(Note.session_date.desc(), Note.created_at.desc())).all()
            out = [self._note_view(s, key, n, names) for n in rows]
        self._audit("note.list", cid, f"{len(out)} notes")
        return out

    def _note_row(self, s, nid: str) -> Note:
        n = s.get(Note, nid) if isinstance(nid, str) and len(nid) <= 32 else None
        if n is None:
            raise NotFound("no such note")
        self._client_row(s, n.client_id)
        return n

    def note(self, nid: str) -> NoteView:
        with self.st.db.read() as s:
            n = self._note_row(s, nid)
            v = self._note_view(s, self._key_or_none(s, n.client_id), n, self._names(s))
        self._audit("note.read", v.client_id, nid)
        return v

    def note_versions(self, nid: str) -> list[dict]:
        """Every version of a note, newest first: {version, sections, at, by, error}."""
        with self.st.db.read() as s:
            n = self._note_row(s, nid)
            key, names = self._key_or_none(s, n.client_id), self._names(s)
            out = []
            for v in s.scalars(select(NoteVersion).where(NoteVersion.note_id == nid)
                               .order_by(NoteVersion.version.desc())):
                raw, err = self._open(key, v.content_ct, "note_versions", v.id, "content")
                out.append({"version": v.version, "sections": json.loads(raw) if raw else None,
                            "at": v.created_at, "by": names.get(v.created_by, "?"), "error": err})
        self._audit("note.versions", n.client_id, nid)
        return out

    def sign_note(self, nid: str) -> None:
        with self.st.db.write() as s:
            n = self._note_row(s, nid)
            if n.status == "signed":
                raise Conflict("this note is already signed")
            n.status, n.signed_at, n.signed_by, n.updated_at = "signed", utcnow(), self.actor.id, utcnow()
            cid = n.client_id
            self._audit("note.sign", cid, nid)

    def add_addendum(self, nid: str, text: str) -> str:
        text = _check_text(text, "the addendum").strip()
        if not text:
            raise Invalid("an addendum needs text")
        with self.st.db.write() as s:
            n = self._note_row(s, nid)
            if n.status != "signed":
                raise Conflict("addenda are for signed notes; an unsigned note can still be edited")
            rid = new_id()
            s.add(Addendum(id=rid, note_id=nid, created_by=self.actor.id,
                           text_ct=self._key(s, n.client_id).seal(text, "addenda", rid, "text")))
            cid = n.client_id
            self._audit("note.addendum", cid, nid)
        return rid

    def past_notes(self, cid: str, templates: dict[str, Template], *, exclude: str | None = None) -> list[PastNote]:
        """Readable notes of a client, newest first, as a draft's context sees them."""
        out = []
        for n in self.notes(cid):
            if n.sections is None or n.id == exclude:
                continue
            t = templates.get(n.template) or templates["seed004"]
            out.append(PastNote(n.id, n.session_date.isoformat(), t, n.sections))
        return out

    # --- similar cases (app/similar.py) ---------------------------------------------------------

    def similar_corpus(self, client_ids: set[str] | None = None) -> list[dict]:
        """The newest version of every readable note of this counselor's clients (or of `client_ids`
        among them), decrypted, for the in-memory similar-case index.  Unreadable notes are left out."""
        from psyassist.app.similar import note_text

        self._counselor()
        with self.st.db.read() as s:
            q = select(Client).where(Client.owner_id == self.actor.id)
            if client_ids is not None:
                q = q.where(Client.id.in_(client_ids))
            out = []
            for c in s.scalars(q).all():
                key = self._key_or_none(s, c.id)
                name, _ = self._open(key, c.name_ct, "clients", c.id, "name")
                rows = s.execute(select(Note, NoteVersion).join(NoteVersion, (NoteVersion.note_id == Note.id)
                                                                & (NoteVersion.version == Note.version))
                                 .where(Note.client_id == c.id)).all()
                stored = {e.note_id: e for e in s.scalars(select(SimilarEntry).where(SimilarEntry.client_id == c.id))}
                for n, v in rows:
                    raw, err = self._open(key, v.content_ct, "note_versions", v.id, "content")
                    if raw and not err:
                        row = {"note_id": n.id, "client_id": c.id, "client_name": name, "version": n.version,
                               "session_date": n.session_date, "text": note_text(json.loads(raw)), "tokens": None,
                               "vector": None, "vector_model": None}
                        e = stored.get(n.id)
                        if e is not None and e.version == n.version:
                            row.update(self._open_similar(key, e))
                        out.append(row)
        self._audit("similar.index", None, f"{len(out)} notes")
        return out

    @staticmethod
    def _open_similar(key: DataKey | None, e: SimilarEntry) -> dict:
        """A stored entry's tokens and vector; nothing when it cannot be opened (it is then recomputed)."""
        import numpy as np

        if key is None:
            return {}
        try:
            got = {"tokens": json.loads(key.open(e.tokens_ct, "similar_entries", e.note_id, "tokens"))}
            if e.vector_ct is not None and e.vector_model:
                raw = key.open_bytes(e.vector_ct, "similar_entries", e.note_id, "vector")
                got.update(vector=np.frombuffer(raw, dtype="<f4").copy(), vector_model=e.vector_model)
            return got
        except (Unreadable, ValueError):
            return {}

    def store_similar(self, entries: list[dict]) -> int:
        """Seal and keep index entries ({note_id, client_id, version, tokens} and optionally vector +
        vector_model) of this counselor's notes; an entry of a note that changed meanwhile is skipped."""
        import numpy as np

        self._counselor()
        n = 0
        with self.st.db.write() as s:
            mine = set(s.scalars(select(Client.id).where(Client.owner_id == self.actor.id,
                                                         Client.id.in_({e["client_id"] for e in entries}))))
            versions = dict(s.execute(select(Note.id, Note.version).where(
                Note.id.in_([e["note_id"] for e in entries]), Note.client_id.in_(mine))).all())
            for e in entries:
                if e["client_id"] not in mine or versions.get(e["note_id"]) != e["version"]:
                    continue
                key = self._key_or_none(s, e["client_id"])
                if key is None:
                    continue
                row = s.get(SimilarEntry, e["note_id"])
                if row is None or row.version != e["version"]:
                    if row is None:
                        row = SimilarEntry(note_id=e["note_id"], client_id=e["client_id"])
                        s.add(row)
                    row.version, row.vector_model, row.vector_ct = e["version"], None, None
                    row.tokens_ct = key.seal(json.dumps(e["tokens"], ensure_ascii=False), "similar_entries",
                                             e["note_id"], "tokens")
                if e.get("vector") is not None:
                    row.vector_model = e["vector_model"]
                    row.vector_ct = key.seal(np.asarray(e["vector"], dtype="<f4").tobytes(), "similar_entries",
                                             e["note_id"], "vector")
                row.updated_at = utcnow()
                n += 1
        return n

    def similar_cases(self, *, draft_id: str | None = None, note_id: str | None = None, k: int = 5) -> dict:
        """This counselor's earlier notes most like a draft's input (or its items, when it has no input)
        or like a note's text; the note itself (and the note a draft edits) is never among them."""
        from psyassist.app.similar import draft_text, note_text

        if draft_id is not None:
            d = self.draft(draft_id, audit=False)
            query, cid, exclude, target = d.input.strip() or draft_text(d.content), d.client_id, {d.note_id}, draft_id
        else:
            with self.st.db.read() as s:
                n = self._note_row(s, note_id)
                v = self._note_view(s, self._key_or_none(s, n.client_id), n, {}, with_addenda=False)
            query, cid, exclude, target = note_text(v.sections), v.client_id, {note_id}, note_id
        out = self.st.similar.search(self, query, k=max(1, min(int(k), 50)), exclude=exclude - {None})
        self._audit("similar.search", cid, target)
        return {"client_id": cid, **out}

    # --- drafts ----------------------------------------------------------------------------------

    def create_draft(self, cid: str, text: str, template: Template, session_date: date, *,
                     generate: bool = True, note_id: str | None = None, content: dict | None = None,
                     use_library: bool = True) -> str:
        """A draft row; with generate=True it starts as 'generating' (the runner fills it), else 'ready'."""
        text = _check_text(text, "the session input")
        did = new_id()
        with self.st.db.write() as s:
            self._client_row(s, cid)
            key = self._key(s, cid)
            # An empty draft is stored at once: a failed or interrupted generation leaves it editable.
            body = content if content is not None else empty_content(template)
            s.add(Draft(id=did, client_id=cid, owner_id=self.actor.id, template=template.name,
                        session_date=session_date, status="generating" if generate else "ready",
                        input_ct=key.seal(text, "drafts", did, "input"), note_id=note_id, provenance="{}",
                        content_ct=key.seal(json.dumps(body, ensure_ascii=False), "drafts", did, "content"),
                        revision=0, use_library=bool(use_library)))
            self._audit("draft.create", cid, did)
        return did

    def _draft_row(self, s, did: str) -> Draft:
        d = s.get(Draft, did) if isinstance(did, str) and len(did) <= 32 else None
        if d is None or d.owner_id != self.actor.id:
            raise NotFound("no such draft")
        self._client_row(s, d.client_id)
        return d

    def _draft_view(self, s, d: Draft) -> DraftView:
        key = self._key_or_none(s, d.client_id)
        text, e1 = self._open(key, d.input_ct, "drafts", d.id, "input")
        raw, e2 = self._open(key, d.content_ct, "drafts", d.id, "content")
        return DraftView(d.id, d.client_id, d.template, d.session_date, d.status, text,
                         json.loads(raw) if raw else None, json.loads(d.provenance or "{}"), d.error, d.note_id,
                         d.revision, d.created_at, d.updated_at, e1 or e2, bool(d.use_library))

    def draft(self, did: str, *, audit: bool = True) -> DraftView:
        with self.st.db.read() as s:
            v = self._draft_view(s, self._draft_row(s, did))
        if audit:
            self._audit("draft.read", v.client_id, did)
        return v

    def drafts(self, cid: str) -> list[DraftView]:
        """Open (unsaved) drafts of a client, newest first."""
        with self.st.db.read() as s:
            self._client_row(s, cid)
            rows = s.scalars(select(Draft).where(Draft.client_id == cid, Draft.owner_id == self.actor.id,
                                                 Draft.note_id.is_(None)).order_by(Draft.created_at.desc())).all()
            out = [self._draft_view(s, d) for d in rows]
        self._audit("draft.list", cid)
        return out

    def edit_draft(self, did: str, change, *, revision: int | None = None, action: str = "draft.update"):
        """Apply `change(content) -> result` to the draft's content in one write transaction.

        `revision` (the page's copy) guards against lost updates from two tabs: a stale one gets
        Conflict and reloads.  A draft that is still generating cannot be edited."""
        with self.st.db.write() as s:
            d = self._draft_row(s, did)
            if d.status == "generating":
                raise Conflict("the draft is still being written; wait until it is done")
            if revision is not None and revision != d.revision:
                raise Conflict("this draft was changed in another window; reload to see the newest version")
            key = self._key(s, d.client_id)
            raw, err = self._open(key, d.content_ct, "drafts", did, "content")
            if err:
                raise Conflict(err)
            content = json.loads(raw)
            result = change(content)
            d.content_ct = key.seal(json.dumps(content, ensure_ascii=False), "drafts", did, "content")
            d.revision += 1
            d.updated_at = utcnow()
            cid, rev = d.client_id, d.revision
            self._audit(action, cid, did)
        return result, rev

    def finish_draft(self, did: str, *, content: dict | None, model_output: str | None, provenance: dict,
                     status: str, error: str | None = None) -> None:
        """The runner's write at the end of a generation (content and the model's raw output, sealed)."""
        with self.st.db.write() as s:
            d = self._draft_row(s, did)
            key = self._key(s, d.client_id)
            if content is not None:
                d.content_ct = key.seal(json.dumps(content, ensure_ascii=False), "drafts", did, "content")
            if model_output is not None:
                d.model_ct = key.seal(model_output, "drafts", did, "model")
            d.provenance = json.dumps(provenance, ensure_ascii=False)
            d.status, d.error, d.updated_at = status, error, utcnow()
            d.revision += 1
            cid = d.client_id
            self._audit("draft.generated", cid, did)

    def save_draft(self, did: str, template: Template, *, revision: int | None = None) -> str:
        """Write the draft into the notes: a new note (first save) or a new version of its note.
        Accepted basic-information updates become a new basic-information version.  Returns the note id."""
        with self.st.db.write() as s:
            d = self._draft_row(s, did)
            if d.status == "generating":
                raise Conflict("the draft is still being written; wait until it is done")
            if revision is not None and revision != d.revision:
                raise Conflict("this draft was changed in another window; reload before saving")
            key = self._key(s, d.client_id)
            raw, err = self._open(key, d.content_ct, "drafts", did, "content")
            if err:
                raise Conflict(err)
            content = json.loads(raw)
            sections = final_sections(template, content)
            if not any(sections.values()):
                raise Invalid("the draft is empty: write or generate at least one item before saving")
            if d.note_id:
                n = s.get(Note, d.note_id)
                if n is None:
                    raise Conflict("the note this draft saves into was deleted")
                if n.status == "signed":
                    raise Conflict("the note is signed; add an addendum instead")
                n.version += 1
                n.updated_at = utcnow()
                n.session_date = d.session_date
            else:
                n = Note(id=new_id(), client_id=d.client_id, template=d.template, session_date=d.session_date,
                         status="saved", version=1, draft_id=did, created_by=self.actor.id)
                s.add(n)
                d.note_id = n.id
            vid = new_id()
            s.add(NoteVersion(id=vid, note_id=n.id, version=n.version, created_by=self.actor.id, draft_id=did,
                              content_ct=key.seal(json.dumps(sections, ensure_ascii=False), "note_versions", vid,
                                                  "content")))
            updates = basic_updates(content)
            if updates:
                row = s.scalar(select(BasicInfoVersion).where(BasicInfoVersion.client_id == d.client_id)
                               .order_by(BasicInfoVersion.version.desc()).limit(1))
                current = self._basic_view(s, key, row, {}).data
                merged = {**current, **updates}
                if merged != current:
                    self._add_basic_info(s, key, d.client_id, merged, "draft", did)
                for k in updates:  # applied: the next save must not apply them again
                    content["basic_info"][k]["applied"] = True
            d.content_ct = key.seal(json.dumps(content, ensure_ascii=False), "drafts", did, "content")
            d.status, d.updated_at = "saved", utcnow()
            d.revision += 1
            s.get(Client, d.client_id).updated_at = utcnow()
            nid, cid = n.id, d.client_id
            self._audit("note.save", cid, nid)
        self.st.similar.client_changed(self.actor.id, cid)
        return nid

    def draft_for_note(self, nid: str, templates: dict[str, Template]) -> str:
        """The working draft of an unsigned note (its own, or a new one holding the current version)."""
        note = self.note(nid)
        if note.status == "signed":
            raise Conflict("a signed note cannot be edited; add an addendum")
        if note.draft_id:
            with self.st.db.read() as s:
                d = s.get(Draft, note.draft_id)
                if d is not None and d.owner_id == self.actor.id:
                    return d.id
        t = templates.get(note.template) or templates["seed004"]
        content = empty_content(t)
        for sec in t.sections:
            content["sections"][sec.key] = [new_item(x, "counselor") for x in (note.sections or {}).get(sec.key, [])] \
                or content["sections"][sec.key]
        did = self.create_draft(note.client_id, "", t, note.session_date, generate=False, note_id=nid, content=content)
        with self.st.db.write() as s:
            s.get(Note, nid).draft_id = did
        return did

    # --- chat ------------------------------------------------------------------------------------

    def _chat_owner(self, chat: Chat) -> str:
        return f"client:{chat.client_id}" if chat.client_id else f"user:{chat.owner_id}"

    def _chat_row(self, s, chat_id: str) -> Chat:
        self._counselor()
        c = s.get(Chat, chat_id) if isinstance(chat_id, str) and len(chat_id) <= 32 else None
        if c is None or c.owner_id != self.actor.id:
            raise NotFound("no such chat")
        if c.client_id:
            self._client_row(s, c.client_id)
        return c

    def _chat_key(self, s, chat: Chat, *, create: bool = False) -> DataKey:
        """The client's key, or for a chat with no client the counselor's own key (made by create_chat, in
        its write transaction: a key made in a read session would never be stored)."""
        owner = self._chat_owner(chat)
        if create and owner.startswith("user:") and s.get(DataKeyRow, owner) is None:
            return self.st.vault.create(s, owner)
        return self.st.vault.key(s, owner)

    def set_draft_library(self, did: str, on: bool) -> None:
        """The per-draft switch: library passages in this draft's next generations (or none)."""
        with self.st.db.write() as s:
            d = self._draft_row(s, did)
            d.use_library = bool(on)
            d.updated_at = utcnow()
            self._audit("draft.library_" + ("on" if on else "off"), d.client_id, did)

    def create_chat(self, client_id: str | None, *, use_notes: bool = False, title: str = "",
                    use_library: bool = True) -> str:
        self._counselor()
        cid = new_id()
        with self.st.db.write() as s:
            if client_id:
                self._client_row(s, client_id)
            chat = Chat(id=cid, owner_id=self.actor.id, client_id=client_id or None,
                        use_notes=bool(use_notes and client_id), title_ct=b"", use_library=bool(use_library))
            key = self._chat_key(s, chat, create=True)
            chat.title_ct = key.seal(_check_text(title, "the title", 200), "chats", cid, "title")
            s.add(chat)
            self._audit("chat.create", client_id, cid)
        return cid

    def chats(self, client_id: str | None = None) -> list[dict]:
        self._counselor()
        with self.st.db.read() as s:
            q = select(Chat).where(Chat.owner_id == self.actor.id)
            if client_id:
                self._client_row(s, client_id)
                q = q.where(Chat.client_id == client_id)
            out = []
            for c in s.scalars(q.order_by(Chat.updated_at.desc()).limit(50)):
                try:
                    key = self._chat_key(s, c)
                except Unreadable:
                    key = None
                title, err = self._open(key, c.title_ct, "chats", c.id, "title")
                out.append({"id": c.id, "client_id": c.client_id, "title": title, "updated_at": c.updated_at,
                            "error": err})
        self._audit("chat.list", client_id)
        return out

    def chat(self, chat_id: str) -> dict:
        with self.st.db.read() as s:
            c = self._chat_row(s, chat_id)
            key = self._chat_key(s, c)
            title, _ = self._open(key, c.title_ct, "chats", c.id, "title")
            msgs = []
            for m in s.scalars(select(ChatMessage).where(ChatMessage.chat_id == chat_id).order_by(ChatMessage.seq)):
                text, err = self._open(key, m.content_ct, "chat_messages", m.id, "content")
                msgs.append({"id": m.id, "seq": m.seq, "role": m.role, "content": text, "status": m.status,
                             "crisis_level": m.crisis_level, "provenance": json.loads(m.provenance or "{}"),
                             "created_at": m.created_at, "error": err})
            out = {"id": c.id, "client_id": c.client_id, "use_notes": c.use_notes, "use_library": c.use_library,
                   "title": title, "messages": msgs}
        self._audit("chat.read", out["client_id"], chat_id)
        return out

    def add_message(self, chat_id: str, role: str, text: str, *, status: str = "done",
                    crisis_level: str | None = None, provenance: dict | None = None) -> str:
        text = _check_text(text, "the message")
        with self.st.db.write() as s:
            c = self._chat_row(s, chat_id)
            key = self._chat_key(s, c)
            seq = (s.scalar(select(func.max(ChatMessage.seq)).where(ChatMessage.chat_id == chat_id)) or 0) + 1
            mid = new_id()
            s.add(ChatMessage(id=mid, chat_id=chat_id, seq=seq, role=role, status=status, crisis_level=crisis_level,
                              provenance=json.dumps(provenance or {}, ensure_ascii=False),
                              content_ct=key.seal(text, "chat_messages", mid, "content")))
            c.updated_at = utcnow()
            if seq == 1 and role == "user":
                c.title_ct = key.seal(text.strip().splitlines()[0][:80] if text.strip() else "", "chats", c.id, "title")
            cid = c.client_id
            self._audit("chat.write", cid, chat_id)
        return mid

    def finish_message(self, chat_id: str, mid: str, text: str, status: str, provenance: dict) -> None:
        with self.st.db.write() as s:
            c = self._chat_row(s, chat_id)
            m = s.get(ChatMessage, mid)
            if m is None or m.chat_id != chat_id:
                raise NotFound("no such message")
            m.content_ct = self._chat_key(s, c).seal(text, "chat_messages", mid, "content")
            m.status, m.provenance = status, json.dumps(provenance, ensure_ascii=False)
            cid = c.client_id
            self._audit("chat.reply", cid, chat_id)

    def chat_client(self, chat_id: str) -> str | None:
        with self.st.db.read() as s:
            return self._chat_row(s, chat_id).client_id

    # --- alerts (crisis detections pending acknowledgement) --------------------------------------

    def owns_alert_subject(self, subject: str) -> bool:
        """Whether an audit detection's `client` field (a client id, or 'chat:<id>') is this counselor's."""
        if self.actor.is_admin:
            return False
        with self.st.db.read() as s:
            if subject.startswith("chat:"):
                c = s.get(Chat, subject[5:])
                return c is not None and c.owner_id == self.actor.id
            c = s.get(Client, subject)
            return c is not None and c.owner_id == self.actor.id

    def my_client_ids(self) -> set[str]:
        with self.st.db.read() as s:
            ids = set(s.scalars(select(Client.id).where(Client.owner_id == self.actor.id)))
            ids |= {f"chat:{i}" for i in s.scalars(select(Chat.id).where(Chat.owner_id == self.actor.id,
                                                                        Chat.client_id.is_(None)))}
        return ids

    # --- per-client adapters ---------------------------------------------------------------------

    def training_records(self, cid: str) -> list[dict]:
        """Every saved session of a client with what training needs, oldest first: the session's input,
        the model's original output (None for notes written by hand), the draft's final content, the
        note's newest version, and the basic information as it was when the draft was made."""
        from psyassist.app.store.models import Draft

        with self.st.db.read() as s:
            self._client_row(s, cid)
            key = self._key(s, cid)
            infos = s.scalars(select(BasicInfoVersion).where(BasicInfoVersion.client_id == cid)
                              .order_by(BasicInfoVersion.version)).all()
            out = []
            rows = s.execute(select(Draft, Note).join(Note, Note.id == Draft.note_id)
                             .where(Draft.client_id == cid, Draft.status == "saved")
                             .order_by(Note.session_date, Note.created_at)).all()
            for d, n in rows:
                text, e1 = self._open(key, d.input_ct, "drafts", d.id, "input")
                model, _ = self._open(key, d.model_ct, "drafts", d.id, "model")
                raw, e2 = self._open(key, d.content_ct, "drafts", d.id, "content")
                v = s.scalar(select(NoteVersion).where(NoteVersion.note_id == n.id, NoteVersion.version == n.version))
                sec, e3 = self._open(key, v.content_ct, "note_versions", v.id, "content") if v else ("", None)
                if e1 or e2 or e3 or not raw or not sec:
                    continue  # an unreadable record is left out, never guessed at
                before = [i for i in infos if i.created_at <= d.created_at] or infos[:1]
                info_raw, _ = self._open(key, before[-1].data_ct, "basic_info_versions", before[-1].id, "data") \
                    if before else ("", None)
                out.append({"note_id": n.id, "draft_id": d.id, "template": n.template,
                            "date": n.session_date.isoformat(), "created_at": n.created_at, "input": text,
                            "model_output": model or None, "content": json.loads(raw), "sections": json.loads(sec),
                            "basic_info": json.loads(info_raw) if info_raw else {}})
        self._audit("adapter.training_data", cid, f"{len(out)} sessions")
        return out

    def adapters(self, cid: str) -> list[dict]:
        from psyassist.app.store.models import Adapter

        with self.st.db.read() as s:
            c = self._client_row(s, cid)
            rows = s.scalars(select(Adapter).where(Adapter.client_id == cid, Adapter.status != "deleted")
                             .order_by(Adapter.version.desc())).all()
            out = [{"id": a.id, "version": a.version, "status": a.status, "method": a.method,
                    "base_model": a.base_model, "size_bytes": a.size_bytes, "created_at": a.created_at,
                    "manifest": json.loads(a.manifest), "memorization": json.loads(a.memorization)} for a in rows]
            choice = c.adapter_choice
        return out, choice

    def set_adapter_choice(self, cid: str, choice: str | None) -> None:
        """None: the newest usable version; "base": no adapter; "v<N>": pin that version of THIS client."""
        from psyassist.app.store.models import Adapter

        with self.st.db.write() as s:
            c = self._client_row(s, cid)
            if choice not in (None, "base"):
                try:
                    version = int(str(choice).lstrip("v"))
                except ValueError as e:
                    raise Invalid("choose auto, base, or a version like v2") from e
                a = s.scalar(select(Adapter).where(Adapter.client_id == cid, Adapter.version == version,
                                                   Adapter.status == "ready"))
                if a is None:
                    raise NotFound("this client has no usable adapter with that version")
                choice = f"v{version}"
            c.adapter_choice = choice
            self._audit("adapter.choose", cid, choice or "auto")

    def delete_adapter(self, cid: str, version: int) -> None:
        from psyassist.app.store.models import Adapter

        with self.st.db.write() as s:
            c = self._client_row(s, cid)
            a = s.scalar(select(Adapter).where(Adapter.client_id == cid, Adapter.version == version,
                                               Adapter.status != "deleted"))
            if a is None:
                raise NotFound("no such adapter version")
            a.status = "deleted"
            if c.adapter_choice == f"v{version}":
                c.adapter_choice = None
            blob = a.blob_key
            self._audit("adapter.delete", cid, f"v{version}")
        self.st.blobs.delete(blob)
        self.st.forget_adapter(blob)

    def jobs(self, cid: str, limit: int = 5) -> list[dict]:
        from psyassist.app.store.models import Job

        with self.st.db.read() as s:
            self._client_row(s, cid)
            rows = s.scalars(select(Job).where(Job.client_id == cid).order_by(Job.created_at.desc()).limit(limit))
            return [{"id": j.id, "status": j.status, "params": json.loads(j.params), "progress": json.loads(j.progress),
                     "error": j.error, "attempts": j.attempts, "created_at": j.created_at, "finished_at": j.finished_at,
                     "adapter_id": j.adapter_id} for j in rows]

    def start_training(self, cid: str, *, method: str | None = None, steps: int | None = None) -> str:
        from psyassist.app.jobs import enqueue
        from psyassist.app.store.models import Adapter

        cfg = self.st.cfg
        method = method or cfg.train_method
        steps = int(steps or cfg.train_steps)
        if method not in ("sft", "dpo"):
            raise Invalid("method must be sft or dpo")
        if not 1 <= steps <= cfg.max_train_steps:
            raise Invalid(f"steps must be between 1 and {cfg.max_train_steps}")
        with self.st.db.read() as s:
            self._client_row(s, cid)
            kept = s.scalar(select(func.count()).select_from(Adapter).join(Client, Client.id == Adapter.client_id)
                            .where(Client.owner_id == self.actor.id, Adapter.status != "deleted"))
        if kept >= cfg.max_adapters_per_counselor:
            raise Conflict(f"you keep {kept} adapter versions (the limit is {cfg.max_adapters_per_counselor}); "
                           "delete old versions first")
        job = enqueue(self.st, kind="train_adapter", client_id=cid, owner_id=self.actor.id,
                      params={"method": method, "steps": steps})
        self._audit("adapter.train", cid, job)
        return job

    def cancel_training(self, cid: str, job_id: str) -> None:
        from psyassist.app.jobs import cancel_job
        from psyassist.app.store.models import Job

        with self.st.db.read() as s:
            self._client_row(s, cid)
            j = s.get(Job, job_id) if isinstance(job_id, str) and len(job_id) <= 32 else None
            if j is None or j.client_id != cid:
                raise NotFound("no such job")
        cancel_job(self.st, job_id)
        self._audit("adapter.cancel", cid, job_id)

