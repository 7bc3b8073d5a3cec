"""Evaluation: multiple-choice benchmarks (log-likelihood or generation), with honest statistics.

    psyassist eval mcq --bench sample --format all

- `mcq`: prompts, logprob / generate scoring, results JSON, base-vs-tuned comparison
- `mcq_loaders`: PsychCounsel-Bench, CPsyExam, CMMLU, MMLU and generic CSV/JSON/JSONL readers
- `extract`: answer-letter extraction from generated text (zh/en)
- `stats`: Wilson interval, McNemar test
- `gen`, `metrics`, `judge`: generation metrics and the LLM judge (`psyassist eval gen`, `eval judge`)
"""
