# The two set-up commands: `make book` and `make test`. Both start from nothing:
# they create .venv if missing and install the pinned toolchain and `labs`.
PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
MATHJAX  := $(VENV)/mathjax/es5/tex-mml-chtml.js
JB_FLAGS := --all -W -n --keep-going --builder html
# Print how long each step of `make test` took.
TIMED    = @start=$$(date +%s); $(1); status=$$?; echo "[time] $(2): $$(( $$(date +%s) - start )) s"; exit $$status

.PHONY: install book test unit notebooks browser bench seeds clean gpu-check

install: $(STAMP) $(MATHJAX)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# MathJax is served from the book itself so that pages typeset with no network.
$(MATHJAX): | $(BIN)/python
	mkdir -p $(VENV)/npm $(VENV)/mathjax
	npm install --silent --no-audit --no-fund --prefix $(VENV)/npm mathjax@3.2.2
	cp -r $(VENV)/npm/node_modules/mathjax/es5 $(VENV)/mathjax/

# Chapters are executed two at a time (one per core) into the build's cache, then the book is
# built from it: Sphinx's own parallel build cannot execute them (see book/_ext/execute_chapters.py).
CHAPTERS := $(shell sed -n 's/^  - file: \(.*\)$$/\1.md/p' _toc.yml)
book: install
	$(call TIMED,$(BIN)/python book/_ext/execute_chapters.py _build/.jupyter_cache $(CHAPTERS) --jobs 2,chapters executed two at a time)
	$(call TIMED,$(BIN)/jupyter-book build . $(JB_FLAGS),HTML build)

# Headless Chromium for the browser check (Debian packages; CI runs as root).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }

unit: install
	$(call TIMED,$(BIN)/pytest tests/labs tests/test_layout.py -n 2,labs unit tests)

notebooks: install
	$(call TIMED,$(BIN)/pytest tests/test_notebooks.py -n 2,chapters re-executed by nbval)

# The Colab check (tests/colab): every chapter's notebook, as the book build wrote it, run
# as a reader runs it in Colab, in a separate environment with Colab's ipywidgets 7.7.1
# and none of jupytext, myst-nb, jupyter-book or labs, no package index and a working
# directory outside the repository; every widget control is driven. In `make test` it
# takes the place of the nbval run (`make notebooks`), so each chapter runs twice, not three times.
COLAB_VENV  := $(VENV)/colab
COLAB_STAMP := $(COLAB_VENV)/.installed
.PHONY: colab-env colab-check

$(COLAB_STAMP): tests/colab/requirements-colab.txt
	rm -rf $(COLAB_VENV)
	$(PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_VENV)/bin/pip install -q -r tests/colab/requirements-colab.txt
	touch $@

colab-env:
	$(call TIMED,$(MAKE) --no-print-directory $(COLAB_STAMP),Colab-like environment)

# The book build executes every chapter under LABS_SEED=0 (the page's numbers); the Colab run
# executes it again under another seed, so every claim is also checked away from the seed it was
# written at. `make colab-check COLAB_SEED=0` runs it at the page's seed.
COLAB_SEED ?= 3
colab-check: install colab-env book
	$(call TIMED,COLAB_CHECK=1 LABS_SEED=$(COLAB_SEED) $(BIN)/pytest tests/colab -n 2,notebooks run as in Colab under LABS_SEED=$(COLAB_SEED))

test: install browser
	$(MAKE) --no-print-directory unit book colab-check
	$(call TIMED,$(BIN)/pytest tests/book,built-HTML and headless-Chromium checks)

# Every chapter under two more book seeds. Failing checks are reported, not raised
# (LABS_CHECKS=report), so the summary lists every claim that does not hold.
SEEDS ?= 1 2
seeds: install
	rm -rf _build/seeds
	@for s in $(SEEDS); do mkdir -p _build/seeds/$$s; \
	  LABS_SEED=$$s LABS_CHECKS=report LABS_CHECK_LOG_DIR=$(CURDIR)/_build/seeds/$$s \
	    $(BIN)/pytest tests/test_notebooks.py -n 2 -q || true; done
	$(BIN)/python tests/seed_report.py _build/seeds

BENCH_FLAGS ?=
bench: install
	$(BIN)/python benchmarks/run_all.py $(BENCH_FLAGS)

# One command for a machine with a GPU, on that machine's own Python, torch and Triton (no
# install, no network: labs is imported from this checkout). The CUDA tests, then every
# benchmark with its anchors, recorded in benchmarks/results/, then a summary. Without CUDA the
# tests skip and the benchmarks run once each on the CPU (--quick) to show that they run.
# A failing CUDA test does not stop the benchmarks; the summary reports it and fails the target.
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-check:
	@mkdir -p _build/gpu-check && date -u +%Y-%m-%dT%H:%M:%S+00:00 > _build/gpu-check/started
	-$(call TIMED,PYTHONPATH=$(CURDIR) $(GPU_PYTHON) -m pytest tests/cuda -m cuda -q -rs -p no:cacheprovider \
	  --junitxml=_build/gpu-check/cuda-tests.xml,CUDA kernel tests)
	$(call TIMED,if PYTHONPATH=$(CURDIR) $(GPU_PYTHON) -c "import sys; import torch; sys.exit(not torch.cuda.is_available())"; \
	  then PYTHONPATH=$(CURDIR) $(GPU_PYTHON) benchmarks/run_all.py; \
	  else echo "no CUDA device: each benchmark once on the CPU (--quick) and nothing recorded"; \
	    PYTHONPATH=$(CURDIR) $(GPU_PYTHON) benchmarks/run_all.py --quick; fi,benchmarks)
	@PYTHONPATH=$(CURDIR) $(GPU_PYTHON) tests/cuda/summary.py _build/gpu-check > _build/gpu-check/summary.txt; \
	  status=$$?; cat _build/gpu-check/summary.txt; exit $$status

clean:
	rm -rf _build .pytest_cache
