"""Checking gradients: against torch, against finite differences, with messages that teach.

Test cells in the notebooks are written with `suite`:

    with suite("test_affine_hidden") as t:
        x, w, b = t.randn(5, 3), t.randn(3, 4), t.randn(4)
        t.check_vjp(affine, lambda x, w, b: x @ w + b, {"x": x, "w": w, "b": b})

The same cell text runs in one of two places, chosen with `reaching(...)`:

- `InKernel()` (the default: Validate, plain `nbgrader autograde`): the cell runs in the
  student's kernel and `t.run` calls their code directly;
- `Proxied(session, seeds)` (`course grade`, `course check`): the cell runs in the trusted
  grader, the notebook's names are proxies to the kernel (`course_lib.channel`), and every
  reference answer is computed here, where the kernel cannot reach.

`t.run` is the one door to student code: its result is reduced to data (anything else becomes
`Unsupported`) the same way in both places, and a student error becomes one `GradeError`.

Conventions every check keeps: every gradient and upstream gradient `g` a test passes is a
float64 ndarray, 0-d for shape `()` and never a numpy scalar (`as_gradient` makes one); a vjp
gets a fresh `g` per call and must leave it as it was (the notebooks' rule, checked).

The rule of the wall: the grader never trusts an array a kernel could write. Under `Proxied`
every argument crosses in one place, the channel session (`course_lib.channel.proxy`): the
kernel gets a copy, nothing from the kernel is ever written into a grader array, and what
student code did to an argument shows only in what `t.run` returns (the copies a thunk hands
over and returns, e.g. `_call_copied`'s "args", read as student code left them). So a
reference computed from the test's own values, before or after `t.run`, is computed from
values the kernel never touched; a check cannot forget this, because there is nothing to
remember. Callbacks (the `f` of a finite difference) receive plain data only.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import traceback
import warnings

import numpy as np

from course_lib import guard
from course_lib.channel import wire
from course_lib.channel.kernel import describe_exception, library_file
from course_lib.channel.proxy import ChannelError, Remote, StudentError, scrub
from course_lib.channel.wire import Unsupported

RTOL, ATOL = 1e-6, 1e-8          # analytic gradients against torch
FD_RTOL, FD_ATOL = 1e-4, 1e-6    # finite differences
SYMBOLIC_RTOL, SYMBOLIC_ATOL = 1e-8, 1e-10  # sympy answers, both sides with 30 digits


class GradeError(AssertionError):
    """A wrong answer, with a message meant for the student.

    In a notebook (IPython calls `_render_traceback_`) it shows as that message alone, plus
    the student's own frames when their code raised: no frame of course_lib or of the test.
    """

    def _render_traceback_(self):
        lines = [f"{type(self).__name__}: {self}"]
        cause = self.__cause__
        if cause is not None and cause.__traceback__ is not None:
            own = [frame for frame in traceback.extract_tb(cause.__traceback__)
                   if not library_file(frame.filename)]
            if own:
                lines += ["", "Where your code raised it (most recent call last):"]
                lines += [line.rstrip("\n") for line in traceback.format_list(own)]
        return lines


def default_seed(test_id: str) -> int:
    """Fixed inputs for Validate and plain nbgrader."""
    return int.from_bytes(hashlib.sha256(test_id.encode()).digest()[:8], "little")


# ---- how a test reaches student code -------------------------------------------------------

class InKernel:
    """The test cell runs where the student's code is (Validate, plain nbgrader): call it.

    `seeds` ({test id: seed}) draws other inputs than Validate's, e.g. to prove a reference
    solution passes for any grading seed without a kernel.
    """

    def __init__(self, seeds: dict[str, int] | None = None):
        self.seeds = seeds or {}

    def seed(self, test_id: str) -> int:
        return int(self.seeds.get(test_id, default_seed(test_id)))

    def run(self, label, thunk, student_objects):
        not_own = [o for o in student_objects if getattr(o, "__module__", None) != "__main__"]
        if not_own:
            raise GradeError(f"{label}: your code raised {_not_own_message(label, not_own[0])}")
        try:
            with guard.student_code(), quiet():
                result = thunk()
        except GradeError:
            raise
        except Exception as e:  # noqa: BLE001 (the student's error: our message, their frames)
            raise GradeError(f"{label}: your code raised "
                             f"{StudentError(describe_exception(e)).describe()}") from e
        return wire.as_data(result)

    def apply(self, fn, *args, **kwargs):
        return fn(*args, **kwargs)


class Proxied:
    """The test cell runs in the trusted grader; student code is behind a channel session."""

    def __init__(self, session, seeds: dict[str, int] | None = None):
        self.session, self.seeds = session, seeds or {}

    def seed(self, test_id: str) -> int:
        return int(self.seeds.get(test_id, default_seed(test_id)))

    def run(self, label, thunk, student_objects):
        __tracebackhide__ = True
        self.session.new_scope()
        try:
            for obj in student_objects:
                module = obj.module() if isinstance(obj, Remote) else getattr(obj, "__module__", None)
                if module != "__main__":
                    raise GradeError(f"{label}: your code raised {_not_own_message(label, obj, module)}")
            with quiet():
                result = thunk()
        except GradeError:
            raise
        except StudentError as e:
            raise GradeError(f"{label}: your code raised "
                             f"{scrub(e.describe(), self.session.secret_text)}") from None
        except ChannelError as e:
            raise GradeError(f"{label}: {e}") from None
        except Exception as e:  # noqa: BLE001 (the student's result did not fit: unpacking...)
            raise GradeError(f"{label}: your code raised {type(e).__name__}: "
                             f"{str(e)[:200]}") from None
        return wire.as_data(result, describe=_remote_type, left=self.session.left_by_student)

    def apply(self, fn, *args, **kwargs):
        return self.session.apply(f"{fn.__module__}:{fn.__qualname__}", *args, **kwargs)


def _remote_type(obj):
    return object.__getattribute__(obj, "_type") if isinstance(obj, Remote) else wire.type_name(obj)


_reach = InKernel()


@contextlib.contextmanager
def reaching(how):
    """Run test cells with `how` (an `InKernel` or a `Proxied`) as the way to student code."""
    global _reach
    previous, _reach = _reach, how
    try:
        yield how
    finally:
        _reach = previous


def student_side(fn, *args, **kwargs):
    """Inside a `t.run` thunk: run course function `fn` where the student's objects live.

    In the kernel that is a plain call; under `Proxied` it runs in the kernel through the
    channel (one request instead of one per operation: a chain of 10^5 Tensor ops, say).
    `fn` must be a module-level function of course_lib taking data and student objects.
    """
    return _reach.apply(fn, *args, **kwargs)


def _not_own_message(label, obj, module=None) -> str:
    name = getattr(obj, "__name__", None) or type(obj).__name__
    if isinstance(obj, Remote) and module is None:
        return (f"NotYourOwn: where `{name}` comes from could not be read from your notebook. "
                f"{label} grades your own implementation: define it in a cell of this notebook.")
    module = module if module is not None else getattr(obj, "__module__", "?")
    return (f"NotYourOwn: `{name}` comes from `{module}`, not from this notebook. {label} grades "
            "your own implementation: define it in a cell of this notebook.")


@contextlib.contextmanager
def quiet():
    """No warnings, no stderr: nbgrader zeroes a test cell that writes to stderr."""
    with warnings.catch_warnings(), np.errstate(all="ignore"), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


# ---- the suite a test cell opens ---------------------------------------------------------------

class Suite:
    def __init__(self, test_id: str, reach):
        if not wire.SAFE_ID.match(test_id):
            raise ValueError(f"bad test id {test_id!r}")
        self.test_id, self.reach = test_id, reach
        self.rng = np.random.default_rng(reach.seed(test_id))
        self.probes = 0

    # inputs (drawn in the same order in the kernel and in the grader)
    def randn(self, *shape, scale=1.0):
        return scale * self.rng.standard_normal(shape)

    def uniform(self, low, high, *shape):
        return self.rng.uniform(low, high, shape)

    def away_from_zero(self, *shape, margin=0.05, scale=1.0):
        """Normal values with |v| >= margin: no kinks for relu and friends."""
        x = self.randn(*shape, scale=scale)
        return np.where(np.abs(x) < margin, np.copysign(margin, x) + x, x)

    def labels(self, n, classes):
        return self.rng.integers(0, classes, size=n).astype(np.int64)

    def cotangent(self, shape):
        """A random upstream gradient: never all ones, which hides transposes and orderings."""
        return as_gradient(self.randn(*shape) if shape != () else self.rng.uniform(0.5, 2.0))

    # the only door to student code
    def run(self, thunk, *student_objects, label=None):
        """Run `thunk()` as student code; return what it returned (as the grader sees it)."""
        __tracebackhide__ = True
        self.probes += 1
        return self.reach.run(label or self.test_id, thunk, student_objects)

    # common checks
    def check_vjp(self, f, torch_f, inputs: dict, *, name=None, grads=None, g=None,
                  hints=None, rtol=RTOL, atol=ATOL):
        """`f(*inputs) -> (out, vjp)`; `vjp(g)` returns the gradients of `grads` (in order).

        Compares out and every gradient with torch, asserts shapes, checks that `vjp` gives
        the same answer twice and that `f` left its inputs unchanged.
        """
        __tracebackhide__ = True  # IPython: show the student's code, not ours
        name = name or getattr(f, "__name__", "function")
        grads = list(grads if grads is not None else inputs)
        out, expected = torch_vjp(torch_f, inputs, grads, g=g, rng=self)
        g, stage = out["g"], []
        try:
            got = self.run(lambda: call_vjp(f, inputs, g, len(grads), stage), f, label=name)
        except GradeError as e:
            if "NotYourOwn" in str(e):
                raise
            raise GradeError(str(e).rstrip(".") + "."
                             + raised_context(name, inputs, g, stage, hints or {})) \
                from e.__cause__
        check_vjp_result(name, got, out["out"], expected, inputs, grads, hints or {},
                         rtol=rtol, atol=atol)

    def check_values(self, f, expected_f, args: tuple, *, name=None, hint=None,
                     rtol=RTOL, atol=ATOL, what="result"):
        """`f(*args)` must equal `expected_f(*args)` (an array or a number)."""
        __tracebackhide__ = True  # IPython: show the student's code, not ours
        name = name or getattr(f, "__name__", "function")
        expected = expected_f(*args)
        described = (_describe_argument(f"argument {i + 1}", a) for i, a in enumerate(args))
        call = f"{name}({', '.join(described)})"
        got = self.run(lambda: _call_copied(f, args), f, label=call)
        assert_unchanged(name, got["args"], args)
        assert_close(got["out"], expected, what=f"{name}: {what}", hint=hint, rtol=rtol, atol=atol)


@contextlib.contextmanager
def suite(test_id: str):
    """Open a test cell's checks; `test_id` is the cell's nbgrader grade_id."""
    t = Suite(test_id, _reach)
    with quiet():
        yield t
    if t.probes == 0:
        raise RuntimeError(f"course bug: test cell {test_id} ran no check through t.run")


def _copy(value):
    return value.copy() if isinstance(value, np.ndarray) else value


def _call_copied(f, args):
    args = tuple(_copy(a) for a in args)
    return {"out": f(*args), "args": args}


def as_gradient(value):
    """A fresh float64 ndarray (0-d for a number): the only form a test passes a gradient in."""
    return np.array(value, dtype=np.float64, copy=True)


def call_vjp(f, inputs: dict, g, n_grads: int, stage=None):
    """Student side of a VJP check: forward, then the vjp twice (it may be called again).

    Each call gets its own copy of g, returned as "g_sent" beside the original "g": under the
    grader the copies come back as student code left them, so `g_changed` compares them after
    `t.run` (the grader's own g never crossed). `stage` (a list)
    records "vjp" once the forward pass has returned, for the message if the code raises.
    """
    args = tuple(_copy(v) for v in inputs.values())
    out, vjp = f(*args)
    if stage is not None:
        stage.append("vjp")
    sent = [as_gradient(g), as_gradient(g)]
    first = vjp(sent[0])
    second = vjp(sent[1])
    return {"out": out, "grads": first, "again": second, "args": args, "g_sent": sent, "g": g}


def g_changed(got) -> bool:
    """Whether a vjp call wrote into its copy of g (anything but equal arrays counts)."""
    sent = got.get("g_sent")
    if not isinstance(sent, (list, tuple)) or len(sent) != 2:
        return True
    return not all(isinstance(s, np.ndarray) and np.array_equal(s, got.get("g"), equal_nan=True)
                   for s in sent)


# ---- torch references (run outside student code) --------------------------------------------

def torch_reference(torch_f, args, wrt=(), g=None, rng=None):
    """`torch_f(*args)` in float64 and its VJP: `(out, g, grads)`, all numpy.

    A float array in `args` becomes a float64 tensor (requiring grad when its index is in
    `wrt`), an integer array an int64 tensor; a Python number stays one. `g` is the cotangent
    (None: `rng.cotangent`, random); `grads` holds d<out, g>/d args[i] for each i in `wrt`
    (zeros where out does not depend on it). Every check computes its reference here.
    """
    import torch

    def tensor(i, v):
        if i not in wrt and not isinstance(v, (np.ndarray, np.generic)):
            return v
        kind = np.asarray(v).dtype.kind
        return torch.tensor(np.asarray(v), dtype=torch.float64 if kind == "f" else torch.int64,
                            requires_grad=i in wrt)

    tensors = [tensor(i, v) for i, v in enumerate(args)]
    out = torch_f(*tensors)
    if g is None:
        g = rng.cotangent(tuple(out.shape)) if rng is not None else \
            np.random.default_rng(0).standard_normal(tuple(out.shape))
    grads = []
    if wrt:
        # <out, g> as a scalar, not grad_outputs=g: the same numbers, and torch does not import
        # its symbolic-shape machinery (and sympy) on the first call, which costs seconds
        total = (out * torch.as_tensor(np.asarray(g, dtype=np.float64))).sum()
        got = torch.autograd.grad(total, [tensors[i] for i in wrt], allow_unused=True)
        grads = [np.zeros(tensors[i].shape) if v is None else v.detach().numpy()
                 for i, v in zip(wrt, got)]
    return out.detach().numpy(), g, grads


def torch_vjp(torch_f, inputs: dict, grads, *, g=None, rng=None):
    """`torch_reference` with named inputs: `({"out": out, "g": g}, [gradient per name])`."""
    names = list(inputs)
    out, g, expected = torch_reference(torch_f, [np.asarray(v) for v in inputs.values()],
                                       [names.index(k) for k in grads], g=g, rng=rng)
    return {"out": out, "g": as_gradient(g)}, expected


def check_vjp_result(name, got, out, expected, inputs, grads, hints, rtol=RTOL, atol=ATOL):
    __tracebackhide__ = True  # IPython: show the student's code, not ours
    assert_close(got["out"], out, what=f"{name}: forward output", rtol=rtol, atol=atol,
                 hint=hints.get("out"))
    for key in ("grads", "again"):
        received = got[key]
        if len(grads) == 1 and not isinstance(received, (tuple, list)):
            received = (received,)
        if not isinstance(received, (tuple, list)) or len(received) != len(grads):
            raise GradeError(f"{name}: vjp(g) must return {_describe_grads(grads)}; "
                             f"it returned {_describe(got[key])}.")
        for arg, r, e in zip(grads, received, expected):
            again = " (on a second call of vjp)" if key == "again" else ""
            assert_close(r, e, what=f"{name}: gradient with respect to {arg}{again}",
                         rtol=rtol, atol=atol, hint=hints.get(arg), context=inputs)
    if g_changed(got):
        raise GradeError(g_modified_message(name))
    assert_unchanged(name, got["args"], tuple(inputs.values()), names=list(inputs))


def raised_context(name, inputs: dict, g, stage, hints) -> str:
    """What the student's code was called with when it raised, and the hint for that part."""
    call = f"{name}({', '.join(_describe_argument(k, v) for k, v in inputs.items())})"
    if stage:
        text = f" It raised in vjp(g), with g of shape {np.shape(g)}, after {call}."
        own = None
    else:
        text = f" It raised in the forward pass, called as {call}."
        own = hints.get("out")
    return text + _hint(own)


def _describe_argument(key, value):
    if isinstance(value, (np.ndarray, np.generic)):
        return f"{key} of shape {np.shape(value)}"
    return f"{key}={value!r:.60}"


def g_modified_message(name):
    """The rule a vjp broke by writing into its upstream gradient."""
    return (f"{name}: its vjp modified g, the upstream gradient it was given (the values were "
            "right, but g changed). A vjp must not modify g or its inputs: in an engine the "
            "same g is often shared by several branches (x + y sends one g to both), so an "
            "in-place write (dx = g; dx[x <= 0] = 0, or g[mask] = 0) corrupts the others. "
            "Write it out of place, e.g. dx = np.where(x > 0, g, 0.0), g * (x > 0), or "
            "dx = g.copy() before changing dx.")


def _describe_grads(grads):
    if len(grads) == 1:
        return f"one array (the gradient for {grads[0]})"
    return f"a tuple of {len(grads)} arrays ({', '.join('g' + k for k in grads)})"


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}" if not isinstance(value, Unsupported) else repr(value)


