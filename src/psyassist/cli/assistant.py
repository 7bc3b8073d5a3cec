"""`psyassist app`: the counselor's assistant — start it, manage accounts and keys, back up and restore.

    psyassist app                         # http://127.0.0.1:8765, SQLite + the default model in this process
    psyassist app user add counselor-7
    psyassist app backup /mnt/backups
"""

from __future__ import annotations

from pathlib import Path

import typer

from psyassist.errors import PsyassistError

app_app = typer.Typer(invoke_without_command=True, no_args_is_help=False, rich_markup_mode=None)
user_app = typer.Typer(help="Accounts: add, list, reset a password, (de)activate.", no_args_is_help=True)
app_app.add_typer(user_app, name="user")

CONFIG = typer.Option(None, "--config", "-c", help="YAML settings file (every key of docs/app.md#settings).")
DATA_DIR = typer.Option(None, "--data-dir", help="Where the embedded database, master key and audit log live "
                                                 "(default: ~/.local/share/psyassist/app).")
DB_URL = typer.Option(None, "--database-url", help="sqlite:///PATH or postgresql+psycopg://USER@HOST/DB "
                                                  "(default: sqlite in --data-dir).")
KEY_FILE = typer.Option(None, "--key-file", help="Master key file (default: DATA_DIR/master.key); or set "
                                                 "PSYASSIST_APP_MASTER_KEY (base64).")


def _cfg(config, **kw):
    from psyassist.app.config import load_config

    return load_config(config, **kw)


@app_app.callback()
def app_main(
    ctx: typer.Context,
    config: Path | None = CONFIG,
    data_dir: Path | None = DATA_DIR,
    database_url: str | None = DB_URL,
    key_file: Path | None = KEY_FILE,
    host: str | None = typer.Option(None, "--host", help="Address to listen on (default: 127.0.0.1, this machine "
                                                         "only). Put HTTPS in front before opening it to a network."),
    port: int | None = typer.Option(None, "--port", help="Port (default: 8765)."),
    backend: str | None = typer.Option(None, "--backend", help="inprocess (the model in this process) or openai "
                                                               "(an OpenAI-compatible endpoint) (default: inprocess)."),
    model: str | None = typer.Option(None, "--model", "-m", help="inprocess: default, a directory or a hub id; "
                                                                 "openai: the endpoint's model name."),
    endpoint: str | None = typer.Option(None, "--endpoint", help="openai backend: base URL, e.g. "
                                                                 "http://127.0.0.1:8000/v1 (psyassist serve, vLLM)."),
    templates_dir: Path | None = typer.Option(None, "--templates-dir", help="A clinic's own note templates (*.yaml)."),
    region: str | None = typer.Option(None, "--region", help="Crisis resources shown in banners (see `psyassist "
                                                             "safety resources --list`)."),
    secure_cookies: bool | None = typer.Option(None, "--secure-cookies/--no-secure-cookies",
                                               help="Send the login cookie over HTTPS only (behind a TLS proxy)."),
    no_model: bool = typer.Option(False, "--no-model", help="Start without a model: notes are written by hand; "
                                                            "Analysis and Chat are off."),
    workers: int | None = typer.Option(None, "--workers", help="Training-job workers in this process (default: 1; "
                                                               "0 when separate `psyassist app worker`s run them)."),
    adapter_store: str | None = typer.Option(None, "--adapter-store", help="Where sealed client adapters live: a "
                                             "directory or s3://bucket/prefix?endpoint=URL (default: DATA_DIR/adapters)."),
) -> None:
    """Start the counselor's assistant: clients, session notes drafted by the model, chat, encrypted storage.

    psyassist app
    psyassist app --backend openai --endpoint http://127.0.0.1:8000/v1 --model default
    psyassist app --database-url postgresql+psycopg://psyassist@db/psyassist --host 0.0.0.0 --secure-cookies

    Settings come from defaults < --config FILE < PSYASSIST_APP_* variables < these options.
    """
    ctx.obj = {"config": config, "data_dir": data_dir, "database_url": database_url, "key_file": key_file,
               "adapter_store": adapter_store}
    if ctx.invoked_subcommand is not None:
        return
    from psyassist.app.main import run

    cfg = _cfg(config, data_dir=data_dir, database_url=database_url, key_file=key_file, host=host, port=port,
               backend=backend, model=model, endpoint=endpoint, templates_dir=templates_dir, region=region,
               secure_cookies=secure_cookies, workers=workers, adapter_store=adapter_store)
    run(cfg, with_model=not no_model)


def _state(ctx: typer.Context, **extra):
    from psyassist.app.state import open_state

    o = ctx.obj or {}
    cfg = _cfg(o.get("config"), data_dir=o.get("data_dir"), database_url=o.get("database_url"),
               key_file=o.get("key_file"), adapter_store=o.get("adapter_store"), **extra)
    return open_state(cfg, create=False)


