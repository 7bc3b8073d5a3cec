"""The object store for per-client adapter files, on a local directory and on a real S3 server.

    pytest tests/test_app_blobs.py            # the s3 cases need a server (see conftest.s3_url)
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from psyassist.app.store.blobs import (
    BlobNotFound,
    BlobStoreError,
    InvalidKey,
    LocalStore,
    S3Store,
    open_store,
)
from psyassist.errors import PsyassistError

ALL_BYTES = bytes(range(256))


def _files(root: Path) -> list[str]:
    """Every file under root, dot-files (LocalStore's temp files) included."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _other_bucket(s3_url: str, bucket: str) -> str:
    query = urlsplit(s3_url).query
    return f"s3://{bucket}" + (f"?{query}" if query else "")


def _sub_prefix(s3_url: str, name: str) -> str:
    parts = urlsplit(s3_url)
    return f"s3://{parts.netloc}{parts.path.rstrip('/')}/{name}" + (f"?{parts.query}" if parts.query else "")


# --- both backends ----------------------------------------------------------------------------------


def test_round_trip_of_binary_data(blob_url):
    store = open_store(blob_url)
    big = os.urandom(5 * 1024 * 1024)  # a LoRA adapter of a small model is a few MB of ciphertext
    store.put("clients/1/all-bytes.bin", ALL_BYTES)
    store.put("clients/1/adapter.bin", big)
    store.put("empty", b"")
    store.put("view", memoryview(ALL_BYTES)[10:20])
    assert store.get("clients/1/all-bytes.bin") == ALL_BYTES
    assert store.get("clients/1/adapter.bin") == big
    assert store.get("empty") == b""
    assert store.get("view") == ALL_BYTES[10:20]
    with pytest.raises(TypeError, match="bytes"):
        store.put("text", "not ciphertext")


def test_overwrite_replaces_the_whole_object(blob_url):
    store = open_store(blob_url)
    store.put("a/b.bin", b"x" * 1000)
    store.put("a/b.bin", b"short")
    assert store.get("a/b.bin") == b"short"
    assert store.list() == ["a/b.bin"]


def test_exists_list_delete(blob_url):
    store = open_store(blob_url)
    keys = ["clients/1/adapter-v1.bin", "clients/1/adapter-v2.bin", "clients/10/adapter-v1.bin",
            "clients/2/x/deep.bin", "top.bin"]
    for k in reversed(keys):
        store.put(k, k.encode())
    assert store.list() == sorted(keys)
    assert store.list("clients/1/") == ["clients/1/adapter-v1.bin", "clients/1/adapter-v2.bin"]
    assert store.list("clients/2/x/") == ["clients/2/x/deep.bin"]
    assert store.list("nobody/") == []
    assert store.exists("top.bin") and not store.exists("clients/1")  # a folder is not an object
    assert not store.exists("missing.bin")

    store.delete("clients/1/adapter-v1.bin")
    store.delete("clients/1/adapter-v1.bin")  # missing is fine
    store.delete("never-there/x.bin")
    assert not store.exists("clients/1/adapter-v1.bin")
    assert store.list("clients/1/") == ["clients/1/adapter-v2.bin"]


def test_delete_prefix_takes_the_folder_and_nothing_beside_it(blob_url):
    store = open_store(blob_url)
    for k in ["clients/1/a.bin", "clients/1/sub/b.bin", "clients/10/a.bin", "clients/1.bin"]:
        store.put(k, b"1")
    assert store.delete_prefix("clients/1/") == 2
    assert store.list() == ["clients/1.bin", "clients/10/a.bin"]  # "clients/1/" is not "clients/1*"
    assert store.delete_prefix("clients/1/") == 0
    assert store.delete_prefix("") == 2
    assert store.list() == []
    with pytest.raises(InvalidKey, match="ending in '/'"):
        store.delete_prefix("clients/1")


def test_missing_key_is_a_clear_key_error(blob_url):
    store = open_store(blob_url)
    with pytest.raises(BlobNotFound) as e:
        store.get("clients/7/adapter.bin")
    assert isinstance(e.value, KeyError) and isinstance(e.value, PsyassistError)
    assert str(e.value) == f"no blob 'clients/7/adapter.bin' in {store.describe()}"
    store.put("clients/7/other.bin", b"1")
    with pytest.raises(BlobNotFound):
        store.get("clients/7")  # a folder


BAD_KEYS = ["", "/", "../x", "a/../../x", "..", ".", "a/./b", "/etc/passwd", "a//b", "a/", "/a",
            "a\\b", "..\\x", "C:\\x", ".hidden", "a/.tmp", "a b", "é.bin", "a\x00b", "a\nb", "a:b"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_outside_the_allowed_names_are_refused(blob_url, key):
    store = open_store(blob_url)
    for op in (lambda: store.put(key, b"1"), lambda: store.get(key), lambda: store.exists(key),
               lambda: store.delete(key)):
        with pytest.raises(InvalidKey, match="invalid blob key"):
            op()
    assert store.list() == []


def test_concurrent_puts_from_8_threads_all_land(blob_url):
    store = open_store(blob_url)
    barrier = threading.Barrier(8)
    errors = []

    def work(t: int):
        try:
            barrier.wait()
            for i in range(12):
                store.put(f"clients/{i % 3}/t{t}-{i}.bin", bytes([t, i]) * 1000)
                # every thread also writes one shared key: the last put wins, whole
                store.put("shared.bin", bytes([t]) * 100_000)
        except BaseException as e:  # noqa: BLE001 - reported below, with the thread
            errors.append((t, e))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    expected = sorted([f"clients/{i % 3}/t{t}-{i}.bin" for t in range(8) for i in range(12)] + ["shared.bin"])
    assert store.list() == expected
    for t in range(8):
        assert store.get(f"clients/1/t{t}-4.bin") == bytes([t, 4]) * 1000
    shared = store.get("shared.bin")
    assert len(shared) == 100_000 and len(set(shared)) == 1


# --- LocalStore -------------------------------------------------------------------------------------


def test_urls_and_paths_open_a_local_store(tmp_path, monkeypatch):
    plain = open_store(str(tmp_path / "a"))
    assert isinstance(plain, LocalStore) and plain.describe() == (tmp_path / "a").as_uri()
    assert (tmp_path / "a").is_dir()
    assert open_store((tmp_path / "a").as_uri()).root == tmp_path / "a"
    monkeypatch.chdir(tmp_path)
    assert open_store("rel/blobs").root == tmp_path / "rel" / "blobs"
    with pytest.raises(BlobStoreError, match="does not exist"):
        open_store(str(tmp_path / "missing"), create=False)
    (tmp_path / "f").write_text("x")
    with pytest.raises(BlobStoreError, match="not a directory"):
        open_store(str(tmp_path / "f"))
    with pytest.raises(BlobStoreError, match="unknown scheme"):
        open_store("gs://bucket/x")
    with pytest.raises(BlobStoreError, match="file:///absolute/path"):
        open_store("file://otherhost/x")


def test_traversal_never_touches_files_outside_the_root(tmp_path):
    (tmp_path / "secret.txt").write_bytes(b"outside")
    store = open_store(str(tmp_path / "blobs"))
    for key in ["../secret.txt", "a/../../secret.txt", str(tmp_path / "secret.txt"), "..\\secret.txt"]:
        with pytest.raises(InvalidKey):
            store.put(key, b"overwritten")
        with pytest.raises(InvalidKey):
            store.get(key)
        with pytest.raises(InvalidKey):
            store.delete(key)
    with pytest.raises(InvalidKey):
        store.list("../")
    with pytest.raises(InvalidKey):
        store.delete_prefix("../")
    assert (tmp_path / "secret.txt").read_bytes() == b"outside"
    assert _files(tmp_path) == ["secret.txt"]


def test_local_files_are_private_and_folders_pruned(tmp_path):
    store = open_store(str(tmp_path / "blobs"))
    store.put("clients/1/a.bin", b"1")
    assert (tmp_path / "blobs/clients/1/a.bin").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "blobs/clients/1").stat().st_mode & 0o777 == 0o700
    store.delete("clients/1/a.bin")
    assert list((tmp_path / "blobs").iterdir()) == []  # empty folders go with their last object
    store.put("clients/2/a.bin", b"1")
    store.delete_prefix("clients/")
    assert list((tmp_path / "blobs").iterdir()) == []


def test_local_object_and_folder_of_one_name_is_a_clear_error(tmp_path):
    store = open_store(str(tmp_path / "blobs"))
    store.put("a", b"1")
    store.put("b/c", b"2")
    with pytest.raises(BlobStoreError, match="an object and a folder of the same name"):
        store.put("a/x", b"3")
    with pytest.raises(BlobStoreError, match="an object and a folder of the same name"):
        store.put("b", b"3")
    with pytest.raises(BlobNotFound):
        store.get("a/x")
    store.delete("a/x")
    assert store.list() == ["a", "b/c"] and _files(tmp_path / "blobs") == ["a", "b/c"]


def test_local_put_that_fails_at_the_rename_leaves_the_old_object_and_no_temp_file(tmp_path, monkeypatch):
    store = open_store(str(tmp_path / "blobs"))
    store.put("clients/1/adapter.bin", b"old")

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated"):
        store.put("clients/1/adapter.bin", b"new" * 1000)
    with pytest.raises(OSError, match="simulated"):
        store.put("clients/1/new.bin", b"new")
    monkeypatch.undo()
    assert store.get("clients/1/adapter.bin") == b"old"
    assert _files(tmp_path / "blobs") == ["clients/1/adapter.bin"]


def test_local_put_that_fails_mid_write_leaves_no_partial_object(tmp_path):
    """A real short write: a child process whose file size limit (RLIMIT_FSIZE, 1 MB) makes the
    5 MB write fail with EFBIG after the first megabyte, as a full disk would."""
    root = tmp_path / "blobs"
    open_store(str(root)).put("clients/1/adapter.bin", b"old")
    child = f"""
import resource, signal
from psyassist.app.store.blobs import open_store
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
store = open_store({str(root)!r})
for key in ("clients/1/adapter.bin", "clients/1/new.bin"):
    try:
        store.put(key, b"n" * (5 << 20))
    except OSError as e:
        print(key, e.errno)
"""
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["clients/1/adapter.bin 27", "clients/1/new.bin 27"]  # EFBIG
    store = open_store(str(root))
    assert store.get("clients/1/adapter.bin") == b"old"
    assert _files(root) == ["clients/1/adapter.bin"]


def test_local_puts_survive_concurrent_deletes_pruning_their_folder(tmp_path):
    """delete() removes folders left empty while other threads put into them: put re-creates the
    folder rather than fail."""
    store = open_store(str(tmp_path / "blobs"))
    errors = []

    def work(t: int):
        try:
            for _ in range(150):
                store.put(f"clients/9/sub/t{t}.bin", b"1")
                store.delete(f"clients/9/sub/t{t}.bin")
        except BaseException as e:  # noqa: BLE001
            errors.append((t, e))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert store.list() == [] and _files(tmp_path / "blobs") == []


# --- S3Store ----------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_s3_unreachable_endpoint_is_named_without_a_secret(monkeypatch):
    pytest.importorskip("boto3")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value-123")
    port = _closed_port()
    with pytest.raises(BlobStoreError) as e:
        open_store(f"s3://psyassist-x/p?endpoint=http://127.0.0.1:{port}")
    msg = str(e.value)
    assert msg.startswith(f"blob store s3://psyassist-x/p/?endpoint=http://127.0.0.1:{port}: ")
    assert "cannot reach the S3 endpoint" in msg and "very-secret-value-123" not in msg
    assert e.value.__cause__ is None and e.value.__suppress_context__  # no botocore traceback


def test_s3_urls_refuse_credentials_and_unknown_parameters(monkeypatch):
    pytest.importorskip("boto3")
    with pytest.raises(BlobStoreError, match="credentials do not go in the URL") as e:
        open_store("s3://AKIAEXAMPLE:topsecret@bucket/p?endpoint=http://127.0.0.1:1")
    assert "topsecret" not in str(e.value) and "AKIAEXAMPLE" not in str(e.value)
    with pytest.raises(BlobStoreError, match="credentials do not go in the endpoint") as e:
        open_store("s3://bucket/p?endpoint=http://AKIAEXAMPLE:topsecret@127.0.0.1:1")
    assert "topsecret" not in str(e.value)
    with pytest.raises(BlobStoreError, match=r"unknown URL parameter\(s\) \['secret'\]"):
        open_store("s3://bucket/p?endpoint=http://127.0.0.1:1&secret=x")
    with pytest.raises(BlobStoreError, match="invalid bucket name"):
        open_store("s3://Bad_Bucket/p?endpoint=http://127.0.0.1:1")


def test_s3_without_credentials_says_which_variables(monkeypatch, tmp_path):
    pytest.importorskip("boto3")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    # No ~/.aws files and no instance metadata lookup (a 1 s timeout per try off EC2).
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(BlobStoreError, match="no S3 credentials; set AWS_ACCESS_KEY_ID"):
        open_store(f"s3://psyassist-x?endpoint=http://127.0.0.1:{_closed_port()}")


@pytest.mark.slow
def test_s3_wrong_credentials_are_named_without_the_secret(s3_url, monkeypatch):
    real_secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-456")
    with pytest.raises(BlobStoreError) as e:
        open_store(s3_url)
    msg = str(e.value)
    assert msg.startswith(f"blob store {_sub_prefix(s3_url, '')}: ")  # the URL, as describe() gives it
    assert "refused the credentials" in msg and "SignatureDoesNotMatch" in msg
    assert "wrong-secret-456" not in msg and real_secret not in msg
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "no-such-key")
    with pytest.raises(BlobStoreError, match="refused the credentials .*InvalidAccessKeyId"):
        open_store(s3_url)


