"""The `course` command: help for every verb without an activated venv; `course check`."""
import os
import shutil
import subprocess
import sys

import pytest

from course_lib.cli import VERBS
from harness import REPO, cell_by_id, read, source_path, release_path

COURSE = os.path.join(os.path.dirname(sys.executable), "course")
BARE_ENV = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "COURSE_ROOT")}
BARE_ENV["PATH"] = "/usr/bin:/bin"  # no venv on PATH: `.venv/bin/course` must still work


def course(*args, cwd=REPO):
    return subprocess.run([COURSE, *args], cwd=cwd, env=BARE_ENV, capture_output=True, text=True)


@pytest.mark.parametrize("verb", [None, *VERBS])
def test_every_verb_has_help(verb):
    result = course(*([verb] if verb else []), "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: course" in result.stdout


def test_unknown_assignment_is_a_clear_error():
    result = course("release", "99_nothing")
    assert result.returncode != 0
    assert "unknown assignment" in result.stderr


@pytest.mark.slow
def test_course_check_on_a_release_notebook_with_one_exercise_solved(tmp_path):
    nb = read(release_path("03_mlp_backward"))
    cell_by_id(nb, "affine").source = cell_by_id(read(source_path("03_mlp_backward")),
                                                 "affine").source
    import nbformat
    mine = tmp_path / "my attempt.ipynb"
    nbformat.write(nb, mine)
    result = course("check", str(mine), cwd=str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr  # not everything passes
    lines = result.stdout.splitlines()
    assert any("as 03_mlp_backward/mlp_backward.ipynb" in line for line in lines)
    affine = [line for line in lines if line.startswith("test_affine ")]
    assert affine and "1/1" in affine[0], result.stdout
    hidden = [line for line in lines if line.startswith("test_affine_hidden")]
    assert hidden and "0/" not in hidden[0], result.stdout
    assert "total:" in result.stdout


@pytest.mark.slow
def test_course_check_passes_the_reference(tmp_path):
    mine = tmp_path / "solutions.ipynb"
    shutil.copy(source_path("01_chain_rule"), mine)
    result = course("check", str(mine), cwd=str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
