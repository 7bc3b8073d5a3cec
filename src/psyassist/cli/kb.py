"""`psyassist kb`: the knowledge library — ingest documents, search them, list and remove them.

    psyassist kb ingest ~/library/ guideline.pdf --index library.sqlite
    psyassist kb search "panic attack breathing" --index library.sqlite -k 5
    psyassist kb list --index library.sqlite
    psyassist kb remove guideline.pdf --index library.sqlite
    psyassist kb eval --queries queries.jsonl --index library.sqlite
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from psyassist.errors import PsyassistError

kb_app = typer.Typer(help="The knowledge library: ingest books and guidelines, search them (BM25 + dense).",
                     no_args_is_help=True)

DEFAULT_INDEX = str(Path("~/.local/share/psyassist/kb.sqlite").expanduser())
INDEX = typer.Option(DEFAULT_INDEX, "--index", "-i", envvar="PSYASSIST_KB_INDEX",
                     help="The library index: a SQLite file, or a database URL (postgresql+psycopg://…).")
LIBRARY = typer.Option("", "--library", envvar="PSYASSIST_KB_LIBRARY",
                       help="Which library of the index. In the app's database (--index sqlite:///DATA/app.db or "
                            "its PostgreSQL URL), 'clinic' is the shared library every counselor's drafts, chat "
                            "and search also use.")


@kb_app.command("ingest")
def kb_ingest(
    paths: list[str] = typer.Argument(..., help="Files and directories (PDF, EPUB, DOCX, HTML, Markdown, text)."),
    index: str = INDEX,
    embed_model: str | None = typer.Option(
        None, "--embed-model", help="'default' (packaged all-MiniLM-L6-v2), a local sentence-transformers "
                                    "directory, or with --embed-url the endpoint's model name. Fixed per index."),
    embed_url: str | None = typer.Option(
        None, "--embed-url", help="An OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 "
                                  "(key from $OPENAI_API_KEY)."),
    tokenizer: str | None = typer.Option(
        None, "--tokenizer", help="With --embed-url: a local tokenizer directory to size chunks exactly."),
    chunk_tokens: int | None = typer.Option(None, "--chunk-tokens", help="Chunk size in the embedder's tokens "
                                                                         "(default 200; MiniLM reads 256)."),
    overlap: int | None = typer.Option(None, "--overlap", help="Tokens shared by neighbouring chunks (default 40)."),
    max_mb: float = typer.Option(200, "--max-mb", help="Skip files larger than this many MB."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    library: str = LIBRARY,
) -> None:
    """Add files to the library; unchanged files are skipped, changed ones replace their old chunks.

    psyassist kb ingest books/ notes.md --index library.sqlite
    """
    from psyassist.kb.ingest import ingest
    from psyassist.ui import console, err_console

    rep = ingest(paths, index, embed_model=embed_model, embed_url=embed_url, tokenizer=tokenizer,
                 chunk_tokens=chunk_tokens, overlap_tokens=overlap, max_mb=max_mb, library=library)
    if as_json:
        print(json.dumps(rep.as_dict(), ensure_ascii=False, indent=2))
    else:
        for p, n in rep.added:
            console.print(f"added     {p} ({n} chunks)")
        for p, n in rep.replaced:
            console.print(f"replaced  {p} ({n} chunks)")
        for p in rep.unchanged:
            console.print(f"unchanged {p}")
        for p, why in rep.skipped:
            err_console.print(f"[yellow]skipped[/]   {p}: {why}", soft_wrap=True)
        console.print(f"{len(rep.added)} added, {len(rep.replaced)} replaced, {len(rep.unchanged)} unchanged, "
                      f"{len(rep.skipped)} skipped → {index}")
    if rep.skipped and not (rep.added or rep.replaced or rep.unchanged):
        raise typer.Exit(1)


@kb_app.command("search")
def kb_search(
    query: str = typer.Argument(..., help="What to look for, in Chinese or English."),
    index: str = INDEX,
    k: int = typer.Option(10, "-k", help="How many passages."),
    mode: str = typer.Option("hybrid", "--mode", help="hybrid (BM25 + dense, fused by RRF), bm25 or dense."),
    tokenizer: str | None = typer.Option(None, "--tokenizer", help="For an endpoint embedder (see ingest)."),
    as_json: bool = typer.Option(False, "--json", help="Print the passages as JSON."),
    library: str = LIBRARY,
) -> None:
    """Ranked passages with their source, page or section and score.

    psyassist kb search "如何应对惊恐发作" --index library.sqlite -k 5
    """
    from psyassist.kb.ingest import open_searcher
    from psyassist.kb.search import MODES
    from psyassist.ui import console, err_console

    if mode not in MODES:
        raise PsyassistError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    searcher = open_searcher(index, mode=mode, tokenizer=tokenizer, library=library)
    hits = searcher.search(query, k=k, mode=mode)
    if mode == "hybrid" and searcher.embedder is not None and not searcher.dense_applies(query):
        err_console.print(f"note: {searcher.embedder.name} is for {', '.join(searcher.embedder.languages)} text; "
                          "this query was ranked by BM25 alone (--mode dense forces the model)", soft_wrap=True)
    if as_json:
        print(json.dumps(hits, ensure_ascii=False, indent=2))
        return
    if not hits:
        console.print("no passages found")
    for h in hits:
        console.print(f"[bold]{h['rank']}. {h['title']}[/]  {where(h)}  score {h['score']:.4f}", soft_wrap=True)
        text = h["text"] if len(h["text"]) <= 400 else h["text"][:400] + "…"
        console.print(text, markup=False, soft_wrap=True)
        console.print(f"[dim]{h['path']}[/]\n", soft_wrap=True)


@kb_app.command("eval")
def kb_eval(
    queries: Path = typer.Option(..., "--queries", "-q", help="JSONL: {\"query\": …, \"relevant\": [document path, "
                                                             "file name, title or sha256 prefix, …]} a line."),
    index: str = INDEX,
    modes: str = typer.Option("bm25,dense,hybrid", "--modes", help="Comma list of bm25, dense, hybrid."),
    tokenizer: str | None = typer.Option(None, "--tokenizer", help="For an endpoint embedder (see ingest)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Also write the full results (per query) as JSON."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON line."),
    library: str = LIBRARY,
) -> None:
    """Recall@5/10, success@10 and MRR@10 of each retriever on your own queries, with 95% intervals, and
    whether hybrid beats each single retriever (paired bootstrap).

    psyassist kb eval --queries my_queries.jsonl --index library.sqlite --out results/kb-eval.json
    """
    from psyassist.data.io import write_json_atomic
    from psyassist.kb.evaluate import MODES, evaluate, load_queries
    from psyassist.kb.ingest import open_searcher
    from psyassist.kb.store import KbStore
    from psyassist.ui import console

    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    bad = [m for m in chosen if m not in MODES]
    if bad or not chosen:
        raise PsyassistError(f"--modes takes a comma list of {', '.join(MODES)}, got {modes!r}")
    searcher = open_searcher(index, mode="bm25" if chosen == ["bm25"] else "hybrid", tokenizer=tokenizer,
                             library=library)
    if searcher.embedder is None and any(m != "bm25" for m in chosen):
        raise PsyassistError("the index has no vectors for dense or hybrid search; use --modes bm25")
    qs = load_queries(queries, searcher.rows, KbStore(index, library=library).documents())
    res = evaluate(searcher, qs, chosen)
    summary = {m: {k: v for k, v in res[m].items()} for m in chosen}
    if out is not None:
        write_json_atomic(out, {"index": index, "queries_file": str(queries), **res})
    if as_json:
        print(json.dumps({"queries": res["queries"], **summary}, ensure_ascii=False))
        return
    console.print(f"{res['queries']} queries · 95% bootstrap intervals over queries", highlight=False)
    console.print(f"{'mode':8} {'recall@5':>22} {'recall@10':>22} {'success@10':>22} {'MRR@10':>22} {'p95 ms':>8}")
    for m in chosen:
        r = res[m]
        cells = [f"{r[k]:.3f} [{r[k + '_ci95'][0]:.3f}, {r[k + '_ci95'][1]:.3f}]"
                 for k in ("recall@5", "recall@10", "success@10", "mrr@10")]
        console.print(f"{m:8} " + " ".join(f"{c:>22}" for c in cells) + f" {r['p95_ms']:>8.1f}", highlight=False)
    for other in (m for m in chosen if m != "hybrid"):
        if "hybrid" in chosen:
            d, (lo, hi) = res["hybrid"][f"mrr_minus_{other}"], res["hybrid"][f"mrr_minus_{other}_ci95"]
            word = "beats" if lo > 0 else "is below" if hi < 0 else "is not measurably different from"
            console.print(f"hybrid {word} {other}: MRR@10 {d:+.3f} [{lo:+.3f}, {hi:+.3f}]", highlight=False)


def where(h: dict) -> str:
    """'p. 3', 'pp. 3–4', '§ Chapter 2 › Panic' or both."""
    parts = []
    if h.get("page"):
        parts.append(f"p. {h['page']}" if h.get("page_end") in (None, h["page"]) else
                     f"pp. {h['page']}–{h['page_end']}")
    if h.get("section"):
        parts.append(f"§ {h['section']}")
    return ", ".join(parts)


@kb_app.command("list")
def kb_list(index: str = INDEX, as_json: bool = typer.Option(False, "--json", help="Print JSON."),
            library: str = LIBRARY) -> None:
    """The documents in the library: title, author, chunks, format, path.

    psyassist kb list --index library.sqlite
    """
    from psyassist.kb.store import KbStore
    from psyassist.ui import console

    if "://" not in index and not Path(index).is_file():
        raise PsyassistError(f"no library index at {index}; build one with `psyassist kb ingest FILES --index "
                             f"{index}`")
    store = KbStore(index, library=library)
    docs = store.documents()
    if as_json:
        print(json.dumps({"documents": docs, "meta": store.meta()}, ensure_ascii=False, indent=2))
        return
    for d in docs:
        author = f" — {d['author']}" if d["author"] else ""
        console.print(f"{d['id']:>4}  {d['title']}{author}  [{d['format']}, {d['n_chunks']} chunks, "
                      f"{d['sha256'][:12]}]  {d['path']}", markup=False, soft_wrap=True)
    console.print(f"{len(docs)} documents, {sum(d['n_chunks'] for d in docs)} chunks")


@kb_app.command("remove")
def kb_remove(
    targets: list[str] = typer.Argument(..., help="Paths (as ingested), document ids from `kb list`, or sha256 "
                                                  "prefixes (at least 8 characters)."),
    index: str = INDEX,
    library: str = LIBRARY,
) -> None:
    """Remove documents and their chunks from the library.

    psyassist kb remove guideline.pdf --index library.sqlite
    """
    from psyassist.kb.store import KbStore
    from psyassist.ui import console

    if "://" not in index and not Path(index).is_file():
        raise PsyassistError(f"no library index at {index}")
    store = KbStore(index, library=library)
    docs = store.documents()
    missing = []
    for t in targets:
        resolved = str(Path(t).expanduser().resolve())
        found = [d for d in docs if d["path"] in (t, resolved) or str(d["id"]) == t
                 or (len(t) >= 8 and d["sha256"].startswith(t.lower()))]
        if len(found) != 1:
            missing.append(t if not found else f"{t} (matches {len(found)} documents)")
            continue
        store.remove(found[0]["id"])
        console.print(f"removed {found[0]['path']} ({found[0]['n_chunks']} chunks)")
    if missing:
        raise PsyassistError(f"not in the library {index}: {', '.join(missing)}; see `psyassist kb list`")


@kb_app.command("train-embedder")
def kb_train_embedder(
    sources: list[str] = typer.Argument(..., help="Counseling dialogues: files or directories in any format "
                                                  "`psyassist data prepare` reads (SMILECHAT, CPsyCoun, ShareGPT, …)."),
    out: Path = typer.Option(..., "--out", "-o", help="The model directory to write (replaced when complete)."),
    lang: list[str] = typer.Option(["zh"], "--lang", help="The language(s) the model is for; hybrid search uses "
                                                         "it for these queries only (en, zh)."),
    vocab: int = typer.Option(30_000, "--vocab", help="Tokenizer vocabulary size."),
    dim: int = typer.Option(256, "--dim", help="Vector dimensions."),
    epochs: int = typer.Option(8, "--epochs"),
    batch: int = typer.Option(1024, "--batch", help="Pairs per step; every other pair of the batch is a negative."),
    lr: float = typer.Option(0.05, "--lr"),
    dev: int = typer.Option(600, "--dev", help="Dialogues held out to choose the fusion and report quality."),
    max_dialogues: int | None = typer.Option(None, "--max-dialogues", help="Use at most this many dialogues."),
    seed: int = typer.Option(0, "--seed"),
    fmt: str = typer.Option("auto", "--format", help="Force one reader (see `psyassist data formats`)."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip bad records instead of stopping."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Train a small static embedding model from dialogues (CPU, minutes), for a language the packaged
    English model does not read. Use it with --embed-model DIR, or beside the default: 'en=default;zh=DIR'.

    psyassist kb train-embedder ../shared/data/SMILECHAT/smilechat_messages.jsonl.gz --out models/zh-static
    """
    from psyassist.kb.train_embedder import TrainSettings, train_embedder
    from psyassist.ui import console, err_console

    bad = [x for x in lang if x not in ("en", "zh")]
    if bad:
        raise PsyassistError(f"--lang must be en or zh, got {', '.join(bad)}")
    settings = TrainSettings(vocab=vocab, dim=dim, epochs=epochs, batch=batch, lr=lr, dev=dev, seed=seed,
                             languages=tuple(dict.fromkeys(lang)), max_dialogues=max_dialogues)
    rep = train_embedder(sources, out, settings, fmt=fmt, skip_invalid=skip_invalid,
                         log=lambda s: err_console.print(s, markup=False, soft_wrap=True))
    if as_json:
        print(json.dumps(rep.as_dict(), ensure_ascii=False, indent=2))
        return
    mrr = rep.dev.get("mrr@10", {})
    best = f"hybrid_w{rep.fusion['dense_weight']:g}_k{rep.fusion['rrf_k']}" if rep.fusion else None
    if mrr:
        console.print(f"held-out dialogues ({rep.dev['queries']} queries over {rep.dev['replies']} replies), "
                      f"MRR@10: BM25 {mrr['bm25']:.3f}, this model {mrr['dense']:.3f}, hybrid {mrr[best]:.3f} "
                      f"(dense ×{rep.fusion['dense_weight']:g}, k {rep.fusion['rrf_k']})", soft_wrap=True)
    console.print(f"wrote {rep.out} ({rep.dialogues} dialogues, {rep.vocab} tokens × {rep.dim}, {rep.seconds:.0f} s). "
                  f"Use it: psyassist kb ingest FILES --embed-model 'en=default;zh={rep.out}'", soft_wrap=True,
                  markup=False)


