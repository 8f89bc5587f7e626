"""nbgrader's exchange on this course (course_lib/grading/exchange.py), as root with two system
accounts standing in for students (`nobody` hands in; `daemon` is the victim): `nbgrader
collect` refuses a hand-in owned by someone else than the student it names, one dated in the
future or backdated, one holding a link or another's file, and never lets one replace the
real hand-in; a hand-in made by `nbgrader submit` is not readable by other students."""
import datetime
import os
import pwd
import shutil
import subprocess
import sys

import nbformat
import pytest

from course_lib.grading import exchange
from harness import CORRECT, WRONG, make_tiny_course, submission

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: folders of other owners")

THIEF, VICTIM = "nobody", "daemon"
FORMAT = "%Y-%m-%d %H:%M:%S.%f UTC"


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return make_tiny_course(str(tmp_path_factory.mktemp("exchange") / "course"))


@pytest.fixture
def course(released):
    """The released course with an empty inbound/ and nothing collected yet."""
    for folder in (_inbox(released), released.path("submitted")):
        shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(_inbox(released))
    return released


def _inbox(course):
    return os.path.join(os.path.dirname(course.root), "exchange", course.course_id, "inbound")


def _hand_in(course, named, owner, when, solution=CORRECT, timestamp_txt=None, tag="r"):
    """A folder in inbound/ as `owner` would make it, claiming to be `named`'s at `when`."""
    stamp = when.strftime(FORMAT)
    folder = os.path.join(_inbox(course), f"{named}+tiny+{stamp}+{tag}")
    os.makedirs(folder)
    nbformat.write(submission(solution), os.path.join(folder, "tiny.ipynb"))
    with open(os.path.join(folder, "timestamp.txt"), "w") as f:
        f.write(timestamp_txt or stamp)
    uid = pwd.getpwnam(owner).pw_uid
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in [*dirnames, *filenames, "."]:
            os.lchown(os.path.join(dirpath, name), uid, -1)
    return folder


def _collect(course):
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    return subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "nbgrader"), "collect", "tiny", "--update",
         f"--Exchange.root={os.path.dirname(os.path.dirname(_inbox(course)))}"],
        cwd=course.root, env=env, capture_output=True, text=True)


def _collected(course, student):
    path = course.path("submitted", student, "tiny", "tiny.ipynb")
    if not os.path.exists(path):
        return None
    return "correct" if "2 * x" in open(path).read() else "wrong"


def now():
    """The time of the hand-in being made (a module-level constant goes stale under xdist)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def test_a_forged_hand_in_is_refused_and_replaces_nothing(course):
    NOW = now()
    _hand_in(course, VICTIM, VICTIM, NOW - datetime.timedelta(seconds=5))
    forged = _hand_in(course, VICTIM, THIEF, NOW, solution=WRONG)  # newer: it would win
    result = _collect(course)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert f"names {VICTIM} but belongs to {THIEF}" in out, out
    assert os.path.basename(forged) in out
    assert _collected(course, VICTIM) == "correct"


def test_a_hand_in_from_the_future_is_refused(course):
    NOW = now()
    _hand_in(course, THIEF, THIEF, NOW - datetime.timedelta(seconds=5))
    _hand_in(course, THIEF, THIEF, datetime.datetime(2099, 1, 1), solution=WRONG)
    out = "".join(_collect(course).stderr)
    assert "lies in the future" in out, out
    assert _collected(course, THIEF) == "correct"


def test_a_lone_forged_hand_in_collects_nothing(course):
    NOW = now()
    _hand_in(course, VICTIM, THIEF, NOW, solution=WRONG)
    out = _collect(course).stderr
    assert f"Nothing collected for {VICTIM}" in out, out
    assert _collected(course, VICTIM) is None


def test_links_backdating_and_edited_timestamps_are_refused(course, tmp_path):
    NOW = now()
    secret = tmp_path / "solution.ipynb"
    secret.write_text("SOLUTION")
    linked = _hand_in(course, THIEF, THIEF, NOW, tag="a")
    os.symlink(secret, os.path.join(linked, "extra.ipynb"))
    os.lchown(os.path.join(linked, "extra.ipynb"), pwd.getpwnam(THIEF).pw_uid, -1)
    assert "is a link" in exchange.refusal(linked, THIEF, NOW)
    edited = _hand_in(course, THIEF, THIEF, NOW, timestamp_txt="2020-01-01 00:00:00 UTC", tag="b")
    assert "timestamp.txt says" in exchange.refusal(edited, THIEF, NOW)
    backdated = _hand_in(course, THIEF, THIEF, NOW - datetime.timedelta(days=3), tag="c")
    assert "earlier than the folder" in exchange.refusal(backdated, THIEF, NOW - datetime.timedelta(days=3))
    theirs = _hand_in(course, THIEF, THIEF, NOW, tag="d")
    os.lchown(os.path.join(theirs, "tiny.ipynb"), pwd.getpwnam(VICTIM).pw_uid, -1)
    assert f"tiny.ipynb belongs to {VICTIM}" in exchange.refusal(theirs, THIEF, NOW)
    assert "no account" in exchange.refusal(theirs, "no-such-student-x", NOW)
    _collect(course)
    assert not os.path.exists(course.path("submitted", THIEF, "tiny", "extra.ipynb"))


def test_an_honest_hand_in_is_collected(course):
    NOW = now()
    folder = _hand_in(course, THIEF, THIEF, NOW)
    assert exchange.refusal(folder, THIEF, NOW) is None
    result = _collect(course)
    assert result.returncode == 0 and "Refused" not in result.stderr, result.stderr
    assert _collected(course, THIEF) == "correct"
