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

.PHONY: install book test unit notebooks browser bench seeds clean

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

book: install
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

colab-check: install colab-env book
	$(call TIMED,COLAB_CHECK=1 $(BIN)/pytest tests/colab -n 2,notebooks run as in Colab)

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

clean:
	rm -rf _build .pytest_cache
