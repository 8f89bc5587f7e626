"""The in-notebook check (`course_lib.selfstudy.check`) in a real JupyterLab driven by Chromium.

A self-study learner on a course checkout works on the release copy of notebook 04. Their
`Tensor` (step a) has a bug in `unbroadcast` (a mean where a sum belongs); the one-line check
under it shows the hidden tests' message. They fix the cell, re-run only it and the check, and
the check passes: nothing else re-ran. Screenshots go to ``test-artifacts/browser/``.
"""
import json
import os
import re

import pytest

from harness import cell_by_id, read, source_path
from jupyterlab import ARTIFACTS, REPO, code_cell, notebook_page, run_all, type_into, \
    wait_idle, workspace

ASSIGNMENT = "04_autodiff_engine"
NOTEBOOK = "autodiff_engine.ipynb"
CHECK_LINE = 'from course_lib.selfstudy import check; check("Tensor")'
BUG = ("g = g.sum(axis=0)", "g = g.mean(axis=0)")

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _learners_notebook(path):
    """The release notebook with a buggy step (a) and the check line under it."""
    with open(os.path.join(REPO, "release", ASSIGNMENT, NOTEBOOK)) as f:
        nb = json.load(f)
    correct = cell_by_id(read(source_path(ASSIGNMENT)), "Tensor").source
    assert BUG[0] in correct
    at = next(i for i, c in enumerate(nb["cells"])
              if c["metadata"].get("nbgrader", {}).get("grade_id") == "Tensor")
    nb["cells"][at]["source"] = correct.replace(*BUG)
    nb["cells"].insert(at + 1, {"cell_type": "code", "execution_count": None, "metadata": {},
                                "outputs": [], "source": CHECK_LINE})
    with open(path, "w") as f:
        json.dump(nb, f)
    return correct


def _prompt(cell):
    return (cell.locator(".jp-InputPrompt").first.text_content() or "").strip()


def test_in_notebook_check_shows_the_message_then_passes_without_rerunning(tmp_path):
    ws = workspace(tmp_path, ASSIGNMENT, NOTEBOOK)
    correct = _learners_notebook(str(ws / ASSIGNMENT / NOTEBOOK))
    with notebook_page(tmp_path, ws, f"{ASSIGNMENT}/{NOTEBOOK}") as page:
        page.wait_for_selector(f".jp-CodeCell:has-text('{CHECK_LINE}')", timeout=60_000)
        wait_idle(page)

        # 1. Run all: the check under the buggy cell shows the hidden tests' message.
        run_all(page)
        check_cell = code_cell(page, CHECK_LINE)
        out = check_cell.locator(".jp-OutputArea")
        out.get_by_text(re.compile(r"score 0/3; revisit: Tensor")).wait_for(
            timeout=120_000)
        wait_idle(page, timeout=120_000)
        failing = out.first.text_content() or ""
        assert "FAIL test_Tensor  0/1" in failing, failing
        assert "FAIL test_Tensor_hidden  0/2" in failing, failing
        assert "y.grad after out.backward(g) is wrong" in failing, failing
        assert "times too small" in failing, failing  # the hint for a mean
        assert "visible and hidden tests, from source/" in failing, failing
        assert "trusts it" in failing and "not grading" in failing, failing
        check_cell.scroll_into_view_if_needed()
        page.screenshot(path=os.path.join(ARTIFACTS, "check_failing.png"))
        imports = code_cell(page, "import matplotlib.pyplot as plt")
        first_prompt, check_prompt = _prompt(imports), _prompt(check_cell)
        assert re.fullmatch(r"\[\d+\]:", first_prompt), first_prompt

        # 2. Fix the cell, re-run it and the check only: it passes.
        tensor_cell = code_cell(page, "class Tensor:")
        assert BUG[1] not in type_into(page, tensor_cell, correct)
        page.keyboard.press("Shift+Enter")  # runs the fixed cell, selects the check
        wait_idle(page)
        page.keyboard.press("Shift+Enter")  # runs the check
        out.get_by_text(re.compile(r"score 3/3; everything passes")).wait_for(
            timeout=60_000)
        wait_idle(page)
        passing = out.first.text_content() or ""
        assert "PASS test_Tensor  1/1" in passing and "FAIL" not in passing, passing
        # nothing else re-ran: the first cell keeps its count, the check's is new
        assert _prompt(imports) == first_prompt
        assert _prompt(check_cell) != check_prompt
        check_cell.scroll_into_view_if_needed()
        page.screenshot(path=os.path.join(ARTIFACTS, "check_passing.png"))
