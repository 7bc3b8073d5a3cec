"""One request as the backends see it: prompt token ids, sampling, and an event queue back to the route.

    python -c "from psyassist.serve.jobs import Job; help(Job)"

A backend runs the job on its own thread (HF) or task (vLLM) and puts events on the
route's asyncio queue through `emit` (thread-safe):
  ("delta", text)                      new reply text, never split inside a character or a stop string
  ("done", finish, completion_tokens)  finish is "stop" (end of turn, eos or a stop string) or "length"
  ("error", message)                   the job failed; the route answers 500/ends the stream with an error
The route sets `cancelled` when the client goes away or the request times out; the backend
then drops the job (from the queue, or from the running batch at the next step).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from psyassist.errors import PsyassistError


class QueueFull(PsyassistError):
    """More requests are waiting than --max-queue allows (the route answers 429)."""

    def __init__(self, queued: int, retry_after: int):
        self.retry_after = retry_after
        super().__init__(f"the server queue is full ({queued} requests waiting); retry in {retry_after} s")


@dataclass
class Job:
    prompt_ids: list[int]
    max_tokens: int
    temperature: float  # 0 = greedy (allowed in the API; chat/generate refuse it unless forced)
    top_p: float
    top_k: int  # 0 = no top-k cut
    adapter: str | None = None  # None = the base model
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    # response_format as the backend's `constraint(schema)` made it: HF a grammar.JsonConstraint,
    # vLLM a StructuredOutputsParams; None = free text.
    constraint: Any = None
    loop: asyncio.AbstractEventLoop | None = None
    queue: asyncio.Queue | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.monotonic)

    def bind(self) -> Job:
        """Attach the running event loop and a fresh queue (call from the route's coroutine)."""
        self.loop = asyncio.get_running_loop()
        self.queue = asyncio.Queue()
        return self

    def emit(self, event: tuple) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)

    def cancel(self) -> None:
        self.cancelled.set()
