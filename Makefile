# Backprop from Scratch. `make demo` and `make test` set up .venv on first use.
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

.PHONY: demo test lab walkthrough release bench clean-student-data hub hub-clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/course demo

test: $(STAMP) $(CHP)
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

$(CHP):
	mkdir -p $(HUB_DIR)
	npm install --silent --no-audit --no-fund --prefix $(HUB_DIR) configurable-http-proxy@$(CHP_VERSION)

# A local class on JupyterHub (as root): instructor and student accounts, the nbgrader exchange.
hub: $(STAMP) $(CHP)
	$(BIN)/python -m course_lib.hub start --port $(HUB_PORT)

hub-clean: $(STAMP)
	$(BIN)/python -m course_lib.hub clean
