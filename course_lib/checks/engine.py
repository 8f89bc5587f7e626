"""Probes for a student's autodiff engine (notebook 04), compared with torch in float64.

A probe draws its inputs from the suite `t` (so the kernel and the grader draw the same
numbers), then hands `t.run` a thunk that builds the student's Tensors from those inputs,
applies an expression, calls `backward(g)` with a random cotangent and returns plain data
(`out.data`, `out.shape`, every leaf's `.grad`). The comparison with torch happens outside
`t.run`, so under `course grade` it is recomputed by the trusted grader from that data.

    from course_lib.checks import suite
    from course_lib.checks import engine as E

    with suite("test_Tensor_hidden") as t:
        E.check_broadcasting(t, Tensor, "mul")
        E.check_deep_chain(t, Tensor, n=100_000)

Probes use only the public API of notebook 04: `Tensor(data, requires_grad=False)`, `.data`,
`.grad`, `.shape`, `.requires_grad`, `backward(grad=None)`, the operators `+ - * / @ **` and
unary `-`, the methods `sum mean exp log relu sigmoid tanh reshape transpose` and `.T`,
`cross_entropy(logits, labels)`, `Linear(in_features, out_features)` (`.W`, `.b`,
`parameters()`) and `sgd_step(params, lr)`.

Errors raised by the student's code are caught inside the thunk and reported with the line of
notebook code that raised and a hint for the op at hand (a RecursionError explains why the
topological sort must use a stack). The thunks never draw random numbers: everything random
is drawn before `t.run`, in the same order in the kernel and in the grader.
"""
from __future__ import annotations

import contextlib
import gc
import sys

import numpy as np

from course_lib import guard
from course_lib.channel.kernel import describe_exception
from course_lib.channel.proxy import StudentError
from course_lib.checks.core import (ATOL, RTOL, GradeError, assert_close, student_side,
                                    torch_reference)
from course_lib.rules import OPS, unbroadcast

__all__ = [
    "FIXED_PAIRS", "broadcast_pair", "sum_to_shape",
    "check_tensors", "check_op", "check_broadcasting", "check_construction",
    "check_requires_grad", "check_leaf_rule", "check_reuse", "check_accumulation",
    "check_default_backward", "check_topological_order", "check_grad_out_of_place",
    "check_grad_shape",
    "check_deep_chain", "check_cross_entropy", "check_linear", "check_sgd_step",
    "check_training", "STEPS", "probe_step", "building_on",
]

KIND_TEXT = {
    "tensor": "a Tensor with requires_grad=True",
    "const": "a Tensor with requires_grad=False",
    "array": "a numpy array",
    "number": "a Python float",
    "labels": "an int64 array of labels",
}

ACCUMULATE = ("When a tensor feeds several ops, its gradient is the SUM of what each use sends "
              "back: add into what is already there (grads[p] = grads[p] + g), never overwrite.")

RECURSION = ("a recursive function went deeper than Python allows (sys.getrecursionlimit() is "
             "{limit}). A chain of many ops is a graph that deep: build the topological order "
             "with an explicit stack (a Python list you push to and pop from) instead of "
             "recursion, and do not recurse in backward() either.")


# ---- inputs ------------------------------------------------------------------------------------

FIXED_PAIRS = [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((2, 3), ()), ((), (2, 3)), ((4,), (3, 4)),
               ((3, 4), (4,)), ((2, 1, 3), (4, 1)), ((1, 1), (1,)), ((5, 1), (5, 2))]

_KIND_CYCLE = [("tensor", "tensor"), ("tensor", "array"), ("array", "tensor"),
               ("const", "tensor"), ("tensor", "const"), ("tensor", "tensor")]


def broadcast_pair(t, max_dims=3, max_side=4):
    """Two shapes numpy broadcasts together: missing leading axes, size-1 axes, `()`."""
    ndim = int(t.rng.integers(1, max_dims + 1))
    full = [int(s) for s in t.rng.integers(2, max_side + 1, ndim)]

    def part():
        k = int(t.rng.integers(0, ndim + 1))
        shape = full[ndim - k:]
        return tuple(1 if t.rng.random() < 0.35 else s for s in shape)

    return part(), part()


def sum_to_shape(g, shape):
    """`g` summed down to `shape` (unbroadcast, for test cells; refuses in graded code)."""
    guard.refuse("course_lib.checks.engine.sum_to_shape")
    return unbroadcast(np.array(g, dtype=np.float64), tuple(shape))


def _draw(t, shape, domain, scale=1.0):
    if domain == "positive":
        return t.uniform(0.5, 2.0, *shape)
    if domain == "denominator":
        return np.where(t.rng.random(shape) < 0.5, -1.0, 1.0) * t.uniform(0.5, 2.0, *shape)
    if domain == "away":
        return t.away_from_zero(*shape, margin=0.1, scale=scale)
    return t.randn(*shape, scale=scale)


# ---- running the student's code and describing what went wrong ----------------------------------

def _copy(value):
    if isinstance(value, (np.ndarray, np.generic)):
        return np.array(value, copy=True)
    return value


def _shape_of(obj):
    shape = getattr(obj, "shape")
    try:
        return tuple(int(n) for n in shape)
    except TypeError:
        return repr(shape)[:100]


def _flag(value):
    return bool(value) if isinstance(value, (bool, np.bool_)) else repr(value)[:100]


def _describe_exception(e):
    """`Type: first line (at line N: `code`)`, the innermost frame of notebook code."""
    error = e if isinstance(e, StudentError) else StudentError(describe_exception(e))
    text = error.describe()
    if isinstance(e, RecursionError):
        text = "RecursionError: " + RECURSION.format(limit=sys.getrecursionlimit()) + \
            f" [{text}]"
    return text


def _attempt(body):
    """Run the student's part; return its data, or {"error": description} if it raised."""
    try:
        return body()
    except Exception as e:  # noqa: BLE001 (anything the student's code raises is a verdict)
        return {"error": _describe_exception(e)}


def _check_error(label, got, hint=None):
    if isinstance(got, dict) and "error" in got:
        message = f"{label}: your code raised {got['error']}"
        if hint and "RecursionError" not in got["error"]:
            message += f" Hint: {hint}"
        raise GradeError(message)
    if not isinstance(got, dict):
        raise GradeError(f"{label}: unexpected result {got!r}.")


