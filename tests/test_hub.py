"""A real class on a local JupyterHub, driven in Chromium: release, fetch, submit, collect,
grade, feedback, fetch feedback, formgrader.

The test creates its own Unix accounts (distinct from `make hub`'s), exchange and hub on free
ports, and removes them all. Screenshots of each step go to ``test-artifacts/hub/``. Needs root
(accounts, PAM, the hub switching users) and the proxy from `make hub` / `make test`.
"""
import csv
import datetime
import glob
import json
import os
import re
import shutil
import socket
import tempfile

import pytest

import chromium
import formgrader_payloads as payloads
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
    checkout_mode = os.stat(REPO).st_mode & 0o7777
    os.chmod(REPO, 0o700)  # `make hub` refuses a checkout the class accounts can read
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
        os.chmod(REPO, checkout_mode)


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


def _fetch_and_submit(page, base, user, solve, tamper=None):
    _assignments_tab(page)
    _row(page, "released_assignments_list").locator("button", has_text="Fetch").click()
    _row(page, "fetched_assignments_list").wait_for()
    _shot(page, f"02_{user}_fetched.png")
    mine = os.path.join(_home(user), ASSIGNMENT, NOTEBOOK + ".ipynb")
    assert os.path.exists(mine)
    if solve:
        _solve_in_notebook(page, base, user, mine)
        _assignments_tab(page)
    if tamper:
        tamper(mine)
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


def _add_payloads(path):
    """The blank student's notebook carries every script payload (markdown, attachments, a
    cell that displays HTML, JavaScript and SVG when it runs), and files with script beside it,
    linked from its markdown."""
    import nbformat
    nb = payloads.add_to(nbformat.read(path, as_version=4))
    nb.cells.append(payloads.links_cell(BLANK, ASSIGNMENT))
    nbformat.write(nb, path)
    shutil.chown(path, BLANK, BLANK)
    payloads.add_files(os.path.dirname(path))  # notes.html, plot.svg, page.xhtml beside it
    for name in payloads.EXTRA_FILES:
        shutil.chown(os.path.join(os.path.dirname(path), name), BLANK, BLANK)


def _stamp(when):
    return when.strftime("%Y-%m-%d %H:%M:%S.%f UTC")


FORGE = """import os, shutil, sys
inbound, named, stamp, notebook, secret = sys.argv[1:]
folder = os.path.join(inbound, f"{named}+01_chain_rule+{stamp}+forged")
os.mkdir(folder)
shutil.copy(notebook, folder)
for name, text in (("timestamp.txt", stamp), ("submission_secret.txt", secret)):
    with open(os.path.join(folder, name), "w") as f:
        f.write(text)
os.chmod(folder, 0o777)
print(folder)
"""
CHOSEN_SECRET = "the-forger-chose-this-secret"


def _forge(room, env_bin, named, when):
    """As the blank student: a hand-in folder in inbound/ claiming to be `named`'s."""
    inbound = os.path.join(room.exchange, "backprop-from-scratch", "inbound")
    mine = os.path.join(_home(BLANK), ASSIGNMENT, NOTEBOOK + ".ipynb")
    return _as(room, env_bin, BLANK, "python", "-c", FORGE, inbound, named, _stamp(when), mine,
               CHOSEN_SECRET).stdout.strip()


WRITE_PROBE = """import sys
for path in sys.argv[1:]:
    try:
        open(path, "ab").close()
    except OSError:
        continue
    print(path)
"""


def _what_a_student_reaches(room, env_bin, user, read, write):
    from course_lib.hub import classroom
    readable = classroom.readable_by(user, read)
    writable = _as(room, env_bin, user, "python", "-c", WRITE_PROBE, *write).stdout.split()
    return readable, writable


def _submitted_text(room, student):
    with open(os.path.join(room.course_dir, "submitted", student, ASSIGNMENT,
                           NOTEBOOK + ".ipynb")) as f:
        return f.read()