@pytest.mark.slow
def test_s3_bucket_is_created_only_when_asked(s3_url):
    bucket = f"psyassist-new-{secrets.token_hex(4)}"
    url = _other_bucket(s3_url, bucket)
    with pytest.raises(BlobStoreError, match=f"bucket '{bucket}' does not exist"):
        open_store(url, create=False)
    store = open_store(url)
    try:
        assert isinstance(store, S3Store) and store.list() == []
        store.put("a.bin", ALL_BYTES)
        assert open_store(url, create=False).get("a.bin") == ALL_BYTES
    finally:
        store.delete_prefix("")
        store._client.delete_bucket(Bucket=bucket)


@pytest.mark.slow
def test_s3_prefix_scopes_the_store(s3_url):
    store = open_store(s3_url)
    a, b = open_store(_sub_prefix(s3_url, "a")), open_store(_sub_prefix(s3_url, "b"))
    a.put("x.bin", b"a")
    b.put("x.bin", b"b")
    assert a.list() == ["x.bin"] and a.get("x.bin") == b"a" and b.get("x.bin") == b"b"
    assert store.list() == ["a/x.bin", "b/x.bin"]
    assert open_store(a.describe()).get("x.bin") == b"a"  # describe() is a URL that opens the store
    assert a.delete_prefix("") == 1 and store.list() == ["b/x.bin"]


def test_the_default_store_of_a_relative_data_dir_is_an_absolute_file_uri(tmp_path, monkeypatch):
    """`psyassist app --data-dir demo-output/app` (as `make demo` runs it) must start: its default adapter store
    was "file://demo-output/app/adapters", refused as a URL naming a host."""
    from psyassist.app.config import AppConfig

    monkeypatch.chdir(tmp_path)
    url = AppConfig(data_dir=Path("demo output/app#1")).adapter_store_url
    assert url.startswith("file:///")
    store = open_store(url)
    store.put("adapters/c/v1.bin", b"x")
    assert (tmp_path / "demo output" / "app#1" / "adapters" / "adapters" / "c" / "v1.bin").read_bytes() == b"x"
