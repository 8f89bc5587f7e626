"""Checks for notebook 02: a learner's gradient checker, and gradients derived by hand.

One idea: checking a gradient. Part 1 of the notebook builds the tools (`numerical_gradient`,
`rel_error`), part 2 derives the gradients of whole losses by hand (`linear_regression_grads`,
`logistic_regression_grads`, `ridge_grads`); each is compared with an exact reference (torch
autograd in float64, or a formula), and a wrong answer that matches a typical mistake exactly
is named.

    from course_lib.checks import suite
    from course_lib.checks import gradcheck as G

    with suite("test_rel_error_hidden") as t:
        a, b = G.close_arrays(t, (7,), scale=1.0)
        G.check_rel_error(t, rel_error, a, b, "arrays of shape (7,)", explain=True)

Visible tests nudge, hidden tests explain: every message a visible test can show names the
rule to look at, and `explain=True` (the hidden tests) adds the formula. Student code is
reached only through `t.run`; the function `f` handed to a learner's `numerical_gradient` is a
callback that receives plain data (under `course grade` it runs in the grader).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from course_lib.checks.core import (FD_ATOL, FD_RTOL, GradeError, _call_copied, assert_close,
                                    assert_unchanged, torch_reference, torch_vjp)

__all__ = [
    "check_numerical_gradient", "check_cube", "one_sided",
    "rel_error_reference", "close_arrays", "check_rel_error",
    "Loss", "LINEAR", "LOGISTIC", "RIDGE", "SATURATED", "binary_labels", "saturating_inputs",
    "check_loss_grads",
]


def _say(nudge: str, explained: str, explain: bool) -> str:
    """The visible test's nudge, or the hidden test's explanation (which names the formula)."""
    return explained if explain else nudge


# ---- numerical_gradient(f, x, eps=1e-6) ------------------------------------------------------

def _record_calls(numerical_gradient, f, x, *eps):
    """Student side: numerical_gradient on a copy of x, recording how it calls f (data only)."""
    x0, changed = x.copy(), []

    def f_recorded(v):
        v = np.asarray(v)
        changed.append(int(np.sum(v != x0)) if v.shape == x0.shape else -1)
        return float(f(v))

    x_in = x.copy()
    grad = numerical_gradient(f_recorded, x_in, *eps)
    return {"grad": grad, "x_after": x_in, "max_changed": max(changed, default=0),
            "bad_shape": changed.count(-1)}


def _check_calls(got, x):
    """Rules 2 and 3: f sees one changed element at a time, and x is restored exactly."""
    if got["bad_shape"]:
        raise GradeError(f"numerical_gradient called f with an array that does not have x's "
                         f"shape {x.shape}. Call f with the whole array x, one element changed.")
    after = np.asarray(got["x_after"], dtype=np.float64)
    if not np.array_equal(after, x):
        idx = tuple(int(i) for i in np.argwhere(after != x)[0])
        how = (" (a rounding error: undoing with x[i] -= eps does not always give back the old "
               "value)" if np.isclose(after[idx], x[idx], rtol=1e-12, atol=0) else "")
        where = ", ".join(map(str, idx)) or "()"
        raise GradeError(f"numerical_gradient left x changed: after the call x[{where}] = "
                         f"{float(after[idx])!r}, but it was {float(x[idx])!r}{how}. Save "
                         "old = x[i] and restore x[i] = old after the two evaluations of f, or "
                         "work on a copy.")
    if got["max_changed"] > 1:
        raise GradeError(f"numerical_gradient called f with an array that differs from x in "
                         f"{got['max_changed']} elements. Change one element at a time: grad[i] "
                         "measures how f changes when only x[i] moves.")


def _compare_naming_mistakes(grad, expected, what, mistakes, rtol=FD_RTOL, atol=FD_ATOL):
    """assert_close; if the answer matches a typical mistake (candidate, message), say which."""
    try:
        assert_close(grad, expected, what=what, rtol=rtol, atol=atol)
    except GradeError:
        g = grad if isinstance(grad, np.ndarray) and grad.dtype.kind == "f" else None
        for candidate, message in mistakes:
            if g is not None and g.shape == np.shape(candidate) and \
                    np.allclose(g, candidate, rtol=1e-5, atol=1e-7):
                raise GradeError(f"{what} is wrong: {message}") from None
        raise


def one_sided(f, x, eps, side):
    """The course's own one-sided differences, to recognise them (side=+1 forward, -1 backward)."""
    out = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        moved = x.copy()
        moved[idx] = x[idx] + side * eps
        out[idx] = side * (f(moved) - f(x)) / eps
    return out


