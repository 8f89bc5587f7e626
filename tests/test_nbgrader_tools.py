"""nbgrader's own tools on a class graded by `course grade`: generate_feedback shows no hidden
test, plain autograde keeps the results of a notebook it cannot find, the formgrader's
Autograde button is refused with a pointer to `course grade`."""
import glob
import json
import os
import subprocess
import sys

import pytest

from course_lib.grading import pipeline
from course_lib.grading.sandbox import bwrap_available
from harness import CORRECT, SECRET, WRONG, make_tiny_course, nbgrader_autograde, submission, submit

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed")]


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = make_tiny_course(str(tmp_path_factory.mktemp("tools") / "course"))
    submit(course, "ada", "tiny", submission(CORRECT), name="tiny.ipynb")
    submit(course, "bea", "tiny", submission(WRONG), name="tiny.ipynb")
    submit(course, "renamed", "tiny", submission(CORRECT), name="tiny (1).ipynb")
    report = pipeline.grade(course, "tiny", workers=1, sandbox=True, progress=False)
    assert report.count("failed") == 0, report.summary()
    return course


def test_nbgrader_generate_feedback_shows_no_hidden_test(course):
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "nbgrader"),
                             "generate_feedback", "tiny", "--force"], cwd=course.root, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    pages = glob.glob(course.path("feedback", "*", "tiny", "tiny.html"))
    assert len(pages) == 3
    for page in pages:
        with open(page) as f:
            text = f.read()
        assert SECRET not in text and "BEGIN HIDDEN TESTS" not in text, page
        assert "Hidden tests ran here" in text
        # the course's page, as `course feedback` writes it: questions named, no MathJax CDN
        assert "Tiny gradient · <code>square_grad</code> · visible tests" in text, page
        assert "cdnjs" not in text, page


def test_plain_autograde_keeps_results_of_a_renamed_notebook(course):
    before = pipeline.scores(course, "tiny")[("renamed", "tiny")]
    assert sum(s for s, _ in before.values()) == 3
    result = nbgrader_autograde(course, "tiny", "renamed")
    assert "course grade tiny --student renamed" in result.stdout + result.stderr
    assert os.path.exists(course.path("autograded", "renamed", "tiny", "tiny.ipynb"))
    assert pipeline.scores(course, "tiny")[("renamed", "tiny")] == before


def test_the_formgrader_autograde_button_is_refused(course):
    from nbgrader.server_extensions.formgrader import apihandlers
    from course_lib.grading.course import Course
    Course(course.root)  # reads nbgrader_config.py, as the formgrader's server does

    class Handler:
        written = []

        def write(self, text):
            self.written.append(text)

    handler = Handler()
    apihandlers.AutogradeHandler.post(handler, "tiny", "ada")
    answer = json.loads(handler.written[0])
    assert answer["success"] is False
    assert "course grade tiny --student ada" in answer["error"]
