"""Test cells read like a list of cases (issue #30): every test cell of every source/ notebook is
at most 25 lines, and a hidden block adds cases of the checks a visible cell calls, never a copy
of its code: no hidden line of 25 characters or more (imports aside) repeats a visible line of
the same notebook. The checking logic lives once in `course_lib.checks`.

Lines are compared stripped of indentation and otherwise exactly. That is why nothing but
imports is exempt: a suite header or a final print that differs in its id or text is not a
repeat to begin with, and exempting more (say, lines equal up to their numbers) would let a
copied check hide behind a changed constant. Lines under 25 characters (`])`, `for op in ops:`)
repeat by nature and say little.

`python -m tests.test_test_cells` prints the table of the issue for source/ (the definition of
/work/wt/measure.py's columns, which it was measured with).
"""
from __future__ import annotations

import glob
import os
import sys

import nbformat
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for `python -m tests....`
from harness import REPO, grade_id, is_test  # noqa: E402

MAX_LINES = 25
MIN_CHARS = 25
BEGIN, END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
NOTEBOOK_PATHS = sorted(glob.glob(os.path.join(REPO, "source", "*", "*.ipynb")))


def assignment_of(path):
    """The assignment a source notebook belongs to (its folder's name)."""
    return os.path.basename(os.path.dirname(path))


def graded_test_cells(nb):
    """[(grade_id, source)] of the notebook's autograded test cells, in order."""
    return [(grade_id(c), c.source) for c in nb.cells if is_test(c)]


def split_hidden(source):
    """(visible lines, hidden lines) of a cell, each stripped; the markers belong to neither."""
    visible, hidden, inside = [], [], False
    for line in source.splitlines():
        if BEGIN in line or END in line:
            inside = BEGIN in line
            continue
        (hidden if inside else visible).append(line.strip())
    return visible, hidden


def counted(line):
    """Whether a hidden line falls under the no-repeat rule (long enough, not an import)."""
    return len(line) >= MIN_CHARS and not line.startswith(("import ", "from "))


def repeats(cells):
    """[(grade_id, hidden line, the visible cell holding it)] for each hidden line copied."""
    seen = {}
    for gid, source in cells:
        for line in split_hidden(source)[0]:
            seen.setdefault(line, gid)
    return [(gid, line, seen[line]) for gid, source in cells
            for line in split_hidden(source)[1] if counted(line) and line in seen]


def problems(nb, name):
    """Every broken rule, one sentence each, naming the notebook, the cell and the line."""
    cells = graded_test_cells(nb)
    found = [f"{name} {gid}: {len(source.splitlines())} lines, at most {MAX_LINES}: move the "
             "checking code into course_lib.checks and keep the cases here"
             for gid, source in cells if len(source.splitlines()) > MAX_LINES]
    found += [f"{name} {gid}: hidden line `{line}` repeats a visible line of {where}: a hidden "
              "block adds cases (other arguments to the same checks), never a copy of code"
              for gid, line, where in repeats(cells)]
    return found


def table_row(nb, name):
    """The issue's columns: test cells, lines, longest, hidden lines >= 25 chars, repeating."""
    cells = graded_test_cells(nb)
    lengths = [len(source.splitlines()) for _, source in cells]
    hidden = [line for _, source in cells for line in split_hidden(source)[1]
              if len(line) >= MIN_CHARS]
    return {"notebook": name, "test cells": len(cells), "lines": sum(lengths),
            "longest": max(lengths, default=0), "hidden lines (>= 25 chars)": len(hidden),
            "of them repeating a visible line": len(repeats(cells))}


def table(paths=NOTEBOOK_PATHS):
    """The issue's table as markdown, one row per notebook."""
    rows = [table_row(nbformat.read(p, as_version=4), assignment_of(p)) for p in paths]
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    lines += ["| " + " | ".join(str(row[k]) for k in head) + " |" for row in rows]
    return "\n".join(lines)


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=assignment_of)
def test_test_cells_are_short_and_hidden_blocks_add_cases(path):
    found = problems(nbformat.read(path, as_version=4), assignment_of(path))
    assert not found, f"{len(found)} broken:\n" + "\n".join(found)


def _cell(source, gid):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": gid, "points": 1}
    return cell


def test_the_rules_find_a_long_cell_and_a_copied_line():
    visible = 'with suite("test_f") as t:\n    t.check_values(f, np.sin, (t.randn(3),))\n'
    hidden = ("### BEGIN HIDDEN TESTS\nimport numpy as np\nfrom course_lib.checks import suite\n"
              'with suite("test_f_hidden") as t:\n    t.check_values(f, np.sin, (t.randn(3),))\n'
              "    t.check_values(f, np.sin, (t.randn(4, 2),))\n" + "    pass\n" * 20
              + "### END HIDDEN TESTS")
    nb = nbformat.v4.new_notebook(cells=[_cell(visible, "test_f"), _cell(hidden, "test_f_hidden")])
    found = problems(nb, "nb")
    assert len(found) == 2, found
    assert found[0].startswith("nb test_f_hidden: 27 lines"), found
    assert "`t.check_values(f, np.sin, (t.randn(3),))` repeats a visible line of test_f" in found[1]
    assert table_row(nb, "nb") == {
        "notebook": "nb", "test cells": 2, "lines": 29, "longest": 27,
        "hidden lines (>= 25 chars)": 4, "of them repeating a visible line": 1}


if __name__ == "__main__":  # python -m tests.test_test_cells [another tree, e.g. an old commit's]
    root = sys.argv[1] if len(sys.argv) > 1 else REPO
    print(table(sorted(glob.glob(os.path.join(root, "source", "*", "*.ipynb")))))