CENTRAL = "(f(x + eps) - f(x - eps)) / (2 * eps)"


def _smooth_mistakes(f, x, expected, explain):
    """What the usual mistakes return for a smooth f, and what to say about each."""
    one_sided_message = _say(
        "it matches one-sided differences, which are only accurate to about eps. Use the "
        "central difference: one step eps to each side of x.",
        f"it matches one-sided differences, which are only accurate to about eps. Use the "
        f"central difference {CENTRAL}.", explain)
    return [
        (one_sided(f, x, 1e-6, +1), one_sided_message),
        (one_sided(f, x, 1e-6, -1), one_sided_message),
        (2 * expected, "it is 2 times too large. The two points x - eps and x + eps are "
                       "2 * eps apart: divide by 2 * eps, not by eps."),
        (expected / 2, "it is 2 times too small: divide by 2 * eps, not by 4 * eps."),
        (-expected, _say("the sign is flipped: subtract the value on the left of x from the "
                         "value on the right.", f"the sign is flipped: compute {CENTRAL}.",
                         explain)),
    ]


def check_numerical_gradient(t, numerical_gradient, x, f, f_torch, *, explain=False):
    """numerical_gradient(f, x) for a smooth scalar f (numpy) against torch's exact gradient
    of the same function `f_torch`; how it calls f and whether it restores x are checked first."""
    __tracebackhide__ = True  # IPython: show the student's code, not ours
    got = t.run(lambda: _record_calls(numerical_gradient, f, x), numerical_gradient)
    _check_calls(got, x)
    _, _, (expected,) = torch_reference(f_torch, [x], wrt=(0,), g=1.0)
    _compare_naming_mistakes(got["grad"], expected,
                             f"numerical_gradient(f, x), x of shape {x.shape}",
                             _smooth_mistakes(lambda v: float(f(v)), x, expected, explain))


def _cube(v):
    return float(np.sum(v ** 3))


def check_cube(t, numerical_gradient, x, eps, *, explain=False):
    """numerical_gradient(f, x, eps) for f(v) = sum(v**3): central differences give exactly
    3 v**2 + eps**2, and each usual mistake gives its own exact formula."""
    __tracebackhide__ = True  # IPython: show the student's code, not ours
    got = t.run(lambda: _record_calls(numerical_gradient, _cube, x, eps), numerical_gradient)
    _check_calls(got, x)
    central, drift = 3 * x ** 2 + eps ** 2, 3 * x * eps
    mistakes = [
        (central + drift, _say(
            "it matches the one-sided (forward) difference, whose error shrinks like eps. Use "
            "the central difference, one step to each side of x: error like eps**2.",
            f"it matches the one-sided difference (f(x + eps) - f(x)) / eps, whose error "
            f"shrinks like eps. Use the central difference {CENTRAL}: error like eps**2.",
            explain)),
        (central - drift, _say(
            "it matches the one-sided (backward) difference. Use the central difference, one "
            "step to each side of x.",
            f"it matches the one-sided difference (f(x) - f(x - eps)) / eps. Use the central "
            f"difference {CENTRAL}.", explain)),
        ((central + drift) / 2, _say(
            "it matches a one-sided difference divided by the width of two steps: take one "
            "step to each side of x.",
            f"it matches a one-sided difference divided by 2 * eps. Use {CENTRAL}.", explain)),
        (2 * central, "it is 2 times too large: divide by 2 * eps, not by eps."),
        (3 * x ** 2 + 1e-12, f"it matches central differences with eps=1e-6, but this test "
                             f"passed eps={eps}: use the eps argument instead of a fixed step."),
    ]
    _compare_naming_mistakes(got["grad"], central,
                             f"numerical_gradient(f, x, eps={eps}) for f(v) = sum(v**3) "
                             "(central differences give exactly 3*v**2 + eps**2)", mistakes,
                             rtol=1e-6, atol=1e-9)


# ---- rel_error(a, b) -------------------------------------------------------------------------

