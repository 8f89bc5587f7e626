"""Checks for notebook 06 (forward mode): dual numbers, a table of JVP rules, `jvp`, against
torch.func and sympy.

Student code runs only inside `t.run`, through course functions applied where the student's
objects live (`student_side`): they build the learner's `Dual`s or call the learner's rules on
data the suite drew and return plain numbers. Every reference (torch.func.jvp, sympy's diff) is
computed outside `t.run`, here.

A check takes `explain`: False in the visible tests (the hint names the rule or argument to
look at), True in the hidden ones (the hint says what the rule is).
"""
from __future__ import annotations

import types

import numpy as np

from course_lib.channel.kernel import describe_exception
from course_lib.channel.proxy import StudentError
from course_lib.checks.core import GradeError, assert_close, student_side

# Forward mode has no approximation in it: the tangents are exact up to rounding, so they are
# compared far more tightly than finite differences (error ~h**2, at best ~1e-10) can reach.
RTOL, ATOL = 1e-10, 1e-12
FD_NOTE = ("forward mode is exact up to rounding; finite differences are not, and do not reach "
           f"rtol={RTOL:g}.")

# ---- 1 · dual numbers ------------------------------------------------------------------------

# Expressions of two numbers x and y; each is run on Duals, on torch scalars (the reference)
# and with a plain float on one side (the reflected operators).
DUAL_EXPRESSIONS = {
    "x + y": lambda x, y: x + y,
    "x - y": lambda x, y: x - y,
    "x * y": lambda x, y: x * y,
    "x / y": lambda x, y: x / y,
    "x ** 3": lambda x, y: x ** 3,
    "x ** 0.5": lambda x, y: x ** 0.5,
    "x ** y": lambda x, y: x ** y,
    "-x": lambda x, y: -x,
    "x * x * x": lambda x, y: x * x * x,
    "(x + y) * (x - y) / y": lambda x, y: (x + y) * (x - y) / y,
}
REFLECTED = {  # a float on the left: Python calls the Dual's reflected method
    "2.5 + x": lambda x, y: 2.5 + x,
    "2.5 - x": lambda x, y: 2.5 - x,
    "2.5 * x": lambda x, y: 2.5 * x,
    "2.5 / x": lambda x, y: 2.5 / x,
    "2.0 ** x": lambda x, y: 2.0 ** x,
    "x * 3.0 + 1.0": lambda x, y: x * 3.0 + 1.0,
}

NUDGES = {
    "+": "which rule gives the tangent of a sum?",
    "-": "which rule gives the tangent of a difference, and with which sign for each side?",
    "*": "the tangent of a product depends on both values and both tangents (which rule?).",
    "/": "the tangent of a quotient: which rule, and where does the square go?",
    "**": "the power rule, and for a Dual exponent the rule for a ** b with a varying b.",
    "reflected": "with a float on the left Python calls the Dual's reflected method (__radd__, "
                 "__rsub__...): which side is the float, and what is the tangent of a constant?",
}
EXPLAIN = {
    "+": "d(x + y) = dx + dy.",
    "-": "d(x - y) = dx - dy (and d(-x) = -dx).",
    "*": "the product rule: d(x * y) = dx * y + x * dy (not dx * dy).",
    "/": "the quotient rule: d(x / y) = (dx * y - x * dy) / y**2.",
    "**": "d(x ** p) = p * x**(p - 1) * dx for a number p; for a Dual exponent, "
          "d(x ** y) = x**y * (y * dx / x + log(x) * dy).",
    "reflected": "a float c is a constant, the Dual (c, 0): its tangent is 0. 2.5 - x calls "
                 "x.__rsub__(2.5), which is 2.5 - x, not x - 2.5; 2.5 / x is -2.5 * dx / x**2.",
}


def _compare(received, expected, what, hint=None, rtol=RTOL, atol=ATOL):
    """assert_close with the exercise's hint always said (for one number, instead of the
    automatic "off by a factor", which says nothing about a single value)."""
    try:
        assert_close(received, expected, what=what, rtol=rtol, atol=atol, hint=hint)
    except GradeError as e:
        message = str(e)
        if np.ndim(expected) == 0 and " Hint: " in message:
            message = message.partition(" Hint: ")[0]
        if hint and hint not in message:
            message += (" Also: " if " Hint: " in message else " Hint: ") + hint
        raise GradeError(message) from None


def _attempt(body):
    """(Where the student's code lives) body(), or {"error": ...} if the student's code raised."""
    try:
        return body()
    except Exception as e:  # noqa: BLE001 (anything the student's code raises is a verdict)
        return {"error": StudentError(describe_exception(e)).describe()}


def _raised(label, record, hint):
    if isinstance(record, dict) and "error" in record:
        raise GradeError(f"{label}: your code raised {record['error']} Hint: {hint}")


def _operator_of(text):
    if text[0].isdigit():
        return "reflected"
    for symbol in ("**", "/", "*", "-", "+"):
        if symbol in text:
            return symbol
    return "+"


def dual_cases(Dual, cases):
    """(Where the Dual lives) each (text, x, dx, y, dy, reflected) case on Duals -> numbers."""
    table = {**DUAL_EXPRESSIONS, **REFLECTED}
    results = []
    for text, x, dx, y, dy in cases:
        results.append(_attempt(lambda: _dual_record(table[text](Dual(x, dx), Dual(y, dy)),
                                                     Dual)))
    return results


