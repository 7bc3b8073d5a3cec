"""The knowledge library: a counselor's own documents, chunked, indexed and searched (issue 12, part 1).

    psyassist kb ingest ~/books/*.pdf guidelines/ --index library.sqlite
    psyassist kb search "如何应对惊恐发作" --index library.sqlite -k 5

parse.py (file → title, author, blocks with section/page) → chunk.py (heading/paragraph/sentence-aware
chunks sized in the embedding model's tokens) → embed.py (sentence-transformers dir or an
OpenAI-compatible /v1/embeddings endpoint) → store.py (SQLAlchemy tables, one transaction per file)
→ search.py (BM25 via bm25s + jieba, dense via numpy, reciprocal rank fusion). ingest.py runs a batch.
"""
