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

# Small, CPU-sized settings: one class-conditional DDIM for the smaller category {1,2,3}.
DEMO_DIFFUSION_FLAGS ?= --labels 1 2 3 --conditional --image_size 32 32 --widths 16 32 64 \
	--block_depth 1 --embedding_dims 16 --batch_size 16 --num_epochs 40 --kid_every 10 \
	--kid_images 32 --kid_diffusion_steps 10 --sample_every 10

DEMO_CLASSIFIER_FLAGS ?= --backbone small_cnn --input_shape 32 --number_epochs 20 \
	--early_stop_patience 6 --batch_size 32 --seeds 0 1 2

demo: setup fashion-mnist
	$(PY) -m sample_data --out_dir $(DEMO_DIR)/sample_dataset
	$(PY) site_id_balancer.py --in_dir $(DEMO_DIR)/sample_dataset/train --out_dir $(DEMO_DIR)/diffusion_data
	@if ls $(DEMO_DIR)/models/*/best.weights.h5 >/dev/null 2>&1; then \
	  echo "stage 2: a trained model is in $(DEMO_DIR)/models; not training again"; \
	else \
	  $(PY) train_all.py --in_dir $(DEMO_DIR)/diffusion_data --out_dir $(DEMO_DIR)/models $(DEMO_DIFFUSION_FLAGS); \
	fi
	$(PY) diffusion_augmentation.py --in_dir $(DEMO_DIR)/sample_dataset/train --out_dir $(DEMO_DIR)/balanced_data \
	  --weight_paths $$(dirname $$(ls $(DEMO_DIR)/models/*/best.weights.h5 | head -n 1)) \
	  --generate_diffusion_steps 20
	$(PY) -m classifier.compare --train_dir $(DEMO_DIR)/sample_dataset/train \
	  --balanced_dir $(DEMO_DIR)/balanced_data --test_dir $(DEMO_DIR)/sample_dataset/test \
	  --out_dir $(DEMO_DIR)/results $(DEMO_CLASSIFIER_FLAGS)
	@echo "demo finished: see $(DEMO_DIR)/diffusion_data/summary.txt, $(DEMO_DIR)/models/*/samples/,"
	@echo "  $(DEMO_DIR)/balanced_data/summary.txt and contact_sheets/, and $(DEMO_DIR)/results/compare.md"

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/bench_site_balancer.py

clean-demo:
	rm -rf $(DEMO_DIR)