def _dual_record(out, Dual):
    if not isinstance(out, Dual):
        return {"type": type(out).__name__}
    return {"value": float(out.value), "tangent": float(out.tangent)}


def _torch_scalar_jvp(f, args, tangents):
    import torch
    primals = tuple(torch.tensor(float(a), dtype=torch.float64) for a in args)
    dirs = tuple(torch.tensor(float(d), dtype=torch.float64) for d in tangents)
    out, tangent = torch.func.jvp(f, primals, dirs)
    return float(out), float(tangent)


def _check_dual(label, got, value, tangent, hint, kind="Dual"):
    if not isinstance(got, dict) or "type" in got:
        raise GradeError(f"{label}: expected a {kind}, got a "
                         f"{got.get('type') if isinstance(got, dict) else type(got).__name__}: "
                         "every operation on a Dual returns a new Dual(value, tangent).")
    _compare(got["value"], value, f"{label}: value", hint)
    _compare(got["tangent"], tangent, f"{label}: tangent", hint)


def check_dual_arithmetic(t, Dual, texts=None, *, explain=False):
    """Every expression of `texts` (default: all) on random Duals, against torch.func.jvp."""
    texts = texts or [*DUAL_EXPRESSIONS, *REFLECTED]
    table = {**DUAL_EXPRESSIONS, **REFLECTED}
    cases = []
    for text in texts:
        x, y = float(t.uniform(0.5, 2.0)), float(t.uniform(0.5, 2.0)) * float(t.rng.choice([-1, 1]))
        if "**" in text and "y" in text:
            y = abs(y)
        cases.append((text, x, float(t.randn()), y, float(t.randn())))
    got = t.run(lambda: student_side(dual_cases, Dual, cases), Dual, label="Dual arithmetic")
    hints = EXPLAIN if explain else NUDGES
    for (text, x, dx, y, dy), record in zip(cases, got):
        label = f"{text} with x = Dual({x:.4g}, {dx:.4g}), y = Dual({y:.4g}, {dy:.4g})"
        value, tangent = _torch_scalar_jvp(table[text], (x, y), (dx, dy))
        _raised(label, record, hints[_operator_of(text)])
        _check_dual(label, record, value, tangent, hints[_operator_of(text)])


FUNCTIONS = ("sin", "cos", "exp", "log", "tanh")
FUNCTION_NUDGE = ("each function applies the chain rule once: the tangent is the function's "
                  "derivative at the value, times the incoming tangent; a float stays a float.")
FUNCTION_EXPLAIN = {
    "sin": "sin(Dual(a, da)) = Dual(sin a, cos a * da).",
    "cos": "cos(Dual(a, da)) = Dual(cos a, -sin a * da) (note the minus sign).",
    "exp": "exp(Dual(a, da)) = Dual(e**a, e**a * da).",
    "log": "log(Dual(a, da)) = Dual(log a, da / a).",
    "tanh": "tanh(Dual(a, da)) = Dual(tanh a, (1 - tanh(a)**2) * da).",
}


def function_cases(Dual, functions, cases):
    """(Where the Dual lives) each function on a Dual and on a float -> numbers."""
    results = []
    for name, a, da in cases:
        results.append(_attempt(lambda: _function_record(functions[FUNCTIONS.index(name)],
                                                         Dual, a, da)))
    return results


def _function_record(fn, Dual, a, da):
    on_float = fn(a)
    return {"dual": _dual_record(fn(Dual(a, da)), Dual), "float_type": type(on_float).__name__,
            "float": float(on_float) if isinstance(on_float, (float, int, np.floating)) else None}


def check_dual_functions(t, Dual, functions, *, n=2, explain=False):
    """sin, cos, exp, log, tanh (in that order in `functions`) on Duals and on floats."""
    import torch
    cases = [(name, float(t.uniform(0.3, 2.5)), float(t.randn())) for name in FUNCTIONS
             for _ in range(n)]
    got = t.run(lambda: student_side(function_cases, Dual, list(functions), cases), Dual,
                *functions, label="sin, cos, exp, log, tanh")
    for (name, a, da), record in zip(cases, got):
        hint = FUNCTION_EXPLAIN[name] if explain else FUNCTION_NUDGE
        _raised(f"{name}(Dual({a:.4g}, {da:.4g})) or {name}({a:.4g})", record, hint)
        value, tangent = _torch_scalar_jvp(getattr(torch, name), (a,), (da,))
        _check_dual(f"{name}(Dual({a:.4g}, {da:.4g}))", record["dual"], value, tangent, hint)
        if record["float"] is None:
            raise GradeError(f"{name}({a:.4g}) on a float returned a {record['float_type']}; "
                             "on a plain number it returns a plain number (math or numpy).")
        _compare(record["float"], value, f"{name}({a:.4g}) on a float", hint)


