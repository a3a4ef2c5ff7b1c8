# Two commands set up and run the whole course; both create and use .venv/ in the repo root.
#   make lab    set up (first time only) and open the course in JupyterLab
#   make test   set up (first time only) and run every test: unit tests, notebooks, exercises
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FSDD := $(wildcard ../shared/data/fsdd)
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: setup lab test unit notebooks bench lint clean prepare

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing the course into $(VENV) (first time: a few minutes, PyTorch is large)..."
	$(PIP) install -q -e ".[dev]" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
	@$(BIN)/python -c "import slm_course, torch, torchaudio, espeakng_loader, nbval" || (echo "Installation failed: see the messages above." && exit 1)
	@touch $(STAMP)

setup: $(STAMP)

lab: setup
	$(BIN)/jupyter lab notebooks/

# The tests find the real-speech FSDD subset beside the repo when it is there (../shared/data/fsdd).
test: setup
	$(BIN)/ruff check slm_course tests
	$(if $(FSDD),SLM_COURSE_FSDD=$(abspath $(FSDD))) $(BIN)/python -m pytest tests --doctest-modules slm_course
	$(if $(FSDD),SLM_COURSE_FSDD=$(abspath $(FSDD))) $(BIN)/slm-course prepare
	$(if $(FSDD),SLM_COURSE_FSDD=$(abspath $(FSDD))) $(BIN)/python -m pytest --nbval-lax notebooks solutions

unit: setup
	$(if $(FSDD),SLM_COURSE_FSDD=$(abspath $(FSDD))) $(BIN)/python -m pytest tests --doctest-modules slm_course

# Build every model the notebooks load, two at a time on one thread each (make test does this first).
prepare: setup
	$(if $(FSDD),SLM_COURSE_FSDD=$(abspath $(FSDD))) $(BIN)/slm-course prepare

bench: setup
	$(BIN)/slm-course bench --list

lint: setup
	$(BIN)/ruff check slm_course tests

clean:
	rm -rf $(VENV) data/cache