@app_app.command("worker")
def app_worker(
    ctx: typer.Context,
    once: bool = typer.Option(False, "--once", help="Run the queued jobs, then exit (for cron or a test)."),
    poll: float = typer.Option(2.0, "--poll", help="Seconds between looks at the queue when it is empty."),
) -> None:
    """Run training jobs (per-client adapters) from the app's database; as many as you like, on any machine.

    psyassist app --database-url postgresql+psycopg://psyassist@db/psyassist --adapter-store s3://adapters worker

    It needs the same database, master key and adapter store as the app.  A GPU worker trains on the
    GPU; the same code runs on CPU.  Ctrl-C stops it after the current step; a killed worker's job is
    retried by another worker once its heartbeat is older than job_timeout_s.
    """
    from psyassist.app.jobs import Worker

    st = _state(ctx)
    worker = Worker(st, poll_s=poll)
    print(f"psyassist app worker {worker.name}: {st.db.dialect} database, adapters in {st.blobs.describe()}",
          flush=True)
    try:
        if once:
            while worker.run_once():
                pass
        else:
            worker.run()
    except KeyboardInterrupt:
        worker.stop.set()
    finally:
        st.close()
    print(f"worker {worker.name}: {worker.jobs_run} job(s) run")


@app_app.command("migrate")
def app_migrate(ctx: typer.Context) -> None:
    """Create or upgrade the database schema (the server also does this when it starts).

    psyassist app --database-url postgresql+psycopg://psyassist@db/psyassist migrate
    """
    from psyassist.app.state import open_state

    o = ctx.obj or {}
    st = open_state(_cfg(o.get("config"), data_dir=o.get("data_dir"), database_url=o.get("database_url"),
                         key_file=o.get("key_file")))
    print(f"{st.db.url}: schema at revision {st.db.current_revision()}")
    st.close()


@user_app.command("add")
def user_add(
    ctx: typer.Context,
    username: str = typer.Argument(..., help="Login name (letters, digits, . _ -)."),
    role: str = typer.Option("counselor", "--role", help="counselor or admin."),
    display_name: str = typer.Option("", "--name", help="Name shown in the app."),
    locale: str = typer.Option("en", "--language", help="en or zh."),
) -> None:
    """Create an account; prints a temporary password (changed at first sign-in).

    psyassist app user add counselor-7 --name "Dr. Lin" --language zh
    """
    import secrets

    from psyassist.app.accounts import create_user

    st = _state(ctx)
    try:
        password = secrets.token_urlsafe(12)
        create_user(st.db, username, password, role=role, display_name=display_name, locale=locale,
                    must_change_password=True)
        st.audit.access(who="cli", action="account.create", client=None, target=username)
        print(f"created {role} {username}; temporary password (shown once): {password}")
    finally:
        st.close()


@user_app.command("list")
def user_list(ctx: typer.Context) -> None:
    """List accounts (no client data).

    psyassist app user list
    """
    from sqlalchemy import select

    from psyassist.app.store.models import User

    st = _state(ctx)
    try:
        with st.db.read() as s:
            for u in s.scalars(select(User).order_by(User.created_at)):
                print(f"{u.username}\t{u.role}\t{'active' if u.active else 'inactive'}\t{u.created_at:%Y-%m-%d}")
    finally:
        st.close()


@user_app.command("reset-password")
def user_reset(ctx: typer.Context, username: str = typer.Argument(...)) -> None:
    """Give an account a new temporary password (ends its sessions).

    psyassist app user reset-password counselor-7
    """
    import secrets

    from sqlalchemy import func, select

    from psyassist.app.accounts import set_password
    from psyassist.app.store.models import User

    st = _state(ctx)
    try:
        with st.db.read() as s:
            u = s.scalar(select(User).where(func.lower(User.username) == username.lower()))
        if u is None:
            raise PsyassistError(f"no account named {username!r} (`psyassist app user list`)")
        password = secrets.token_urlsafe(12)
        set_password(st.db, u.id, password, must_change=True)
        st.audit.access(who="cli", action="account.reset_password", client=None, target=u.id)
        print(f"temporary password for {u.username} (shown once): {password}")
    finally:
        st.close()