def assert_unchanged(name, after, before, names=None):
    __tracebackhide__ = True  # IPython: show the student's code, not ours
    names = names or [f"argument {i + 1}" for i in range(len(before))]
    for arg, a, b in zip(names, after, before):
        if isinstance(b, np.ndarray) and not (isinstance(a, np.ndarray) and a.shape == b.shape
                                              and np.array_equal(a, b, equal_nan=True)):
            raise GradeError(f"{name} modified its input {arg} in place. Graded functions must "
                             "not change their arguments: work on a copy (x = x.copy()) or "
                             "use out-of-place operations (x = x + 1, not x += 1).")


# ---- comparing one array, and explaining the difference --------------------------------------

def _as_array(received, expected, what):
    __tracebackhide__ = True  # IPython: show the student's code, not ours
    if isinstance(received, Unsupported):
        raise GradeError(f"{what}: expected a numpy array, got {received!r}. Return numpy "
                         "float64 arrays (torch tensors and other objects are not accepted).")
    if isinstance(received, (bool, np.bool_)) or received is None or isinstance(received, str):
        raise GradeError(f"{what}: expected a number or array, got {received!r}.")
    if isinstance(received, (list, tuple, dict)):
        raise GradeError(f"{what}: expected a numpy array of shape {np.shape(expected)}, got "
                         f"{_describe(received)}.")
    r = np.asarray(received)
    if r.dtype.kind not in "fiu":
        raise GradeError(f"{what}: expected float64 values, got dtype {r.dtype}.")
    if r.dtype.kind == "f" and r.dtype != np.float64 and r.ndim > 0:
        raise GradeError(f"{what}: got {r.dtype}; keep everything in float64 (float32 has ~7 "
                         "digits, too few to check gradients).")
    return r.astype(np.float64)


