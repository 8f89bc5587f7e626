"""course_lib.checks.gradcheck (notebook 02's checks), run in this process on small wrong
answers: each typical mistake is named, visible-test messages nudge (no formula) and hidden
ones (explain=True) name the formula."""
from __future__ import annotations

import numpy as np
import pytest

from course_lib.checks import GradeError, suite
from course_lib.checks import gradcheck as G
from test_visible_hints import FORMULA


def own(source, name):
    """A function defined 'in the notebook' (module __main__), as the checks require."""
    namespace = {"__name__": "__main__", "np": np}
    exec(source, namespace)
    return namespace[name]


def message(check, *args, **kwargs):
    """The GradeError message `check(t, *args)` raises in a fresh suite."""
    with pytest.raises(GradeError) as caught, suite("test_checks_gradcheck") as t:
        check(t, *args, **kwargs)
    return str(caught.value)


ONE_SIDED = own('''
def numerical_gradient(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        base = f(x)
        x[idx] = old + eps
        grad[idx] = (f(x) - base) / eps
        x[idx] = old
    return grad
''', "numerical_gradient")

ALL_AT_ONCE = own('''
def numerical_gradient(f, x, eps=1e-6):
    return np.full(x.shape, (f(x + eps) - f(x - eps)) / (2 * eps))
''', "numerical_gradient")

MAX_DENOMINATOR = own('''
def rel_error(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.maximum(np.abs(a), np.abs(b)))))
''', "rel_error")

UNSIMPLIFIED = own('''
def logistic_regression_grads(X, W, b, y):
    N = X.shape[0]
    P = 1 / (1 + np.exp(-(X @ W + b)))
    dT = -np.ones_like(P) / N
    dZ = (dT * y / P - dT * (1 - y) / (1 - P)) * P * (1 - P)
    return {"X": dZ @ W.T, "W": X.T @ dZ, "b": dZ.sum(axis=0)}
''', "logistic_regression_grads")


@pytest.mark.parametrize("explain", [False, True])
def test_one_sided_differences_are_named(explain):
    text = message(G.check_cube, ONE_SIDED, np.array([0.5, -1.0, 2.0]), 0.1, explain=explain)
    assert "one-sided (forward)" in text or "(f(x + eps) - f(x)) / eps" in text
    assert bool(FORMULA.search(text)) == explain, text


def test_changing_every_element_at_once_is_counted():
    text = message(G.check_numerical_gradient, ALL_AT_ONCE, np.ones((2, 2)),
                   lambda v: np.sum(v ** 2), lambda v: (v ** 2).sum())
    assert "differs from x in 4 elements" in text


@pytest.mark.parametrize("explain", [False, True])
def test_the_larger_of_a_and_b_is_not_the_denominator(explain):
    a, b = np.array([1.0, -0.5, 3.0]), np.array([1.2, 0.4, 3.0])
    text = message(G.check_rel_error, MAX_DENOMINATOR, a, b, "three numbers", explain=explain)
    assert ("not the larger of the two" in text) != explain, text
    assert ("max(|a|, |b|)" in text) == explain, text


@pytest.mark.parametrize("explain", [False, True])
def test_a_saturated_sigmoid_is_named_by_its_nan(explain):
    def check(t, f, explain):
        G.check_loss_grads(t, f, G.LOGISTIC, G.saturating_inputs(t, 8, 3), {"X": "the X hint"},
                           explain=explain)

    text = message(check, UNSIMPLIFIED, explain)
    assert "got nan" in text and "overflowed" in text and "sigmoid rounds" in text, text
    assert text.index("overflowed") < text.index("Also: the X hint"), text
    assert ("(P - y) / N" in text) == explain, text


def test_the_reference_formulas_pass():
    reference = own('''
def logistic_regression_grads(X, W, b, y):
    P = np.exp(-np.logaddexp(0.0, -(X @ W + b)))
    dZ = (P - y) / X.shape[0]
    return {"X": dZ @ W.T, "W": X.T @ dZ, "b": dZ.sum(axis=0)}
''', "logistic_regression_grads")
    with suite("test_checks_gradcheck") as t:
        G.check_loss_grads(t, reference, G.LOGISTIC, G.saturating_inputs(t, 8, 3), G.SATURATED)
        a, b = G.close_arrays(t, (4, 5), 1.0)
        G.check_rel_error(t, own("def rel_error(a, b):\n    return "
                                 "float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) "
                                 "+ np.abs(b))))", "rel_error"), a, b, "close arrays")


def test_a_tuple_instead_of_a_dict_is_told():
    as_tuple = own("def ridge_grads(X, W, b):\n    return X, W, b", "ridge_grads")
    inputs = {"X": np.ones((2, 3)), "W": np.ones((3, 1)), "b": np.ones(1)}
    text = message(G.check_loss_grads, as_tuple, G.RIDGE, inputs)
    assert text.startswith("ridge_grads must return a dict") and "tuple" in text


def test_notebook_02_test_cells_are_short_lists_of_cases():
    """Every test cell <= 25 lines; no hidden line (>= 25 characters, imports aside) repeats
    a visible line of the notebook: the checking code lives in gradcheck, written once."""
    from harness import is_test, read, source_path
    cells = [c.source for c in read(source_path("02_manual_backprop")).cells if is_test(c)]
    assert len(cells) == 11 and all(len(c.splitlines()) <= 25 for c in cells)
    hidden_parts = [c.partition("### BEGIN HIDDEN TESTS")[2].partition("### END HIDDEN TESTS")[0]
                    for c in cells]
    visible = {line.strip() for c, h in zip(cells, hidden_parts)
               for line in c.replace(h, "").splitlines()}
    repeated = [line.strip() for h in hidden_parts for line in h.splitlines()
                if len(line.strip()) >= 25 and line.strip() in visible
                and not line.strip().startswith(("import ", "from "))]
    assert repeated == []
