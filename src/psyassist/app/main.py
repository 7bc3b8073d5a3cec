"""Start the app: open the state, make the first admin account, load the model, serve.

    psyassist app --data-dir /tmp/psy --port 8765
"""

from __future__ import annotations

from psyassist.app.config import AppConfig


def build(cfg: AppConfig, *, with_model: bool = True, workers: bool = True):
    """(FastAPI app, state, first-start admin credentials or None); the tests use this without uvicorn."""
    from psyassist.app.accounts import ensure_admin
    from psyassist.app.state import attach_backend, open_state, start_workers
    from psyassist.app.web.server import create_app

    st = open_state(cfg)
    try:
        admin = ensure_admin(st.db)
        if with_model:
            attach_backend(st)
        if workers:
            start_workers(st)
        return create_app(st), st, admin
    except BaseException:
        st.close()
        raise


def run(cfg: AppConfig, *, with_model: bool = True) -> None:
    from psyassist.optional import require
    from psyassist.ui import console

    uvicorn = require("uvicorn", "psyassist app")
    if with_model and cfg.backend == "inprocess":
        console.print(f"loading the model ({cfg.model}) …", highlight=False)
    app, st, admin = build(cfg, with_model=with_model)
    url = f"http://{cfg.host}:{cfg.port}/"
    console.print(f"[bold]psyassist app[/] · {url} · database {st.db.dialect} ({_where(st)}) · master key from "
                  f"{st.key_source} · model: {st.cfg.model + ' (' + st.cfg.backend + ')' if with_model else 'none'} "
                  f"· audit log {st.cfg.audit_path}", highlight=False)
    for n in st.notices:
        console.print(f"note: {n}", highlight=False)
    if admin:
        console.print(f"[bold yellow]First start:[/] sign in at {url}login as [bold]{admin[0]}[/] with the password "
                      f"[bold]{admin[1]}[/] (shown once; you will be asked to change it), then create counselor "
                      "accounts under Accounts.", highlight=False)
    console.print(f"[bold]Keep a copy of the master key ({st.key_source}) apart from the database:[/] without it "
                  "no note can be read, not even from a backup.", highlight=False)
    try:
        # No access log: URLs carry search words (a client's name); the audit log records every access.
        uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False)
    finally:
        st.close()


def _where(st) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(st.db.url)
    return u.database if u.get_backend_name() == "sqlite" else u.render_as_string(hide_password=True)
