# Two-command setup: `make demo` and `make test` create .venv/ on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.annosim-installed
# CPU wheel of torch that lies on this machine's disk; an open range would pull a CUDA build.
TORCH  := torch==2.13.0

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	SAM2_BUILD_CUDA=0 $(BIN)/python -m pip install -q --no-deps sam2==1.1.0
	$(BIN)/python -m pip install -q -e '.[test]' $(TORCH) monai==1.6.1 hydra-core iopath pillow
	touch $(STAMP)

demo: install
	$(BIN)/annosim demo

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: install
	$(BIN)/python benchmarks/harness_overhead.py
	$(BIN)/python benchmarks/classical_speed.py
	$(BIN)/python benchmarks/sam2_cache.py

clean:
	rm -rf $(VENV) annosim-demo
