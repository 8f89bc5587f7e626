"""`course check NOTEBOOK`: a learner grades their own notebook with the hidden tests.

It runs the instructor's pipeline on a throwaway course (nbgrader release, then `course grade`
for one student), so a learner sees exactly what an instructor would; the notebook may live
anywhere under any name: its assignment is recognised from its cells. The sandbox is used
where bubblewrap exists; elsewhere (macOS, Windows) the kernel runs unsandboxed, which is fine
here: a learner can only fool themselves.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import textwrap

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


def check(path: str, root: str | None = None, sandbox=None, verbose=False, keep=False,
          only=()) -> int:
    root = root or find_root()
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:
        raise SystemExit(f"{path} is not a readable notebook: {e}") from None
    assignment, notebook = recognise(nb, root)
    source_nb = nbformat.read(os.path.join(root, "source", assignment, f"{notebook}.ipynb"),
                              as_version=4)
    selected = select_tests(source_nb, only) if only else ()
    scratch = tempfile.mkdtemp(prefix="course-check-")
    try:
        os.environ.pop("COURSE_DB_URL", None)
        course = _released_copy(root, assignment, scratch)
        folder = course.path("submitted", "me", assignment)
        os.makedirs(folder)
        shutil.copy(path, os.path.join(folder, f"{notebook}.ipynb"))
        if sandbox is None:  # a learner's own notebook: the sandbox where there is one
            sandbox = bwrap_available()
        what = f" (only {', '.join(only)}: {len(selected)} test cells)" if only else ""
        print(f"checking {path} as {assignment}/{notebook}.ipynb{what} "
              + ("(sandboxed) ..." if sandbox else "(unsandboxed: bubblewrap is not available "
                 "here; fine for your own notebook) ..."))
        report = pipeline.grade(course, assignment, workers=1, sandbox=sandbox, progress=False,
                                only=selected)
        cells = pipeline.scores(course, assignment).get(("me", assignment), {})
        order, messages = _messages(course.path("autograded", "me", assignment,
                                                f"{notebook}.ipynb"))
        cells = {q: v for q, v in sorted(cells.items(), key=lambda kv: order.get(kv[0], len(order)))
                 if not selected or q in selected}
        print(render(cells, messages, verbose, exercises(source_nb)))
        for outcome in report.outcomes:
            for reason in outcome.reasons:
                print(f"note: {reason}")
        earned = sum(s for s, _ in cells.values())
        possible = sum(m for _, m in cells.values())
        return 0 if cells and earned == possible else 1
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)


# ---- which tests an exercise has -------------------------------------------------------------

def exercises(nb) -> list[str]:
    """The names of the notebook's exercises: its solution cells (named after what they define)."""
    return [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("solution")]


def _test_cells(nb):
    return [(c.metadata["nbgrader"]["grade_id"], c.source) for c in nb.cells
            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
            and not c.metadata["nbgrader"].get("solution")]


def select_tests(nb, names) -> tuple:
    """Test ids of the exercises `names`: tests named after one (`test_<name>`, `test_<name>_*`,
    but not those of a longer exercise name such as `Tensor_graph` for `Tensor`), else the test
    cells whose text uses the name."""
    tests = _test_cells(nb)
    known = exercises(nb)
    chosen = []
    for name in names:
        mine = [gid for gid, _ in tests if exercise_of(gid, known) == name]
        mine = mine or [gid for gid, text in tests if re.search(rf"\b{re.escape(name)}\b", text)]
        if not mine:
            raise SystemExit(f"--only {name}: no exercise of this notebook is called {name!r}; "
                             f"its exercises: {', '.join(exercises(nb))}")
        chosen += [gid for gid in mine if gid not in chosen]
    return tuple(chosen)


def exercise_of(test_id: str, names) -> str:
    """The exercise a test belongs to: the longest exercise name it is named after."""
    base = test_id.removeprefix("test_")
    fits = [n for n in names if base == n or base.startswith(n + "_")]
    return max(fits, key=len) if fits else base.removesuffix("_hidden")


# ---- a released copy of the assignment, made once per version of its source -----------------

def _released_copy(root: str, assignment: str, scratch: str) -> Course:
    """A throwaway course holding `assignment` released (nbgrader generate_assignment, some
    seconds): cached under .course_cache/check/ by a hash of the source and the config."""
    shutil.copy(os.path.join(root, CONFIG_FILE), scratch)
    shutil.copytree(os.path.join(root, "source", assignment),
                    os.path.join(scratch, "source", assignment))
    course = Course(scratch)
    cache = os.path.join(root, pipeline.CACHE, "check", _source_hash(scratch, assignment))
    if os.path.exists(os.path.join(cache, "gradebook.db")):
        shutil.copy(os.path.join(cache, "gradebook.db"), scratch)
        shutil.copytree(os.path.join(cache, "release"), os.path.join(scratch, "release"))
        return course
    release(course, assignment)
    try:
        tmp = cache + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        shutil.copy(os.path.join(scratch, "gradebook.db"), tmp)
        shutil.copytree(os.path.join(scratch, "release"), os.path.join(tmp, "release"))
        shutil.rmtree(cache, ignore_errors=True)
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only course: no cache, the next check releases again
    return course


def _source_hash(scratch: str, assignment: str) -> str:
    h = hashlib.sha256()
    with open(os.path.join(scratch, CONFIG_FILE), "rb") as f:
        h.update(f.read())
    folder = os.path.join(scratch, "source", assignment)
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            h.update(os.path.relpath(path, folder).encode() + b"\0")
            with open(path, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()[:24]


# ---- the report ------------------------------------------------------------------------------

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


def render(cells: dict, messages: dict, verbose: bool, names=(), width: int | None = None) -> str:
    """Every failing test with its whole message (wrapped), passing ones with -v, a summary."""
    width = width or max(40, shutil.get_terminal_size((100, 24)).columns)
    blocks = []
    for q, (earned, possible) in cells.items():
        passed = earned >= possible
        if passed and not verbose:
            continue
        head = f"{'PASS' if passed else 'FAIL'} {q}  {earned:g}/{possible:g}"
        if passed:
            blocks.append(head)
            continue
        message = messages.get(q, "no output (did an earlier cell fail?)")
        body = "\n".join(textwrap.fill(part, width, initial_indent="    ",
                                       subsequent_indent="    ", break_on_hyphens=False)
                         for part in message.splitlines() or [""])
        blocks.append(head + "\n" + body)
    earned = sum(s for s, _ in cells.values())
    possible = sum(m for _, m in cells.values())
    revisit = list(dict.fromkeys(exercise_of(q, names) for q, (s, m) in cells.items() if s < m))
    summary = f"score {earned:g}/{possible:g}"
    summary += f"; revisit: {', '.join(revisit)}" if revisit else "; everything passes"
    if not verbose and len(revisit) < len(cells):
        summary += " (-v lists the passing tests too)"
    return "\n".join(blocks + ["", summary]) if blocks else summary
