# Lorebot: `make run` serves the app on the embedded defaults, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
INSTALLED := $(VENV)/.installed
SAMPLES := data/bm25_index/.samples-ingested
# Where the CPU build of torch comes from when no local wheel is found (never the CUDA build).
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
HOST ?= 127.0.0.1
PORT ?= 8000

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run worker check test install migrate samples bench eval clean

$(PY):
	@echo "==> creating the virtual environment in $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(INSTALLED): pyproject.toml | $(PY)
	@echo "==> installing the CPU build of torch 2.13.0"
	$(PIP) install --no-index --no-deps torch==2.13.0 2>/dev/null || \
		$(PIP) install torch==2.13.0 --index-url $(TORCH_INDEX_URL)
	@echo "==> installing Lorebot and its dependencies"
	$(PIP) install -e '.[test]'
	@touch $@

# The ONNX encoders are exported once per model (a hash of its files) into the venv, or into
# RAG_EMBEDDING_CACHE_DIR; later runs find them and print one line. A failed export is not fatal:
# Lorebot then says why and runs on torch.
install: $(INSTALLED)
	@echo "==> exporting the embedding model to ONNX (fp32 and int8; once, about a minute)"
	@$(PY) -m ragcore.onnx_export || echo "warning: the ONNX export failed (above); Lorebot will embed with torch"

migrate: install
	@echo "==> migrating the database"
	$(PY) manage.py migrate --noinput

$(SAMPLES): $(wildcard data/docs/*) | $(INSTALLED)
	@echo "==> ingesting Lorebot's guide in data/docs (unchanged files are skipped; none once removed in the console, or with LOREBOT_GUIDE=False)"
	$(PY) manage.py ingest --guide data/docs
	@touch $@

samples: $(SAMPLES)

# The web server in the foreground, one ingest worker beside it. The trap stops the worker
# however the server ends (Ctrl-C, a crash, `kill`), so no worker outlives `make run`.
# Both processes count into one PROMETHEUS_MULTIPROC_DIR (default data/prometheus), emptied first:
# files left by earlier runs would be added to this run's figures. daphne -v 0: Lorebot logs every
# request itself (JSON `http.request` events); daphne's own access lines would repeat them as plain text.
run: migrate samples
	@echo "==> serving Lorebot on http://$(HOST):$(PORT)/ with one ingest worker (Ctrl-C stops both)"
	@export PROMETHEUS_MULTIPROC_DIR="$${PROMETHEUS_MULTIPROC_DIR:-$(CURDIR)/data/prometheus}"; \
	mkdir -p "$$PROMETHEUS_MULTIPROC_DIR" && find "$$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -name '*.db' -delete; \
	$(PY) manage.py db_worker & worker=$$!; \
	trap 'kill -TERM $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT; \
	trap 'exit 130' INT TERM; \
	$(VENV)/bin/daphne -v 0 -e tcp:port=$(PORT):interface=$(HOST):backlog=1024 --websocket_connect_timeout 30 console.asgi:application

# An ingest worker on its own (for a second worker, or when the web server runs elsewhere).
worker: migrate
	$(PY) manage.py db_worker

# ruff (lint, import order, the house's `from __future__ import annotations`) and mypy with
# django-stubs; the configuration of both is in pyproject.toml. `make test` runs it first, so CI does.
check: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Everything on SQLite first; then, when DATABASE_URL is set (CI sets it), the
# database-backed tests again on that server, so both databases are always covered.
test: check
	env -u DATABASE_URL $(PY) -m pytest
	@if [ -n "$$DATABASE_URL" ]; then \
		echo "==> the console tests, backup/restore, the scale-out (one machine, and one network namespace per process), restart and network-namespace tests and the PostgreSQL keyword store, on the DATABASE_URL server"; \
		$(PY) -m pytest tests/console tests/ops/test_backup.py tests/ops/test_scale_out.py tests/ops/test_scale_out_netns.py \
			tests/ops/test_postgres_restart.py tests/ops/test_network_namespaces.py tests/ragcore/test_bm25_postgres.py \
			tests/ragcore/test_bm25_collections.py; \
	fi

bench: install
	$(PY) benchmarks/retrieval_latency.py
	$(PY) benchmarks/ingest_throughput.py

eval: install
	$(PY) -m ragcore.eval ../shared/eval/scifact --split train

clean:
	rm -rf $(VENV) $(SAMPLES)