@app_app.command("rotate-key")
def app_rotate_key(ctx: typer.Context) -> None:
    """Replace the master key: every client key is re-wrapped; no note is re-encrypted.

    psyassist app rotate-key

    The old key is kept as master.key.old: keep it as long as you keep backups made before the rotation.
    Stop the server first (it holds the old key in memory).
    """
    from psyassist.app.vault import rotate_master_key

    st = _state(ctx)
    try:
        if st.key_source != str(st.cfg.key_path):
            raise PsyassistError("the master key comes from $PSYASSIST_APP_MASTER_KEY; rotate-key rewrites the key "
                                 "FILE. Unset the variable and point --key-file at the key file.")
        new, n = rotate_master_key(st.db, st.master, st.cfg.key_path)
        if st.cfg.backup_dir is not None:
            from psyassist.app.backup import write_keystore

            write_keystore(st.db, new, st.cfg.backup_dir)
        st.audit.access(who="cli", action="key.rotate", client=None, target=new.key_id)
        print(f"re-wrapped {n} data keys; master key {st.master.key_id} → {new.key_id} in {st.cfg.key_path} "
              f"(previous key kept as {st.cfg.key_path.name}.old)")
    finally:
        st.close()


@app_app.command("backup")
def app_backup(ctx: typer.Context, out_dir: Path | None = typer.Argument(
        None, help="Directory for the snapshot and the key store (default: backup_dir from the settings).")) -> None:
    """Write an encrypted, consistent snapshot (and refresh the key store) — safe while the app runs.

    psyassist app backup /mnt/backups
    """
    from psyassist.app.backup import backup

    st = _state(ctx)
    try:
        target = out_dir or st.cfg.backup_dir
        if target is None:
            raise PsyassistError("give a directory (psyassist app backup DIR) or set backup_dir in the settings")
        snap, keys = backup(st.db, st.master, st.cfg.audit_path, target, blobs=st.blobs)
        st.audit.access(who="cli", action="backup", client=None, target=snap.name)
        print(f"snapshot {snap} ({snap.stat().st_size:,} bytes); key store {keys}")
    finally:
        st.close()


@app_app.command("restore")
def app_restore(
    ctx: typer.Context,
    snapshot: Path = typer.Argument(..., help="A .snapshot file from `psyassist app backup`."),
    keystore: Path = typer.Option(..., "--keystore", help="The key store file (the newest one)."),
    snapshot_key_file: Path | None = typer.Option(
        None, "--snapshot-key-file", help="The master key the snapshot was made with, if it was rotated since."),
) -> None:
    """Restore a snapshot into a NEW, empty database (this machine or another; SQLite or PostgreSQL).

    psyassist app --database-url sqlite:///new/app.db --key-file master.key restore SNAP --keystore keystore
    """
    from psyassist.app.backup import restore
    from psyassist.app.store.crypto import MasterKey
    from psyassist.app.store.db import Database

    o = ctx.obj or {}
    cfg = _cfg(o.get("config"), data_dir=o.get("data_dir"), database_url=o.get("database_url"),
               key_file=o.get("key_file"))
    master, where = MasterKey.load(cfg.key_path, create=False)
    snap_master = None
    if snapshot_key_file:
        snap_master, _ = MasterKey.load(snapshot_key_file, create=False)
    from psyassist.app.store.blobs import open_store

    db = Database(cfg.db_url)
    try:
        counts = restore(snapshot, keystore, db, master, cfg.audit_path, snapshot_master=snap_master,
                         blobs=open_store(cfg.adapter_store_url))
    finally:
        db.dispose()
    print(f"restored into {cfg.db_url} with the key from {where}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


@app_app.command("export")
def app_export(
    ctx: typer.Context,
    client_id: str = typer.Argument(..., help="The client's id (from the client page's address)."),
    as_user: str = typer.Option(..., "--as", help="The counselor whose client it is (the export is audited)."),
    fmt: str = typer.Option("pdf", "--format", help="pdf or md."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file (written atomically)."),
    locale: str = typer.Option("en", "--language", help="en or zh."),
) -> None:
    """Export a client's record (basic information and every note) as PDF or Markdown.

    psyassist app export 3f2a… --as counselor-7 --format pdf --out record.pdf
    """
    from sqlalchemy import func, select

    from psyassist.app.accounts import actor_of
    from psyassist.app.export import to_markdown, to_pdf
    from psyassist.app.exporting import client_record
    from psyassist.app.records import Workspace
    from psyassist.app.store.models import User
    from psyassist.data.io import atomic_path

    st = _state(ctx)
    try:
        with st.db.read() as s:
            u = s.scalar(select(User).where(func.lower(User.username) == as_user.lower()))
        if u is None:
            raise PsyassistError(f"no account named {as_user!r}")
        ws = Workspace(st, actor_of(u))
        rec = client_record(ws, st, client_id, locale)
        data = to_pdf(rec) if fmt == "pdf" else to_markdown(rec).encode("utf-8")
        with atomic_path(out) as tmp:
            tmp.write_bytes(data)
        ws._audit("client.export", client_id, fmt)
        print(f"wrote {out} ({len(data):,} bytes)")
    finally:
        st.close()
