"""Embedders: a local sentence-transformers directory (the packaged MiniLM by default), an
OpenAI-compatible /v1/embeddings endpoint, or one model per language ("en=default;zh=DIR"). Vectors are
float32 and L2-normalized (dot = cosine).

    python -c "from psyassist.kb.embed import load_embedder; e = load_embedder('default'); print(e.name, e.encode(['hi']).shape)"

A directory written by `psyassist kb train-embedder` carries psyassist_embedder.json: the languages it
was trained for (hybrid search leaves it out of other languages' queries), the fusion chosen on its
held-out dialogues, and the cosine an unrelated passage reaches (the app's floor for dense-only hits).

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
        # a static (embedding-bag) model has no length limit: sentence-transformers reports inf
        limit = self.model.max_seq_length
        self.max_tokens = int(limit) if limit is not None and limit != float("inf") else 1_000_000
        meta = _meta(Path(path))
        if languages is None and meta.get("languages"):
            languages = tuple(meta["languages"])
        self.languages = languages  # None: any language; hybrid search leaves dense out for the others
        langs = languages or ()
        # per language: the fusion chosen on the model's held-out dialogues, and the cosine an unrelated
        # passage reaches there (kb.train_embedder); empty for any other model (the Searcher's defaults apply)
        self.fusion = {lang: meta["fusion"] for lang in langs if meta.get("fusion")}
        self.min_similarity = {lang: meta["min_similarity"] for lang in langs if meta.get("min_similarity")}

    def count_tokens(self, texts: list[str]) -> list[int]:
        tok = self.model.tokenizer
        if hasattr(tok, "encode_batch"):  # a static model carries a bare `tokenizers.Tokenizer`
            return [len(e.ids) for e in tok.encode_batch(list(texts), add_special_tokens=False)]
        enc = tok(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        return [len(x) for x in enc]

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        v = self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                              convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(v, dtype=np.float32)


def _meta(path: Path) -> dict:
    from psyassist.kb.train_embedder import META_FILE

    f = path / META_FILE
    if not f.is_file():
        return {}
    try:
        meta = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise PsyassistError(f"{f}: not readable JSON ({e}); retrain with psyassist kb train-embedder") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("languages", []), list):
        raise PsyassistError(f"{f}: expected an object whose 'languages' is a list, got {str(meta)[:100]}")
    return meta


class RoutedEmbedder:
    """One model per language, in one index: a text is embedded by its language's model (query_language)
    into that model's slot of the vector, the other slots zero. Dot products are therefore the cosine of
    the language's own model for two texts of that language and 0 across languages (none of the offline
    models is cross-lingual anyway), so one index serves an English and a Chinese model together.

        load_embedder("en=default;zh=models/zh-static")
    """

    def __init__(self, parts: dict[str, object]):
        if len(parts) < 2:
            raise PsyassistError("a routed embedder needs two or more languages, e.g. 'en=default;zh=DIR'")
        self.parts = parts
        self.name = "routed:" + ";".join(f"{lang}={e.name}" for lang, e in parts.items())
        self.languages = tuple(parts)
        self.max_tokens = min(e.max_tokens for e in parts.values())
        self._slots, start = {}, 0
        for lang, e in parts.items():
            self._slots[lang] = (start, start + e.dim)
            start += e.dim
        self.dim = start
        self.fusion = {lang: e.fusion[lang] for lang, e in parts.items() if lang in getattr(e, "fusion", {})}
        self.min_similarity = {lang: e.min_similarity[lang] for lang, e in parts.items()
                               if lang in getattr(e, "min_similarity", {})}

    def _route(self, texts: list[str]) -> dict[str, list[int]]:
        from psyassist.kb.search import query_language

        first = next(iter(self.parts))
        groups: dict[str, list[int]] = {}
        for i, t in enumerate(texts):
            lang = query_language(t)
            groups.setdefault(lang if lang in self.parts else first, []).append(i)
        return groups

    def count_tokens(self, texts: list[str]) -> list[int]:
        out = [0] * len(texts)
        for lang, idx in self._route(list(texts)).items():
            for i, n in zip(idx, self.parts[lang].count_tokens([texts[i] for i in idx]), strict=True):
                out[i] = n
        return out

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for lang, idx in self._route(list(texts)).items():
            a, b = self._slots[lang]
            out[idx, a:b] = self.parts[lang].encode([texts[i] for i in idx])
        return out


def parse_routes(spec: str) -> dict[str, str] | None:
    """'en=default;zh=DIR' → {'en': 'default', 'zh': 'DIR'}; None for a single model's spec."""
    if "=" not in spec or not re.match(r"^\s*[a-z]{2}\s*=", spec):
        return None
    routes: dict[str, str] = {}
    for part in (p.strip() for p in spec.split(";") if p.strip()):
        lang, sep, model = part.partition("=")
        lang, model = lang.strip(), model.strip()
        if not sep or lang not in ("en", "zh") or not model:
            raise PsyassistError(f"embedding model {spec!r}: each part must be LANG=MODEL with LANG en or zh "
                                 f"(e.g. 'en=default;zh=models/zh-static'), got {part!r}")
        if lang in routes:
            raise PsyassistError(f"embedding model {spec!r} names {lang} twice")
        routes[lang] = model
    return routes


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


def embedder_name(model: str = "default") -> str:
    """The `name` load_embedder(model) will have, without loading it (stored vectors are matched by it)."""
    routes = parse_routes(model)
    if routes is not None:
        names = {lang: embedder_name(m) for lang, m in routes.items()}
        return next(iter(names.values())) if len(names) == 1 else "routed:" + ";".join(
            f"{lang}={n}" for lang, n in names.items())
    return "st:all-MiniLM-L6-v2" if model == "default" else f"st:{Path(model).name}"


def load_embedder(model: str = "default", *, url: str | None = None, tokenizer: str | None = None):
    """'default' → the packaged all-MiniLM-L6-v2; a directory → that model; with `url` → the endpoint's `model`;
    'en=default;zh=DIR' → each language's own model (RoutedEmbedder)."""
    if url:
        return OpenAIEmbedder(url, model, tokenizer=tokenizer)
    routes = parse_routes(model)
    if routes is not None:
        parts = {lang: load_embedder(m) for lang, m in routes.items()}
        return parts[next(iter(parts))] if len(parts) == 1 else RoutedEmbedder(parts)
    if model == "default":
        from psyassist.eval.metrics import default_embed_model

        # all-MiniLM-L6-v2 was trained on English pairs only: on Chinese its vectors rank close to chance
        # (benchmarks/kb_retrieval.py), so hybrid search uses BM25 alone for Chinese queries.
        return SentenceTransformerEmbedder(default_embed_model(), name="st:all-MiniLM-L6-v2", languages=("en",))
    return SentenceTransformerEmbedder(model)
