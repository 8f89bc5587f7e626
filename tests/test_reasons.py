"""Reasons reach the student: a submission that could not be graded, or was graded under
another name or with extra files, gets a feedback page that says so at the top."""
import os

import pytest

from course_lib.grading import feedback, pipeline
from course_lib.grading.sandbox import bwrap_available
from harness import CORRECT, make_tiny_course, submission, submit

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed")]


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    course = make_tiny_course(str(tmp_path_factory.mktemp("reasons") / "course"))
    folder = course.path("submitted", "broken", "tiny")
    os.makedirs(folder)
    with open(os.path.join(folder, "tiny.ipynb"), "w") as f:
        f.write('{"cells": [ this is not JSON')
    folder = submit(course, "renamed", "tiny", submission(CORRECT), name="my work.ipynb")
    with open(os.path.join(folder, "notes.txt"), "w") as f:
        f.write("mine")
    report = pipeline.grade(course, "tiny", workers=1, sandbox=True, progress=False)
    assert report.count("failed") == 0, report.summary()
    feedback.generate(course, "tiny")
    read = {}
    for student in ("broken", "renamed"):
        with open(course.path("feedback", student, "tiny", "tiny.html")) as f:
            read[student] = f.read()
    return course, read


def test_an_invalid_notebook_gets_a_page_saying_why(pages):
    course, read = pages
    page = read["broken"]
    assert "Notes from the grader" in page
    assert "not a readable notebook" in page
    assert pipeline.scores(course, "tiny")[("broken", "tiny")] == {
        "test_square_grad": (0.0, 1.0), "test_square_grad_hidden": (0.0, 2.0)}
    assert os.path.exists(course.path("autograded", "broken", "tiny", "tiny.ipynb"))


def test_a_renamed_notebook_and_extra_files_are_explained(pages):
    course, read = pages
    page = read["renamed"]
    assert "Notes from the grader" in page
    assert "graded as tiny.ipynb" in page and "notes.txt" in page
    assert sum(s for s, _ in pipeline.scores(course, "tiny")[("renamed", "tiny")].values()) == 3
