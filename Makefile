# aigw: `make up` runs the box, `make test` passes the suite, `make bench` measures it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: up test lint typecheck bench clean install hwtest host-packages

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the project's metadata changes, or a source that setup.py compiles (its
# COMPILED list: one quoted path per line).
COMPILED := $(shell sed -n 's/^ *"\(gateway\/[^"]*\.py\)",.*/\1/p' setup.py)
$(STAMP): pyproject.toml setup.py $(COMPILED) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/aigw up

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The boot, media and console tests need debootstrap, systemd-nspawn, udev and tmux: as root,
# this installs whichever are missing (elsewhere those tests skip and say why).
host-packages:
	bash scripts/host-packages.sh

test: lint typecheck host-packages
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

# On a machine with an NVIDIA GPU (see hwtests/README.md); a bare one needs only
# `python3 -m pytest -q -s -p no:cacheprovider hwtests` with pytest, nvidia-ml-py, prometheus-client.
hwtest: $(STAMP)
	$(BIN)/pytest -q -s -p no:cacheprovider hwtests

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache
