"""Checks for notebook 01 (derivatives and the chain rule): one check per exercise, with the
course's reference and the typical mistakes it recognises.

Every check takes `explain`: False (the visible tests) nudges towards the rule without writing
the formula out; True (the hidden tests) names the formula. Student code is reached only
through `t.run` (in `Suite.check_values`, `check_expression`, `check_matrix` or here); every
reference is computed outside it, from the test's own values.
"""
from __future__ import annotations

import numpy as np
import sympy

from course_lib.checks.core import GradeError, assert_close
from course_lib.checks.sympy import check_expression, check_matrix

LARGE_X = 40.0          # |x| from which an activation's naive formula may overflow
LARGE_LOGIT = 100.0     # |z| from which a naive softmax overflows


def _text(entry, explain):
    """A message given as one text for both tests, or as (nudge, explanation)."""
    return entry if isinstance(entry, str) else entry[bool(explain)]


# ---- Exercise 1: central_difference ---------------------------------------------------------

# (the wrong estimate of f'(x), its message: one text, or (nudge, explanation))
FD_MISTAKES = [
    (lambda f, x, h: (f(x + h) - f(x)) / h,
     ("this is the one-sided (forward) difference; a central difference steps h to each side "
      "of x, so its error shrinks like h**2 instead of h.",
      "this is the one-sided (forward) difference (f(x+h) - f(x)) / h; use the central "
      "difference (f(x+h) - f(x-h)) / (2h), whose error shrinks like h**2 instead of h.")),
    (lambda f, x, h: (f(x) - f(x - h)) / h,
     ("this is the one-sided (backward) difference; use the central difference, a step h to "
      "each side of x.",
      "this is the one-sided (backward) difference (f(x) - f(x-h)) / h; use the central "
      "difference (f(x+h) - f(x-h)) / (2h).")),
    (lambda f, x, h: (f(x + h) - f(x - h)) / h,
     "the points x - h and x + h are 2h apart: divide by 2*h, not by h."),
    (lambda f, x, h: (f(x + h) - f(x - h)) / (4 * h),
     "the points x - h and x + h are 2h apart: divide by 2*h (you divided by 4h)."),
]
FD_HINT = ("compare f one step h to the right of x with f one step h to the left: the central "
           "difference.",
           "the central difference is (f(x + h) - f(x - h)) / (2 * h).")
DEFAULT_H = 1e-5


def fd_mistake(got: float, f, x: float, h: float, explain=False) -> str:
    """What a wrong central difference `got` of f at x (step h) looks like: a known mistake's
    message, else the exercise's hint."""
    usual = [(wrong(f, x, h), _text(message, explain)) for wrong, message in FD_MISTAKES]
    if h != DEFAULT_H:
        usual.append((wrong_step(f, x), f"use the step h that is passed in (here h = {h:g}), "
                                        "not a fixed 1e-5."))
    for value, message in usual:
        if abs(got - value) <= 1e-8 * abs(value) + 1e-10:
            return message
    return _text(FD_HINT, explain)


def wrong_step(f, x):
    """The central difference with the default step, whatever step was asked for."""
    return (f(x + DEFAULT_H) - f(x - DEFAULT_H)) / (2 * DEFAULT_H)


def check_central_difference(t, central_difference, name, f, x, exact, *, h=None,
                             explain=False):
    """central_difference(f, x) (or with h=h) must be `exact` (rtol 1e-6, atol 1e-8); `name`
    is how messages show f (e.g. "np.sin"). f stays here: the learner's code calls it back."""
    what = f"central_difference({name}, {x:.6g}" + (f", h={h:g})" if h is not None else ")")
    call = (lambda: central_difference(f, x)) if h is None else \
        (lambda: central_difference(f, x, h=h))
    got = t.run(call, central_difference, label=what)
    try:
        assert_close(got, exact, what=what, rtol=1e-6, atol=1e-8)
    except GradeError:
        value = _finite_number(got)
        if value is None:
            raise                             # not a number, a wrong shape, nan: as reported
        reason = fd_mistake(value, f, x, DEFAULT_H if h is None else h, explain)
        raise GradeError(f"{what}: expected {exact:.10g}, got {value:.10g}. Hint: "
                         f"{reason}") from None


def _finite_number(got):
    """`got` as a finite float when it is one number (0-d), else None."""
    try:
        value = float(got) if np.ndim(got) == 0 and not isinstance(got, (str, bool)) else None
    except (TypeError, ValueError):
        return None
    return value if value is not None and np.isfinite(value) else None


# ---- Exercise 2: the chain-rule factors of y = sin(x**2) * exp(3x) (sympy) ---------------------

