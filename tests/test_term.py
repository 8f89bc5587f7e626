"""A term as a TA lives it: the demo class graded, then every `course` verb in its plain form
on a course folder with the stray files real folders hold (git's .gitkeep, macOS's .DS_Store,
a TA's notes)."""
import os
import subprocess
import sys

import pytest

from course_lib.cli import VERBS
from course_lib.grading.sandbox import bwrap_available
from harness import make_course

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed")]

COURSE = os.path.join(os.path.dirname(sys.executable), "course")
ENV = {k: v for k, v in os.environ.items() if k not in ("COURSE_ROOT", "COURSE_DB_URL")}
# verbs that need an argument by design; each is still run plain, and must say what it needs
NEEDS_ARGUMENT = {"check": "notebook", "cluster-certs": "folder"}
STRAY = ("autograded/.gitkeep", "autograded/.DS_Store", "submitted/.DS_Store",
         "submitted/notes.txt", "submitted/alice/.DS_Store",
         "submitted/alice/01_chain_rule/.DS_Store", "feedback/.DS_Store")


def course(root, *args):
    return subprocess.run([COURSE, *args], cwd=root, env=ENV, capture_output=True, text=True)


@pytest.fixture(scope="module")
def demo_class(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("term") / "course")
    make_course(root, assignments=("01_chain_rule",), release=False)
    result = course(root, "demo", "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    for path in STRAY:
        os.makedirs(os.path.dirname(os.path.join(root, path)), exist_ok=True)
        with open(os.path.join(root, path), "w") as f:
            f.write("stray\n")
    return root


@pytest.mark.parametrize("verb", list(VERBS))
def test_every_verb_in_its_plain_form(demo_class, verb):
    result = course(demo_class, verb)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    if verb in NEEDS_ARGUMENT:
        assert result.returncode == 2 and NEEDS_ARGUMENT[verb] in result.stderr, output
    else:
        assert result.returncode == 0, output
    assert "Warning" not in output, output   # no dependency's warnings reach the TA


def test_feedback_for_everyone_despite_stray_files(demo_class):
    result = course(demo_class, "feedback")
    assert result.returncode == 0, result.stdout + result.stderr
    for student in ("alice", "bob", "carol"):
        assert os.path.exists(os.path.join(demo_class, "feedback", student, "01_chain_rule",
                                           "chain_rule.html"))
    assert "wrote 3 feedback page(s)" in result.stdout
