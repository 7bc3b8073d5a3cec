"""A client's whole record (basic information, every note with its addenda), decrypted and localized for export.

    psyassist app export CLIENT_ID --as counselor-7 --format pdf --out record.pdf

The rendering (Markdown, PDF with embedded Chinese font) is export.py; this module only reads
the record through records.Workspace (so ownership and the audit log apply) and lays it out
with the note template's section titles in the counselor's language.
"""

from __future__ import annotations

from datetime import datetime, timezone

from psyassist.app.export import ExportNote, ExportRecord, ExportSection
from psyassist.app.notes.templates import BASIC_KEYS, basic_label
from psyassist.app.records import Workspace

WORDS = {
    "en": {"title": "Client record — {name}", "exported": "Exported", "by": "Exported by", "tags": "Tags",
           "since": "Client since", "basic": "Personal Basic Information", "notes": "Session notes",
           "note": "Note {n} · {date}", "status": "Status", "version": "Version", "signed": "Signed",
           "addendum": "Addendum · {at} · {by}", "unreadable": "[this record could not be decrypted: {error}]",
           "saved": "saved", "signed_status": "signed",
           "labels": {"addenda": "Addenda", "page": "Page", "of": "of", "pages_end": "",
                      "confidential": "CONFIDENTIAL — client record"}},
    "zh": {"title": "来访者记录 — {name}", "exported": "导出时间", "by": "导出人", "tags": "标签",
           "since": "建档时间", "basic": "个人基本信息", "notes": "咨询笔记", "note": "笔记 {n} · {date}",
           "status": "状态", "version": "版本", "signed": "签署", "addendum": "补充说明 · {at} · {by}",
           "unreadable": "[此记录无法解密：{error}]", "saved": "已保存", "signed_status": "已签署",
           "labels": {"addenda": "补充说明", "page": "第", "of": "页，共", "pages_end": " 页",
                      "confidential": "保密 — 来访者记录"}},
}


def client_record(ws: Workspace, st, cid: str, locale: str) -> ExportRecord:
    w = WORDS.get(locale, WORDS["en"])
    client = ws.client(cid)
    info = ws.basic_info(cid)
    notes = ws.notes(cid)
    out_notes = []
    for n, note in zip(range(len(notes), 0, -1), notes, strict=True):
        tpl = st.template(note.template)
        meta = [(w["status"], w["signed_status"] if note.status == "signed" else w["saved"]),
                (w["version"], str(note.version))]
        if note.signed_at:
            meta.append((w["signed"], f"{note.signed_at:%Y-%m-%d %H:%M} · {note.signed_by}"))
        if note.error:
            sections = [ExportSection(tpl.title(locale), "text", [w["unreadable"].format(error=note.error)])]
        else:
            sections = [ExportSection(s.title(locale), s.kind, (note.sections or {}).get(s.key, []) or ["—"])
                        for s in tpl.sections]
        addenda = [(w["addendum"].format(at=f"{a['at']:%Y-%m-%d %H:%M}", by=a["by"]),
                    a["text"] if not a["error"] else w["unreadable"].format(error=a["error"])) for a in note.addenda]
        out_notes.append(ExportNote(w["note"].format(n=n, date=note.session_date.isoformat()), meta, sections, addenda))
    now = datetime.now(timezone.utc).astimezone()
    return ExportRecord(
        title=w["title"].format(name=client.name),
        meta=[(w["exported"], f"{now:%Y-%m-%d %H:%M %Z}"), (w["by"], ws.actor.display_name),
              (w["tags"], ", ".join(client.tags) or "—"), (w["since"], f"{client.created_at:%Y-%m-%d}")],
        basic_info_title=w["basic"],
        basic_info=[(basic_label(k, locale), info.data.get(k) or "—") for k in BASIC_KEYS],
        notes_title=w["notes"],
        notes=out_notes,
        labels=w["labels"],
    )
