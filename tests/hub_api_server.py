"""A real HTTP server on 127.0.0.1 that takes uploads the way the Hugging Face hub API does (tests only).

    cd tests && python -c "from hub_api_server import HubApiServer; s = HubApiServer('hf_x').start(); print(s.endpoint); s.stop()"

It implements exactly what huggingface_hub 2.x's `HfApi.create_repo`, `create_branch` and
`create_commit` call on the HTTP/LFS path (psyassist.publish turns the Xet path off, see there):

  POST /api/repos/create                       {name, organization, visibility?, type} → {url};
                                               409 when the repo exists (create_repo(exist_ok=True) passes)
  POST /api/models/{repo}/branch/{branch}      create a branch (409 if it exists)
  POST /api/validate-yaml                      {content, repoType}: the README's YAML front matter must
                                               parse to a mapping, else 400 {errors: [{message}]}
  POST /api/models/{repo}/preupload/{rev}      {files: [{path, sample, size}]} → uploadMode per file:
                                               "lfs" for weight suffixes (the hub's .gitattributes) or
                                               files of 10 MiB and more, else "regular"
  POST /{repo}.git/info/lfs/objects/batch      LFS batch API: an upload action (a presigned-style URL on
                                               this server) + a verify action per object not stored yet
  PUT  /s3/{oid}?sig=…                         the LFS bytes (no token: a presigned URL carries none);
                                               plain or chunked body, sha256 must equal the oid
  POST /api/lfs-verify                         {oid, size} of a stored object
  POST /api/models/{repo}/commit/{rev}         ndjson: header, file (base64), lfsFile (must be uploaded),
                                               deletedFile → {commitUrl, commitOid}

Every request except the presigned PUT must carry `authorization: Bearer TOKEN`, else 401.
`requests` records (method, path, headers, body) of every request; `repos[repo_id]` holds
{"private": bool, "branches": {name: {path: bytes}}, "commits": [...]} so tests can compare the
files that arrived with the source, byte for byte; `unhandled` lists routes it does not know.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

# Suffixes the hub's default .gitattributes stores with LFS (the ones a model directory has).
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".onnx", ".model",
                ".npy", ".npz", ".pkl", ".zip", ".tar", ".gz")
LFS_MIN_SIZE = 10 * 2**20  # the hub refuses regular (non-LFS) files of 10 MiB and more


class HubApiServer:
    def __init__(self, token: str) -> None:
        self.token = token
        self.repos: dict[str, dict] = {}
        self.lfs: dict[str, bytes] = {}  # sha256 hex -> bytes
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.unhandled: list[tuple[str, str]] = []
        self._sig = secrets.token_hex(8)  # the "presigned" part of upload URLs
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self._httpd is not None, "start() the server first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def files(self, repo_id: str, branch: str = "main") -> dict[str, bytes]:
        return self.repos[repo_id]["branches"][branch]

    def start(self) -> HubApiServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects; every answer sets Content-Length

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                self._handle()

            def do_PUT(self):
                self._handle()

            def do_GET(self):
                self._handle()

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()  # the CRLF after each chunk
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(self, status: int, obj=None, headers: dict[str, str] | None = None) -> None:
                data = b"" if obj is None else json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                url = urlsplit(self.path)
                path = unquote(url.path)
                body = self._body()
                with server._lock:
                    server.requests.append((self.command, path, dict(self.headers), body))
                try:
                    status, obj, headers = server._route(self.command, path, parse_qs(url.query), self.headers, body)
                except (ValueError, KeyError, json.JSONDecodeError) as e:  # a malformed request: 400, never 500
                    status, obj, headers = 400, {"error": f"bad request: {e}"}, None
                self._send(status, obj, headers)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    # --- routes ------------------------------------------------------------------------------

    def _route(self, method: str, path: str, query: dict, headers, body: bytes):
        if method == "PUT" and path.startswith("/s3/"):
            return self._s3_put(path[len("/s3/"):], query, body)
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": "Invalid credentials in Authorization header"}, {"X-Error-Message": "Invalid token"}
        if method == "POST" and path == "/api/repos/create":
            return self._create_repo(json.loads(body))
        if method == "POST" and path == "/api/validate-yaml":
            return self._validate_yaml(json.loads(body)["content"])
        if method == "POST" and path == "/api/lfs-verify":
            req = json.loads(body)
            ok = len(self.lfs.get(req["oid"], b"")) == req["size"] and req["oid"] in self.lfs
            return (200, {}, None) if ok else (404, {"error": "object not found"}, None)
        m = re.fullmatch(r"/(.+/.+)\.git/info/lfs/objects/batch", path)
        if method == "POST" and m:
            return self._lfs_batch(m.group(1), json.loads(body))
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(preupload|commit|branch)/(.+)", path)
        if method == "POST" and m:
            repo_id, action, rev = m.groups()
            repo = self.repos.get(repo_id)
            if repo is None:
                return 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
            if action == "branch":
                if rev in repo["branches"]:
                    return 409, {"error": f"Reference {rev} already exists"}, None
                start = json.loads(body or b"{}").get("startingPoint", "main")
                repo["branches"][rev] = dict(repo["branches"][start])
                return 200, {}, None
            if rev not in repo["branches"]:
                return 404, {"error": f"Invalid rev id: {rev}"}, {"X-Error-Code": "RevisionNotFound"}
            if action == "preupload":
                return self._preupload(json.loads(body))
            return self._commit(repo_id, repo, rev, body)
        self.unhandled.append((method, path))
        return 404, {"error": f"{method} {path}: not implemented by the stand-in"}, None

    def _create_repo(self, req: dict):
        repo_id = f"{req['organization']}/{req['name']}" if req.get("organization") else f"tester/{req['name']}"
        if repo_id in self.repos:
            return 409, {"error": "You already created this model repo", "url": f"{self.endpoint}/{repo_id}"}, None
        self.repos[repo_id] = {"private": req.get("visibility") == "private", "type": req.get("type"),
                               "branches": {"main": {}}, "commits": []}
        return 200, {"url": f"{self.endpoint}/{repo_id}", "name": repo_id}, None

    @staticmethod
    def _validate_yaml(content: str):
        m = re.match(r"---\n(.*?)\n---\n", content, re.S)
        if not m:
            return 200, {"errors": [], "warnings": [{"message": "empty or missing yaml metadata in repo card"}]}, None
        try:
            meta = yaml.safe_load(m.group(1))
        except yaml.YAMLError as e:
            return 400, {"errors": [{"message": f"invalid YAML: {e}"}]}, None
        if not isinstance(meta, dict):
            return 400, {"errors": [{"message": "metadata must be a mapping"}]}, None
        bad = [b for b in ([meta["base_model"]] if isinstance(meta.get("base_model"), str) else
                           meta.get("base_model") or []) if not re.fullmatch(r"[\w.-]+/[\w.-]+", str(b))]
        if bad:
            return 400, {"errors": [{"message": f'"base_model" must be a hub model id, got {bad}'}]}, None
        return 200, {"errors": [], "warnings": []}, None

    @staticmethod
    def _preupload(req: dict):
        files = []
        for f in req["files"]:
            lfs = f["path"].endswith(LFS_SUFFIXES) or f["size"] >= LFS_MIN_SIZE
            files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": None})
        return 200, {"files": files, "commitOid": "0" * 40}, None

    def _lfs_batch(self, repo_id: str, req: dict):
        if repo_id not in self.repos:
            return 404, {"message": "Repository not found"}, None
        objects = []
        for o in req["objects"]:
            obj = {"oid": o["oid"], "size": o["size"], "authenticated": True}
            if o["oid"] not in self.lfs:
                obj["actions"] = {"upload": {"href": f"{self.endpoint}/s3/{o['oid']}?sig={self._sig}"},
                                  "verify": {"href": f"{self.endpoint}/api/lfs-verify"}}
            objects.append(obj)
        return 200, {"transfer": "basic", "objects": objects}, None

    def _s3_put(self, oid: str, query: dict, body: bytes):
        if query.get("sig") != [self._sig]:
            return 403, {"error": "bad signature"}, None
        if hashlib.sha256(body).hexdigest() != oid:
            return 400, {"error": "sha256 of the body does not match the oid"}, None
        with self._lock:
            self.lfs[oid] = body
        return 200, None, {"ETag": f'"{oid[:32]}"'}

    def _commit(self, repo_id: str, repo: dict, rev: str, body: bytes):
        lines = [json.loads(x) for x in body.splitlines() if x.strip()]
        if not lines or lines[0]["key"] != "header":
            return 400, {"error": "the first ndjson line must be the header"}, None
        tree = dict(repo["branches"][rev])
        for item in lines[1:]:
            key, value = item["key"], item["value"]
            p = value["path"]
            if PurePosixPath(p).is_absolute() or ".." in PurePosixPath(p).parts:
                return 400, {"error": f"invalid path {p}"}, None
            if key == "file":
                tree[p] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                data = self.lfs.get(value["oid"])
                if data is None or len(data) != value.get("size", len(data)):
                    return 422, {"error": f"LFS object {value['oid']} for {p} was not uploaded"}, None
                tree[p] = data
            elif key == "deletedFile":
                tree.pop(p, None)
            else:
                return 400, {"error": f"unknown commit operation {key}"}, None
        oid = hashlib.sha1(body).hexdigest()
        repo["branches"][rev] = tree
        repo["commits"].append({"oid": oid, "revision": rev, **lines[0]["value"]})
        return 200, {"success": True, "commitOid": oid, "commitUrl": f"{self.endpoint}/{repo_id}/commit/{oid}",
                     "pullRequestUrl": None}, None
