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
    with pytest.raises(SystemExit, match="--only accepts: Tensor, .*, sgd_step, training$"):
        select_tests(nb, ["nothing"])


def test_only_accepts_every_graded_name_it_lists():
    from course_lib.grading.selfcheck import graded_names, select_tests
    nb = read(source_path("04_autodiff_engine"))
    names = graded_names(nb)
    assert names[-1] == "training" and "Linear" in names
    assert select_tests(nb, ["training"]) == ("test_training_hidden",)
    every = [gid for name in names for gid in select_tests(nb, [name])]
    tests = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
             if c.metadata.get("nbgrader", {}).get("grade")
             and not c.metadata["nbgrader"].get("solution")]
    assert sorted(every) == sorted(tests)  # each test is reachable by a listed name, once


def test_report_names_every_cell_that_raised_and_never_says_everything_passes():
    import nbformat
    from course_lib.grading.selfcheck import raised_cells, render
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("### Notes from the grader\n\n- a note"),
        nbformat.v4.new_code_cell("import numpy as np"),
        nbformat.v4.new_code_cell("\nprint(f'test MSE {mse}')\nassert mse < 0.05", outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="test MSE nan\n"),
            nbformat.v4.new_output("error", ename="AssertionError", evalue="", traceback=[])]),
        nbformat.v4.new_code_cell("check()", metadata={"nbgrader": {"grade_id": "test_a"}},
                                  outputs=[nbformat.v4.new_output(
                                      "error", ename="AssertionError", evalue="graded",
                                      traceback=[])]),
    ])
    raised = raised_cells(nb, {"test_a"})
    assert raised == ["cell 2 (`print(f'test MSE {mse}')`) raised AssertionError"]
    out = render({"test_a": (1.0, 1.0)}, {}, verbose=False, names=["a"], raised=raised)
    assert "everything passes" not in out
    assert out.splitlines()[-1].startswith("score 1/1; cell 2 raised AssertionError")
    assert out.splitlines()[0].startswith("ERROR cell 2 (`print(")
    nb.cells[2].outputs[1]["traceback"] = [
        "\x1b[0;31mAssertionError\x1b[0m  Traceback (most recent call last)",
        "Cell \x1b[0;32mIn[3], line 3\x1b[0m\n\x1b[1;32m      2\x1b[0m print(mse)\n"
        "\x1b[0;32m----> 3\x1b[0m \x1b[38;5;28;01massert\x1b[39;00m mse < 0.05\n"]
    assert raised_cells(nb, {"test_a"}) == [
        "cell 2 (`print(f'test MSE {mse}')`) raised AssertionError at `assert mse < 0.05`"]
    two = render({"test_a": (0.0, 1.0)}, {}, verbose=False, names=["a"],
                 raised=raised + ["cell 5 (`x`) raised ValueError: no"])
    assert two.splitlines()[-1].startswith("score 0/1; revisit: a; cells 2, 5 raised errors")


@pytest.mark.slow
@pytest.mark.parametrize("only", [(), ("tanh_grad",)])
def test_course_check_reports_an_example_cell_that_raised(tmp_path, only):
    """A solved notebook whose example cell raises: every test passes, the check does not."""
    import nbformat
    nb = read(source_path("01_chain_rule"))
    example = next(i for i, c in enumerate(nb.cells)
                   if c.cell_type == "code" and c.source.startswith("xs = np.array([-1000.0"))
    nb.cells[example].source += "\nassert xs.max() < 0, 'the example disagrees'"
    mine = tmp_path / "mine.ipynb"
    nbformat.write(nb, mine)
    args = [a for name in only for a in ("--only", name)]
    result = course("check", str(mine), *args, cwd=str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    number = example + 1
    assert f"ERROR cell {number} (`xs = np.array([-1000.0, -20.0, 0.0, 20.0, 1000.0])`) raised " \
        "AssertionError: the example disagrees" in " ".join(result.stdout.split()), result.stdout
    assert "everything passes" not in result.stdout
    assert f"; cell {number} raised AssertionError" in lines[-1], result.stdout
    assert "revisit" not in lines[-1], result.stdout


@pytest.mark.slow
def test_course_check_only_restores_the_test_cells_from_source(tmp_path):
    """`--only` reads the tests from source/, not from the notebook: an edited test cell is
    the course's again, a deleted one is put back."""
    import nbformat
    nb = read(source_path("03_mlp_backward"))
    cell_by_id(nb, "test_affine").source = "print('passes, trust me')"
    nb.cells.remove(cell_by_id(nb, "test_affine_hidden"))
    cell = cell_by_id(nb, "affine")
    cell.source = cell.source.replace("x.T @ g", "g.T @ x")
    mine = tmp_path / "mine.ipynb"
    nbformat.write(nb, mine)
    result = course("check", str(mine), "--only", "affine", cwd=str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL test_affine  0/1" in result.stdout and "FAIL test_affine_hidden  0/2" in \
        result.stdout, result.stdout


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


@pytest.mark.slow
def test_course_check_watch_checks_again_when_the_notebook_is_saved(tmp_path):
    import nbformat
    import signal
    import time
    nb = read(source_path("03_mlp_backward"))
    mine = tmp_path / "mine.ipynb"
    nbformat.write(nb, mine)
    log = open(tmp_path / "watch.log", "w")
    proc = subprocess.Popen([COURSE, "check", str(mine), "--only", "affine", "--watch"],
                            cwd=str(tmp_path), env=BARE_ENV, stdout=log, stderr=subprocess.STDOUT)

    def output_when(count, what):
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            text = (tmp_path / "watch.log").read_text()
            if text.count(what) >= count:
                return text
            assert proc.poll() is None, text
            time.sleep(0.5)
        raise AssertionError(f"no {what!r} in time:\n{text}")

    try:
        output_when(1, "watching ")
        assert "score 3/3; everything passes" in output_when(1, "score ")
        cell = cell_by_id(nb, "affine")
        cell.source = cell.source.replace("x.T @ g", "g.T @ x")
        nbformat.write(nb, mine)  # the learner saves a change
        text = output_when(2, "watching ")
        assert "FAIL test_affine" in text.split("score 3/3")[1], text
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        log.close()
    assert proc.returncode == 0
