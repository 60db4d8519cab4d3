# Two entry points (see README "Quick start"): `make demo` and `make test`.
# Both create the virtual environment in .venv and install the pinned requirements first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= demo_run

.PHONY: setup fashion-mnist demo test bench clean-demo

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# Debian's dataset-fashion-mnist package holds the demo photos; where it cannot be
# installed (no root, no apt) the Python side downloads the same files instead.
fashion-mnist:
	@[ -d /usr/share/datasets/fashion-mnist ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)); } || true

demo: setup fashion-mnist
	$(PY) -m sample_data --out_dir $(DEMO_DIR)/sample_dataset
	$(PY) site_id_balancer.py --in_dir $(DEMO_DIR)/sample_dataset --out_dir $(DEMO_DIR)/diffusion_data
	@echo "demo finished: see $(DEMO_DIR)/diffusion_data/summary.txt and balance_counts.png"

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/bench_site_balancer.py

clean-demo:
	rm -rf $(DEMO_DIR)