# derivative(f, x): functions of one number, written once for the Dual, sympy and torch.
DERIVATIVE_FUNCTIONS = {
    "sin(x) * x**2": lambda m, x: m.sin(x) * x ** 2,
    "exp(-x * x / 2)": lambda m, x: m.exp(-x * x / 2),
    "log(1 + x**2) / x": lambda m, x: m.log(1 + x ** 2) / x,
    "tanh(cos(x)) + x**3": lambda m, x: m.tanh(m.cos(x)) + x ** 3,
    "x ** x": lambda m, x: x ** x,
    "exp(sin(x)) * log(x) - 2 / x": lambda m, x: m.exp(m.sin(x)) * m.log(x) - 2 / x,
    "3 * x + exp(2.0)": lambda m, x: 3 * x + m.exp(2.0),
    "a constant: 7.5": lambda m, x: 7.5,
    "x": lambda m, x: x,
}
DERIVATIVE_NUDGE = ("one forward pass: f at a Dual whose tangent is the direction dx/dx; what "
                    "f returns may also be a plain number.")
DERIVATIVE_EXPLAIN = ("derivative(f, x) = f(Dual(x, 1.0)).tangent: seed the tangent with "
                      "dx/dx = 1. When f returns a plain number (f does not depend on x), the "
                      "derivative is 0.0.")


def derivative_cases(derivative, functions, cases):
    """(Where the student's code lives) derivative(f, x) for each named function -> floats."""
    m = types.SimpleNamespace(**dict(zip(FUNCTIONS, functions)))
    out = []
    for name, x in cases:
        fn = DERIVATIVE_FUNCTIONS[name]
        out.append(_attempt(lambda: {"out": derivative(lambda v: fn(m, v), x)}))
    return out


def sympy_derivative(name, x):
    """The reference: sympy's derivative of the named function, at x (30 digits)."""
    import sympy
    X = sympy.Symbol("x")
    expr = sympy.sympify(DERIVATIVE_FUNCTIONS[name](sympy, X))
    return float(sympy.diff(expr, X).subs(X, sympy.Float(x, 30)).evalf(30))


def torch_derivative(name, x):
    import torch
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    m = types.SimpleNamespace(**{f: (lambda v, f=f: getattr(torch, f)(
        torch.as_tensor(v, dtype=torch.float64))) for f in FUNCTIONS})
    out = DERIVATIVE_FUNCTIONS[name](m, xt)
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        return 0.0
    (grad,) = torch.autograd.grad(out, xt)
    return float(grad)


def check_derivative(t, derivative, functions, names=None, *, explain=False):
    """derivative(f, x) against sympy (and sympy against torch) at random points."""
    names = names or list(DERIVATIVE_FUNCTIONS)
    cases = [(name, float(t.uniform(0.4, 2.0))) for name in names]
    got = t.run(lambda: student_side(derivative_cases, derivative, list(functions), cases),
                derivative, *functions, label="derivative")
    hint = DERIVATIVE_EXPLAIN if explain else DERIVATIVE_NUDGE
    for (name, x), received in zip(cases, got):
        expected = sympy_derivative(name, x)
        if not np.isclose(expected, torch_derivative(name, x), rtol=1e-12, atol=1e-12):
            raise RuntimeError(f"course bug: sympy and torch disagree on {name}")
        label = f"derivative(f, {x:.4g}) for f(x) = {name}"
        _raised(label, received, hint)
        received = received["out"]
        if isinstance(received, dict) or received is None:
            raise GradeError(f"{label}: expected a number, got {received!r}. Return the "
                             "tangent, a float.")
        _compare(received, expected, label, hint)


# ---- 2 · forward mode on arrays: the JVP table and jvp ---------------------------------------

def _np_sum(x, axis=None):
    return x.sum(axis=axis)


NUMPY_OPS = {"add": np.add, "mul": np.multiply, "matmul": np.matmul, "exp": np.exp,
             "log": np.log, "tanh": np.tanh, "sum": _np_sum,
             "broadcast_to": lambda x, shape: np.broadcast_to(x, shape)}
TORCH_OPS = {"add": lambda x, y: x + y, "mul": lambda x, y: x * y, "matmul": lambda x, y: x @ y,
             "exp": lambda x: x.exp(), "log": lambda x: x.log(), "tanh": lambda x: x.tanh(),
             "sum": lambda x, axis=None: x.sum(dim=axis) if axis is not None else x.sum(),
             "broadcast_to": lambda x, shape: x.broadcast_to(shape)}
OP_TEXT = {"add": "x + y", "mul": "x * y", "matmul": "x @ y", "exp": "exp(x)", "log": "log(x)",
           "tanh": "tanh(x)", "sum": "sum(x, axis={axis})", "broadcast_to":
           "broadcast_to(x, {shape})"}
INPUTS = {"add": "xy", "mul": "xy", "matmul": "xy", "exp": "x", "log": "x", "tanh": "x",
          "sum": "x", "broadcast_to": "x"}
DOMAIN = {"log": "positive"}

