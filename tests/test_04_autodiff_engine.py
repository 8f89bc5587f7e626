"""Notebook 04 (a reverse-mode autodiff engine, in four steps): the reference scores full marks,
the blank release 0; a typical mistake in one step costs that step's points and keeps the
others', under both graders; a test that builds on a broken step says which step to fix first;
an engine borrowed from course_lib gets no credit."""
from __future__ import annotations

import re

import nbformat
import pytest

from harness import (Mistake, apply_edits, assert_caught, cell_by_id, failures, grade_id,
                     make_course, read, replace_cell, run_in_process, source_path, submit,
                     unsolved)

A = "04_autodiff_engine"
NB = read(source_path(A))
MAX = 19
STEP_TESTS = {
    "a": {"test_Tensor", "test_Tensor_hidden"},
    "b": {"test_Tensor_elementwise", "test_Tensor_elementwise_hidden"},
    "c": {"test_Tensor_reductions", "test_Tensor_reductions_hidden"},
    "d": {"test_Tensor_graph", "test_Tensor_graph_hidden"},
    "ce": {"test_cross_entropy", "test_cross_entropy_hidden"},
    "Linear": {"test_Linear"},
    "sgd": {"test_sgd_step"},
    "train": {"test_training_hidden"},
}
DOWNSTREAM = STEP_TESTS["ce"] | STEP_TESTS["Linear"] | STEP_TESTS["sgd"] | STEP_TESTS["train"]

ITERATIVE_SORT = re.compile(r"        ### BEGIN SOLUTION\n        order, visited, stack = .*?return order\n", re.S)
RECURSIVE_SORT = """        ### BEGIN SOLUTION
        order, visited = [], set()

        def visit(node):
            if node not in visited:
                visited.add(node)
                for p in node._parents:
                    visit(p)
                order.append(node)

        visit(self)
        return order
"""
LEAF_ONLY = ("            if not node._parents:   # a leaf: only leaves that require grad get a .grad\n"
             "                if node.requires_grad:\n"
             "                    node.grad = np.array(g, dtype=np.float64)\n"
             "                continue\n")
EVERY_NODE = ("            node.grad = np.array(g, dtype=np.float64)\n"
              "            if not node._parents:\n"
              "                continue\n")

GRAD_OUT_OF_PLACE = ("node.grad = np.array(g, dtype=np.float64) if node.grad is None "
                     "else node.grad + g")
GRAD_IN_PLACE = ("if node.grad is None:\n                        node.grad = g\n"
                 "                    else:\n                        node.grad += g")
# a node recorded when first popped, the list reversed: right for chains, wrong for a diamond
PREORDER_REVERSED = """        ### BEGIN SOLUTION
        order, seen, todo = [], set(), [self]
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                order.append(node)
                todo.extend(node._parents)
        return order[::-1]
"""
SHAPE_CHECK = ("        if grad.shape != self.shape:\n            raise ValueError(f\"grad has "
               "shape {grad.shape}, expected {self.shape}\")\n")
# correct step (d) answers in other styles: Kahn's algorithm; a copy first, then out of place
KAHN_SORT = """        ### BEGIN SOLUTION
        nodes, todo = {self}, [self]
        while todo:
            for p in todo.pop()._parents:
                if p not in nodes:
                    nodes.add(p)
                    todo.append(p)
        waiting = {n: len(set(n._parents)) for n in nodes}
        consumers = {n: [] for n in nodes}
        for n in nodes:
            for p in set(n._parents):
                consumers[p].append(n)
        ready = [n for n in nodes if waiting[n] == 0]
        order = []
        while ready:
            n = ready.pop()
            order.append(n)
            for c in consumers[n]:
                waiting[c] -= 1
                if waiting[c] == 0:
                    ready.append(c)
        return order
"""
GRAD_COPY_FIRST = ("if node.grad is None:\n                        node.grad = g.copy()\n"
                   "                    else:\n                        node.grad = node.grad + g")
