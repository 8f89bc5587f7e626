"""Deleted or edited test cells come back at grading, including after a locked markdown cell."""
import nbformat
import pytest
from nbgrader.preprocessors import OverwriteCells

from course_lib.grading import pipeline
from harness import make_tiny_course


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return make_tiny_course(str(tmp_path_factory.mktemp("course")))


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
        stock.preprocess(_without(_released(course), "test_square_grad"), _resources(course))


def test_deleted_test_cell_is_restored_in_place(course):
    nb = pipeline.sanitize(course, _without(_released(course), "test_square_grad"), "s", "tiny", "tiny")
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
    assert ids[:4] == ["intro", "square_grad", "before_test", "test_square_grad"]
    assert 'with suite("test_square_grad")' in nb.cells[3].source


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
    assert 'with suite("test_square_grad")' in restored.source
    assert restored.metadata["nbgrader"]["points"] == 1


def test_every_graded_cell_deleted_still_restores(course):
    nb = _released(course)
    for gid in ("intro", "before_test", "test_square_grad", "test_square_grad_hidden"):
        nb = _without(nb, gid)
    nb = pipeline.sanitize(course, nb, "s", "tiny", "tiny")
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells]
    assert ids == ["square_grad", "test_square_grad", "test_square_grad_hidden"]
