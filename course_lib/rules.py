"""THE table of ops: one row per op the course teaches, read by the reference engine
(`course_lib.engine`), by the checks of notebook 04 (`course_lib.checks.engine`) and by the tests.

A row (`Op`) says how the op is written (`text`, and `apply` on anything with the Tensor API: a
student's Tensor or a torch tensor), its torch twin, the domain of its inputs and, per input,
the hint a student gets for the usual mistake in its gradient. A primitive of the reference
engine also has a numpy forward (by default `apply`, which numpy arrays often understand) and,
registered with `defvjp` on the line after it (as in HIPS autograd), one vector-Jacobian
product per input, called as

    rule(g, out, *inputs, **params) -> gradient for that one input

where `g` is the upstream gradient (same shape as `out`), `out` the op's output, `inputs` the
arrays (or numbers) the forward pass used and `params` its keyword options (`axis`...). The
result always has the shape of the input it belongs to; `None` marks an input (an exponent)
that is never differentiated.

Forward mode (notebook 06) reads the twin table: `defjvp`, on the line after `defvjp`, gives
one Jacobian-vector product per input, called as

    jvp(dx, out, *inputs, **params) -> the tangent of out caused by that input's tangent dx

with `dx` of the input's shape and a result of `out`'s shape (so the JVP of broadcasting is
broadcasting, the adjoint of `unbroadcast`). An op's output tangent is the sum over its inputs.

Subtraction, division, mean and `.T` have rows but no rules: the engine builds them from the
primitives. The table imports no torch: a twin only calls methods of the tensors it is given.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Op:
    """One op: how it is written and checked and, for a primitive, how it is differentiated."""

    name: str
    text: str | Callable[..., str]  # how a student writes it: "x * y", or a function of params
    apply: Callable                 # the op on Tensor-like inputs: (*inputs, **params) -> out
    hints: dict[str, str]           # input name -> hint for that input's gradient
    torch: Callable | None = None   # the torch twin, called like `apply` (None: `apply` itself)
    domain: dict[int, str] = field(default_factory=dict)  # input -> "positive", "away"...
    forward: Callable | None = None  # numpy forward of a primitive (None: `apply`)
    rules: tuple = ()               # one vjp per input (None: not differentiated); () composed
    jvps: tuple = ()                # one jvp per input (forward mode), the twins of `rules`

    @property
    def inputs(self) -> tuple[str, ...]:
        """The names of the inputs a check draws (the params, like `p` of pow, are not)."""
        return tuple(self.hints)

    def describe(self, **params) -> str:
        """`x.sum(axis=1)`: the op as written with these params."""
        return self.text(**params) if callable(self.text) else self.text

    def twin(self, *args, **params):
        """The same op on torch tensors."""
        return (self.torch or self.apply)(*args, **params)


OPS: dict[str, Op] = {}


def defop(name: str, text, apply: Callable, **fields) -> None:
    """Add the row of op `name` (see `Op` for the fields)."""
    OPS[name] = Op(name, text, apply, **fields)


def defvjp(name: str, *rules: Callable | None) -> None:
    """Make `name` a primitive of the reference engine, with `rules` (one per input)."""
    op = OPS[name]
    OPS[name] = replace(op, rules=rules, forward=op.forward or op.apply)


def defjvp(name: str, *jvps: Callable | None) -> None:
    """Give primitive `name` its forward-mode rules, one per input (the twins of its vjps)."""
    op = OPS[name]
    if not op.rules:
        raise ValueError(f"{name!r} is not a primitive: give it its vjps (defvjp) first")
    OPS[name] = replace(op, jvps=jvps)


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


def sigmoid_forward(x):
    """1 / (1 + e**-x), computed with e**-|x| only, so no overflow even at |x| = 1000."""
    x = np.asarray(x, dtype=np.float64)
    z = np.exp(-np.abs(x))  # in (0, 1]: cannot overflow
    return np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z))


def matmul_forward(x, y):
    """x @ y for 2-D x (n, k) and y (k, m) (the rules use .T)."""
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"matmul takes 2-D arrays (the rules use .T), got {x.shape} @ {y.shape}")
    return x @ y


def reduce(x, method, axis=None, keepdims=False):
    """x.sum(...) or x.mean(...), passing only the arguments that differ from the defaults."""
    if axis is None and not keepdims:
        return getattr(x, method)()
    if not keepdims:
        return getattr(x, method)(axis=axis)
    return getattr(x, method)(axis=axis, keepdims=keepdims)


def torch_reduce(x, method, axis=None, keepdims=False):
    """The same reduction on a torch tensor (dim=, keepdim=; dim=() would mean all axes too)."""
    if x.ndim == 0:
        return getattr(x, method)()
    return getattr(x, method)(dim=tuple(range(x.ndim)) if axis is None else axis, keepdim=keepdims)


def reduce_text(method, axis=None, keepdims=False):
    args = [] if axis is None else [f"axis={axis!r}"]
    return f"x.{method}({', '.join(args + (['keepdims=True'] if keepdims else []))})"


def expand(g, axis, keepdims):
    """g with the axes a reduction removed given back with size 1 (np.expand_dims)."""
    return g if axis is None or keepdims else np.expand_dims(g, axis)


def reverse_axes(x):
    """A torch tensor's axes reversed, as numpy's x.T (torch's .T is for 2-D only)."""
    return x.permute(tuple(reversed(range(x.ndim))))


# ---------------------------------------------------------------- elementwise binary ops

defop("add", "x + y", lambda x, y: x + y, hints={
    "x": "for out = x + y, dL/dx = unbroadcast(g, x.shape): g summed over the axes where x was "
         "broadcast.",
    "y": "for out = x + y, dL/dy = unbroadcast(g, y.shape): g summed over the axes where y was "
         "broadcast."})
defvjp("add", lambda g, out, x, y: unbroadcast(g, x.shape),
              lambda g, out, x, y: unbroadcast(g, y.shape))
defjvp("add", lambda dx, out, x, y: np.broadcast_to(dx, out.shape),
              lambda dy, out, x, y: np.broadcast_to(dy, out.shape))

defop("sub", "x - y", lambda x, y: x - y, hints={
    "x": "for out = x - y, dL/dx = unbroadcast(g, x.shape).",
    "y": "for out = x - y, dL/dy = -unbroadcast(g, y.shape) (note the minus sign)."})

defop("mul", "x * y", lambda x, y: x * y, hints={
    "x": "for out = x * y, dL/dx = unbroadcast(g * y, x.shape).",
    "y": "for out = x * y, dL/dy = unbroadcast(g * x, y.shape)."})
defvjp("mul", lambda g, out, x, y: unbroadcast(g * y, x.shape),
              lambda g, out, x, y: unbroadcast(g * x, y.shape))
defjvp("mul", lambda dx, out, x, y: np.broadcast_to(dx * y, out.shape),
              lambda dy, out, x, y: np.broadcast_to(x * dy, out.shape))

defop("truediv", "x / y", lambda x, y: x / y, domain={1: "denominator"}, hints={
    "x": "for out = x / y, dL/dx = unbroadcast(g / y, x.shape).",
    "y": "for out = x / y, d(x/y)/dy = -x / y**2 (a minus sign AND a square), so "
         "dL/dy = unbroadcast(-g * x / y**2, y.shape)."})

defop("matmul", "x @ y", lambda x, y: x @ y, forward=matmul_forward, hints={
    "x": "for out = x @ y with x (n, k), y (k, m) and g (n, m): dL/dx = g @ y.T, of shape (n, k).",
    "y": "for out = x @ y with x (n, k), y (k, m) and g (n, m): dL/dy = x.T @ g, of shape (k, m)."})
defvjp("matmul", lambda g, out, x, y: g @ y.T,
                 lambda g, out, x, y: x.T @ g)
defjvp("matmul", lambda dx, out, x, y: dx @ y,
                 lambda dy, out, x, y: x @ dy)

# ---------------------------------------------------------------- elementwise unary ops

defop("neg", "-x", lambda x: -x, hints={"x": "d(-x)/dx = -1: return -g."})
defvjp("neg", lambda g, out, x: -g)
defjvp("neg", lambda dx, out, x: -dx)

defop("pow", lambda p: f"x ** {p!r}", lambda x, p: x ** p, hints={
    "x": "d(x**p)/dx = p * x**(p - 1): dL/dx = g * p * x**(p - 1)."})
defvjp("pow", lambda g, out, x, p: g * p * x ** (p - 1), None)  # p is a plain number
defjvp("pow", lambda dx, out, x, p: dx * p * x ** (p - 1), None)

defop("exp", "x.exp()", lambda x: x.exp(), forward=np.exp, hints={
    "x": "d(e**x)/dx = e**x, the output itself: dL/dx = g * out."})
defvjp("exp", lambda g, out, x: g * out)
defjvp("exp", lambda dx, out, x: dx * out)

defop("log", "x.log()", lambda x: x.log(), forward=np.log, domain={0: "positive"}, hints={
    "x": "d(log x)/dx = 1 / x: dL/dx = g / x."})
defvjp("log", lambda g, out, x: g / x)
defjvp("log", lambda dx, out, x: dx / x)

defop("relu", "x.relu()", lambda x: x.relu(), forward=lambda x: np.maximum(x, 0.0),
      domain={0: "away"}, hints={
          "x": "d relu(x)/dx = 1 where x > 0 and 0 elsewhere: dL/dx = g * (x > 0)."})
defvjp("relu", lambda g, out, x: g * (out > 0))
defjvp("relu", lambda dx, out, x: dx * (out > 0))

defop("sigmoid", "x.sigmoid()", lambda x: x.sigmoid(), forward=sigmoid_forward, hints={
    "x": "d sigmoid(x)/dx = s * (1 - s) with s = sigmoid(x); compute s without overflow, e.g. "
         "s = 0.5 * (1 + tanh(x / 2))."})
defvjp("sigmoid", lambda g, out, x: g * out * (1.0 - out))
defjvp("sigmoid", lambda dx, out, x: dx * out * (1.0 - out))

defop("tanh", "x.tanh()", lambda x: x.tanh(), forward=np.tanh, hints={
    "x": "d tanh(x)/dx = 1 - tanh(x)**2: dL/dx = g * (1 - out**2)."})
defvjp("tanh", lambda g, out, x: g * (1.0 - out * out))
defjvp("tanh", lambda dx, out, x: dx * (1.0 - out * out))

# ---------------------------------------------------------------- reductions and shapes

defop("sum", lambda axis=None, keepdims=False: reduce_text("sum", axis, keepdims),
      lambda x, axis=None, keepdims=False: reduce(x, "sum", axis, keepdims),
      torch=lambda x, axis=None, keepdims=False: torch_reduce(x, "sum", axis, keepdims), hints={
          "x": "each input element is added once into the sum, so dL/dx copies g back along the "
               "summed axes: when keepdims=False, first give g back the summed axes with size 1 "
               "(np.expand_dims(g, axis); axis may be an int, a negative int, a tuple or None), "
               "then broadcast it to x.shape."})
defvjp("sum", lambda g, out, x, axis=None, keepdims=False:
       np.full(x.shape, expand(g, axis, keepdims)))
defjvp("sum", lambda dx, out, x, axis=None, keepdims=False: reduce(dx, "sum", axis, keepdims))

defop("mean", lambda axis=None, keepdims=False: reduce_text("mean", axis, keepdims),
      lambda x, axis=None, keepdims=False: reduce(x, "mean", axis, keepdims),
      torch=lambda x, axis=None, keepdims=False: torch_reduce(x, "mean", axis, keepdims), hints={
          "x": "mean = sum / n, where n is how many elements each output averages (the product "
               "of the reduced axes' sizes): dL/dx is the gradient of sum divided by n."})

defop("reshape", lambda shape, style="args": (f"x.reshape{tuple(shape)!r}" if style == "args"
                                             else f"x.reshape({tuple(shape)!r})"),
      lambda x, shape, style="args": (x.reshape(*shape) if style == "args"
                                      else x.reshape(tuple(shape))),
      torch=lambda x, shape, style="args": x.reshape(tuple(shape)),
      forward=lambda x, shape: np.reshape(x, shape), hints={
          "x": "reshape moves no value: dL/dx = g.reshape(x.shape). Accept both reshape(2, 3) "
               "and reshape((2, 3)), with -1 for one axis."})
defvjp("reshape", lambda g, out, x, shape: g.reshape(x.shape))
defjvp("reshape", lambda dx, out, x, shape: dx.reshape(out.shape))

defop("transpose", "x.transpose()", lambda x: x.transpose(), torch=reverse_axes, hints={
    "x": "x.T moves x[i, j] to out[j, i], so dL/dx = g.T."})
defvjp("transpose", lambda g, out, x: g.T)
defjvp("transpose", lambda dx, out, x: dx.T)

defop("T", "x.T", lambda x: x.T, torch=reverse_axes, hints={
    "x": "x.T moves x[i, j] to out[j, i], so dL/dx = g.T."})


# ---------------------------------------------------------------- what the engine reads

PRIMITIVES: dict[str, Callable] = {op.name: op.forward for op in OPS.values() if op.rules}
RULES: dict[tuple[str, int], Callable] = {
    (op.name, i): rule for op in OPS.values() for i, rule in enumerate(op.rules) if rule}
JVPS: dict[tuple[str, int], Callable] = {
    (op.name, i): rule for op in OPS.values() for i, rule in enumerate(op.jvps) if rule}


def get_rule(op: str, argnum: int) -> Callable:
    """The rule for input `argnum` of `op`; NotImplementedError if the table has none."""
    try:
        return RULES[op, argnum]
    except KeyError:
        raise NotImplementedError(
            f"no gradient rule for input {argnum} of {op!r}{_describe(op, argnum)}"
        ) from None


def _describe(op: str, argnum: int) -> str:
    """' (the p)': the input's name, read from the forward function's signature."""
    if op not in PRIMITIVES:
        return " (no such primitive)"
    names = list(inspect.signature(PRIMITIVES[op]).parameters)
    return f" (the {names[argnum]})" if argnum < len(names) else " (no such input)"
