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
    result = course("check", str(mine), "-v", cwd=str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr  # not everything passes
    lines = result.stdout.splitlines()
    assert any("as 03_mlp_backward/mlp_backward.ipynb" in line for line in lines)
    assert "PASS test_affine  1/1" in lines and "PASS test_affine_hidden  2/2" in lines, \
        result.stdout
    assert "FAIL test_relu  0/1" in lines, result.stdout
    assert lines[-1].startswith("score 3/") and "revisit: relu" in lines[-1], result.stdout


@pytest.mark.slow
def test_course_check_passes_the_reference(tmp_path):
    mine = tmp_path / "solutions.ipynb"
    shutil.copy(source_path("01_chain_rule"), mine)
    result = course("check", str(mine), cwd=str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_report_prints_every_message_in_full_and_a_summary():
    from course_lib.grading.selfcheck import render
    long = "x: " + "word " * 80 + "Hint: the part that used to be cut."
    out = render({"test_a": (0.0, 1.0), "test_a_hidden": (0.0, 2.0), "test_b": (1.0, 1.0)},
                 {"test_a": long, "test_a_hidden": long}, verbose=False, names=["a", "b"],
                 width=60)
    assert out.count("Hint: the part that used to be cut.") == 2
    assert all(len(line) <= 60 for line in out.splitlines())
    assert "test_b" not in out.split("score")[0]
    assert out.splitlines()[-1].startswith("score 1/4; revisit: a")
    assert "PASS test_b" in render({"test_b": (1.0, 1.0)}, {}, verbose=True, names=["b"])


def test_only_selects_the_tests_of_an_exercise():
    from course_lib.grading.selfcheck import select_tests
    nb = read(source_path("04_autodiff_engine"))
    assert select_tests(nb, ["Tensor_graph"]) == ("test_Tensor_graph", "test_Tensor_graph_hidden")
    assert select_tests(nb, ["Tensor"]) == ("test_Tensor", "test_Tensor_hidden")  # step (a)
    assert len(select_tests(nb, ["Tensor", "Tensor_elementwise", "Tensor_reductions",
                                 "Tensor_graph"])) == 8
    assert select_tests(read(source_path("03_mlp_backward")), ["affine"]) == \
        ("test_affine", "test_affine_hidden")
    with pytest.raises(SystemExit, match="its exercises"):
        select_tests(nb, ["nothing"])


@pytest.mark.slow
@pytest.mark.parametrize("assignment, name, wrong", [
    ("03_mlp_backward", "affine", ("x.T @ g", "g.T @ x")),
    ("04_autodiff_engine", "Tensor_elementwise", ("return Tensor._lift(other) - self",
                                                  "return self - other")),
])
def test_course_check_only_reports_the_named_exercise(tmp_path, assignment, name, wrong):
    import nbformat
    nb = read(source_path(assignment))
    mine = tmp_path / "mine.ipynb"
    nbformat.write(nb, mine)
    result = course("check", str(mine), "--only", name, "-v", cwd=str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    reported = [line.split()[1] for line in result.stdout.splitlines()
                if line.startswith(("PASS ", "FAIL "))]
    assert reported and all(q.startswith(f"test_{name}") for q in reported), result.stdout
    cell = cell_by_id(nb, name)
    cell.source = cell.source.replace(*wrong)
    nbformat.write(nb, mine)
    result = course("check", str(mine), "--only", name, cwd=str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"FAIL test_{name}" in result.stdout and "revisit: " + name in result.stdout