def _compare(received, expected, what, hint=None, context=None, rtol=RTOL, atol=ATOL):
    """assert_close, with the op's own hint added even when an automatic hint came first."""
    try:
        assert_close(received, expected, what=what, hint=hint, context=context,
                     rtol=rtol, atol=atol)
    except GradeError as e:
        message = str(e)
        if hint and hint not in message:
            message += (" Also: " if "Hint:" in message else " Hint: ") + hint
        raise GradeError(message) from None


def _grad_missing(label, name):
    return GradeError(
        f"{label}: {name}.grad is None after backward(), but the output depends on {name}. "
        f"Every tensor with requires_grad=True that the output depends on must receive a "
        "gradient: record the inputs of each op as its parents and walk all of them.")


# ---- the general probe: any expression of Tensors against the same expression in torch -------

def _describe_inputs(inputs):
    parts = []
    for name, kind, value in inputs:
        shape = np.shape(value)
        if kind == "number":
            parts.append(f"{name} = {float(value):.4g} ({KIND_TEXT[kind]})")
        else:
            parts.append(f"{name}: {KIND_TEXT[kind]} of shape {shape}")
    return "; ".join(parts)


def _torch_reference(t, torch_f, inputs, g):
    """torch's output, the cotangent and the gradients of the "tensor" inputs."""
    args = [float(v) if kind == "number" else np.asarray(v) if kind == "labels"
            else np.asarray(v, dtype=np.float64) for _, kind, v in inputs]
    wrt = [i for i, (_, kind, _) in enumerate(inputs) if kind == "tensor"]
    out, g, grads = torch_reference(torch_f, args, wrt, g, rng=t)
    return out, np.asarray(g, dtype=np.float64), grads


def _build(Tensor, inputs):
    args, leaves = [], []
    for _, kind, value in inputs:
        if kind == "tensor":
            x = Tensor(np.array(value, dtype=np.float64), requires_grad=True)
            leaves.append(x)
        elif kind == "const":
            x = Tensor(np.array(value, dtype=np.float64))
        elif kind == "number":
            x = float(value)
        else:
            x = np.array(value)
        args.append(x)
    return args, leaves


def _not_a_tensor(out):
    if isinstance(out, np.ndarray):
        return TypeError(
            "the result is a numpy array, not a Tensor: numpy computed `ndarray op Tensor` "
            "element by element itself. Put `__array_ufunc__ = None` in class Tensor so numpy "
            "hands such ops to Tensor's reflected methods (__radd__, __rmul__, __rmatmul__...).")
    if not hasattr(out, "backward") or not hasattr(out, "data"):
        return TypeError(f"the result is a {type(out).__name__}, not a Tensor: every op must "
                         "return a new Tensor (with .data, .backward...).")
    return None


def _forward_backward(Tensor, f, inputs, g):
    args, leaves = _build(Tensor, inputs)
    out = f(*args)
    problem = _not_a_tensor(out)
    if problem is not None:
        raise problem
    record = {"out": _copy(out.data), "shape": _shape_of(out),
              "requires_grad": _flag(getattr(out, "requires_grad", None))}
    try:
        out.backward(np.array(g, copy=True))
    except Exception as e:  # noqa: BLE001 (reported after the forward checks)
        record["backward_error"] = _describe_exception(e)
        return record
    record["grads"] = [_copy(x.grad) for x in leaves]
    return record


def op_forward_backward(Tensor, op, params, inputs, g):
    """(Where the Tensor lives) one op of `OPS` forward and backward: one request, not ten."""
    apply = OPS[op].apply
    return _attempt(lambda: _forward_backward(Tensor, lambda *a: apply(*a, **params),
                                              [tuple(i) for i in inputs], g))


def check_tensors(t, Tensor, f, torch_f, inputs, *, text, objects=(), hint=None, hints=None,
                  g=None, rtol=RTOL, atol=ATOL, op=None):
    """`f(*args)` on the student's Tensors against `torch_f(*args)` on torch float64 tensors.

    `inputs` is a list of `(name, kind, value)`; kind is "tensor" (requires grad: its `.grad`
    is checked), "const" (a Tensor without grad), "array", "number" or "labels" (passed as is).
    The output's `.data`, `.shape`, `.requires_grad` and, after `backward(g)` with a random
    cotangent `g`, every "tensor" input's `.grad` are compared. `hints` maps an input name to a
    hint for its gradient; `hint` is used for every message. `objects` are further student
    names the expression uses (e.g. `cross_entropy`): they too must be defined in the notebook.
    `op` = (name in `OPS`, params) runs `f` where the Tensor lives, in one request.
    """
    hints = hints or {}
    label = f"{text} (with {_describe_inputs(inputs)})"
    expected_out, g, expected = _torch_reference(t, torch_f, inputs, g)
    if op is None:
        body = lambda: _attempt(lambda: _forward_backward(Tensor, f, inputs, g))  # noqa: E731
    else:
        body = lambda: student_side(op_forward_backward, Tensor, op[0], op[1],  # noqa: E731
                                    [list(i) for i in inputs], g)
    got = t.run(body, Tensor, *objects, label=label)
    all_hints = hint or " ".join(dict.fromkeys(hints.values())) or None
    _check_error(label, got, all_hints)
    context = {name: value for name, kind, value in inputs if kind != "number"}
    _compare(got.get("out"), expected_out, f"{label}: the result's .data", hint=hint,
             context=context, rtol=rtol, atol=atol)
    if got.get("shape") != tuple(expected_out.shape):
        raise GradeError(f"{label}: the result's .shape is {got.get('shape')!r}, expected "
                         f"{tuple(expected_out.shape)}; .shape must be the shape of .data.")
    if got.get("requires_grad") is not True:
        raise GradeError(f"{label}: the result has requires_grad={got.get('requires_grad')}, "
                         "expected True: a result requires grad when any input does.")
    if "backward_error" in got:  # the forward pass was right; backward() raised
        _check_error(f"{label}, in out.backward(g)", {"error": got["backward_error"]}, all_hints)
    names = [name for name, kind, _ in inputs if kind == "tensor"]
    received = got.get("grads")
    if not isinstance(received, list) or len(received) != len(names):
        raise GradeError(f"{label}: could not read the inputs' .grad ({received!r}).")
    for name, r, e in zip(names, received, expected):
        if r is None:
            raise _grad_missing(label, name)
        _compare(r, e, f"{label}: {name}.grad after out.backward(g)",
                 hint=hints.get(name) or hint, context=context, rtol=rtol, atol=atol)


