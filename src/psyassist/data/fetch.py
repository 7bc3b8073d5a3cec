"""Known datasets, downloaded from their upstream homes: verified, cached, offline-friendly.

    psyassist data fetch --list
    psyassist data fetch psydtcorpus --to data/      # -> data/psydtcorpus/, then prints the prepare command

The registry (resources/datasets.yaml, or any YAML of the same shape via `registry=`)
names each dataset's license, files (size + sha256 where known) and sources in
preference order: `hf` (huggingface_hub.hf_hub_download: honours HF_ENDPOINT,
HF_HUB_OFFLINE, HF_TOKEN), `modelscope` (optional package) and `url` (pinned
GitHub raw files, streamed with the standard library).  Each file is tried source
by source; a failing source falls through to the next.

Cache: `--to DIR` puts files in DIR/NAME/, else $PSYASSIST_CACHE/datasets/NAME/, else
~/.cache/psyassist/datasets/NAME/.  A file whose size and sha256 match is never
downloaded again, so a fetched dataset works with no network at all; with
HF_HUB_OFFLINE=1 nothing is downloaded and a missing file is an error that says
where to put it by hand.  Downloads land in NAME/.partial/ and are renamed into
place only after size and sha256 match; a mismatching file is deleted.  Verified
hashes are remembered in NAME/.psyassist-fetch.json (keyed by size and mtime) so a
cache hit costs a stat, not a re-hash of 50 MB.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import json
import os
import shutil
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlsplit
from urllib.request import HTTPRedirectHandler, Request, build_opener, urlopen

import yaml

from psyassist import __version__
from psyassist.data.io import atomic_dir, write_json_atomic
from psyassist.errors import DataError, MissingDependency, PsyassistError
from psyassist.ui import console, err_console, progress_enabled, warn

REGISTRY_PATH = Path(__file__).resolve().parents[1] / "resources" / "datasets.yaml"
SOURCE_TYPES = ("hf", "modelscope", "url")
FLAGS = {
    "evaluation-only": "EVALUATION ONLY: never train on it",
    "non-commercial": "non-commercial use only",
    "no-derivatives": "no derivatives: do not redistribute modified copies",
    "research-only": "research use only, not for clinical decisions",
}
KINDS = ("train", "eval")
DEFAULT_TIMEOUT = 10.0  # seconds per connect / read; a dead endpoint fails in about this long
MANIFEST = ".psyassist-fetch.json"
PARTIAL = ".partial"
CHUNK = 1 << 20  # 1 MiB reads: hashing 50 MB takes ~0.1 s
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


class SourceFailed(Exception):
    """One source could not deliver one file; the next source is tried."""


@dataclass
class FileResult:
    path: Path
    status: str  # "cached" | "downloaded"
    verified: bool  # sha256 known and matched
    source: str  # e.g. "hf YIRONGCHEN/PsyDTCorpus@main", "cache"


@dataclass
class FetchResult:
    name: str
    dir: Path
    files: list[FileResult] = field(default_factory=list)


# --- registry ---------------------------------------------------------------------


def load_registry(registry: str | Path | dict | None = None) -> dict[str, dict]:
    """The validated `datasets` mapping of a registry YAML file (default: the shipped one) or dict."""
    origin = "registry"
    if registry is None or isinstance(registry, (str, Path)):
        path = Path(registry) if registry is not None else REGISTRY_PATH
        origin = str(path)
        if not path.is_file():
            raise PsyassistError(f"dataset registry {path} does not exist")
        try:
            registry = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise PsyassistError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(registry, dict) or not isinstance(registry.get("datasets"), dict):
        raise PsyassistError(f"{origin}: expected a mapping with a 'datasets' mapping at the top")
    problems = [p for name, entry in registry["datasets"].items() for p in _entry_problems(name, entry)]
    if problems:
        raise PsyassistError(f"{origin}: invalid dataset registry:\n  " + "\n  ".join(problems))
    return registry["datasets"]


def _entry_problems(name: str, e: object) -> list[str]:
    if not isinstance(e, dict):
        return [f"{name}: expected a mapping"]
    out = [f"{name}.{k}: expected a non-empty string" for k in ("license", "homepage", "description")
           if not isinstance(e.get(k), str) or not e[k].strip()]
    if e.get("kind") not in KINDS:
        out.append(f"{name}.kind: expected one of {', '.join(KINDS)}, got {e.get('kind')!r}")
    flags = e.get("flags") or []
    if not isinstance(flags, list) or any(f not in FLAGS for f in flags):
        out.append(f"{name}.flags: expected a list of {', '.join(FLAGS)}, got {flags!r}")
    files = e.get("files")
    if not isinstance(files, list) or not files:
        out.append(f"{name}.files: expected a non-empty list")
        files = []
    for i, f in enumerate(files):
        where = f"{name}.files[{i}]"
        if not isinstance(f, dict) or not isinstance(f.get("path"), str) or not f["path"]:
            out.append(f"{where}.path: expected a relative file path")
            continue
        if Path(f["path"]).is_absolute() or ".." in Path(f["path"]).parts:
            out.append(f"{where}.path: expected a path inside the dataset folder, got {f['path']!r}")
        size, sha = f.get("size"), f.get("sha256")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
            out.append(f"{where}.size: expected a positive number of bytes or null, got {size!r}")
        if sha is not None and not (isinstance(sha, str) and len(sha) == 64
                                    and all(c in "0123456789abcdef" for c in sha)):
            out.append(f"{where}.sha256: expected 64 lower-case hex digits or null, got {sha!r}")
    sources = e.get("sources")
    if not isinstance(sources, list) or not sources:
        out.append(f"{name}.sources: expected a non-empty list")
        sources = []
    for i, s in enumerate(sources):
        where = f"{name}.sources[{i}]"
        if not isinstance(s, dict) or len(s) != 1 or next(iter(s)) not in SOURCE_TYPES:
            out.append(f"{where}: expected one key of {', '.join(SOURCE_TYPES)}, got {s!r}")
            continue
        kind, spec = next(iter(s.items()))
        spec = spec or {}
        if kind == "hf" and not isinstance(spec.get("repo_id"), str):
            out.append(f"{where}.hf.repo_id: expected 'owner/name'")
        if kind == "modelscope" and not isinstance(spec.get("id"), str):
            out.append(f"{where}.modelscope.id: expected 'owner/name'")
        if kind == "url":
            for f in files:
                if isinstance(f, dict) and not (f.get("url") or spec.get("base")):
                    out.append(f"{where}.url: file {f.get('path')!r} has no url and the source no base")
    return out


def _lookup(name: str, datasets: dict[str, dict]) -> tuple[str, dict]:
    key = name.strip().lower()
    for k, v in datasets.items():
        if k.lower() == key:
            return k, v
    close = difflib.get_close_matches(key, list(datasets), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise PsyassistError(f"unknown dataset '{name}'.{hint} Known datasets: {', '.join(sorted(datasets))} "
                         "(details: psyassist data fetch --list)")


def dataset_dir(name: str, to: str | Path | None = None) -> Path:
    """Where NAME's files live: TO/NAME, else $PSYASSIST_CACHE/datasets/NAME, else ~/.cache/psyassist/..."""
    if to is not None:
        root = Path(to)
    elif os.environ.get("PSYASSIST_CACHE"):
        root = Path(os.environ["PSYASSIST_CACHE"]) / "datasets"
    else:
        root = Path.home() / ".cache" / "psyassist" / "datasets"
    return root.expanduser() / name


