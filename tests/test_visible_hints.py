"""Visible tests nudge, hidden tests explain: the text of a visible test cell (which a student
reads in the released notebook) names the rule, axis or shape to look at but never the formula.
The full explanations stay in the hidden tests' messages and in the notebooks' hint ladders."""
import ast
import re

import pytest

from harness import NOTEBOOKS, grade_id, is_test, read, source_path

# What gives an answer away: a matrix product, a transpose, a sum along a given axis, a numpy
# call, an assignment to a gradient (dX = ..., gx = ...), a derivative written out
# (tanh'(x) = ..., dy/dx = ...), or a quotient of bracketed expressions ((f(x+h) - ...) / (2h)).
FORMULA = re.compile(r"@|\.T\b|sum\(axis|np\.\w|\b[dg][A-Za-z]*\s*=\s|\bd\w*/d\w*\s*=|"
                     r"'\(\w+\)\s*=|\)\s*/\s*\(")
ASSIGNMENTS = [a for a in NOTEBOOKS if not a.startswith("04")]


def visible_test_cells(assignment):
    for cell in read(source_path(assignment)).cells:
        if is_test(cell) and "BEGIN HIDDEN TESTS" not in cell.source:
            yield grade_id(cell), cell.source


def prose(source):
    """The cell's string constants that are words for a student (messages and hints), not the
    labels of test functions (`"lambda x: np.exp(2 * x)"`, `"np.sin"`) or docstrings."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.FunctionDef, ast.Module)) and node.body
                  and isinstance(node.body[0], ast.Expr)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings and len(node.value.split()) >= 2 \
                and not node.value.startswith("lambda"):
            yield node.lineno, node.value


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_visible_tests_give_no_formula_away(assignment):
    found = [f"{gid} line {line}: {text!r}" for gid, source in visible_test_cells(assignment)
             for line, text in prose(source) if FORMULA.search(text)]
    assert not found, "formulas in visible test cells:\n" + "\n".join(found)


def test_the_scan_finds_a_formula():
    source = 'hints = {"X": "dX = dP @ W.T with dP = 2 * (P - y) / N", "b": "use g.sum(axis=0)"}'
    assert len([t for _, t in prose(source) if FORMULA.search(t)]) == 2


def test_hidden_tests_still_explain():
    """The explanations moved out of the visible cells are still in the hidden ones."""
    hidden = "\n".join(cell.source for cell in read(source_path("02_manual_backprop")).cells
                       if is_test(cell) and "BEGIN HIDDEN TESTS" in cell.source)
    assert "dX = dP @ W.T" in hidden and "db = dP.sum(axis=0)" in hidden
