"""The formgrader on a graded class, in Chromium: its grading view opens every submission with
nbgrader's own template (HTTP 200), runs none of a hostile student's script payloads (markdown,
attachments, outputs), and a manual score and comment set in the page reach the gradebook,
grades.csv and the feedback page. autograded/ holds no payload either."""
import csv
import json
import os
import subprocess
import sys

import nbformat
import pytest

import chromium
import formgrader_payloads as payloads
from course_lib.grading import pipeline
from course_lib.grading.preprocessors import SanitizeStudentCells
from course_lib.grading.sandbox import bwrap_available
from harness import CORRECT, WRONG, make_tiny_course, nbgrader_autograde, submission, submit
from jupyterlab import jupyter

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed")]

VENV_BIN = os.path.dirname(sys.executable)
DANGEROUS = ("<script", "onerror=", "onload=", "ontoggle=", "srcdoc=", "javascript:", "<iframe",
             "image/svg+xml", "text/html", "application/javascript")


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """ada's submission carries every payload and extra files with script; bea's autograded
    notebook is poisoned by hand (as one written before the course sanitized autograded/ would
    be); cyd hands in the same as ada and is graded by plain `nbgrader autograde`, which
    copies the extra files into autograded/."""
    course = make_tiny_course(str(tmp_path_factory.mktemp("formgrader") / "course"))
    hostile = payloads.add_to(submission(CORRECT))
    hostile.cells.append(payloads.links_cell("ada"))
    payloads.add_files(submit(course, "ada", "tiny", hostile, name="tiny.ipynb"))
    submit(course, "bea", "tiny", submission(WRONG), name="tiny.ipynb")
    report = pipeline.grade(course, "tiny", workers=1, sandbox=True, progress=False)
    assert report.count("failed") == 0, report.summary()
    linking = payloads.add_to(submission(CORRECT))
    linking.cells.append(payloads.links_cell("cyd"))
    payloads.add_files(submit(course, "cyd", "tiny", linking, name="tiny.ipynb"))
    plain = nbgrader_autograde(course, "tiny", "cyd")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert os.path.exists(course.path("autograded", "cyd", "tiny", "notes.html"))
    poisoned = course.path("autograded", "bea", "tiny", "tiny.ipynb")
    nb = nbformat.read(poisoned, as_version=4)
    nb.cells.extend(payloads.markdown_cells())
    os.chmod(poisoned, 0o600)
    with open(poisoned, "w") as f:  # nbformat.write would refuse the hostile execution count
        nbformat.write(payloads.poison_outputs(nb), f)
    return course


def test_autograded_holds_no_payload(course):
    nb = nbformat.read(course.path("autograded", "ada", "tiny", "tiny.ipynb"), as_version=4)
    shown = [c for c in nb.cells if c.cell_type == "markdown"] + \
        [c.outputs for c in nb.cells if c.cell_type == "code"]  # code is shown as text
    text = json.dumps(shown)
    assert "payload script" in text  # the student's cells are there, cleaned
    found = [word for word in DANGEROUS if word in text]
    assert not found, found


def test_sanitizing_removes_hostile_outputs_and_counts():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(1)"), *payloads.markdown_cells()]
    payloads.poison_outputs(nb).cells[0].execution_count = "1<img src=x onerror=alert(1)>"
    SanitizeStudentCells().preprocess(nb, {})
    code = nb.cells[0]
    assert code.execution_count is None
    assert [o["data"] for o in code.outputs if "data" in o] == [
        {"text/plain": "html"}, {"text/plain": "js"}, {"text/plain": "svg"}]
    assert all(o.get("name") in (None, "stdout", "stderr") for o in code.outputs)
    text = json.dumps(nb)
    assert not [w for w in DANGEROUS if w in text]


@pytest.fixture(scope="module")
def formgrader(course, tmp_path_factory):
    """A Jupyter server with nbgrader's formgrader, run in the course folder: (url, token)."""
    with jupyter("server", course.root, str(tmp_path_factory.mktemp("server"))) as served:
        yield served


@pytest.fixture(scope="module")
def page(formgrader):
    base, token = formgrader
    with chromium.page(f"{base}/formgrader?token={token}") as page:  # logs in (cookie)
        yield page


def _submission_id(course, student):
    from nbgrader.api import Gradebook
    with Gradebook(course.db_url, course.course_id) as gb:
        return gb.find_submission_notebook("tiny", "tiny", student).id


def test_the_payloads_do_run_in_an_unsanitized_page(page):
    """The markers are real: the same markup in a plain page runs (so an empty list below
    means sanitized, not a broken payload)."""
    page.set_content(payloads.control_page())
    page.wait_for_function("() => (window.__pwned || []).length >= 5")
    assert {"script", "img_onerror", "svg_onload", "iframe_srcdoc"} <= set(payloads.pwned(page))


