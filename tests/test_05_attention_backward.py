"""Notebook 05 (transformer layers and a tiny language model): the reference scores full marks,
the blank release 0, typical mistakes lose points with a message that says what to fix, the
compare-every-intermediate view finds the first wrong step, and reference VJPs earn nothing."""
from __future__ import annotations

import contextlib
import io

import nbformat
import pytest

from harness import (Mistake, assert_caught, cell_by_id, grade_id, mutate, read, replace_cell,
                     run_in_process, source_path, total)

A = "05_attention_backward"
NB = read(source_path(A))
SOLUTIONS = ["softmax", "layer_norm", "embedding", "attention", "block_loss_and_grads"]
MAX = 21


def only(nb, tests):
    """`nb` with its setup, solutions, given tools and the test cells `tests` (no training)."""
    keep = {"setup_imports", "tools", *SOLUTIONS, *tests}
    nb = nbformat.from_dict(nb)
    nb.cells = [c for c in nb.cells if c.cell_type == "code" and grade_id(c) in keep]
    return nb


def answer(gid):
    return cell_by_id(NB, gid).source.partition("### BEGIN SOLUTION")[2]


def mistake(id, gid, old, new, failing, words):
    """One edit in the answer of solution cell `gid`."""
    assert old in answer(gid), f"{old!r} is not in the {gid} solution any more: update this test"
    return Mistake(id, [(gid, old, new)], failing, words)


