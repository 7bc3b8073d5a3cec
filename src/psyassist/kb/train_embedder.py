"""Train a small static embedding model for the knowledge library from counseling dialogues, on CPU.

    psyassist kb train-embedder ../shared/data/SMILECHAT/smilechat_messages.jsonl.gz --out models/zh-static

Why: the only embedding model that installs offline (all-MiniLM-L6-v2) read English pairs only, so on
Chinese it ranks near chance and the library's hybrid search falls back to BM25 there. Dialogues teach the
right notion of "relevant" for a counseling library: a client's words and the counselor replies that
answer them. The model is a sentence-transformers StaticEmbedding (one trained vector per token, mean-
pooled): trainable in minutes on two cores, fast at query time, loaded by every `--embed-model DIR`.

How:
1. A BPE tokenizer is trained on the dialogues' text (`vocab`, default 30,000): Chinese has no spaces, so
   the merges it learns are the corpus's frequent words and phrases (失眠, 压力很大).
2. Pairs: for each dialogue, one client turn (its opening turn half the time, another client turn
   otherwise) and one of the same dialogue's counselor replies, drawn anew every epoch.
3. Loss: in-batch contrastive (InfoNCE, both directions, scale 20): every other pair of the batch is a
   negative, so larger batches teach more (default 1,024).
4. Held out: `dev` dialogues (default 600) never trained on. On them the library's own retrieval task is
   built (query = a dialogue's opening client turn; relevant = that dialogue's counselor replies, among
   every reply of the held-out dialogues) and scored for BM25, dense and hybrid over a grid of fusion
   settings; the best hybrid setting on these dev dialogues is written into the model as its fusion for
   its languages, so `Searcher` uses it without anyone tuning on their own test data.

The output directory is a sentence-transformers model plus `psyassist_embedder.json` (languages, fusion,
the dev figures, the data's file names and sha256, the settings); it is written to a temporary directory
and renamed into place when complete.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from psyassist.errors import PsyassistError
from psyassist.optional import require

META_FILE = "psyassist_embedder.json"
FUSION_WEIGHTS = (0.5, 1.0, 2.0, 3.0, 6.0)
FUSION_KS = (20, 60)
MAX_TOKENS = 256  # tokens per text in training; a mean over more adds little and costs time


@dataclass
class TrainSettings:
    vocab: int = 30_000
    dim: int = 256
    epochs: int = 8
    batch: int = 1024
    lr: float = 0.05
    dev: int = 600  # held-out dialogues (the fusion is chosen on them)
    seed: int = 0
    languages: tuple[str, ...] = ("zh",)
    max_dialogues: int | None = None
    threads: int = 0  # 0: leave torch's default


@dataclass
class TrainReport:
    out: str
    dialogues: int
    pairs_per_epoch: int
    dev_dialogues: int
    vocab: int
    dim: int
    losses: list[float]
    dev: dict
    fusion: dict
    seconds: float
    files: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def dialogue_turns(conversations) -> list[tuple[list[str], list[str]]]:
    """(client turns, counselor replies) of each dialogue that has both; empty turns dropped."""
    out = []
    for c in conversations:
        users = [m.content.strip() for m in c.messages if m.role == "user" and m.content.strip()]
        replies = [m.content.strip() for m in c.messages if m.role == "assistant" and m.content.strip()]
        if users and replies:
            out.append((users, replies))
    return out


def train_tokenizer(texts: Callable[[], object], vocab: int):
    """A BPE tokenizer over NFKC-normalized, lower-cased text; whitespace and punctuation split, Chinese
    runs are left whole for the merges to cut."""
    tk = require("tokenizers", "training a library embedder")
    tok = tk.Tokenizer(tk.models.BPE(unk_token="[UNK]"))
    tok.normalizer = tk.normalizers.Sequence([tk.normalizers.NFKC(), tk.normalizers.Lowercase()])
    tok.pre_tokenizer = tk.pre_tokenizers.Sequence([tk.pre_tokenizers.Whitespace(),
                                                   tk.pre_tokenizers.Digits(individual_digits=False)])
    trainer = tk.trainers.BpeTrainer(vocab_size=vocab, special_tokens=["[PAD]", "[UNK]"], limit_alphabet=8000,
                                     show_progress=False)
    tok.train_from_iterator(texts(), trainer)
    return tok


def train_embedder(sources: Sequence[str | Path], out: str | Path, settings: TrainSettings | None = None, *,
                   fmt: str = "auto", skip_invalid: bool = False,
                   log: Callable[[str], None] = lambda s: None) -> TrainReport:
    """Read dialogues (any format `psyassist data` reads), train, choose the fusion on held-out dialogues,
    write the model directory atomically. Raises PsyassistError when there is too little to train on."""
    from psyassist.data.io import atomic_dir
    from psyassist.data.readers import expand_sources, read_conversations
    from psyassist.kb.ingest import sha256_file

    s = settings or TrainSettings()
    if s.vocab < 100 or s.dim < 8 or s.epochs < 1 or s.batch < 2 or s.dev < 0:
        raise PsyassistError(f"vocab ≥ 100, dim ≥ 8, epochs ≥ 1, batch ≥ 2, dev ≥ 0 expected; got {s}")
    torch = require("torch", "training a library embedder")
    if s.threads:
        torch.set_num_threads(s.threads)
    t_start = time.time()
    read = read_conversations(sources, skip_invalid=skip_invalid, show_progress=False,
                              **({} if fmt == "auto" else {"fmt": fmt}))
    dialogues = dialogue_turns(read.conversations)
    rng = random.Random(s.seed)
    rng.shuffle(dialogues)
    if s.max_dialogues:
        dialogues = dialogues[: s.max_dialogues]
    n_dev = min(s.dev, len(dialogues) // 5)
    dev, train = dialogues[:n_dev], dialogues[n_dev:]
    if len(train) < 50:
        raise PsyassistError(f"{len(train)} dialogues with both a client turn and a counselor reply left to train "
                             f"on (after {n_dev} held out); at least 50 are needed, and thousands to learn much.")
    log(f"{len(dialogues)} dialogues ({len(train)} train, {len(dev)} held out) from {len(read.files)} file(s)")

    tok = train_tokenizer(lambda: (t for u, a in train for t in (*u, *a)), s.vocab)
    log(f"tokenizer: {tok.get_vocab_size()} tokens ({time.time() - t_start:.0f} s)")
    cache: dict[str, list[int]] = {}

    def ids(text: str) -> list[int]:
        r = cache.get(text)
        if r is None:
            r = cache[text] = tok.encode(text, add_special_tokens=False).ids[:MAX_TOKENS] or [1]
        return r

    torch.manual_seed(s.seed)
    bag = torch.nn.EmbeddingBag(tok.get_vocab_size(), s.dim, mode="mean")
    torch.nn.init.normal_(bag.weight, std=0.1)
    opt = torch.optim.Adam(bag.parameters(), lr=s.lr)
    F = torch.nn.functional

    def encode(lists: list[list[int]]):
        flat = torch.tensor([i for x in lists for i in x])
        offsets = torch.tensor(np.cumsum([0] + [len(x) for x in lists[:-1]]))
        return F.normalize(bag(flat, offsets), dim=-1)

    batch = min(s.batch, len(train))
    losses = []
    for epoch in range(s.epochs):
        rng.shuffle(train)
        total, steps = 0.0, 0
        for i in range(0, len(train) - batch + 1, batch):
            part = train[i:i + batch]
            q = encode([ids(u[0] if rng.random() < 0.5 else rng.choice(u)) for u, _ in part])
            p = encode([ids(rng.choice(a)) for _, a in part])
            sim = 20.0 * q @ p.T
            target = torch.arange(len(part))
            loss = (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
        losses.append(round(total / steps, 4))
        log(f"epoch {epoch + 1}/{s.epochs}: loss {losses[-1]} ({time.time() - t_start:.0f} s)")

    st = require("sentence_transformers", "training a library embedder")
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding

    model = st.SentenceTransformer(modules=[StaticEmbedding(tok, embedding_weights=bag.weight.detach().numpy())],
                                   device="cpu")
    files = [{"file": p.name, "sha256": sha256_file(p)} for p in expand_sources(sources)]
    with atomic_dir(out) as tmp:
        model.save(str(tmp))
        from psyassist.kb.embed import SentenceTransformerEmbedder

        embedder = SentenceTransformerEmbedder(str(tmp), languages=tuple(s.languages))
        dev_res, fusion = choose_fusion(dev, embedder) if dev else ({}, {})
        meta = {"kind": "psyassist static embedder", "languages": list(s.languages), "fusion": fusion,
                "min_similarity": dev_res.get("unrelated_cosine_p99"),
                "dev": dev_res, "trained_on": files, "dialogues": len(train), "settings": asdict(s),
                "losses": losses, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (tmp / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        _readable(tmp)
    log(f"wrote {out}: dev MRR@10 {json.dumps(dev_res.get('mrr@10', {}))}, fusion {fusion}")
    return TrainReport(out=str(out), dialogues=len(train), pairs_per_epoch=len(train) // batch * batch,
                       dev_dialogues=len(dev), vocab=tok.get_vocab_size(), dim=s.dim, losses=losses, dev=dev_res,
                       fusion=fusion, seconds=round(time.time() - t_start, 1), files=files)


def _readable(directory: Path) -> None:
    """The temporary directory is private (0700) and safetensors writes 0600; the model is not a secret,
    and the app often runs as another user than the one who trained it: modes follow the umask."""
    mask = os.umask(0)
    os.umask(mask)
    directory.chmod(0o777 & ~mask)
    for f in directory.iterdir():
        f.chmod(0o666 & ~mask)


def choose_fusion(dev: list[tuple[list[str], list[str]]], embedder) -> tuple[dict, dict]:
    """The library's task on held-out dialogues: query = the opening client turn of (up to) half of them;
    relevant = that dialogue's replies among every held-out reply. MRR@10 of BM25, dense and each hybrid
    setting; the fusion is the best hybrid (ties → the smaller weight, then the smaller k)."""
    from psyassist.kb.evaluate import Query, evaluate
    from psyassist.kb.search import Searcher, tokenize
    from psyassist.kb.store import LoadedChunks

    rows, tokens, texts = [], [], []
    for d, (_, replies) in enumerate(dev):
        for r in replies:
            rows.append({"path": f"dev/{d}", "text": r})
            tokens.append(tokenize(r))
            texts.append(r)
    vectors = embedder.encode(texts)
    count = {d: len(replies) for d, (_, replies) in enumerate(dev)}
    queries = [Query(text=users[0], n_relevant=count[d], id=str(d),
                     is_relevant=lambda row, d=d: row["path"] == f"dev/{d}")
               for d, (users, _) in enumerate(dev[: max(1, len(dev) // 2)])]
    searcher = Searcher(LoadedChunks(rows, tokens, vectors), embedder, per_language=False)
    single = evaluate(searcher, queries, ("bm25", "dense"), boot=200)
    grid = {}
    for w in FUSION_WEIGHTS:
        for k in FUSION_KS:
            searcher.dense_weight, searcher.rrf_k = w, k
            grid[(w, k)] = evaluate(searcher, queries, ("hybrid",), boot=10)["hybrid"]["mrr@10"]
    w, k = max(grid, key=lambda wk: (grid[wk], -wk[0], -wk[1]))
    mrr = {"bm25": single["bm25"]["mrr@10"], "dense": single["dense"]["mrr@10"],
           **{f"hybrid_w{w_:g}_k{k_}": v for (w_, k_), v in grid.items()}}
    # the cosine an unrelated reply reaches: the 99th percentile over (query, another dialogue's reply)
    qv = embedder.encode([q.text for q in queries])
    cos = qv @ vectors.T
    own = np.array([[r["path"] == f"dev/{q.id}" for r in rows] for q in queries])
    dev_res = {"queries": len(queries), "replies": len(rows), "mrr@10": mrr,
               "unrelated_cosine_p99": round(float(np.percentile(cos[~own], 99)), 4),
               "relevant_cosine_median": round(float(np.median(cos[own])), 4)}
    return dev_res, {"dense_weight": w, "rrf_k": k}