@pytest.mark.parametrize("student", ["ada", "bea", "cyd"])
def test_the_grading_view_runs_no_payload(course, formgrader, page, student):
    base, _ = formgrader
    refused = []
    on_console = lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None  # noqa: E731
    page.on("console", on_console)
    try:
        response = page.goto(f"{base}/formgrader/submissions/{_submission_id(course, student)}")
        assert response.status == 200, page.content()[:2000]
        page.wait_for_load_state("load")
        page.wait_for_selector("input.score")  # nbgrader's formgrade template, not feedback's
    finally:
        page.remove_listener("console", on_console)
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert refused == []  # the policy refuses nothing of nbgrader's own page
    assert page.locator("text=payload script").count() == 1
    for link in page.locator("a", has_text="click me").all():
        assert not (link.get_attribute("href") or "").lower().startswith("javascript")
    page.locator("details").first.click()  # a toggle handler would fire now
    page.mouse.move(10, 10)
    assert payloads.pwned(page) == []
    assert payloads.live_markup(page) == []


def _served(page, url):
    """(status, content type, payloads that ran) of the instructor's browser opening `url`."""
    response = page.goto(url)
    page.wait_for_load_state("load")
    page.wait_for_timeout(200)  # an onload handler would have fired
    return response.status, response.headers.get("content-type", ""), payloads.pwned(page)


@pytest.mark.parametrize("student", ["ada", "cyd"])
def test_handed_in_files_never_run_on_the_formgrader_origin(course, formgrader, page, student):
    """A student's notes.html, plot.svg and page.xhtml beside the notebook, linked from their
    markdown (plain autograde copies them into autograded/; the submitted/ copy is one
    encoded `..` away): opened in the instructor's browser, none runs a script."""
    base, _ = formgrader
    sid = _submission_id(course, student)
    page.goto(f"{base}/formgrader/submissions/{sid}")
    page.wait_for_selector("input.score")
    assert page.locator("a", has_text="notes.html").count() == 1  # the link is there to click
    for name in payloads.EXTRA_FILES:
        status, kind, ran = _served(page, f"{base}/formgrader/submissions/{sid}/{name}")
        assert ran == [], (name, status, kind)
        if status == 200:
            assert kind.startswith("text/plain"), (name, kind)
    up = payloads.UP_TO_SUBMITTED.format(student=student, assignment="tiny")
    status, kind, ran = _served(page, f"{base}/formgrader/submissions/{sid}/{up}")
    assert ran == [] and status == 404, (status, kind, ran)


def test_the_grading_views_policy_stops_a_script_that_got_into_the_notebook(
        course, formgrader, page):
    """The real page and its real policy, with a script and a handler added inside the
    notebook (as if both sanitizers had missed them): they do not run, nbgrader's own do."""
    from course_lib.grading.formgrader import NOTEBOOK_START
    base, _ = formgrader
    sid = _submission_id(course, "bea")
    url = f"{base}/formgrader/submissions/{sid}/"
    real = page.request.get(url)
    policy = real.headers["content-security-policy"]
    assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0], policy
    cut = real.text().index(NOTEBOOK_START)
    cut = real.text().index(">", cut) + 1
    injected = (real.text()[:cut] + f"<script>{payloads.MARK}('injected_script')</script>"
                f'<img src="x" onerror="{payloads.MARK}(\'injected_handler\')">'
                + real.text()[cut:])
    page.route(url, lambda route: route.fulfill(status=200, body=injected, headers={
        "content-type": "text/html; charset=utf-8", "content-security-policy": policy}))
    try:
        page.goto(url)
        page.wait_for_selector("input.score")
        page.wait_for_timeout(300)
        assert payloads.pwned(page) == []
        assert page.evaluate("() => typeof toggle_name === 'function' && submission_id") == sid
    finally:
        page.unroute(url)


def test_a_manual_score_and_comment_reach_grades_and_feedback(course, formgrader, page):
    base, _ = formgrader
    page.goto(f"{base}/formgrader/submissions/{_submission_id(course, 'bea')}")
    payloads.grade_in_page(page, "test_square_grad", "0.5", "square_grad-comment",
                           "Check the factor of two.")
    assert payloads.wait_for_manual_grade(
        page, course.db_url, course.course_id, ("tiny", "tiny", "bea"), "test_square_grad",
        "square_grad", 0.5) == (0.5, "Check the factor of two.")
    run = lambda *args: subprocess.run([os.path.join(VENV_BIN, "course"), *args],  # noqa: E731
                                       cwd=course.root, capture_output=True, text=True)
    for verb in ("feedback", "export"):
        result = run(verb)
        assert result.returncode == 0, result.stdout + result.stderr
    with open(course.path("grades.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["student"] == "bea"]
    assert sum(float(r["score"]) for r in rows) == 0.5, rows
    with open(course.path("feedback", "bea", "tiny", "tiny.html")) as f:
        text = f.read()
    assert "Check the factor of two." in text
    assert "manual: 0.5/1.0, by the grader (the tests gave 0.0)" in text
    # the grading view, opened again, says the same: the box holds the override
    page.goto(f"{base}/formgrader/submissions/{_submission_id(course, 'bea')}")
    box = page.locator("#test_square_grad")
    page.wait_for_function("() => document.querySelector('#test_square_grad').value !== ''")
    assert box.input_value() == "0.5"
    assert box.locator("xpath=..").locator(".course-tests").inner_text() == (
        "(the tests gave 0.0/1.0; a score in the box overrides it)")
