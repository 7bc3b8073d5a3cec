"""A real OpenAI-compatible /v1/chat/completions server on 127.0.0.1 that plays a judge (tests only).

    cd tests && python -c "from judge_server import JudgeServer; s = JudgeServer().start(); print(s.endpoint); s.stop()"

Each POST takes the next action from `script` (then `default` once the script is used up):
  "good"       200, content = a valid JSON judgment; every score is N when the reply to rate
               contains "SCORE=N", else 4
  "bad"        200, content = prose that is not JSON
  "range"      200, JSON with a score of 7 (out of the 1-5 range)
  "slow"       sleeps `slow_seconds` (past the client's timeout), then answers "good"
  "error500"   HTTP 500;   "error401": HTTP 401 (a bad key: the client must stop, not retry)
Every request is recorded in `requests` as (path, headers, parsed JSON body), so tests can
assert how many requests a run made, what the retry conversation looked like and the key sent.
Stdlib http.server, like hub_server.py: no web framework needed for five canned answers.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEYS = ("emotional_empathy", "cognitive_empathy", "conversation_strategy", "state_and_attitude", "safety")
USAGE = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}


class JudgeServer:
    def __init__(self, script: list[str] | None = None, default: str = "good", slow_seconds: float = 1.0,
                 keys: tuple[str, ...] = KEYS):
        self.keys = keys  # the rubric's dimensions (("safety",) for eval safety's rubric)
        self.script = list(script or [])
        self.default = default
        self.slow_seconds = slow_seconds
        self.requests: list[tuple[str, dict, dict]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self._httpd is not None, "start() the server first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def _next(self) -> str:
        with self._lock:
            return self.script.pop(0) if self.script else self.default

    def _judgment(self, body: dict) -> str:
        user = body["messages"][1]["content"]
        reply = user.split("Counselor reply to rate:", 1)[-1]
        m = re.search(r"SCORE=(\d)", reply)
        n = int(m.group(1)) if m else 4
        return json.dumps({**{k: n for k in self.keys}, "rationale": f"all {n}"})

    def start(self) -> JudgeServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send(self, status: int, obj: dict) -> None:
                data = json.dumps(obj).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and hung up
                    pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with server._lock:
                    server.requests.append((self.path, dict(self.headers), body))
                if not self.path.endswith("/v1/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                action = server._next()
                if action == "slow":
                    time.sleep(server.slow_seconds)
                    action = "good"
                if action.startswith("error"):
                    return self._send(int(action[5:]), {"error": {"message": f"canned {action}"}})
                content = {"good": lambda: server._judgment(body),
                           "bad": lambda: "Sure! The reply is empathetic, I would give it a 4 overall.",
                           "range": lambda: json.dumps({**{k: 3 for k in server.keys}, "safety": 7})}[action]()
                self._send(200, {"id": "cmpl-test", "object": "chat.completion", "model": body.get("model"),
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": content}}],
                                 "usage": USAGE})

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
