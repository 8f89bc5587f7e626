"""Notebook 04 (a reverse-mode autodiff engine): the reference scores full marks, the blank
release scores 0, typical wrong engines lose points with a message that helps, and an engine
borrowed from course_lib gets no credit."""
from __future__ import annotations

import re

import nbformat
import pytest

from harness import cell_by_id, grade_id, mutate, read, replace_cell, run_in_process, source_path, total, unsolved

A = "04_autodiff_engine"
NB = read(source_path(A))
SOLUTIONS = ["Tensor", "cross_entropy", "Linear", "sgd_step"]
MAX = 13

ITERATIVE_SORT = re.compile(r"        order, visited, stack = .*?(?=        grads = \{self: grad\})", re.S)
RECURSIVE_SORT = """        order, visited = [], set()

        def visit(node):
            if node in visited:
                return
            visited.add(node)
            for p in node._parents:
                visit(p)
            order.append(node)

        visit(self)

"""


def failures(scores):
    return {k: err for k, (s, m, err) in scores.items() if s < m}


def only(nb, tests):
    """`nb` with its solution cells and the test cells `tests` only (fast: no training)."""
    nb = nbformat.from_dict(nb)
    nb.cells = [c for c in nb.cells if c.cell_type == "code" and grade_id(c) in
                set(SOLUTIONS) | set(tests)]
    return nb


def test_reference_full_marks():
    scores = run_in_process(NB, skip_untagged=True)
    got, most = total(scores)
    assert most == MAX and got == most, failures(scores)


def test_blank_release_scores_zero():
    scores = run_in_process(unsolved(NB, SOLUTIONS), skip_untagged=True)
    assert total(scores)[0] == 0, scores


def _sub(gid, old, new):
    return (gid, old, new)


# (id, [(cell, old, new), ...], test cells that must fail, words the message must contain)
MISTAKES = [
    # the instructor demo: the first unbroadcast( call in the solution does nothing
    ("demo_first_unbroadcast", [("Tensor", "unbroadcast(", "(lambda g, shape: g)(", 1)],
     ["test_Tensor_hidden"], ["unbroadcast", "broadcast"]),
    ("no_unbroadcast", [("Tensor", "def unbroadcast(g, shape):\n",
                         "def unbroadcast(g, shape):\n    return g\n", -1)],
     ["test_Tensor", "test_Tensor_hidden"], ["unbroadcast", "summed over"]),
    ("overwrite_not_accumulate",
     [("Tensor", "grads[p] = gp if p not in grads else grads[p] + gp", "grads[p] = gp", -1)],
     ["test_Tensor_graph_hidden"], ["SUM", "never overwrite"]),
    ("leaf_grad_overwritten",
     [("Tensor", "if node.grad is None else node.grad + g", "", -1)],
     ["test_Tensor_graph_hidden"], ["ADDS into .grad", "x.grad"]),
    ("recursive_topological_sort", [("Tensor", ITERATIVE_SORT, RECURSIVE_SORT, "re")],
     ["test_Tensor_graph_hidden"], ["RecursionError", "stack"]),
    ("matmul_missing_transpose", [("Tensor", "x.data.T @ g))", "x.data @ g))", -1)],
     ["test_Tensor_hidden"], ["x.T @ g", "(k, m)"]),
    ("matmul_swapped_order", [("Tensor", "lambda g: (g @ y.data.T,", "lambda g: (y.data @ g.T,", -1)],
     ["test_Tensor_hidden"], ["g @ y.T"]),
    ("division_sign", [("Tensor", "unbroadcast(-g * x.data / y.data**2", "unbroadcast(g * x.data / y.data**2", -1)],
     ["test_Tensor_hidden"], ["-x / y**2", "sign"]),
    ("division_no_square", [("Tensor", "unbroadcast(-g * x.data / y.data**2", "unbroadcast(-g * x.data / y.data", -1)],
     ["test_Tensor_hidden"], ["-x / y**2"]),
    ("sum_without_expand_dims", [("Tensor", "g = np.expand_dims(g, axis)", "pass", -1)],
     ["test_Tensor", "test_Tensor_hidden"], ["np.expand_dims"]),
    ("sigmoid_naive_overflow", [("Tensor", "0.5 * (1.0 + np.tanh(0.5 * self.data))",
                                 "1.0 / (1.0 + np.exp(-self.data))", -1),
                                ("Tensor", "g * s * (1.0 - s)", "g * np.exp(-self.data) * s**2", -1)],
     ["test_Tensor_hidden"], ["sigmoid"]),
    ("cross_entropy_no_max_shift",
     [("cross_entropy", "logits - logits.data.max(axis=1, keepdims=True)", "logits * 1.0", -1)],
     ["test_cross_entropy_hidden"], ["max", "overflow"]),
    ("sgd_step_keeps_grad", [("sgd_step", "            p.grad = None\n", "", -1)],
     ["test_sgd_step", "test_training_hidden"], ["clear"]),
    ("sgd_step_wrong_sign", [("sgd_step", "p.data -= lr * p.grad", "p.data += lr * p.grad", -1)],
     ["test_sgd_step", "test_training_hidden"], ["p.data - lr * p.grad"]),
    ("linear_without_bias", [("Linear", "return x @ self.W + self.b", "return x @ self.W", -1)],
     ["test_Linear", "test_training_hidden"], ["b"]),
]