RULE_NUDGES = {
    "add": "the JVP of broadcasting is broadcasting: the tangent of out always has out's shape, "
           "whatever the shape of the input that moved.",
    "mul": "only one factor moves (its tangent); the other is held at its value.",
    "matmul": "the tangent takes the place of the input that moved, on the same side of the "
              "product; a JVP transposes nothing (transposes belong to the VJP).",
    "exp": "the derivative of exp is exp, and the rule is given out.",
    "log": "the derivative of log at x, times the tangent.",
    "tanh": "the derivative of tanh can be written with out alone.",
    "sum": "the tangent of a sum is the sum of the tangents, along the same axis.",
    "broadcast_to": "the JVP of broadcasting is broadcasting: the tangent of out has out's "
                    "shape.",
}
RULE_EXPLAIN = {
    ("add", 0): "d out = np.broadcast_to(dx, out.shape): the tangent is copied along the "
                "broadcast axes (the adjoint of unbroadcast), never summed.",
    ("add", 1): "d out = np.broadcast_to(dy, out.shape): the tangent is copied along the "
                "broadcast axes (the adjoint of unbroadcast), never summed.",
    ("mul", 0): "d out = dx * y (y held at its value; broadcasting gives out's shape).",
    ("mul", 1): "d out = x * dy (x held at its value; broadcasting gives out's shape).",
    ("matmul", 0): "d out = dx @ y, of out's shape (n, m): the VJP's g @ y.T transposes, the "
                   "JVP does not.",
    ("matmul", 1): "d out = x @ dy, of out's shape (n, m): the VJP's x.T @ g transposes, the "
                   "JVP does not.",
    ("exp", 0): "d out = dx * out (exp' = exp).",
    ("log", 0): "d out = dx / x.",
    ("tanh", 0): "d out = dx * (1 - out**2).",
    ("sum", 0): "d out = dx.sum(axis=axis), the same axis as the forward pass.",
    ("broadcast_to", 0): "d out = np.broadcast_to(dx, shape).",
}


def _describe_op(op, params):
    return OP_TEXT[op].format(**params)


def _draw(t, shape, domain=None):
    return t.uniform(0.5, 2.0, *shape) if domain == "positive" else t.randn(*shape)


def jvp_rule_call(JVP, op, argnum, dx, out, inputs, params):
    """(Where the table lives) JVP[op, argnum](dx, out, *inputs, **params) -> data."""
    params = {k: tuple(v) if k == "shape" else v for k, v in params.items()}
    try:
        rule = JVP[op, argnum]
    except Exception:  # noqa: BLE001 (a missing key, or no table at all)
        return {"missing": True}
    if getattr(rule, "__module__", None) != "__main__":
        return {"not_own": getattr(rule, "__module__", None) or type(rule).__name__}
    copies = [np.array(x, copy=True) for x in inputs]
    return _attempt(lambda: {"out": np.array(rule(dx.copy(), out.copy(), *copies, **params))})


def _torch_jvp(f, primal, tangent, consts=()):
    """torch.func.jvp of f(x, *consts) at x along tangent: (out, J v) in numpy."""
    import torch
    cs = [torch.from_numpy(np.array(c, dtype=np.float64)) for c in consts]
    out, jv = torch.func.jvp(lambda x: f(x, *cs), (torch.from_numpy(np.array(primal)),),
                             (torch.from_numpy(np.array(tangent)),))
    return out.detach().numpy(), jv.detach().numpy()


def _compare_tangent(received, expected, what, hint,
                     shape_note="A tangent of the output has the output's shape."):
    """Shapes first (a tangent has the output's shape), then values, with the rule's hint."""
    e = np.asarray(expected)
    shape = getattr(received, "shape", None)
    if isinstance(received, np.ndarray) and shape != e.shape:
        raise GradeError(f"{what}: expected shape {e.shape}, got {shape}. {shape_note} "
                         f"Hint: {hint}")
    if isinstance(received, np.ndarray) and e.ndim == 2 and e.shape[0] == e.shape[1] > 1 \
            and not np.allclose(received, e, rtol=RTOL, atol=ATOL) \
            and np.allclose(received, e.T, rtol=1e-8, atol=1e-10):
        raise GradeError(f"{what} is the transpose of the right tangent. Hint: {hint}")
    _compare(received, expected, what, hint)


def check_jvp_rule(t, JVP, op, shapes, *, explain=False, **params):
    """The rule of every input of `op` on inputs of `shapes`, against torch.func.jvp."""
    inputs = [_draw(t, s, DOMAIN.get(op)) for s in shapes]
    out = np.asarray(NUMPY_OPS[op](*inputs, **params), dtype=np.float64)
    text = _describe_op(op, params)
    for i, name in enumerate(INPUTS[op]):
        dx = t.randn(*shapes[i])
        label = (f"JVP[{op!r}, {i}] (the tangent of out = {text} when {name} moves), with "
                 + ", ".join(f"{n} of shape {tuple(s)}" for n, s in zip(INPUTS[op], shapes)))
        hint = RULE_EXPLAIN[op, i] if explain else RULE_NUDGES[op]
        got = t.run(lambda: student_side(jvp_rule_call, JVP, op, i, dx, out, inputs, params),
                    label=label)
        if isinstance(got, dict) and got.get("missing"):
            rules = ", ".join("rule_" + n for n in INPUTS[op])
            raise GradeError(f"{label}: the table has no rule for ({op!r}, {i}). Register one "
                             f"rule per input: defjvp({op!r}, {rules}).")
        if isinstance(got, dict) and "not_own" in got:
            raise GradeError(f"{label}: the rule comes from {got['not_own']!r}, not from this "
                             "notebook: write the rule yourself.")
        _raised(label, got, hint)
        torch_op = TORCH_OPS[op]
        _, expected = _torch_jvp(
            lambda xi, *others: torch_op(*others[:i], xi, *others[i:], **params),
            inputs[i], dx, inputs[:i] + inputs[i + 1:])
        _compare_tangent(got["out"], expected, label, hint)


