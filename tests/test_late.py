"""Late work through the whole term: a due date and an extension set with `course`, then the
same late-adjusted score in `course grade`'s table, grades.csv, the feedback page and
`nbgrader export`."""
import csv
import os
import subprocess
import sys

import pytest

from course_lib.grading.sandbox import bwrap_available
from harness import CORRECT, make_tiny_course, submission, submit

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed")]

BIN = os.path.dirname(sys.executable)
ENV = {k: v for k, v in os.environ.items() if k not in ("COURSE_ROOT", "COURSE_DB_URL")}
ENV["PATH"] = BIN + os.pathsep + ENV["PATH"]
DUE = "2026-01-10 12:00:00 UTC"


def run(root, *cmd):
    result = subprocess.run([os.path.join(BIN, cmd[0]), *cmd[1:]], cwd=root, env=ENV,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = make_tiny_course(str(tmp_path_factory.mktemp("late") / "course"))
    root = course.root
    # late by a day and a second (two started days: 20 % off); late too, but extended; on time
    for student, when in (("late", "2026-01-11 12:00:01 UTC"), ("extended", "2026-01-11 12:00:01 UTC"),
                          ("ontime", "2026-01-10 11:00:00 UTC")):
        folder = submit(course, student, "tiny", submission(CORRECT), name="tiny.ipynb")
        with open(os.path.join(folder, "timestamp.txt"), "w") as f:
            f.write(when)
    assert "due 2026-01-10 12:00:00 UTC" in run(root, "course", "due", "tiny", DUE)
    run(root, "course", "extend", "extended", "tiny", "--days", "2")
    assert "extended: extension of 2 days" in run(root, "course", "due", "tiny")
    table = run(root, "course", "grade", "--quiet")
    run(root, "course", "feedback")
    run(root, "course", "export")
    run(root, "nbgrader", "export")
    return root, table


def _row(table, student):
    return next(line for line in table.splitlines() if line.startswith(student + " "))


def test_the_table_is_late_adjusted(graded):
    _, table = graded
    assert "2.4/3 L" in _row(table, "late")
    assert _row(table, "extended").split()[-1] == "3/3"
    assert _row(table, "ontime").split()[-1] == "3/3"


def test_grades_csv_and_nbgrader_export_agree(graded):
    root, _ = graded
    with open(os.path.join(root, "grades.csv")) as f:
        ours = {}
        for row in csv.DictReader(f):
            ours[row["student"]] = ours.get(row["student"], 0) + float(row["score"])
    with open(os.path.join(root, "nbgrader_grades.csv")) as f:  # nbgrader export's own file
        theirs = {row["student_id"]: float(row["score"]) for row in csv.DictReader(f)}
    assert ours == pytest.approx({"late": 2.4, "extended": 3, "ontime": 3})
    assert theirs == pytest.approx(ours)


def test_the_feedback_page_shows_the_penalty(graded):
    root, _ = graded
    page = os.path.join(root, "feedback", "late", "tiny", "tiny.html")
    with open(page) as f:
        text = f.read()
    line = text.split('class="late-penalty">')[1].split("</li>")[0]
    assert line == ("Late by 1 day 0 h 1 min (2 started days after the due date and any "
                    "extension); the policy: 10 % of the score per started day late. Points before the penalty "
                    "3.0, penalty -0.6, after 2.4 / 3.0"), line
    with open(os.path.join(root, "feedback", "extended", "tiny", "tiny.html")) as f:
        assert 'class="late-penalty"' not in f.read()


def test_nbgrader_zero_penalty_setting_is_honoured(tmp_path):
    """nbgrader's documented `c.LateSubmissionPlugin.penalty_method = "zero"` reaches the
    course's plugin, as nbgrader's AssignLatePenalties makes it at grading."""
    from nbgrader.preprocessors import AssignLatePenalties
    from course_lib.grading import late
    course = make_tiny_course(str(tmp_path / "course"))
    with open(course.path("nbgrader_config.py"), "a") as f:
        f.write('\nc.LateSubmissionPlugin.penalty_method = "zero"\n')
    config = type(course)(course.root).config
    assigner = AssignLatePenalties(config=config)
    assigner.init_plugin()
    assert assigner.plugin_inst.late_submission_penalty("late", 2.5, 60.0) == 2.5
    assert late.policy(config) == "late work scores 0"


def test_the_lms_table_has_one_row_per_student(graded):
    root, _ = graded
    with open(os.path.join(root, "grades_by_student.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["Student"] for r in rows] == ["Points Possible", "extended", "late", "ontime"]
    assert {r["Student"]: float(r["tiny"]) for r in rows} == pytest.approx(
        {"Points Possible": 3, "extended": 3, "late": 2.4, "ontime": 3})
    assert all(r["Total"] == r["tiny"] and r["Missing"] == "" for r in rows)
    assert os.path.getsize(os.path.join(root, "grades.png")) > 1000
