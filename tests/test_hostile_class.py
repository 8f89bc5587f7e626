"""A hostile class: honest students and one submission per kind of trouble, graded in one run.

Small limits keep it quick. Honest students keep full marks; every attacker gets 0 or is
marked failed, with a reason; the run ends and reports failure; nothing an attacker did
reaches another student, the host's disk, the grader's memory or a browser.
"""
import json
import os
import stat

import nbformat
import pytest

from course_lib.grading import feedback, pipeline
from course_lib.grading.sandbox import Limits, bwrap_available
from harness import CORRECT, WRONG, make_tiny_course, submission

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed")]

LIMITS = Limits(cell_timeout=5, notebook_timeout=40, memory_bytes=768 << 20,
                scratch_bytes=64 << 20, output_total_bytes=2 << 20)


def _with_meta(nb, index, meta):
    nb.cells[index].metadata["nbgrader"] = meta
    return nb


def _solution_index(nb):
    return next(i for i, c in enumerate(nb.cells)
                if c.metadata.get("nbgrader", {}).get("grade_id") == "square_grad")


def attackers():
    wrong = submission(WRONG)
    k = _solution_index(wrong)
    return {
        "meta_not_a_dict": _with_meta(submission(WRONG), k, "x"),
        "meta_points_abc": _with_meta(submission(WRONG), k, {
            "grade_id": "square_grad", "grade": True, "solution": True, "points": "abc"}),
        "meta_markdown_id": _with_meta(submission(WRONG, ["x = 1"]), 1, {
            "grade_id": "intro", "grade": True, "solution": False, "locked": True,
            "points": 5, "schema_version": 3}),
        "lone_surrogate": submission(WRONG + "# \ud800\n"),
        "ignore_interrupt": submission(WRONG, ["""
import signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    try:
        time.sleep(0.1)
    except KeyboardInterrupt:
        pass
"""]),
        "slow_cells": submission(WRONG, ["import time\ntime.sleep(4)"] * 14),
        "fill_disk": submission(WRONG, ["""
chunk = b'x' * (1 << 20)
with open('filler.bin', 'wb') as f:
    try:
        while True:
            f.write(chunk)
    except OSError as e:
        print('stopped:', e)
"""]),
        "fork_memory": submission(WRONG, ["""
import os, time
for _ in range(3):
    if os.fork() == 0:
        hog = bytearray(400 << 20)
        for i in range(0, len(hog), 4096):
            hog[i] = 1
        time.sleep(20)
        os._exit(0)
time.sleep(8)
"""]),
        "message_flood": submission(WRONG, [
            "from IPython.display import publish_display_data\n"
            "publish_display_data({'text/plain': 'x' * (40 << 20)})"]),
        "output_flood": submission(WRONG, ["print('y' * 900_000)"] * 12),
        "channel_flood": submission(WRONG, ["""
import os
import course_lib.channel.kernel as K
def serve(folder, session):
    out = os.path.join(folder, 'out')
    for i in range(20000):
        open(os.path.join(out, f'junk-{i}'), 'w').close()
    with open(os.path.join(out, f'{session}-0.msg'), 'wb') as f:
        f.truncate(300 << 20)
K.serve = serve
"""]),
        "dup_test_ids": _forged_test_copies(),
        "points_forged": _forged_points(),
        "tests_as_solutions": _tests_as_solutions(),
        "kernel_bash": _other_kernel(WRONG),
        **{name: submission(WRONG) for name in EXTRA_FILES},
        "live_html": _with_markdown(submission(WRONG), '<img src=x onerror="alert(1)"> '
                                    '<script>alert(2)</script> [x](javascript:alert(3))'),
    }


def _forged_test_copies():
    """Copies of both test cells (same grade_id, same metadata) that pass trivially, put before
    the real ones."""
    nb = submission(WRONG)
    tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade", False)]
    for real in tests:
        fake = nbformat.from_dict(json.loads(json.dumps(real)))
        fake.source, fake.id = "pass", real.id  # a cell id collision too
        nb.cells.insert(1, fake)
    return nb


def _forged_points():
    """The solution cell made a graded cell worth 100, and a bonus test cell of its own."""
    nb = submission(WRONG)
    nb.cells[_solution_index(nb)].metadata["nbgrader"].update(grade=True, points=100)
    nb.cells.append(nbformat.v4.new_code_cell("pass", metadata={"nbgrader": {
        "grade_id": "bonus", "grade": True, "solution": False, "locked": False, "points": 100,
        "schema_version": 3}}))
    return nb


def _tests_as_solutions():
    """Every test cell turned into an unlocked solution cell holding `pass`."""
    nb = submission(WRONG)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            meta.update(grade=False, solution=True, locked=False)
            cell.source = "pass"
    return nb


def _other_kernel(solution):
    """A notebook whose metadata names a bash kernel."""
    nb = submission(solution)
    nb.metadata["kernelspec"] = {"name": "bash", "display_name": "Bash", "language": "bash"}
    nb.metadata["language_info"] = {"name": "bash"}
    return nb


# beside the notebook: files whose names or contents attack the grader
EXTRA_FILES = {
    "ts_garbage": {"timestamp.txt": "not a date"},
    "ts_year_99999": {"timestamp.txt": "99999-01-01 00:00:00"},
    "terminal_escapes": {"\x1b[2K\x1b[1Aaaa_honest tiny [graded] 3 of 3\x1b]0;owned\x07.txt": "",
                         "notes\nforged: all good\u202etxt.exe": ""},
}


def _with_markdown(nb, text):
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(text))
    return nb