UNARY_OPS = ("exp", "log", "relu", "sigmoid", "tanh")


def check_unary_ops(t, Tensor, shape, ops=UNARY_OPS, **kwargs):
    """`check_op` for each of `ops` (default: step (b)'s functions) on one input of `shape`."""
    for op in ops:
        check_op(t, Tensor, op, (shape,), **kwargs)


def check_op(t, Tensor, op, shapes=None, *, kinds=None, scale=1.0, domains=None, **params):
    """One op of `OPS` on inputs of `shapes` (one per input) of `kinds` (default: Tensors).

    E.g. `check_op(t, Tensor, "mul", ((3, 1), (4,)), kinds=("tensor", "array"))` or
    `check_op(t, Tensor, "sum", ((2, 3),), axis=-1, keepdims=True)`.
    """
    row = OPS[op]
    names = row.inputs
    shapes = shapes or [(3, 4)] * len(names)
    kinds = kinds or ("tensor",) * len(names)
    domains = {**row.domain, **(domains or {})}
    inputs = []
    for i, (name, kind, shape) in enumerate(zip(names, kinds, shapes)):
        value = _draw(t, () if kind == "number" else tuple(shape), domains.get(i), scale)
        inputs.append((name, kind, float(value) if kind == "number" else value))
    label = row.describe(**params)
    check_tensors(t, Tensor, lambda *a: row.apply(*a, **params),
                  lambda *a: row.twin(*a, **params), inputs, text=label, hints=row.hints,
                  op=(op, params), hint=_reflected_hint(op, kinds, label))


def _reflected_hint(op, kinds, label):
    """With a number or an ndarray on the left, Python calls the Tensor's reflected method."""
    if len(kinds) != 2 or kinds[0] not in ("number", "array") or kinds[1] == "number":
        return None
    symbol = label.split()[1]
    name = "matmul" if op == "matmul" else op
    return (f"x is {KIND_TEXT[kinds[0]]}, on the LEFT, so Python calls y.__r{name}__(x), which "
            f"must compute x {symbol} y (not y {symbol} x): e.g. return Tensor._lift(other) "
            f"{symbol} self.")


def check_broadcasting(t, Tensor, op, *, pairs=FIXED_PAIRS, n_random=4, numbers=True):
    """Binary `op` on every pair of `pairs` plus `n_random` random broadcastable pairs, with
    Tensors, numpy arrays and (where a side has shape ()) Python numbers on either side."""
    all_pairs = list(pairs) + [broadcast_pair(t) for _ in range(n_random)]
    for i, (a, b) in enumerate(all_pairs):
        check_op(t, Tensor, op, (a, b), kinds=_KIND_CYCLE[i % len(_KIND_CYCLE)])
        if numbers and a == ():
            check_op(t, Tensor, op, (a, b), kinds=("number", "tensor"))
        if numbers and b == ():
            check_op(t, Tensor, op, (a, b), kinds=("tensor", "number"))


# ---- the engine's bookkeeping -------------------------------------------------------------------

def check_construction(t, Tensor):
    """Tensor(data, requires_grad=False): float64 ndarray in .data, .shape, .grad None."""
    x = t.randn(2, 3)
    ints = t.rng.integers(-5, 5, size=(2, 2))

    def body():
        a = Tensor([1, 2, 3])
        b = Tensor(x, True)
        c = Tensor(data=ints, requires_grad=True)
        d = Tensor(2.5)
        return {
            "a_type": type(a.data).__name__, "a_dtype": str(getattr(a.data, "dtype", "?")),
            "a_data": _copy(a.data), "a_shape": _shape_of(a), "a_grad_none": a.grad is None,
            "a_rg": _flag(a.requires_grad), "b_rg": _flag(b.requires_grad), "b_data": _copy(b.data),
            "c_rg": _flag(c.requires_grad), "c_dtype": str(getattr(c.data, "dtype", "?")),
            "d_shape": _shape_of(d), "d_type": type(d.data).__name__,
        }

    got = t.run(lambda: _attempt(body), Tensor, label="Tensor(...)")
    _check_error("Tensor(...)", got)
    if got["a_type"] != "ndarray" or got["a_dtype"] != "float64" or got["d_type"] != "ndarray":
        raise GradeError(f"Tensor([1, 2, 3]).data is a {got['a_type']} of dtype {got['a_dtype']} "
                         f"(and Tensor(2.5).data a {got['d_type']}): .data must always be a "
                         "float64 numpy.ndarray, e.g. np.array(data, dtype=np.float64).")
    if got["c_dtype"] != "float64":
        raise GradeError(f"Tensor(integer array).data has dtype {got['c_dtype']}: convert "
                         "data to float64 (np.array(data, dtype=np.float64)).")
    _compare(got["a_data"], np.array([1.0, 2.0, 3.0]), "Tensor([1, 2, 3]).data")
    _compare(got["b_data"], x, "Tensor(x, True).data")
    if got["a_shape"] != (3,) or got["d_shape"] != ():
        raise GradeError(f"Tensor([1, 2, 3]).shape is {got['a_shape']!r} and Tensor(2.5).shape "
                         f"is {got['d_shape']!r}; expected (3,) and (): .shape is .data.shape.")
    if got["a_grad_none"] is not True:
        raise GradeError("a new Tensor's .grad must be None (no backward pass reached it yet).")
    if (got["a_rg"], got["b_rg"], got["c_rg"]) != (False, True, True):
        raise GradeError(f"requires_grad: Tensor([1, 2, 3]) gave {got['a_rg']}, Tensor(x, True) "
                         f"gave {got['b_rg']}, Tensor(data=..., requires_grad=True) gave "
                         f"{got['c_rg']}; expected False, True, True (it is the second "
                         "parameter, False by default, and a bool).")