# The rows of the visible test, and more in the hidden one: (op, shapes, params).
RULE_CASES = [("add", [(3, 4), (4,)], {}), ("mul", [(2, 3), (3,)], {}),
              ("matmul", [(2, 3), (3, 4)], {}), ("exp", [(2, 3)], {}), ("log", [(2, 3)], {}),
              ("tanh", [(2, 3)], {}), ("sum", [(2, 3)], {"axis": 1}),
              ("broadcast_to", [(3,)], {"shape": (2, 3)})]


def hidden_rule_cases(t):
    """Random sizes, square matrices (a transpose keeps the shape), () and size-1 axes."""
    n, k, m = (int(v) for v in t.rng.choice(np.arange(2, 7), size=3, replace=False))
    return [("add", [(n, k), (n, k)], {}), ("add", [(), (n, k)], {}), ("add", [(n, 1), (k,)], {}),
            ("mul", [(n, k), ()], {}), ("mul", [(1, k), (n, 1)], {}), ("mul", [(n, k), (n, k)], {}),
            ("matmul", [(n, k), (k, m)], {}), ("matmul", [(n, n), (n, n)], {}),
            ("matmul", [(1, k), (k, 1)], {}), ("exp", [(n, k, m)], {}), ("log", [(n,)], {}),
            ("tanh", [(n, 1, k)], {}), ("sum", [(n, k)], {"axis": 0}),
            ("sum", [(n, k, m)], {"axis": -1}), ("sum", [(n,)], {"axis": 0}),
            ("broadcast_to", [(1, k)], {"shape": (m, n, k)}),
            ("broadcast_to", [()], {"shape": (n, k)})]


def check_jvp_rules(t, JVP, cases=RULE_CASES, *, explain=False):
    """Every rule of the table on each (op, shapes, params) of `cases`."""
    for op, shapes, params in cases:
        check_jvp_rule(t, JVP, op, shapes, explain=explain, **params)


# jvp(f, x, v): functions of one array x, written with the ops (operators and methods), so the
# same text runs on the learner's Fwd and on torch tensors. (function, domain of x).
JVP_FUNCTIONS = {  # name -> (f, how it reads, domain of x)
    "tanh_layer": (lambda x, W, b: (x @ W + b).tanh().sum(axis=1),
                   "(x @ W + b).tanh().sum(axis=1)", None),
    "softplus": (lambda x: (x.exp() + 1.0).log(), "(x.exp() + 1.0).log()", None),
    "product": (lambda x, c: x * x * c - x, "x * x * c - x", None),
    "logsumexp": (lambda x: x.exp().sum(axis=0).log(), "x.exp().sum(axis=0).log()", None),
    "broadcast": (lambda x, c: x.broadcast_to(c.shape) * c, "x.broadcast_to(c.shape) * c", None),
    "left_matmul": (lambda x, A: (A @ x).exp() * x.log(), "(A @ x).exp() * x.log()", "positive"),
    "constant": (lambda x, c: c * 2.0, "c * 2.0 (no x in it)", None),
}
JVP_NUDGE = ("push runs the op on the values and adds up what each input carrying a tangent "
             "sends through its rule; an input without a tangent (a constant) sends nothing.")
JVP_EXPLAIN = ("push(op, *args, **params): values = [a.value if isinstance(a, Fwd) else a ...]; "
               "out = FORWARD[op](*values, **params); the tangent starts at np.zeros(out.shape) "
               "and ADDS JVP[op, i](a.tangent, out, *values, **params) for each Fwd input a "
               "(a constant's tangent is 0: skip it, do not invent ones); return Fwd(out, "
               "tangent). jvp(f, x, v): out = f(Fwd(x, v)), return (out.value, out.tangent), or "
               "(out, zeros of its shape) when f returned a plain array.")


def jvp_call(jvp, name, x, v, consts):
    """(Where the student's code lives) jvp(f, x, v) for the named function -> data."""
    f = JVP_FUNCTIONS[name][0]
    return _attempt(lambda: {"out": jvp(lambda x: f(x, *consts), x.copy(), v.copy())})


def check_jvp(t, jvp, name, x_shape, *const_shapes, JVP=None, explain=False):
    """jvp(f, x, v) -> (f(x), J v) for f = JVP_FUNCTIONS[name], against torch.func.jvp."""
    f, text, domain = JVP_FUNCTIONS[name]
    x, v = _draw(t, x_shape, domain), t.randn(*x_shape)
    consts = [t.randn(*s) for s in const_shapes]
    shapes = ", ".join(f"{n} {tuple(s)}" for n, s in zip(("W", "b") if "W" in text else
                                                         ("A",) if "A @" in text else ("c",),
                                                         const_shapes))
    label = f"jvp(f, x, v) for f(x) = {text}, x of shape {tuple(x_shape)}" + \
        (f", constants {shapes}" if shapes else "")
    hint = JVP_EXPLAIN if explain else JVP_NUDGE
    try:
        got = t.run(lambda: student_side(jvp_call, jvp, name, x, v, consts), jvp, label=label)
        _raised(label, got, hint)
        result = got["out"]
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            raise GradeError(f"{label}: must return the pair (f(x), J v); it returned "
                             f"{type(result).__name__}.")
        out, expected = _torch_jvp(f, x, v, consts)
        _compare(result[0], out, f"{label}: f(x)", hint)
        _compare_tangent(result[1], expected, f"{label}: J v", hint)
    except GradeError:
        if JVP is not None:
            _rules_first(t, JVP)
        raise


