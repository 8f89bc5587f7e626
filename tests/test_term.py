"""A term as a TA lives it: the demo class graded, then every `course` verb in its plain form
on a course folder with the stray files real folders hold (git's .gitkeep, macOS's .DS_Store,
a TA's notes)."""
import os
import subprocess
import sys

import pytest

from course_lib.cli import VERBS
from course_lib.grading.sandbox import bwrap_available
from harness import make_course

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed")]

COURSE = os.path.join(os.path.dirname(sys.executable), "course")
ENV = {k: v for k, v in os.environ.items() if k not in ("COURSE_ROOT", "COURSE_DB_URL")}
# verbs that need an argument by design; each is still run plain, and must say what it needs
NEEDS_ARGUMENT = {"check": "notebook", "cluster-certs": "folder", "due": "assignment",
                  "extend": "student"}
STRAY = ("autograded/.gitkeep", "autograded/.DS_Store", "submitted/.DS_Store",
         "submitted/notes.txt", "submitted/alice/.DS_Store",
         "submitted/alice/01_chain_rule/.DS_Store", "feedback/.DS_Store")


def course(root, *args):
    return subprocess.run([COURSE, *args], cwd=root, env=ENV, capture_output=True, text=True)


@pytest.fixture(scope="module")
def demo_class(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("term") / "course")
    make_course(root, assignments=("01_chain_rule",), release=False)
    result = course(root, "demo", "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    for path in STRAY:
        os.makedirs(os.path.dirname(os.path.join(root, path)), exist_ok=True)
        with open(os.path.join(root, path), "w") as f:
            f.write("stray\n")
    return root


@pytest.mark.parametrize("verb", list(VERBS))
def test_every_verb_in_its_plain_form(demo_class, verb):
    result = course(demo_class, verb)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    if verb in NEEDS_ARGUMENT:
        assert result.returncode == 2 and NEEDS_ARGUMENT[verb] in result.stderr, output
    else:
        assert result.returncode == 0, output
    assert "Warning" not in output, output   # no dependency's warnings reach the TA


def test_feedback_for_everyone_despite_stray_files(demo_class):
    result = course(demo_class, "feedback")
    assert result.returncode == 0, result.stdout + result.stderr
    for student in ("alice", "bob", "carol"):
        assert os.path.exists(os.path.join(demo_class, "feedback", student, "01_chain_rule",
                                           "chain_rule.html"))
    assert "wrote 3 feedback page(s)" in result.stdout


def test_course_outside_a_course_folder_fails_clearly(tmp_path):
    result = course(str(tmp_path), "grade")
    assert result.returncode != 0
    assert "no course found" in result.stderr and "--root" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_root_points_at_a_course(demo_class, tmp_path):
    result = course(str(tmp_path), "--root", demo_class, "export")
    assert result.returncode == 0, result.stderr
    assert os.path.exists(os.path.join(demo_class, "grades.csv"))


@pytest.mark.parametrize("args", [("grade", "--student", "nobody"),
                                  ("feedback", "--student", "nobody"),
                                  ("grade", "99_nothing"), ("feedback", "99_nothing"),
                                  ("export", "--exclude", "nobody")])
def test_unknown_students_and_assignments_are_errors(demo_class, args):
    result = course(demo_class, *args)
    assert result.returncode != 0 and "unknown" in result.stderr, result.stdout + result.stderr
    assert "graded 0" not in result.stdout


def test_regrade_says_what_ran_and_what_came_from_the_cache(demo_class):
    result = course(demo_class, "grade", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "notebooks: 0 ran, 3 from the cache" in result.stdout, result.stdout


def test_score_table_fits_a_terminal_and_follows_notebook_order(demo_class):
    result = course(demo_class, "grade", "--quiet")
    table = result.stdout[result.stdout.index("\nstudent"):]
    assert max(len(line) for line in table.splitlines()) <= 80, table
    assert "01_chain_rule" in table and "alice" in table
    verbose = course(demo_class, "grade", "--quiet", "-v").stdout
    questions = [line.split()[0] for line in verbose.splitlines() if line.startswith("test_")]
    from harness import read, source_path
    from course_lib.grading.cells import grade_ids_in_order
    assert questions == grade_ids_in_order(read(source_path("01_chain_rule"))), verbose
    assert max(len(line) for line in verbose[verbose.index("\nquestion"):].splitlines()) <= 100


def test_withdrawn_students_are_left_out(demo_class):
    with open(os.path.join(demo_class, "withdrawn.txt"), "w") as f:
        f.write("bob  # left in week 3\n")
    try:
        out = course(demo_class, "grade", "--quiet").stdout
        table = out[out.index("\nstudent"):]
        assert "bob" not in table and "alice" in table
        assert course(demo_class, "export").returncode == 0
        with open(os.path.join(demo_class, "grades.csv")) as f:
            text = f.read()
        assert "bob" not in text and "alice" in text
    finally:
        os.remove(os.path.join(demo_class, "withdrawn.txt"))


def test_a_resubmission_warns_of_a_manual_score_kept(demo_class):
    from course_lib.grading.course import Course
    c = Course(demo_class)
    with c.gradebook() as gb:
        grade = gb.find_submission("01_chain_rule", "carol").notebooks[0].grades[0]
        gid = grade.name
        grade.manual_score = grade.max_score
        gb.db.commit()
    folder = os.path.join(demo_class, "submitted", "carol", "01_chain_rule")
    (name,) = [f for f in os.listdir(folder) if f.endswith(".ipynb")]
    with open(os.path.join(folder, name)) as f:
        text = f.read()
    with open(os.path.join(folder, name), "w") as f:
        f.write(text.replace('"cells": [', '"cells": [{"cell_type": "markdown", "metadata": {}, '
                             '"source": "resubmitted"},', 1))
    result = course(demo_class, "grade", "--quiet", "--student", "carol")
    assert "notebooks: 1 ran, 0 from the cache" in result.stdout, result.stdout + result.stderr
    assert "manual score stays in place on " + gid in result.stdout, result.stdout