def check_requires_grad(t, Tensor):
    """A result requires grad exactly when one of its inputs does."""
    x, y = t.randn(2, 3), t.randn(3)

    def body():
        a, b = Tensor(x), Tensor(y, requires_grad=True)
        return {"flags": [_flag((a + a).requires_grad), _flag((a * 2.0).requires_grad),
                          _flag((a * b).requires_grad), _flag((2.0 + b).requires_grad),
                          _flag((x * b).requires_grad)]}

    got = t.run(lambda: _attempt(body), Tensor, label="requires_grad of results")
    _check_error("requires_grad of results", got)
    expected = [False, False, True, True, True]
    exprs = ["a + a", "a * 2.0", "a * b", "2.0 + b", "ndarray * b"]
    for expr, r, e in zip(exprs, got["flags"], expected):
        if r != e:
            raise GradeError(f"with a = Tensor(x) and b = Tensor(y, requires_grad=True), "
                             f"({expr}).requires_grad is {r}, expected {e}: a result requires "
                             "grad exactly when at least one of its inputs does.")


def check_leaf_rule(t, Tensor, shape=(2, 3)):
    """torch's rule: after backward() only leaves that require grad hold a .grad (a and b of
    `shape`, c of shape[1:], broadcast over the first axis)."""
    shape = tuple(shape)
    x, y, z = t.randn(*shape), t.randn(*shape), t.randn(*shape[1:])
    g = t.cotangent(shape)

    def body():
        a, b = Tensor(x.copy(), requires_grad=True), Tensor(y.copy())
        c = Tensor(z.copy(), requires_grad=True)
        h = a * b                       # an intermediate result
        out = h + c
        out.backward(g.copy())
        return {"a": _copy(a.grad), "b": _copy(b.grad), "c": _copy(c.grad),
                "h": _copy(h.grad), "out": _copy(out.grad)}

    label = ("leaves and intermediates: a, c = Tensor(..., requires_grad=True), b = Tensor(...), "
             f"h = a * b, out = h + c, out.backward(g), with a and b of shape {shape} and c of "
             f"shape {shape[1:]}")
    got = t.run(lambda: _attempt(body), Tensor, label=label)
    _check_error(label, got)
    for name in ("a", "c"):
        if got[name] is None:
            raise _grad_missing(label, name)
    _compare(got["a"], g * y, f"{label}: a.grad", hint=OPS["mul"].hints["x"])
    _compare(got["c"], g.sum(axis=0), f"{label}: c.grad", hint=OPS["add"].hints["y"])
    for name, why in (("b", "b does not require grad (a constant)"),
                      ("h", "h is an intermediate result, not a leaf"),
                      ("out", "out is the output, an intermediate result too")):
        if got[name] is not None:
            raise GradeError(
                f"{label}: {name}.grad is {_describe_value(got[name])}, expected None: {why}. "
                "The rule (torch's): backward() stores .grad only on leaves (tensors you made "
                "yourself) with requires_grad=True. Gradients of intermediate results live in "
                "backward()'s dictionary only while it runs.")


def _describe_value(value):
    return f"an array of shape {np.shape(value)}" if isinstance(value, np.ndarray) else \
        repr(value)[:60]


def check_reuse(t, Tensor, shape=(3,)):
    """Values used several times in one graph: a leaf (x * x + x) and an intermediate."""
    x, y = t.randn(*shape), t.randn(*shape)

    def interior(x, y):
        h = x * y
        return h * h + h

    check_tensors(t, Tensor, lambda x: x * x + x, lambda x: x * x + x,
                  [("x", "tensor", x)], text="x * x + x",
                  hint="x is used three times here, so dL/dx = (2x + 1) * g adds three "
                       "contributions. " + ACCUMULATE)
    check_tensors(t, Tensor, interior, interior, [("x", "tensor", x), ("y", "tensor", y)],
                  text="h = x * y; h * h + h",
                  hint="the intermediate h is used three times: its gradient must be the sum "
                       "of all three before it is passed on to x and y, so process a node "
                       "only after every node that uses it (reverse topological order). "
                       + ACCUMULATE)
    check_tensors(t, Tensor, lambda x, y: (x + y) * (x * y), lambda x, y: (x + y) * (x * y),
                  [("x", "tensor", x), ("y", "tensor", y)], text="(x + y) * (x * y)",
                  hint="x and y each reach the output along two paths: add the gradients "
                       "of both paths. " + ACCUMULATE)


def check_accumulation(t, Tensor, shape_x=(2, 3), shape_z=(2, 3)):
    """Repeated backward() on fresh graphs adds into .grad (as torch does); .grad = None resets."""
    x, z = t.randn(*shape_x), t.randn(*shape_z)
    out_shape = np.broadcast_shapes(shape_x, shape_z)
    g1, g2, g3 = (t.cotangent(out_shape) for _ in range(3))

    def f1(x, z):
        return x * z + x

    def f2(x, z):
        return x + z

    def body():
        xt, zt = Tensor(x.copy(), requires_grad=True), Tensor(z.copy(), requires_grad=True)
        f1(xt, zt).backward(g1.copy())
        first = [_copy(xt.grad), _copy(zt.grad)]
        f2(xt, zt).backward(g2.copy())
        second = [_copy(xt.grad), _copy(zt.grad)]
        xt.grad, zt.grad = None, None
        f1(xt, zt).backward(g3.copy())
        third = [_copy(xt.grad), _copy(zt.grad)]
        return {"first": first, "second": second, "third": third}

    def grads(f, g):
        return torch_reference(f, (x, z), (0, 1), g)[2]

    e1, e2, e3 = grads(f1, g1), grads(f2, g2), grads(f1, g3)
    label = (f"repeated backward() with x of shape {shape_x} and z of shape {shape_z} "
             "(requires_grad=True)")
    got = t.run(lambda: _attempt(body), Tensor, label=label)
    _check_error(label, got)
    steps = [
        ("first", e1, "after (x * z + x).backward(g1)", None),
        ("second", [a + b for a, b in zip(e1, e2)], "after a second graph, (x + z).backward(g2)",
         "backward() ADDS into .grad, as in torch: after two backward passes (each on a freshly "
         "built graph) x.grad holds the sum of both passes' gradients. Overwriting .grad "
         "(x.grad = g) keeps only the last one. If only some tensors are wrong: one gradient "
         "array can be shared by several tensors (x + z sends the same g to both), so update "
         "out of place (node.grad = node.grad + g), never with +=."),
        ("third", e3, "after x.grad = z.grad = None and (x * z + x).backward(g3)",
         "setting .grad = None restarts the accumulation: the next backward() stores its "
         "gradient as the new .grad."),
    ]
    for key, expected, when, hint in steps:
        for name, r, e in zip(("x", "z"), got[key], expected):
            if r is None:
                raise _grad_missing(f"{label}, {when}", name)
            _compare(r, e, f"{label}: {name}.grad {when}", hint=hint,
                     context={"x": x, "z": z})