STEP_D_ALTERNATIVES = {
    "kahn_sort": [("Tensor_graph", ITERATIVE_SORT, KAHN_SORT)],
    "grad_copy_first": [("Tensor_graph", GRAD_OUT_OF_PLACE, GRAD_COPY_FIRST)],
}


def graded_only(nb):
    """`nb` with its graded and course cells only (no examples, plots or training: fast)."""
    nb = nbformat.from_dict(nb)
    nb.cells = [c for c in nb.cells if c.cell_type == "code" and grade_id(c)]
    return nb


def test_points_per_step_are_stated_and_match():
    intro = cell_by_id(NB, "intro").source
    points = {grade_id(c): c.metadata["nbgrader"]["points"] for c in NB.cells
              if c.metadata.get("nbgrader", {}).get("points")}
    for step, name in [("a", "Tensor"), ("b", "Tensor_elementwise"), ("c", "Tensor_reductions"),
                       ("d", "Tensor_graph")]:
        visible, hidden = points[f"test_{name}"], points[f"test_{name}_hidden"]
        assert re.search(rf"\| step \({step}\) \| `{name}`.*\| {visible:g} \+ {hidden:g} \|", intro)
    assert sum(points.values()) == MAX


def mistake(id, edits, step, words, dependents=frozenset(), failing=None):
    """A mistake costs (the named tests of) its step; tests built on it may fail too."""
    return Mistake(id, edits, sorted(failing or STEP_TESTS[step]), words, frozenset(dependents))


# (id, [(cell, old, new)], the step whose points it costs, words its message must contain,
#  tests built on it that may fail too, but only with a "fix ... first" message[, the step's
#  tests that fail when not all do])
MISTAKES = [mistake(*row) for row in [
    ("a_overwrite_not_accumulate",
     [("Tensor", "grads[p] = gp if p not in grads else grads[p] + gp", "grads[p] = gp")],
     "a", ["SUM", "never overwrite"], set()),
    ("a_grad_on_intermediates", [("Tensor", LEAF_ONLY, EVERY_NODE)],
     "a", ["expected None", "leaves"], set()),
    ("b_rsub_is_sub", [("Tensor_elementwise", "return Tensor._lift(other) - self", "return self - other")],
     "b", ["__rsub__", "on the LEFT"], set()),
    ("b_division_sign", [("Tensor_elementwise", "unbroadcast(-g * x.data / y.data**2",
                          "unbroadcast(g * x.data / y.data**2")],
     "b", ["-x / y**2"], set()),
    ("b_sigmoid_overflows", [("Tensor_elementwise", "0.5 * (1.0 + np.tanh(0.5 * self.data))",
                              "1.0 / (1.0 + np.exp(-self.data))"),
                             ("Tensor_elementwise", "g * s * (1.0 - s)", "g * np.exp(-self.data) * s**2")],
     "b", ["sigmoid"], set()),
    ("c_sum_without_expand_dims", [("Tensor_reductions", "g = np.expand_dims(g, axis)", "pass")],
     "c", ["np.expand_dims"], set()),
    ("c_mean_divides_by_all", [("Tensor_reductions", "n = self.data.size / max(total.data.size, 1)",
                                "n = self.data.size")],
     "c", ["mean"], set()),
    ("c_matmul_missing_transpose", [("Tensor_reductions", "x.data.T @ g))", "x.data @ g))")],
     "c", ["x.T @ g", "(k, m)"], STEP_TESTS["Linear"] | STEP_TESTS["train"]),
    ("d_recursive_sort", [("Tensor_graph", ITERATIVE_SORT, RECURSIVE_SORT)],
     "d", ["RecursionError", "stack"], set()),
    ("d_leaf_grad_overwritten", [("Tensor_graph", " if node.grad is None else node.grad + g", "")],
     "d", ["ADDS into .grad"], set()),
    ("d_grad_plus_equals", [("Tensor_graph", GRAD_OUT_OF_PLACE, GRAD_IN_PLACE)],
     "d", ["share memory", "in place", "node.grad = node.grad + g"], DOWNSTREAM),
    ("d_preorder_reversed", [("Tensor_graph", ITERATIVE_SORT, PREORDER_REVERSED)],
     "d", ["_topological_order", "diamond", "before its parent"], DOWNSTREAM),
    ("d_no_grad_shape_check", [("Tensor_graph", SHAPE_CHECK, "")],
     "d", ["did not raise", "grad.shape != self.shape"], DOWNSTREAM),
    ("d_default_grad_not_ones", [("Tensor_graph", "grad = np.ones(self.shape)", "grad = np.array(1.0)")],
     "d", ["single element"], set()),
    ("ce_no_max_shift", [("cross_entropy", "logits - logits.data.max(axis=1, keepdims=True)", "logits * 1.0")],
     "ce", ["max", "overflow"], set()),
    ("linear_without_bias", [("Linear", "return x @ self.W + self.b", "return x @ self.W")],
     "Linear", ["b"], STEP_TESTS["train"]),
    ("sgd_step_wrong_sign", [("sgd_step", "    p.data -= lr * p.grad", "    p.data += lr * p.grad")],
     "sgd", ["p.data - lr * p.grad"], STEP_TESTS["train"]),
]]


