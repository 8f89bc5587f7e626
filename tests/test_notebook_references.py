"""Every notebook, run in this process: the reference scores full marks, the blank release
scores 0, and the reference passes for any grading seed (grading draws per-student inputs)."""
from __future__ import annotations

import contextlib
import io

import pytest

from harness import (NOTEBOOKS, failures, grade_id, is_test, read, run_in_process, source_path,
                     total, unsolved)

POINTS = {"01_chain_rule": 22, "02_manual_backprop": 18, "03_mlp_backward": 24,
          "04_autodiff_engine": 19, "05_attention_backward": 21, "06_forward_mode": 21}
TRIALS = 3  # seeds per test cell


def solutions(nb):
    return [grade_id(c) for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]


def test_every_notebook_is_here():
    assert set(POINTS) == set(NOTEBOOKS)


@pytest.mark.parametrize("assignment", sorted(NOTEBOOKS))
def test_reference_full_marks(assignment):
    scores = run_in_process(read(source_path(assignment)))
    assert total(scores) == (POINTS[assignment],) * 2, failures(scores)


@pytest.mark.parametrize("assignment", sorted(NOTEBOOKS))
def test_blank_release_scores_zero(assignment):
    nb = read(source_path(assignment))
    scores = run_in_process(unsolved(nb, solutions(nb)))
    assert total(scores) == (0, POINTS[assignment]), scores


@pytest.mark.parametrize("assignment", sorted(NOTEBOOKS))
def test_reference_passes_under_other_seeds(assignment):
    """Every test cell of the reference passes with the inputs of other seeds."""
    import matplotlib
    matplotlib.use("Agg")
    from course_lib.checks import InKernel, reaching
    namespace, tests = {"__name__": "__main__"}, []
    for cell in read(source_path(assignment)).cells:
        if cell.cell_type != "code":
            continue
        source = "\n".join(line for line in cell.source.splitlines()
                           if not line.lstrip().startswith(("%", "!")))
        if is_test(cell):
            tests.append((grade_id(cell), source))
        else:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(source, grade_id(cell) or "cell", "exec"), namespace)
    for trial in range(1, TRIALS + 1):
        seeds = {gid: 1000003 * trial + i for i, (gid, _) in enumerate(tests)}
        with reaching(InKernel(seeds)), contextlib.redirect_stdout(io.StringIO()):
            for gid, source in tests:
                exec(compile(source, gid, "exec"), dict(namespace))
