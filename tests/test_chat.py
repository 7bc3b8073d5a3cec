"""Chat: history window, slash commands, save/load, crisis panel, privacy log, Ctrl-C, thinking display.

The session is driven in-process with a tiny random Qwen3 whose end-of-turn tokens are
suppressed, so every reply runs to max_new_tokens (or until it is interrupted).  One slow
test runs the real `psyassist chat` on a pseudo-terminal and presses Ctrl-C mid-reply.
"""

from __future__ import annotations

import io
import json
import os
import pty
import select
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from psyassist.errors import PsyassistError
from psyassist.infer.chat import ChatOptions, ChatSession, ThinkSplitter
from psyassist.infer.engine import Generation, load, split_think
from psyassist.safety.crisis import detect
from psyassist.safety.resources import resources_for
from tiny_tokenizer import tiny_tokenizer

CRISIS = "I want to kill myself tonight, I have the pills ready."


@pytest.fixture(scope="module")
def endless_model_dir(tmp_path_factory) -> Path:
    """Tiny random Qwen3 that never emits a special token: every reply has exactly max_new_tokens tokens.

    A random model often ends at once, and with the default std 0.02 embeddings its greedy
    reply is one whitespace token repeated; std 0.2 gives varied, prompt-dependent text.
    """
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    d = tmp_path_factory.mktemp("chat") / "model"
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=64, head_dim=8, tie_word_embeddings=True,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, initializer_range=0.2)
    Qwen3ForCausalLM(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    GenerationConfig(suppress_tokens=tok.all_special_ids).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def loaded(endless_model_dir):
    return load(str(endless_model_dir))


def _session(loaded, **kw) -> tuple[ChatSession, io.StringIO]:
    buf = io.StringIO()
    kw.setdefault("sampling_overrides", {"max_new_tokens": 4})
    kw.setdefault("seed", 0)
    con = Console(file=buf, force_terminal=True, color_system="standard", width=120)
    return ChatSession(loaded, ChatOptions(**kw), console=con), buf


# --- pieces ------------------------------------------------------------------------------------


def test_think_splitter_holds_back_a_tag_cut_across_chunks():
    sp = ThinkSplitter()
    pieces = sp.feed("<thi") + sp.feed("nk>\nweigh the options</th") + sp.feed("ink>\n\nHello") + sp.feed(
        " there", final=True)
    thinking = "".join(t for t, th in pieces if th)
    answer = "".join(t for t, th in pieces if not th)
    assert thinking == "\nweigh the options" and answer == "\n\nHello there"


def test_think_splitter_passes_a_lone_less_than_sign_at_the_end():
    sp = ThinkSplitter()
    assert sp.feed("a <") == [("a ", False)]
    assert sp.feed("b", final=True) == [("<b", False)]


@pytest.mark.parametrize("text,expected", [
    ("<think>\nplan\n</think>\n\nanswer", ("plan", "answer")),
    ("<think>\n\n</think>\n\nanswer", ("", "answer")),
    ("no tags here", (None, "no tags here")),
    ("<think>cut by the limit", ("cut by the limit", "")),
])
def test_split_think(text, expected):
    assert split_think(text) == expected


def test_greedy_is_refused_unless_allowed():
    with pytest.raises(PsyassistError, match="allow-greedy"):
        ChatOptions(sampling_overrides={"temperature": 0})
    ChatOptions(sampling_overrides={"temperature": 0, "allow_greedy": True})


def test_privacy_needs_a_log_path():
    with pytest.raises(PsyassistError, match="--safety-log"):
        ChatOptions(privacy=True)


# --- the session -------------------------------------------------------------------------------


def test_history_window_keeps_the_last_n_exchanges(loaded):
    s, _ = _session(loaded, history_turns=2, system_prompt="You are a warm counselor.")
    for i in range(4):
        gen = s.send(f"message {i}")
        assert gen.new_tokens == 4 and gen.finish == "length"
    assert [m["content"] for m in s.history if m["role"] == "user"] == [f"message {i}" for i in range(4)]
    msgs, prompt, dropped = s.window("message 4")
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert [m["content"] for m in msgs if m["role"] == "user"] == ["message 2", "message 3", "message 4"]
    assert dropped == 0 and prompt == loaded.renderer.inference_prompt(msgs)
    assert "message 1" not in prompt and prompt.startswith("<|im_start|>system\nYou are a warm counselor.")
    s0, _ = _session(loaded, history_turns=0)
    s0.send("first")
    assert [m["content"] for m in s0.window("second")[0]] == ["second"]


def test_old_exchanges_are_dropped_to_fit_the_context(loaded):
    s, _ = _session(loaded, history_turns=8)
    for i in range(3):
        s.send(f"exchange number {i}")
    full = len(loaded.tok(s.window("now")[1], add_special_tokens=False)["input_ids"])
    s.context = full + 4 - 1  # one token short for the whole window plus max_new_tokens=4
    msgs, _, dropped = s.window("now")
    assert dropped >= 1 and msgs[0]["content"] != "exchange number 0" and msgs[-1]["content"] == "now"
    s.context = 5
    with pytest.raises(PsyassistError, match="does not fit"):
        s.window("now")


def test_slash_commands(loaded, tmp_path):
    s, buf = _session(loaded, sampling_overrides={"max_new_tokens": 3, "top_k": 5})
    s.handle("hello")
    assert len(s.history) == 2
    assert s.handle("/system Be brief.") and s.system == "Be brief."
    s.handle("/system clear")
    assert s.system is None
    s.handle("/think on")
    assert s.loaded.thinking is True
    assert (s.sampling.temperature, s.sampling.top_p) == (0.6, 0.95)  # the thinking mode's values
    assert (s.sampling.top_k, s.sampling.max_new_tokens) == (5, 3)  # the command line's stay
    s.handle("/think off")
    assert s.loaded.thinking is False and s.sampling.temperature == 0.7
    s.handle("/think maybe")
    assert "usage: /think on|off" in buf.getvalue()
    s.handle("/reset")
    assert s.history == []
    s.handle("/nope")
    assert "unknown command /nope" in buf.getvalue()
    s.handle("//etc/hosts is a file")
    assert s.history[0] == {"role": "user", "content": "/etc/hosts is a file"}
    s.handle("/help")
    assert "/save FILE" in buf.getvalue()
    assert s.handle("/quit") is False


def test_save_and_load_round_trip(loaded, tmp_path):
    s, _ = _session(loaded, system_prompt="You are a warm counselor.")
    s.send("I can't sleep before exams.")
    s.send("My thoughts race at night.")
    path = tmp_path / "sub" / "conv.json"
    s.handle(f"/save {path}")
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["messages"][0] == {"role": "system", "content": "You are a warm counselor."}
    assert saved["messages"][1:] == s.history and saved["meta"]["sampling"]["max_new_tokens"] == 4
    assert not list(path.parent.glob(".*tmp"))  # atomic write left no temporary file

    t, _ = _session(loaded)
    t.handle(f"/load {path}")
    assert t.system == "You are a warm counselor." and t.history == s.history
    assert t.window("next")[0] == s.window("next")[0]


def test_load_of_a_bad_file_names_file_and_field_and_the_session_goes_on(loaded, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"id": "x", "messages": [{"role": "bot", "content": "hi"}]}), encoding="utf-8")
    s, buf = _session(loaded)
    assert s.handle(f"/load {bad}") is True
    out = buf.getvalue()
    assert "bad.json" in out and "messages[0].role" in out and "Traceback" not in out
    assert s.handle(f"/load {tmp_path / 'missing.json'}") is True
    assert "missing.json" in buf.getvalue() and s.history == []


