# a2gluon developer commands.  `make setup` is idempotent: it reinstalls only
# when setup.cfg, pyproject.toml or the chosen MXNet variant changed.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
VARIANT := $(shell tools/mxnet_variant.sh)
STAMP := $(VENV)/.installed-$(VARIANT)
# Gluon-CV's pin lives in setup.cfg (extra "gluoncv"); it is installed without its
# dependencies so that only opencv-python-headless provides cv2.
GLUONCV := $(shell sed -n 's/^[[:space:]]*\(gluoncv==[^[:space:]]*\).*/\1/p' setup.cfg)
PYTEST_ARGS ?=

.PHONY: setup test test-fast demo lint format bench readme-tables clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml tools/mxnet_variant.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade "pip>=23" "setuptools>=61" wheel
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[$(VARIANT),test,onnx]"
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps "$(GLUONCV)"
	$(PY) -c "import mxnet, gluoncv, cv2, numpy; print('mxnet', mxnet.__version__, '| gluoncv', gluoncv.__version__, '| numpy', numpy.__version__, '| cv2', cv2.__version__)"
	@rm -f $(VENV)/.installed-*
	@touch $@

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

demo: setup
	$(PY) -m a2gluon demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: setup
	$(PY) benchmarks/block.py
	$(PY) benchmarks/data.py
	$(PY) benchmarks/inference.py
	$(PY) benchmarks/models.py
	$(PY) benchmarks/blocks.py
	$(PY) benchmarks/train.py
	$(PY) benchmarks/dist.py
	$(PY) benchmarks/video_decode.py
	$(PY) tools/readme_tables.py

readme-tables: setup
	$(PY) tools/readme_tables.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
