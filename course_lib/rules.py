"""THE table of gradient rules: one vector-Jacobian product per (op, differentiable input).

Each primitive op has a numpy forward function in `PRIMITIVES` and, for every input we can
differentiate with respect to, one rule in `RULES` (the style of HIPS autograd's `defvjp`
and JAX's Autodidax). A rule is called as

    rule(g, out, *inputs, **params) -> gradient for that one input

where `g` is the upstream gradient (same shape as `out`), `out` the op's output, `inputs`
the arrays (or numbers) the forward pass used and `params` its keyword options (`axis`...).
The result always has the shape of the input it belongs to.

Subtraction, division, mean, softmax and cross-entropy are not here: the engine builds them
from these primitives, so they need no rules of their own.
"""
from __future__ import annotations

import inspect
from typing import Callable

import numpy as np

from course_lib import ops

PRIMITIVES: dict[str, Callable] = {}  # op name -> numpy forward function
RULES: dict[tuple[str, int], Callable] = {}  # (op name, input index) -> gradient rule


def defprimitive(op: str, forward: Callable) -> None:
    """Register the numpy forward function of primitive `op`."""
    PRIMITIVES[op] = forward


def defrule(op: str, argnum: int, rule: Callable) -> None:
    """Register the gradient rule of input `argnum` of primitive `op`."""
    RULES[op, argnum] = rule


def get_rule(op: str, argnum: int) -> Callable:
    """The rule for input `argnum` of `op`; NotImplementedError if the table has none."""
    try:
        return RULES[op, argnum]
    except KeyError:
        raise NotImplementedError(
            f"no gradient rule for input {argnum} of {op!r}{_describe(op, argnum)}"
        ) from None


def _describe(op: str, argnum: int) -> str:
    """' (the exponent)': the input's name, read from the forward function's signature."""
    if op not in PRIMITIVES:
        return " (no such primitive)"
    names = list(inspect.signature(PRIMITIVES[op]).parameters)
    return f" (the {names[argnum]})" if argnum < len(names) else " (no such input)"


def unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum g down to `shape`, undoing numpy broadcasting (the adjoint of np.broadcast_to).

    Broadcasting copies an input along the axes numpy prepends and along its size-1 axes,
    so the input's gradient is g summed over those axes. (Summing an axis where g too has
    size 1 changes nothing, so all size-1 axes of `shape` can go in.)
    """
    if g.shape == shape:
        return g  # the common case: nothing was broadcast
    lead = g.ndim - len(shape)
    size1 = tuple(lead + i for i, n in enumerate(shape) if n == 1)
    return g.sum(axis=tuple(range(lead)) + size1, keepdims=True).reshape(shape)


# ---------------------------------------------------------------- elementwise binary ops

def add_forward(x, y):
    """x + y"""
    return x + y
defprimitive("add", add_forward)

def add_rule_x(g, out, x, y):
    """d(x+y)/dx = 1"""
    return unbroadcast(g, x.shape)
defrule("add", 0, add_rule_x)

def add_rule_y(g, out, x, y):
    """d(x+y)/dy = 1"""
    return unbroadcast(g, y.shape)
defrule("add", 1, add_rule_y)


def mul_forward(x, y):
    """x * y"""
    return x * y
defprimitive("mul", mul_forward)

def mul_rule_x(g, out, x, y):
    """d(x*y)/dx = y"""
    return unbroadcast(g * y, x.shape)
defrule("mul", 0, mul_rule_x)

def mul_rule_y(g, out, x, y):
    """d(x*y)/dy = x"""
    return unbroadcast(g * x, y.shape)
defrule("mul", 1, mul_rule_y)


def pow_forward(x, exponent):
    """x**p, p = exponent: a number"""
    return x**exponent
defprimitive("pow", pow_forward)

def pow_rule_x(g, out, x, exponent):
    """d(x**p)/dx = p * x**(p-1)"""
    return g * exponent * x ** (exponent - 1)
defrule("pow", 0, pow_rule_x)
# No rule for input 1: the exponent is a plain number, not something we differentiate.


# ---------------------------------------------------------------- elementwise unary ops

def neg_forward(x):
    """-x"""
    return -x
defprimitive("neg", neg_forward)

def neg_rule_x(g, out, x):
    """d(-x)/dx = -1"""
    return -g
defrule("neg", 0, neg_rule_x)


def exp_forward(x):
    """e**x"""
    return np.exp(x)
defprimitive("exp", exp_forward)

def exp_rule_x(g, out, x):
    """d(e**x)/dx = e**x = out"""
    return g * out
defrule("exp", 0, exp_rule_x)


def log_forward(x):
    """ln x"""
    return np.log(x)
defprimitive("log", log_forward)

def log_rule_x(g, out, x):
    """d(ln x)/dx = 1/x"""
    return g / x
defrule("log", 0, log_rule_x)


def relu_forward(x):
    """max(x, 0)"""
    return np.maximum(x, 0.0)
defprimitive("relu", relu_forward)

def relu_rule_x(g, out, x):
    """d relu(x)/dx = 1 where x > 0, else 0"""
    return g * (out > 0)
defrule("relu", 0, relu_rule_x)


def sigmoid_forward(x):
    """1 / (1 + e**-x)"""
    return ops.sigmoid_forward(x)  # the overflow-free version shared with ops.py
defprimitive("sigmoid", sigmoid_forward)

def sigmoid_rule_x(g, out, x):
    """d sigmoid(x)/dx = out * (1 - out)"""
    return g * out * (1.0 - out)
defrule("sigmoid", 0, sigmoid_rule_x)


def tanh_forward(x):
    """tanh x"""
    return np.tanh(x)
defprimitive("tanh", tanh_forward)

def tanh_rule_x(g, out, x):
    """d tanh(x)/dx = 1 - out**2"""
    return g * (1.0 - out * out)
defrule("tanh", 0, tanh_rule_x)


# ---------------------------------------------------------------- matrices and shapes

def matmul_forward(x, y):
    """x @ y for 2-D x (n, k) and y (k, m)"""
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"matmul takes 2-D arrays (the rules use .T), got {x.shape} @ {y.shape}")
    return x @ y
defprimitive("matmul", matmul_forward)

def matmul_rule_x(g, out, x, y):
    """d(x@y)/dx: g @ y.T"""
    return g @ y.T
defrule("matmul", 0, matmul_rule_x)

def matmul_rule_y(g, out, x, y):
    """d(x@y)/dy: x.T @ g"""
    return x.T @ g
defrule("matmul", 1, matmul_rule_y)


def sum_forward(x, axis=None, keepdims=False):
    """sum of x over `axis` (None: all axes; an int or a tuple of ints)"""
    return x.sum(axis=axis, keepdims=keepdims)
defprimitive("sum", sum_forward)

def sum_rule_x(g, out, x, axis=None, keepdims=False):
    """d(sum x)/dx = 1: each element of x gets the g of the sum it went into"""
    if axis is not None and not keepdims:
        g = np.expand_dims(g, axis)  # the summed axes come back with size 1 ...
    return np.full(x.shape, g)  # ... and g is copied along them
defrule("sum", 0, sum_rule_x)


def reshape_forward(x, shape):
    """x with a new shape, same elements in the same (C) order"""
    return np.reshape(x, shape)
defprimitive("reshape", reshape_forward)

def reshape_rule_x(g, out, x, shape):
    """reshape moves no element: give g the input's shape back"""
    return g.reshape(x.shape)
defrule("reshape", 0, reshape_rule_x)


def transpose_forward(x):
    """x.T (axes reversed)"""
    return np.transpose(x)
defprimitive("transpose", transpose_forward)

def transpose_rule_x(g, out, x):
    """transpose moves x[i, j] to out[j, i]: move g[j, i] back"""
    return np.transpose(g)
defrule("transpose", 0, transpose_rule_x)