def test_crisis_message_shows_the_panel_with_resources_and_still_gets_a_reply(loaded):
    s, buf = _session(loaded, region="cn")
    s.send("I feel a bit tired today.")
    assert "possible crisis" not in buf.getvalue()
    s.send(CRISIS)
    out = buf.getvalue()
    assert "URGENT: possible crisis" in out
    for r in resources_for("cn"):
        assert r.name.split()[0] in out
    assert out.index("URGENT") < out.rindex("assistant:")  # the panel comes before the reply
    assert s.history[-1]["role"] == "assistant" and s.history[-1]["content"]
    assert [d.level for d in s.flagged] == ["urgent"]


def _prompts(s: ChatSession, monkeypatch) -> list[str]:
    """The prompt of every reply the session generates, as the model receives it."""
    seen, real = [], s._generate

    def spy(prompt, streamer):
        seen.append(prompt)
        return real(prompt, streamer)

    monkeypatch.setattr(s, "_generate", spy)
    return seen


def test_a_flagged_turn_gives_the_model_the_crisis_guidance_for_that_turn_only(loaded, monkeypatch, tmp_path):
    log = tmp_path / "events.jsonl"
    s, buf = _session(loaded, region="us", system_prompt="You are a warm counselor.", safety_log=log)
    prompts = _prompts(s, monkeypatch)
    s.send("I feel a bit tired today.")
    s.send(CRISIS)
    s.send("Thanks for listening.")
    calm, crisis, after = prompts
    assert "Ask directly whether they are safe right now" not in calm + after  # that turn only
    assert "Ask directly whether they are safe right now" in crisis and "988" in crisis
    assert crisis.index("You are a warm counselor.") < crisis.index("Safety instruction") < crisis.index(CRISIS)
    assert s.last_guidance == "" and s.guided_turns == [2]
    assert all("Safety instruction" not in m["content"] for m in s.history)  # never kept in the conversation
    assert "crisis guidance added to the model's instructions" in buf.getvalue()
    assert json.loads(log.read_text(encoding="utf-8"))["guidance"] is True
    s.cmd_save(str(tmp_path / "c.json"))
    assert json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))["meta"]["crisis_guidance_turns"] == [2]


