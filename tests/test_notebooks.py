"""The five notebooks: clean, executable, released in sync, and graded the same by both paths."""
import json
import os
import re

import nbformat
import pytest

from course_lib.grading import demo, pipeline
from harness import (NOTEBOOKS, REPO, grade_id, is_test, make_course, nbgrader_autograde, read,
                     release_path, source_path, submit)

ASSIGNMENTS = [a for a in NOTEBOOKS if os.path.exists(source_path(a))]


def test_all_five_stages_exist():
    assert ASSIGNMENTS == list(NOTEBOOKS)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
@pytest.mark.parametrize("kind", ["source", "release"])
def test_notebooks_are_committed_clean(assignment, kind):
    path = source_path(assignment) if kind == "source" else release_path(assignment)
    for cell in read(path).cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (path, grade_id(cell))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_test_cells_follow_the_suite_convention(assignment):
    for cell in read(source_path(assignment)).cells:
        if is_test(cell):
            gid = grade_id(cell)
            assert re.match(r"test_\w+", gid)
            assert re.search(rf"suite\(\s*[\"']{gid}[\"']\s*\)", cell.source), gid


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solution_cells_are_named_after_what_they_define(assignment):
    for cell in read(source_path(assignment)).cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            name = meta["grade_id"]
            defines = re.search(rf"^(def|class)\s+{re.escape(name)}\b|^{re.escape(name)}\s*=",
                                cell.source, re.M)
            assert defines, f"solution cell {name} does not define {name}"


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return make_course(str(tmp_path_factory.mktemp("release")), ASSIGNMENTS)


def _normalized(path):
    nb = read(path)
    return json.loads(nbformat.writes(nb))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_is_in_sync_with_source(released, assignment):
    fresh = released.path("release", assignment, NOTEBOOKS[assignment] + ".ipynb")
    assert _normalized(release_path(assignment)) == _normalized(fresh), \
        "release/ is stale: run `course release` and commit release/"


REGION = re.compile(r"### BEGIN (?:SOLUTION|HIDDEN TESTS)\n(.*?)### END", re.S)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_holds_no_solutions_or_hidden_tests(assignment):
    release = read(release_path(assignment))
    assert "BEGIN SOLUTION" not in nbformat.writes(release)
    assert "BEGIN HIDDEN TESTS" not in nbformat.writes(release)
    source = read(source_path(assignment))
    hidden = {line.strip() for c in source.cells for r in REGION.findall(c.source)
              for line in r.splitlines() if len(line.strip()) > 25}
    public = {line.strip() for c in source.cells for line in REGION.sub("", c.source).splitlines()}
    released = {line.strip() for c in release.cells for line in c.source.splitlines()}
    assert (hidden - public) & released == set()


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_source_notebook_executes_top_to_bottom(assignment):
    from nbclient import NotebookClient
    nb = read(source_path(assignment))
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": os.path.dirname(source_path(assignment))}}
                   ).execute()
    errors = [grade_id(c) or i for i, c in enumerate(nb.cells) if c.cell_type == "code"
              and any(o.output_type == "error" for o in c.outputs)]
    assert errors == []


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_reference_full_release_zero_mistake_between_under_both_graders(tmp_path, assignment):
    course = make_course(str(tmp_path), [assignment])
    nb_name = NOTEBOOKS[assignment] + ".ipynb"
    submit(course, "reference", assignment, source_path(assignment))
    submit(course, "untouched", assignment, course.path("release", assignment, nb_name))
    submit(course, "mistake", assignment, demo.with_mistake(read(source_path(assignment)),
                                                            assignment))
    report = pipeline.grade(course, assignment, workers=1, progress=False)
    assert report.count("failed") == 0, report.summary()
    ours = pipeline.scores(course, assignment)
    full = {q: m for q, (_, m) in ours[("reference", assignment)].items()}
    assert {q: s for q, (s, _) in ours[("reference", assignment)].items()} == full
    assert all(s == 0 for s, _ in ours[("untouched", assignment)].values())
    mistake = sum(s for s, _ in ours[("mistake", assignment)].values())
    assert 0 < mistake < sum(full.values())

    for student in ("reference", "untouched", "mistake"):
        result = nbgrader_autograde(course, assignment, student)
        assert result.returncode == 0, result.stderr[-2000:]
    plain = pipeline.scores(course, assignment)
    assert plain == ours, "plain nbgrader and course grade disagree on an honest submission"


def test_demo_mistakes_apply_to_the_current_notebooks():
    for assignment, (gid, old, _) in demo.MISTAKES.items():
        cells = [c for c in read(source_path(assignment)).cells if grade_id(c) == gid]
        assert cells and old in cells[0].source.partition("### BEGIN SOLUTION")[2], \
            (assignment, gid, old)


def test_repository_has_the_fixed_layout():
    for entry in ("source", "release", "autograded", "nbgrader_config.py", "environment.yml",
                  "course_lib", "README.md", "pyproject.toml", "Makefile", "tests", "bench",
                  ".ci/run"):
        assert os.path.exists(os.path.join(REPO, entry)), entry


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_notebook_states_its_points(assignment):
    nb = read(source_path(assignment))
    total = sum(c.metadata["nbgrader"]["points"] for c in nb.cells if is_test(c))
    stated = [c.source for c in nb.cells if c.cell_type == "markdown" and "points" in c.source.lower()
              and re.search(rf"\b{total:g}\b", c.source)]
    assert stated, f"{assignment}: no markdown cell states its {total:g} points"
