"""Everything one running app holds: settings, database, keys, audit log, templates, model, runner.

    python -c "from psyassist.app.state import open_state; from psyassist.app.config import AppConfig; s = open_state(AppConfig(data_dir='/tmp/psy')); print(s.db.url)"

`open_state` is the startup sequence shared by the server, the CLI maintenance commands and the
tests: open the database (the master key is checked before any migration), verify the audit
chain, load the templates, mark drafts a restart cut short as interrupted.  The model backend is
attached separately (`attach_backend`): maintenance commands never load a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select, text, update

from psyassist.app.config import AppConfig
from psyassist.app.notes.templates import Template, load_templates
from psyassist.app.similar import SimilarCache
from psyassist.app.store.crypto import MasterKey
from psyassist.app.store.db import Database, open_database
from psyassist.app.store.models import ChatMessage, Draft, utcnow
from psyassist.app.vault import Vault
from psyassist.safety.audit import AuditLog
from psyassist.safety.resources import resources_for


@dataclass
class AppState:
    cfg: AppConfig
    db: Database
    master: MasterKey
    key_source: str
    vault: Vault
    audit: AuditLog
    templates: dict[str, Template]
    blobs: object | None = None  # app.store.blobs store of the sealed adapters
    backend: object | None = None  # app.llm backend; None until attach_backend
    runner: object | None = None  # app.runner.Runner
    workers: list = field(default_factory=list)  # app.jobs.Worker threads in this process
    similar: SimilarCache = field(default_factory=SimilarCache)  # per-counselor in-memory similar-case indexes
    library: object | None = None  # app.library.AppLibrary (the knowledge library); set by open_state
    notices: list[str] = field(default_factory=list)  # startup facts the CLI prints

    def template(self, name: str) -> Template:
        return self.templates.get(name) or self.templates["seed004"]

    def forget_adapter(self, blob_key: str) -> None:
        """A deleted adapter (or client) leaves the model's memory too."""
        from psyassist.app.adapters import model_name

        parts = blob_key.split("/")
        if self.backend is not None and len(parts) == 3:
            self.backend.forget_adapter(model_name(parts[1], parts[2].removesuffix(".bin")))

    def after_client_deleted(self, cid: str) -> None:
        """Leave no readable remnant: SQLite's WAL is checkpointed and truncated (secure_delete already
        zeroed the pages); PostgreSQL's dead rows are vacuumed.  The key store next to the backups is
        refreshed, so the newest one no longer holds the client's key.  The client's sealed adapters
        leave the blob store (useless without the key anyway) and the model's memory."""
        if self.blobs is not None:
            for key in self.blobs.list(f"adapters/{cid}/"):
                self.forget_adapter(key)
            self.blobs.delete_prefix(f"adapters/{cid}/")
        if self.db.dialect == "sqlite":
            with self.db.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            with self.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                for table in ("data_keys", "clients", "notes", "note_versions", "addenda", "basic_info_versions",
                              "drafts", "chats", "chat_messages", "adapters", "jobs", "similar_entries"):
                    conn.execute(text(f"VACUUM {table}"))
        if self.cfg.backup_dir is not None:
            from psyassist.app.backup import write_keystore

            write_keystore(self.db, self.master, self.cfg.backup_dir)

    def close(self) -> None:
        for w in self.workers:
            w.close()
        if self.runner is not None:
            self.runner.close()
        if self.backend is not None:
            self.backend.close()
        self.db.dispose()


def open_state(cfg: AppConfig, *, create: bool = True) -> AppState:
    resources_for(cfg.region)  # an unknown region fails at start, not at the first crisis
    templates = load_templates(cfg.templates_dir)
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    db, master, where = open_database(cfg.db_url, cfg.key_path, create=create)
    try:
        audit = AuditLog(cfg.audit_path)
        audit.verify()  # a broken chain stops the start: the log must be investigated, not appended to
        from psyassist.app import adapters, jobs
        from psyassist.app.store.blobs import open_store

        st = AppState(cfg, db, master, where, Vault(db, master), audit, templates,
                      blobs=open_store(cfg.adapter_store_url),
                      similar=SimilarCache(dense=cfg.similar_dense, idle_hours=cfg.session_hours,
                                         embed_model=cfg.similar_embed_model))
        from psyassist.app.library import AppLibrary

        st.library = AppLibrary(st)
        jobs.HANDLERS["train_adapter"] = adapters.run_training_job
        _mark_interrupted(st)
        return st
    except BaseException:
        db.dispose()
        raise


def _mark_interrupted(st: AppState) -> None:
    """Drafts and chat replies a previous run was still writing: the text so far was never saved, so
    the draft becomes an empty, editable one with a message (its input is safe: saved first)."""
    with st.db.write() as s:
        ids = s.scalars(select(Draft.id).where(Draft.status == "generating")).all()
        if ids:
            s.execute(update(Draft).where(Draft.id.in_(ids)).values(
                status="interrupted", updated_at=utcnow(),
                error="the app stopped while this draft was being written; your input is kept — press "
                      "Regenerate, or write the note by hand"))
            st.notices.append(f"{len(ids)} draft(s) interrupted by the last shutdown were marked as such")
        s.execute(update(ChatMessage).where(ChatMessage.status == "generating").values(status="interrupted"))


def attach_backend(st: AppState) -> None:
    from psyassist.app.llm import build_backend
    from psyassist.app.runner import Runner

    st.backend = build_backend(st.cfg)
    st.runner = Runner(st)


def start_workers(st: AppState, n: int | None = None) -> None:
    """Job workers inside this process (the one-machine setup); `psyassist app worker` runs more elsewhere."""
    from psyassist.app.jobs import Worker

    for _ in range(st.cfg.workers if n is None else n):
        st.workers.append(Worker(st).start())
