"""End-to-end check of the released notebook 03 in a real JupyterLab driven by Chromium.

A student opens the release copy of ``mlp_backward.ipynb``, types a correct ``affine``, runs
all cells, sees the visible test pass, presses nbgrader's *Validate* button, then types a wrong
bias gradient and sees the helpful shape message with its hint. Screenshots are written to
``test-artifacts/browser/`` for a human to look at.
"""
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import uuid

import pytest

from course_lib.hub.server import wait_http

import chromium

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSIGNMENT = "03_mlp_backward"
NOTEBOOK = "mlp_backward.ipynb"
ARTIFACTS = os.path.join(REPO, "test-artifacts", "browser")
VENV_BIN = os.path.dirname(sys.executable)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CORRECT = '''def affine(x, w, b):
    """y = x @ w + b; returns (y, vjp) with vjp(g) -> (gx, gw, gb)."""
    y = x @ w + b

    def vjp(g):
        return g @ w.T, x.T @ g, g.sum(axis=0)

    return y, vjp
'''
WRONG = CORRECT.replace("g.sum(axis=0)", "g.sum(axis=1)")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(settings_dir):
    def put(ext, name, data):
        folder = os.path.join(settings_dir, ext)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, name + ".jupyterlab-settings"), "w") as f:
            json.dump(data, f)

    # Plain editor: no auto-closed brackets; every cell in the DOM; no news popup.
    put("@jupyterlab/notebook-extension", "tracker",
        {"windowingMode": "none",
         "codeCellConfig": {"autoClosingBrackets": False},
         "autoClosingBrackets": False})
    put("@jupyterlab/codemirror-extension", "plugin",
        {"defaultConfig": {"autoClosingBrackets": False}})
    put("@jupyterlab/apputils-extension", "notification",
        {"fetchNews": "false", "checkForUpdates": False})


def _wait_for_server(port, token, proc, timeout=60):
    wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", proc, "jupyter lab", timeout)


def _wait_idle(page, timeout=60_000):
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                           state="attached", timeout=timeout)


def _set_cell(page, text):
    _type_cell(page, "def affine(x, w, b):", text, "g.sum(axis=")


def _type_cell(page, marker, text, must_contain):
    """Replace the code cell that contains `marker` by `text`, typed as a student would."""
    cell = page.locator(".jp-CodeCell", has_text=marker).first
    editor = cell.locator(".cm-content")
    editor.scroll_into_view_if_needed()
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(text.rstrip("\n"))
    # The editor must now hold exactly what we typed (no auto-indent or auto-brackets).
    typed = cell.locator(".cm-content").inner_text()
    assert must_contain in typed and "raise NotImplementedError" not in typed, typed
    page.keyboard.press("Escape")  # command mode


def _run_all(page):
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()


def _test_cell_output(page):
    return page.locator(".jp-CodeCell", has_text='with suite("test_affine") as t:').first \
        .locator(".jp-OutputArea")


@contextlib.contextmanager
def _jupyter_lab(tmp_path, ws):
    """A JupyterLab server on `ws` (plain editor settings): yields (port, token)."""
    settings = tmp_path / "settings"
    _write_settings(str(settings))
    os.makedirs(ARTIFACTS, exist_ok=True)
    port, token = _free_port(), uuid.uuid4().hex
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
    log = open(tmp_path / "jupyter.log", "wb")
    proc = subprocess.Popen(
        [os.path.join(VENV_BIN, "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={ws}", "--allow-root"],
        cwd=str(ws), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_server(port, token, proc)
        yield port, token
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, 15)
                proc.wait(timeout=10)
            except Exception:
                os.killpg(proc.pid, 9)
                proc.wait(timeout=10)
        log.close()


def _workspace(tmp_path, assignment, notebook):
    release = os.path.join(REPO, "release", assignment)
    if not os.path.exists(os.path.join(release, notebook)):
        pytest.skip(f"{release}/{notebook} missing: run `course release {assignment}` first")
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copytree(release, ws / assignment,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return ws


def test_student_solves_affine_in_jupyterlab(tmp_path):
    sync_api = chromium.sync_api()
    ws = _workspace(tmp_path, ASSIGNMENT, NOTEBOOK)
    browser = None
    with _jupyter_lab(tmp_path, ws) as (port, token):
        try:
            with sync_api.sync_playwright() as pw:
                browser = chromium.launch(pw)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(30_000)
                page.goto(f"http://127.0.0.1:{port}/lab/tree/{ASSIGNMENT}/{NOTEBOOK}?token={token}")
                page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=60_000)
                page.wait_for_selector(".jp-CodeCell:has-text('def affine(x, w, b):')")
                _wait_idle(page)

                # 1. A correct affine: the visible test passes.
                _set_cell(page, CORRECT)
                _run_all(page)
                out = _test_cell_output(page)
                out.get_by_text("affine passes the visible test").wait_for(timeout=60_000)
                _wait_idle(page)
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
                _run_all(page)
                out = _test_cell_output(page)
                out.get_by_text(re.compile(r"expected shape \(2,\), got \(4,\)")).first \
                    .wait_for(timeout=60_000)
                _wait_idle(page)
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
                browser.close()
                browser = None
        finally:
            try:
                if browser is not None:
                    browser.close()
            except Exception:
                pass


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
    sync_api = chromium.sync_api()
    name = "forward_mode.ipynb"
    ws = _workspace(tmp_path, FORWARD, name)
    _solved_but(str(ws / FORWARD / name), os.path.join(REPO, "source", FORWARD, name),
                "derivative")
    browser = None
    with _jupyter_lab(tmp_path, ws) as (port, token):
        try:
            with sync_api.sync_playwright() as pw:
                browser = chromium.launch(pw)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(30_000)
                page.goto(f"http://127.0.0.1:{port}/lab/tree/{FORWARD}/{name}?token={token}")
                page.wait_for_selector(".jp-CodeCell:has-text('def derivative(f, x):')",
                                       timeout=60_000)
                _wait_idle(page)
                out = page.locator(".jp-CodeCell", has_text='with suite("test_derivative") as t:') \
                    .first.locator(".jp-OutputArea")

                _type_cell(page, "def derivative(f, x):", DERIVATIVE, "Dual(x, 1.0)")
                _run_all(page)
                out.get_by_text("derivative passes the visible test").wait_for(timeout=180_000)
                _wait_idle(page, timeout=180_000)
                page.screenshot(path=os.path.join(ARTIFACTS, "forward_correct.png"))

                _type_cell(page, "def derivative(f, x):",
                           DERIVATIVE.replace("Dual(x, 1.0)", "Dual(x, 0.0)"), "Dual(x, 0.0)")
                _run_all(page)
                out.get_by_text(re.compile(r"derivative\(f, [-0-9.]+\) for f\(x\) =")).first \
                    .wait_for(timeout=180_000)
                _wait_idle(page, timeout=180_000)
                wrong = out.first.text_content() or ""
                assert "GradeError" in wrong and "Hint" in wrong and "dx/dx" in wrong, wrong
                assert "Traceback" not in wrong and "course_lib" not in wrong, wrong
                page.screenshot(path=os.path.join(ARTIFACTS, "forward_wrong.png"))
                browser.close()
                browser = None
        finally:
            if browser is not None:
                browser.close()