# --- listing ----------------------------------------------------------------------


def _human(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""  # unreachable


def _size_text(entry: dict) -> str:
    sizes = [f.get("size") for f in entry["files"]]
    known = sum(s for s in sizes if s)
    if all(sizes):
        return _human(known)
    return f"≥ {_human(known)}" if known else "unknown"


def print_list(registry: str | Path | dict | None = None) -> None:
    """The Rich table behind `psyassist data fetch --list`."""
    from rich import box
    from rich.table import Table

    datasets = load_registry(registry)
    table = Table(title="Datasets for `psyassist data fetch NAME`", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("name", "kind", "license", "size", "sources"):  # no_wrap: names must stay copyable
        table.add_column(col, no_wrap=True, justify="right" if col == "size" else "left")
    for name, e in datasets.items():
        lic = e["license"] + "".join(f"\n[yellow]{f}[/]" for f in e.get("flags") or [])
        table.add_row(f"[bold]{name}[/]", e["kind"], lic, _size_text(e),
                      "\n".join(next(iter(s)) for s in e["sources"]))
    console.print(table)


# --- fetching ---------------------------------------------------------------------


def fetch(
    name: str,
    *,
    to: str | Path | None = None,
    source: str | None = None,
    force: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    registry: str | Path | dict | None = None,
) -> FetchResult:
    """Make NAME's files present and verified in its dataset folder; download only what is missing."""
    datasets = load_registry(registry)
    name, entry = _lookup(name, datasets)
    sources = [(next(iter(s)), next(iter(s.values())) or {}) for s in entry["sources"]]
    if source is not None:
        if source not in SOURCE_TYPES:
            raise PsyassistError(f"--source must be one of {', '.join(SOURCE_TYPES)}, got '{source}'")
        sources = [s for s in sources if s[0] == source]
        if not sources:
            have = ", ".join(next(iter(s)) for s in entry["sources"])
            raise PsyassistError(f"dataset '{name}' has no '{source}' source; it has: {have}")
    if timeout <= 0:
        raise PsyassistError(f"--timeout must be positive seconds, got {timeout}")

    target = dataset_dir(name, to)
    _print_license(name, entry)
    manifest_path = target / MANIFEST
    manifest = _read_manifest(manifest_path)
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    result = FetchResult(name=name, dir=target)
    failures: dict[str, list[str]] = {}  # file path -> reasons, one per source tried

    try:
        for spec in entry["files"]:
            dest = target / spec["path"]
            record = manifest.get(spec["path"])
            if not force:
                cached, why = _check_cached(dest, spec, record)
                if cached:
                    if why:
                        manifest[spec["path"]] = why  # a fresh hash record
                    result.files.append(FileResult(dest, "cached", bool(spec.get("sha256")), "cache"))
                    _ensure_extracted(dest, spec, manifest)
                    continue
                if why and dest.exists():
                    warn(f"{dest}: {why}; downloading it again")
            if offline:
                failures[spec["path"]] = ["HF_HUB_OFFLINE is set, so nothing is downloaded"]
                continue
            reasons = []
            for kind, src in sources:
                try:
                    got = _download(kind, src, spec, target, timeout)
                    sha = _verify(got, spec)
                except (SourceFailed, MissingDependency, DataError) as e:
                    reasons.append(f"{_source_label(kind, src, spec)}: {e}")
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(got, dest)
                st = dest.stat()
                manifest[spec["path"]] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha,
                                          "source": _source_label(kind, src, spec)}
                write_json_atomic(manifest_path, manifest)
                result.files.append(FileResult(dest, "downloaded", bool(spec.get("sha256")),
                                               _source_label(kind, src, spec)))
                if not spec.get("sha256"):
                    warn(f"{dest.name}: unverified (the registry has no sha256 for it); "
                         f"its sha256 is {sha}")
                _ensure_extracted(dest, spec, manifest)
                break
            else:
                failures[spec["path"]] = reasons
    finally:  # never leave half-downloaded files behind, even on Ctrl-C
        shutil.rmtree(target / PARTIAL, ignore_errors=True)

    if manifest:
        write_json_atomic(manifest_path, manifest)
    if failures:
        raise PsyassistError(_missing_message(name, entry, target, sources, failures, offline))
    _print_done(result, entry)
    return result


def _print_license(name: str, entry: dict) -> None:
    console.print(f"[bold]{entry.get('title', name)}[/] — license {entry['license']} — {entry['homepage']}",
                  soft_wrap=True)
    for f in entry.get("flags") or []:
        console.print(f"  [yellow]license: {FLAGS[f]}[/]")


def _read_manifest(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # absent or damaged: every file is re-verified from its bytes
    return data if isinstance(data, dict) else {}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_cached(dest: Path, spec: dict, record: dict | None) -> tuple[bool, dict | str | None]:
    """(usable, detail): detail is a new manifest record to store, or why the file is not usable."""
    if not dest.is_file():
        return False, None
    st = dest.stat()
    want_size, want_sha = spec.get("size"), spec.get("sha256")
    if want_size is not None and st.st_size != want_size:
        return False, f"size {st.st_size:,} B differs from the expected {want_size:,} B"
    if isinstance(record, dict) and record.get("size") == st.st_size and record.get("mtime_ns") == st.st_mtime_ns:
        if want_sha is None or record.get("sha256") == want_sha:
            return True, None
    if want_sha is None:
        # Placed by hand or downloaded unverified: nothing to check it against.
        return True, None
    sha = _sha256(dest)
    if sha != want_sha:
        return False, f"sha256 {sha} differs from the expected {want_sha}"
    return True, {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha, "source": "verified in place"}


def _verify(path: Path, spec: dict) -> str:
    """Size, then sha256; on mismatch the file is deleted and a DataError names expected vs actual."""
    size, want = path.stat().st_size, spec.get("sha256")
    if spec.get("size") is not None and size != spec["size"]:
        path.unlink(missing_ok=True)
        raise DataError(spec["path"], f"{spec['size']:,} bytes", field="size", got=size, reason="size_mismatch",
                        hint="The download was deleted. The upstream file changed or the transfer was cut; "
                             "try again or another --source.")
    sha = _sha256(path)
    if want and sha != want:
        path.unlink(missing_ok=True)
        raise DataError(spec["path"], f"sha256 {want}", field="sha256", got=sha, reason="checksum_mismatch",
                        hint="The download was deleted. The upstream file changed or was corrupted in transit; "
                             "try again or another --source.")
    return sha


def _source_label(kind: str, src: dict, spec: dict) -> str:
    if kind == "hf":
        return f"hf {src['repo_id']}@{src.get('revision', 'main')}"
    if kind == "modelscope":
        return f"modelscope {src['id']}@{src.get('revision', 'master')}"
    return f"url {_file_url(src, spec)}"


def _file_url(src: dict, spec: dict) -> str:
    return spec.get("url") or src["base"] + quote(spec["path"])


def _hf_endpoint() -> str:
    # Read at call time: huggingface_hub copies HF_ENDPOINT into its constants at import time.
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")


def _manual_urls(kind: str, src: dict, spec: dict) -> str:
    rev, path = quote(str(src.get("revision", "main"))), quote(spec["path"])
    if kind == "hf":
        return f"{_hf_endpoint()}/datasets/{src['repo_id']}/resolve/{rev}/{path}"
    if kind == "modelscope":
        rev = quote(str(src.get("revision", "master")))
        return f"https://www.modelscope.cn/datasets/{src['id']}/resolve/{rev}/{path}"
    return _file_url(src, spec)


class _KeepRedirect(HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # urllib would follow a HEAD's 302 with a GET of the whole file


_NO_REDIRECT = build_opener(_KeepRedirect)


def _reachable(url: str, timeout: float) -> None:
    """One HEAD with our timeout before handing over to a library whose retries can take minutes.

    huggingface_hub retries a refused or timed-out connection 5 times with backoff (1+2+4+8+8 s) and
    60 s metadata timeouts; failing here keeps a dead endpoint to about `timeout` seconds.
    """
    try:
        with _NO_REDIRECT.open(Request(url, method="HEAD", headers={"User-Agent": f"psyassist/{__version__}"}),
                               timeout=timeout):
            pass
    except HTTPError:
        return  # the server answered (a 302 to the CDN included); the library reports 401/404 better
    except (URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise SourceFailed(f"cannot reach {urlsplit(url).netloc} within {timeout:g} s ({reason})") from e


def _download(kind: str, src: dict, spec: dict, target: Path, timeout: float) -> Path:
    """Fetch one file into TARGET/.partial/ and return its path (not yet verified)."""
    staging = target / PARTIAL
    staging.mkdir(parents=True, exist_ok=True)
    if kind == "url":
        return _download_url(_file_url(src, spec), staging / spec["path"], timeout)
    if kind == "hf":
        from huggingface_hub import hf_hub_download

        _reachable(_manual_urls(kind, src, spec), timeout)
        try:
            got = hf_hub_download(src["repo_id"], spec["path"], repo_type=src.get("repo_type", "dataset"),
                                  revision=src.get("revision", "main"), local_dir=staging,
                                  endpoint=_hf_endpoint(), etag_timeout=timeout)
        except Exception as e:  # any hub failure (404, gated, offline, HTTP) means: try the next source
            raise SourceFailed(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
        return Path(got)
    try:
        from modelscope.hub.file_download import dataset_file_download
    except ImportError as e:
        raise MissingDependency("modelscope", "Downloading from ModelScope", extra="modelscope") from e
    _reachable(f"https://{os.environ.get('MODELSCOPE_DOMAIN', 'www.modelscope.cn')}", timeout)
    try:
        got = dataset_file_download(dataset_id=src["id"], file_path=spec["path"],
                                    revision=src.get("revision", "master"), local_dir=str(staging))
    except Exception as e:  # same contract as the hub: report and fall through
        raise SourceFailed(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    return Path(got)


def _download_url(url: str, out: Path, timeout: float) -> Path:
    """Stream URL to OUT with a socket timeout on connect and on every read."""
    out.parent.mkdir(parents=True, exist_ok=True)
    req = Request(url, headers={"User-Agent": f"psyassist/{__version__}"})
    try:
        with urlopen(req, timeout=timeout) as r, open(out, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0) or None
            for chunk in _progress(iter(lambda: r.read(CHUNK), b""), out.name, total):
                f.write(chunk)
    except HTTPError as e:
        out.unlink(missing_ok=True)
        raise SourceFailed(f"HTTP {e.code} {e.reason}") from e
    except (URLError, OSError) as e:  # refused, DNS, timeout, connection reset
        out.unlink(missing_ok=True)
        raise SourceFailed(f"cannot download within {timeout:g} s per read ({getattr(e, 'reason', e)})") from e
    return out


def _progress(chunks, label: str, total: int | None):
    if not progress_enabled():
        yield from chunks
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=err_console, transient=True) as prog:
        task = prog.add_task(label, total=total)
        for c in chunks:
            yield c
            prog.advance(task, len(c))


def _archive_dir(dest: Path) -> Path:
    name = dest.name
    for suf in ARCHIVE_SUFFIXES:
        if name.endswith(suf):
            return dest.with_name(name[: -len(suf)])
    return dest.with_name(name + ".d")


def _ensure_extracted(dest: Path, spec: dict, manifest: dict) -> None:
    """Unpack the members of an archive that match spec['extract'] into a folder named after it."""
    pattern = spec.get("extract")
    out = _archive_dir(dest)
    if not pattern or (out.is_dir() and manifest.get(spec["path"], {}).get("extracted") == pattern):
        return
    n = 0
    try:
        with atomic_dir(out) as tmp:
            if zipfile.is_zipfile(dest):
                with zipfile.ZipFile(dest) as z:  # ZipFile.extract drops absolute paths and '..'
                    for member in z.namelist():
                        if not member.endswith("/") and fnmatch.fnmatch(member, pattern):
                            z.extract(member, tmp)
                            n += 1
            else:
                with tarfile.open(dest) as t:
                    members = [m for m in t.getmembers() if m.isfile() and fnmatch.fnmatch(m.name, pattern)]
                    t.extractall(tmp, members=members, filter="data")  # "data": no links out, no devices
                    n = len(members)
            if n == 0:
                raise DataError(str(dest), f"archive members matching '{pattern}'", reason="empty_archive",
                                hint="The upstream layout changed; report it so the registry can be updated.")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
        dest.unlink(missing_ok=True)
        manifest.pop(spec["path"], None)
        raise DataError(str(dest), "a readable .tar/.tar.gz/.zip archive", got=str(e), reason="bad_archive",
                        hint="The archive was deleted; run the fetch again.") from e
    manifest.setdefault(spec["path"], {})["extracted"] = pattern
    console.print(f"  unpacked {n} file(s) matching '{pattern}' into {out}", soft_wrap=True)


def _missing_message(name, entry, target, sources, failures, offline) -> str:
    lines = [f"dataset '{name}': {len(failures)} of {len(entry['files'])} file(s) missing in {target}"
             + (" (HF_HUB_OFFLINE=1: no download attempted)." if offline else ".")]
    for spec in entry["files"]:
        if spec["path"] not in failures:
            continue
        known = f"{spec['size']:,} B" if spec.get("size") else "size unknown"
        known += f", sha256 {spec['sha256']}" if spec.get("sha256") else ", no checksum"
        lines.append(f"  {target / spec['path']}  ({known})")
        lines += [f"    - {r}" for r in failures[spec["path"]] if not offline]
        lines += [f"    get it from: {_manual_urls(k, s, spec)}" for k, s in sources]
    lines.append(f"To place the files by hand, save each one at the path shown, then run "
                 f"`psyassist data fetch {name}"
                 + (f" --to {target.parent}" if target.parent != dataset_dir(name).parent else "")
                 + "` again: it verifies them without any network access.")
    return "\n".join(lines)


def _print_done(result: FetchResult, entry: dict) -> None:
    n_new = sum(f.status == "downloaded" for f in result.files)
    console.print(f"[green]{result.name}[/]: {len(result.files)} file(s) ready in {result.dir} "
                  f"({n_new} downloaded, {len(result.files) - n_new} from cache)", soft_wrap=True)
    for f in result.files:
        console.print(f"  {f.path}" + ("" if f.verified else "  [yellow](unverified: no sha256 known)[/]"),
                      soft_wrap=True)
    if entry["kind"] == "train":
        inputs = " ".join(str(result.dir / p) for p in entry.get("prepare") or ["."])
        console.print(f"Next: psyassist data prepare {inputs} --out prepared/{result.name}", soft_wrap=True)
    else:
        console.print("Evaluation data: pass these files to the evaluation commands; never train on them.")
