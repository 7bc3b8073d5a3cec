"""The app's settings: defaults < a YAML config file < PSYASSIST_APP_* environment variables < command-line options.

    psyassist app --config clinic.yaml
    PSYASSIST_APP_DATABASE_URL=postgresql+psycopg://psyassist@db/psyassist psyassist app

Every field below is a key of the YAML file and an environment variable (upper case, prefixed
PSYASSIST_APP_); unknown keys are an error.  The master key is not a setting: it is read from
`key_file` or from $PSYASSIST_APP_MASTER_KEY (store/crypto.py).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from psyassist.errors import PsyassistError

ENV_PREFIX = "PSYASSIST_APP_"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "psyassist" / "app"


@dataclass
class AppConfig:
    data_dir: Path = field(default_factory=default_data_dir)  # database, key file, audit log (embedded setup)
    database_url: str | None = None  # default sqlite:///DATA_DIR/app.db; clinic: postgresql+psycopg://...
    key_file: Path | None = None  # default DATA_DIR/master.key (created 0600 on first start)
    audit_log: Path | None = None  # default DATA_DIR/audit.jsonl
    host: str = "127.0.0.1"
    port: int = 8765
    backend: str = "inprocess"  # inprocess (the model in this process) | openai (an OpenAI-compatible endpoint)
    model: str = "default"  # inprocess: what `psyassist chat --model` takes; openai: the endpoint's model name
    endpoint: str | None = None  # openai backend: base URL, e.g. http://127.0.0.1:8000/v1 (psyassist serve, vLLM)
    endpoint_api_key_env: str = "PSYASSIST_APP_ENDPOINT_KEY"  # the variable holding the endpoint's API key
    adapter_dir: Path | None = None  # per-client adapters (a later issue): where the in-process backend finds them
    templates_dir: Path | None = None  # a clinic's own note templates (*.yaml)
    region: str = "intl"  # crisis resources shown in banners (psyassist safety resources --list)
    context_tokens: int = 1500  # earlier notes + basic information in a draft's prompt (seed 004: 3-5k characters)
    draft_max_tokens: int = 768  # a draft's generation cap; a cut draft is closed and kept, never lost
    chat_max_tokens: int = 512
    chat_history_turns: int = 8
    session_hours: float = 12.0  # a login lasts this long without activity
    secure_cookies: bool = False  # set true behind HTTPS (cookies then only travel over TLS)
    login_max_failures: int = 5  # per account within login_window_minutes, then 429 until the window passes
    login_window_minutes: int = 15
    max_batch: int = 4  # in-process backend: requests decoded together
    backup_dir: Path | None = None  # where `app backup` writes; deleting a client also refreshes its key store
    # --- per-client adapters (seed 004's "train") ---
    adapter_store: str | None = None  # file:///path or s3://bucket/prefix?endpoint=URL (default: DATA_DIR/adapters)
    workers: int = 1  # job worker threads inside `psyassist app` (0: only separate `psyassist app worker`s)
    train_method: str = "sft"  # sft | dpo (SFT + a DPO term on the counselor's edits); see benchmarks/app_adapters.py
    train_steps: int = 30  # optimizer steps per job (max_train_steps caps what a request may ask)
    max_train_steps: int = 200
    train_max_note_tokens: int = 12000  # tokens of training text per job (newest sessions first)
    max_adapters_per_counselor: int = 100  # adapter versions kept (not deleted) across a counselor's clients
    max_running_jobs: int = 1  # training jobs running at once across every worker sharing the database
    job_timeout_s: int = 120  # a running job without a heartbeat this long is retried (or failed)
    job_max_attempts: int = 2
    similar_dense: bool = False  # similar cases: also embed notes with the English MiniLM (costs seconds per 1k notes)
    similar_embed_model: str = "default"  # with similar_dense: the model ('en=default;zh=DIR' adds a Chinese one)
    # --- the knowledge library (issue 12) ---
    library: bool = True  # the Library page, and library passages in drafts and chat
    kb_embed_model: str = "default"  # 'default' (packaged English MiniLM), a sentence-transformers dir, or the endpoint's name
    kb_embed_url: str | None = None  # an OpenAI-compatible /v1 (e.g. `psyassist serve --embed-model ...`)
    kb_shared_library: str = "clinic"  # searched by every counselor; filled with `psyassist kb ingest --library clinic`
    kb_max_upload_mb: float = 50.0  # per request; a whole textbook PDF is 5-50 MB
    kb_max_documents: int = 500  # per counselor
    kb_passages: int = 4  # passages offered to the model per draft / chat reply
    kb_context_tokens: int = 700  # their token budget in the prompt
    kb_min_similarity: float = 0.35  # dense cosine a passage needs when BM25 did not find it (MiniLM scale; a
    # model from `kb train-embedder` brings its own floor for its languages)
    memorization_policy: str = "block"  # block: an adapter that recites notes is held back; warn: used, flagged
    dtype: str = "auto"
    device: str | None = None

    def __post_init__(self):
        self.data_dir = Path(self.data_dir).expanduser()
        for name in ("key_file", "audit_log", "adapter_dir", "templates_dir", "backup_dir"):
            v = getattr(self, name)
            if v is not None:
                setattr(self, name, Path(v).expanduser())
        if self.backend not in ("inprocess", "openai"):
            raise PsyassistError(f"backend must be 'inprocess' or 'openai', got {self.backend!r}")
        if self.backend == "openai" and not self.endpoint:
            raise PsyassistError("backend 'openai' needs endpoint (e.g. http://127.0.0.1:8000/v1 from `psyassist serve`)")
        if not 1 <= int(self.port) <= 65535:
            raise PsyassistError(f"port must be 1..65535, got {self.port}")
        if self.train_method not in ("sft", "dpo"):
            raise PsyassistError(f"train_method must be 'sft' or 'dpo', got {self.train_method!r}")
        if self.memorization_policy not in ("block", "warn"):
            raise PsyassistError(f"memorization_policy must be 'block' or 'warn', got {self.memorization_policy!r}")
        if not 0 < float(self.kb_max_upload_mb) <= 2048:
            raise PsyassistError(f"kb_max_upload_mb must be above 0 and at most 2048, got {self.kb_max_upload_mb}")
        if int(self.workers) < 0:
            raise PsyassistError(f"workers must be 0 or more, got {self.workers}")
        for name in ("context_tokens", "draft_max_tokens", "chat_max_tokens", "chat_history_turns",
                     "login_max_failures", "login_window_minutes", "max_batch", "train_steps", "max_train_steps",
                     "train_max_note_tokens", "max_adapters_per_counselor", "max_running_jobs", "job_timeout_s",
                     "job_max_attempts", "kb_max_documents", "kb_passages", "kb_context_tokens"):
            if int(getattr(self, name)) < 1:
                raise PsyassistError(f"{name} must be at least 1, got {getattr(self, name)}")

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'app.db'}"

    @property
    def key_path(self) -> Path:
        return self.key_file or self.data_dir / "master.key"

    @property
    def adapter_store_url(self) -> str:
        # An absolute file:// URI: `--data-dir demo-output/app` (relative, as `make demo` passes it) made
        # "file://demo-output/app/adapters", which names a host, not a path; as_uri() also escapes spaces and '#'.
        return self.adapter_store or (Path(self.data_dir) / "adapters").resolve().as_uri()

    @property
    def audit_path(self) -> Path:
        return self.audit_log or self.data_dir / "audit.jsonl"

    def public(self) -> dict:
        """The settings for display (no secret is a setting, so all of them)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def _coerce(name: str, typ: str, raw: str):
    if "bool" in typ:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise PsyassistError(f"{ENV_PREFIX}{name.upper()}={raw!r}: expected true or false")
    if typ.startswith("int"):
        try:
            return int(raw)
        except ValueError as e:
            raise PsyassistError(f"{ENV_PREFIX}{name.upper()}={raw!r}: expected a whole number") from e
    if typ.startswith("float"):
        try:
            return float(raw)
        except ValueError as e:
            raise PsyassistError(f"{ENV_PREFIX}{name.upper()}={raw!r}: expected a number") from e
    return raw


def load_config(config_file: str | Path | None = None, **overrides) -> AppConfig:
    """Defaults, then the YAML file, then PSYASSIST_APP_* variables, then `overrides` (None = not given)."""
    known = {f.name: f for f in fields(AppConfig)}
    values: dict = {}
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise PsyassistError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise PsyassistError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise PsyassistError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
        for k, v in data.items():
            if k not in known:
                raise PsyassistError(f"{path}: unknown setting {k!r}; known: {', '.join(sorted(known))}")
            values[k] = v
    for name, f in known.items():
        raw = os.environ.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = _coerce(name, str(f.type), raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return AppConfig(**values)
    except TypeError as e:
        raise PsyassistError(f"bad setting: {e}") from e