def _put(course, student, nb, name="tiny.ipynb"):
    folder = course.path("submitted", student, "tiny")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
        f.write(json.dumps(nbformat.from_dict(nb), ensure_ascii=True))  # keeps a lone surrogate
    return folder


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = make_tiny_course(str(tmp_path_factory.mktemp("hostile")))
    for honest in ("aaa_honest", "zzz_honest"):
        _put(course, honest, submission(CORRECT))
    for name, nb in attackers().items():
        _put(course, name, nb)
    for name, files in EXTRA_FILES.items():
        for filename, text in files.items():
            with open(course.path("submitted", name, "tiny", filename), "w") as f:
                f.write(text)
    _put(course, "bash_but_honest", _other_kernel(CORRECT))
    source = course.path("source", "tiny", "tiny.ipynb")
    os.makedirs(course.path("submitted", "symlink_notebook", "tiny"))
    os.symlink(source, course.path("submitted", "symlink_notebook", "tiny", "tiny.ipynb"))
    folder = _put(course, "symlink_timestamp", submission(CORRECT))  # late work, "on time"
    course.secret()
    os.symlink(course.path(".grading_secret"), os.path.join(folder, "timestamp.txt"))
    os.makedirs(course.path("submitted", "symlink_folder"))
    os.symlink(os.path.dirname(source), course.path("submitted", "symlink_folder", "tiny"))
    report = pipeline.grade(course, "tiny", workers=2, sandbox=True, limits=LIMITS,
                            progress=False)
    pages = feedback.generate(course, "tiny")
    return {"course": course, "report": report, "scores": pipeline.scores(course, "tiny"),
            "pages": pages}


def _total(graded, student):
    cells = graded["scores"].get((student, "tiny"), {})
    return sum(s for s, _ in cells.values())


def _outcome(graded, student):
    return next(o for o in graded["report"].outcomes if o.student == student)


def _reasons(graded, student):
    return " ".join(_outcome(graded, student).reasons)


def test_honest_students_keep_full_marks(graded):
    for honest in ("aaa_honest", "zzz_honest"):
        assert _total(graded, honest) == 3.0, _reasons(graded, honest)
        assert _outcome(graded, honest).status == "graded"


ATTACKERS = sorted(attackers()) + ["symlink_notebook", "symlink_timestamp", "symlink_folder"]


@pytest.mark.parametrize("attacker", ATTACKERS)
def test_every_attacker_gets_nothing_or_fails(graded, attacker):
    outcome = _outcome(graded, attacker)
    assert outcome.status == "failed" or _total(graded, attacker) == 0.0, graded["scores"].get(
        (attacker, "tiny"))


@pytest.mark.parametrize("attacker,words", [
    ("meta_not_a_dict", "graded as an ordinary cell"),
    ("meta_points_abc", "malformed points"),
    ("meta_markdown_id", "claimed to be the course's markdown cell"),
    ("lone_surrogate", "not valid Unicode"),
    ("ignore_interrupt", "ignored the interrupt"),
    ("slow_cells", "budget of 40 s"),
    ("output_flood", "later output was left out"),
    ("symlink_notebook", "not a regular file"),
    ("symlink_timestamp", "timestamp.txt is not a regular file"),
    ("symlink_folder", "is a link"),
    ("ts_garbage", "timestamp.txt holds no date nbgrader can read (not a date"),
    ("ts_year_99999", "year 99999 is out of range"),
])
def test_each_gets_a_reason_that_names_it(graded, attacker, words):
    assert words in _reasons(graded, attacker), _reasons(graded, attacker)


def test_a_notebook_naming_another_kernel_still_runs_python(graded):
    """Its kernelspec says bash: the sandbox starts the course's Python kernel all the same
    (correct code scores in full), and autograded/ keeps the course's kernelspec."""
    assert _total(graded, "bash_but_honest") == 3.0, _reasons(graded, "bash_but_honest")
    nb = nbformat.read(graded["course"].path("autograded", "bash_but_honest", "tiny",
                                             "tiny.ipynb"), as_version=4)
    assert nb.metadata.kernelspec.name == "python3"


def test_file_names_cannot_rewrite_the_instructors_terminal(graded):
    """Escape sequences, a newline and a bidi override in handed-in file names are printed
    escaped: one line per reason, no control character."""
    summary = graded["report"].summary()
    assert "terminal_escapes" in summary and "\\x1b[2K" in summary and "\\u202e" in summary
    assert not [ch for ch in summary if ch != "\n" and (ord(ch) < 32 or ch == "\u202e")]
    assert not [line for line in summary.splitlines() if line.startswith("forged")]


def test_the_run_ends_and_reports_failure(graded):
    report = graded["report"]
    assert report.count("failed") >= 1
    assert "symlink_folder/tiny [failed]" in report.summary()


def test_no_secret_is_copied_and_grading_files_are_private(graded):
    course = graded["course"]
    with open(course.path(".grading_secret"), "rb") as f:
        secret = f.read()
    for dirpath, _, files in os.walk(course.path(pipeline.CACHE)):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                assert secret not in f.read(), os.path.join(dirpath, name)
    for path in (course.path("gradebook.db"), course.path(pipeline.CACHE),
                 course.path("autograded", "aaa_honest", "tiny", "tiny.ipynb")):
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0, path


def test_outputs_stay_small(graded):
    path = graded["course"].path("autograded", "output_flood", "tiny", "tiny.ipynb")
    assert os.path.getsize(path) < 4 * LIMITS.output_total_bytes
    path = graded["course"].path("autograded", "message_flood", "tiny", "tiny.ipynb")
    assert os.path.getsize(path) < 4 * LIMITS.output_total_bytes


def test_feedback_runs_no_student_script(graded):
    page = next(p for p in graded["pages"] if "live_html" in p)
    html = open(page).read()
    assert "onerror" not in html and "alert(2)" not in html and "javascript:alert" not in html
