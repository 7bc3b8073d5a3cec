"""Interactive multi-turn chat: history window, streaming, slash commands, Ctrl-C, crisis panel.

    psyassist chat --model default --system-prompt "You are a warm, careful counselor."

`ChatSession` holds everything and never touches the terminal directly: it reads
lines from a callable and writes to a Rich console, so tests drive it with a list of
inputs and a string buffer.  What it guarantees:

- The model sees the system prompt + the last `history_turns` exchanges + the new
  message, rendered by the SAME ChatRenderer as training (pitfalls 1, 2); older
  exchanges are also dropped when the prompt + max_new_tokens would not fit the
  model's context.  The full conversation is kept for /save.
- Every user message goes through `crisis.detect` BEFORE the reply is generated; a
  concern/urgent message gets a visible panel with the region's resources, and the
  reply still comes (pitfall 13).  With crisis guidance on (the default), the model's
  system message for THAT turn also carries `safety.guidance.crisis_guidance` (acknowledge,
  ask about safety, encourage contacting someone now, the region's resources, no method
  details); a dim line says so, the safety log records it, /save lists the guided turns.
  With a safety log, each flagged event is appended as one JSON line; with privacy on,
  without the message text or the matched words.
- Ctrl-C during a reply sets a flag that a StoppingCriteria checks after every
  token: that reply ends (what was shown is kept in the history, so "shorter,
  please" works) and the prompt comes back.  Ctrl-C or Ctrl-D at the prompt exits.
- Thinking (Qwen3): `<think>` content streams dimmed and is never stored in the
  history; /think on|off switches the rendering and the recommended sampling,
  keeping the values given on the command line.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.panel import Panel
from rich.text import Text
from transformers import TextStreamer

from psyassist.data.io import read_text, write_json_atomic
from psyassist.data.schema import Conversation
from psyassist.errors import DataError, PsyassistError
from psyassist.infer.engine import Generation, Loaded, Sampling, generate, split_think, supports_thinking
from psyassist.safety.crisis import Detection, detect
from psyassist.safety.guidance import crisis_guidance, message_lang, with_guidance
from psyassist.safety.resources import resources_for

PROMPT = "you> "
HELP = {
    "/reset": "forget the conversation (the system prompt stays)",
    "/save FILE": "write the conversation as JSON (the corpus schema; atomic)",
    "/load FILE": "continue a conversation saved with /save",
    "/system [TEXT|clear]": "show, set or remove the system prompt",
    "/think on|off": "Qwen3 thinking mode, with that mode's recommended sampling",
    "/help": "this list",
    "/quit": "leave (also Ctrl-D, or Ctrl-C at the prompt)",
}


@dataclass
class ChatOptions:
    system_prompt: str | None = None
    history_turns: int = 8  # exchanges (user + reply) the model sees besides the new message
    thinking: bool = False
    sampling_overrides: dict = field(default_factory=dict)  # CLI values; the rest follows the mode
    seed: int | None = None
    region: str = "intl"
    safety_log: Path | None = None
    privacy: bool = False  # safety log events without the message text
    crisis_guidance: bool = True  # a flagged turn adds the crisis-response instruction to the model's context

    def __post_init__(self):
        if self.history_turns < 0:
            raise PsyassistError(f"--history-turns must be >= 0, got {self.history_turns}")
        if self.privacy and self.safety_log is None:
            raise PsyassistError("--privacy controls what the safety log holds: give --safety-log FILE.jsonl too")
        # Fail before the model loads, not at the first message: greedy without --allow-greedy, top_p > 1,
        # an unknown region.
        Sampling.recommended(self.thinking, **self.sampling_overrides).generate_kwargs()
        resources_for(self.region)


class ThinkSplitter:
    """Streamed text → [(text, is_thinking)]; a tag cut across two chunks ('<thi' + 'nk>') is held back."""

    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self):
        self.thinking = False
        self.pending = ""

    def feed(self, chunk: str, final: bool = False) -> list[tuple[str, bool]]:
        s, self.pending, out = self.pending + chunk, "", []
        while s:
            tag = self.CLOSE if self.thinking else self.OPEN
            k = s.find(tag)
            if k >= 0:
                if k:
                    out.append((s[:k], self.thinking))
                self.thinking = not self.thinking
                s = s[k + len(tag):]
                continue
            if not final:
                n = next((n for n in range(min(len(tag) - 1, len(s)), 0, -1) if tag.startswith(s[-n:])), 0)
                if n:
                    s, self.pending = s[:-n], s[-n:]
            if s:
                out.append((s, self.thinking))
            break
        return out


class _ConsoleStreamer(TextStreamer):
    """TextStreamer that prints through the session's console, thinking dimmed."""

    def __init__(self, tok, console: Console):
        super().__init__(tok, skip_prompt=True, skip_special_tokens=True)
        self.console = console
        self.split = ThinkSplitter()
        self.was_thinking = False

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        for piece, thinking in self.split.feed(text, final=stream_end):
            if self.was_thinking and not thinking:
                piece = piece.lstrip("\n")
                self.console.print()
            self.was_thinking = thinking
            self.console.print(Text(piece, style="dim italic" if thinking else ""), end="", soft_wrap=True)
        if stream_end:
            self.console.print()


