"""A real class on a local JupyterHub, driven in Chromium: release, fetch, submit, collect,
grade, feedback, fetch feedback, formgrader.

The test creates its own Unix accounts (distinct from `make hub`'s), exchange and hub on free
ports, and removes them all. Screenshots of each step go to ``test-artifacts/hub/``. Needs root
(accounts, PAM, the hub switching users) and the proxy from `make hub` / `make test`.
"""
import csv
import glob
import json
import os
import re
import shutil
import socket
import tempfile

import pytest

import chromium
from harness import REPO, cell_by_id, read, source_path

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.hub]

ASSIGNMENT = "01_chain_rule"
NOTEBOOK = "chain_rule"
SOLVED = "central_difference"  # student 1's exercise: its visible (1) and hidden (2) tests
ARTIFACTS = os.path.join(REPO, "test-artifacts", "hub")
INSTRUCTOR, SOLVER, BLANK = "bfs-t-instructor", "bfs-t-student1", "bfs-t-student2"


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="module")
def hub():
    """A running class: (classroom, environment bin folder, base URL). Removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("the hub test needs root: it creates Unix accounts")
    from course_lib.hub import classroom, server
    if not os.path.exists(classroom.PROXY):
        pytest.skip(f"{classroom.PROXY} missing: `make test` installs it (npm)")
    room = classroom.Classroom(hub_dir=tempfile.mkdtemp(prefix="bfs-hub-test-"),
                               instructor=INSTRUCTOR, students=(SOLVER, BLANK))
    proc = log = None
    classroom.clean(room)  # accounts left behind by an interrupted run, with their homes
    try:
        env_bin = classroom.prepare(room)
        port, hub_port, api_port = _free_ports(3)
        class_file = server.describe(room, env_bin, port, hub_port, api_port)
        log = open(room.path("state", "jupyterhub.log"), "wb")
        proc = server.start(room, class_file, log=log)
        server.wait_ready(port, proc)
        yield room, env_bin, f"http://127.0.0.1:{port}"
    finally:
        if proc is not None:
            server.stop(proc)
        if log is not None:
            log.close()
        classroom.clean(room)
        shutil.rmtree(room.hub_dir, ignore_errors=True)


def _as(room, env_bin, user, *cmd, cwd=None, check=True):
    from course_lib.hub import classroom
    result = classroom.as_user(user, list(cmd), env_bin, room.config_dir(user),
                               cwd or classroom.home(user), capture_output=True, text=True)
    if check:
        assert result.returncode == 0, f"{cmd}: {result.stdout}\n{result.stderr}"
    return result


def _instructor(room, env_bin, *cmd):
    return _as(room, env_bin, INSTRUCTOR, *cmd, cwd=room.course_dir)


def _shot(page, name):
    page.screenshot(path=os.path.join(ARTIFACTS, name))


def _login(browser, base, user):
    from course_lib.hub.classroom import password
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{base}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", password(user))
    page.click("#login_submit")
    page.wait_for_selector("#jp-main-dock-panel", timeout=180_000)  # the user's JupyterLab
    return page


def _assignments_tab(page):
    page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").click()
    page.locator(".lm-Menu-itemLabel", has_text="Assignment List").click()
    page.wait_for_selector("#released_assignments_list")


def _row(page, section, text=ASSIGNMENT):
    return page.locator(f"#{section} .list_item", has_text=text).first


def _fetch_and_submit(page, base, user, solve):
    _assignments_tab(page)
    _row(page, "released_assignments_list").locator("button", has_text="Fetch").click()
    _row(page, "fetched_assignments_list").wait_for()
    _shot(page, f"02_{user}_fetched.png")
    mine = os.path.join(_home(user), ASSIGNMENT, NOTEBOOK + ".ipynb")
    assert os.path.exists(mine)
    if solve:
        _solve_in_notebook(page, base, user, mine)
        _assignments_tab(page)
    _row(page, "fetched_assignments_list").locator("button", has_text="Submit").first.click()
    _row(page, "submitted_assignments_list").wait_for(timeout=60_000)
    _shot(page, f"04_{user}_submitted.png")


def _solve_in_notebook(page, base, user, path):
    """Type the reference solution of one exercise into the fetched notebook and save it."""
    solution = re.sub(r"\s*### (BEGIN|END) SOLUTION", "",
                      cell_by_id(read(source_path(ASSIGNMENT)), SOLVED).source)
    page.goto(f"{base}/user/{user}/lab/tree/{ASSIGNMENT}/{NOTEBOOK}.ipynb")
    cell = page.locator(".jp-CodeCell", has_text=f"def {SOLVED}(").first
    cell.wait_for(timeout=120_000)
    assert page.locator(".validate-button").count() > 0  # nbgrader's Validate is there
    cell.locator(".cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(solution)
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")
    page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=30_000)
    assert cell_by_id(read(path), SOLVED).source.strip() == solution.strip()
    _shot(page, "03_student_solves.png")


def _editor_settings(user):
    """Plain editing for the typing student: no auto-closed brackets, every cell in the DOM."""
    from course_lib.hub.classroom import chown_tree
    root = os.path.join(_home(user), ".jupyter", "lab", "user-settings", "@jupyterlab")
    for ext, name, data in (
            ("notebook-extension", "tracker",
             {"windowingMode": "none", "codeCellConfig": {"autoClosingBrackets": False}}),
            ("codemirror-extension", "plugin", {"defaultConfig": {"autoClosingBrackets": False}})):
        os.makedirs(os.path.join(root, ext), exist_ok=True)
        with open(os.path.join(root, ext, name + ".jupyterlab-settings"), "w") as f:
            json.dump(data, f)
    chown_tree(os.path.join(_home(user), ".jupyter"), user)


def _home(user):
    from course_lib.hub.classroom import home
    return home(user)


def _totals_from_csv(path):
    totals = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            score, full = totals.get(row["student"], (0.0, 0.0))
            totals[row["student"]] = (score + float(row["score"]), full + float(row["max_score"]))
    return totals


def test_a_class_on_jupyterhub(hub):
    sync_api = chromium.sync_api()
    room, env_bin, base = hub
    os.makedirs(ARTIFACTS, exist_ok=True)

    # The instructor releases 01 into the exchange.
    _instructor(room, env_bin, "course", "release", ASSIGNMENT)
    _instructor(room, env_bin, "nbgrader", "release_assignment", ASSIGNMENT)

    with sync_api.sync_playwright() as pw:
        browser = chromium.launch(pw)
        try:
            # Two students fetch it in the Assignments tab; one solves an exercise; both submit.
            pages = {}
            _editor_settings(SOLVER)
            for user, solve in ((SOLVER, True), (BLANK, False)):
                pages[user] = page = _login(browser, base, user)
                if user == SOLVER:
                    _shot(page, "01_student_lab.png")
                menu = page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader")
                menu.click()
                items = [t.strip() for t in page.locator(".lm-Menu-itemLabel").all_inner_texts()]
                assert "Assignment List" in items and "Formgrader" not in items, items
                page.keyboard.press("Escape")
                _fetch_and_submit(page, base, user, solve)

            # Nobody reads another student's files, nor the exchange's inbox.
            other = _as(room, env_bin, BLANK, "ls", _home(SOLVER), check=False)
            assert other.returncode != 0, other.stdout
            inbox = os.path.join(room.exchange, "backprop-from-scratch", "inbound")
            assert _as(room, env_bin, BLANK, "ls", inbox, check=False).returncode != 0
            response = pages[BLANK].goto(f"{base}/user/{SOLVER}/lab")
            assert SOLVER not in pages[BLANK].url or response.status >= 400

            # The instructor collects, grades (sandboxed), writes and releases feedback.
            _instructor(room, env_bin, "nbgrader", "collect", ASSIGNMENT)
            assert sorted(os.listdir(os.path.join(room.course_dir, "submitted"))) == \
                sorted([SOLVER, BLANK])
            _instructor(room, env_bin, "course", "grade", ASSIGNMENT, "--sandbox", "--quiet")
            _instructor(room, env_bin, "course", "feedback", ASSIGNMENT)
            _instructor(room, env_bin, "course", "export")
            _instructor(room, env_bin, "nbgrader", "release_feedback", ASSIGNMENT)
            totals = _totals_from_csv(os.path.join(room.course_dir, "grades.csv"))
            full = totals[SOLVER][1]
            assert totals == {SOLVER: (3.0, full), BLANK: (0.0, full)}, totals

            # Student 1 fetches the feedback in the tab and reads their score page.
            page = pages[SOLVER]
            page.goto(f"{base}/user/{SOLVER}/lab")
            page.wait_for_selector("#jp-main-dock-panel")
            _assignments_tab(page)
            _row(page, "submitted_assignments_list").locator(
                "button", has_text="Fetch Feedback").click()
            _row(page, "submitted_assignments_list").locator(
                "a", has_text=re.compile("view feedback", re.I)).wait_for(timeout=60_000)
            _shot(page, "05_feedback_fetched.png")
            [html] = glob.glob(os.path.join(_home(SOLVER), ASSIGNMENT, "feedback", "*",
                                            NOTEBOOK + ".html"))
            rel = os.path.relpath(html, _home(SOLVER))
            page.goto(f"{base}/user/{SOLVER}/files/{rel}")
            text = page.locator("body").inner_text()
            _shot(page, "06_feedback_page.png")
            assert re.search(rf"Score:\s*3(\.0)?\s*/\s*{full:g}", text), text[:500]
            # Student 2 fetches only their own feedback (nbgrader's command, as in a terminal).
            _as(room, env_bin, BLANK, "nbgrader", "fetch_feedback", ASSIGNMENT)
            [theirs] = glob.glob(os.path.join(_home(BLANK), ASSIGNMENT, "feedback", "*",
                                              NOTEBOOK + ".html"))
            with open(theirs) as f:
                assert re.search(rf"Score:\s*0(\.0)?\s*/\s*{full:g}", f.read())

            # The formgrader shows the same scores as grades.csv.
            page = _login(browser, base, INSTRUCTOR)
            page.goto(f"{base}/user/{INSTRUCTOR}/formgrader/manage_submissions/{ASSIGNMENT}")
            page.wait_for_selector(f"text={SOLVER}")
            _shot(page, "07_formgrader.png")
            rows = {u: page.locator("tr", has_text=u).first.inner_text() for u in (SOLVER, BLANK)}
            assert re.search(rf"\b3(\.0)?\s*/\s*{full:g}\b", rows[SOLVER]), rows
            assert re.search(rf"\b0(\.0)?\s*/\s*{full:g}\b", rows[BLANK]), rows
        finally:
            browser.close()