def assert_close(received, expected, *, what, rtol=RTOL, atol=ATOL, hint=None, context=None):
    """Shapes first, then values; the message names the worst index and suggests a cause.

    Hints go from the specific to the generic: a recognised mistake first (zeros, sign,
    transpose, keepdims, a factor), then `hint`, the exercise's own.
    """
    __tracebackhide__ = True  # IPython: show the student's code, not ours
    e = np.asarray(expected, dtype=np.float64)
    r = _as_array(received, e, what)
    if r.shape != e.shape:
        specific = specific_shape_hint(r, e)
        raise GradeError(f"{what}: expected shape {e.shape}, got {r.shape}."
                         + _hints(specific, hint, None if specific else shape_hint(r, e)))
    if not np.all(np.isfinite(r[np.isfinite(e)])):
        idx = _index(np.argmax(~np.isfinite(r) & np.isfinite(e)), e.shape)
        raise GradeError(f"{what}: got {r[idx]} at index {idx} where {float(e[idx]):.6g} was "
                         "expected." + _hint(hint or "an intermediate overflowed: use a "
                                             "numerically stable formula (e.g. subtract the max "
                                             "before exp, or use exp(-|x|))."))
    excess = np.abs(r - e) - (atol + rtol * np.abs(e))
    excess = np.where(np.isnan(excess), np.inf, excess)
    if e.size == 0 or excess.max() <= 0:
        return
    idx = _index(np.argmax(excess), e.shape)
    where = f" at index {idx}" if e.ndim else ""
    want, got = distinct_numbers(float(e[idx]), float(r[idx]))
    raise GradeError(f"{what} is wrong{where}: expected {want}, received {got} "
                     f"(rtol={rtol:g}, atol={atol:g})." + _hints(value_hint(r, e, context), hint))


