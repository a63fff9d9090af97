# The verbs everyone knows (after uvloop's and pydantic-core's Makefiles).
# CI runs `make test` through .ci/run, the same command the README gives.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: help compile debug test bench lint clean serve

help:  ## this list
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

compile:  ## build the extension in place (release)
	./run help >/dev/null
	$(PY) setup.py build_ext --inplace -q

debug:  ## build with UNMO_DEBUG=1 (invariant checks, bounds checks, line tracing, annotated HTML) and run the kernel tests on it
	./run help >/dev/null
	UNMO_DEBUG=1 $(PY) setup.py build_ext --inplace --force -q
	$(PY) -m pytest tests/kernel -q
	$(PY) setup.py build_ext --inplace --force -q

test:  ## the whole test suite (needs nothing but Python and a C compiler)
	./run test

bench:  ## benchmark suites and their ratios (not part of `make test`)
	./run bench

lint:  ## ruff and mypy (also run inside the test suite)
	./run help >/dev/null
	$(PY) -m ruff check src tests bench
	$(PY) -m mypy

serve:  ## the ingest server on the embedded PostgreSQL
	./run serve

clean:  ## build products, caches, generated C
	rm -rf build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .benchmarks test-artifacts
	find src -name '*.so' -delete -o -name '__pycache__' -prune -exec rm -rf {} +
	rm -f src/native/*.c src/native/*.html
