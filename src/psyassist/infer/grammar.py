r"""JSON-schema constrained decoding with xgrammar: a token mask at every step, so a reply always parses.

    python -c "from psyassist.infer.engine import load; from psyassist.infer.grammar import JsonCompiler; m = load('default'); s = JsonCompiler(m.tok, vocab_size=m.model.config.vocab_size, stop_ids=m.stop_ids).compile({'type': 'object', 'properties': {'mood': {'enum': ['calm', 'sad']}}, 'required': ['mood']}).start(); print([s.accept(t) for t in m.tok.encode('{\"mood\": \"sad\"}')], s.accept(m.stop_ids[0]), s.done)"

Three objects, from the longest-lived to the shortest:
- `JsonCompiler`: one per tokenizer.  Holds xgrammar's TokenizerInfo (built once: ~0.1 s for
  SmolLM2's 49k tokens) and an LRU cache of compiled schemas keyed by the schema's compact JSON.
- `JsonConstraint`: one compiled schema, shared by every request that sends it (read-only).
- `JsonState`: one per generated row: `fill(logits)` sets every token the grammar forbids next
  to -inf (in place, CPU or GPU), `accept(token)` advances it, `done` says it took a stop token.

The grammar is compact JSON (`any_whitespace=False`: no newlines or indentation, ", " and ": "
as separators — the same as vLLM's `disable_any_whitespace`): fewer tokens for a small model
and no room to ramble in whitespace.  After the closing brace only the stop tokens given to
JsonCompiler are allowed, so a finished reply ends on the model's own end-of-turn token.
`schema=None` means any JSON object (OpenAI's `{"type": "json_object"}`).  xgrammar's strict
mode is on: an object schema without `additionalProperties` allows no other keys.

`json_grammar(schema)` is the grammar as EBNF text, which both backends compile (vLLM through
`StructuredOutputsParams(grammar=…)`), because xgrammar ≤ 0.2.9 needs one fix: a string with
minLength/maxLength becomes `"` [^"\\\r\n]{min,max} `"` (issue mlc-ai/xgrammar#800, open), which
lets raw control characters such as a tab into the string, and `json.loads` refuses those.  Of
200 random walks through a small schema with the tiny test tokenizer, 95 did that.  The fix
swaps that character class for JSON's own (no byte below 0x20); such strings still cannot hold
escapes (no quote, backslash or newline), as before.  xgrammar's other way to bound a length,
a `pattern` like ^[\s\S]{0,200}$, is right but costs 23 ms per token at 200 characters (11 µs
with the fix; SmolLM2 tokenizer, CPU).
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict

import torch

from psyassist.errors import PsyassistError
from psyassist.optional import require

xgr = require("xgrammar", "response_format (JSON schema constrained decoding)")
ANY_OBJECT = {"type": "object"}  # schema=None: any JSON object
_LENGTH_CHAR = r'[^\"\\\r\n]'  # how xgrammar ≤ 0.2.9 prints a length-bounded string's character class
_JSON_CHAR = r'[^\0-\x1f\"\\]'  # what JSON allows unescaped in a string (xgrammar's basic_string_sub)
_XGR_LOCATION = re.compile(r"^\[[\d:]+\] \S+:\d+: (Check failed: .*? is false: )?")  # "[02:23:23] /x.cc:5082: "


def canonical(schema: dict | None) -> str:
    """The cache key and what xgrammar compiles: compact JSON, keys in the given order.

    Not sort_keys: properties are generated in the order the schema lists them, so two schemas
    that differ only in that order are different grammars."""
    if schema is None:
        schema = ANY_OBJECT
    if not isinstance(schema, dict):
        raise PsyassistError(f"the JSON schema must be a JSON object, got {type(schema).__name__}: {schema!r:.80}")
    try:
        return json.dumps(schema, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise PsyassistError(f"the JSON schema is not JSON-serializable: {e}") from e


def json_grammar(schema: dict | None) -> str:
    """The EBNF grammar of compact JSON that fits `schema`; PsyassistError naming the problem when xgrammar cannot.

    Needs no tokenizer: the vLLM backend sends this text to vLLM."""
    try:
        grammar = xgr.Grammar.from_json_schema(canonical(schema), any_whitespace=False)
    except RuntimeError as e:  # xgrammar's errors, and RecursionError
        raise PsyassistError(f"this JSON schema cannot be compiled to a grammar: {_xgr_message(e)}") from e
    return str(grammar).replace(_LENGTH_CHAR, _JSON_CHAR)  # issue 800: a no-op once xgrammar prints it right


def _xgr_message(e: Exception) -> str:
    """xgrammar's reason without the C++ file and line it prefixes: 'Unsupported type "nope"'."""
    return _XGR_LOCATION.sub("", str(e).strip())


class JsonCompiler:
    """xgrammar's view of one tokenizer plus an LRU cache of compiled schemas; thread-safe."""

    def __init__(self, tok, *, vocab_size: int, stop_ids: list[int], cache_size: int = 64):
        # vocab_size = the model's (its logits' width): ids past len(tok) are padding and always masked.
        self.info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=vocab_size, stop_token_ids=list(stop_ids))
        self.vocab_size = vocab_size
        # xgrammar's own cache keeps every grammar forever; ours is bounded (a schema compiles in ~ms).
        self.compiler = xgr.GrammarCompiler(self.info, max_threads=2, cache_enabled=False)
        self.cache: OrderedDict[str, JsonConstraint] = OrderedDict()
        self.cache_size = cache_size
        self.lock = threading.Lock()
        self.compiles = 0

    def compile(self, schema: dict | None) -> JsonConstraint:
        """The constraint for `schema` (None = any JSON object), from the cache when it was compiled before."""
        key = canonical(schema)
        with self.lock:
            if key in self.cache:
                self.cache.move_to_end(key)
                return self.cache[key]
        # Outside the lock: a slow schema does not hold up others (two threads may compile one twice).
        compiled = self.compiler.compile_grammar(json_grammar(schema))
        constraint = JsonConstraint(key, compiled, self.vocab_size)
        with self.lock:
            self.compiles += 1
            self.cache[key] = constraint
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        return constraint


class JsonConstraint:
    """One compiled schema; `start()` gives a fresh matcher for each row that uses it."""

    def __init__(self, key: str, compiled, vocab_size: int):
        self.key, self.compiled, self.vocab_size = key, compiled, vocab_size  # key: the schema's canonical JSON

    def start(self) -> JsonState:
        return JsonState(self)

    def __repr__(self) -> str:
        return f"JsonConstraint({self.key[:60]}{'…' if len(self.key) > 60 else ''})"


class JsonState:
    """The grammar's position in one row's reply."""

    def __init__(self, constraint: JsonConstraint):
        self.matcher = xgr.GrammarMatcher(constraint.compiled)
        self.bitmask = xgr.allocate_token_bitmask(1, constraint.vocab_size)  # int32 [1, ceil(V/32)], CPU

    def fill(self, logits: torch.Tensor) -> None:
        """Set the logits of every token the grammar forbids next to -inf, in place ([vocab] float, any device)."""
        self.matcher.fill_next_token_bitmask(self.bitmask)
        xgr.apply_token_bitmask_inplace(logits.unsqueeze(0), self.bitmask.to(logits.device, non_blocking=True))

    def accept(self, token_id: int) -> bool:
        """Advance by one sampled token; False (and no change) when the grammar does not allow it."""
        return self.matcher.accept_token(int(token_id))

    @property
    def done(self) -> bool:
        """The JSON is complete and a stop token was accepted: the row takes no more tokens."""
        return self.matcher.is_terminated()