def test_a_class_on_jupyterhub(hub):
    sync_api = chromium.sync_api()
    room, env_bin, base = hub
    os.makedirs(ARTIFACTS, exist_ok=True)
    from course_lib.hub import classroom

    # The class environment holds course_lib as a built package, no checkout or course.
    where = _as(room, env_bin, BLANK, "python", "-c",
                "import course_lib; print(course_lib.__file__)").stdout.strip()
    assert where.startswith(room.env_dir + os.sep) and "site-packages" in where, where
    assert not os.path.exists(os.path.join(os.path.dirname(os.path.dirname(where)), "source"))

    # `make hub` refuses a course a student could read, and says why.
    course_home = classroom.home(INSTRUCTOR)
    os.chmod(course_home, 0o755)
    os.chmod(room.course_dir, 0o755)
    os.chmod(os.path.join(room.course_dir, "source"), 0o755)
    with pytest.raises(SystemExit, match=r"can read[\s\S]*source"):
        classroom.refuse_readable_course(room)
    classroom.copy_course(room)  # private again
    classroom.refuse_readable_course(room)

    # The instructor releases 01 into the exchange.
    _instructor(room, env_bin, "course", "release", ASSIGNMENT)
    _instructor(room, env_bin, "nbgrader", "release_assignment", ASSIGNMENT)

    with sync_api.sync_playwright() as pw:
        browser = chromium.launch(pw)
        try:
            # Two students fetch it in the Assignments tab; one solves an exercise; both
            # submit; the other's notebook carries script payloads.
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
                _fetch_and_submit(page, base, user, solve,
                                  tamper=_add_payloads if user == BLANK else None)

            # The blank student hands in under the solver's name (newer than the real one)
            # and under their own with a date in the future.
            now = datetime.datetime.now(datetime.timezone.utc)
            forged = _forge(room, env_bin, SOLVER, now)
            future = _forge(room, env_bin, BLANK, datetime.datetime(2099, 1, 1))

            # Nobody reads another student's files, the exchange's inbox or a classmate's
            # hand-in (even knowing its name).
            other = _as(room, env_bin, BLANK, "ls", _home(SOLVER), check=False)
            assert other.returncode != 0, other.stdout
            inbox = os.path.join(room.exchange, "backprop-from-scratch", "inbound")
            assert _as(room, env_bin, BLANK, "ls", inbox, check=False).returncode != 0
            [real] = [p for p in glob.glob(os.path.join(inbox, f"{SOLVER}+*")) if p != forged]
            hand_in = [real, os.path.join(real, NOTEBOOK + ".ipynb"),
                       os.path.join(real, "submission_secret.txt")]
            assert _what_a_student_reaches(room, env_bin, BLANK, hand_in, hand_in[1:]) == ([], [])
            response = pages[BLANK].goto(f"{base}/user/{SOLVER}/lab")
            assert SOLVER not in pages[BLANK].url or response.status >= 400

            # The instructor collects: both forgeries are refused, the real hand-ins kept.
            collected = _instructor(room, env_bin, "nbgrader", "collect", ASSIGNMENT)
            log = collected.stdout + collected.stderr
            assert f"names {SOLVER} but belongs to {BLANK}" in log, log
            assert "lies in the future" in log, log
            assert os.path.basename(forged) in log and os.path.basename(future) in log
            assert sorted(os.listdir(os.path.join(room.course_dir, "submitted"))) == \
                sorted([SOLVER, BLANK])
            assert "return (f(x + h) - f(x - h)) / (2 * h)" in _submitted_text(room, SOLVER) \
                or f"def {SOLVED}(" in _submitted_text(room, SOLVER)
            assert "payload script" in _submitted_text(room, BLANK)
            with open(os.path.join(room.course_dir, "submitted", BLANK, ASSIGNMENT,
                                   "timestamp.txt")) as f:
                assert not f.read().startswith("2099")

            # It grades (sandboxed), writes and releases feedback.
            _instructor(room, env_bin, "course", "grade", ASSIGNMENT, "--sandbox", "--quiet")
            _instructor(room, env_bin, "course", "feedback", ASSIGNMENT)
            _instructor(room, env_bin, "course", "export")
            _instructor(room, env_bin, "nbgrader", "release_feedback", ASSIGNMENT)
            totals = _totals_from_csv(os.path.join(room.course_dir, "grades.csv"))
            full = totals[SOLVER][1]
            assert totals == {SOLVER: (3.0, full), BLANK: (0.0, full)}, totals

            # A student reads none of the course's secrets, nor a classmate's feedback: the
            # feedback folder is not listable, and the page named by the forger's secret
            # does not exist.
            from nbgrader.utils import notebook_hash
            released = os.path.join(room.exchange, "backprop-from-scratch", "feedback")
            course_files = [os.path.join(room.course_dir, p) for p in (
                "source", os.path.join("source", ASSIGNMENT, NOTEBOOK + ".ipynb"), "gradebook.db",
                ".grading_secret", "grades.csv", os.path.join("submitted", SOLVER),
                os.path.join("feedback", SOLVER, ASSIGNMENT, NOTEBOOK + ".html"))]
            checkout = [os.path.join(REPO, "source", ASSIGNMENT, NOTEBOOK + ".ipynb")]
            forged_page = os.path.join(released, notebook_hash(
                secret=CHOSEN_SECRET, notebook_id=NOTEBOOK) + ".html")
            assert not os.path.exists(forged_page)
            assert all(os.path.exists(p) for p in course_files + checkout)
            reached = _what_a_student_reaches(room, env_bin, BLANK,
                                              course_files + checkout + [released, forged_page],
                                              course_files[1:])
            assert reached == ([], []), reached

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

            # Its grading view opens every submission and runs none of the payloads.
            db_url = "sqlite:///" + os.path.join(room.course_dir, "gradebook.db")
            for user in (SOLVER, BLANK):
                response = page.goto(f"{base}/user/{INSTRUCTOR}/formgrader/submissions/"
                                     f"{_submission_id(db_url, user)}")
                assert response.status == 200, (user, page.content()[:1000])
                page.wait_for_selector("input.score")
                _shot(page, f"08_grading_view_{user}.png")
            assert page.locator("text=payload script").count() == 1
            page.locator("details", has_text="x").last.click()
            assert payloads.pwned(page) == [] and payloads.live_markup(page) == []
            # The files handed in beside it never run either: not from autograded/, nor from
            # submitted/ one encoded `..` away (the link in its markdown).
            blank_files = f"{base}/user/{INSTRUCTOR}/formgrader/submissions/" \
                f"{_submission_id(db_url, BLANK)}/"
            up = payloads.UP_TO_SUBMITTED.format(student=BLANK, assignment=ASSIGNMENT)
            for name in [*payloads.EXTRA_FILES, up]:
                response = page.goto(blank_files + name)
                page.wait_for_load_state("load")
                assert payloads.pwned(page) == [], (name, response.status)
                assert response.status == 404 or response.headers["content-type"].startswith(
                    "text/plain"), (name, response.status, response.headers["content-type"])
            page.goto(blank_files)
            page.wait_for_selector("input.score")

            # A manual score and a comment typed in the page reach grades.csv and feedback.
            score_input = page.locator("input.score").first.get_attribute("id")
            comment_box = page.locator("textarea.comment").first.get_attribute("id")
            payloads.grade_in_page(page, score_input, "1", comment_box, "Seen by a human.")
            assert payloads.wait_for_manual_grade(
                page, db_url, "backprop-from-scratch", (NOTEBOOK, ASSIGNMENT, BLANK),
                score_input, comment_box[:-len("-comment")], 1.0) == (1.0, "Seen by a human.")
            _instructor(room, env_bin, "course", "feedback", ASSIGNMENT)
            _instructor(room, env_bin, "course", "export")
            totals = _totals_from_csv(os.path.join(room.course_dir, "grades.csv"))
            assert totals[BLANK] == (1.0, full), totals
            with open(os.path.join(room.course_dir, "feedback", BLANK, ASSIGNMENT,
                                   NOTEBOOK + ".html")) as f:
                assert "Seen by a human." in f.read()
        finally:
            browser.close()


def _submission_id(db_url, student):
    from nbgrader.api import Gradebook
    with Gradebook(db_url, "backprop-from-scratch") as gb:
        return gb.find_submission_notebook(NOTEBOOK, ASSIGNMENT, student).id
