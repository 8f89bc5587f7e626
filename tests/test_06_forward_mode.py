"""Notebook 06 (forward mode): the reference scores full marks, the blank release 0, typical
mistakes lose the points of the exercise they are in, with a message that says what to fix."""
from __future__ import annotations

import nbformat
import pytest

from harness import (Mistake, assert_caught, cell_by_id, grade_id, read, replace_cell,
                     run_in_process, source_path, total)

A = "06_forward_mode"
NB = read(source_path(A))
SOLUTIONS = ["Dual", "sin", "derivative", "JVP", "jvp", "dot_product_test", "jacobian", "hvp",
             "newton_cg"]
MAX = 21
DERIVATIVE = {"test_derivative", "test_derivative_hidden"}
JVP_TESTS = {"test_jvp", "test_jvp_hidden"}  # built on the JVP table: "fix JVP first"


def only(nb, tests):
    """`nb` with its setup, solutions, given tools and the test cells `tests`."""
    keep = {"setup_imports", "tools", "tools_vjp", "tools_logistic", *SOLUTIONS, *tests}
    nb = nbformat.from_dict(nb)
    nb.cells = [c for c in nb.cells if c.cell_type == "code" and grade_id(c) in keep]
    return nb


def answer(gid):
    return "".join(part.partition("### END SOLUTION")[0] for part in
                   cell_by_id(NB, gid).source.split("### BEGIN SOLUTION")[1:])


def mistake(id, gid, old, new, failing, words, also=()):
    """One edit in the answer of solution cell `gid`."""
    assert old in answer(gid), f"{old!r} is not in the {gid} solution any more: update this test"
    return Mistake(id, [(gid, old, new)], failing, words, frozenset(also))