# (id, solution cell, text in its answer, replacement, test cells that must fail, words)
MISTAKES = [mistake(*row) for row in [
    ("softmax_without_subtracted_term", "softmax",
     "y * (g - (g * y).sum(axis=axis, keepdims=True))", "y * g",
     ["test_softmax", "test_softmax_hidden"], ["subtracted term"]),
    ("softmax_without_max_shift", "softmax", "x - x.max(axis=axis, keepdims=True)", "x",
     ["test_softmax_stable", "test_softmax_hidden"], ["overflow"]),
    ("softmax_vjp_sums_the_last_axis", "softmax", "(g * y).sum(axis=axis, keepdims=True)",
     "(g * y).sum(axis=-1, keepdims=True)", ["test_softmax", "test_softmax_hidden"],
     ["same axis"]),
    ("layer_norm_without_mean_terms", "layer_norm",
     "gx = (gxhat - gxhat.mean(axis=-1, keepdims=True)   # through the mean\n"
     "              - xhat * (gxhat * xhat).mean(axis=-1, keepdims=True)) / s",
     "gx = gxhat / s", ["test_layer_norm", "test_layer_norm_hidden"],
     ["through the mean and through the variance"]),
    ("layer_norm_unbiased_variance", "layer_norm",
     "((x - mean) ** 2).mean(axis=-1, keepdims=True)", "x.var(axis=-1, ddof=1, keepdims=True)",
     ["test_layer_norm", "test_layer_norm_hidden"], ["biased", "D - 1"]),
    ("layer_norm_one_pass_variance", "layer_norm",
     "((x - mean) ** 2).mean(axis=-1, keepdims=True)",
     "(x ** 2).mean(axis=-1, keepdims=True) - mean ** 2",
     ["test_layer_norm", "test_layer_norm_hidden"],
     ["two passes"]),
    ("layer_norm_sums_only_the_first_axis", "layer_norm", "lead = tuple(range(g.ndim - 1))",
     "lead = 0", ["test_layer_norm", "test_layer_norm_hidden"],
     ["gamma: expected shape", "ggamma", "every leading axis"]),
    ("embedding_assignment", "embedding", "np.add.at(gtable, ids, g)", "gtable[ids] = g",
     ["test_embedding", "test_embedding_hidden"], ["used several times gets the SUM"]),
    ("embedding_fancy_add", "embedding", "np.add.at(gtable, ids, g)", "gtable[ids] += g",
     ["test_embedding", "test_embedding_hidden"], ["one write per repeated id", "loses"]),
    ("embedding_writes_into_table", "embedding", "gtable = np.zeros_like(table)",
     "gtable = table\n        gtable *= 0", ["test_embedding", "test_embedding_hidden"],
     ["modified its input table in place"]),
    ("attention_backward_without_scale", "attention", "gscores = softmax_vjp(gp) * scale",
     "gscores = softmax_vjp(gp)", ["test_attention", "test_attention_hidden"],
     ["gradient with respect to q", "factor"]),
    ("attention_gk_not_transposed", "attention", "gk = np.swapaxes(gscores, -1, -2) @ q",
     "gk = gscores @ q", ["test_attention_causal"], ["gradient with respect to k", "last two axes swapped"]),
    ("attention_dot_T_on_batched_k", "attention", "q @ np.swapaxes(k, -1, -2)", "q @ k.T",
     ["test_attention", "test_attention_causal", "test_attention_hidden"],
     ["matmul", "in the forward pass", "k of shape", "reverses ALL axes"]),
    ("attention_backward_through_masked_positions", "attention",
     "gscores = softmax_vjp(gp) * scale",
     "gscores = softmax((q @ np.swapaxes(k, -1, -2)) * scale)[1](gp) * scale",
     ["test_attention_causal", "test_attention_hidden"], ["masked position"]),
    ("attention_mask_by_zero", "attention", "np.where(above, -np.inf, scores)",
     "np.where(above, 0.0, scores)", ["test_attention_causal", "test_attention_hidden"],
     ["-inf", "exp(0) = 1"]),
    ("attention_not_masked", "attention", "if causal:", "if False:",
     ["test_attention_causal", "test_attention_hidden"], ["above the diagonal"]),
    ("block_drops_residual_gradient", "block_loss_and_grads", "gx1 = gx2 + gx1_ln",
     "gx1 = gx1_ln", ["test_block_loss_and_grads", "test_block_loss_and_grads_hidden"],
     ["gradient of Wo", "used twice"]),
    ("block_forgets_the_k_path", "block_loss_and_grads", "gh1 = gh1_q + gh1_k + gh1_v",
     "gh1 = gh1_q + gh1_v", ["test_block_loss_and_grads", "test_block_loss_and_grads_hidden"],
     ["gradient of ln1_g", "all three"]),
    ("block_pos_from_first_sequence", "block_loss_and_grads",
     'grads["pos"][:T] = gx0.sum(axis=0)', 'grads["pos"][:T] = gx0[0]',
     ["test_block_loss_and_grads", "test_block_loss_and_grads_hidden"],
     ["gradient of pos", "summed over the batch"]),
    ("block_pos_only_T_rows", "block_loss_and_grads",
     'grads["pos"] = np.zeros_like(p["pos"])                 # (block, D): rows >= T unused\n'
     '    grads["pos"][:T] = gx0.sum(axis=0)',
     'grads["pos"] = gx0.sum(axis=0)',
     ["test_block_loss_and_grads", "test_block_loss_and_grads_hidden"],
     ["gradient of pos", "expected shape", "rows from T on (unused) get 0"]),
]]


@pytest.mark.parametrize("mistake", MISTAKES, ids=str)
def test_typical_mistake_loses_points(mistake):
    """Only the cells that must fail are run (with the solutions): none of them may pass."""
    failed = assert_caught(mistake, run_in_process(only(mistake.applied(NB), mistake.failing),
                                                   skip_untagged=True))
    assert not any("is not defined" in error for error in failed.values()), failed


def test_every_graded_function_has_at_least_two_typical_mistakes():
    counts = {gid: sum(1 for m in MISTAKES if m.edits[0][0] == gid) for gid in SOLUTIONS}
    assert min(counts.values()) >= 2, counts


def test_demo_mistake_costs_points_but_not_everything():
    from course_lib.grading import demo
    scores = run_in_process(only(demo.with_mistake(nbformat.from_dict(NB), A),
                                 [c for c in map(grade_id, NB.cells) if c and c.startswith("test_")
                                  and c != "test_training_hidden"]), skip_untagged=True)
    assert 0 < total(scores)[0] < total(scores)[1]
    assert scores["test_embedding"][0] == 0


