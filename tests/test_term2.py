"""A TA's whole term, round 2: two released assignments (and one written but never released),
due dates, six students (on time, late, with an extension, a resubmission, one the grader
scores by hand with extra credit and a comment through the formgrader's JSON API, one who
withdraws), grading, regrading, export and feedback. Every number must agree across
`course grade`'s table, grades.csv, grades_by_student.csv, the feedback pages and
`nbgrader export`, and nothing of the unreleased assignment or the withdrawn student appears."""
import csv
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.request
import uuid

import nbformat
import pytest

from course_lib.grading.sandbox import bwrap_available
from course_lib.hub.server import wait_http
from harness import CORRECT, REPO, WRONG, source_notebook, submission

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed")]

BIN = os.path.dirname(sys.executable)
ENV = {k: v for k, v in os.environ.items() if k not in ("COURSE_ROOT", "COURSE_DB_URL")}
ENV["PATH"] = BIN + os.pathsep + ENV["PATH"]
RELEASED = ("tiny", "tiny2")
UNRELEASED = "tiny3"
DUE = {"tiny": "2026-01-10 12:00:00 UTC", "tiny2": "2026-01-20 12:00:00 UTC"}
LATE_BY_A_DAY = {"tiny": "2026-01-11 12:00:01 UTC", "tiny2": "2026-01-21 12:00:01 UTC"}
COMMENT = "Your hidden-test answer is half right: the factor 2 is missing for shape ()."
# (student, assignment): (solution, late?) -- mia hands in only tiny, late
HAND_INS = {("ada", "tiny"): (CORRECT, False), ("ada", "tiny2"): (CORRECT, False),
            ("late", "tiny"): (CORRECT, True), ("late", "tiny2"): (CORRECT, False),
            ("ext", "tiny"): (CORRECT, True), ("ext", "tiny2"): (CORRECT, False),
            ("resub", "tiny"): (WRONG, False), ("resub", "tiny2"): (CORRECT, False),
            ("mia", "tiny"): (WRONG, True),
            ("gone", "tiny"): (CORRECT, False), ("gone", "tiny2"): (CORRECT, False)}
# what the term must end with: late 20 % (two started days); mia: visible 0 + 0.5 extra credit,
# hidden 1/2 by hand, 1.5 before the 20 % penalty
EXPECTED = {("ada", "tiny"): 3, ("ada", "tiny2"): 3, ("late", "tiny"): 2.4,
            ("late", "tiny2"): 3, ("ext", "tiny"): 3, ("ext", "tiny2"): 3,
            ("resub", "tiny"): 3, ("resub", "tiny2"): 3, ("mia", "tiny"): 1.2}


