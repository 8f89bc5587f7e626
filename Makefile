# Backprop from Scratch. `make demo` and `make test` set up .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WORKSPACE := workspace
PYTEST_ARGS ?=

.PHONY: demo test lab walkthrough release bench clean-student-data

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/course demo

test: $(STAMP)
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

clean-student-data:
	rm -rf submitted feedback autograded/*/ gradebook.db grades.csv grades.png .course_cache
