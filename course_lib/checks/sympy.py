"""Symbolic answers, graded by their values at points the test chose.

A learner's sympy answer never crosses the sandbox wall as text or as an object. Inside
`t.run` (the student side) the answer is evaluated at points drawn with the suite's seeded
generator and only the numbers come back; the course's reference expression, written in the
test cell, is evaluated at the same points outside `t.run` and the two are compared. Nothing
the kernel wrote is ever sympified or evaluated by the grader.

    import sympy
    from course_lib.checks import suite
    from course_lib.checks.sympy import check_expression

    with suite("test_dy_dx") as t:
        x = sympy.Symbol("x")
        check_expression(t, lambda: dy_dx, 2 * x * sympy.cos(x**2), [x], "dy_dx",
                         mistakes=[(sympy.cos(x**2), "the inner derivative 2x is missing.")])

`answer` is a zero-argument function returning the learner's object (`lambda: dy_dx`), so a
name that was never defined is reported as such. The learner's symbols are matched to the
test's by NAME (a learner's `Symbol("x", real=True)` is still `x`). Python numbers are accepted
as constant expressions; anything else that is not a sympy expression (None, a string, a
Python function, a list...) fails with a message saying what to write instead.
"""
from __future__ import annotations

import math
import types

import numpy as np
import sympy

from course_lib.checks.core import SYMBOLIC_ATOL as ATOL
from course_lib.checks.core import SYMBOLIC_RTOL as RTOL
from course_lib.checks.core import GradeError, constant_factor, factor_hint, student_side

DIGITS = 30
MAX_DRAWS = 200            # attempts to find points where the reference is finite


# ---- public checks -------------------------------------------------------------------------

def check_expression(t, answer, reference, symbols, name, *, points=5, domain=(-2.0, 2.0),
                     rtol=RTOL, atol=ATOL, mistakes=(), hint=None, symbols_hint=None):
    """The scalar sympy expression `answer()` must equal `reference` at `points` random points.

    symbols: the Symbols (or names) the answer may use, e.g. [x] or [u, v].
    domain:  (low, high) for every symbol, or {name: (low, high)}. Points where the reference
             is not finite are redrawn, so a domain may touch a singularity.
    mistakes: (wrong_expression, message) pairs: a learner whose values match a wrong
             expression at every point gets that message.
    hint:    appended to the message of any other wrong value.
    symbols_hint: appended when the answer uses a symbol outside `symbols`.
    """
    names = _names(symbols)
    pts, expected = _draw_points(t, reference, names, domain, points, matrix=False)
    got = t.run(lambda: _student_probe(answer, names, pts, matrix=False), label=name)
    record = _validated(got, name, len(pts), matrix=False, names=names,
                        symbols_hint=symbols_hint)
    _check_scalar_values(record, expected, pts, names, name, rtol, atol, mistakes, hint)


def check_matrix(t, answer, reference, symbols, name, *, points=4, domain=(-2.0, 2.0),
                 rtol=RTOL, atol=ATOL, mistakes=(), hint=None, order_hint=None,
                 symbols_hint=None):
    """The sympy Matrix `answer()` must have `reference`'s shape and values at random points.

    Accepts a sympy Matrix (any kind), a sympy 2-D Array or a nested list of expressions.
    order_hint: what to say when the columns are in a different order (e.g. "pass the
    variables to .jacobian in the order [r, theta]").
    """
    names = _names(symbols)
    reference = sympy.Matrix(reference)
    pts, expected = _draw_points(t, reference, names, domain, points, matrix=True)
    got = t.run(lambda: _student_probe(answer, names, pts, matrix=True), label=name)
    record = _validated(got, name, len(pts), matrix=True, names=names,
                        symbols_hint=symbols_hint)
    _check_matrix_values(record, expected, pts, names, name, rtol, atol, mistakes, hint,
                         order_hint)


def values_at(expr, symbols, point: dict) -> np.ndarray:
    """Evaluate a course expression or Matrix at {name: float} (float64; nan if not finite)."""
    names = _names(symbols)
    if isinstance(expr, sympy.MatrixBase):
        return np.array([[_evaluate(e, names, point) for e in row] for row in expr.tolist()],
                        dtype=np.float64).reshape(expr.shape)
    return np.float64(_evaluate(sympy.sympify(expr), names, point))


# ---- points --------------------------------------------------------------------------------

def _names(symbols):
    names = [s if isinstance(s, str) else s.name for s in symbols]
    if len(set(names)) != len(names):
        raise RuntimeError(f"course bug: repeated symbol names {names}")
    return names


def _bounds(domain, name):
    lo, hi = domain[name] if isinstance(domain, dict) else domain
    return float(lo), float(hi)


