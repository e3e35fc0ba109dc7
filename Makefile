# Two-command setup: `make demo` and `make test` create .venv/ on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.annosim-installed
# CPU wheel of torch that lies on this machine's disk; an open range would pull a CUDA build.
TORCH  := torch==2.13.0

.PHONY: install demo test bench clean

install: $(STAMP)

# sam2 goes in without its dependencies (they would pull torchvision) and without its CUDA
# extension. PyPI's torchvision, pulled by nnInteractive's dependencies, does not load beside
# the CPU torch wheel and nothing annosim uses needs it: it is removed again.
$(STAMP): pyproject.toml Makefile constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	SAM2_BUILD_CUDA=0 $(BIN)/python -m pip install -q --no-deps sam2==1.1.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,monai,nninteractive,ray]' hydra-core iopath pillow
	$(BIN)/python -m pip uninstall -q -y torchvision
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