X, U, V = sympy.symbols("x u v")
LOCAL_SYMBOLS_HINT = ("a local derivative treats u and v as the variables: differentiate "
                      "y_of_uv = sin(u)*exp(v) and leave the result in u and v (substitute x "
                      "only in dy_dx).")


def check_du_dx(t, answer, *, domain):
    """du_dx for u = x**2, in x."""
    check_expression(t, answer, 2 * X, [X], "du_dx", domain=domain,
                     hint="du_dx is the derivative of u_of_x with respect to x: let sympy "
                          "differentiate it.",
                     symbols_hint="du_dx is the derivative of u = x**2 with respect to x.")


def check_dy_du(t, answer, *, domain):
    """dy_du for y = sin(u) * exp(v), in u and v."""
    check_expression(
        t, answer, sympy.cos(U) * sympy.exp(V), [U, V], "dy_du", domain=domain,
        mistakes=[(sympy.cos(U), "exp(v) is a constant factor when you differentiate with "
                                 "respect to u: it stays in the result."),
                  (-sympy.cos(U) * sympy.exp(V), "d/du sin(u) = +cos(u).")],
        symbols_hint=LOCAL_SYMBOLS_HINT)


def check_dy_dv(t, answer, *, domain):
    """dy_dv for y = sin(u) * exp(v), in u and v."""
    check_expression(
        t, answer, sympy.sin(U) * sympy.exp(V), [U, V], "dy_dv", domain=domain,
        mistakes=[(3 * sympy.sin(U) * sympy.exp(V), "dy_dv is the LOCAL derivative of "
                   "sin(u)*exp(v) with respect to v; the 3 is dv/dx and belongs to the path "
                   "in dy_dx."),
                  (sympy.cos(U) * sympy.exp(V), "this is dy_du; with respect to v, sin(u) is "
                   "the constant factor.")],
        symbols_hint=LOCAL_SYMBOLS_HINT)


def dy_dx_mistakes(explain=False):
    """(wrong dy_dx, message) for the usual slips on the two paths from x to y."""
    s, c, e = sympy.sin(X**2), sympy.cos(X**2), sympy.exp(3 * X)
    table = [
        (c * e + 3 * s * e, (
            "the path through u lost its inner derivative: the chain rule multiplies by du/dx "
            "too.",
            "the path through u = x**2 lost its inner derivative: d/dx sin(x**2) = "
            "2x*cos(x**2), not cos(x**2).")),
        (2 * X * c * e + s * e, "the path through v = 3x lost its inner derivative: d/dx "
                                "exp(3x) = 3*exp(3x)."),
        (c * e + s * e, (
            "both paths lost their inner derivatives: multiply each path by the derivative of "
            "its inner function.",
            "both paths lost their inner derivatives (du/dx = 2x, dv/dx = 3).")),
        (2 * X * c * e, "only the path through u: y also depends on x through v = 3x; add "
                        "dy_dv * dv_dx."),
        (3 * s * e, "only the path through v: add the path through u, dy_du * du_dx."),
        ((2 * X * c * e) * (3 * s * e), "you multiplied the two paths; the multivariate chain "
         "rule MULTIPLIES along a path and ADDS the contributions of the paths."),
    ]
    return [(wrong, _text(message, explain)) for wrong, message in table]


DY_DX_HINT = ("the multivariable chain rule: one term per path from x to y (through u and "
              "through v), then substitute u and v.",
              "dy/dx = dy_du * du_dx + dy_dv * dv_dx, then substitute u = x**2, v = 3x.")


DY_DX = (2 * X * sympy.cos(X**2) + 3 * sympy.sin(X**2)) * sympy.exp(3 * X)


def check_dy_dx(t, answer, *, domain, points, explain=False):
    """dy_dx for y = sin(x**2) * exp(3x), in x only."""
    check_expression(t, answer, DY_DX, [X], "dy_dx", domain=domain,
                     points=points, mistakes=dy_dx_mistakes(explain),
                     hint=_text(DY_DX_HINT, explain),
                     symbols_hint="substitute u = x**2 and v = 3*x (e.g. expr.subs({u: "
                                  "u_of_x, v: v_of_x})) so that dy_dx depends on x only.")


# ---- Exercises 3 and 4: sigmoid_grad, tanh_grad ----------------------------------------------

