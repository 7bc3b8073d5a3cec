"""Object store for the app's per-client adapter files: a local directory or an S3-compatible bucket.

    python -c "from psyassist.app.store.blobs import open_store; s = open_store('/tmp/blobs'); s.put('c/1/adapter.bin', b'x'); print(s.list())"

`open_store(url)` picks the backend from the URL:

    /abs/path, rel/path, file:///abs/path              LocalStore (the directory is created if missing)
    s3://BUCKET/PREFIX?endpoint=http://127.0.0.1:8333&region=us-east-1     S3Store (boto3)

Both hold opaque bytes: the caller encrypts before `put` and decrypts after `get`, so neither backend
ever sees plaintext.  Keys are '/'-separated names of [A-Za-z0-9._-] parts, no part empty or starting
with '.', so a key can never leave the root (no '..', no absolute path, no backslash) and means the
same object on both backends.  Prefixes (`list`, `delete_prefix`) are folders: "" or ending in "/",
so that deleting "clients/1/" cannot take "clients/10/" with it.

S3 credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws, an
instance role), never from the URL, so `describe()` (the URL) is safe to log and to show in errors.
Both stores are safe to share between threads: LocalStore keeps no state besides its root and S3Store
one boto3 client, which boto3 documents as thread-safe.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from psyassist.errors import PsyassistError

# One part of a key; parts starting with '.' are refused, which rules out '.' and '..' and keeps the
# dot-names free for LocalStore's temp files (list() skips them).
_PART = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


class BlobStoreError(PsyassistError):
    """The store cannot be used: unreachable, credentials refused, no such bucket, bad URL."""


class BlobNotFound(PsyassistError, KeyError):
    """get() of a key that is not in the store (also a KeyError, like a missing dict key)."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0])


class InvalidKey(PsyassistError, ValueError):
    """A key or prefix outside the allowed names (see the module docstring)."""


def check_key(key: str) -> str:
    if not isinstance(key, str) or not key or not all(_PART.fullmatch(p) for p in key.split("/")):
        raise InvalidKey(f"invalid blob key {key!r}: expected '/'-separated parts of [A-Za-z0-9._-], "
                         "none empty or starting with '.' (e.g. 'clients/42/adapter-3.bin')")
    return key


def check_prefix(prefix: str) -> str:
    if prefix == "":
        return prefix
    if not isinstance(prefix, str) or not prefix.endswith("/"):
        raise InvalidKey(f"invalid blob prefix {prefix!r}: a prefix is a folder, '' or ending in '/' "
                         "(e.g. 'clients/42/')")
    check_key(prefix[:-1])
    return prefix