def run(root, *cmd):
    result = subprocess.run([os.path.join(BIN, cmd[0]), *cmd[1:]], cwd=root, env=ENV,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def hand_in(root, student, assignment, solution, late):
    folder = os.path.join(root, "submitted", student, assignment)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    nbformat.write(submission(solution), os.path.join(folder, f"{assignment}.ipynb"))
    with open(os.path.join(folder, "timestamp.txt"), "w") as f:
        f.write(LATE_BY_A_DAY[assignment] if late else "2026-01-01 09:00:00 UTC")


def table_rows(out) -> dict:
    """{(student, assignment): 'points/max [L]'} from `course grade`'s totals table."""
    lines = out[out.index("\nstudent"):].strip().splitlines()
    header = lines[0].split()[1:]
    rows = {}
    for line in lines[1:]:
        cells = re.findall(r"(\S+/\S+(?: L)?|-)", line)
        if not cells or not re.match(r"^\w+ ", line):
            continue
        rows.update({(line.split()[0], a): c for a, c in zip(header, cells)})
    return rows


class Formgrader:
    """nbgrader's formgrader in a Jupyter server on this course, spoken to as its pages do."""

    def __init__(self, root, tmp):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.token = uuid.uuid4().hex
        self.log = open(os.path.join(tmp, "formgrader.log"), "wb")
        env = dict(ENV, JUPYTER_RUNTIME_DIR=os.path.join(tmp, "runtime"))
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "jupyter"), "server", "--no-browser", "--ip=127.0.0.1",
             f"--port={self.port}", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={root}", "--allow-root"],
            cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        wait_http(self.url("/formgrader/api/status"), self.proc, "the formgrader", 90)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}" + ("&" if "?" in path else "?") + \
            f"token={self.token}"

    def get(self, path, raw=False):
        with urllib.request.urlopen(self.url(path), timeout=30) as r:
            body = r.read().decode()
        return body if raw else json.loads(body)

    def put(self, path, data):
        request = urllib.request.Request(self.url(path), data=json.dumps(data).encode(),
                                         method="PUT",
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.loads(r.read().decode())

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def grade_by_hand(fg):
    """mia/tiny: the hidden test 1 of 2 by hand, 0.5 extra credit on the visible one and a
    comment on her answer, each through the formgrader's API, as its grading page sends them."""
    (nb,) = [n for n in fg.get("/formgrader/api/submitted_notebooks/tiny/tiny")
             if n["student"] == "mia"]
    grades = {g["name"]: g for g in fg.get(f"/formgrader/api/grades?submission_id={nb['id']}")}
    fg.put(f"/formgrader/api/grade/{grades['test_square_grad_hidden']['id']}",
           {"manual_score": 1.0, "extra_credit": None})
    fg.put(f"/formgrader/api/grade/{grades['test_square_grad']['id']}",
           {"manual_score": None, "extra_credit": 0.5})
    (comment,) = [c for c in fg.get(f"/formgrader/api/comments?submission_id={nb['id']}")
                  if c["name"] == "square_grad"]
    fg.put(f"/formgrader/api/comment/{comment['id']}", {"manual_comment": COMMENT})


@pytest.fixture(scope="module")
def term(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("term2"))
    root = os.path.join(tmp, "course")
    for a in (*RELEASED, UNRELEASED):
        os.makedirs(os.path.join(root, "source", a))
        nbformat.write(source_notebook(), os.path.join(root, "source", a, f"{a}.ipynb"))
    shutil.copy(os.path.join(REPO, "nbgrader_config.py"), root)
    for a in RELEASED:
        run(root, "course", "release", a)
        run(root, "course", "due", a, DUE[a])
    for (student, a), (solution, late) in HAND_INS.items():
        hand_in(root, student, a, solution, late)
    run(root, "course", "extend", "ext", "tiny", "--days", "2")
    first = run(root, "course", "grade", "--quiet")
    fg = Formgrader(root, tmp)
    try:
        grade_by_hand(fg)
        hand_in(root, "resub", "tiny", CORRECT, False)           # the resubmission
        regrade = run(root, "course", "grade", "--quiet")
        run(root, "course", "feedback")                          # gone's page too, for now
        with open(os.path.join(root, "withdrawn.txt"), "w") as f:
            f.write("gone  # left in week 3\n")
        table = run(root, "course", "grade", "--quiet")
        run(root, "course", "feedback")
        run(root, "course", "export")
        run(root, "nbgrader", "export")
        pages = {"students": fg.get("/formgrader/api/students"),
                 "submissions": fg.get("/formgrader/api/submissions/tiny"),
                 "gradebook": fg.get("/formgrader/gradebook", raw=True)}
    finally:
        fg.close()
    return {"root": root, "first": first, "regrade": regrade, "table": table, "fg": pages}


def read_csv(root, name):
    with open(os.path.join(root, name)) as f:
        return list(csv.DictReader(f))


def grades_csv_totals(root) -> dict:
    totals = {}
    for row in read_csv(root, "grades.csv"):
        key = (row["student"], row["assignment"])
        totals[key] = totals.get(key, 0.0) + float(row["score"])
    return totals


def test_the_resubmission_was_graded_anew(term):
    assert table_rows(term["first"])[("resub", "tiny")] == "0/3"
    assert "notebooks: 1 ran" in term["regrade"], term["regrade"]
    assert table_rows(term["regrade"])[("resub", "tiny")] == "3/3"


def test_grades_csv_has_a_column_for_each_kind_of_point(term):
    rows = read_csv(term["root"], "grades.csv")
    assert list(rows[0]) == ["student", "assignment", "question", "max_score", "auto_score",
                             "manual_score", "extra_credit", "late_penalty", "score"]
    mia = {r["question"]: r for r in rows if r["student"] == "mia"}
    assert (mia["test_square_grad_hidden"]["auto_score"], mia["test_square_grad_hidden"]
            ["manual_score"], mia["test_square_grad_hidden"]["score"]) == ("0", "1", "1")
    assert (mia["test_square_grad"]["auto_score"], mia["test_square_grad"]["extra_credit"],
            mia["test_square_grad"]["score"]) == ("0", "0.5", "0.5")
    assert float(mia["late_penalty"]["late_penalty"]) == pytest.approx(-0.3)
    assert grades_csv_totals(term["root"]) == pytest.approx(EXPECTED)


def test_every_tool_gives_the_same_numbers(term):
    root = term["root"]
    ours = grades_csv_totals(root)
    table = table_rows(term["table"])
    assert {k: float(v.split("/")[0]) for k, v in table.items() if v != "-"} == \
        pytest.approx(ours)
    assert table[("mia", "tiny")] == "1.2/3 L" and table[("mia", "tiny2")] == "-"
    lms = {r["Student"]: r for r in read_csv(root, "grades_by_student.csv")}
    for (student, a), points in ours.items():
        assert float(lms[student][a]) == pytest.approx(points)
    theirs = {(r["student_id"], r["assignment"]): float(r["score"])
              for r in read_csv(root, "nbgrader_grades.csv")}
    assert theirs == pytest.approx({**ours, ("mia", "tiny2"): 0.0})
    for (student, a), points in ours.items():
        with open(os.path.join(root, "feedback", student, a, f"{a}.html")) as f:
            header = re.search(r"<h4>\S+ \(Score: ([\d.]+) / ([\d.]+)\)</h4>", f.read())
        assert float(header.group(1)) == pytest.approx(points), (student, a)


def test_the_lms_table_has_released_assignments_and_maximum_points(term):
    rows = read_csv(term["root"], "grades_by_student.csv")
    assert list(rows[0]) == ["Student", "tiny", "tiny2", "Total", "Missing"]
    assert rows[0]["Student"] == "Points Possible"
    assert (rows[0]["tiny"], rows[0]["tiny2"], rows[0]["Total"]) == ("3", "3", "6")
    mia = next(r for r in rows if r["Student"] == "mia")
    assert (mia["tiny2"], mia["Total"], mia["Missing"]) == ("0", "1.2", "tiny2")
    assert [r["Student"] for r in rows[1:]] == ["ada", "ext", "late", "mia", "resub"]


def test_the_feedback_page_names_what_the_grader_did(term):
    with open(os.path.join(term["root"], "feedback", "mia", "tiny", "tiny.html")) as f:
        page = f.read()
    toc = page.split('id="toc"')[1].split("</ol>")[0]
    assert "manual: 1.0/2.0, by the grader (the tests gave 0.0)" in toc, toc
    assert "extra credit: +0.5, by the grader" in toc, toc
    assert ("Points before the penalty 1.5, penalty -0.3, after 1.2 / 3.0" in toc
            and "Late by 1 day 0 h 1 min" in toc and "10 % of the score per started day" in toc)
    assert "Comment from the grader:</b> " + COMMENT.replace("'", "&#39;") in page


def test_nothing_of_the_withdrawn_student_or_the_unreleased_assignment(term):
    root = term["root"]
    for name in ("grades.csv", "grades_by_student.csv", "nbgrader_grades.csv"):
        with open(os.path.join(root, name)) as f:
            text = f.read()
        assert "gone" not in text and UNRELEASED not in text, name
    assert "gone" not in term["table"] and UNRELEASED not in term["table"]
    assert not os.path.exists(os.path.join(root, "feedback", "gone"))   # release_feedback's source
    assert "gone" not in {s["id"] for s in term["fg"]["students"]}
    assert "gone" not in {s["student"] for s in term["fg"]["submissions"]}
    assert "raw scores, before late penalties" in term["fg"]["gradebook"]
    assert "Withdrawn students" in term["fg"]["gradebook"]