# torch's activation -> (the visible test's nudge, the hidden test's rule)
ACTIVATION_HINTS = {
    "sigmoid": ("write the derivative with s = sigmoid(x) itself: it is s times one more "
                "factor.",
                "sigmoid'(x) = s * (1 - s) with s = sigmoid(x) = 1 / (1 + exp(-x))."),
    "tanh": ("write the derivative with tanh(x) itself: there is a square in it.",
             "tanh'(x) = 1 - tanh(x)**2 (note the square)."),
}


def torch_derivative(activation: str):
    """The course's reference: the elementwise derivative of torch.<activation>, in float64."""
    import torch
    fn = getattr(torch, activation)

    def derivative(x):
        xt = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
        (d,) = torch.autograd.grad(fn(xt).sum(), xt)
        return d.numpy()
    return derivative


def large_inputs(t):
    """20 inputs up to |x| = 1000, where exp overflows: 8 fixed ones and 12 random."""
    fixed = [-1000.0, -800.0, -710.0, -40.0, 40.0, 710.0, 800.0, 1000.0]
    return np.concatenate([fixed, t.uniform(-1000, 1000, 12)])


def _at(x):
    """How a message names the inputs: plain, or large (where the formula must not overflow)."""
    if x.size == 0 or np.abs(x).max() < LARGE_X:
        return "result"
    if x.ndim == 0:
        return f"result at x = {float(x):g} (0-d)"
    return f"result at large |x| (up to {np.abs(x).max():g})"


def check_activation_grad(t, grad_fn, activation, x, *, explain=False):
    """grad_fn(x) must be torch.<activation>'s derivative at x, shape and values, x unchanged.
    At large |x| a wrong value is told as overflow, not with the exercise's hint."""
    x = np.asarray(x, dtype=np.float64)
    what = _at(x)
    hint = _text(ACTIVATION_HINTS[activation], explain) if what == "result" else None
    t.check_values(grad_fn, torch_derivative(activation), (x,), what=what, hint=hint)


# ---- Exercise 5: the Jacobian J_f (sympy) ------------------------------------------------------

R, THETA = sympy.symbols("r theta")


def check_J_f(t, answer, *, points):
    """J_f of f(r, theta) = (r cos(theta), r sin(theta), r**2), shape (3, 2), in r and theta."""
    f = sympy.Matrix([R * sympy.cos(THETA), R * sympy.sin(THETA), R**2])
    wrong_sign = f.jacobian([R, THETA])
    wrong_sign[0, 1] = R * sympy.sin(THETA)
    check_matrix(
        t, answer, f.jacobian([R, THETA]), [R, THETA], "J_f", points=points,
        domain={"r": (0.2, 3.0), "theta": (-3.1, 3.1)},
        mistakes=[(wrong_sign, "d/dtheta r*cos(theta) = -r*sin(theta).")],
        order_hint="column 0 holds the derivatives with respect to r, column 1 those with "
                   "respect to theta: pass [r, theta] to .jacobian, in that order.",
        hint="J_f[i, j] is the derivative of output i with respect to input j.")


# ---- Exercise 6: softmax_ce_grad --------------------------------------------------------------

SOFTMAX_CE_HINT = ("differentiate through the softmax: for each class the gradient compares "
                   "the predicted probability with the label.",
                   "the gradient of -sum(y * log(softmax(z))) is p - y with p = softmax(z).")


def torch_softmax_ce_grad(z, y):
    """The course's reference: torch autograd of -sum(y * log_softmax(z)), float64."""
    import torch
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    loss = -(torch.tensor(y, dtype=torch.float64) * torch.log_softmax(zt, dim=0)).sum()
    (grad,) = torch.autograd.grad(loss, zt)
    return grad.numpy()


def targets(t, k):
    """Two targets for k classes, drawn from the suite: a one-hot and a probability vector."""
    w = t.uniform(0.05, 1.0, k)
    return [np.eye(k)[t.labels(1, k)[0]], w / w.sum()]


def check_softmax_ce_grad(t, softmax_ce_grad, z, y, *, explain=False):
    """softmax_ce_grad(z, y) must be torch's gradient, z and y unchanged. For large logits a
    wrong value is told as overflow, not with the exercise's hint."""
    z, y = np.asarray(z, dtype=np.float64), np.asarray(y, dtype=np.float64)
    kind = "one-hot y" if np.all((y == 0) | (y == 1)) else "probability vector y"
    biggest = float(np.abs(z).max())
    large = biggest >= LARGE_LOGIT
    what = (f"result for large logits (|z| up to {biggest:g}), {kind}" if large else
            f"result for K = {z.size}, {kind}")
    t.check_values(softmax_ce_grad, torch_softmax_ce_grad, (z, y), what=what,
                   hint=None if large else _text(SOFTMAX_CE_HINT, explain))
