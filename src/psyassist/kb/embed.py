"""Embedders: a local sentence-transformers directory (the packaged MiniLM by default) or an
OpenAI-compatible /v1/embeddings endpoint. Vectors are float32 and L2-normalized (dot = cosine).

    python -c "from psyassist.kb.embed import load_embedder; e = load_embedder('default'); print(e.name, e.encode(['hi']).shape)"

An embedder also counts tokens with its own tokenizer, so chunks are sized for the model that
embeds them. An endpoint has no tokenizer here: pass `tokenizer=` a local tokenizer directory, else
tokens are estimated (1 per CJK character, 1.3 per word) and the chunk sizes are approximate.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from psyassist.errors import PsyassistError
from psyassist.optional import require


def _normalize(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(n, 1e-12)


class SentenceTransformerEmbedder:
    """A local sentence-transformers model directory; nothing is downloaded."""

    def __init__(self, path: str, *, name: str | None = None, languages: tuple[str, ...] | None = None,
                 device: str = "cpu", batch_size: int = 32):
        if not Path(path).is_dir():
            raise PsyassistError(f"embedding model {path} is not a local directory; nothing is downloaded. "
                                 "Use 'default' (the packaged all-MiniLM-L6-v2) or a sentence-transformers "
                                 "directory.")
        st = require("sentence_transformers", "dense retrieval in the knowledge library")
        self.model = st.SentenceTransformer(path, device=device)
        self.batch_size = batch_size
        self.name = name or f"st:{Path(path).name}"
        self.dim = int(self.encode(["dimension probe"]).shape[1])  # the one call every version has
        self.max_tokens = int(self.model.max_seq_length)
        self.languages = languages  # None: any language; hybrid search leaves dense out for the others

    def count_tokens(self, texts: list[str]) -> list[int]:
        enc = self.model.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        return [len(x) for x in enc]

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        v = self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                              convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(v, dtype=np.float32)


def estimate_tokens(texts: list[str]) -> list[int]:
    """Tokens without a tokenizer: each CJK character ~1 token, each other word ~1.3 tokens."""
    out = []
    for t in texts:
        cjk = len(re.findall(r"[\u3400-\u9fff\uf900-\ufaff]", t))
        words = len(re.findall(r"[^\s\u3400-\u9fff\uf900-\ufaff]+", t))
        out.append(cjk + int(1.3 * words + 0.5))
    return out


class OpenAIEmbedder:
    """POST {url}/embeddings with {"model", "input"}; the key from $OPENAI_API_KEY if set."""

    def __init__(self, url: str, model: str, *, tokenizer: str | None = None, batch_size: int = 64,
                 timeout: float = 60.0):
        self.url = url.rstrip("/") + ("" if url.rstrip("/").endswith("/embeddings") else "/embeddings")
        self.model, self.batch_size, self.timeout = model, batch_size, timeout
        self.name = f"openai:{model}"
        self.languages = None
        self.max_tokens = 512
        self._tok = None
        if tokenizer:
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(tokenizer)
        self.dim = int(self.encode(["dimension probe"]).shape[1])

    def count_tokens(self, texts: list[str]) -> list[int]:
        if self._tok is None:
            return estimate_tokens(texts)
        return [len(x) for x in self._tok(list(texts), add_special_tokens=False)["input_ids"]]

    def encode(self, texts: list[str]) -> np.ndarray:
        rows = []
        for i in range(0, len(texts), self.batch_size):
            rows += self._post(list(texts[i:i + self.batch_size]))
        return _normalize(np.array(rows, dtype=np.float32).reshape(len(rows), -1))

    def _post(self, batch: list[str]) -> list[list[float]]:
        headers = {"Content-Type": "application/json"}
        if os.environ.get("OPENAI_API_KEY"):
            headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY']}"
        req = urllib.request.Request(self.url, json.dumps({"model": self.model, "input": batch}).encode(),
                                     headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            raise PsyassistError(f"embeddings endpoint {self.url} answered {e.code}: "
                                 f"{e.read()[:300].decode(errors='replace')}") from e
        except (urllib.error.URLError, OSError, json.JSONDecodeError) as e:
            raise PsyassistError(f"embeddings endpoint {self.url} could not be used: {e}") from e
        data = sorted(body.get("data", []), key=lambda d: d.get("index", 0))
        if len(data) != len(batch):
            raise PsyassistError(f"embeddings endpoint {self.url} returned {len(data)} vectors for "
                                 f"{len(batch)} inputs")
        return [d["embedding"] for d in data]


def load_embedder(model: str = "default", *, url: str | None = None, tokenizer: str | None = None):
    """'default' → the packaged all-MiniLM-L6-v2; a directory → that model; with `url` → the endpoint's `model`."""
    if url:
        return OpenAIEmbedder(url, model, tokenizer=tokenizer)
    if model == "default":
        from psyassist.eval.metrics import default_embed_model

        # all-MiniLM-L6-v2 was trained on English pairs only: on Chinese its vectors rank close to chance
        # (benchmarks/kb_retrieval.py), so hybrid search uses BM25 alone for Chinese queries.
        return SentenceTransformerEmbedder(default_embed_model(), name="st:all-MiniLM-L6-v2", languages=("en",))
    return SentenceTransformerEmbedder(model)
