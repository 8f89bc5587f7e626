"""`course` verbs on what the gradebook does not hold (an assignment in source/ never released,
autograded/ folders a reset gradebook has no record of): one line saying what to run, a
non-zero exit, and the gradebook as it was. No grading: nothing here needs bubblewrap."""
import hashlib
import os
import shutil
import subprocess
import sys

import nbformat
import pytest

from harness import CORRECT, make_tiny_course, submission

COURSE = os.path.join(os.path.dirname(sys.executable), "course")
ENV = {k: v for k, v in os.environ.items() if k not in ("COURSE_ROOT", "COURSE_DB_URL")}


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The tiny course, released, plus `later`: in source/ but never released."""
    course = make_tiny_course(str(tmp_path_factory.mktemp("errors") / "course"))
    later = course.path("source", "later")
    os.makedirs(later)
    shutil.copy(course.path("source", "tiny", "tiny.ipynb"), os.path.join(later, "later.ipynb"))
    return course


def run(course, *args):
    return subprocess.run([COURSE, *args], cwd=course.root, env=ENV, capture_output=True,
                          text=True)


def fingerprint(course) -> str:
    with open(course.path("gradebook.db"), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.mark.parametrize("args", [("due", "later"), ("due", "later", "2026-03-01 17:00:00"),
                                  ("due", "later", "--clear"),
                                  ("extend", "newcomer", "later", "--days", "2"),
                                  ("feedback", "later"), ("grade", "later", "--quiet")])
def test_an_unreleased_assignment_is_one_line_saying_to_release_it(course, args):
    before = fingerprint(course)
    result = run(course, *args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "later is not released yet (it is in source/ but not in the gradebook): run "
        "`course release later` first"]
    assert fingerprint(course) == before  # not even the student `extend` names


def test_feedback_on_folders_the_gradebook_forgot_says_to_grade_and_writes_nothing(course):
    for student in ("ann", "ben"):
        folder = course.path("autograded", student, "tiny")
        os.makedirs(folder)
        nbformat.write(submission(CORRECT), os.path.join(folder, "tiny.ipynb"))
    try:
        result = run(course, "feedback")
    finally:
        shutil.rmtree(course.path("autograded"))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "the gradebook has no record of autograded/ann/tiny (and 1 more): run `course grade "
        "tiny` first (and `course release tiny` if it was never released)"]
    assert not os.path.exists(course.path("feedback"))


def test_an_extension_for_a_new_student_is_given_and_flagged(course):
    result = run(course, "extend", "newcomer", "tiny", "--days", "1")
    assert result.returncode == 0, result.stderr
    assert "note: 'newcomer' is new to the course" in result.stdout
    again = run(course, "extend", "newcomer", "tiny", "--days", "2")
    assert "new to the course" not in again.stdout
    assert "newcomer: extension of 2 days" in run(course, "due", "tiny").stdout