@pytest.mark.parametrize("name", ["softmax_op", "layer_norm", "embedding", "attention"])
def test_a_reference_from_course_lib_earns_nothing(name):
    gid = {"softmax_op": "softmax"}.get(name, name)
    source = f"from course_lib.ops import {name} as {gid}\n"
    tests = [g for g in map(grade_id, NB.cells) if g and g.startswith(f"test_{gid}")]
    scores = run_in_process(only(replace_cell(NB, gid, source), tests), skip_untagged=True)
    for test in tests:
        assert scores[test][0] == 0, (test, scores[test])
        assert "this notebook" in scores[test][2], scores[test][2]


def test_a_vjp_calling_a_reference_gradient_earns_nothing():
    body = ("def embedding(ids, table):\n    from course_lib import ops\n"
            "    return ops.embedding(ids, table)\n")
    scores = run_in_process(only(replace_cell(NB, "embedding", body), ["test_embedding"]),
                            skip_untagged=True)
    assert scores["test_embedding"][0] == 0
    assert "compute the gradient yourself" in scores["test_embedding"][2]


# ---- the ungraded parts: the compare-every-intermediate view and the training run

def _namespace_after(nb, last_cell_containing):
    """Run nb's code cells up to the first one containing the text; return the namespace."""
    import matplotlib
    matplotlib.use("Agg")
    namespace, out = {"__name__": "__main__"}, io.StringIO()
    for cell in nb.cells:
        if cell.cell_type != "code" or (grade_id(cell) or "").startswith("test_"):
            continue
        with contextlib.redirect_stdout(out):
            exec(compile(cell.source, "<cell>", "exec"), namespace)
        if last_cell_containing in cell.source:
            return namespace, out.getvalue()
    raise AssertionError(f"no cell contains {last_cell_containing!r}")


def test_compare_view_points_at_the_first_wrong_step():
    ns, printed = _namespace_after(NB, "first_wrong_with_bug = compare_block(")
    assert ns["first_wrong"] is None and "every intermediate matches torch" in printed
    assert ns["first_wrong_with_bug"] == "x1"
    assert ns["layer_norm"] is ns["correct_layer_norm"]  # the demo put the learner's back

    nb = mutate(NB, "block_loss_and_grads", "gh1 = gh1_q + gh1_k + gh1_v", "gh1 = gh1_q + gh1_v")
    ns, printed = _namespace_after(nb, "first_wrong = compare_block(")
    assert ns["first_wrong"] == "h1", printed[-400:]


def test_a_wrong_adam_update_loses_the_training_points():
    nb = nbformat.from_dict(NB)
    cell = next(c for c in nb.cells if "def adam_step(" in c.source)
    assert "m_hat = m[key] / (1 - beta1**step)" in cell.source
    cell.source = cell.source.replace("m_hat = m[key] / (1 - beta1**step)", "m_hat = m[key]")
    keep = {"setup_imports", "tools", *SOLUTIONS, "test_training_hidden"}
    nb.cells = [c for c in nb.cells if c.cell_type == "code"
                and (grade_id(c) in keep or "def adam_step(" in c.source)]
    scores = run_in_process(nb)
    score, _, error = scores["test_training_hidden"]
    assert score == 0 and "loss curve" in error, error


@pytest.mark.slow
def test_course_check_recognises_and_passes_the_reference(tmp_path):
    import os
    import shutil
    import subprocess
    import sys
    mine = tmp_path / "my transformer.ipynb"
    shutil.copy(source_path(A), mine)
    course = os.path.join(os.path.dirname(sys.executable), "course")
    result = subprocess.run([course, "check", str(mine)], cwd=os.path.dirname(source_path(A)),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"as {A}/attention_backward.ipynb" in result.stdout
    assert f"{MAX}/{MAX}" in result.stdout.replace(".0", ""), result.stdout
