"""End-to-end check of the released notebook 03 in a real JupyterLab driven by Chromium.

A student opens the release copy of ``mlp_backward.ipynb``, types a correct ``affine``, runs
all cells, sees the visible test pass, presses nbgrader's *Validate* button, then types a wrong
bias gradient and sees the helpful shape message with its hint. Screenshots are written to
``test-artifacts/browser/`` for a human to look at.
"""
import os
import re

import pytest

from jupyterlab import ARTIFACTS, REPO, code_cell, notebook_page, run_all, type_into, \
    wait_idle, workspace

ASSIGNMENT = "03_mlp_backward"
NOTEBOOK = "mlp_backward.ipynb"

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CORRECT = '''def affine(x, w, b):
    """y = x @ w + b; returns (y, vjp) with vjp(g) -> (gx, gw, gb)."""
    y = x @ w + b

    def vjp(g):
        return g @ w.T, x.T @ g, g.sum(axis=0)

    return y, vjp
'''
WRONG = CORRECT.replace("g.sum(axis=0)", "g.sum(axis=1)")


def _type_cell(page, marker, text, must_contain):
    """Replace the code cell that contains `marker` by `text`, typed as a student would."""
    typed = type_into(page, code_cell(page, marker), text)
    # The editor must now hold exactly what we typed (no auto-indent or auto-brackets).
    assert must_contain in typed and "raise NotImplementedError" not in typed, typed


def _set_cell(page, text):
    _type_cell(page, "def affine(x, w, b):", text, "g.sum(axis=")


def _test_cell_output(page):
    return code_cell(page, 'with suite("test_affine") as t:').locator(".jp-OutputArea")


def test_student_solves_affine_in_jupyterlab(tmp_path):
    ws = workspace(tmp_path, ASSIGNMENT, NOTEBOOK)
    with notebook_page(tmp_path, ws, f"{ASSIGNMENT}/{NOTEBOOK}") as page:
        page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=60_000)
        page.wait_for_selector(".jp-CodeCell:has-text('def affine(x, w, b):')")
        wait_idle(page)

        # 1. A correct affine: the visible test passes.
        _set_cell(page, CORRECT)
        run_all(page)
        out = _test_cell_output(page)
        out.get_by_text("affine passes the visible test").wait_for(timeout=60_000)
        wait_idle(page)
        out.scroll_into_view_if_needed()
        page.screenshot(path=os.path.join(ARTIFACTS, "correct.png"))

        # 2. nbgrader's Validate button: saves, validates, shows a results dialog.
        page.locator(".validate-button").first.click()
        dialog = page.locator(".jp-Dialog")
        dialog.wait_for(timeout=60_000)
        page.wait_for_function(
            "() => { const d = document.querySelector('.jp-Dialog');"
            " return d && !/Validating/.test(d.innerText) && d.innerText.length > 40; }",
            timeout=60_000)
        text = dialog.inner_text()
        page.screenshot(path=os.path.join(ARTIFACTS, "validate.png"))
        assert "Validat" in text, text
        # affine is solved, so the first failing cell is the next exercise's test, whose
        # function still raises NotImplementedError.
        assert "Validation Results" in text, text
        assert "The following cell failed" in text, text
        assert 'suite("test_relu")' in text, text
        assert "NotImplementedError" in text, text
        assert 'suite("test_affine")' not in text, text
        dialog.locator("button", has_text="Ok").first.click()
        dialog.wait_for(state="detached")

        # 3. A wrong bias gradient: the test explains the shape and gives the hint.
        _set_cell(page, WRONG)
        run_all(page)
        out = _test_cell_output(page)
        out.get_by_text(re.compile(r"expected shape \(2,\), got \(4,\)")).first \
            .wait_for(timeout=60_000)
        wait_idle(page)
        wrong = out.first.text_content() or ""
        # The success line is not printed (the traceback quotes the source line only).
        assert not re.search(r"^affine passes the visible test$", wrong, re.M), wrong
        assert out.first.locator(
            "[data-mime-type='application/vnd.jupyter.stdout']").count() == 0
        assert "GradeError" in wrong, wrong
        assert "gradient with respect to b" in wrong, wrong
        assert "Hint" in wrong and "sums g over the batch axis" in wrong, wrong
        # Only our message: no frame of course_lib (or of the test) before it.
        assert "course_lib" not in wrong and "core.py" not in wrong, wrong
        assert "Traceback" not in wrong and "File " not in wrong, wrong
        out.scroll_into_view_if_needed()
        page.screenshot(path=os.path.join(ARTIFACTS, "wrong.png"))


# ---- notebook 06: a student who solved the rest writes derivative(f, x) -------------------------

FORWARD = "06_forward_mode"
DERIVATIVE = '''def derivative(f, x):
    """f'(x) by one forward pass with dual numbers."""
    out = f(Dual(x, 1.0))
    return out.tangent if isinstance(out, Dual) else 0.0
'''


def _solved_but(nb_path, source_path, left):
    """The released notebook with every exercise but `left` filled in from the source."""
    import nbformat

    from course_lib import walkthrough
    nb, source = nbformat.read(nb_path, 4), nbformat.read(source_path, 4)
    answers = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in source.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers and gid != left:
            cell.source = walkthrough.strip_markers(answers[gid])
    nbformat.write(nb, nb_path)


def test_student_writes_derivative_in_notebook_06(tmp_path):
    name = "forward_mode.ipynb"
    ws = workspace(tmp_path, FORWARD, name)
    _solved_but(str(ws / FORWARD / name), os.path.join(REPO, "source", FORWARD, name),
                "derivative")
    with notebook_page(tmp_path, ws, f"{FORWARD}/{name}") as page:
        page.wait_for_selector(".jp-CodeCell:has-text('def derivative(f, x):')",
                               timeout=60_000)
        wait_idle(page)
        out = code_cell(page, 'with suite("test_derivative") as t:').locator(".jp-OutputArea")

        _type_cell(page, "def derivative(f, x):", DERIVATIVE, "Dual(x, 1.0)")
        run_all(page)
        out.get_by_text("derivative passes the visible test").wait_for(timeout=180_000)
        wait_idle(page, timeout=180_000)
        page.screenshot(path=os.path.join(ARTIFACTS, "forward_correct.png"))

        _type_cell(page, "def derivative(f, x):",
                   DERIVATIVE.replace("Dual(x, 1.0)", "Dual(x, 0.0)"), "Dual(x, 0.0)")
        run_all(page)
        out.get_by_text(re.compile(r"derivative\(f, [-0-9.]+\) for f\(x\) =")).first \
            .wait_for(timeout=180_000)
        wait_idle(page, timeout=180_000)
        wrong = out.first.text_content() or ""
        assert "GradeError" in wrong and "Hint" in wrong and "dx/dx" in wrong, wrong
        assert "Traceback" not in wrong and "course_lib" not in wrong, wrong
        page.screenshot(path=os.path.join(ARTIFACTS, "forward_wrong.png"))