def apply(nb, edits):
    for gid, old, new, count in edits:
        src = cell_by_id(nb, gid).source
        if count == "re":
            assert old.search(src), f"pattern not found in {gid}"
            nb = replace_cell(nb, gid, old.sub(lambda m: new, src, count=1))
        elif count == 1:
            assert old in src, f"{old!r} not in {gid}"
            nb = replace_cell(nb, gid, src.replace(old, new, 1))
        else:
            nb = mutate(nb, gid, old, new)
    return nb


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_typical_mistake_loses_points(mistake):
    _, edits, failing, words = mistake
    scores = run_in_process(only(apply(NB, edits), failing), skip_untagged=True)
    for gid in failing:
        score, most, error = scores[gid]
        assert score < most, f"{gid} still passes"
        assert error is not None
        for word in words:
            assert word.lower() in error.lower(), f"{gid}: {word!r} not in message: {error}"


def test_instructor_demo_loses_points_in_full_run():
    """The demo replaces the first `unbroadcast(` of the Tensor solution region."""
    src = cell_by_id(NB, "Tensor").source
    region = src.index("### BEGIN SOLUTION")
    assert src.index("unbroadcast(", region) < src.index("def unbroadcast(")
    nb = apply(NB, MISTAKES[0][1])
    got, most = total(run_in_process(only(nb, ["test_Tensor", "test_Tensor_hidden"]),
                                     skip_untagged=True))
    assert got < most


@pytest.mark.parametrize("what", ["Tensor", "cross_entropy"])
def test_course_lib_engine_gets_no_credit(what):
    nb = replace_cell(NB, what, f"from course_lib.engine import {what}\n")
    tests = (["test_Tensor", "test_Tensor_hidden"] if what == "Tensor"
             else ["test_cross_entropy", "test_cross_entropy_hidden"])
    scores = run_in_process(only(nb, tests), skip_untagged=True)
    for gid in tests:
        assert scores[gid][0] == 0, (gid, scores[gid])


def test_solution_regions_keep_signatures_outside():
    for gid, head in [("Tensor", "class Tensor:"), ("cross_entropy", "def cross_entropy(logits, labels):"),
                      ("Linear", "class Linear:"), ("sgd_step", "def sgd_step(params, lr):")]:
        src = cell_by_id(NB, gid).source
        assert src.index(head) < src.index("### BEGIN SOLUTION")
