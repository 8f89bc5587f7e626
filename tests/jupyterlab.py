"""A real Jupyter server (JupyterLab, or the plain server the formgrader runs in) and the
JupyterLab gestures a student makes, shared by the browser tests."""
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

import chromium
from course_lib.hub.server import wait_http

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(REPO, "test-artifacts", "browser")
VENV_BIN = os.path.dirname(sys.executable)


def free_port() -> int:
    """A TCP port on 127.0.0.1 free at the time of asking."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_settings(settings_dir: str) -> None:
    """A plain editor (no auto-closed brackets), every cell in the DOM, no news popup."""
    def put(ext, name, data):
        folder = os.path.join(settings_dir, ext)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, name + ".jupyterlab-settings"), "w") as f:
            json.dump(data, f)

    put("@jupyterlab/notebook-extension", "tracker",
        {"windowingMode": "none",
         "codeCellConfig": {"autoClosingBrackets": False},
         "autoClosingBrackets": False})
    put("@jupyterlab/codemirror-extension", "plugin",
        {"defaultConfig": {"autoClosingBrackets": False}})
    put("@jupyterlab/apputils-extension", "notification",
        {"fetchNews": "false", "checkForUpdates": False})


@contextlib.contextmanager
def jupyter(app: str, root, state):
    """`jupyter <app>` ("lab" or "server") serving `root`, its settings, runtime files and log
    under `state`: yields (base URL, token); the server's process group is stopped after."""
    settings = os.path.join(state, "settings")
    write_settings(settings)
    port, token = free_port(), uuid.uuid4().hex
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=settings,
               JUPYTER_RUNTIME_DIR=os.path.join(state, "runtime"),
               PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
    env.pop("COURSE_ROOT", None)
    with open(os.path.join(state, "jupyter.log"), "wb") as log:
        proc = subprocess.Popen(
            [os.path.join(VENV_BIN, "jupyter"), app, "--no-browser", "--ip=127.0.0.1",
             f"--port={port}", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={root}", "--allow-root"],
            cwd=str(root), env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/api/status?token={token}", proc, f"jupyter {app}", 60)
            yield base, token
        finally:
            _stop(proc)


def _stop(proc) -> None:
    """SIGTERM to the server's process group, SIGKILL when it lingers 10 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=10)


@contextlib.contextmanager
def notebook_page(tmp_path, ws, notebook: str):
    """JupyterLab on the workspace `ws` and a Chromium page on `notebook` (a path in it)."""
    chromium.sync_api()  # skips before a server starts when there is no Chromium
    os.makedirs(ARTIFACTS, exist_ok=True)
    with jupyter("lab", ws, str(tmp_path)) as (base, token):
        with chromium.page(f"{base}/lab/tree/{notebook}?token={token}") as page:
            yield page


def workspace(tmp_path, assignment: str, notebook: str):
    """tmp_path/ws holding a copy of release/<assignment>/ (skip when it was not released)."""
    release = os.path.join(REPO, "release", assignment)
    if not os.path.exists(os.path.join(release, notebook)):
        pytest.skip(f"{release}/{notebook} missing: run `course release {assignment}` first")
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copytree(release, ws / assignment,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return ws


def wait_idle(page, timeout=60_000) -> None:
    """Until the notebook's kernel reports idle."""
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                           state="attached", timeout=timeout)


def run_all(page) -> None:
    """Run > Run All Cells, from the menu bar."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()


def code_cell(page, has_text: str):
    """The first code cell holding `has_text`."""
    return page.locator(".jp-CodeCell", has_text=has_text).first


def type_into(page, cell, text: str) -> str:
    """Replace `cell`'s code by `text`, typed as a student would; back to command mode with
    this cell selected. Returns what the editor then holds (to check no auto-indent or
    auto-bracket changed it)."""
    editor = cell.locator(".cm-content")
    editor.scroll_into_view_if_needed()
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(text.rstrip("\n"))
    typed = cell.locator(".cm-content").inner_text()
    page.keyboard.press("Escape")
    return typed
