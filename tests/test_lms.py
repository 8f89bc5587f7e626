"""Submissions from an LMS: a Canvas and a Moodle zip through `nbgrader zip_collect`, then
`course grade`. The file-name pattern is the course's own (nbgrader_config.py)."""
import glob
import os
import subprocess
import sys
import zipfile

import pytest

from course_lib.grading import pipeline
from course_lib.grading.lms import control_characters, id_warnings, student_id
from harness import (CORRECT, make_course, make_tiny_course, release_path, source_path,
                     submission, submit)

BIN = os.path.dirname(sys.executable)
ENV = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"])
ASSIGNMENT = "01_chain_rule"

# name in the zip -> the student id it must become
CANVAS_SOLVED = "student_name_12345_67890_chain_rule.ipynb"
CANVAS_LATE = "doejane_LATE_23456_78901_chain_rule.ipynb"
MOODLE_BLANK = "Full Name_34567_assignsubmission_file_chain_rule.ipynb"


def test_student_ids_from_lms_names():
    assert student_id("Full Name", "34567") == "full_name_34567"
    assert student_id("student_name") == "student_name"
    assert student_id("  Zoë O'Neil ") == "zoë_o_neil"
    assert student_id("王芳", "10004") == "王芳_10004"
    assert student_id("Jane Doe", "1") != student_id("Jane-Doe", "2")
    assert student_id("★ ★") and student_id("★ ★") != student_id("☆")  # never empty


def test_look_alike_and_mixed_script_ids_are_flagged():
    warnings = id_warnings(["honest_a", "h\u043enest_a", "王芳_10004", "jane_doe_1"])
    assert len(warnings) == 2, warnings
    assert "mixes scripts (CYRILLIC, LATIN)" in warnings[0] and "U+043E" in warnings[1]
    assert id_warnings(["honest_a", "honest_b", "王芳_10004", "παπαδόπουλοσ_3"]) == []
    assert control_characters("Bad\nName") == ["U+000A '\\n'"]


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
    assert submitted == {s: ["chain_rule.ipynb"] for s in
                         ("student_name_12345", "doejane_23456", "full_name_34567")}, submitted

    _run(os.path.join(BIN, "course"), "--root", root, "grade", ASSIGNMENT, "--quiet", cwd=root)
    totals = {student: (sum(s for s, _ in cells.values()), sum(m for _, m in cells.values()))
              for (student, _), cells in pipeline.scores(course, ASSIGNMENT).items()}
    assert set(totals) == {"student_name_12345", "doejane_23456", "full_name_34567"}
    full = totals["student_name_12345"][1]
    assert full > 0
    assert totals == {"student_name_12345": (full, full), "doejane_23456": (0.0, full),
                      "full_name_34567": (0.0, full)}


# A class whose names nbgrader's plugin used to lose: (name in the zip, id, solved?)
MOODLE = [("王芳_10004_assignsubmission_file_tiny.ipynb", "王芳_10004", True),
          ("李雷_10005_assignsubmission_file_tiny.ipynb", "李雷_10005", False),
          ("Jane Doe_10001_assignsubmission_file_tiny.ipynb", "jane_doe_10001", True),
          ("Jane-Doe_10002_assignsubmission_file_tiny.ipynb", "jane_doe_10002", False),
          ("h\u043enest a_10007_assignsubmission_file_tiny.ipynb", "h\u043enest_a_10007", True)]
# a second download holding Jane Doe's file again (another content): both are kept
MOODLE_AGAIN = [("Jane Doe_10001_assignsubmission_file_tiny.ipynb", "jane_doe_10001-2", False)]
CANVAS = [("zhangwei_LATE_20001_30001_tiny.ipynb", "zhangwei_20001", True),
          ("παπαδόπουλος_20003_30003_tiny.ipynb", "παπαδόπουλοσ_20003", False)]
REFUSED = "Bad\nName_10003_assignsubmission_file_tiny.ipynb"
PLAIN = [("honest_a", True), ("h\u043enest_a", False)]  # plain copies into submitted/


