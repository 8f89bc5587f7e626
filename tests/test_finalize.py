"""Batched finalize gives today's gradebook and autograded/ cell for cell and byte for byte.

A class is set up once and copied: one copy is graded by `course grade` (finalizers in a pool,
the gradebook in batches), the other finalized from the same executions (the first copy's
cache) by nbgrader's Autograde converter one submission at a time, as before. Every row
nbgrader's tools read (grades, comments, needs_manual_grade, late penalties, timestamps) and
every file under autograded/ must be the same.
"""
import os
import shutil

import nbformat
import pytest

from course_lib.grading import late, pipeline
from course_lib.grading.course import Course
from course_lib.grading.sandbox import Limits, bwrap_available
from gradebooks import autograded, dump, reference_finalize
from harness import CORRECT, WRONG, make_course, make_tiny_course, submission

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed")]

LIMITS = Limits(cell_timeout=20, notebook_timeout=120)


def _without(nb, gid):
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != gid]
    return nb


def _meta(nb, gid, **meta):
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == gid:
            cell.metadata["nbgrader"].update(meta)
    return nb


def _markdown_answer(nb):
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "square_grad":
            cell.cell_type = "markdown"
            del cell["outputs"], cell["execution_count"]
    return nb


def _duplicate_answer(nb):
    index = next(i for i, c in enumerate(nb.cells)
                 if c.metadata.get("nbgrader", {}).get("grade_id") == "square_grad")
    nb.cells.insert(index, nbformat.from_dict(nb.cells[index]))
    return nb


HOSTILE = {
    "honest": submission(CORRECT),
    "wrong": submission(WRONG),
    "crash": submission(CORRECT + "import os\nos._exit(1)\n"),
    "deleted_test": _without(submission(CORRECT), "test_square_grad"),
    "points_abc": _meta(submission(WRONG), "square_grad", points="abc", grade=True),
    "points_claimed": _meta(submission(CORRECT), "test_square_grad", points=50),
    "markdown_answer": _markdown_answer(submission(CORRECT)),
    "duplicate_answer": _duplicate_answer(submission(CORRECT)),
    "live_html": submission(CORRECT, ["from IPython.display import HTML, display\n"
                                      "display(HTML('<script>alert(1)</script>'))\n"
                                      "print('<b>bold</b>')"]),
    "long_output": submission(CORRECT, ["print('\\n'.join(map(str, range(3000))))"]),
    "stderr": submission(CORRECT, ["import sys\nprint('careful', file=sys.stderr)"]),
    "late": submission(CORRECT),
    "late_extended": submission(CORRECT),
    "empty_timestamp": submission(CORRECT),
    "manual": submission(CORRECT),
}
FILES = {  # submissions that are not (only) a tiny.ipynb
    "renamed": {"tiny (1).ipynb": nbformat.writes(submission(CORRECT))},
    "nothing": {"notes.txt": "I could not do it"},
    "unreadable": {"tiny.ipynb": "{ not json"},
    "late": {"timestamp.txt": "2030-01-03 12:00:00"},
    "late_extended": {"timestamp.txt": "2030-01-03 12:00:00"},
    "empty_timestamp": {"timestamp.txt": ""},
}


def hostile_class(root):
    course = make_tiny_course(root)
    for student, nb in HOSTILE.items():
        folder = course.path("submitted", student, "tiny")
        os.makedirs(folder, exist_ok=True)
        nbformat.write(nb, os.path.join(folder, "tiny.ipynb"))
    for student, files in FILES.items():
        folder = course.path("submitted", student, "tiny")
        os.makedirs(folder, exist_ok=True)
        for name, text in files.items():
            with open(os.path.join(folder, name), "w") as f:
                f.write(text)
    late.set_due(course, "tiny", "2030-01-01 00:00:00")
    late.extend(course, "late_extended", "tiny", days=3)
    with course.gradebook() as gb:  # a TA's manual score from an earlier round
        gb.update_or_create_student("manual")
        gb.update_or_create_submission("tiny", "manual")
        gb.find_grade("test_square_grad_hidden", "tiny", "tiny", "manual").manual_score = 1.5
        gb.db.commit()
    course.secret()
    return course


def both_ways(tmp_path, make_class, assignment, **grading):
    """(course graded now, course finalized the old way from the same executions)."""
    now = make_class(str(tmp_path / "now"))
    shutil.copytree(now.root, tmp_path / "before", symlinks=True)
    before = Course(str(tmp_path / "before"))
    report = pipeline.grade(now, assignment, sandbox=True, progress=False, limits=LIMITS,
                            **grading)
    shutil.copytree(now.path(pipeline.CACHE, "results"),
                    before.path(pipeline.CACHE, "results"))
    reference_finalize(before, assignment, LIMITS)
    return now, before, report


def test_a_hostile_class_gets_todays_gradebook_and_files(tmp_path):
    now, before, report = both_ways(tmp_path, hostile_class, "tiny", workers=2, batch=4)
    # nbgrader's DeduplicateIds leaves the copy's metadata empty, which its own checks then
    # refuse: a failure, for that submission only, writing nothing (before as now)
    assert [o.student for o in report.outcomes if o.status != "graded"] == \
        ["duplicate_answer"], report.summary()
    rows = dump(now)
    assert rows == dump(before)
    assert autograded(now, cell_ids=False) == autograded(before, cell_ids=False)
    # the class is what it claims to be: each kind of row it exercises is there
    assert rows[("late", "tiny", "tiny")][0] == pytest.approx(0.9)  # 3 started days: 30 % of 3
    assert rows[("late_extended", "tiny", "tiny")][0] is None
    assert rows[("manual", "tiny", "tiny", "grade", "test_square_grad_hidden")][1:4:2] == \
        (1.5, True)  # the manual score kept, and flagged for review
    assert rows[("honest", "tiny", "tiny", "comment", "square_grad")] == (None, None)
    assert {s for (s, *_), v in rows.items() if _[1:] == ["tiny"] and v[1] == 3.0} >= {
        "honest", "renamed", "live_html", "long_output"}
    assert rows[("nothing", "tiny", "tiny")][1] == 0.0
    assert rows[("stderr", "tiny", "tiny")][1] == 3.0


def test_the_demo_class_gets_todays_gradebook_and_files(tmp_path):
    from course_lib.grading import demo

    def demo_class(root):
        course = make_course(root)
        demo.make_class(course)
        course.secret()
        return course

    now, before, report = both_ways(tmp_path, demo_class, None, workers=2)
    assert report.count("failed") == 0, report.summary()
    rows = dump(now)
    assert rows == dump(before)
    assert autograded(now, cell_ids=False) == autograded(before, cell_ids=False)
    assert len([k for k in rows if len(k) == 5 and k[3] == "grade"]) > 50


def test_an_execution_worker_imports_neither_nbgrader_nor_the_gradebook():
    import subprocess
    import sys
    code = ("import sys, course_lib.grading.runner\n"
            "print(sorted(m for m in ('nbgrader', 'nbconvert', 'sqlalchemy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