def test_a_guidance_that_does_not_fit_the_context_is_left_out_not_the_reply(loaded, monkeypatch):
    s, _ = _session(loaded)
    n = len(loaded.tok(s.window(CRISIS)[1], add_special_tokens=False)["input_ids"])
    s.context = n + s.sampling.max_new_tokens + 2  # the message fits, message + instruction do not
    prompts = _prompts(s, monkeypatch)
    gen = s.send(CRISIS)
    assert gen.new_tokens == 4 and "Safety instruction" not in prompts[0] and s.guided_turns == []


def test_crisis_guidance_off_switch(loaded, monkeypatch, cli, endless_model_dir):
    s, buf = _session(loaded, crisis_guidance=False)
    prompts = _prompts(s, monkeypatch)
    s.send(CRISIS)
    assert "URGENT: possible crisis" in buf.getvalue()  # the panel still shows
    assert "Safety instruction" not in prompts[0] and s.guided_turns == []
    monkeypatch.setattr(sys, "stdin", io.StringIO(CRISIS + "\n/quit\n"))
    code, out, err = cli(["chat", "--model", endless_model_dir, "--max-new-tokens", "2", "--no-crisis-guidance"])
    assert code == 0, err
    assert "crisis guidance off" in out and "URGENT" in out and "crisis guidance added" not in out


def test_privacy_log_has_no_text(loaded, tmp_path):
    log = tmp_path / "events.jsonl"
    s, _ = _session(loaded, safety_log=log, privacy=True)
    s.send("Hello, how are you?")
    s.send(CRISIS)
    events = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines()]
    assert len(events) == 1 and events[0]["level"] == "urgent" and events[0]["turn"] == 2
    assert events[0]["evidence"] and all("text" not in e for e in events[0]["evidence"])
    raw = log.read_text(encoding="utf-8")
    assert CRISIS not in raw and "tonight" not in raw
    assert all(e.text not in raw for e in detect(CRISIS).evidence)  # the matched words ("kill myself", ...)

    open_log = tmp_path / "open.jsonl"
    s2, _ = _session(loaded, safety_log=open_log)
    s2.send(CRISIS)
    assert json.loads(open_log.read_text(encoding="utf-8"))["text"] == CRISIS


def test_sigint_during_a_reply_stops_that_reply_only(loaded):
    s, buf = _session(loaded, sampling_overrides={"max_new_tokens": 5000})
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.perf_counter()
    gen = s.send("tell me a long story")
    timer.join()
    assert gen.finish == "interrupted" and 0 < gen.new_tokens < 5000
    assert time.perf_counter() - t0 < 30
    assert s.history[-1]["content"] == gen.text  # what was shown stays in the history
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C at the prompt exits again
    assert "stopped" in buf.getvalue()