# (id, solution cell, text in its answer, replacement, test cells that must fail, words[, also])
MISTAKES = [mistake(*row) for row in [
    ("product_without_product_rule", "Dual",
     "self.tangent * other.value + self.value * other.tangent", "self.tangent * other.tangent",
     ["test_Dual", "test_Dual_hidden"], ["x * y", "rule"], DERIVATIVE),
    ("constant_with_tangent_one", "Dual", "return x if isinstance(x, Dual) else Dual(x, 0.0)",
     "return x if isinstance(x, Dual) else Dual(x, 1.0)", ["test_Dual", "test_Dual_hidden"],
     ["constant"], DERIVATIVE),
    ("rsub_the_wrong_way_round", "Dual", "return Dual.lift(other) - self",
     "return self - Dual.lift(other)", ["test_Dual", "test_Dual_hidden"], ["2.5 - x", "__rsub__"],
     DERIVATIVE),
    ("quotient_without_the_square", "Dual", "/ other.value**2)", "/ other.value)",
     ["test_Dual", "test_Dual_hidden"], ["x / y", "quotient"], DERIVATIVE),
    ("cos_without_minus_sign", "sin", "-math.sin(x.value) * x.tangent",
     "math.sin(x.value) * x.tangent", ["test_sin", "test_sin_hidden"], ["cos("], DERIVATIVE),
    ("exp_of_a_float_is_a_dual", "sin", "return math.exp(x)", "return Dual(math.exp(x), 0.0)",
     ["test_sin", "test_sin_hidden"], ["plain number"]),
    ("tanh_forgets_the_square", "sin", "(1.0 - th * th) * x.tangent", "(1.0 - th) * x.tangent",
     ["test_sin", "test_sin_hidden"], ["tanh("], DERIVATIVE),
    ("derivative_seeded_with_zero", "derivative", "f(Dual(x, 1.0))", "f(Dual(x, 0.0))",
     ["test_derivative", "test_derivative_hidden"], ["tangent"]),
    ("derivative_of_a_constant_fails", "derivative",
     "return out.tangent if isinstance(out, Dual) else 0.0", "return out.tangent",
     ["test_derivative", "test_derivative_hidden"], ["a constant", "plain number"]),
    ("matmul_jvp_with_a_transpose", "JVP", "lambda dx, out, x, y: dx @ y,",
     "lambda dx, out, x, y: dx @ y.T,", ["test_JVP", "test_JVP_hidden"],
     ["JVP['matmul', 0]", "transpose"], JVP_TESTS),
    ("matmul_jvp_as_the_vjp", "JVP", "lambda dy, out, x, y: x @ dy)",
     "lambda dy, out, x, y: x.T @ dy)", ["test_JVP", "test_JVP_hidden"],
     ["JVP['matmul', 1]", "transpose"], JVP_TESTS),
    ("add_jvp_not_broadcast", "JVP", "lambda dy, out, x, y: np.broadcast_to(dy, out.shape))",
     "lambda dy, out, x, y: dy)", ["test_JVP", "test_JVP_hidden"],
     ["JVP['add', 1]", "output's shape", "broadcast"], JVP_TESTS),
    ("mul_jvp_without_the_other_factor", "JVP", "np.broadcast_to(dx * y, out.shape)",
     "np.broadcast_to(dx, out.shape)", ["test_JVP", "test_JVP_hidden"], ["JVP['mul', 0]"],
     JVP_TESTS),
    ("sum_jvp_over_every_axis", "JVP", "dx.sum(axis=axis)", "dx.sum()",
     ["test_JVP", "test_JVP_hidden"], ["JVP['sum', 0]", "axis"], JVP_TESTS),
    ("tanh_jvp_without_square", "JVP", "dx * (1.0 - out * out)", "dx * (1.0 - out)",
     ["test_JVP", "test_JVP_hidden"], ["JVP['tanh', 0]", "out"], JVP_TESTS),
    ("constants_get_tangent_ones", "jvp",
     "if isinstance(a, Fwd):                        # constants carry no tangent\n"
     "            tangent = tangent + JVP[op, i](a.tangent, out, *values, **params)",
     "da = a.tangent if isinstance(a, Fwd) else np.ones(np.shape(a))\n"
     "        tangent = tangent + JVP[op, i](da, out, *values, **params)",
     ["test_jvp", "test_jvp_hidden"], ["constant"]),
    ("tangents_overwritten_not_added", "jvp",
     "tangent = tangent + JVP[op, i](a.tangent, out, *values, **params)",
     "tangent = JVP[op, i](a.tangent, out, *values, **params)",
     ["test_jvp", "test_jvp_hidden"], ["add"]),
    ("jvp_of_a_constant_function_fails", "jvp",
     "    if isinstance(out, Fwd):\n        return out.value, out.tangent",
     "    return out.value, out.tangent", ["test_jvp", "test_jvp_hidden"], ["no x in it"]),
    ("dot_test_without_the_vjp", "dot_product_test", "float(np.sum(vjp(f, x, w) * v))",
     "float(np.sum(w * jv))", ["test_dot_product_test", "test_dot_product_test_hidden"],
     ["one call of vjp"]),
    ("dot_test_pulls_v_back", "dot_product_test", "float(np.sum(vjp(f, x, w) * v))",
     "float(np.sum(vjp(f, x, v) * w))", ["test_dot_product_test", "test_dot_product_test_hidden"],
     ["raised"]),
    ("jacobian_columns_stacked_as_rows", "jacobian", "for e in np.eye(x.size)], axis=1)",
     "for e in np.eye(x.size)], axis=0)", ["test_jacobian", "test_jacobian_hidden"],
     ["J has shape (m, n)"]),
    ("jacobian_always_forward", "jacobian", 'if mode == "fwd":', "if True:",
     ["test_jacobian", "test_jacobian_hidden"], ["once per output"]),
    ("hvp_by_finite_differences_of_the_gradient", "hvp", "return jvp(grad_f, x, v)[1]",
     "g, h = as_fwd(grad_f), 1e-5\n    return (g(x + h * v) - g(x - h * v)) / (2 * h)",
     ["test_hvp", "test_hvp_hidden"], ["rtol=1e-10"]),
    ("hvp_returns_the_gradient", "hvp", "return jvp(grad_f, x, v)[1]",
     "return jvp(grad_f, x, v)[0]", ["test_hvp", "test_hvp_hidden"], ["hvp(grad_f, x, v)"]),
    ("newton_with_the_gradient_sign_flipped", "newton_cg", "r = np.zeros_like(w), -g",
     "r = np.zeros_like(w), g", ["test_newton_cg", "test_newton_cg_hidden"], ["gradient norm"]),
    ("newton_with_a_stale_gradient", "newton_cg",
     "    for _ in range(steps):\n        g = gradient(w)\n",
     "    g = gradient(w)\n    for _ in range(steps):\n",
     ["test_newton_cg", "test_newton_cg_hidden"], ["current"]),
]]