def distinct_numbers(expected: float, received: float) -> tuple[str, str]:
    """Both numbers with 6 significant digits, or one more than it takes to tell them apart."""
    for digits in range(6, 17):
        if f"{expected:.{digits}g}" != f"{received:.{digits}g}":
            digits += digits > 6
            return f"{expected:.{digits}g}", f"{received:.{digits}g}"
    return repr(expected), repr(received)


def _index(flat, shape):
    return tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ()


def _hint(text):
    return f" Hint: {text}" if text else ""


def _hints(*texts):
    """' Hint: first. Also: second.' for the texts given (None skipped, repeats dropped)."""
    texts = [t for t in dict.fromkeys(texts) if t]
    return "".join((" Hint: " if i == 0 else " Also: ") + t for i, t in enumerate(texts))


def specific_shape_hint(r, e):
    """A shape mistake recognised for sure: a transposed matrix, an axis kept by keepdims."""
    if r.ndim == 2 and r.shape == e.shape[::-1] and r.shape[0] != r.shape[1]:
        return "the shape is transposed: check the order of the matrix product (for y = x @ w, " \
               "dL/dx = g @ w.T and dL/dw = x.T @ g)."
    if r.ndim == e.ndim + 1 and any(r.shape[i] == 1 and r.shape[:i] + r.shape[i + 1:] == e.shape
                                    for i in range(r.ndim)):
        return f"keepdims=True left an axis of size 1: the answer has shape {e.shape}, so " \
               "sum (or average) without keepdims, or drop that axis (e.g. .reshape(-1) or [0])."
    return None


