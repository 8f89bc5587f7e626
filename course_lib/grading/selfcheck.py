"""`course check NOTEBOOK`: a learner grades their own notebook with the hidden tests.

It runs the instructor's pipeline on a throwaway course (nbgrader release, then `course grade`
for one student), so a learner sees exactly what an instructor would; the notebook may live
anywhere under any name: its assignment is recognised from its cells. The sandbox is used
where bubblewrap exists; elsewhere (macOS, Windows) the kernel runs unsandboxed, which is fine
here: a learner can only fool themselves.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import nbformat

from course_lib.grading import cells, pipeline
from course_lib.grading.course import CONFIG_FILE, Course, find_root
from course_lib.grading.release import release
from course_lib.grading.sandbox import bwrap_available


def recognise(nb, course_root: str) -> tuple[str, str]:
    """(assignment, notebook) whose source cells the submitted notebook shares most."""
    ids = cells.grade_ids(nb)
    best, best_overlap = None, 0
    source = os.path.join(course_root, "source")
    for a in sorted(os.listdir(source)):
        for f in sorted(os.listdir(os.path.join(source, a))) if os.path.isdir(os.path.join(source, a)) else []:
            if f.endswith(".ipynb"):
                theirs = cells.grade_ids(nbformat.read(os.path.join(source, a, f), as_version=4))
                overlap = len(ids & theirs)
                if overlap > best_overlap:
                    best, best_overlap = (a, f[:-6]), overlap
    if best is None:
        raise SystemExit("this notebook shares no graded cells with any assignment of the course")
    return best


def check(path: str, root: str | None = None, sandbox=None, verbose=False, keep=False) -> int:
    root = root or find_root()
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:
        raise SystemExit(f"{path} is not a readable notebook: {e}") from None
    assignment, notebook = recognise(nb, root)
    scratch = tempfile.mkdtemp(prefix="course-check-")
    try:
        shutil.copy(os.path.join(root, CONFIG_FILE), scratch)
        shutil.copytree(os.path.join(root, "source", assignment),
                        os.path.join(scratch, "source", assignment))
        os.environ.pop("COURSE_DB_URL", None)
        course = Course(scratch)
        release(course, assignment)
        folder = course.path("submitted", "me", assignment)
        os.makedirs(folder)
        shutil.copy(path, os.path.join(folder, f"{notebook}.ipynb"))
        if sandbox is None:  # a learner's own notebook: the sandbox where there is one
            sandbox = bwrap_available()
        print(f"checking {path} as {assignment}/{notebook}.ipynb "
              + ("(sandboxed) ..." if sandbox else "(unsandboxed: bubblewrap is not available "
                 "here; fine for your own notebook) ..."))
        report = pipeline.grade(course, assignment, workers=1, sandbox=sandbox, progress=False)
        cells = pipeline.scores(course, assignment).get(("me", assignment), {})
        order, messages = _messages(course.path("autograded", "me", assignment,
                                                f"{notebook}.ipynb"))
        cells = dict(sorted(cells.items(), key=lambda kv: order.get(kv[0], len(order))))
        print(_table(cells, messages, verbose))
        for outcome in report.outcomes:
            for reason in outcome.reasons:
                print(f"note: {reason}")
        earned = sum(s for s, _ in cells.values())
        possible = sum(m for _, m in cells.values())
        print(f"\ntotal: {earned:g}/{possible:g}")
        return 0 if cells and earned == possible else 1
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)


def _messages(autograded_path: str) -> tuple[dict, dict]:
    """Each graded cell's position and failure message, from the autograded notebook."""
    order, out = {}, {}
    if not os.path.exists(autograded_path):
        return order, out
    for i, cell in enumerate(nbformat.read(autograded_path, as_version=4).cells):
        gid = cells.grade_id(cell)
        if gid:
            order[gid] = i
        for o in cell.get("outputs", []):
            if gid and o.get("output_type") == "error":
                out[gid] = o.get("evalue") or o.get("ename")
    return order, out


def _table(cells: dict, messages: dict, verbose: bool) -> str:
    width = max([len(q) for q in cells] + [8])
    lines = [f"{'question'.ljust(width)}  points  message"]
    first_failure_shown = False
    for q, (earned, possible) in cells.items():
        msg = ""
        if earned < possible:
            msg = messages.get(q, "no output (did an earlier cell fail?)")
            if not verbose and first_failure_shown:
                msg = msg.split(". ")[0][:90]
            first_failure_shown = True
        lines.append(f"{q.ljust(width)}  {earned:g}/{possible:g}".ljust(width + 10) + f"  {msg}")
    return "\n".join(lines)
