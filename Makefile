# Two commands set up and run the whole course; both create and use .venv/ in the repo root.
#   make lab    set up (first time only) and open the course in JupyterLab
#   make test   set up (first time only) and run every test: unit tests, notebooks, exercises
# The environment is requirements.lock.txt: every package at an exact version, with hashes.
#   make lock          re-resolve after editing pyproject.toml (keeps every pin it can)
#   make lock-upgrade  move every package to its newest release the ranges allow, then re-measure
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock.txt
FSDD := $(wildcard ../shared/data/fsdd)
PIP := $(BIN)/python -m pip --disable-pip-version-check
# The lock is written and installed by uv (a pinned release, in its own folder so that it stays out of the course's
# environment).
UV_VERSION := 0.13.9
TOOLS := .tools
UV_COMPILE := $(TOOLS)/bin/uv pip compile pyproject.toml --extra dev --universal --python-version 3.10 \
	--generate-hashes --quiet --output-file $(LOCK)

.PHONY: setup lab test unit notebooks bench lint clean prepare lock lock-upgrade doctor

# uv fetches and unpacks the lock's packages in parallel, several times faster than pip; where it cannot (no uv
# wheel for this platform, an index that only pip is configured for), pip installs the same lock. Both compile the
# bytecode at install time: where PYTHONDONTWRITEBYTECODE is set (as in many containers), every process would
# otherwise compile torch's and transformers' sources again each time it imports them.
$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c "import sys; sys.exit(sys.version_info < (3, 10))" || \
		(echo "The course needs Python 3.10 or newer; '$(PYTHON)' is older. Run: make test PYTHON=python3.11" && exit 1)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing the locked environment into $(VENV) (first time: a minute or a few, PyTorch is large)..."
	@($(MAKE) --no-print-directory -s $(TOOLS)/bin/uv && \
		$(TOOLS)/bin/uv pip install --quiet --compile-bytecode --require-hashes --no-deps --python $(BIN)/python \
		-r $(LOCK)) || \
		(echo "uv could not install the lock (see above); installing it with pip instead (slower)..." && \
		$(PIP) install -q --require-hashes --no-deps -r $(LOCK) 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true)
	$(PIP) install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
	@$(BIN)/slm-course doctor --lock $(LOCK) || (echo "Installation failed: see the messages above." && exit 1)
	@touch $(STAMP)

setup: $(STAMP)

# JupyterLab opens at the repository root: the chapters (notebooks/), exercises/, solutions/ and the README.
lab: setup
	$(BIN)/jupyter lab

# The tests find the real-speech FSDD subset beside the repo when it is there (../shared/data/fsdd).
# JOBS test files (and notebooks) run side by side (pytest-xdist), each process on one thread: small models
# gain little from a second thread, so two one-thread processes do nearly twice the work of one two-thread one.
JOBS ?= 2
PYTEST := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(JOBS) --dist loadfile
test: setup
	$(BIN)/slm-course doctor --lock $(LOCK)
	$(BIN)/ruff check slm_course tests
	$(if $(FSDD),SLM_COURSE_FSDD=$(abspath $(FSDD))) $(PYTEST) tests --doctest-modules slm_course
	$(if $(FSDD),SLM_COURSE_FSDD=$(abspath $(FSDD))) $(BIN)/slm-course prepare --jobs $(JOBS)
	$(if $(FSDD),SLM_COURSE_FSDD=$(abspath $(FSDD))) $(PYTEST) --nbval-lax notebooks solutions

unit: setup
	$(if $(FSDD),SLM_COURSE_FSDD=$(abspath $(FSDD))) $(PYTEST) tests --doctest-modules slm_course

# Build every model the notebooks load, two at a time on one thread each (make test does this first).
prepare: setup
	$(if $(FSDD),SLM_COURSE_FSDD=$(abspath $(FSDD))) $(BIN)/slm-course prepare --jobs $(JOBS)

bench: setup
	$(BIN)/slm-course bench --list

lint: setup
	$(BIN)/ruff check slm_course tests

# Is .venv what the lock says, and do torch and torchaudio's compiled ops load together?
doctor: setup
	$(BIN)/slm-course doctor --lock $(LOCK)

$(TOOLS)/bin/uv:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip --disable-pip-version-check install -q uv==$(UV_VERSION) 2>&1 | \
		grep -v "is ignored: it is neither a file nor a directory" || true
	@test -x $(TOOLS)/bin/uv || (echo "Could not install uv $(UV_VERSION) into $(TOOLS) (see above)." && exit 1)

lock: $(TOOLS)/bin/uv
	$(UV_COMPILE)

lock-upgrade: $(TOOLS)/bin/uv
	$(UV_COMPILE) --upgrade

clean:
	rm -rf $(VENV) $(TOOLS) data/cache
