"""The shortcut guard: while a student's graded code runs, prebuilt gradients refuse to work.

A teaching aid, not security. It lives in the student's kernel, which the student controls;
`course grade` recomputes every verdict outside the kernel, so the guard only has to make
the honest mistake ("I'll just call torch's backward") fail with a clear message.
"""
from __future__ import annotations

import contextlib
import sys

_depth = 0
_patched = False
_permitted: set[str] = set()  # reference gradients an exercise hands the learner as a tool


class ShortcutError(AssertionError):
    """Raised when graded code calls torch autograd or a course_lib reference gradient."""


def active() -> bool:
    return _depth > 0


def refuse(what: str) -> None:
    """Call at the top of every reference gradient in course_lib."""
    if _depth > 0 and what not in _permitted:
        raise ShortcutError(
            f"{what} is not available while your graded code runs: this exercise asks you to "
            "compute the gradient yourself (numpy only), so calling a prebuilt gradient earns "
            "no credit. Write the rule by hand; torch is fine for checking outside graded code."
        )


def _guarded(fn, what):
    def wrapper(*args, **kwargs):
        refuse(what)
        return fn(*args, **kwargs)

    wrapper.__wrapped__ = fn
    wrapper.__name__ = getattr(fn, "__name__", "wrapper")
    return wrapper


def _patch_torch() -> None:
    """Wrap torch's autograd entry points once, if torch is already imported."""
    global _patched
    torch = sys.modules.get("torch")
    if _patched or torch is None:
        return
    torch.autograd.backward = _guarded(torch.autograd.backward, "torch.autograd.backward")
    torch.autograd.grad = _guarded(torch.autograd.grad, "torch.autograd.grad")
    torch.Tensor.backward = _guarded(torch.Tensor.backward, "torch.Tensor.backward")
    _patched = True


@contextlib.contextmanager
def permitting(what: str):
    """Inside the body, the reference gradient `what` works in graded code: an exercise that
    builds ON it (notebook 06 compares a learner's JVP with the reference engine's VJP)."""
    added = what not in _permitted
    _permitted.add(what)
    try:
        yield
    finally:
        if added:
            _permitted.discard(what)


@contextlib.contextmanager
def student_code():
    """Run the body as graded student code: autograd and reference gradients refuse."""
    global _depth
    _patch_torch()
    torch = sys.modules.get("torch")
    no_grad = torch.no_grad() if torch is not None else contextlib.nullcontext()
    _depth += 1
    try:
        with no_grad:
            yield
    finally:
        _depth -= 1