def check_default_backward(t, Tensor, single=(1, 1), shape=(2, 3), wrong_shape=(3, 2)):
    """backward() without an argument: 1 for a single-element output (x of shape (), u of
    `single`), an error otherwise (v of `shape`); backward(np.ones(wrong_shape)) raises too."""
    single, shape, wrong_shape = tuple(single), tuple(shape), tuple(wrong_shape)
    x, u, v = t.randn(), t.randn(*single), t.randn(*shape)
    c = float(t.uniform(0.5, 2.0))

    def body():
        xt = Tensor(x.copy(), requires_grad=True)
        (xt * xt + xt).backward()
        ut = Tensor(u.copy(), requires_grad=True)
        (ut * c).backward()
        vt = Tensor(v.copy(), requires_grad=True)
        raised = []
        for call in (lambda: (vt * c).backward(),
                     lambda: (vt * c).backward(np.ones(wrong_shape))):
            try:
                call()
                raised.append(False)
            except Exception:  # noqa: BLE001 (any error type is fine)
                raised.append(True)
        return {"scalar": _copy(xt.grad), "one": _copy(ut.grad), "raised": raised[0],
                "shape_raised": raised[1]}

    label = "backward() without a gradient argument"
    got = t.run(lambda: _attempt(body), Tensor, label=label)
    _check_error(label, got, "when grad is None and the output has a single element, start "
                             "from np.ones(self.shape).")
    hint = "backward() with no argument starts from an upstream gradient of 1 (np.ones of " \
           "the output's shape) when the output has a single element."
    for key, expected, what in (("scalar", 2 * x + 1, "x.grad for (x * x + x).backward(), x of "
                                 "shape ()"),
                                ("one", np.full(single, c), f"u.grad for (u * {c:.4g}).backward(), "
                                 f"u of shape {single}")):
        if got[key] is None:
            raise GradeError(f"{label}: {what} is None. {hint}")
        _compare(got[key], expected, f"{label}: {what}", hint=hint)
    if got["raised"] is not True:
        raise GradeError(f"{label}: (v * c).backward() with v of shape {shape} must raise an "
                         "error (which upstream gradient would it start from?); only a "
                         "single-element output has a natural default of 1.")
    if got["shape_raised"] is not True:
        raise GradeError(f"{label}: (v * c).backward(np.ones({wrong_shape})) with v of shape "
                         f"{shape} must raise an error: the gradient given to backward() has the "
                         "output's shape, and a wrong one would spread silently (by "
                         "broadcasting) into wrong gradients everywhere.")


DIAMOND = "x -> u = x * a, v = x * b -> out = u + v"


def check_topological_order(t, Tensor, shape=(2,)):
    """`out._topological_order()` on the smallest graph where an order can go wrong, a diamond
    (x feeds u and v, both feed out): every node after its parents; then out.backward(g)."""
    shape = tuple(shape)
    x, g = t.randn(*shape), t.cotangent(shape)
    a, b = (float(t.uniform(0.5, 2.0)) for _ in range(2))
    label = f"the diamond {DIAMOND} (x of shape {shape}, a = {a:.4g}, b = {b:.4g})"
    got = t.run(lambda: _attempt(lambda: student_side(diamond, Tensor, x, g, a, b)), Tensor,
                label=label)
    _check_error(label, got)
    order = got.get("order")
    if isinstance(order, list):
        order = [str(name)[:40] for name in order[:20]]  # data from the kernel: only text
        problem = order_problem(order, DIAMOND_PARENTS)
        if problem:
            raise GradeError(f"{label}: out._topological_order() returned [{', '.join(order)}]: "
                             f"{problem}. {ORDER_HINT}")
    if got.get("grad") is None:
        raise _grad_missing(label, "x")
    _compare(got["grad"], (a + b) * g, f"{label}: x.grad after out.backward(g)",
             hint="x reaches out along two paths, so x.grad = (a + b) * g, and only if x is "
                  "processed after u and v have both passed their gradient on. " + ORDER_HINT)


DIAMOND_PARENTS = {"x": (), "u": ("x",), "v": ("x",), "out": ("u", "v")}
ORDER_HINT = ("_topological_order must list every node after all of its parents, so that "
              "backward(), walking the list in reverse, reaches a node only after every node "
              "that uses it has sent its gradient: append a node once its parents are in the "
              "list (on its second visit), not when it is first popped or seen (a preorder, "
              "even reversed, fails on a diamond).")


def order_problem(order, parents):
    """Why `order` (node names) is no topological order of `parents`; None if it is one."""
    missing = [n for n in parents if n not in order]
    if missing or len(order) != len(parents):
        return f"it must list each of {', '.join(parents)} exactly once"
    for i, node in enumerate(order):
        later = [p for p in parents[node] if p in order[i:]]
        if later:
            return f"{node} comes before its parent {later[0]}"
    return None


def diamond(Tensor, x, g, a, b):
    """(Where the Tensor lives) the diamond's order of nodes, then x.grad after backward(g)."""
    leaf = Tensor(x.copy(), requires_grad=True)
    u, v = leaf * a, leaf * b
    out = u + v
    names = {id(leaf): "x", id(u): "u", id(v): "v", id(out): "out"}
    record = {"order": None}
    order = getattr(out, "_topological_order", None)
    if callable(order):
        # the constants a and b are nodes too (lifted to Tensors): only the four named count
        record["order"] = [names[id(n)] for n in list(order())[:20] if id(n) in names]
    out.backward(g.copy())
    record["grad"] = _copy(leaf.grad)
    return record