class ChatSession:
    def __init__(self, loaded: Loaded, opts: ChatOptions, console: Console | None = None):
        from psyassist.ui import console as default_console

        self.opts = opts
        self.loaded = loaded if loaded.thinking == opts.thinking else loaded.with_thinking(opts.thinking)
        self.console = console or default_console
        self.system = opts.system_prompt
        self.history: list[dict] = []  # every message after the system prompt, replies without <think>
        self.stop = threading.Event()
        self.session_id = uuid.uuid4().hex[:12]
        self.turns = 0
        self.flagged: list[Detection] = []
        self.guided_turns: list[int] = []  # turns whose prompt carried the crisis guidance
        self.last_guidance = ""  # the instruction added to the last turn ("" when none)
        self.resources = resources_for(opts.region)
        config = self.loaded.model.config
        self.context = config.max_position_embeddings  # tokens the model was built for
        if opts.seed is not None:
            torch.manual_seed(opts.seed)  # once: replies differ from turn to turn, the session is reproducible

    # --- what the model sees ---------------------------------------------------------------

    @property
    def sampling(self) -> Sampling:
        return Sampling.recommended(self.loaded.thinking, **self.opts.sampling_overrides)

    def window(self, text: str, guidance: str = "") -> tuple[list[dict], str, int]:
        """(messages, rendered prompt, exchanges dropped for the context) for a new user message;
        `guidance` (crisis_guidance) joins the system message for this turn only."""
        head = with_guidance([{"role": "system", "content": self.system}] if self.system else [], guidance)
        exchanges = _exchanges(self.history)
        keep = exchanges[len(exchanges) - self.opts.history_turns:] if self.opts.history_turns else []
        budget = self.context - self.sampling.max_new_tokens
        dropped = 0
        while True:
            msgs = head + [m for ex in keep for m in ex] + [{"role": "user", "content": text}]
            prompt = self.loaded.renderer.inference_prompt(msgs)
            n = len(self.loaded.tok(prompt, add_special_tokens=False)["input_ids"])
            if n <= budget or not keep:
                break
            keep, dropped = keep[1:], dropped + 1
        if n > budget:
            raise PsyassistError(f"this message with the system prompt is {n} tokens; with --max-new-tokens "
                                 f"{self.sampling.max_new_tokens} it does not fit the model's {self.context}-token "
                                 "context. Shorten it, or lower --max-new-tokens.")
        return msgs, prompt, dropped

    # --- the loop ----------------------------------------------------------------------------

    def run(self, read=input) -> None:
        """Read lines until /quit, Ctrl-D or Ctrl-C at the prompt."""
        self.banner()
        while True:
            try:
                line = read(PROMPT)
            except (EOFError, KeyboardInterrupt):
                self.console.print("\n[dim]bye[/]")
                return
            try:
                if not self.handle(line):
                    return
            except KeyboardInterrupt:  # Ctrl-C outside a reply (crisis check, rendering): drop that line only
                self.console.print("\n[dim](cancelled)[/]")

    def banner(self) -> None:
        d = self.loaded.describe()
        what = d["model"] + (f" + {d['adapter']}" if d["adapter"] else "")
        if d["merged_from"]:
            what += f" (merged: {d['merged_from'].get('base')} + {d['merged_from'].get('adapter')})"
        s = self.sampling
        self.console.print(f"[bold]psyassist chat[/] · {what} · {d['device']} {d['dtype']}", highlight=False)
        self.console.print(
            f"[dim]thinking {'on' if self.loaded.thinking else 'off'} · T={s.temperature} top_p={s.top_p} "
            f"top_k={s.top_k} max_new_tokens={s.max_new_tokens} · history {self.opts.history_turns} turns · "
            f"crisis resources: {self.opts.region}"
            + f" · crisis guidance {'on' if self.opts.crisis_guidance else 'off'}"
            + (f" · safety log {self.opts.safety_log}{' (no text)' if self.opts.privacy else ''}"
               if self.opts.safety_log else "") + "[/]", highlight=False)
        self.console.print("[dim]/help for commands. A research tool, not a substitute for a counselor or "
                           "emergency services.[/]")

    def handle(self, line: str) -> bool:
        """One input line; False when the session should end."""
        text = line.strip()
        if not text:
            return True
        if text.startswith("//"):  # a message that really starts with '/'
            text = text[1:]
        elif text.startswith("/"):
            cmd, _, arg = text.partition(" ")
            fn = _COMMANDS.get(cmd.lower())
            if fn is None:
                self.console.print(f"[yellow]unknown command {cmd}[/]; /help lists them (start a message "
                                   "with // to send a literal /)", highlight=False)
                return True
            try:
                return fn(self, arg.strip()) is not False
            except PsyassistError as e:
                self.console.print(f"[red]error:[/] {e}", highlight=False)
                return True
        try:
            self.send(text)
        except PsyassistError as e:
            self.console.print(f"[red]error:[/] {e}", highlight=False)
        return True

    def send(self, text: str) -> Generation:
        """Check the message, show the crisis panel if flagged, stream the reply, keep both in history."""
        self.turns += 1
        det = detect(text)
        guidance = ""
        if det.flagged:
            self.flagged.append(det)
            self.crisis_panel(det)
            if self.opts.crisis_guidance:
                guidance = crisis_guidance(det, self.opts.region, lang=message_lang(text))
        try:
            msgs, prompt, dropped = self.window(text, guidance)
        except PsyassistError:
            if not guidance:
                raise
            guidance = ""  # the instruction must never stop a crisis message from being answered
            msgs, prompt, dropped = self.window(text)
        if det.flagged:
            self.log_event(det, text, guided=bool(guidance))
        self.last_guidance = guidance
        if guidance:
            self.guided_turns.append(self.turns)
            self.console.print("[dim](crisis guidance added to the model's instructions for this reply: ask about "
                               "safety, give the resources, no method details)[/]")
        if dropped:
            self.console.print(f"[dim](the {dropped} oldest exchange(s) left out to fit the context)[/]")
        self.console.print("[bold cyan]assistant:[/] ", end="")
        streamer = _ConsoleStreamer(self.loaded.tok, self.console)
        gen = self._generate(prompt, streamer)
        _, answer = split_think(gen.text)
        self.history += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
        rate = f" · {gen.new_tokens / gen.seconds:.1f} tok/s" if gen.seconds > 0 else ""
        note = {"stop": "", "length": " · cut at --max-new-tokens", "interrupted": " · stopped"}[gen.finish]
        self.console.print(f"[dim]({gen.new_tokens} tokens · {gen.seconds:.1f} s{rate}{note})[/]", highlight=False)
        return gen

    def _generate(self, prompt: str, streamer) -> Generation:
        """Generate with Ctrl-C bound to `self.stop` (main thread only: signals are delivered there)."""
        self.stop.clear()
        main = threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGINT, lambda signum, frame: self.stop.set()) if main else None
        try:
            return generate(self.loaded, [prompt], self.sampling, streamer=streamer, stop=self.stop)[0]
        finally:
            if main:
                signal.signal(signal.SIGINT, old)

    # --- safety ------------------------------------------------------------------------------

    def crisis_panel(self, det: Detection) -> None:
        urgent = det.level == "urgent"
        body = Text()
        body.append("This message may describe a crisis" + (f" ({', '.join(det.categories)})" if det.categories
                                                            else "") + ". The reply below comes from a model.\n")
        body.append("If you or someone else is in danger, get help now:\n", style="bold")
        for r in self.resources:
            body.append(f"  • {r.name}: {r.contact()}" + (f" ({r.hours})" if r.hours else "") + "\n")
        self.console.print(Panel(body, title=f"{det.level.upper()}: possible crisis", title_align="left",
                                 border_style="bold red" if urgent else "bold yellow"))

    def log_event(self, det: Detection, text: str, guided: bool = False) -> None:
        """One JSON line per flagged message; privacy mode keeps no text (level, categories, offsets, rules)."""
        if self.opts.safety_log is None:
            return
        event = {"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "session": self.session_id,
                 "turn": self.turns, "region": self.opts.region, "model": self.loaded.name,
                 "adapter": self.loaded.adapter, "guidance": guided, **det.to_dict(include_text=not self.opts.privacy)}
        if not self.opts.privacy:
            event["text"] = text
        path = Path(self.opts.safety_log)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:  # one write per event: a crash loses at most that line
            f.write(json.dumps(event, ensure_ascii=False) + "\n")

    # --- slash commands ------------------------------------------------------------------------

    def cmd_reset(self, arg: str) -> None:
        self.history.clear()
        self.console.print("[dim]conversation cleared[/]")

    def cmd_save(self, arg: str) -> None:
        if not arg:
            raise PsyassistError("usage: /save FILE.json")
        path = Path(arg).expanduser()
        head = [{"role": "system", "content": self.system}] if self.system else []
        conv = {"id": f"chat-{self.session_id}", "messages": head + self.history, "tags": [],
                "source": "psyassist chat",
                "meta": {"model": self.loaded.name, "adapter": self.loaded.adapter, "thinking": self.loaded.thinking,
                         "sampling": self.sampling.to_dict(), "seed": self.opts.seed,
                         "crisis_guidance_turns": list(self.guided_turns),
                         "saved": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}}
        write_json_atomic(path, conv)
        self.console.print(f"[dim]saved {len(self.history)} messages to {path}[/]", highlight=False)

    def cmd_load(self, arg: str) -> None:
        if not arg:
            raise PsyassistError("usage: /load FILE.json")
        path = Path(arg).expanduser()
        text, _ = read_text(path)
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(str(path), f"one JSON object as /save writes it ({e.msg})", line=e.lineno,
                            reason="bad_json", hint="") from e
        conv = Conversation.from_dict(obj, file=str(path), default_id="chat")
        msgs = [m.to_dict() for m in conv.messages]
        system = msgs.pop(0)["content"] if msgs and msgs[0]["role"] == "system" else None
        for i, m in enumerate(msgs, start=1 if system is not None else 0):
            if m["role"] == "system":
                raise DataError(str(path), "a system message only first", field=f"messages[{i}].role",
                                got="system", reason="bad_role", hint="")
        self.system = system if system is not None else self.system
        self.history = [{"role": m["role"], "content": split_think(m["content"])[1]
                         if m["role"] == "assistant" else m["content"]} for m in msgs]
        self.console.print(f"[dim]loaded {len(self.history)} messages from {path}"
                           + (" (with its system prompt)" if system is not None else "") + "[/]", highlight=False)

    def cmd_system(self, arg: str) -> None:
        if not arg:
            shown = self.system if self.system else "(none)"
            self.console.print(Text(f"system prompt: {shown}", style="dim"))
        elif arg.lower() == "clear":
            self.system = None
            self.console.print("[dim]system prompt removed[/]")
        else:
            self.system = arg
            self.console.print("[dim]system prompt set (applies from the next message)[/]")

    def cmd_think(self, arg: str) -> None:
        if arg.lower() not in ("on", "off"):
            raise PsyassistError("usage: /think on|off")
        on = arg.lower() == "on"
        self.loaded = self.loaded.with_thinking(on)
        s = self.sampling
        note = "" if supports_thinking(self.loaded.tok) else " (this model's template has no thinking switch: " \
                                                               "only the sampling changed)"
        self.console.print(f"[dim]thinking {arg.lower()}: T={s.temperature} top_p={s.top_p} top_k={s.top_k}"
                           f"{note}[/]", highlight=False)

    def cmd_help(self, arg: str) -> None:
        for k, v in HELP.items():
            self.console.print(f"  [bold]{k}[/]  {v}", highlight=False)

    def cmd_quit(self, arg: str) -> bool:
        self.console.print("[dim]bye[/]")
        return False


