"""Recompute a test cell's verdict outside the student's kernel.

The test cell's text comes from the course (gradebook or source/), never from the submission.
It runs here with every name it does not define bound to a placeholder, and with
`course_lib.checks` replaying the kernel's records instead of calling student code: whatever the
kernel patched (numpy, torch, our helpers, its own error reporting), the comparison happens here.
"""
from __future__ import annotations

import builtins
import contextlib
import io
import hashlib
import hmac
import types
from dataclasses import dataclass

from course_lib.checks import core


class StudentName:
    """A name the student defines; a test cell may only hand it to `t.run`."""

    def __init__(self, name):
        self._name = self.__name__ = name

    def _refuse(self, *args, **kwargs):
        raise RuntimeError(f"course bug: a test cell used `{self._name}` outside t.run")

    __call__ = __getattr__ = __getitem__ = __iter__ = __bool__ = __len__ = _refuse


def derive_seed(secret: bytes, student: str, assignment: str, test_id: str) -> int:
    """Grading inputs: unknown to students, identical across re-runs, workers and resumes."""
    msg = "\0".join((student, assignment, test_id)).encode()
    return int.from_bytes(hmac.new(secret, msg, hashlib.sha256).digest()[:8], "little")


def seeds_for(secret: bytes, student: str, assignment: str, test_ids) -> dict[str, int]:
    return {t: derive_seed(secret, student, assignment, t) for t in test_ids}


@dataclass
class Verdict:
    passed: bool
    message: str = ""


def _names(code: types.CodeType):
    yield from code.co_names
    yield from code.co_varnames
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)


def replay_cell(source: str, tree: dict, seeds: dict[str, int]) -> Verdict:
    """Run a test cell's course-written text against recorded outputs; pass or fail with why."""
    try:
        code = compile(source, "<test cell>", "exec")
    except SyntaxError as e:
        raise RuntimeError(f"course bug: test cell does not compile: {e}") from None
    namespace = {n: StudentName(n) for n in set(_names(code)) if not hasattr(builtins, n)}
    namespace["__name__"] = "__replay__"

    def seed_of(test_id):
        return seeds.get(test_id, core.default_seed(test_id))

    previous, core._backend = core._backend, core._Replay(tree, seed_of)
    try:
        with core.quiet(), contextlib.redirect_stdout(io.StringIO()):
            exec(code, namespace)
    except AssertionError as e:
        return Verdict(False, str(e) or "a check failed")
    except RuntimeError as e:
        if "course bug" in str(e):
            raise
        return Verdict(False, f"{type(e).__name__}: {e}")
    except Exception as e:
        return Verdict(False, f"{type(e).__name__}: {e}")
    finally:
        core._backend = previous
    return Verdict(True)