@pytest.mark.slow
def test_every_name_reaches_grading_as_itself(tmp_path):
    root = str(tmp_path / "course")
    course = make_tiny_course(root)
    solved = str(tmp_path / "solved.ipynb")
    import nbformat
    nbformat.write(submission(CORRECT), solved)
    blank = course.path("release", "tiny", "tiny.ipynb")
    archive = os.path.join(root, "downloaded", "tiny", "archive")
    os.makedirs(archive)
    for zip_name, entries in (("moodle.zip", MOODLE + [(REFUSED, None, False)]),
                              ("moodle_again.zip", MOODLE_AGAIN), ("canvas.zip", CANVAS)):
        with zipfile.ZipFile(os.path.join(archive, zip_name), "w") as z:
            for name, _, good in entries:
                z.write(solved if good else blank, name)
    for student, good in PLAIN:
        submit(course, student, "tiny", nbformat.read(solved if good else blank, as_version=4),
               name="tiny.ipynb")

    collected = _run(os.path.join(BIN, "nbgrader"), "zip_collect", "tiny", cwd=root)
    log = collected.stdout + collected.stderr
    expected = {sid: good for _, sid, good in MOODLE + MOODLE_AGAIN + CANVAS} | dict(PLAIN)
    submitted = {s: os.listdir(os.path.join(root, "submitted", s, "tiny"))
                 for s in os.listdir(os.path.join(root, "submitted"))}
    assert submitted == {sid: ["tiny.ipynb"] for sid in expected}, (submitted, log)
    # the run said what it did: the refused name and why, the second claim, the mixed script
    assert "Refused 'Bad\\nName_10003" in log and "U+000A" in log, log
    assert "Two files claim student id 'jane_doe_10001'" in log and "'jane_doe_10001-2'" in log
    assert "mixes scripts (CYRILLIC, LATIN)" in log
    assert "王芳_10004" in log

    graded = _run(os.path.join(BIN, "course"), "grade", "tiny", "--quiet", cwd=root)
    out = graded.stdout
    assert f"graded {len(expected)}, failed 0" in out, out
    assert "'h\u043enest_a' mixes scripts" in out and "U+043E" in out
    assert "'honest_a' (all ASCII) and 'h\u043enest_a'" in out, out
    totals = {student: sum(s for s, _ in cells.values())
              for (student, _), cells in pipeline.scores(course, "tiny").items()}
    assert totals == {sid: 3.0 if good else 0.0 for sid, good in expected.items()}, totals


def test_a_zip_bomb_in_a_download_stops_at_the_budget(tmp_path):
    """A student hands in a zip of zeros (3 MB unpacked, a few KB packed) beside their notebook,
    one with a member that climbs out, and a timestamp.txt: zip_collect extracts the notebook,
    stops at the budget (1 MB here) saying why, writes nothing outside extracted/ and takes no
    timestamp.txt from the student (nbgrader collects .ipynb only)."""
    import io
    import nbformat
    root = str(tmp_path / "course")
    make_tiny_course(root)
    with open(os.path.join(root, "nbgrader_config.py"), "a") as f:
        f.write("\nc.BoundedExtractor.max_bytes = 1 << 20\n")
    bomb, climber = io.BytesIO(), io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.bin", b"\0" * (3 << 20))
    with zipfile.ZipFile(climber, "w") as z:
        z.writestr("../../../../escaped.txt", "out")
    archive = os.path.join(root, "downloaded", "tiny", "archive")
    os.makedirs(archive)
    with zipfile.ZipFile(os.path.join(archive, "canvas.zip"), "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("doejane_12345_67890_tiny.ipynb", nbformat.writes(submission(CORRECT)))
        z.writestr("doejane_12345_67890_climb.zip", climber.getvalue())
        z.writestr("doejane_12345_67890_timestamp.txt", "2000-01-01 00:00:00")
        z.writestr("doejane_12345_67890_bomb.zip", bomb.getvalue())
    collected = _run(os.path.join(BIN, "nbgrader"), "zip_collect", "tiny", cwd=root)
    log = collected.stdout + collected.stderr
    extracted = os.path.join(root, "downloaded", "tiny", "extracted")
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(extracted) for f in fs)
    assert size < 1 << 20, (size, log)
    assert "would pass the budget of 1048576 bytes" in log, log
    assert "its path leaves the archive's folder" in log, log
    assert not glob.glob(str(tmp_path / "**" / "escaped.txt"), recursive=True)
    assert os.listdir(os.path.join(root, "submitted", "doejane_12345", "tiny")) == ["tiny.ipynb"]
