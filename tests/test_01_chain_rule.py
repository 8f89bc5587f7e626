"""Notebook 01 (derivatives and the chain rule): the reference scores full marks, typical
mistakes lose points with a message that helps, and the sympy probes cross the sandbox as
values (the trusted replay reaches the same verdicts as the kernel)."""
from __future__ import annotations


import nbformat
import pytest

from harness import ChannelKernel, Mistake, assert_caught, cell_by_id, failures, grade_id, \
    is_test, mutate, read, replace_cell, run_in_process, source_path, total

A = "01_chain_rule"


@pytest.fixture(scope="module")
def nb():
    return read(source_path(A))


def lean(nb):
    """The graded cells and the few plain cells they need (imports, the given symbols).

    Plots, demos and sympy simplifications are left out: the graded cells do not use them,
    and each mutation test runs the notebook again.
    """
    nb = nbformat.from_dict(nb)
    nb.cells = [c for c in nb.cells if c.cell_type == "code" and (
        grade_id(c) is not None or ("import " in c.source or "sympy.symbols(" in c.source)
        and "plt." not in c.source and "simplify" not in c.source)]
    return nb


# ---- the reference --------------------------------------------------------------------------

def test_cells_and_points(nb):
    points = {grade_id(c): c.metadata["nbgrader"]["points"] for c in nb.cells if is_test(c)}
    assert points == {
        "test_central_difference": 1, "test_central_difference_hidden": 2,
        "test_du_dx": 1, "test_dy_du": 1, "test_dy_dv": 1,
        "test_dy_dx": 1, "test_dy_dx_hidden": 2,
        "test_sigmoid_grad": 1, "test_sigmoid_grad_hidden": 2,
        "test_tanh_grad": 1, "test_tanh_grad_hidden": 2,
        "test_J_f": 1, "test_J_f_hidden": 2,
        "test_softmax_ce_grad": 1, "test_softmax_ce_grad_hidden": 3,
    }
    solutions = [grade_id(c) for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert solutions == ["central_difference", "du_dx", "dy_du", "dy_dv", "dy_dx",
                         "sigmoid_grad", "tanh_grad", "J_f", "softmax_ce_grad"]
    for c in nb.cells:
        meta = c.metadata.get("nbgrader", {})
        if c.cell_type == "code":
            assert not c.outputs and c.execution_count is None
        if is_test(c):
            assert f'suite("{grade_id(c)}")' in c.source
            assert c.source.rstrip().splitlines()[-1].startswith(("print(", "###", " ", "\t"))
            hidden = grade_id(c).endswith("_hidden")
            assert ("### BEGIN HIDDEN TESTS" in c.source) == hidden
        if meta.get("solution"):
            assert "### BEGIN SOLUTION" in c.source and "### END SOLUTION" in c.source


def test_exercises_have_three_hints(nb):
    for gid in ("ex_central_difference", "ex_chain_rule_factors", "ex_sigmoid_grad",
                "ex_tanh_grad", "ex_jacobian", "ex_softmax_ce_grad"):
        cell = cell_by_id(nb, gid)
        assert cell.source.count("<summary>Hint") == 3, gid
        assert cell.metadata["nbgrader"]["locked"]


# ---- typical mistakes -----------------------------------------------------------------------

CD = "return float((f(x + h) - f(x - h)) / (2 * h))"
SIG = "return s * (1 - s)"
TANH = "return 1.0 - t * t"
CE = "return p - y"

DY_DX = frozenset({"test_dy_dx", "test_dy_dx_hidden"})  # built on du_dx, dy_du and dy_dv


def mistake(label, gid, old, new, word, failing=None, also=()):
    """A one-edit mistake in `gid`; by default the test cells named after it lose points."""
    return Mistake(label, [(gid, old, new)], failing or [f"test_{gid}", f"test_{gid}_hidden"],
                   [word], frozenset(also))


SINGLE = ["test_du_dx"], ["test_dy_du"], ["test_dy_dv"]  # the exercises without hidden tests
MISTAKES = [mistake(*row) for row in [
    # central_difference
    ("forward difference", "central_difference", CD, "return float((f(x + h) - f(x)) / h)",
     "one-sided"),
    ("backward difference", "central_difference", CD, "return float((f(x) - f(x - h)) / h)",
     "one-sided"),
    ("divides by h", "central_difference", CD, "return float((f(x + h) - f(x - h)) / h)",
     "2h apart"),
    ("ignores h", "central_difference", CD,
     "return float((f(x + 1e-5) - f(x - 1e-5)) / (2 * 1e-5))", "step h that is passed in"),
    # sigmoid_grad
    ("s(1+s)", "sigmoid_grad", SIG, "return s * (1 + s)", "sigmoid(x)"),
    ("sigmoid, not its derivative", "sigmoid_grad", SIG, "return s", "sigmoid(x)"),
    ("naive exp(-x)/(1+exp(-x))**2 overflows", "sigmoid_grad", SIG,
     "return np.exp(-x) / (1 + np.exp(-x)) ** 2", "overflow"),
    # tanh_grad
    ("1 - tanh (no square)", "tanh_grad", TANH, "return 1.0 - t", "square"),
    ("sign", "tanh_grad", TANH, "return t * t - 1.0", "sign"),
    ("tanh from exponentials overflows", "tanh_grad", "t = np.tanh(x)",
     "t = (np.exp(x) - np.exp(-x)) / (np.exp(x) + np.exp(-x))", "overflow"),
    # softmax_ce_grad
    ("y - p", "softmax_ce_grad", CE, "return y - p", "sign"),
    ("p without y", "softmax_ce_grad", CE, "return p", "softmax"),
    ("unstable softmax", "softmax_ce_grad", "e = np.exp(z - np.max(z))", "e = np.exp(z)",
     "overflow"),
    ("modifies z in place", "softmax_ce_grad", "e = np.exp(z - np.max(z))",
     "z -= np.max(z)\n    e = np.exp(z)", "in place"),
    # sympy: the chain-rule factors
    ("du_dx not differentiated", "du_dx", "du_dx = sympy.diff(u_of_x, x)", "du_dx = u_of_x",
     "wrong at", SINGLE[0] + sorted(DY_DX)),
    ("du_dx as a string", "du_dx", "du_dx = sympy.diff(u_of_x, x)", 'du_dx = "2*x"', "string",
     SINGLE[0], DY_DX),
    ("du_dx as a Python function", "du_dx", "du_dx = sympy.diff(u_of_x, x)",
     "du_dx = lambda x: 2 * x", "Python function", SINGLE[0], DY_DX),
    ("du_dx as a number", "du_dx", "du_dx = sympy.diff(u_of_x, x)", "du_dx = 2.0",
     "plain Python number", SINGLE[0], DY_DX),
    ("du_dx as None", "du_dx", "du_dx = sympy.diff(u_of_x, x)", "du_dx = None", "is None",
     SINGLE[0], DY_DX),
    ("dy_du written in x", "dy_du", "dy_du = sympy.diff(y_of_uv, u)",
     "dy_du = sympy.cos(x**2) * sympy.exp(3 * x)", "uses the symbol(s) x", SINGLE[1]),
    ("dy_du drops exp(v)", "dy_du", "dy_du = sympy.diff(y_of_uv, u)", "dy_du = sympy.cos(u)",
     "constant factor", SINGLE[1], DY_DX),
    ("dy_dv includes dv/dx", "dy_dv", "dy_dv = sympy.diff(y_of_uv, v)",
     "dy_dv = 3 * sympy.diff(y_of_uv, v)", "LOCAL derivative", SINGLE[2], DY_DX),
    ("dy_dx missing the inner derivative 2x", "dy_dx", "dy_du * du_dx + dy_dv * dv_dx",
     "dy_du + dy_dv * dv_dx", "inner derivative"),
    ("dy_dx missing dv/dx = 3", "dy_dx", "dy_du * du_dx + dy_dv * dv_dx",
     "dy_du * du_dx + dy_dv", "inner derivative"),
    ("dy_dx only one path", "dy_dx", "dy_du * du_dx + dy_dv * dv_dx", "dy_du * du_dx",
     "only the path through u"),
    ("dy_dx multiplies the paths", "dy_dx", "dy_du * du_dx + dy_dv * dv_dx",
     "(dy_du * du_dx) * (dy_dv * dv_dx)", "ADDS"),
    ("dy_dx not substituted", "dy_dx", ".subs({u: u_of_x, v: v_of_x})", "",
     "substitute u = x**2"),
    ("dy_dx sign", "dy_dx", "dy_dx = (", "dy_dx = -(", "sign"),
    # sympy: the Jacobian
    ("J_f transposed", "J_f", "J_f = f_vec.jacobian([r, theta])",
     "J_f = f_vec.jacobian([r, theta]).T", "transposed"),
    ("J_f columns swapped", "J_f", "jacobian([r, theta])", "jacobian([theta, r])",
     "column 0 holds the derivatives with respect to r"),
    ("J_f sign of d cos", "J_f", "J_f = f_vec.jacobian([r, theta])",
     "J_f = sympy.Matrix([[sympy.cos(theta), r * sympy.sin(theta)], "
     "[sympy.sin(theta), r * sympy.cos(theta)], [2 * r, 0]])", "-r*sin(theta)"),
    ("J_f missing an output", "J_f", "J_f = f_vec.jacobian([r, theta])",
     "J_f = f_vec[:2, :].jacobian([r, theta])", "expected (3, 2)"),
    ("J_f is the function, not its Jacobian", "J_f", "J_f = f_vec.jacobian([r, theta])",
     "J_f = f_vec", "expected (3, 2)"),
]]


@pytest.mark.parametrize("mistake", MISTAKES, ids=str)
def test_typical_mistake_loses_points(nb, mistake):
    assert_caught(mistake, run_in_process(lean(mistake.applied(nb))))


ALTERNATIVES = [
    ("central_difference", CD, "return (f(x + h) - f(x - h)) / (2 * h)"),
    ("central_difference", CD, "return float(f(x + h) / (2 * h) - f(x - h) / (2 * h))"),
    ("sigmoid_grad", "s = np.where(x >= 0, 1 / (1 + e), e / (1 + e))",
     "s = 1 / (1 + np.exp(-x))"),
    ("sigmoid_grad", SIG, "return np.exp(-np.logaddexp(0.0, -x) - np.logaddexp(0.0, x))"),
    ("tanh_grad", TANH, "return 1 / np.cosh(x) ** 2"),
    ("softmax_ce_grad", CE, "return p * y.sum() - y"),
    ("softmax_ce_grad", "e = np.exp(z - np.max(z))",
     "m = np.max(z)\n    e = np.exp(z - (m + np.log(np.sum(np.exp(z - m)))))"),
    ("du_dx", "du_dx = sympy.diff(u_of_x, x)", "du_dx = 2 * sympy.Symbol('x', real=True)"),
    ("dy_du", "dy_du = sympy.diff(y_of_uv, u)",
     "dy_du = sympy.exp(v) * sympy.sin(u + sympy.pi / 2)"),
    ("dy_dv", "dy_dv = sympy.diff(y_of_uv, v)", "dy_dv = y_of_uv"),
    ("dy_dx", "dy_dx = (", "dy_dx = sympy.diff(y_of_x, x) + 0 * ("),
    ("dy_dx", "dy_dx = (", "dy_dx = sympy.Derivative(y_of_x, x) + 0 * ("),
    ("J_f", "J_f = f_vec.jacobian([r, theta])",
     "J_f = [[sympy.cos(theta), -r * sympy.sin(theta)], [sympy.sin(theta), "
     "r * sympy.cos(theta)], [2 * r, 0]]"),
    ("J_f", "J_f = f_vec.jacobian([r, theta])",
     "J_f = sympy.ImmutableMatrix(f_vec.jacobian([r, theta]))"),
]


@pytest.mark.parametrize("gid,old,new", ALTERNATIVES, ids=[f"{a[0]}-{i}" for i, a in
                                                            enumerate(ALTERNATIVES)])
def test_other_correct_answers_get_full_marks(nb, gid, old, new):
    scores = run_in_process(lean(mutate(nb, gid, old, new)))
    assert total(scores)[0] == total(scores)[1], failures(scores)


def test_undefined_answer_is_reported(nb):
    scores = run_in_process(lean(replace_cell(nb, "dy_du", "# nothing yet")))
    assert "not defined" in scores["test_dy_du"][2]


# ---- the sympy probes cross the sandbox as values ------------------------------------------

@pytest.mark.parametrize("answer,passes", [
    ("dy_dx = 2*x*sympy.cos(x**2)*sympy.exp(3*x) + 3*sympy.sin(x**2)*sympy.exp(3*x)", True),
    ("dy_dx = sympy.cos(x**2)*sympy.exp(3*x) + 3*sympy.sin(x**2)*sympy.exp(3*x)", False),
    ("dy_dx = 'not an expression'", False),
    ("dy_dx = u + x", False),
    ("pass", False),
])
def test_grader_agrees_with_kernel(nb, answer, passes):
    """The same test cell, run in the kernel and run in the grader against the kernel through
    the channel, reaches the same verdict and message."""
    from course_lib.checks import GradeError, InKernel, reaching
    seeds = {"test_dy_dx_hidden": 12345}
    source = cell_by_id(nb, "test_dy_dx_hidden").source
    code = "import sympy\nx, u, v = sympy.symbols('x u v')\n" + answer
    namespace = {"__name__": "__main__"}
    exec(code, namespace)
    kernel_message = None
    try:
        with reaching(InKernel(seeds)):
            exec(compile(source, "test", "exec"), namespace)
    except (GradeError, NameError) as e:
        kernel_message = str(e)
    assert (kernel_message is None) == passes, kernel_message
    kernel = ChannelKernel(code)
    try:
        verdict = kernel.verdict(source, seeds)
    finally:
        kernel.close()
    assert verdict.passed == passes
    if not passes and answer != "pass":
        assert verdict.message == kernel_message
    if answer == "pass":
        assert "is not defined" in verdict.message


def test_a_sympy_answer_crosses_as_numbers_only(nb):
    """The grader gets the answer's values at its points: no handle to a sympy object."""
    kernel = ChannelKernel("import sympy\nr, theta = sympy.symbols('r theta')\n"
                           "J_f = sympy.Matrix([r*sympy.cos(theta), r*sympy.sin(theta), "
                           "r**2]).jacobian([r, theta])")
    try:
        verdict = kernel.verdict(cell_by_id(nb, "test_J_f").source)
        assert verdict.passed, verdict.message
        assert kernel.last.calls == 1 and kernel.last.remotes == {}
    finally:
        kernel.close()
