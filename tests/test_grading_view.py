"""The formgrader's grading view says beside each score box what the tests gave, so a manual
score typed over it reads as an override, as the feedback page says ("manual: 1/2, by the
grader (the tests gave 0)"). Rendered with nbgrader's own formgrade template, no server."""
import re

from nbconvert.exporters import HTMLExporter
from nbgrader.server_extensions.formgrader import handlers
from traitlets.config import Config

from course_lib.grading.formgrader import with_test_scores
from harness import WRONG, submission

RESOURCES = {"base_url": "", "assignment_id": "tiny", "notebook_id": "tiny", "submission_id": "x",
             "index": 0, "total": 1, "student": "bea", "last_name": None, "first_name": None,
             "notebook_path": "autograded/bea/tiny/tiny.ipynb"}


def grading_view() -> str:
    """The formgrade page of the tiny submission, as the formgrader's exporter renders it."""
    config = Config()
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    html, _ = HTMLExporter(config=config).from_notebook_node(submission(WRONG),
                                                            resources=dict(RESOURCES))
    return html


def test_each_score_box_says_what_the_tests_gave():
    page = with_test_scores(grading_view(), {"test_square_grad": (0.0, 1.0),
                                             "test_square_grad_hidden": (0.5, 2.0)})
    boxes = re.findall(r'<input class="score tabbable" id="([^"]+)"[^>]*>\s*/\s*[0-9.]+\s*'
                       r'<span class="course-tests">([^<]*)</span>', page)
    assert boxes == [
        ("test_square_grad", "(the tests gave 0.0/1.0; a score in the box overrides it)"),
        ("test_square_grad_hidden", "(the tests gave 0.5/2.0; a score in the box overrides it)")]


def test_a_question_the_tests_did_not_score_gets_no_note():
    page = grading_view()
    assert with_test_scores(page, {"test_square_grad": (None, 1.0)}) == page