def shape_hint(r, e):
    """The specific shape hint, else what a shape of this size usually means."""
    specific = specific_shape_hint(r, e)
    if specific:
        return specific
    if r.size > e.size and _broadcastable(e.shape, r.shape):
        return "this input was broadcast in the forward pass, so its gradient is the upstream " \
               "gradient summed over the broadcast axes (unbroadcast)."
    if r.size == e.size:
        return "same number of elements, different layout: a reshape or transpose is missing."
    if r.size < e.size:
        return "the gradient of an input has exactly that input's shape: was something summed " \
               "or averaged that should not have been, or along the wrong axis?"
    return None


def _broadcastable(small, big):
    small = (1,) * (len(big) - len(small)) + tuple(small)
    return len(small) == len(big) and all(s in (1, b) for s, b in zip(small, big))


def value_hint(r, e, context=None):
    """Recognise the usual mistakes, most specific first: all zeros, a sign, a transpose, a
    factor 2 or N shared by several elements. None when nothing is recognised."""
    if np.all(r == 0) and np.any(e != 0):
        return "all zeros: is the upstream gradient g multiplied in, and does the mask or " \
               "derivative point the right way?"
    if np.any(e != 0) and np.allclose(r, -e, rtol=1e-5, atol=1e-10 * max(1.0, np.abs(e).max())):
        return "the sign is flipped."
    if r.ndim == 2 and r.shape[0] == r.shape[1] and r.shape[0] > 1 and np.allclose(r, e.T):
        return "this is the transpose of the right answer: check the order of a matrix product."
    c = constant_factor(r, e)
    return factor_hint(c, context) if c is not None else None


