"""Notebook 02 (gradient checking, backprop by hand): the reference scores full marks, typical
wrong answers lose points with a message that helps, other correct answers keep full marks."""
from __future__ import annotations

import pytest

from harness import Mistake, assert_caught, failures, read, replace_cell, run_in_process, source_path, total

A = "02_manual_backprop"
NB = read(source_path(A))
RESTORE = "        x[idx] = old  # restore exactly: x must hold its original values\n"
CHAIN = ("    dT = -np.ones_like(P) / N\n"
         "    dP = dT * y / P - dT * (1 - y) / (1 - P)\n"
         "    dZ = dP * P * (1 - P)\n")


def mistake(id, gid, edits, failing, words, also=()):
    """Edits of solution cell `gid`: `failing` lose points, and maybe `also`, nothing else."""
    return Mistake(id, [(gid, old, new) for old, new in edits], failing, words, frozenset(also))


# (id, solution cell, [(old, new), ...], test cells that must fail, words the message must
#  contain[, other test cells of the same function that fail too])
MISTAKES = [mistake(*row) for row in [
    ("ng_one_sided", "numerical_gradient",
     [("        x[idx] = old - eps\n", "        x[idx] = old\n"), ("/ (2 * eps)", "/ eps")],
     ["test_numerical_gradient", "test_numerical_gradient_hidden"], ["one-sided"]),
    ("ng_divide_by_eps", "numerical_gradient", [("/ (2 * eps)", "/ eps")],
     ["test_numerical_gradient", "test_numerical_gradient_hidden"], ["2 times too large", "2 * eps"]),
    ("ng_sign", "numerical_gradient", [("(f_plus - f_minus)", "(f_minus - f_plus)")],
     ["test_numerical_gradient", "test_numerical_gradient_hidden"], ["sign"]),
    ("ng_not_restored", "numerical_gradient", [(RESTORE, "")],
     ["test_numerical_gradient", "test_numerical_gradient_hidden"], ["left x changed", "restore"]),
    # x[idx] += eps; f; x[idx] -= 2 * eps; f; x[idx] += eps: x drifts by rounding errors
    ("ng_undo_by_adding", "numerical_gradient",
     [("        x[idx] = old + eps\n", "        x[idx] += eps\n"),
      ("        x[idx] = old - eps\n", "        x[idx] -= 2 * eps\n"), (RESTORE, "        x[idx] += eps\n")],
     ["test_numerical_gradient", "test_numerical_gradient_hidden"], ["left x changed", "rounding"]),
    ("ng_fixed_eps", "numerical_gradient",
     [("    grad = np.zeros_like(x, dtype=np.float64)\n",
       "    grad = np.zeros_like(x, dtype=np.float64)\n    eps = 1e-6\n")],
     ["test_numerical_gradient", "test_numerical_gradient_hidden"], ["eps argument"]),
    ("ng_all_at_once", "numerical_gradient",
     [("    for idx in np.ndindex(x.shape):",
       "    grad = grad + (f(x + eps) - f(x - eps)) / (2 * eps)\n    return grad\n"
       "    for idx in np.ndindex(x.shape):")],
     ["test_numerical_gradient", "test_numerical_gradient_hidden"], ["one element at a time"]),
    ("re_mean", "rel_error", [("np.max(ratio)", "np.mean(ratio)")],
     ["test_rel_error", "test_rel_error_hidden"], ["mean", "max"]),
    ("re_abs_of_sum", "rel_error", [("np.abs(a) + np.abs(b)", "np.abs(a + b)")],
     ["test_rel_error", "test_rel_error_hidden"], ["denominator"]),
    ("re_no_floor", "rel_error",
     [("np.maximum(1e-8, np.abs(a) + np.abs(b))", "(np.abs(a) + np.abs(b))")],
     ["test_rel_error", "test_rel_error_hidden"], ["floor"]),
    ("re_returns_array", "rel_error", [("float(np.max(ratio))", "ratio")],
     ["test_rel_error", "test_rel_error_hidden"], ["one number"]),
    ("lin_missing_2", "linear_regression_grads", [("2 * (P - y) / N", "(P - y) / N")],
     ["test_linear_regression_grads", "test_linear_regression_grads_hidden"], ["factor of 0.5"]),
    ("lin_missing_mean", "linear_regression_grads", [("2 * (P - y) / N", "2 * (P - y)")],
     ["test_linear_regression_grads", "test_linear_regression_grads_hidden"],
     ["times too large", "mean"]),
    ("lin_b_not_summed", "linear_regression_grads", [("dP.sum(axis=0)", "dP")],
     ["test_linear_regression_grads", "test_linear_regression_grads_hidden"],
     ["expected shape (1,)", "broadcast"]),
    ("lin_b_wrong_axis", "linear_regression_grads", [("dP.sum(axis=0)", "dP.sum(axis=1)")],
     ["test_linear_regression_grads", "test_linear_regression_grads_hidden"],
     ["expected shape (1,)", "summed over the broadcast axes"]),
    ("lin_sign", "linear_regression_grads", [("2 * (P - y) / N", "2 * (y - P) / N")],
     ["test_linear_regression_grads", "test_linear_regression_grads_hidden"], ["sign"]),
    ("lin_dx_transposed", "linear_regression_grads", [("dX = dP @ W.T", "dX = W @ dP.T")],
     ["test_linear_regression_grads", "test_linear_regression_grads_hidden"], ["transposed"]),
    ("lin_wrong_keys", "linear_regression_grads", [('"W": dW', '"w": dW')],
     ["test_linear_regression_grads"], ["missing", "'W'"], ["test_linear_regression_grads_hidden"]),
    ("lin_tuple", "linear_regression_grads",
     [('return {"X": dX, "W": dW, "b": db}', "return dX, dW, db")],
     ["test_linear_regression_grads"], ["must return a dict"],
     ["test_linear_regression_grads_hidden"]),
    ("log_sign", "logistic_regression_grads", [("(P - y) / N", "(y - P) / N")],
     ["test_logistic_regression_grads", "test_logistic_regression_grads_hidden"], ["sign"],
     ["test_logistic_regression_grads_extreme"]),
    ("log_missing_mean", "logistic_regression_grads", [("(P - y) / N", "(P - y)")],
     ["test_logistic_regression_grads", "test_logistic_regression_grads_hidden"],
     ["times too large", "mean"], ["test_logistic_regression_grads_extreme"]),
    ("log_unsimplified_chain", "logistic_regression_grads",
     [("    dZ = (P - y) / N                       # (N, 1)  the whole chain, simplified\n", CHAIN)],
     # the sized hidden case (D = 1000) has logits large enough to saturate as well; both
     # messages name the nan and its cause, not only the exercise's formula
     ["test_logistic_regression_grads_extreme", "test_logistic_regression_grads_hidden"],
     ["nan", "overflowed", "sigmoid rounds to exactly 1.0"]),
    ("ridge_no_penalty", "ridge_grads", [(" + 2 * W * ds", "")],
     ["test_ridge_grads", "test_ridge_grads_hidden"], ["W is used twice"]),
    ("ridge_penalty_over_n", "ridge_grads", [(" + 2 * W * ds", " + 2 * W / N")],
     ["test_ridge_grads", "test_ridge_grads_hidden"], ["W is used twice", "broadcast"]),
    ("ridge_dx_missing_mean", "ridge_grads",
     [("dT = np.ones((N, 1)) / N ", "dT = np.ones((N, 1)) ")],
     ["test_ridge_grads", "test_ridge_grads_hidden"], ["times too large"]),
    ("ridge_dx_one_row", "ridge_grads", [("dX = dZ @ W.T", "dX = W.T / N")],
     ["test_ridge_grads", "test_ridge_grads_hidden"], ["expected shape", "exactly that input's shape"]),
    ("ridge_dw_sum_not_mean", "ridge_grads",
     [("dW = X.T @ dZ", "dW = X.T.sum(axis=1, keepdims=True)")],
     ["test_ridge_grads", "test_ridge_grads_hidden"], ["W is used twice"]),
    ("ridge_b_scalar", "ridge_grads", [("db = dP.sum(axis=0)", "db = np.array(1.0)")],
     ["test_ridge_grads", "test_ridge_grads_hidden"], ["expected shape (1,), got ()"]),
    # shortcuts: someone else's gradient instead of your own
    ("ng_imported", "numerical_gradient",
     [("    ### BEGIN SOLUTION\n", "    ### BEGIN SOLUTION\n    from course_lib.checks import "
       "numerical_gradient as ng\n    return ng(f, x, eps)\n")],
     ["test_numerical_gradient"], ["not available"], ["test_numerical_gradient_hidden"]),
    ("lin_torch_autograd", "linear_regression_grads",
     [("    ### BEGIN SOLUTION\n", "    ### BEGIN SOLUTION\n    import torch\n"
       "    t = {k: torch.tensor(v, requires_grad=True) for k, v in zip('XWb', (X, W, b))}\n"
       "    ((t['X'] @ t['W'] + t['b'] - torch.tensor(y)) ** 2).mean().backward()\n"
       "    return {k: v.grad.numpy() for k, v in t.items()}\n")],
     ["test_linear_regression_grads"], ["not available"], ["test_linear_regression_grads_hidden"]),
]]


