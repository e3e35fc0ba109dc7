# Two-command setup: `make demo` and `make test` create .venv/ on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.annosim-installed
# CPU wheel of torch that lies on this machine's disk; an open range would pull a CUDA build.
TORCH  := torch==2.13.0
EXTRAS := '.[test,monai,nninteractive,ray,sammed3d]'

# Full pip output of every install step; the terminal gets one line per step (and the log's end
# when a step fails).
LOG    := $(VENV)/install.log
# $(call pip,ARGS): one quiet pip call, logged.
pip     = $(BIN)/python -m pip $(1) >> $(LOG) 2>&1 || { echo "make install: pip failed; the end of $(LOG):"; tail -n 30 $(LOG); exit 1; }

.PHONY: install demo test bench readme-numbers clean

install: $(STAMP)

# sam2 goes in without its dependencies (they would pull torchvision) and without its CUDA
# extension. PyPI's torchvision, pulled by nnInteractive's dependencies, does not load beside
# the CPU torch wheel and nothing annosim uses needs it: it is removed again.
$(STAMP): pyproject.toml Makefile constraints.txt
	@echo "make install: virtual environment $(VENV)/ (full log: $(LOG))"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@date > $(LOG)
	@echo "make install: pip"
	@$(call pip,install --upgrade pip)
	@echo "make install: $(TORCH) (CPU wheel)"
	@$(call pip,install $(TORCH))
	@echo "make install: sam2 1.1.0 (no CUDA extension)"
	@SAM2_BUILD_CUDA=0 $(call pip,install --no-deps sam2==1.1.0)
	@echo "make install: medim 0.1.2 (SAM-Med3D's network; without its dependencies)"
	@$(call pip,install --no-deps medim==0.1.2)
	@echo "make install: annosim and its dependencies (constraints.txt)"
	@$(call pip,install -c constraints.txt -e $(EXTRAS) hydra-core iopath pillow)
	@echo "make install: removing torchvision"
	@$(call pip,uninstall -y torchvision)
	@touch $(STAMP)
	@echo "make install: done"

demo: install
	$(BIN)/annosim demo

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: install
	$(BIN)/python benchmarks/harness_overhead.py
	$(BIN)/python benchmarks/classical_speed.py
	$(BIN)/python benchmarks/sam2_cache.py

# The Dice numbers README.md quotes for the classical model, measured again and compared.
readme-numbers: install
	$(BIN)/python benchmarks/readme_numbers.py --check

clean:
	rm -rf $(VENV) annosim-demo