def constant_factor(r, e):
    """c when r = c * e everywhere and at least two elements of e are nonzero (one number
    always has "a factor"); else None."""
    if np.count_nonzero(e) < 2:
        return None
    c = float(np.vdot(r, e)) / float(np.vdot(e, e))
    return c if np.allclose(r, c * e, rtol=1e-5, atol=1e-10 * max(1.0, np.abs(e).max())) else None


def factor_hint(c, context=None):
    """The usual reasons for a result off by the factor c (a sign, a 2, the N of a mean)."""
    sizes = {int(np.asarray(v).shape[0]) for v in (context or {}).values()
             if np.ndim(v) > 0 and np.asarray(v).shape[0] > 1}
    sizes |= {int(np.size(v)) for v in (context or {}).values() if np.size(v) > 1}
    if abs(c + 1) < 1e-4:
        return "the sign is flipped."
    if c == 0:
        return "all zeros: is the upstream gradient g multiplied in?"
    if abs(c - 2) < 1e-4 or abs(c - 0.5) < 1e-4:
        return f"off by a factor of {c:g}: check the constant from the power rule " \
               "(d/dx x**2 = 2x) or a doubled term."
    for n in sorted(sizes):
        if abs(c - n) < 1e-6 * n:
            return f"{n} times too large: a mean divides by the number of elements ({n}); " \
                   "its gradient does too."
        if abs(c - 1 / n) < 1e-6:
            return f"{n} times too small: is the 1/{n} of a mean applied twice?"
    return f"off by a constant factor {c:.6g} (every element)."


