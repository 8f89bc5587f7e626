"""Deleted or edited test cells come back at grading, including after a locked markdown cell."""
import os

import nbformat
import pytest
from nbgrader.preprocessors import OverwriteCells

from course_lib.grading import pipeline
from course_lib.grading.course import Course
from harness import REPO


def _cell(kind, source, gid, **meta):
    make = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
    cell = make(source)
    cell.metadata["nbgrader"] = {"grade_id": gid, "schema_version": 3, "task": False,
                                 "grade": False, "solution": False, "locked": False, **meta}
    return cell


def tiny_notebook():
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        _cell("md", "# Tiny", "intro", locked=True),
        _cell("code", "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
              "double", solution=True),
        _cell("md", "Now run the test.", "before_test", locked=True),
        _cell("code", "from course_lib.checks import suite\nwith suite('test_double') as t:\n"
              "    got = t.run(lambda: double(3.0), double)\n    assert got == 6.0",
              "test_double", grade=True, locked=True, points=1),
    ]
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    os.makedirs(root / "source" / "tiny")
    nbformat.write(tiny_notebook(), root / "source" / "tiny" / "tiny.ipynb")
    (root / "nbgrader_config.py").write_text(open(os.path.join(REPO, "nbgrader_config.py")).read())
    course = Course(str(root))
    assert course.api().generate_assignment("tiny")["success"]
    return course


def _released(course):
    return nbformat.read(course.path("release", "tiny", "tiny.ipynb"), as_version=4)


def _without(nb, gid):
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != gid]
    return nb


def _resources(course):
    return {"nbgrader": {"notebook": "tiny", "assignment": "tiny", "student": "s",
                         "db_url": course.db_url}}


def test_stock_nbgrader_fails_on_a_test_cell_after_locked_markdown(course):
    """The bug we fix: nbgrader 0.9.6 raises KeyError here."""
    stock = OverwriteCells(add_missing_cells=True)
    with pytest.raises(KeyError):
        stock.preprocess(_without(_released(course), "test_double"), _resources(course))


def test_deleted_test_cell_is_restored_in_place(course):
    nb = pipeline.sanitize(course, _without(_released(course), "test_double"), "s", "tiny", "tiny")
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
    assert ids == ["intro", "double", "before_test", "test_double"]
    assert "with suite('test_double')" in nb.cells[3].source


def test_edited_test_cell_and_changed_metadata_are_undone(course):
    nb = _released(course)
    test = nb.cells[3]
    test.source = "pass  # I passed, honest"
    test.cell_type = "markdown"
    test.metadata["nbgrader"]["points"] = 100
    del test["outputs"], test["execution_count"]
    nb = pipeline.sanitize(course, nb, "s", "tiny", "tiny")
    restored = nb.cells[3]
    assert restored.cell_type == "code"
    assert "with suite('test_double')" in restored.source
    assert restored.metadata["nbgrader"]["points"] == 1


def test_every_graded_cell_deleted_still_restores(course):
    nb = _released(course)
    for gid in ("intro", "before_test", "test_double"):
        nb = _without(nb, gid)
    nb = pipeline.sanitize(course, nb, "s", "tiny", "tiny")
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
    assert ids == ["double", "test_double"]
