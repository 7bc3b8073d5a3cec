"""File helpers shared by every stage: decoding and atomic writes.

    python -c "from psyassist.data.io import read_text; print(read_text('corpus.jsonl')[1])"

Decoding: UTF-8 (a BOM is removed); otherwise GB18030 (a superset of GBK/GB2312,
which Chinese corpora exported on Windows often use) is tried and a warning is
returned; anything else is a DataError naming the file and the byte offset.
Writing: every output goes to `NAME.tmp-PID` in the same directory and is renamed
over the target only when complete, so a crash never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from psyassist.errors import DataError

UTF8_BOM = b"\xef\xbb\xbf"


def read_bytes(path: str | Path) -> bytes:
    p = Path(path)
    if not p.exists():
        raise DataError(str(p), "an existing file", reason="missing_file", hint="")
    data = p.read_bytes()
    if p.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise DataError(str(p), f"a valid gzip file ({e})", reason="bad_gzip", hint="") from e
    return data


def decode(data: bytes, path: str | Path) -> tuple[str, str | None]:
    """Return (text, warning-or-None)."""
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM):]
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as utf8_err:
        try:
            text = data.decode("gb18030")
        except UnicodeDecodeError:
            raise DataError(
                str(path),
                "UTF-8 (with or without BOM) or GB18030 text",
                field=f"byte {utf8_err.start}",
                got=data[utf8_err.start:utf8_err.start + 8],
                reason="bad_encoding",
                hint="Convert the file to UTF-8 (iconv -f ENCODING -t UTF-8).",
            ) from utf8_err
        return text, f"{path}: not UTF-8; decoded as GB18030. Convert it to UTF-8 to silence this warning."


def read_text(path: str | Path) -> tuple[str, str | None]:
    """Read and decode a (possibly .gz) text file: (text, warning-or-None)."""
    return decode(read_bytes(path), path)


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it over `target` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `target`; swap it in on success.

    An existing `target` is replaced only after the new content is complete.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def write_jsonl_atomic(path: str | Path, rows) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n