def _rules_first(t, JVP):
    """When jvp fails and a rule of the table fails its own short check, say so."""
    try:
        check_jvp_rules(t, JVP)
    except GradeError as cause:
        raise GradeError(f"fix `JVP` (Exercise 2a) first: {cause} (jvp pushes tangents through "
                         "those rules, so it cannot pass before they do.)") from None


# ---- 3 · the duality: the dot-product test and whole Jacobians -------------------------------

ENGINE_VJP = "course_lib.engine.Tensor.backward"  # the reference VJP the exercises build on

# Functions of a vector x (n,) to a vector (m,), written so that the learner's Fwd, the course
# engine's Tensor (whose @ takes 2-D arrays only: W @ x is written (W * x).sum(axis=1)) and
# torch all run them; and one of a matrix. name -> (f, how it reads, names of the constants).
VECTOR_FUNCTIONS = {
    "tanh_layer": (lambda x, W, b: ((W * x).sum(axis=1) + b).tanh(), "tanh(W x + b)", "W b"),
    "gated": (lambda x, A, B: (A * x).sum(axis=1).tanh() * (B * x.exp()).sum(axis=1),
              "tanh(A x) * (B exp(x))", "A B"),
    "weighted": (lambda x, C: (C * x.tanh()).sum(axis=1), "C tanh(x)", "C"),
    "matrix": (lambda x, A: (x @ A).tanh(), "tanh(x @ A)", "A"),
}


def _const_shapes(name, n, m, k=3):
    if name == "matrix":
        return {"A": (k, m)}, (n, k)
    return {"W": (m, n), "b": (m,), "A": (m, n), "B": (m, n), "C": (m, n)}, (n,)