@pytest.mark.parametrize("name", sorted(STEP_D_ALTERNATIVES))
def test_other_correct_step_d_keeps_full_marks(name):
    nb = apply_edits(NB, STEP_D_ALTERNATIVES[name])
    scores = run_in_process(graded_only(nb))
    assert not failures(scores), failures(scores)


def step_of(mistake):
    return next(step for step, tests in STEP_TESTS.items() if set(mistake.failing) <= tests)


@pytest.mark.parametrize("mistake", MISTAKES, ids=str)
def test_typical_mistake_costs_its_own_step_only(mistake):
    failed = assert_caught(mistake, run_in_process(graded_only(mistake.applied(NB))))
    for gid in set(failed) - set(mistake.failing):
        assert re.search(r"fix `\w+`.* first", failed[gid]), (gid, failed[gid])


# a broken step, and the tests built on it: (id, the broken notebook, what the others must say)
BROKEN = [
    ("unbroadcast_forgets_size_1_axes",
     lambda: apply_edits(NB, [("Tensor", "if n == 1 and g.shape[i] != 1:", "if False:")]),
     "fix `Tensor` step (a) first"),
    ("log_without_rule",
     lambda: apply_edits(NB, [("Tensor_elementwise", "lambda g: (g / x.data,)", "lambda g: (g,)")]),
     "fix `Tensor` step (b) first"),
    ("step_d_not_done", lambda: unsolved(NB, ["Tensor_graph"]), "fix `Tensor` step (d) first"),
]


@pytest.mark.parametrize("case", BROKEN, ids=[b[0] for b in BROKEN])
def test_tests_built_on_a_broken_step_say_which_step_to_fix(case):
    _, broken, words = case
    failed = failures(run_in_process(graded_only(broken())))
    downstream = set(failed) & DOWNSTREAM
    assert downstream, failed
    for gid in downstream:
        assert words in failed[gid], (gid, failed[gid])


def test_instructor_demo_loses_points_in_its_step():
    """The demo replaces the first `unbroadcast(` of the Tensor solution (in `__add__`)."""
    from course_lib.grading import demo
    gid, old, new = demo.MISTAKES[A]
    src = cell_by_id(NB, gid).source
    assert src.index(old, src.index("### BEGIN SOLUTION")) < src.index("def unbroadcast(")
    failed = failures(run_in_process(graded_only(demo.with_mistake(nbformat.from_dict(NB), A))))
    assert STEP_TESTS["a"] & set(failed)


