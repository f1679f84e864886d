# Two commands set up a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Each creates .venv and installs what it needs; ../shared/data is used as the data dir when it exists.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SHARED_DATA := $(abspath ../shared/data)
export LDM_JAX_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),$(HOME)/.cache/ldm_jax)
WORKDIR ?= runs/demo

.PHONY: venv demo test lint test-slow bench-quick clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m ldm_jax.main --config=configs/demo.py --workdir=$(WORKDIR) $(if $(wildcard $(WORKDIR)/rae/checkpoints),--resume,)

test: venv lint
	$(PY) -m pytest -q -rs -n 2 --dist loadfile   # -rs: every skip prints its reason

lint: venv
	$(PY) -m ruff check ldm_jax tests experiments configs

test-slow: venv
	$(PY) -m pytest -q -m slow

bench-quick: venv
	for b in experiments/bench_*.py; do $(PY) $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) runs
