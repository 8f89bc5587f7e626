# Backprop from Scratch. `make demo` and `make test` set up what they need on first use: the
# system packages (.ci/system-packages: apt as root, else one line saying what to run), .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WORKSPACE := workspace
PYTEST_ARGS ?=
# `make hub`: JupyterHub's proxy from npm, into a project-local folder (not global).
HUB_DIR := .hub
CHP_VERSION := 5.3.0
CHP := $(HUB_DIR)/node_modules/.bin/configurable-http-proxy
HUB_PORT ?= 8000

.PHONY: system demo test lab walkthrough release bench clean-student-data hub hub-clean

# bubblewrap, chromium, postgresql, python3.11-venv, fonts, npm: quick when all are there.
system:
	@.ci/system-packages

$(STAMP): pyproject.toml | system
	$(PYTHON) -m venv $(VENV)
	@# -qq: errors only (setuptools' "Editable installation" notice for every flat-layout project,
	@# a pip configuration's unused index, are not for a newcomer); a conflict or a failed build
	@# still prints and stops make.
	$(BIN)/pip install -qq --upgrade pip
	$(BIN)/pip install -qq -e ".[dev]"
	touch $(STAMP)

demo: system $(STAMP)
	$(BIN)/course demo

test: system $(STAMP) $(CHP)
	$(BIN)/pytest -n 2 --dist loadfile $(PYTEST_ARGS)

# A student's workspace: a copy of release/, so working in it never changes the committed release.
lab: $(STAMP)
	@test -d $(WORKSPACE) || cp -r release $(WORKSPACE)
	$(BIN)/jupyter lab --notebook-dir=$(WORKSPACE)

walkthrough: $(STAMP)
	$(BIN)/course walkthrough

release: $(STAMP)
	$(BIN)/course release

bench: $(STAMP)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/scaling.py
	$(BIN)/python bench/grading.py
	$(BIN)/python bench/reaping.py
	$(BIN)/python bench/oracle.py

clean-student-data:
	rm -rf submitted downloaded feedback autograded/*/ gradebook.db grades.csv grades.png grades_by_student.csv .course_cache

$(CHP): | system
	@if command -v npm >/dev/null; then mkdir -p $(HUB_DIR) && npm install --silent --no-audit \
		--no-fund --prefix $(HUB_DIR) configurable-http-proxy@$(CHP_VERSION); fi

# A local class on JupyterHub (as root): instructor and student accounts, the nbgrader exchange.
hub: $(STAMP) $(CHP)
	$(BIN)/python -m course_lib.hub start --port $(HUB_PORT)

hub-clean: $(STAMP)
	$(BIN)/python -m course_lib.hub clean
