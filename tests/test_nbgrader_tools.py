"""nbgrader's own tools on a class graded by `course grade`: generate_feedback shows no hidden
test, plain autograde keeps the results of a notebook it cannot find, the formgrader's
Autograde button is refused with a pointer to `course grade`, plain autograde and validate run
kernels in the sandbox (or refuse without one)."""
import glob
import json
import os
import subprocess
import sys

import pytest

import nbformat

from course_lib.grading import nbgrader_safety, pipeline
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


# A notebook that looks around it: every path it can open goes into LEAKED, and its solution
# fails on purpose when LEAKED is not empty (so `nbgrader validate` would say what leaked).
SNOOP = """import os
LEAKED = []
_targets = {targets!r}
_here = os.getcwd()
while True:  # a course folder above the working folder
    _targets += [os.path.join(_here, n) for n in ('.grading_secret', 'gradebook.db', 'source', 'submitted')]
    if os.path.dirname(_here) == _here:
        break
    _here = os.path.dirname(_here)
for _p in _targets:
    try:
        if os.path.isdir(_p):
            LEAKED.append((_p, sorted(os.listdir(_p))[:5]))
        else:
            with open(_p, 'rb') as _f:
                LEAKED.append((_p, _f.read(64)))
    except OSError:
        pass
LEAKED += [(k, v) for k, v in os.environ.items() if {env_secret!r} in v]
print('LEAKED =', LEAKED)"""
SNOOP_SOLUTION = "def square_grad(x):\n    assert not LEAKED, LEAKED\n    return 2 * x\n"
ENV_SECRET = "ENV-SECRET-3b1d"


@pytest.fixture(scope="module")
def snooping(course, tmp_path_factory):
    """A snooping submission, the instructor's home with a private file, nbgrader's env."""
    home = tmp_path_factory.mktemp("instructor-home")
    (home / "private.txt").write_text("the instructor's own file")
    targets = [course.path(".grading_secret"), course.path("gradebook.db"),
               course.path("source", "tiny", "tiny.ipynb"), course.path("source"),
               course.path("submitted", "ada", "tiny", "tiny.ipynb"), course.path("submitted"),
               course.path("autograded"), str(home), str(home / "private.txt")]
    for path in targets:  # all there for the instructor: finding none is the sandbox's doing
        assert os.path.exists(path), path
    nb = nbformat.read(course.path("release", "tiny", "tiny.ipynb"), as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "square_grad":
            cell.source = SNOOP_SOLUTION
    nb.cells.insert(1, nbformat.v4.new_code_cell(SNOOP.format(targets=targets,
                                                                env_secret=ENV_SECRET)))
    folder = submit(course, "snoop", "tiny", nb, name="tiny.ipynb")
    env = dict(os.environ, HOME=str(home), COURSE_GRADING_SECRET=ENV_SECRET,
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    return folder, env


def nbgrader(course, env, *args):
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "nbgrader"), *args],
                          cwd=course.root, env=env, capture_output=True, text=True)


def test_plain_autograde_runs_the_kernel_in_the_sandbox(course, snooping):
    _, env = snooping
    result = nbgrader(course, env, "autograde", "tiny", "--student", "snoop", "--force")
    assert result.returncode == 0, result.stdout + result.stderr
    path = course.path("autograded", "snoop", "tiny", "tiny.ipynb")
    with open(path) as f:
        text = f.read()
    outputs = [o.get("text", "") for c in nbformat.reads(text, as_version=4).cells
               for o in c.get("outputs", [])]
    assert "LEAKED = []\n" in outputs, outputs  # the snooping cell ran and found nothing
    with open(course.path(".grading_secret")) as f:
        assert f.read().strip() not in text
    assert ENV_SECRET not in text.replace(repr(ENV_SECRET), "")
    # honest work keeps its score under the sandbox: 1 visible + 2 hidden points
    assert sum(s for s, _ in pipeline.scores(course, "tiny")[("snoop", "tiny")].values()) == 3