def _check_data(data) -> bytes | bytearray | memoryview:
    # boto3 would silently UTF-8-encode a str; an adapter is ciphertext, so a str is a caller's bug.
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"blob data must be bytes (ciphertext), got {type(data).__name__}")
    return data


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore:
    """Objects are files under `root`; files are 0600 and new folders 0700 (per-client data)."""

    def __init__(self, root: str | os.PathLike, *, create: bool = True):
        self.root = Path(root).absolute()
        if self.root.exists() and not self.root.is_dir():
            raise BlobStoreError(f"blob store {self.describe()}: {self.root} is not a directory")
        if not self.root.exists():
            if not create:
                raise BlobStoreError(f"blob store {self.describe()}: {self.root} does not exist")
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def describe(self) -> str:
        return self.root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _makedirs(self, folder: Path) -> None:
        """Create the missing folders from the root down, each made durable by an fsync of its parent:
        otherwise a power cut can lose a new client's folder, and the adapter in it, after put()."""
        missing = []
        while folder != self.root and not folder.is_dir():
            missing.append(folder)
            folder = folder.parent
        for d in reversed(missing):
            try:
                d.mkdir(mode=0o700)
            except FileExistsError:  # another thread or process made it first
                continue
            _fsync_dir(d.parent)

    def _clash(self, key: str) -> BlobStoreError:
        # S3 can hold both; a file system cannot.  Adapter keys ('clients/42/adapter-3.bin') never clash.
        return BlobStoreError(f"blob store {self.describe()}: cannot put {key!r}: a local store cannot "
                              "hold an object and a folder of the same name ('a' and 'a/b')")

    def put(self, key: str, data: bytes) -> None:
        """Write atomically: a temp file in the same folder, fsync, rename over the key, fsync the
        folder.  A reader sees the old object or the new one, never part of one, even after a crash."""
        path = self._path(key)
        _check_data(data)
        for attempt in range(10):
            try:
                self._makedirs(path.parent)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
                break
            except FileNotFoundError:
                # A concurrent delete pruned a folder on the way, empty a moment before: make it again.
                # Once the temp file is in, the folder is not empty and stays.
                if attempt == 9:
                    raise
            except NotADirectoryError:
                raise self._clash(key) from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.replace(tmp, path)
            except IsADirectoryError:
                raise self._clash(key) from None
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        try:
            _fsync_dir(path.parent)
        except FileNotFoundError:  # a concurrent delete() of this key came after: nothing to keep
            pass

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        # A folder ("clients/42") is not an object, nor is anything below an object ("a.bin/x").
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(f"no blob {key!r} in {self.describe()}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):  # as in get(): no such object
            return
        self._prune(path.parent)

    def _prune(self, folder: Path) -> None:
        """Remove folders left empty, up to the root.  No lock, so that several processes may share
        the root too: rmdir refuses a folder that a concurrent put has put its temp file into, and
        put makes again a folder pruned before that."""
        while folder != self.root:
            try:
                folder.rmdir()
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    return
                raise
            folder = folder.parent

    def list(self, prefix: str = "") -> list[str]:
        start = self.root.joinpath(*check_prefix(prefix).split("/"))
        keys = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            base = "" if rel == "." else rel + "/"
            keys += [base + n for n in filenames if not n.startswith(".")]  # dot-names: temp files
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> int:
        n = 0
        folders = set()
        for key in self.list(prefix):
            path = self._path(key)
            try:
                path.unlink()
            except FileNotFoundError:  # a concurrent delete got it first
                continue
            n += 1
            folders.add(path.parent)
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            self._prune(folder)
        return n


class S3Store:
    """Objects in BUCKET under PREFIX, on AWS or an S3-compatible server (SeaweedFS, MinIO, Ceph)."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint: str | None = None,
                 region: str | None = None, create: bool = True):
        from psyassist.optional import require

        boto3 = require("boto3", "the s3:// blob store")
        from botocore.config import Config

        self.bucket, self.prefix = bucket, check_prefix(prefix)
        self.endpoint, self.region = endpoint, region
        self._url = self._make_url()
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise BlobStoreError(f"blob store {self._url}: invalid bucket name {bucket!r} "
                                 "(3-63 characters of a-z, 0-9, '.' and '-')")
        config = Config(
            # Path style (http://host/bucket/key): a custom endpoint on an IP or localhost has no
            # per-bucket DNS names.  AWS itself keeps boto3's default (virtual hosts).
            s3={"addressing_style": "path"} if endpoint else {},
            # 5 s to connect: an unreachable endpoint fails in seconds, not after the 60 s default;
            # standard retries: 3 tries with backoff over transient 5xx and throttling.
            connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"},
            # The app's thread pool: boto3's default pool of 10 connections would make threads wait.
            max_pool_connections=32,
        )
        # A Session is not thread-safe, the client made from it is: one client serves all threads.
        session = boto3.session.Session()
        self._client = session.client("s3", endpoint_url=endpoint, config=config,
                                      region_name=region or session.region_name or "us-east-1")
        self._open(create)

    @classmethod
    def from_url(cls, url: str, *, create: bool = True) -> S3Store:
        parts = urlsplit(url)
        shown = f"s3://{parts.netloc.rpartition('@')[2]}{parts.path}"  # never a secret, even a misplaced one
        if "@" in parts.netloc:
            raise BlobStoreError(f"blob store {shown}: credentials do not go in the URL; set "
                                 "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead")
        if not parts.netloc:
            raise BlobStoreError(f"blob store {shown}: expected s3://BUCKET/PREFIX?endpoint=...")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted(set(query) - {"endpoint", "region"})
        if unknown:
            raise BlobStoreError(f"blob store {shown}: unknown URL parameter(s) {unknown}; "
                                 "known: endpoint, region")
        endpoint = query.get("endpoint") or None
        if endpoint and "@" in urlsplit(endpoint).netloc:
            raise BlobStoreError(f"blob store {shown}: credentials do not go in the endpoint URL; set "
                                 "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead")
        prefix = unquote(parts.path).strip("/")
        return cls(parts.netloc, prefix + "/" if prefix else "", endpoint=endpoint,
                   region=query.get("region") or None, create=create)

    def _make_url(self) -> str:
        query = {k: v for k, v in (("endpoint", self.endpoint), ("region", self.region)) if v}
        return f"s3://{self.bucket}/{self.prefix}" + (f"?{urlencode(query, safe=':/')}" if query else "")

    def describe(self) -> str:
        return self._url

    def _fail(self, e: Exception, what: str) -> BlobStoreError:
        """botocore's exception, as one sentence that names the store (never the secret key)."""
        from botocore.exceptions import ClientError, HTTPClientError, NoCredentialsError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        where = f"blob store {self._url}"
        if isinstance(e, (BotoConnectionError, HTTPClientError)):
            return BlobStoreError(f"{where}: cannot reach the S3 endpoint "
                                  f"{self.endpoint or 'of AWS'} ({what}): {e}. Is the server running?")
        if isinstance(e, NoCredentialsError):
            return BlobStoreError(f"{where}: no S3 credentials; set AWS_ACCESS_KEY_ID and "
                                  "AWS_SECRET_ACCESS_KEY")
        if isinstance(e, ClientError):
            err = e.response.get("Error", {})
            code, msg = str(err.get("Code", "?")), err.get("Message") or ""
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403",
                        "InvalidToken", "ExpiredToken"):
                return BlobStoreError(f"{where}: the S3 server refused the credentials ({what}: {code}). "
                                      "Check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY and that "
                                      "this key may use the bucket.")
            if code == "NoSuchBucket":
                return BlobStoreError(f"{where}: bucket {self.bucket!r} does not exist ({what})")
            return BlobStoreError(f"{where}: {what} failed: {code} {msg}".rstrip())
        return BlobStoreError(f"{where}: {what} failed: {e}")

    def _call(self, what: str, fn, **kw):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kw)
        except (BotoCoreError, ClientError) as e:
            raise self._fail(e, what) from None  # from None: the message says it all, no botocore trace

    def _open(self, create: bool) -> None:
        """One cheap request up front, so that a wrong endpoint, key or bucket fails at startup with a
        clear message.  ListObjectsV2 rather than HeadBucket: HEAD answers carry no error code, only
        403 or 404, and list is a permission the store needs anyway."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
            return
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "NoSuchBucket" or not create:
                raise self._fail(e, "opening the bucket") from None
        except BotoCoreError as e:
            raise self._fail(e, "opening the bucket") from None
        kw = {}
        if self._client.meta.region_name != "us-east-1":  # AWS wants the region spelt out, except this one
            kw["CreateBucketConfiguration"] = {"LocationConstraint": self._client.meta.region_name}
        try:
            self._client.create_bucket(Bucket=self.bucket, **kw)
        except ClientError as e:
            # Another process creating the same bucket at the same time is fine.
            if e.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise self._fail(e, "creating the bucket") from None
        except BotoCoreError as e:
            raise self._fail(e, "creating the bucket") from None

    def put(self, key: str, data: bytes) -> None:
        # One PUT: S3 makes an object visible only once complete, so this is atomic like LocalStore's.
        self._call(f"put {key!r}", self._client.put_object, Key=self.prefix + check_key(key),
                   Body=bytes(_check_data(data)))

    def get(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        full = self.prefix + check_key(key)
        try:
            return self._client.get_object(Bucket=self.bucket, Key=full)["Body"].read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise BlobNotFound(f"no blob {key!r} in {self._url}") from None
            raise self._fail(e, f"get {key!r}") from None
        except BotoCoreError as e:
            raise self._fail(e, f"get {key!r}") from None

    def exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_object(Bucket=self.bucket, Key=self.prefix + check_key(key))
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._fail(e, f"exists {key!r}") from None
        except BotoCoreError as e:
            raise self._fail(e, f"exists {key!r}") from None

    def delete(self, key: str) -> None:
        # S3's DELETE of a missing key succeeds, as delete() promises.
        self._call(f"delete {key!r}", self._client.delete_object, Key=self.prefix + check_key(key))

    def _list_full(self, prefix: str) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        keys = []
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=self.prefix + check_prefix(prefix)):
                keys += [o["Key"] for o in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as e:
            raise self._fail(e, f"list {prefix!r}") from None
        return keys

    def list(self, prefix: str = "") -> list[str]:
        return sorted(k[len(self.prefix):] for k in self._list_full(prefix))

    def delete_prefix(self, prefix: str) -> int:
        keys = self._list_full(prefix)
        for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys a request
            batch = [{"Key": k} for k in keys[i:i + 1000]]
            r = self._call(f"delete_prefix {prefix!r}", self._client.delete_objects,
                           Delete={"Objects": batch, "Quiet": True})
            if r.get("Errors"):
                err = r["Errors"][0]
                raise BlobStoreError(f"blob store {self._url}: delete_prefix {prefix!r}: "
                                     f"{len(r['Errors'])} key(s) not deleted, first {err.get('Key')!r}: "
                                     f"{err.get('Code')} {err.get('Message', '')}".rstrip())
        return len(keys)


Store = LocalStore | S3Store


def open_store(url: str, *, create: bool = True) -> Store:
    """The store of `url` (see the module docstring); `create=False` refuses a missing root or bucket
    instead of creating it."""
    if url.startswith("s3://"):
        return S3Store.from_url(url, create=create)
    if url.startswith("file://"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost") or parts.query:
            raise BlobStoreError(f"blob store {url}: expected file:///absolute/path")
        return LocalStore(unquote(parts.path), create=create)
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", url):
        raise BlobStoreError(f"blob store {url.split('?')[0]}: unknown scheme; use a path, "
                             "file:///path or s3://BUCKET/PREFIX?endpoint=...")
    if not url:
        raise BlobStoreError("blob store: empty URL; use a path, file:///path or s3://BUCKET/PREFIX")
    return LocalStore(url, create=create)