class _Counting:
    """A stand-in for a global function of the learner's that counts its calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0
        self.__module__ = "__main__"

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def _counted_call(fn, names, body):
    """(Where the student's code lives) body() with fn's globals `names` counting calls."""
    scope = getattr(fn, "__globals__", {})
    saved = {n: scope[n] for n in names if n in scope}
    counters = {n: _Counting(f) for n, f in saved.items()}
    scope.update(counters)
    try:
        with guard_permitting():
            out = body()
    finally:
        scope.update(saved)
    return {"out": out, **{f"calls_{n}": c.calls for n, c in counters.items()}}


def guard_permitting():
    from course_lib import guard
    return guard.permitting(ENGINE_VJP)


def dot_test_call(dot_product_test, name, x, v, w, consts):
    """(Where the student's code lives) dot_product_test(f, x, v, w), jvp and vjp counted."""
    f = VECTOR_FUNCTIONS[name][0]
    return _attempt(lambda: _counted_call(
        dot_product_test, ("jvp", "vjp"),
        lambda: dot_product_test(lambda x: f(x, *consts), x.copy(), v.copy(), w.copy())))


def _draw_vector_case(t, name, n, m):
    shapes, x_shape = _const_shapes(name, n, m)
    consts = [t.randn(*shapes[c]) / np.sqrt(x_shape[-1])
              for c in VECTOR_FUNCTIONS[name][2].split()]
    return t.randn(*x_shape), consts


def _vector_label(name, n, m):
    _, text, _ = VECTOR_FUNCTIONS[name]
    shapes, x_shape = _const_shapes(name, n, m)
    out_shape = (n, m) if name == "matrix" else (m,)
    return f"f(x) = {text} with x of shape {x_shape}, f(x) of shape {out_shape}"


DOT_NUDGE = ("one side is a JVP (push v forwards), the other a VJP (pull w backwards with the "
             "reference engine); each is then a plain dot product.")
DOT_EXPLAIN = ("_, jv = jvp(f, x, v); lhs = np.sum(w * jv); rhs = np.sum(vjp(f, x, w) * v): "
               "<w, J v> with one call of jvp, <J^T w, v> with one call of vjp.")


def check_dot_product_test(t, dot_product_test, name, n, m, *, explain=False):
    """(<w, J v>, <J^T w, v>) from one jvp and one vjp, both against torch."""
    x, consts = _draw_vector_case(t, name, n, m)
    v, w = t.randn(*x.shape), t.randn(*((n, m) if name == "matrix" else (m,)))
    label = f"dot_product_test(f, x, v, w) for {_vector_label(name, n, m)}"
    hint = DOT_EXPLAIN if explain else DOT_NUDGE
    got = t.run(lambda: student_side(dot_test_call, dot_product_test, name, x, v, w, consts),
                dot_product_test, label=label)
    _raised(label, got, hint)
    result = got["out"]
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise GradeError(f"{label}: must return the pair (<w, J v>, <J^T w, v>); it returned "
                         f"{type(result).__name__}.")
    f = VECTOR_FUNCTIONS[name][0]
    _, jv = _torch_jvp(f, x, v, consts)
    expected = float(np.sum(w * jv))
    for side, text, fn in ((0, "<w, J v>", "jvp"), (1, "<J^T w, v>", "vjp")):
        if got.get(f"calls_{fn}", 0) != 1:
            raise GradeError(f"{label}: {text} must come from one call of {fn} (it was "
                             f"called {got.get(f'calls_{fn}', 0)} times). Hint: {hint}")
        _compare(result[side], expected, f"{label}: {text}", hint)


JAC_NUDGE = ("forward mode builds J one column at a time (one JVP per input direction), "
             "reverse mode one row at a time (one VJP per output direction); which basis "
             "vectors, and where does each result go?")
JAC_EXPLAIN = ("mode 'fwd': column j of J is jvp(f, x, e_j)[1] with e_j the j-th basis vector "
               "of x's space (n calls of jvp); mode 'rev': row i of J is vjp(f, x, e_i) with e_i "
               "the i-th basis vector of the output's space (m calls of vjp). J has shape "
               "(m, n): J[i, j] = d f_i / d x_j.")


def jacobian_call(jacobian, name, x, consts, mode):
    """(Where the student's code lives) jacobian(f, x, mode), with jvp and vjp counted."""
    f = VECTOR_FUNCTIONS[name][0]
    return _attempt(lambda: _counted_call(
        jacobian, ("jvp", "vjp"), lambda: jacobian(lambda x: f(x, *consts), x.copy(), mode)))


def check_jacobian(t, jacobian, name, n, m, mode, *, explain=False):
    """jacobian(f, x, mode) against torch.func.jacfwd / jacrev, with n JVPs or m VJPs."""
    import torch
    x, consts = _draw_vector_case(t, name, n, m)
    label = f"jacobian(f, x, {mode!r}) for {_vector_label(name, n, m)}"
    hint = JAC_EXPLAIN if explain else JAC_NUDGE
    got = t.run(lambda: student_side(jacobian_call, jacobian, name, x, consts, mode), jacobian,
                label=label)
    _raised(label, got, hint)
    f = VECTOR_FUNCTIONS[name][0]
    cs = [torch.from_numpy(c) for c in consts]
    reference = torch.func.jacfwd if mode == "fwd" else torch.func.jacrev
    expected = reference(lambda x: f(x, *cs))(torch.from_numpy(x)).numpy()
    wanted = {"fwd": ("jvp", n, "input"), "rev": ("vjp", m, "output")}[mode]
    calls = got.get(f"calls_{wanted[0]}", 0)
    if calls != wanted[1]:
        raise GradeError(f"{label}: mode {mode!r} must call {wanted[0]} once per {wanted[2]} "
                         f"({wanted[1]} times); it called it {calls} times. Hint: {hint}")
    _compare_tangent(got["out"], expected, label, hint,
                     shape_note="J has shape (m, n): one row per output, one column per input.")


# ---- 4 · Hessian-vector products and Newton-CG ------------------------------------------------

# Gradients written with the ops (so forward mode runs through them), beside the function
# they are the gradient of, in torch (for torch.func.grad). name -> (grad_f, f, how f reads).
def _sigmoid(z):
    return ((z * 0.5).tanh() + 1.0) * 0.5


def logistic_grad(w, X, y, lam):
    """The gradient of the L2-regularised mean logistic loss, written with the ops."""
    return X.T @ (_sigmoid(X @ w) - y) * (1.0 / X.shape[0]) + w * float(lam)


def logistic_grad_numpy(w, X, y, lam):
    """The same gradient in plain numpy (for the grader's side)."""
    s = 1.0 / (1.0 + np.exp(-(X @ w)))
    return X.T @ (s - y) / X.shape[0] + lam * w


def logistic_loss_torch(w, X, y, lam):
    """mean(log(1 + e**z) - y z) + lam/2 |w|**2 with z = X w (torch)."""
    import torch
    z = X @ w
    return (torch.nn.functional.softplus(z) - y * z).mean() + 0.5 * float(lam) * (w * w).sum()


GRADIENTS = {
    "logistic": (logistic_grad, logistic_loss_torch,
                 "mean(log(1 + exp(X @ w)) - y * (X @ w)) + lam/2 * |w|**2"),
    "quartic": (lambda x: x * x * x, lambda x: (x ** 4).sum() / 4, "sum(x**4) / 4"),
    "quadratic": (lambda x, A: A @ x, lambda x, A: 0.5 * x @ (A @ x),
                  "x @ A @ x / 2 (A symmetric)"),
}
HVP_NUDGE = ("the Hessian-vector product is the JVP of the gradient: which function do you "
             "push the tangent through, and which of its two outputs is H v?")
HVP_EXPLAIN = ("hvp(grad_f, x, v) = jvp(grad_f, x, v)[1]: forward mode over the gradient (the "
               "reverse-mode result). It is exact up to rounding; finite differences of the "
               "gradient, (grad(x + h v) - grad(x - h v)) / 2h, are not (" + FD_NOTE + ")")


def _gradient_case(t, name, n):
    """(x, constants) for the named gradient with n parameters."""
    if name == "logistic":
        rows = 3 * n + 5
        X = t.randn(rows, n)
        y = (t.rng.random(rows) < 0.5).astype(np.float64)
        return t.randn(n) * 0.5, [X, y, float(t.uniform(0.01, 0.1))]
    if name == "quadratic":
        A = t.randn(n, n)
        return t.randn(n), [(A + A.T) / 2]
    return t.randn(n), []


def hvp_call(hvp, name, x, v, consts):
    """(Where the student's code lives) hvp(grad_f, x, v) for the named gradient."""
    grad_f = GRADIENTS[name][0]
    return _attempt(lambda: {"out": hvp(lambda x: grad_f(x, *consts), x.copy(), v.copy())})


def _torch_consts(consts):
    import torch
    return [torch.from_numpy(np.asarray(c)) if isinstance(c, np.ndarray) else c for c in consts]


def torch_hvp(name, x, v, consts):
    """torch.func.jvp(torch.func.grad(f), (x,), (v,)): the reference H v."""
    import torch
    f = GRADIENTS[name][1]
    cs = _torch_consts(consts)
    _, hv = torch.func.jvp(torch.func.grad(lambda x: f(x, *cs)), (torch.from_numpy(x),),
                           (torch.from_numpy(v),))
    return hv.numpy()


def check_hvp(t, hvp, name, n, *, explain=False):
    """hvp(grad_f, x, v) against torch.func.jvp(torch.func.grad(f), ...)."""
    x, consts = _gradient_case(t, name, n)
    v = t.randn(n)
    label = f"hvp(grad_f, x, v) for f = {GRADIENTS[name][2]}, x of shape ({n},)"
    hint = HVP_EXPLAIN if explain else HVP_NUDGE
    got = t.run(lambda: student_side(hvp_call, hvp, name, x, v, consts), hvp, label=label)
    _raised(label, got, hint)
    _compare_tangent(got["out"], torch_hvp(name, x, v, consts), label, hint,
                     shape_note="H v has the shape of x.")


NEWTON_NUDGE = ("each Newton step solves H p = -g for the step p with conjugate gradients, "
                "where every product with H is one hvp; then w moves by p. Which sign, and is "
                "g the gradient at the current w?")
NEWTON_EXPLAIN = ("at each step: g = grad_f(w) (at the CURRENT w); solve H p = -g by conjugate "
                  "gradients (r = -g, p = r; alpha = r.r / p.Hp; step += alpha p; r -= alpha Hp; "
                  "beta = r_new.r_new / r.r; p = r + beta p; Hp = hvp(grad_f, w, p)); then "
                  "w = w + step. Record |grad_f(w)| before each step and once at the end.")


def newton_call(newton_cg, name, w0, consts, steps):
    """(Where the student's code lives) newton_cg(grad_f, w0, steps), with hvp counted."""
    grad_f = GRADIENTS[name][0]
    return _attempt(lambda: _counted_call(
        newton_cg, ("hvp",), lambda: newton_cg(lambda w: grad_f(w, *consts), w0.copy(), steps)))


def _reference_optimum(X, y, lam):
    """The logistic regression's minimiser, by Newton's method with the explicit Hessian."""
    w = np.zeros(X.shape[1])
    for _ in range(50):
        s = 1.0 / (1.0 + np.exp(-(X @ w)))
        g = logistic_grad_numpy(w, X, y, lam)
        H = (X * (s * (1 - s))[:, None]).T @ X / len(y) + lam * np.eye(len(w))
        w = w - np.linalg.solve(H, g)
    return w


def check_newton_cg(t, newton_cg, n, *, steps=8, explain=False):
    """newton_cg(grad_f, w0, steps) -> (w, grad_norms) on a logistic regression: the gradient
    norm falls below 1e-8 within `steps` steps, w matches the minimiser, hvp does the work."""
    _, (X, y, lam) = _gradient_case(t, "logistic", n)
    w0 = np.zeros(n)
    label = (f"newton_cg(grad_f, w0 = zeros({n}), steps={steps}) on a logistic regression with "
             f"{X.shape[0]} points, {n} features, lam = {lam:.3g}")
    hint = NEWTON_EXPLAIN if explain else NEWTON_NUDGE
    got = t.run(lambda: student_side(newton_call, newton_cg, "logistic", w0, [X, y, lam], steps),
                newton_cg, label=label)
    _raised(label, got, hint)
    result = got["out"]
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise GradeError(f"{label}: must return the pair (w, grad_norms); it returned "
                         f"{type(result).__name__}.")
    w, norms = result
    if not (isinstance(norms, (tuple, list)) and len(norms) == steps + 1):
        raise GradeError(f"{label}: grad_norms must hold {steps + 1} numbers (before each "
                         "step and after the last).")
    if got.get("calls_hvp", 0) < 1:
        raise GradeError(f"{label}: hvp was called {got.get('calls_hvp', 0)} times; every "
                         "product with the Hessian in conjugate gradients is one call of hvp "
                         "(no Hessian is ever formed).")
    expected = _reference_optimum(X, y, lam)
    if not isinstance(w, np.ndarray) or w.shape != (n,):
        raise GradeError(f"{label}: w must be an array of shape ({n},), like w0.")
    final = float(np.linalg.norm(logistic_grad_numpy(w.astype(np.float64), X, y, lam)))
    if not final < 1e-8:
        first = float(np.linalg.norm(logistic_grad_numpy(w0, X, y, lam)))
        raise GradeError(f"{label}: after {steps} steps the gradient norm is {final:.3g} "
                         f"(it started at {first:.3g}); "
                         f"Newton's method gets below 1e-8 in a handful of steps. Hint: {hint}")
    _compare(w, expected, f"{label}: the final w", hint, rtol=1e-6, atol=1e-8)
    _compare(np.asarray(norms, dtype=np.float64)[-1], final, f"{label}: grad_norms[-1]",
             "grad_norms[-1] is |grad_f(w)| at the w you return.", rtol=1e-6, atol=1e-12)