_COMMANDS = {"/reset": ChatSession.cmd_reset, "/save": ChatSession.cmd_save, "/load": ChatSession.cmd_load,
             "/system": ChatSession.cmd_system, "/think": ChatSession.cmd_think, "/help": ChatSession.cmd_help,
             "/quit": ChatSession.cmd_quit, "/exit": ChatSession.cmd_quit}


def _exchanges(history: list[dict]) -> list[list[dict]]:
    """Group messages into exchanges: each ends with a reply (a trailing unanswered user turn is its own)."""
    out: list[list[dict]] = [[]]
    for m in history:
        out[-1].append(m)
        if m["role"] == "assistant":
            out.append([])
    return [ex for ex in out if ex]


def read_system_prompt(text: str | None, file: Path | None) -> str | None:
    if text is not None and file is not None:
        raise PsyassistError("give --system-prompt or --system-prompt-file, not both")
    if file is not None:
        content, _ = read_text(file)
        return content.strip() or None
    return text


def run_chat(loaded: Loaded, opts: ChatOptions) -> ChatSession:
    """`psyassist chat`: the session on the terminal (readline editing and history when available)."""
    try:
        import readline  # noqa: F401  (importing it gives input() line editing)
    except ImportError:
        pass
    session = ChatSession(loaded, opts)
    session.run()
    return session

