# Two entry points, each doing its own set-up: `make demo` and `make test` (see README.md).
PYTHON ?= python3
RESULTS ?= results/demo

.PHONY: setup demo test lint

# torch is pinned first when absent: a bare requirement would pull the newest release with
# gigabytes of CUDA packages. On a GPU machine the same pin resolves to the normal CUDA build.
setup:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "torch==2.13.0"
	$(PYTHON) -m pip install --quiet -e ".[test,ray]"

# The demo's grid is the packaged preset `demo` (cascbench/presets/demo.yaml): LCRON, RankFlow and
# BCE, seeds 0-2, the small world, recflow-2stage, on the CPU.
demo: setup
	$(PYTHON) -m cascbench run --preset demo --results-dir $(RESULTS)
	$(PYTHON) -m cascbench report --results-dir $(RESULTS)

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

test: setup lint
	$(PYTHON) -m pytest -q