def check_grad_out_of_place(t, Tensor, shape=(2, 3)):
    """.grad is a tensor's own array: not shared with another tensor or with the g passed to
    backward, so a later pass (node.grad += g would write into it) changes only its tensor."""
    x, z = t.randn(*shape), t.randn(*shape)
    g1, g2 = t.cotangent(shape), t.cotangent(shape)
    label = (f"x, z of shape {shape} (requires_grad=True): (x + z).backward(g1), then "
             "(x * 2.0).backward(g2)")
    got = t.run(lambda: _attempt(lambda: student_side(grad_sharing, Tensor, x, z, g1, g2)),
                Tensor, label=label)
    if isinstance(got, dict) and "read-only" in str(got.get("error", "")):
        raise GradeError(f"{label}: your code raised {got['error']} {OUT_OF_PLACE}")
    _check_error(label, got)
    pairs = (("x_is_z", "x.grad with z.grad"), ("x_is_g1", "x.grad with g1"),
             ("z_is_g1", "z.grad with g1"))
    shared = [what for key, what in pairs if got.get(key) is True]
    if shared:
        raise GradeError(f"{label}: after the first pass these arrays share memory: "
                         f"{', '.join(shared)}. {OUT_OF_PLACE}")
    after = (("g1", "g1", g1), ("z.grad", "z", g1), ("x.grad", "x", g1 + 2 * g2))
    for name, key, expected in after:
        if got.get(key) is None:
            raise _grad_missing(label, name)
        _compare(got[key], expected, f"{label}: {name} after both passes", hint=OUT_OF_PLACE)


OUT_OF_PLACE = ("Update .grad out of place (node.grad = node.grad + g), and store a copy the "
                "first time (np.array(g, dtype=np.float64)): backward() hands the same array to "
                "several tensors (x + z sends one g to both) and to you, so node.grad += g "
                "(in place) writes into all of them, and into read-only broadcasts "
                "(np.broadcast_to).")


def grad_sharing(Tensor, x, z, g1, g2):
    """(Where the Tensor lives) two passes; whether .grad arrays are shared; the values after."""
    xt, zt = Tensor(x.copy(), requires_grad=True), Tensor(z.copy(), requires_grad=True)
    sent = g1.copy()
    (xt + zt).backward(sent)

    def shares(a, b):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.shares_memory(a, b)

    record = {"x_is_z": shares(xt.grad, zt.grad), "x_is_g1": shares(xt.grad, sent),
              "z_is_g1": shares(zt.grad, sent)}
    (xt * 2.0).backward(g2.copy())
    record.update(x=_copy(xt.grad), z=_copy(zt.grad), g1=_copy(sent))
    return record


GRAD_SHAPES = [((3,), (2, 3)), ((2, 3), (3,)), ((2, 1), (2, 3))]


def check_grad_shape(t, Tensor, pairs=GRAD_SHAPES):
    """out.backward(grad) must raise when grad's shape is not out's, even where it broadcasts."""
    values = [t.randn(*shape) for shape, _ in pairs]
    c = float(t.uniform(0.5, 2.0))
    got = t.run(lambda: _attempt(lambda: student_side(wrong_grad_shapes, Tensor, values, c,
                                                      [list(s) for _, s in pairs])),
                Tensor, label="backward(grad) with a grad of the wrong shape")
    _check_error("backward(grad) with a grad of the wrong shape", got)
    raised = got.get("raised")
    if not (isinstance(raised, list) and len(raised) == len(pairs)):
        raise GradeError(f"backward(grad) with a grad of the wrong shape: unexpected result "
                         f"{raised!r:.100}.")
    for (shape, grad_shape), raised in zip(pairs, raised):
        if raised is not True:
            raise GradeError(
                f"(v * {c:.4g}).backward(grad) with v of shape {shape} and grad of shape "
                f"{grad_shape} did not raise: backward() must check that grad has the output's "
                "shape (raise ValueError when grad.shape != self.shape). Unchecked, numpy "
                "broadcasts the wrong grad silently into wrong gradients everywhere.")


def wrong_grad_shapes(Tensor, values, c, grad_shapes):
    """(Where the Tensor lives) whether (v * c).backward(ones(grad_shape)) raised, per pair."""
    raised = []
    for value, grad_shape in zip(values, grad_shapes):
        v = Tensor(value.copy(), requires_grad=True)
        try:
            (v * c).backward(np.ones(tuple(grad_shape)))
            raised.append(False)
        except Exception:  # noqa: BLE001 (any error type is fine)
            raised.append(True)
    return {"raised": raised}


def check_deep_chain(t, Tensor, n=100_000):
    """A chain of n ops (alternately * c and + 0.0) must backpropagate without RecursionError."""
    x = t.randn(2)
    g = t.cotangent((2,))
    c = 1.0 + float(t.uniform(1e-5, 3e-5))
    muls = (n + 1) // 2

    expected_out, expected_grad = x * c ** muls, g * c ** muls  # from our values, before the run

    def body():
        return student_side(deep_chain, Tensor, x.copy(), g.copy(), c, n)

    label = f"a chain of {n:,} ops (y = y * c, y = y + 0.0, ...)"
    got = t.run(lambda: _attempt(body), Tensor, label=label)
    _check_error(label, got)
    _compare(got["out"], expected_out, f"{label}: the output's .data", rtol=1e-6)
    if got["grad"] is None:
        raise _grad_missing(label, "x")
    _compare(got["grad"], expected_grad, f"{label}: x.grad", rtol=1e-6,
             hint=f"dy/dx = c**{muls}: every op in the chain passes its gradient on once.")


def deep_chain(Tensor, x, g, c, n):
    """(Where the Tensor lives) y = x * c + 0.0 * c ... (n ops), then y.backward(g)."""
    enabled = gc.isenabled()
    gc.disable()  # a chain has no cycles; collecting while it grows costs O(n) each time
    try:
        leaf = Tensor(x.copy(), requires_grad=True)
        y = leaf
        for i in range(n):
            y = y * c if i % 2 == 0 else y + 0.0
        y.backward(g.copy())
        return {"out": _copy(y.data), "grad": _copy(leaf.grad)}
    finally:
        if enabled:
            gc.enable()


# ---- losses, layers, training -----------------------------------------------------------------

def check_cross_entropy(t, Tensor, cross_entropy, n=4, c=3, scale=1.0):
    """cross_entropy(logits (n, c) Tensor, int64 labels (n,)) against torch, with its gradient."""
    import torch.nn.functional as F

    logits = t.randn(n, c, scale=scale)
    labels = t.labels(n, c)
    hint = ("the mean over the batch of -log softmax(logits)[i, labels[i]], a Tensor of shape (). "
            "Its gradient is (softmax(logits) - onehot(labels)) / N. For large logits, subtract "
            "each row's max (as a constant, e.g. logits - logits.data.max(axis=1, "
            "keepdims=True)) before exp: softmax does not change, nothing overflows.")
    check_tensors(t, Tensor, lambda z, y: cross_entropy(z, y), lambda z, y: F.cross_entropy(z, y),
                  [("logits", "tensor", logits), ("labels", "labels", labels)],
                  text="cross_entropy(logits, labels)", objects=(cross_entropy,), hint=hint)


