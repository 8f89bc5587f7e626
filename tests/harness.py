"""Shared helpers for the test suite: notebooks, mutated submissions, throwaway courses."""
from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

import nbformat

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = {
    "01_chain_rule": "chain_rule",
    "02_manual_backprop": "manual_backprop",
    "03_mlp_backward": "mlp_backward",
    "04_autodiff_engine": "autodiff_engine",
    "05_attention_backward": "attention_backward",
    "06_forward_mode": "forward_mode",
}


def source_path(assignment: str) -> str:
    return os.path.join(REPO, "source", assignment, NOTEBOOKS[assignment] + ".ipynb")


def release_path(assignment: str) -> str:
    return os.path.join(REPO, "release", assignment, NOTEBOOKS[assignment] + ".ipynb")


def read(path: str):
    return nbformat.read(path, as_version=4)


def grade_id(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def cell_by_id(nb, gid):
    for cell in nb.cells:
        if grade_id(cell) == gid:
            return cell
    raise KeyError(gid)


def is_test(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return bool(meta.get("grade")) and not meta.get("solution") and cell.cell_type == "code"


def mutate(nb, gid: str, old: str, new: str):
    """A copy of `nb` whose cell `gid` has `old` replaced by `new` (which must occur)."""
    nb = nbformat.from_dict(nb)
    cell = cell_by_id(nb, gid)
    assert old in cell.source, f"{old!r} not in cell {gid}"
    cell.source = cell.source.replace(old, new)
    return nb


def replace_cell(nb, gid: str, source: str):
    nb = nbformat.from_dict(nb)
    cell_by_id(nb, gid).source = source
    return nb


def unsolved(nb, solution_ids):
    """`nb` with every listed solution region replaced by nbgrader's stub (a blank release)."""
    for gid in solution_ids:
        src = cell_by_id(nb, gid).source
        stub = re.sub(r"^([ \t]*)### BEGIN SOLUTION.*?### END SOLUTION",
                      r"\1# YOUR CODE HERE\n\1raise NotImplementedError()", src, flags=re.S | re.M)
        nb = replace_cell(nb, gid, stub)
    return nb


def apply_edits(nb, edits):
    """A copy of `nb` with each (cell, old, new) applied: `old` occurs once (text) or matches."""
    for gid, old, new in edits:
        src = cell_by_id(nb, gid).source
        if isinstance(old, re.Pattern):
            assert old.search(src), f"pattern not found in {gid}"
            nb = replace_cell(nb, gid, old.sub(lambda m: new, src, count=1))
        else:
            assert src.count(old) == 1, f"{old!r} is not once in {gid}: update this test"
            nb = mutate(nb, gid, old, new)
    return nb


@dataclass(frozen=True)
class Mistake:
    """A typical wrong answer: what to change, which test cells must lose points for it, and
    the words each of their messages must contain (in any case)."""

    id: str
    edits: list          # (solution cell, old text or re.Pattern, new text), in order
    failing: list        # the test cells that must lose points
    words: list          # words every failing cell's message contains
    also: frozenset = frozenset()  # cells built on the changed one: they may lose points too

    def __str__(self):
        return self.id  # the pytest id

    def applied(self, nb):
        return apply_edits(nb, self.edits)


def failures(scores: dict) -> dict:
    """{test cell: its message} for the cells that lost points."""
    return {k: err or "" for k, (s, m, err) in scores.items() if s < m}


def assert_caught(mistake: Mistake, scores: dict) -> dict:
    """The cells of `mistake` lost points with messages holding its words; no other cell
    (but those in `also`) did. Returns the failures."""
    failed = failures(scores)
    for gid in mistake.failing:
        assert gid in failed, f"{mistake}: {gid} keeps its points: {failed}"
        for word in mistake.words:
            assert word.lower() in failed[gid].lower(), f"{mistake}: {gid}: {word!r} not in: {failed[gid]}"
    others = set(failed) - set(mistake.failing) - set(mistake.also)
    assert not others, f"{mistake} also costs {sorted(others)}: {failed}"
    return failed


def run_in_process(nb, skip_untagged: bool = False) -> dict:
    """Execute a notebook's code cells in this process; {test grade_id: (score, max, error)}.

    Fast (no kernel): for checking typical mistakes. Test cells score all or nothing, as
    under nbgrader. `skip_untagged` skips ordinary cells (training loops, plots) for speed.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    namespace = {"__name__": "__main__"}
    scores = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if skip_untagged and grade_id(cell) is None:
            continue
        source = _strip_magics(cell.source)
        error = None
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                exec(compile(source, f"<cell {grade_id(cell)}>", "exec"), namespace)
            except BaseException as e:  # noqa: BLE001 (a notebook cell may raise anything)
                if isinstance(e, KeyboardInterrupt):
                    raise
                error = f"{type(e).__name__}: {e}"
        plt.close("all")
        if is_test(cell):
            points = float(cell.metadata["nbgrader"]["points"])
            scores[grade_id(cell)] = (0.0 if error else points, points, error)
    return scores


def _strip_magics(source: str) -> str:
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in source.splitlines())


def total(scores: dict) -> tuple[float, float]:
    return sum(s for s, _, *_ in scores.values()), sum(m for _, m, *_ in scores.values())


# ---- throwaway courses for the grading pipeline -------------------------------------------------

def make_course(root: str, assignments=tuple(NOTEBOOKS), release: bool = True):
    from course_lib.grading.course import Course
    os.makedirs(os.path.join(root, "source"), exist_ok=True)
    shutil.copy(os.path.join(REPO, "nbgrader_config.py"), root)
    for a in assignments:
        shutil.copytree(os.path.join(REPO, "source", a), os.path.join(root, "source", a),
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    course = Course(root)
    if release:
        for a in assignments:
            result = course.api().generate_assignment(a)
            assert result["success"], result.get("error") or result.get("log")
    return course


def submit(course, student: str, assignment: str, nb, name: str | None = None):
    folder = course.path("submitted", student, assignment)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name or NOTEBOOKS[assignment] + ".ipynb")
    if isinstance(nb, str):
        shutil.copy(nb, path)
    else:
        nbformat.write(nb, path)
    return folder


def nbgrader_autograde(course, assignment: str, student: str):
    """Plain `nbgrader autograde`, as an instructor without our tools would run it."""
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "nbgrader"),
                           "autograde", assignment, "--student", student, "--force"],
                          cwd=course.root, env=env, capture_output=True, text=True)


# ---- a tiny assignment for the grading tests ----------------------------------------------------

def _cell(kind, source, gid, **meta):
    make = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
    cell = make(source)
    cell.metadata["nbgrader"] = {"grade_id": gid, "schema_version": 3, "task": False,
                                 "grade": False, "solution": False, "locked": False, **meta}
    return cell


SECRET = "HIDDEN-SENTINEL-7f3a9c"
CORRECT = "def square_grad(x):\n    return 2 * x\n"
WRONG = "def square_grad(x):\n    return x\n"


VISIBLE = """import numpy as np
from course_lib.checks import suite, assert_close
with suite("test_square_grad") as t:
    x = np.array([1.0, -2.0, 3.0])
    got = t.run(lambda: square_grad(x.copy()), square_grad)
    assert_close(got, 2 * x, what="square_grad")
print("visible test passed")"""

HIDDEN = f"""### BEGIN HIDDEN TESTS
import numpy as np
from course_lib.checks import suite, assert_close
# {SECRET}
with suite("test_square_grad_hidden") as t:
    for shape in [(5,), (2, 3), ()]:
        x = t.randn(*shape)
        got = t.run(lambda: square_grad(x.copy()), square_grad)
        assert_close(got, 2 * x, what="square_grad")
### END HIDDEN TESTS"""


def source_notebook(solution=CORRECT, extra_cells=()):
    """A one-exercise assignment: the grading tests' subject (fast: no torch in its tests)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [_cell("md", "# Tiny gradient", "intro", locked=True),
                *[nbformat.v4.new_code_cell(src) for src in extra_cells],
                _cell("code", "### BEGIN SOLUTION\n" + solution + "### END SOLUTION",
                      "square_grad", solution=True),
                _cell("md", "Run the tests.", "before_test", locked=True),
                _cell("code", VISIBLE, "test_square_grad", grade=True, locked=True, points=1),
                _cell("code", HIDDEN, "test_square_grad_hidden", grade=True, locked=True, points=2)]
    return nb


def submission(solution, before=()):
    """A student notebook: the released layout, their solution, and cells of their own."""
    nb = source_notebook(solution, before)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "test_square_grad_hidden":
            cell.source = "# hidden tests are added at grading"
    return nb



def make_tiny_course(root: str):
    """A throwaway course holding only the tiny assignment, released."""
    from course_lib.grading.course import Course
    os.makedirs(os.path.join(root, "source", "tiny"), exist_ok=True)
    nbformat.write(source_notebook(), os.path.join(root, "source", "tiny", "tiny.ipynb"))
    shutil.copy(os.path.join(REPO, "nbgrader_config.py"), root)
    course = Course(root)
    assert course.api().generate_assignment("tiny")["success"]
    return course


# ---- a real channel to a plain Python process (no Jupyter): fast tests of the boundary --------

class ChannelKernel:
    """A subprocess that runs `code` as its __main__ and then serves channel sessions 0, 1, ...

    `verdict(test_source, seeds)` runs a test cell in this process, as `course grade` does,
    with the subprocess's names behind the channel.
    """

    def __init__(self, code: str):
        import tempfile
        self.folder = tempfile.mkdtemp(prefix="channel-")
        for sub in ("in", "out"):
            os.makedirs(os.path.join(self.folder, sub))
        script = (code + "\nfrom course_lib.channel.kernel import serve\n"
                  f"_n = 0\nwhile True:\n    serve({self.folder!r}, _n)\n    _n += 1\n")
        self.process = subprocess.Popen([sys.executable, "-c", script])
        self.sessions = 0
        self.last = None

    def verdict(self, source: str, seeds=None, timeout=30.0):
        from course_lib.channel.proxy import Session
        from course_lib.grading.verdicts import run_test_cell
        self.last = Session(self.folder, self.sessions, lambda n: None, self.process.kill,
                            call_timeout=timeout, cell_timeout=timeout)
        self.sessions += 1
        try:
            return run_test_cell(source, self.last, seeds or {})
        finally:
            self.last.close()

    def close(self):
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
