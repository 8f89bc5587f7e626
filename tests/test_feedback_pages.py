"""Feedback pages that read well: messages wrap, the header names each question (from the
source, never from a student's heading; formulas drawn), formulas render with no network (MathML written at generation), and a 1000 px wide Chromium shows the
hint without sideways scrolling (screenshot under test-artifacts/feedback/)."""
import os
import re
import shutil

import nbformat
import pytest

import chromium
from course_lib.grading import feedback, pipeline
from course_lib.grading.course import Course
from course_lib.grading.sandbox import bwrap_available
from harness import REPO, WRONG, make_course, source_notebook, submission, submit

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed")]

ARTIFACTS = os.path.join(REPO, "test-artifacts", "feedback")
HINT = ("the gradient of x ** 2 is twice x: look at the power rule, and at which factor your "
        "function leaves out; every element of the result should be scaled the same way, "
        "whatever the shape of x")  # long enough to need wrapping at 1000 px
FORMULA = r"$$\frac{\partial}{\partial x} x^2 = 2x$$"


def _notebook(solution=None):
    """The tiny assignment with formulas in its heading and text and a long hint in its visible
    test; the student's copy has a heading of their own just above the tests."""
    nb = submission(WRONG) if solution else source_notebook()
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid == "intro":
            cell.source = (f"# Tiny gradient\n\n## Exercise 1 · `square_grad`, the slope of "
                           f"$x^2$ (3 points)\n\n{FORMULA}")
        if gid == "test_square_grad":
            cell.source = cell.source.replace('what="square_grad"',
                                              f'what="square_grad", hint={HINT!r}')
    if solution:
        at = next(i for i, c in enumerate(nb.cells)
                  if c.metadata.get("nbgrader", {}).get("grade_id") == "test_square_grad")
        nb.cells.insert(at, nbformat.v4.new_markdown_cell("## My notes"))
    return nb


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("pages") / "course")
    os.makedirs(os.path.join(root, "source", "tiny"))
    nbformat.write(_notebook(), os.path.join(root, "source", "tiny", "tiny.ipynb"))
    shutil.copy(os.path.join(REPO, "nbgrader_config.py"), root)
    course = Course(root)
    assert course.api().generate_assignment("tiny")["success"]
    submit(course, "bea", "tiny", _notebook(solution=WRONG), name="tiny.ipynb")
    report = pipeline.grade(course, "tiny", workers=1, sandbox=True, progress=False)
    assert report.count("failed") == 0, report.summary()
    [path] = feedback.generate(course, "tiny")
    with open(path) as f:
        return path, f.read()


def test_the_header_names_each_question(page):
    _, html = page
    toc = html.split('id="toc"')[1].split("</ol>")[0]
    assert "Test cell" not in toc
    names = re.findall(r'class="question"[^>]*>(.*?)</a>', toc, re.S)
    assert len(names) == 2 and len(set(names)) == 2, names     # one name per question
    for name, kind in zip(names, ("visible", "hidden")):
        assert name.startswith("Exercise 1 · <code>square_grad</code>, the slope of <math"), name
        assert name.endswith(f"· {kind} tests"), name
    assert "My notes" not in toc                   # a student's heading renames nothing


def test_question_names_come_from_the_source_and_are_unique():
    from course_lib.grading.preprocessors import _unique
    assert _unique({"a": "Ex 1 · visible tests", "b": "Ex 1 · visible tests", "c": "Ex 2"}) == {
        "a": "Ex 1 · visible tests · part 1", "b": "Ex 1 · visible tests · part 2", "c": "Ex 2"}


def test_formulas_render_without_network(page):
    _, html = page
    assert "<mfrac>" in html and "$$" not in html
    assert "mathjax" not in html.lower() and "cdnjs" not in html


def test_a_hint_wraps_at_1000_px(page):
    path, html = page
    assert "Hint:" in html
    api = chromium.sync_api()
    os.makedirs(ARTIFACTS, exist_ok=True)
    with api.sync_playwright() as pw:
        browser = chromium.launch(pw)
        try:
            view = browser.new_page(viewport={"width": 1000, "height": 900})
            requested = []
            view.route("http*://**", lambda route: (requested.append(route.request.url),
                                                     route.abort()))
            view.goto("file://" + path)
            hint = view.locator("pre", has_text="Hint:").first
            hint.scroll_into_view_if_needed()
            view.screenshot(path=os.path.join(ARTIFACTS, "hint_at_1000px.png"))
            box = hint.bounding_box()
            wide = view.evaluate("document.scrollingElement.scrollWidth")
            scrolls = view.evaluate(
                "[...document.querySelectorAll('pre, div.output_subarea')]"
                ".filter(e => e.scrollWidth > e.clientWidth + 1).length")
            fraction = view.locator("mfrac").first.bounding_box()
        finally:
            browser.close()
    assert requested == []
    assert wide <= 1000 and scrolls == 0
    assert box["x"] >= 0 and box["x"] + box["width"] <= 1000
    assert fraction is not None and fraction["height"] > 20  # drawn as a fraction, not text


def test_a_real_notebook_gets_one_name_per_question(tmp_path):
    """01's Exercise 2 has four functions under one heading with a formula: each test is named
    by its function (and what its id adds), the formula drawn as MathML."""
    from course_lib.grading.preprocessors import inline_html, question_names
    course = make_course(str(tmp_path / "course"),
                         assignments=("01_chain_rule", "03_mlp_backward"))
    names = question_names(course.db_url, "01_chain_rule", "chain_rule")
    assert len(set(names.values())) == len(names), names
    # 03: three functions under one heading, two visible tests of one function
    mlp = question_names(course.db_url, "03_mlp_backward", "mlp_backward")
    assert len(set(mlp.values())) == len(mlp) and not any("part" in n for n in mlp.values())
    assert mlp["test_sigmoid_stable"].endswith("· `sigmoid` · visible tests (stable)"), mlp
    assert names["test_du_dx"] == (r"Exercise 2: the chain-rule factors of $y = \sin(x^2)\,e^{3x}$"
                                   " · `du_dx` · visible tests")
    assert names["test_dy_dx_hidden"].endswith("· `dy_dx` · hidden tests")
    assert names["test_central_difference_hidden"] == \
        "Exercise 1: `central_difference` · hidden tests"
    drawn = inline_html(names["test_du_dx"])
    assert "<math" in drawn and "$" not in drawn and "<code>du_dx</code>" in drawn, drawn