def _draw_points(t, reference, names, domain, count, matrix):
    """`count` points (dicts name -> float) where the reference is finite, and its values there."""
    pts, expected = [], []
    for _ in range(MAX_DRAWS):
        pt = {n: float(t.uniform(*_bounds(domain, n))) for n in names}
        value = values_at(reference, names, pt)
        if np.all(np.isfinite(value)) and np.all(np.abs(value) < 1e12):
            pts.append(pt)
            expected.append(value)
            if len(pts) == count:
                return pts, np.array(expected, dtype=np.float64)
    raise RuntimeError("course bug: the reference is not finite on the test's domain")


def _fmt_point(pt):
    return ", ".join(f"{n} = {v:.6g}" for n, v in pt.items())


# ---- the student side (runs inside t.run, in the learner's kernel) ------------------------

def _evaluate(expr, names, point) -> float:
    """Value of a sympy expression at a point, matching symbols by name; nan if not finite."""
    # by name: a learner's Symbol("x", real=True) is x too (even mixed with a plain x)
    value = expr.subs({s: sympy.Float(point[s.name], DIGITS) for s in expr.free_symbols
                       if s.name in point})
    value = sympy.N(value, DIGITS)
    if not value.is_number:
        raise _NotANumber(value)
    try:
        c = complex(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan
    if not (math.isfinite(c.real) and math.isfinite(c.imag)):
        return math.nan
    if abs(c.imag) > 1e-12 * max(1.0, abs(c.real)):
        return math.nan
    return c.real


class _NotANumber(Exception):
    pass


def _describe_object(value) -> tuple[str, str]:
    """(kind, detail) for something that is not a sympy expression."""
    if value is None:
        return "none", ""
    if isinstance(value, str):
        return "str", value[:80]
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return "function", getattr(value, "__name__", "")[:80]
    if isinstance(value, type):
        return "class", getattr(value, "__name__", "")[:80]
    if isinstance(value, (list, tuple)):
        return "sequence", f"{type(value).__name__} of {len(value)} items"
    cls = type(value)
    return "other", f"{cls.__module__.split('.')[0]}.{cls.__qualname__}"[:80]


def _as_expression(value):
    """(kind, expr): kind 'expr' or 'number' with a sympy Expr, or (kind, detail) otherwise."""
    if isinstance(value, (bool, np.bool_)):
        return "other", "bool"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return "number", sympy.Float(float(value), DIGITS)
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        return "number", sympy.Float(float(value), DIGITS)
    if isinstance(value, sympy.MatrixBase):
        return "matrix", f"{value.shape[0]}x{value.shape[1]}"
    if isinstance(value, sympy.Expr):
        try:
            value = value.doit()
        except Exception:  # noqa: BLE001 (an unevaluable Derivative: evaluated below as is)
            pass
        return "expr", value
    if isinstance(value, sympy.Basic):
        return "sympy_other", type(value).__name__[:80]
    return _describe_object(value)


def _as_matrix(value):
    """('matrix', sympy Matrix) or (kind, detail)."""
    if isinstance(value, sympy.Basic) and not isinstance(value, (sympy.MatrixBase,
                                                                 sympy.NDimArray)):
        kind, detail = _as_expression(value)
        return ("scalar", "") if kind in ("expr", "number") else (kind, detail)
    if isinstance(value, (sympy.MatrixBase, sympy.NDimArray, list, tuple, np.ndarray)):
        try:
            m = sympy.Matrix(value)
        except Exception:  # noqa: BLE001 (a ragged list, say)
            return _describe_object(value)
        try:
            m = m.doit()
        except Exception:  # noqa: BLE001
            pass
        if isinstance(value, sympy.NDimArray) and len(value.shape) != 2:
            return "array_rank", str(len(value.shape))
        return "matrix", m
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return "scalar", ""
    return _describe_object(value)


def _student_probe(answer, names, pts, matrix):
    """Evaluate the learner's answer at the points, where it lives; only plain data returns."""
    try:
        return student_side(probe_value, answer(), names, pts, matrix)
    except NameError as e:
        return {"kind": "undefined", "detail": str(e)[:200]}


def probe_value(value, names, pts, matrix):
    """(In the kernel) the answer's kind, and its values at the points if it is an expression."""
    kind, obj = (_as_matrix if matrix else _as_expression)(value)
    wanted = ("matrix",) if matrix else ("expr", "number")
    if kind not in wanted:
        return {"kind": kind, "detail": obj if isinstance(obj, str) else ""}
    exprs = list(obj) if matrix else [obj]   # a Matrix iterates row by row
    used = sorted({s.name for e in exprs for s in getattr(e, "free_symbols", ())})
    extra = [n for n in used if n not in names]
    if extra:
        return {"kind": "symbols", "extra": [n[:40] for n in extra[:10]]}
    values = np.full((len(pts), len(exprs)), np.nan)
    for k, pt in enumerate(pts):
        for i, e in enumerate(exprs):
            try:
                values[k, i] = _evaluate(sympy.sympify(e), names, pt)
            except _NotANumber:
                return {"kind": "not_number", "at": k}
            except Exception as ex:  # noqa: BLE001 (the learner's expression misbehaved)
                return {"kind": "error", "detail": f"{type(ex).__name__}: {ex}"[:300]}
    record = {"kind": "matrix" if matrix else kind, "values": values}
    if matrix:
        record["shape"] = [int(obj.shape[0]), int(obj.shape[1])]
    return record


# ---- the grader side (runs outside t.run; trusts nothing in `got`) -------------------------

# what the learner's answer is, when it is not what the test wants -> what to tell them
# (str.format fields: name, what, detail, example, extra, allowed, hint, at)
NOT_AN_ANSWER = {
    "undefined": "`{name}` is not defined: run the cell where you define it ({name} = ...).",
    "none": "`{name}` is None: define it as {what}, e.g. {name} = {example}",
    "str": "`{name}` is the string {detail!r}: write {what} instead, without quotes, built from "
           "the sympy symbols defined above (e.g. 2*x, not '2*x').",
    "function": "`{name}` is a Python function: define it as {what} (a formula in the symbols, "
                "e.g. 2*x), not as a function (def or lambda).",
    "class": "`{name}` is the class or function `{detail}` itself, not applied to anything: "
             "write e.g. sympy.cos(u), not sympy.cos.",
    "matrix": "`{name}` is a matrix, but this answer is a single (scalar) sympy expression.",
    "scalar": "`{name}` is a single expression, but this answer is a matrix: build it with "
              "sympy.Matrix([...]) (for a Jacobian: sympy.Matrix([f1, f2, ...]).jacobian([x1, "
              "x2, ...])).",
    "array_rank": "`{name}` is a {detail}-dimensional array; a Jacobian is a 2-D matrix (rows: "
                  "outputs, columns: inputs).",
    "symbols": "`{name}` uses the symbol(s) {extra}, but it should be written in {allowed} "
               "only.{hint}",
    "not_number": "`{name}` does not evaluate to a number when its symbols get values{at}: does "
                  "it contain an undefined function (sympy.Function) or an integral sympy "
                  "cannot evaluate?",
    "error": "`{name}` could not be evaluated: {detail}",
    "other": "`{name}` is {article}: define it as {what}.",
}


def _not_an_answer(got, kind, name, matrix, names, symbols_hint):
    """The message for a learner's answer of `kind` (what the kernel recorded in `got`)."""
    detail = got.get("detail") if isinstance(got.get("detail"), str) else ""
    extra = got.get("extra") if isinstance(got.get("extra"), list) else []
    at = got.get("at")
    fields = dict(
        name=name, detail=detail, article=_article(detail or kind),
        what="a sympy Matrix" if matrix else "a sympy expression",
        example=("sympy.Matrix([...]).jacobian([...])." if matrix else
                 "sympy.diff(...) or a formula built from the symbols above."),
        extra=", ".join(str(e)[:40] for e in extra[:10]) or "?",
        allowed=", ".join(names) if names else "no symbols (it is a constant)",
        hint=f" Hint: {symbols_hint}" if symbols_hint else "",
        at=f" (point {at})" if isinstance(at, int) else "")
    return NOT_AN_ANSWER.get(kind, NOT_AN_ANSWER["other"]).format(**fields)


def _validated(got, name, n_points, matrix, names=(), symbols_hint=None):
    """Turn the recorded data into a checked record, or raise a message for the learner."""
    if not isinstance(got, dict) or not isinstance(got.get("kind"), str):
        raise GradeError(f"`{name}`: the recorded result is malformed.")
    kind = got["kind"]
    if kind not in (("matrix",) if matrix else ("expr", "number")):
        raise GradeError(_not_an_answer(got, kind, name, matrix, names, symbols_hint))
    values = got.get("values")
    try:
        values = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise GradeError(f"`{name}`: the recorded result is malformed.") from None
    if values.ndim != 2 or values.shape[0] != n_points:
        raise GradeError(f"`{name}`: the recorded result is malformed.")
    record = {"kind": kind, "values": values}
    if matrix:
        shape = got.get("shape")
        if not (isinstance(shape, list) and len(shape) == 2 and all(
                isinstance(s, int) and not isinstance(s, bool) and 0 <= s for s in shape)
                and shape[0] * shape[1] == values.shape[1]):
            raise GradeError(f"`{name}`: the recorded result is malformed.")
        record["values"] = values.reshape(n_points, *shape)
        record["shape"] = tuple(shape)
    elif values.shape[1] != 1:
        raise GradeError(f"`{name}`: the recorded result is malformed.")
    else:
        record["values"] = values[:, 0]
    return record


def _article(text):
    return ("an " if text[:1].lower() in "aeiou" else "a ") + text


def _bad(r, e, rtol, atol):
    """Boolean mask of values outside the tolerance (nan counts as bad)."""
    ok = np.abs(r - e) <= atol + rtol * np.abs(e)
    return ~ok


def _mistake_message(r, pts, names, mistakes, rtol, atol):
    for wrong, message in mistakes:
        w = np.array([values_at(wrong, names, pt) for pt in pts], dtype=np.float64)
        if w.shape == r.shape and np.all(np.isfinite(w)) and not np.any(_bad(r, w, 1e-6, 1e-9)):
            return message
    return None


def _factor_message(r, e):
    """A sign flip, a constant factor or zeros, recognised across all points."""
    if np.all(r == 0):
        return "your answer is 0 at every point."
    c = constant_factor(r, e) if r.size > 1 and np.all(np.isfinite(r)) else None
    return None if c is None else factor_hint(c)


def _check_scalar_values(record, expected, pts, names, name, rtol, atol, mistakes, hint):
    r, e = record["values"], expected
    bad = _bad(r, e, rtol, atol)
    if not bad.any():
        return
    k = int(np.argmax(bad))
    message = (f"`{name}` is wrong at {_fmt_point(pts[k])}: the right value is {e[k]:.10g}, "
               f"your expression gives {r[k]:.10g} (rtol={rtol:g}).")
    reason = _mistake_message(r, pts, names, mistakes, rtol, atol)
    if reason is None and record["kind"] == "number" and np.ptp(e) > 1e-9 * np.abs(e).max():
        reason = (f"`{name}` is a plain Python number, but the answer changes with "
                  f"{' and '.join(names)}: define it as a sympy expression in "
                  f"{', '.join(names)} (built from the sympy symbols, e.g. with sympy.diff).")
    reason = reason or _factor_message(r, e) or hint
    raise GradeError(message + (f" Hint: {reason}" if reason else ""))


def _check_matrix_values(record, expected, pts, names, name, rtol, atol, mistakes, hint,
                         order_hint):
    shape, eshape = record["shape"], expected.shape[1:]
    if shape != eshape:
        reason = ""
        if shape == eshape[::-1]:
            reason = (" Hint: this is the transposed shape. A Jacobian has one ROW per output "
                      "and one COLUMN per input: J[i, j] = d f_i / d x_j.")
        raise GradeError(f"`{name}` has shape {shape}, expected {eshape}.{reason}")
    r, e = record["values"], expected
    bad = _bad(r, e, rtol, atol)
    if not bad.any():
        return
    k, i, j = (int(v) for v in np.unravel_index(np.argmax(bad), bad.shape))
    message = (f"`{name}`[{i}, {j}] is wrong at {_fmt_point(pts[k])}: the right value is "
               f"{e[k, i, j]:.10g}, yours is {r[k, i, j]:.10g} (rtol={rtol:g}).")
    reason = _mistake_message(r, pts, names, mistakes, rtol, atol)
    if reason is None:
        reason = _permutation_message(r, e, rtol, atol, order_hint)
    if reason is None and eshape[0] == eshape[1] and not _bad(r, np.swapaxes(e, 1, 2),
                                                               rtol, atol).any():
        reason = ("this is the transpose of the right matrix: rows are outputs, columns are "
                  "inputs (J[i, j] = d f_i / d x_j).")
    reason = reason or _factor_message(r.ravel(), e.ravel()) or hint
    raise GradeError(message + (f" Hint: {reason}" if reason else ""))


def _permutation_message(r, e, rtol, atol, order_hint):
    """Recognise rows or columns in a different order."""
    import itertools
    n_rows, n_cols = e.shape[1:]
    if n_cols <= 4:
        for perm in itertools.permutations(range(n_cols)):
            if list(perm) != list(range(n_cols)) and not _bad(r, e[:, :, perm], rtol, atol).any():
                return order_hint or ("the columns are in a different order: column j holds "
                                      "the derivatives with respect to the j-th variable, in "
                                      "the order you pass to .jacobian([...]).")
    if n_rows <= 4:
        for perm in itertools.permutations(range(n_rows)):
            if list(perm) != list(range(n_rows)) and not _bad(r, e[:, perm, :], rtol, atol).any():
                return ("the rows are in a different order: row i holds the derivatives of "
                        "the i-th output.")
    return None
