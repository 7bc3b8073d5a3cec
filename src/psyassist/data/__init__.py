"""Data layer: readers → Conversation schema → clean / split / stats / overlap / fetch.

    psyassist data prepare corpus.jsonl --out prepared/
"""