@kb_app.command("reembed")
def kb_reembed(
    index: str = INDEX,
    embed_model: str = typer.Option(..., "--embed-model", help="The new model: 'default', a directory, "
                                                               "'en=default;zh=DIR', or with --embed-url a name."),
    embed_url: str | None = typer.Option(None, "--embed-url", help="An OpenAI-compatible endpoint."),
    tokenizer: str | None = typer.Option(None, "--tokenizer", help="With --embed-url: a local tokenizer directory."),
    library: str = LIBRARY,
    all_libraries: bool = typer.Option(False, "--all-libraries", help="Every library of the index (the app's "
                                                                      "database: each counselor's and the clinic's)."),
) -> None:
    """Switch an index to another embedding model: every chunk's vector is recomputed (one transaction per
    library; BM25 and the chunks are kept). The app picks the new vectors up at the next search; set its
    kb_embed_model to the same value.

    psyassist kb reembed --index sqlite:///DATA/app.db --all-libraries --embed-model 'en=default;zh=models/zh-static'
    """
    from psyassist.kb.embed import load_embedder
    from psyassist.kb.store import KbStore
    from psyassist.ui import console

    if "://" not in index and not Path(index).is_file():
        raise PsyassistError(f"no library index at {index}")
    libraries = KbStore(index).libraries() if all_libraries else [library]
    if not libraries:
        raise PsyassistError(f"the index {index} has no documents to re-embed")
    embedder = load_embedder(embed_model, url=embed_url, tokenizer=tokenizer)
    for lib in libraries:
        store = KbStore(index, library=lib)
        n = store.reembed(embedder, {"embed_model": embed_model, "embed_url": embed_url or ""})
        console.print(f"re-embedded {n} chunks of library {lib or '(default)'} with {embedder.name}", markup=False)