@pytest.mark.parametrize("what", ["Tensor", "cross_entropy"])
def test_course_lib_engine_gets_no_credit(what):
    nb = replace_cell(NB, what, f"from course_lib.engine import {what}\n")
    tests = STEP_TESTS["a"] if what == "Tensor" else STEP_TESTS["ce"]
    nb = nbformat.from_dict(nb)
    nb.cells = [c for c in nb.cells if grade_id(c) in {"Tensor", what, *tests}]
    scores = run_in_process(nb, skip_untagged=True)
    for gid in tests:
        assert scores[gid][0] == 0, (gid, scores[gid])


def test_solution_regions_keep_signatures_outside():
    for gid, head in [("Tensor", "class Tensor:"), ("Tensor_elementwise", "def __rsub__(self, other):"),
                      ("Tensor_reductions", "def sum(self, axis=None, keepdims=False):"),
                      ("Tensor_graph", "def backward(self, grad=None):"),
                      ("cross_entropy", "def cross_entropy(logits, labels):"),
                      ("Linear", "class Linear:"), ("sgd_step", "def sgd_step(params, lr):")]:
        src = cell_by_id(NB, gid).source
        regions = re.findall(r"### BEGIN SOLUTION.*?### END SOLUTION", src, re.S)
        assert head in src and not any(head in r for r in regions), (gid, head)


def test_the_text_states_one_grad_rule():
    text = "\n".join(c.source for c in NB.cells if c.cell_type == "markdown")
    assert "only **leaves** that" in text and "retain_grad" in text
    assert "every tensor with `requires_grad=True`" not in text
    assert "Hint 3: the answer" in text


# one mistake per step, graded by `course grade` (test cells in the grader, student code behind
# the channel) and by plain nbgrader (test cells in the kernel): the same scores, step by step
GRADED_MISTAKES = ["a_overwrite_not_accumulate", "b_rsub_is_sub", "c_sum_without_expand_dims",
                   "d_recursive_sort"]


@pytest.mark.slow
def test_mistakes_cost_their_step_under_both_graders(tmp_path):
    from course_lib.grading import pipeline
    from harness import nbgrader_autograde
    course = make_course(str(tmp_path), [A])
    table = {m.id: m for m in MISTAKES}
    for name in GRADED_MISTAKES:
        submit(course, name, A, table[name].applied(NB))
    report = pipeline.grade(course, A, workers=1, progress=False)
    assert report.count("failed") == 0, report.summary()
    ours = pipeline.scores(course, A)
    for name in GRADED_MISTAKES:
        step = step_of(table[name])
        lost = {q for q, (s, m) in ours[(name, A)].items() if s < m}
        assert lost and lost <= STEP_TESTS[step], (name, lost)
        result = nbgrader_autograde(course, A, name)
        assert result.returncode == 0, result.stderr[-2000:]
    assert pipeline.scores(course, A) == ours


def _engine_code(nb):
    """The notebook's graded code cells but tests, as one program (the student's kernel)."""
    return "import numpy as np\n" + "\n".join(
        c.source for c in graded_only(nb).cells if not grade_id(c).startswith("test_"))


@pytest.mark.parametrize("name", ["reference", "d_grad_plus_equals", "d_preorder_reversed",
                                  "d_no_grad_shape_check"])
def test_step_d_rules_under_both_graders(name):
    """The new step (d) probes run where the Tensor lives: the same verdict through the channel."""
    from course_lib.checks import GradeError, InKernel, reaching
    from harness import ChannelKernel
    table = {m.id: m for m in MISTAKES}
    nb = NB if name == "reference" else table[name].applied(NB)
    code, source = _engine_code(nb), cell_by_id(NB, "test_Tensor_graph").source
    namespace = {"__name__": "__main__"}
    exec(code, namespace)
    in_kernel = None
    try:
        with reaching(InKernel()):
            exec(compile(source, "test", "exec"), namespace)
    except GradeError as e:
        in_kernel = str(e)
    kernel = ChannelKernel(code)
    try:
        verdict = kernel.verdict(source)
    finally:
        kernel.close()
    assert verdict.passed == (name == "reference") == (in_kernel is None), verdict.message
    if in_kernel is not None:
        assert verdict.message == in_kernel