@pytest.mark.parametrize("mistake", MISTAKES, ids=str)
def test_typical_mistake_loses_points(mistake):
    assert_caught(mistake, run_in_process(mistake.applied(NB), skip_untagged=True))


ALTERNATIVES = {
    # a copy per evaluation, flat indices (shape () included)
    "numerical_gradient": '''
def numerical_gradient(f, x, eps=1e-6):
    grad = np.empty(x.shape)
    for i in range(x.size):
        xp, xm = x.copy(), x.copy()
        xp.flat[i] += eps
        xm.flat[i] -= eps
        grad.flat[i] = (f(xp) - f(xm)) / (2 * eps)
    return grad
''',
    "rel_error": '''
def rel_error(a, b):
    num = np.abs(np.subtract(a, b))
    den = np.maximum(np.abs(a) + np.abs(b), 1e-8)
    return (num / den).max()          # an np.float64, not a Python float
''',
    "linear_regression_grads": '''
def linear_regression_grads(X, W, b, y):
    r = (X @ W + b - y).ravel()                       # (N,)
    g = 2.0 * r / r.size
    return {"b": np.array([g.sum()]), "W": np.einsum("nd,n->d", X, g)[:, None],
            "X": np.outer(g, W[:, 0])}
''',
    # the textbook sigmoid (overflows with a warning at -1000, still right) and a different order
    "logistic_regression_grads": '''
def logistic_regression_grads(X, W, b, y):
    P = 1.0 / (1.0 + np.exp(-(X @ W + b)))
    dZ = (P - y) / len(X)
    return {"W": X.T @ dZ, "b": np.sum(dZ, axis=0), "X": dZ * W.T}
''',
    "ridge_grads": '''
def ridge_grads(X, W, b):
    N, D = X.shape
    return {"X": np.tile(W.T / N, (N, 1)), "W": X.mean(axis=0).reshape(D, 1) + 2 * W,
            "b": np.ones_like(b)}
''',
}


def test_other_correct_answers_keep_full_marks():
    nb = NB
    for gid, source in ALTERNATIVES.items():
        nb = replace_cell(nb, gid, source.strip())
    scores = run_in_process(nb, skip_untagged=True)
    got, most = total(scores)
    assert got == most, failures(scores)
