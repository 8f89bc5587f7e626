"""Owner-only from the first command, and the grading secret: every `course` verb on a fresh
course leaves what it wrote about students unreadable to anyone else; `course secret` says where
the secret is without printing it; `--rotate` replaces it atomically, keeps the old one, and the
next grading draws new inputs."""
import os
import shutil
import stat
import subprocess
import sys

import nbformat
import pytest

from course_lib.grading.course import PRIVATE_PATHS, SECRET_FILE
from course_lib.grading.sandbox import bwrap_available
from harness import CORRECT, REPO, source_notebook, submission

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed")]
COURSE = os.path.join(os.path.dirname(sys.executable), "course")


def fresh_course(root) -> str:
    """A course folder as an instructor starts one: configuration and source/, nothing else."""
    os.makedirs(os.path.join(root, "source", "tiny"))
    nbformat.write(source_notebook(), os.path.join(root, "source", "tiny", "tiny.ipynb"))
    shutil.copy(os.path.join(REPO, "nbgrader_config.py"), root)
    return str(root)


def course(root, *args, env=None):
    """`course ARGS` in `root`, started with the usual umask 022 (not this test process's)."""
    result = subprocess.run([COURSE, *args], cwd=root, capture_output=True, text=True,
                            env=env or {k: v for k, v in os.environ.items()
                                        if k != "COURSE_GRADING_SECRET"},
                            preexec_fn=lambda: os.umask(0o022))
    assert result.returncode == 0, (args, result.stdout + result.stderr)
    return result.stdout


def shared_on_release(path) -> bool:
    """A feedback page keeps nbgrader's 0644: `nbgrader release_feedback` copies it with its
    mode into the exchange, where its student must read it. Its folders (0700) hide it here."""
    return path.endswith(".html") and f"{os.sep}feedback{os.sep}" in path


def readable_by_others(root, ours=()) -> list[str]:
    """Private paths (and anything below them) that group or others may read or enter;
    `ours` are files the test wrote itself."""
    found = []
    for top in list(PRIVATE_PATHS) + [f for f in os.listdir(root) if f.startswith(SECRET_FILE)]:
        path = os.path.join(root, top)
        walk = [(path, [], [])] if os.path.isfile(path) else os.walk(path)
        for dirpath, dirnames, filenames in walk:
            for p in [dirpath] + [os.path.join(dirpath, f) for f in filenames]:
                if p not in ours and not shared_on_release(p) and os.lstat(p).st_mode & 0o077:
                    found.append(f"{os.path.relpath(p, root)} "
                                 f"{stat.filemode(os.lstat(p).st_mode)}")
    return found


def test_a_first_course_export_writes_owner_only_files(tmp_path):
    root = fresh_course(tmp_path / "course")
    course(root, "export")
    assert os.stat(os.path.join(root, "gradebook.db")).st_mode & 0o777 == 0o600
    assert os.path.exists(os.path.join(root, "grades.csv"))
    assert readable_by_others(root) == []


def test_every_verb_leaves_student_data_owner_only(tmp_path):
    root = fresh_course(tmp_path / "course")
    course(root, "release", "tiny")
    assert os.stat(os.path.join(root, "gradebook.db")).st_mode & 0o777 == 0o600
    assert readable_by_others(root) == []
    folder = os.path.join(root, "submitted", "ada", "tiny")
    os.makedirs(folder)
    os.chmod(os.path.join(root, "submitted"), 0o755)  # as `cp -r` or zip_collect leaves it
    nbformat.write(submission(CORRECT), os.path.join(folder, "tiny.ipynb"))
    ours = {os.path.join(root, "submitted", "ada"), folder, os.path.join(folder, "tiny.ipynb")}
    for args in (["due", "tiny", "2099-01-01 17:00:00"], ["grade", "tiny"], ["feedback", "tiny"],
                 ["export"], ["extend", "ada", "tiny", "--days", "1"], ["secret"],
                 ["secret", "--rotate"]):
        course(root, *args)
        assert readable_by_others(root, ours) == [], args
    for name in ("autograded", "feedback", ".course_cache", "submitted", "grades.csv",
                 "grades_by_student.csv", "grades.png", SECRET_FILE):
        assert os.path.exists(os.path.join(root, name)), name
    assert len([f for f in os.listdir(root) if f.startswith(SECRET_FILE + ".")]) == 1


def test_secret_is_shown_by_place_and_age_and_rotated_with_a_regrade(tmp_path):
    root = fresh_course(tmp_path / "course")
    course(root, "release", "tiny")
    folder = os.path.join(root, "submitted", "ada", "tiny")
    os.makedirs(folder)
    nbformat.write(submission(CORRECT), os.path.join(folder, "tiny.ipynb"))
    assert "no grading secret yet" in course(root, "secret")
    assert "1 ran, 0 from the cache" in course(root, "grade", "tiny")
    assert "0 ran, 1 from the cache" in course(root, "grade", "tiny")
    path = os.path.join(root, SECRET_FILE)
    with open(path) as f:
        old = f.read()
    shown = course(root, "secret")
    assert path in shown and "0600" in shown and old.strip() not in shown

    out = course(root, "secret", "--rotate")
    with open(path) as f:
        new = f.read()
    backups = [f for f in os.listdir(root) if f.startswith(SECRET_FILE + ".")]
    assert new != old and len(new.strip()) == 64 and len(backups) == 1
    with open(os.path.join(root, backups[0])) as f:
        assert f.read() == old
    assert backups[0] in out and old.strip() not in out and new.strip() not in out
    for name in [SECRET_FILE] + backups:
        assert os.stat(os.path.join(root, name)).st_mode & 0o777 == 0o600
    # seeds derive from the secret: the regrade runs again, on new inputs, same honest score
    graded = course(root, "grade", "tiny")
    assert "1 ran, 0 from the cache" in graded and "3" in graded


def test_rotation_refuses_a_secret_from_the_environment(tmp_path):
    root = fresh_course(tmp_path / "course")
    env = dict(os.environ, COURSE_GRADING_SECRET="from-the-environment")
    result = subprocess.run([COURSE, "secret", "--rotate"], cwd=root, env=env,
                            capture_output=True, text=True)
    assert result.returncode != 0 and "$COURSE_GRADING_SECRET" in result.stderr
    assert not os.path.exists(os.path.join(root, SECRET_FILE))
    shown = subprocess.run([COURSE, "secret"], cwd=root, env=env, capture_output=True, text=True)
    assert "from-the-environment" not in shown.stdout and "$COURSE_GRADING_SECRET" in shown.stdout
