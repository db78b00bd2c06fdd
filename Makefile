# Two commands set up a fresh machine (see README):
#   make demo   installs if needed, then runs the demo pretraining
#   make test   installs if needed, then runs the test suite
PY := .venv/bin/python
DEMO_CONFIG ?= configs/pretrain/dbot_demo_fashion-mnist.py
DEMO_WORK_DIR ?= work_dirs/dbot_demo_fashion-mnist
DEMO_NUM_TRAIN ?= 10000
PYTEST_ARGS ?=

.PHONY: install data demo test test-slow clean-venv

install:
	@bash tools/install.sh

data: install
	@bash tools/install_data.sh
	@$(PY) tools/dataset_converters/fashion_mnist.py --out data/fashion_mnist \
		--num-train $(DEMO_NUM_TRAIN) --num-val 2000 --pad-to 32
	@$(PY) tools/dataset_converters/digits.py --out data/digits

demo: data
	$(PY) tools/train.py $(DEMO_CONFIG) --work-dir $(DEMO_WORK_DIR)

test: install
	@bash tools/install_data.sh
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: install
	@bash tools/install_data.sh
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

clean-venv:
	rm -rf .venv
