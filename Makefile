# Two entry points (see README "Quick start"): `make demo` and `make test`.
# Both create the virtual environment in .venv and install the pinned requirements first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= demo_run

.PHONY: setup fashion-mnist chromium demo test bench clean-demo

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# Debian's dataset-fashion-mnist package holds the demo photos; where it cannot be
# installed (no root, no apt) the Python side downloads the same files instead.
fashion-mnist:
	@[ -d /usr/share/datasets/fashion-mnist ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)); } || true

# Small, CPU-sized settings for every stage live in configs/demo.json.
demo: setup fashion-mnist
	$(PY) -m sample_data --out_dir $(DEMO_DIR)/sample_dataset
	$(PY) run_pipeline.py --in_dir $(DEMO_DIR)/sample_dataset/train \
	  --test_dir $(DEMO_DIR)/sample_dataset/test --out_dir $(DEMO_DIR) --config configs/demo.json

# The report tests open report.html in Debian's headless Chromium.
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1)); } || \
	  echo "note: Chromium is missing and could not be installed; the report tests need it"

test: setup chromium
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile

bench: setup
	$(PY) benchmarks/bench_site_balancer.py

clean-demo:
	rm -rf $(DEMO_DIR)