def test_plain_validate_runs_the_kernel_in_the_sandbox(course, snooping):
    folder, env = snooping
    result = nbgrader(course, env, "validate", os.path.join(folder, "tiny.ipynb"))
    out = result.stdout + result.stderr
    assert "Success! Your notebook passes all the tests." in out, out
    assert "LEAKED" not in out


def test_without_bubblewrap_nbgrader_refuses_next_to_the_secret(course, snooping):
    folder, env = snooping
    env = dict(env, PATH=os.path.dirname(sys.executable))  # no bwrap on PATH
    validate = nbgrader(course, env, "validate", os.path.join(folder, "tiny.ipynb"))
    autograde = nbgrader(course, env, "autograde", "tiny", "--student", "snoop", "--force")
    for result in (validate, autograde):
        out = result.stdout + result.stderr
        assert "bubblewrap is missing" in out and "`course grade`" in out, out
        assert ".grading_secret" in out and "Success!" not in out


def test_a_student_without_the_secret_may_validate_unsandboxed(tmp_path, monkeypatch):
    from traitlets.config import Config
    config = Config()
    config.CourseDirectory.root = str(tmp_path)
    config.CourseDirectory.db_url = f"sqlite:///{tmp_path}/gradebook.db"
    monkeypatch.delenv("COURSE_GRADING_SECRET", raising=False)
    assert nbgrader_safety.private_readable(config) == []
    (tmp_path / ".grading_secret").write_text("x")
    assert nbgrader_safety.private_readable(config) == [str(tmp_path / ".grading_secret")]
    monkeypatch.setenv("COURSE_GRADING_SECRET", "y")
    assert "$COURSE_GRADING_SECRET" in nbgrader_safety.private_readable(config)


SLEEPY = "import time\ntime.sleep(2.5)  # just under the cell limit of 3 s"


def test_plain_autograde_stops_a_notebook_at_its_wall_limit(tmp_path):
    """Cells that each sleep just under the cell limit: plain autograde stops the notebook at
    its own limit (c.CourseSandbox.notebook_timeout), says why, and the tests it did not run
    score 0 (nbgrader would give full marks to a test cell left without an error)."""
    course = make_tiny_course(str(tmp_path / "course"))
    with open(course.path("nbgrader_config.py"), "a") as f:
        f.write("\nc.Execute.timeout = 3\nc.CourseSandbox.notebook_timeout = 5\n")
    submit(course, "sleepy", "tiny", submission(CORRECT, before=[SLEEPY] * 6), name="tiny.ipynb")
    result = nbgrader_autograde(course, "tiny", "sleepy")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "wall limit of 5 s" in out, out
    nb = nbformat.read(course.path("autograded", "sleepy", "tiny", "tiny.ipynb"), as_version=4)
    stopped = [c for c in nb.cells if c.cell_type == "code" and any(
        o.get("ename") == "NotebookTimeoutError" for o in c.outputs)]
    assert stopped and "wall limit of 5 s" in "".join(stopped[-1].outputs[-1].traceback)
    assert nb.cells[-1] in stopped  # the hidden tests, at the end, did not run
    assert pipeline.scores(course, "tiny")[("sleepy", "tiny")] == {
        "test_square_grad": (0, 1), "test_square_grad_hidden": (0, 2)}


def test_plain_autograde_runs_python_whatever_kernel_a_notebook_names(course):
    """A submission whose metadata names a bash kernel: plain autograde still runs the course's
    Python kernel in the sandbox (correct code scores in full)."""
    nb = submission(CORRECT)
    nb.metadata["kernelspec"] = {"name": "bash", "display_name": "Bash", "language": "bash"}
    nb.metadata["language_info"] = {"name": "bash"}
    submit(course, "bashy", "tiny", nb, name="tiny.ipynb")
    result = nbgrader_autograde(course, "tiny", "bashy")
    assert result.returncode == 0, result.stdout + result.stderr
    graded = nbformat.read(course.path("autograded", "bashy", "tiny", "tiny.ipynb"), as_version=4)
    assert graded.metadata.kernelspec.name == "python3"
    assert sum(s for s, _ in pipeline.scores(course, "tiny")[("bashy", "tiny")].values()) == 3