def test_think_content_is_dimmed_and_never_stored(loaded, monkeypatch):
    import psyassist.infer.chat as chat_mod

    def scripted(loaded_, prompts, sampling, *, streamer=None, stop=None):
        text = "<think>\nweigh it</think>\n\nThat sounds hard."
        for chunk in ("<think>\nwei", "gh it</th", "ink>\n\nThat sounds hard."):
            streamer.on_finalized_text(chunk)
        streamer.on_finalized_text("", stream_end=True)
        return [Generation(text, 9, 5, "stop", 0.1)]

    monkeypatch.setattr(chat_mod, "generate", scripted)
    s, buf = _session(loaded, thinking=True)
    s.send("hi")
    out = buf.getvalue()
    assert "\x1b[2;3mwei" in out  # dim italic
    assert "That sounds hard." in out and "\x1b[2;3mThat" not in out
    assert s.history[-1] == {"role": "assistant", "content": "That sounds hard."}


def test_run_reads_until_eof_and_ctrl_c_at_the_prompt_exits(loaded):
    s, buf = _session(loaded)
    lines = iter(["hello", "/system Be kind."])

    def read(prompt):
        try:
            return next(lines)
        except StopIteration:
            raise KeyboardInterrupt from None

    s.run(read)
    assert len(s.history) == 2 and s.system == "Be kind." and "bye" in buf.getvalue()


# --- the command ----------------------------------------------------------------------------------


def test_cli_chat_with_piped_input(cli, endless_model_dir, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"hello\n/save {tmp_path / 'c.json'}\n/quit\n"))
    code, out, err = cli(["chat", "--model", endless_model_dir, "--max-new-tokens", "3", "--seed", "1"])
    assert code == 0, err
    assert "assistant:" in out and "(3 tokens" in out
    assert len(json.loads((tmp_path / "c.json").read_text())["messages"]) == 2


@pytest.mark.parametrize("args,message", [
    ([], "give --model M"),
    (["--model", "x", "--merged", "y"], "give --model M"),
    (["--model", "x", "--temperature", "0"], "allow-greedy"),
    (["--model", "x", "--privacy"], "--safety-log"),
    (["--model", "x", "--system-prompt", "a", "--system-prompt-file", "f"], "not both"),
])
def test_cli_chat_refuses_bad_options_with_one_message(cli, args, message):
    code, out, err = cli(["chat", *args])
    assert code == 2 and message in err and "Traceback" not in out + err


# --- the real terminal --------------------------------------------------------------------------


def _read_until(fd: int, needle: str, timeout: float, seen: list[str], start: int = 0) -> int:
    """Read the terminal until `needle` appears at or after `start`; its position."""
    end = time.monotonic() + timeout
    while (k := seen[0].find(needle, start)) < 0 and time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                seen[0] += os.read(fd, 65536).decode("utf-8", "replace")
            except OSError:  # the child closed the terminal
                break
    if k < 0:
        raise AssertionError(f"{needle!r} did not appear within {timeout} s; terminal so far:\n{seen[0][-2000:]}")
    return k


@pytest.mark.slow
def test_real_terminal_ctrl_c_stops_the_reply_and_the_prompt_comes_back(endless_model_dir):
    env = {**os.environ, "COLUMNS": "120", "PSYASSIST_NO_PROGRESS": "1"}
    argv = [sys.executable, "-m", "psyassist", "chat", "--model", str(endless_model_dir), "--max-new-tokens",
            "30000", "--seed", "0"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its controlling terminal, so ^C becomes SIGINT
        os.execvpe(argv[0], argv, env)
    seen = [""]
    try:
        _read_until(fd, "you> ", 120, seen)
        os.write(fd, b"please tell me a very long story\r")
        at = _read_until(fd, "assistant:", 30, seen)
        deadline = time.monotonic() + 30
        while len(seen[0]) - at < 60 and time.monotonic() < deadline:  # wait until the reply streams
            if select.select([fd], [], [], 0.2)[0]:
                seen[0] += os.read(fd, 65536).decode("utf-8", "replace")
        assert len(seen[0]) - at >= 60, f"no streamed reply:\n{seen[0][-1000:]}"
        os.write(fd, b"\x03")  # Ctrl-C, turned into SIGINT by the terminal
        stopped = _read_until(fd, "stopped)", 30, seen, at)
        _read_until(fd, "you> ", 30, seen, stopped)  # the prompt is back: the session survived
        os.write(fd, b"/quit\r")
        _read_until(fd, "bye", 30, seen, stopped)
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.waitstatus_to_exitcode(status) == 0, seen[0][-1000:]
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
