"""Submissions from an LMS: a Canvas and a Moodle zip through `nbgrader zip_collect`, then
`course grade`. The file-name pattern is the course's own (nbgrader_config.py)."""
import os
import subprocess
import sys
import zipfile

import pytest

from course_lib.grading import pipeline
from course_lib.grading.lms import student_id
from harness import make_course, release_path, source_path

BIN = os.path.dirname(sys.executable)
ENV = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"])
ASSIGNMENT = "01_chain_rule"

# name in the zip -> the student id it must become
CANVAS_SOLVED = "student_name_12345_67890_chain_rule.ipynb"
CANVAS_LATE = "doejane_LATE_23456_78901_chain_rule.ipynb"
MOODLE_BLANK = "Full Name_34567_assignsubmission_file_chain_rule.ipynb"


def test_student_ids_from_lms_names():
    assert student_id("Full Name") == "full_name"
    assert student_id("student_name") == "student_name"
    assert student_id("  Zoë O'Neil ") == "zo_o_neil"


def _run(*cmd, cwd):
    result = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.slow
def test_canvas_and_moodle_zips_are_collected_and_graded(tmp_path):
    root = str(tmp_path / "course")
    course = make_course(root, assignments=(ASSIGNMENT,))
    archive = os.path.join(root, "downloaded", ASSIGNMENT, "archive")
    os.makedirs(archive)
    with zipfile.ZipFile(os.path.join(archive, "canvas_submissions.zip"), "w") as z:
        z.write(source_path(ASSIGNMENT), CANVAS_SOLVED)
        z.write(release_path(ASSIGNMENT), CANVAS_LATE)
        z.writestr("doejane_LATE_23456_78901_notes.txt", "not a notebook: skipped")
    with zipfile.ZipFile(os.path.join(archive, "moodle_submissions.zip"), "w") as z:
        z.write(release_path(ASSIGNMENT), MOODLE_BLANK)

    _run(os.path.join(BIN, "nbgrader"), "zip_collect", ASSIGNMENT, cwd=root)
    submitted = {s: sorted(os.listdir(os.path.join(root, "submitted", s, ASSIGNMENT)))
                 for s in os.listdir(os.path.join(root, "submitted"))}
    assert submitted == {s: ["chain_rule.ipynb"]
                         for s in ("student_name", "doejane", "full_name")}, submitted

    _run(os.path.join(BIN, "course"), "--root", root, "grade", ASSIGNMENT, "--quiet", cwd=root)
    totals = {student: (sum(s for s, _ in cells.values()), sum(m for _, m in cells.values()))
              for (student, _), cells in pipeline.scores(course, ASSIGNMENT).items()}
    assert set(totals) == {"student_name", "doejane", "full_name"}
    full = totals["student_name"][1]
    assert full > 0
    assert totals == {"student_name": (full, full), "doejane": (0.0, full),
                      "full_name": (0.0, full)}
