"""`psyassist serve`: an OpenAI-compatible server with per-request LoRA adapters.

    psyassist serve --model default --adapter-dir runs/ --port 8000

app.py (routes, limits, safety), batcher.py (HF backend: continuous batching in one worker
thread), adapters.py (adapter discovery and the LRU pool), vllm_backend.py (optional GPU
backend), jobs.py (what a route hands a backend).  See docs/serving.md.
"""