def check_linear(t, Tensor, Linear, n=5, d_in=3, d_out=2, *, input_grad=True):
    """Linear(d_in, d_out): W (d_in, d_out), b (d_out,) requiring grad; x @ W + b; gradients."""
    X = t.randn(n, d_in)
    G = t.cotangent((n, d_out))

    def body():
        layer = Linear(d_in, d_out)
        W, b = layer.W, layer.b
        record = {"W": _copy(W.data), "b": _copy(b.data), "W_rg": _flag(W.requires_grad),
                  "b_rg": _flag(b.requires_grad)}
        params = list(layer.parameters())
        record["n_params"] = len(params)
        record["params_ok"] = (any(p is W for p in params) and any(p is b for p in params)
                               and all(p is W or p is b for p in params))
        x = Tensor(X.copy(), requires_grad=input_grad)
        out = layer(x)
        problem = _not_a_tensor(out)
        if problem is not None:
            raise problem
        record["out"] = _copy(out.data)
        out.backward(G.copy())
        record.update(gW=_copy(W.grad), gb=_copy(b.grad), gx=_copy(x.grad))
        return record

    label = f"Linear({d_in}, {d_out}) on x of shape ({n}, {d_in})"
    got = t.run(lambda: _attempt(body), Tensor, Linear, label=label)
    _check_error(label, got, "Linear.__init__ creates self.W = Tensor(..., requires_grad=True) "
                             "of shape (in_features, out_features) and self.b of shape "
                             "(out_features,); __call__(x) returns x @ self.W + self.b.")
    shapes_hint = ("W has shape (in_features, out_features) so that x @ W maps rows of x "
                   "(N, in) to (N, out); b has shape (out_features,).")
    for key, shape in (("W", (d_in, d_out)), ("b", (d_out,))):
        if np.shape(got[key]) != shape:
            raise GradeError(f"{label}: layer.{key}.data has shape {np.shape(got[key])}, expected "
                             f"{shape}. {shapes_hint}")
    W, b = (np.asarray(got[k], dtype=np.float64) for k in ("W", "b"))
    if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
        raise GradeError(f"{label}: W or b contains non-finite values.")
    if not np.any(W != 0):
        raise GradeError(f"{label}: W is all zeros. Initialise W randomly (e.g. uniform in "
                         "+-1/sqrt(in_features)): with equal weights every hidden unit computes "
                         "the same thing and gets the same gradient, so they never differ.")
    if (got["W_rg"], got["b_rg"]) != (True, True):
        raise GradeError(f"{label}: W.requires_grad is {got['W_rg']} and b.requires_grad is "
                         f"{got['b_rg']}; both must be True (they are what training updates).")
    if got["params_ok"] is not True or got["n_params"] != 2:
        raise GradeError(f"{label}: parameters() must return a list of the two Tensors "
                         f"layer.W and layer.b themselves (it returned {got['n_params']} items).")
    out, _, expected = torch_reference(lambda x, W, b: x @ W + b, (X, W, b), (0, 1, 2), G)
    _compare(got["out"], out, f"{label}: layer(x).data (with your W and b)",
             hint="__call__(x) returns x @ self.W + self.b.")
    wanted = [("gW", "W", expected[1]), ("gb", "b", expected[2])]
    if input_grad:
        wanted.append(("gx", "x", expected[0]))
    for key, name, e in wanted:
        if got[key] is None:
            raise _grad_missing(label, name)
        _compare(got[key], e, f"{label}: {name}.grad after layer(x).backward(g)",
                 hint=OPS["matmul"].hints["y" if name == "W" else "x"] if name != "b" else
                 OPS["add"].hints["y"])


def check_sgd_step(t, Tensor, sgd_step, shapes=((3, 2), (2,))):
    """sgd_step(params, lr): p.data -= lr * p.grad, then p.grad cleared (None or zeros)."""
    values = [t.randn(*s) for s in shapes]
    grads = [t.randn(*s) for s in shapes]
    lr = float(t.uniform(0.01, 0.5))

    def body():
        params = [Tensor(v.copy(), requires_grad=True) for v in values]
        for p, gr in zip(params, grads):
            p.grad = gr.copy()
        sgd_step(params, lr)
        return {"data": [_copy(p.data) for p in params], "grad": [_copy(p.grad) for p in params]}

    label = f"sgd_step(params, lr={lr:.4g}) on parameters of shapes {list(shapes)}"
    got = t.run(lambda: _attempt(body), Tensor, sgd_step, label=label)
    _check_error(label, got)
    for i, (v, gr, data, grad) in enumerate(zip(values, grads, got["data"], got["grad"])):
        _compare(data, v - lr * gr, f"{label}: params[{i}].data after the step",
                 hint="each parameter moves against its gradient: p.data = p.data - lr * p.grad.",
                 context={"p": v})
        if grad is not None and not (isinstance(grad, np.ndarray) and not np.any(grad)):
            raise GradeError(f"{label}: params[{i}].grad still holds a gradient after the step. "
                             "sgd_step must clear it (p.grad = None); otherwise the next "
                             "backward() adds the new gradient to the old one.")