FLOOR = 1e-8


def rel_error_reference(a, b):
    """max |a - b| / max(1e-8, |a| + |b|), elementwise then the largest."""
    return float(np.max(np.abs(a - b) / np.maximum(FLOOR, np.abs(a) + np.abs(b))))


def close_arrays(t, shape, scale):
    """a and b = a (1 + 1% noise), with entries 0 in both (a quarter) and opposite signs."""
    a = np.array(t.randn(*shape, scale=scale))
    b = np.array(a * (1 + 1e-2 * t.randn(*shape)))
    if a.ndim:
        mask = t.rng.random(shape) < 0.25                  # zeros in both
        a, b = np.where(mask, 0.0, a), np.where(mask, 0.0, b)
        flip = t.rng.random(shape) < 0.2                   # some opposite signs
        b = np.where(flip & (np.abs(a) > 0), -0.5 * a, b)
    return a, b


def _rel_error_mistakes(a, b, explain):
    """What the usual mistakes return on a and b, and what to say about each."""
    with np.errstate(all="ignore"):
        diff, sizes = np.abs(a - b), np.abs(a) + np.abs(b)
        return [
            (np.mean(diff / np.maximum(FLOOR, sizes)), _say(
                "this is the mean of the elementwise errors; take the max: one wrong entry is "
                "enough to make a gradient wrong.",
                "this is the mean of the elementwise errors; take the max (np.max): one wrong "
                "entry is enough to make a gradient wrong.", explain)),
            (np.max(diff / np.maximum(FLOOR, np.abs(a + b))), _say(
                "the denominator adds the sizes of a and b, not the size of their sum.",
                "the denominator must be |a| + |b| (np.abs(a) + np.abs(b)), not |a + b|.",
                explain)),
            (np.max(diff / np.maximum(FLOOR, np.maximum(np.abs(a), np.abs(b)))), _say(
                "the denominator adds the sizes of a and b, not the larger of the two.",
                "the denominator must be |a| + |b|, not max(|a|, |b|).", explain)),
            (np.max(diff / sizes), _say(
                "the denominator needs a floor (1e-8) so that it is never 0.",
                "the denominator needs the floor: np.maximum(1e-8, np.abs(a) + np.abs(b)).",
                explain)),
        ]


def check_rel_error(t, rel_error, a, b, case, *, explain=False):
    """rel_error(a, b) is the exact formula, one number; a typical mistake is named."""
    __tracebackhide__ = True  # IPython: show the student's code, not ours
    got = t.run(lambda: _call_copied(rel_error, (a, b)), rel_error)
    out, what, expected = got["out"], f"rel_error on {case}", rel_error_reference(a, b)
    if isinstance(out, np.ndarray) and out.ndim > 0:
        raise GradeError(f"{what}: returned an array of shape {out.shape}; return one number, "
                         "the largest elementwise relative error ("
                         + _say("the max", "np.max", explain) + " over all elements).")
    try:
        assert_close(out, expected, what=what, rtol=1e-6, atol=1e-12, hint=_say(
            "where a and b are both 0 the plain ratio is 0/0: give the denominator a floor "
            "of 1e-8.", "where a and b are both 0 the plain ratio is 0/0: the denominator is "
            "np.maximum(1e-8, np.abs(a) + np.abs(b)).", explain))
    except GradeError:
        if isinstance(out, (float, int, np.floating, np.ndarray)):
            value = float(out)
            for candidate, message in _rel_error_mistakes(a, b, explain):
                if np.isclose(value, candidate, rtol=1e-6, atol=1e-12, equal_nan=True):
                    raise GradeError(f"{what} is wrong (expected {expected:.6g}, received "
                                     f"{value:.6g}): {message}") from None
        raise
    assert_unchanged("rel_error", got["args"], (a, b), names=["a", "b"])


# ---- gradients of a whole loss, as {"X": dX, "W": dW, "b": db} -----------------------------

KEYS = ("X", "W", "b")

OVERFLOWED = "an intermediate overflowed: "


class Loss(NamedTuple):
    """A loss a learner differentiates by hand: the function they write, the loss in torch,
    and (nudge, explanation) for a gradient that overflows where the exact one is finite."""
    name: str
    torch_loss: Callable
    overflow: tuple[str, str] | None = None


