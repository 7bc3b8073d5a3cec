"""A real HTTP server on 127.0.0.1 that serves files the way the Hugging Face hub does (tests only).

    cd tests && python -c "from hub_server import HubServer; s = HubServer().start(); print(s.endpoint); s.stop()"

Routes (GET and HEAD):
  /datasets/{repo_id}/resolve/{revision}/{filename}
      a regular file: 200 with ETag (git-sha1-like), X-Repo-Commit, Content-Length;
      an LFS file (lfs=True): 302 to a second port (the "CDN", another origin, so
      huggingface_hub takes the metadata from the redirect itself) with X-Linked-Etag (the
      sha256) and X-Linked-Size, as the hub answers for large files.  Headers are those
      huggingface_hub.file_download.get_hf_file_metadata reads.
  /lfs/{sha256}       the bytes of an LFS file (on the CDN port)
  /files/{name}       a plain file (the `url` source)
Every request is recorded in `requests` as (method, path, headers) so tests can assert that a
cache hit made no network call, or that HF_TOKEN was sent.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"  # a 40-hex commit id, as X-Repo-Commit carries


class HubServer:
    def __init__(self) -> None:
        self.repo_files: dict[tuple[str, str], tuple[bytes, bool]] = {}  # (repo_id, filename) -> (data, lfs)
        self.plain: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._cdn: ThreadingHTTPServer | None = None

    def add_repo_file(self, repo_id: str, filename: str, data: bytes, lfs: bool = False) -> None:
        self.repo_files[(repo_id, filename)] = (data, lfs)

    def add_file(self, name: str, data: bytes) -> str:
        self.plain[name] = data
        return f"{self.endpoint}/files/{name}"

    @property
    def endpoint(self) -> str:
        assert self._httpd is not None, "start() the server first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _send(self, status: int, headers: dict[str, str], data: bytes, body: bool) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if body and data:
                    self.wfile.write(data)

            def _serve(self, body: bool) -> None:
                path = unquote(self.path.split("?", 1)[0])
                server.requests.append((self.command, path, dict(self.headers)))
                if path.startswith("/files/"):
                    data = server.plain.get(path[len("/files/"):])
                    if data is None:
                        return self._send(404, {"Content-Length": "0"}, b"", body)
                    return self._send(200, {"Content-Length": str(len(data))}, data, body)
                if path.startswith("/lfs/"):
                    for data, _ in server.repo_files.values():
                        if hashlib.sha256(data).hexdigest() == path[len("/lfs/"):]:
                            return self._send(200, {"Content-Length": str(len(data))}, data, body)
                    return self._send(404, {"Content-Length": "0"}, b"", body)
                # /datasets/{owner}/{name}/resolve/{revision}/{filename...}
                parts = path.strip("/").split("/")
                if len(parts) < 6 or parts[0] != "datasets" or parts[3] != "resolve":
                    return self._send(404, {"Content-Length": "0"}, b"", body)
                repo_id, filename = f"{parts[1]}/{parts[2]}", "/".join(parts[5:])
                if (repo_id, filename) not in server.repo_files:
                    # The hub's answer for a missing file; huggingface_hub maps it to RemoteEntryNotFoundError.
                    return self._send(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT,
                                            "Content-Length": "0"}, b"", body)
                data, lfs = server.repo_files[(repo_id, filename)]
                sha256 = hashlib.sha256(data).hexdigest()
                git_sha1 = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
                if lfs:
                    host, port = server._cdn.server_address[:2]
                    return self._send(302, {"Location": f"http://{host}:{port}/lfs/{sha256}",
                                            "ETag": f'"{git_sha1}"', "X-Repo-Commit": COMMIT,
                                            "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(data)),
                                            "Content-Length": "0"}, b"", body)
                return self._send(200, {"ETag": f'"{git_sha1}"', "X-Repo-Commit": COMMIT,
                                        "Content-Length": str(len(data))}, data, body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # port 0: the OS picks a free one
        self._cdn = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        for httpd in (self._httpd, self._cdn):
            threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()  # fast stop()
        return self

    def stop(self) -> None:
        for httpd in (self._httpd, self._cdn):
            if httpd is not None:
                httpd.shutdown()
                httpd.server_close()