def check_training(t, Tensor, Linear, sgd_step, n=64, d=3, steps=25, lr=0.1):
    """A Linear layer fit to y = X w + c by sgd_step on the mean squared error: the loss falls."""
    X = t.randn(n, d)
    y = X @ t.randn(d, 1) + float(t.uniform(-1.0, 1.0)) + 0.01 * t.randn(n, 1)

    def body():  # copies: X and y stay the grader's own for the reference below
        return student_side(training_run, Tensor, Linear, sgd_step, X.copy(), y.copy(), d,
                            steps, lr)

    label = (f"training Linear({d}, 1) with sgd_step(lr={lr:g}) for {steps} steps on a "
             f"regression with {n} points (loss = mean squared error)")
    got = t.run(lambda: _attempt(body), Tensor, Linear, sgd_step, label=label)
    _check_error(label, got)
    W0, b0 = (np.asarray(got[k], dtype=np.float64) for k in ("W0", "b0"))
    if W0.shape != (d, 1) or b0.shape != (1,):
        raise GradeError(f"{label}: W and b have shapes {W0.shape} and {b0.shape}, expected "
                         f"{(d, 1)} and (1,).")
    loss, _, (gW, gb) = torch_reference(lambda W, b, X, y: ((X @ W + b - y) ** 2).mean(),
                                        (W0, b0, X, y), (0, 1), 1.0)
    losses = got["losses"]
    _compare(np.asarray(losses[0]), float(loss), f"{label}: the first loss")
    for key, name, e in (("gW0", "W", gW), ("gb0", "b", gb)):
        if got[key] is None:
            raise _grad_missing(label, name)
        _compare(got[key], e, f"{label}: {name}.grad at the first step")
    _compare(got["W1"], W0 - lr * gW, f"{label}: W.data after the first sgd_step",
             hint="p.data = p.data - lr * p.grad (a step AGAINST the gradient).",
             context={"W": W0})
    _compare(got["b1"], b0 - lr * gb, f"{label}: b.data after the first sgd_step",
             hint="p.data = p.data - lr * p.grad (a step AGAINST the gradient).")
    for name, grad in zip(("W", "b"), got["after"]):
        if grad is not None and not (isinstance(grad, np.ndarray) and not np.any(grad)):
            raise GradeError(f"{label}: {name}.grad was not cleared by sgd_step, so the next "
                             "backward() adds to a stale gradient; set p.grad = None.")
    if not (np.all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0]):
        raise GradeError(f"{label}: the loss went from {losses[0]:.4g} to {losses[-1]:.4g}; "
                         "it should fall well below half its first value. Check the sign of "
                         "the step and that gradients are cleared between steps.")


def training_run(Tensor, Linear, sgd_step, X, y, d, steps, lr):
    """(Where the Tensor lives) `steps` SGD steps of Linear(d, 1) on the mean squared error."""
    model = Linear(d, 1)
    losses, record = [], {}
    for step in range(steps):
        if step == 0:
            record.update(W0=_copy(model.W.data), b0=_copy(model.b.data))
        diff = model(Tensor(X)) - y
        loss = (diff * diff).mean()
        loss.backward()
        if step == 0:
            record.update(gW0=_copy(model.W.grad), gb0=_copy(model.b.grad))
        sgd_step(model.parameters(), lr)
        if step == 0:
            record.update(W1=_copy(model.W.data), b1=_copy(model.b.data),
                          after=[_copy(model.W.grad), _copy(model.b.grad)])
        losses.append(float(loss.data))
    record["losses"] = losses
    return record


# ---- the steps of notebook 04, and the tests that build on them ---------------------------------

STEPS = {
    "a": ("Tensor", "construction, + and * with broadcasting, backward"),
    "b": ("Tensor_elementwise", "-, /, **, exp, log, relu, sigmoid, tanh"),
    "c": ("Tensor_reductions", "sum, mean, reshape, transpose, @"),
    "d": ("Tensor_graph", "deep graphs and the rules of backward()"),
}


def probe_step(t, Tensor, step):
    """A short check of one step of the Tensor (fixed small shapes); raises GradeError."""
    if step == "a":
        check_construction(t, Tensor)
        check_op(t, Tensor, "add", ((3, 1), (4,)))
        check_op(t, Tensor, "mul", ((2, 3), (3,)), kinds=("tensor", "array"))
        check_op(t, Tensor, "mul", ((), (2, 3)), kinds=("number", "tensor"))
        x = t.randn(3)
        check_tensors(t, Tensor, lambda x: x * x + x, lambda x: x * x + x,
                      [("x", "tensor", x)], text="x * x + x", hint=ACCUMULATE)
    elif step == "b":
        check_op(t, Tensor, "sub", ((2, 3), (3,)))
        check_op(t, Tensor, "sub", ((), (2, 3)), kinds=("number", "tensor"))
        check_op(t, Tensor, "truediv", ((2, 3), (3,)))
        check_op(t, Tensor, "neg", ((2, 3),))
        check_op(t, Tensor, "pow", ((2, 3),), p=2)
        for op in ("exp", "log", "relu", "sigmoid", "tanh"):
            check_op(t, Tensor, op, ((2, 3),))
    elif step == "c":
        check_op(t, Tensor, "sum", ((2, 3),), axis=1, keepdims=True)
        check_op(t, Tensor, "sum", ((2, 3),))
        check_op(t, Tensor, "mean", ((2, 3),), axis=0)
        check_op(t, Tensor, "mean", ((2, 3),))
        check_op(t, Tensor, "reshape", ((2, 3),), shape=(3, 2))
        check_op(t, Tensor, "T", ((2, 3),))
        check_op(t, Tensor, "matmul", ((2, 3), (3, 4)))
    elif step == "d":
        check_topological_order(t, Tensor)
        check_default_backward(t, Tensor)
        check_accumulation(t, Tensor)
    else:
        raise ValueError(f"course bug: unknown step {step!r}")


@contextlib.contextmanager
def building_on(t, Tensor, steps, *, Linear=None, sgd_step=None):
    """A test of something built on the Tensor: if it fails and one of `steps` ("abcd") fails
    its own short check, say so ("fix step (b) first") instead of a hint about the wrong part.
    `Linear` and `sgd_step`, when given, are checked the same way after the steps."""
    __tracebackhide__ = True  # IPython: show the student's code, not ours
    try:
        yield
    except GradeError:
        # step (d) replaces backward(), which every other probe uses: check it first
        for step in sorted(steps, key=lambda s: s != "d"):
            try:
                probe_step(t, Tensor, step)
            except GradeError as cause:
                name, what = STEPS[step]
                raise GradeError(
                    f"fix `Tensor` step ({step}) first (`{name}`: {what}): its check fails on "
                    f"{cause} (This test builds on that step, so it cannot pass before the "
                    "step does.)") from None
        for name, check, obj in (("Linear", check_linear, Linear),
                                 ("sgd_step", check_sgd_step, sgd_step)):
            if obj is None:
                continue
            try:
                check(t, Tensor, obj)
            except GradeError as cause:
                raise GradeError(f"fix `{name}` first: its check fails on {cause} (This test "
                                 "builds on it.)") from None
        raise
