"""The in-notebook check (`course_lib.selfstudy.check`) in a real JupyterLab driven by Chromium.

A self-study learner on a course checkout works on the release copy of notebook 04. Their
`Tensor` (step a) has a bug in `unbroadcast` (a mean where a sum belongs); the one-line check
under it shows the hidden tests' message. They fix the cell, re-run only it and the check, and
the check passes: nothing else re-ran. Screenshots go to ``test-artifacts/browser/``.
"""
import json
import os
import re
import shutil
import subprocess
import uuid

import pytest

import chromium
from harness import cell_by_id, read, source_path
from test_browser import ARTIFACTS, REPO, VENV_BIN, _free_port, _wait_for_server, _wait_idle, \
    _write_settings

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


def _cell(page, has_text):
    return page.locator(".jp-CodeCell", has_text=has_text).first


def _prompt(cell):
    return (cell.locator(".jp-InputPrompt").first.text_content() or "").strip()


def _replace_text(page, cell, text):
    editor = cell.locator(".cm-content")
    editor.scroll_into_view_if_needed()
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(text.rstrip("\n"))
    assert BUG[1] not in cell.locator(".cm-content").inner_text()
    page.keyboard.press("Escape")  # command mode, this cell selected


def test_in_notebook_check_shows_the_message_then_passes_without_rerunning(tmp_path):
    sync_api = chromium.sync_api()
    ws = tmp_path / "ws"
    shutil.copytree(os.path.join(REPO, "release", ASSIGNMENT), ws / ASSIGNMENT,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    correct = _learners_notebook(str(ws / ASSIGNMENT / NOTEBOOK))
    settings = tmp_path / "settings"
    _write_settings(str(settings))
    os.makedirs(ARTIFACTS, exist_ok=True)

    port, token = _free_port(), uuid.uuid4().hex
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
    env.pop("COURSE_ROOT", None)
    log = open(tmp_path / "jupyter.log", "wb")
    proc = subprocess.Popen(
        [os.path.join(VENV_BIN, "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={ws}", "--allow-root"],
        cwd=str(ws), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_server(port, token, proc)
        with sync_api.sync_playwright() as pw:
            browser = chromium.launch(pw)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(30_000)
                page.goto(f"http://127.0.0.1:{port}/lab/tree/{ASSIGNMENT}/{NOTEBOOK}"
                          f"?token={token}")
                page.wait_for_selector(f".jp-CodeCell:has-text('{CHECK_LINE}')",
                                       timeout=60_000)
                _wait_idle(page)

                # 1. Run all: the check under the buggy cell shows the hidden tests' message.
                page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
                page.locator(".lm-Menu-itemLabel",
                             has_text=re.compile(r"^Run All Cells$")).click()
                check_cell = _cell(page, CHECK_LINE)
                out = check_cell.locator(".jp-OutputArea")
                out.get_by_text(re.compile(r"score 0/3; revisit: Tensor")).wait_for(
                    timeout=120_000)
                _wait_idle(page, timeout=120_000)
                failing = out.first.text_content() or ""
                assert "FAIL test_Tensor  0/1" in failing, failing
                assert "FAIL test_Tensor_hidden  0/2" in failing, failing
                assert "y.grad after out.backward(g) is wrong" in failing, failing
                assert "times too small" in failing, failing  # the hint for a mean
                assert "visible and hidden tests, from source/" in failing, failing
                assert "trusts it" in failing and "not grading" in failing, failing
                check_cell.scroll_into_view_if_needed()
                page.screenshot(path=os.path.join(ARTIFACTS, "check_failing.png"))
                imports = _cell(page, "import matplotlib.pyplot as plt")
                first_prompt, check_prompt = _prompt(imports), _prompt(check_cell)
                assert re.fullmatch(r"\[\d+\]:", first_prompt), first_prompt

                # 2. Fix the cell, re-run it and the check only: it passes.
                tensor_cell = _cell(page, "class Tensor:")
                _replace_text(page, tensor_cell, correct)
                page.keyboard.press("Shift+Enter")  # runs the fixed cell, selects the check
                _wait_idle(page)
                page.keyboard.press("Shift+Enter")  # runs the check
                out.get_by_text(re.compile(r"score 3/3; everything passes")).wait_for(
                    timeout=60_000)
                _wait_idle(page)
                passing = out.first.text_content() or ""
                assert "PASS test_Tensor  1/1" in passing and "FAIL" not in passing, passing
                # nothing else re-ran: the first cell keeps its count, the check's is new
                assert _prompt(imports) == first_prompt
                assert _prompt(check_cell) != check_prompt
                check_cell.scroll_into_view_if_needed()
                page.screenshot(path=os.path.join(ARTIFACTS, "check_passing.png"))
            finally:
                browser.close()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(timeout=10)
        log.close()