def _mse(X, W, b, y):
    return ((X @ W + b - y) ** 2).mean()


def _bce(X, W, b, y):
    import torch.nn.functional as F
    return F.binary_cross_entropy_with_logits(X @ W + b, y)   # stable, mean


def _ridge(X, W, b):
    return (X @ W + b + (W ** 2).sum()).mean()


SATURATION = ("float64 sigmoid rounds to exactly 1.0 once a logit passes 37 (and to exactly "
              "0.0 below about -710), which large inputs or many features reach: then 1/P or "
              "1/(1 - P) is inf, P * (1 - P) is 0, and inf * 0 = nan. ")
LINEAR = Loss("linear_regression_grads", _mse)
LOGISTIC = Loss("logistic_regression_grads", _bce, (
    SATURATION + "Simplify dZ on paper before coding it (the sigmoid and the cross-entropy "
    "cancel into a short formula, section 2.5), and compute the sigmoid without overflow.",
    SATURATION + "Simplify dZ to (P - y) / N before coding it, and compute the sigmoid "
    "without overflow."))
RIDGE = Loss("ridge_grads", _ridge)
SATURATED = LOGISTIC.overflow[1]   # the hint of every key when the test saturates on purpose


def binary_labels(t, n):
    """n labels 0.0 or 1.0, shape (n, 1)."""
    return t.labels(n, 2).astype(np.float64).reshape(n, 1)


def saturating_inputs(t, n, d):
    """X, W, b, y where all rows but the last two have logits of about +-1000; row 0 is
    confidently wrong, row 1 confidently right."""
    X, W, b = t.randn(n, d), t.randn(d, 1), t.randn(1)
    k = max(1, n - 2)
    X[:k] *= 1000.0 / np.maximum(np.abs(X[:k] @ W), 0.5)
    y = binary_labels(t, n)
    z = X @ W + b
    y[0] = float(z[0, 0] < 0)
    if n > 1:
        y[1] = float(z[1, 0] > 0)
    return {"X": X, "W": W, "b": b, "y": y}


def _overflowed(received, expected) -> bool:
    """A float array of the right shape, nan or inf where the exact gradient is finite."""
    return isinstance(received, np.ndarray) and received.dtype.kind == "f" \
        and received.shape == np.shape(expected) \
        and not np.all(np.isfinite(received[np.isfinite(expected)]))


def _hint(loss, key, received, expected, hints, explain):
    """The exercise's hint for `key`; after the cause first when the gradient overflowed."""
    hint = hints.get(key) if isinstance(hints, dict) else hints
    if loss.overflow is None or not _overflowed(received, expected):
        return hint
    cause = _say(*loss.overflow, explain)
    return OVERFLOWED + cause + (f" Also: {hint}" if hint and hint != cause else "")


def check_loss_grads(t, f, loss: Loss, inputs: dict, hints=None, *, explain=False):
    """f(*inputs) returns {"X": dX, "W": dW, "b": db}: each against torch autograd of `loss`
    in float64 (shapes first), inputs unchanged. `hints`: {key: hint}, or one hint for all."""
    __tracebackhide__ = True  # IPython: show the student's code, not ours
    name = loss.name
    got = t.run(lambda: _call_copied(f, tuple(inputs.values())), f)
    _, expected = torch_vjp(loss.torch_loss, inputs, list(KEYS), g=1.0)
    out = got["out"]
    if not isinstance(out, dict):
        kind = getattr(out, "type_name", type(out).__name__)
        raise GradeError(f"{name} must return a dict {{'X': dX, 'W': dW, 'b': db}}; "
                         f"it returned a {kind}.")
    missing = [k for k in KEYS if k not in out]
    if missing:
        raise GradeError(f"{name}: the returned dict has keys {sorted(out)} but needs 'X', 'W' "
                         f"and 'b' (missing: {missing}). The keys are the input names, with "
                         "the same capital letters.")
    shapes = ", ".join(f"{k} {np.shape(v)}" for k, v in inputs.items())
    for k, e in zip(KEYS, expected):
        assert_close(out[k], e, what=f"{name}(...)[{k!r}] with {shapes}", context=inputs,
                     hint=_hint(loss, k, out[k], e, hints, explain))
    assert_unchanged(name, got["args"], tuple(inputs.values()), names=list(inputs))