# ---- finite differences and the compare-every-intermediate table ----------------------------

def numerical_gradient(f, x, eps=1e-6):
    """Reference central differences of scalar `f` at float64 array `x` (x is left unchanged)."""
    guard.refuse("course_lib.checks.numerical_gradient")
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        plus = float(f(x))
        x[idx] = old - eps
        minus = float(f(x))
        x[idx] = old
        grad[idx] = (plus - minus) / (2 * eps)
    return grad


def check_finite_differences(f, x, analytic, *, what="gradient", eps=1e-6,
                             rtol=FD_RTOL, atol=FD_ATOL):
    """Assert an analytic gradient of scalar `f` agrees with central differences."""
    assert_close(analytic, numerical_gradient(f, x, eps), what=f"{what} (finite differences)",
                 rtol=rtol, atol=atol)


def compare_table(rows, rtol=RTOL, atol=ATOL, print_fn=print):
    """Print name | shape | exact | close | max diff for (name, ours, reference) rows.

    Returns True when every row is close, so a notebook can `assert compare_table(...)`.
    """
    lines = [f"{'name':<12} {'shape':<16} {'exact':<6} {'close':<6} max diff"]
    all_close = True
    for name, ours, ref in rows:
        ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(_numpy(ref), dtype=np.float64)
        same_shape = ours.shape == ref.shape
        exact = same_shape and bool(np.array_equal(ours, ref))
        close = same_shape and bool(np.allclose(ours, ref, rtol=rtol, atol=atol))
        if same_shape:
            shape = str(ref.shape)
            diff = f"{float(np.max(np.abs(ours - ref))):.2e}" if ref.size else "-"
        else:  # the first thing to fix: say it, rather than a nan
            shape, diff = f"{ours.shape}!={ref.shape}", "shapes differ"
        all_close &= close
        lines.append(f"{name:<12} {shape:<16} {str(exact):<6} {str(close):<6} {diff}")
    print_fn("\n".join(lines))
    return all_close


def _numpy(value):
    detach = getattr(value, "detach", None)
    return detach().numpy() if detach else value
