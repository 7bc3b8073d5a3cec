"""psyassist serve --embed-model: /v1/embeddings for the knowledge library, talked to with the official
`openai` client and with the library's own endpoint embedder.

    pytest tests/test_serve_embeddings.py

The chat model is not needed here (a stand-in backend with the real Qwen3 tokenizer); the embedding
model is the real packaged all-MiniLM-L6-v2, and the server is real uvicorn on loopback.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
pytest.importorskip("sentence_transformers")

from psyassist.serve.app import ServeConfig  # noqa: E402
from test_serve import Server  # noqa: E402 — the same uvicorn-in-a-thread server

KEY = "emb-key"
TEXTS = ["I can't sleep before my exams.", "Insomnia the night before an exam.", "Quarterly stock market returns."]


class NoChatModel:
    """What create_app needs of a backend when only embeddings are asked for."""

    base_name = "default"

    def __init__(self, tok):
        self.tok = tok

    def adapters(self) -> dict:
        return {}

    def health(self) -> dict:
        return {}

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def embedder():
    from psyassist.kb.embed import load_embedder

    return load_embedder("default")


@pytest.fixture(scope="module")
def backend(qwen3_tokenizer_dir):
    from psyassist.render import load_tokenizer

    return NoChatModel(load_tokenizer(str(qwen3_tokenizer_dir)))


@pytest.fixture(scope="module")
def server(backend, embedder):
    s = Server(ServeConfig(api_keys=[KEY], embed_model="default"), backend, embedder)
    yield s
    s.stop()


def _post(server, body: dict, key: str | None = KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(server.url + "/v1/embeddings", json=body, headers=headers, timeout=60)


def test_the_openai_client_gets_the_same_vectors_as_the_local_model(server, embedder):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)
    r = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS)  # the client asks for base64 and decodes it
    got = np.array([d.embedding for d in sorted(r.data, key=lambda d: d.index)], dtype=np.float32)
    assert got.shape == (3, 384) and r.model == "all-MiniLM-L6-v2"
    np.testing.assert_allclose(got, embedder.encode(TEXTS), atol=1e-6)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert got[0] @ got[1] > got[0] @ got[2] + 0.2  # the two sleep sentences are the close pair
    assert r.usage.prompt_tokens == sum(embedder.count_tokens(TEXTS)) > 0
    assert "all-MiniLM-L6-v2" in [m.id for m in client.models.list().data]


def test_float_encoding_and_a_single_string(server, embedder):
    r = _post(server, {"model": "all-MiniLM-L6-v2", "input": TEXTS[0], "encoding_format": "float"})
    assert r.status_code == 200, r.text
    (row,) = r.json()["data"]
    assert row["index"] == 0 and isinstance(row["embedding"][0], float)
    np.testing.assert_allclose(row["embedding"], embedder.encode(TEXTS[:1])[0], atol=1e-6)


@pytest.mark.parametrize("body,status,says", [
    ({"model": "text-embedding-3-small", "input": "x"}, 404, "is 'all-MiniLM-L6-v2', not 'text-embedding-3-small'"),
    ({"model": "all-MiniLM-L6-v2", "input": ["fine", "  "]}, 400, "input[1] is empty"),
    ({"model": "all-MiniLM-L6-v2", "input": []}, 400, "non-empty string or list of strings"),
    ({"model": "all-MiniLM-L6-v2", "input": [101, 2023]}, 400, "token arrays are not accepted"),
    ({"model": "all-MiniLM-L6-v2", "input": "x", "dimensions": 64}, 400, "384 dimensions"),
    ({"model": "all-MiniLM-L6-v2", "input": "x", "encoding_format": "int8"}, 400, "float or base64"),
    ({"model": "all-MiniLM-L6-v2", "input": ["short", "word " * 600]}, 400, "input[1] is"),
    ({"model": "all-MiniLM-L6-v2", "input": ["x"] * 2049}, 400, "at most 2048 inputs"),
])
def test_bad_requests_say_what_is_wrong(server, body, status, says):
    r = _post(server, body)
    assert r.status_code == status, r.text
    assert says in r.json()["error"]["message"]


def test_a_too_long_input_is_refused_not_silently_truncated(server, embedder):
    r = _post(server, {"model": "all-MiniLM-L6-v2", "input": ["short", "word " * 600]})
    msg = r.json()["error"]["message"]
    assert f"at most {embedder.max_tokens}" in msg and r.json()["error"]["code"] == "input_too_long"


def test_the_key_is_required(server):
    assert _post(server, {"model": "all-MiniLM-L6-v2", "input": "x"}, key=None).status_code == 401
    assert _post(server, {"model": "all-MiniLM-L6-v2", "input": "x"}, key="wrong").status_code == 401


def test_without_an_embedding_model_the_route_says_how_to_turn_it_on(backend):
    s = Server(ServeConfig(), backend, None)
    try:
        r = httpx.post(s.url + "/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": "x"}, timeout=30)
        assert r.status_code == 404 and "--embed-model default" in r.json()["error"]["message"]
        assert [m["id"] for m in httpx.get(s.url + "/v1/models").json()["data"]] == ["default"]
    finally:
        s.stop()


def test_the_library_indexes_and_searches_through_the_server(server, embedder, tmp_path, monkeypatch):
    from psyassist.kb.ingest import ingest, open_searcher

    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # the library's endpoint embedder sends it as the Bearer key
    (tmp_path / "sleep.md").write_text("# Sleep hygiene\n\nKeep a fixed wake-up time and leave the bed when you "
                                       "cannot sleep.\n", encoding="utf-8")
    (tmp_path / "money.md").write_text("# Budgeting\n\nTrack monthly expenses in three categories.\n",
                                       encoding="utf-8")
    index = tmp_path / "lib.sqlite"
    rep = ingest([tmp_path / "sleep.md", tmp_path / "money.md"], index, embed_model="all-MiniLM-L6-v2",
                 embed_url=server.url + "/v1")
    assert len(rep.added) == 2 and not rep.skipped, rep
    hits = open_searcher(index, mode="dense").search("trouble falling asleep at night", k=2, mode="dense")
    assert [h["title"] for h in hits][0] == "Sleep hygiene", hits
