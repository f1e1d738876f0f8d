# `make demo` and `make test` are all a new machine needs: both create .venv
# and install kerasmm into it on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: install demo test test-fast bench bench-real clean

install: $(STAMP)

$(STAMP): setup.cfg setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,eval,search]'
	touch $(STAMP)

demo: install
	$(PY) -m kerasmm.demo

# Two pytest workers, one test file each at a time (module fixtures run once): about 18–20 minutes here, twice that with one.
TEST_WORKERS ?= 2

test: install
	$(PY) -m pytest tests -q -p no:cacheprovider --timeout=900 -n $(TEST_WORKERS) --dist loadfile --durations=25

test-fast: install
	$(PY) -m pytest tests -q -n $(TEST_WORKERS) --dist loadfile -m "not slow and not integration"

# Speed and memory; benchmarks/real_data.py (what models learn on real sets, about 75 minutes) is bench-real.
bench: install
	@for script in $(filter-out benchmarks/real_data.py,$(wildcard benchmarks/*.py)); do echo "== $$script"; $(PY) $$script || exit 1; done

bench-real: install
	$(PY) benchmarks/real_data.py

clean:
	rm -rf $(VENV) demo_out build *.egg-info
