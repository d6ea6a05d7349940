# `make repro`: install into .venv and run the DVC pipeline; `make test`: install and run the tests;
# `make test-fast`: the tests that take seconds (no slow, dvc, ray or subprocess ones); `make lint`: ruff.
VENV ?= .venv
BIN := $(VENV)/bin
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export DVC_NO_ANALYTICS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup setup-extras setup-dev repro test test-fast lint bench remote push pull

setup: $(VENV)/.installed
setup-extras: $(VENV)/.extras
setup-dev: $(VENV)/.dev

$(VENV)/.installed: requirements.lock constraints.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --no-deps -r requirements.lock
	touch $@

# openl3 (torchopenl3), fairseq (wav2vec, vq-wav2vec), ai-edge-litert (YAMNet from a .tflite file): only those need them
$(VENV)/.extras: $(VENV)/.installed requirements-extras.lock
	$(BIN)/pip install --quiet --no-deps -r requirements-extras.lock
	touch $@

# ruff (requirements-dev.lock): all lint needs, so it does not install the pipeline's packages
$(VENV)/.dev: requirements-dev.lock
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --no-deps -r requirements-dev.lock
	touch $@

repro: setup
	$(BIN)/dvc repro
	$(BIN)/dvc checkout --relink --quiet  # directory outputs too: linked, not a second copy

test: setup setup-extras setup-dev
	$(BIN)/python -m pytest -q

# markers: pyproject.toml [tool.pytest.ini_options]
FAST ?= not slow and not dvc and not ray and not subprocess
test-fast: setup setup-extras setup-dev
	$(BIN)/python -m pytest -q -m "$(FAST)"

# Python only: the README's code blocks keep their aligned comments
lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check --extend-exclude '*.md' .

bench: setup setup-extras
	$(BIN)/python bench/extract_speed.py

# Sharing caches (docs/sharing.md). REMOTE: a folder all machines can reach (or
# s3://, gs://, azure://, ssh:// with DVC's optional package, e.g. `pip install dvc-s3==3.3.0`).
# verify: DVC hashes every object it pulls, so a damaged or tampered one is refused.
remote: setup
	@test -n "$(REMOTE)" || { echo "usage: make remote REMOTE=/path/to/lab/avcache-remote"; exit 2; }
	$(BIN)/dvc remote add --default --force lab $(REMOTE)
	$(BIN)/dvc remote modify lab verify true
	@echo "remote 'lab' -> $(REMOTE) in .dvc/config: commit it so the lab shares it"

push: setup
	$(BIN)/python -m avcache share push

pull: setup
	$(BIN)/python -m avcache share pull