@pytest.mark.parametrize("mistake", MISTAKES, ids=str)
def test_typical_mistake_loses_points(mistake):
    """Only the cells that must fail (and those built on them) run: the failing ones lose points."""
    cells = [*mistake.failing, *mistake.also]
    failed = assert_caught(mistake, run_in_process(only(mistake.applied(NB), cells)))
    assert not any("is not defined" in error for error in failed.values()), failed


def test_every_graded_function_has_at_least_two_typical_mistakes():
    counts = {gid: sum(1 for m in MISTAKES if m.edits[0][0] == gid) for gid in SOLUTIONS}
    assert min(counts.values()) >= 2, counts


def test_points_stated_in_the_intro_match():
    points = sum(c.metadata["nbgrader"]["points"] for c in NB.cells
                 if c.metadata.get("nbgrader", {}).get("points"))
    assert points == MAX
    assert f"**{MAX}**" in cell_by_id(NB, "intro").source


def test_a_dual_from_elsewhere_earns_nothing():
    body = "from fractions import Fraction as Dual\n"
    scores = run_in_process(only(replace_cell(NB, "Dual", body), ["test_Dual"]))
    assert scores["test_Dual"][0] == 0 and "this notebook" in scores["test_Dual"][2]


def test_reference_full_and_blank_zero_in_process():
    from harness import unsolved
    assert total(run_in_process(only(NB, [])))[1] == 0
    scores = run_in_process(NB)
    assert total(scores) == (MAX, MAX), scores
    assert total(run_in_process(unsolved(NB, SOLUTIONS)))[0] == 0


@pytest.mark.slow
def test_course_check_recognises_and_passes_the_reference(tmp_path):
    import os
    import shutil
    import subprocess
    import sys
    mine = tmp_path / "my forward mode.ipynb"
    shutil.copy(source_path(A), mine)
    course = os.path.join(os.path.dirname(sys.executable), "course")
    result = subprocess.run([course, "check", str(mine)], cwd=os.path.dirname(source_path(A)),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"as {A}/forward_mode.ipynb" in result.stdout
    assert f"{MAX}/{MAX}" in result.stdout.replace(".0", ""), result.stdout


def test_the_engine_vjp_works_in_graded_code_only_where_an_exercise_permits_it():
    """dot_product_test and jacobian build on the reference engine's VJP; elsewhere graded
    code still gets the shortcut guard's refusal, and torch autograd stays refused."""
    import numpy as np
    import torch

    from course_lib import guard
    from course_lib.checks import forward as F
    from course_lib.engine import Tensor

    def engine_grad():
        x = Tensor(np.ones(3), requires_grad=True)
        (x * x).sum().backward()
        return x.grad

    with guard.student_code():
        with pytest.raises(guard.ShortcutError):
            engine_grad()
        with F.guard_permitting():
            assert np.allclose(engine_grad(), 2.0)
            with pytest.raises(guard.ShortcutError):
                torch.autograd.grad(torch.ones(1, requires_grad=True).sum(),
                                    [torch.ones(1, requires_grad=True)])
        with pytest.raises(guard.ShortcutError):
            engine_grad()
