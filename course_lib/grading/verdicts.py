"""Run a test cell in the trusted grader, with the notebook's names as proxies to the kernel.

The test cell's text comes from the course (gradebook), never from the submission, and never
enters the kernel. Every name the cell uses but does not define is a `Remote` for the
notebook's object of that name; reference answers (torch, sympy, numpy) are computed here.
"""
from __future__ import annotations

import builtins
import contextlib
import hashlib
import hmac
import io
import types
from dataclasses import dataclass

from course_lib.channel.proxy import ChannelError, StudentError, scrub
from course_lib.checks import core

MAX_STDOUT = 2_000  # characters of a passing test's own printout kept for the notebook


def derive_seed(secret: bytes, student: str, assignment: str, test_id: str,
                submission: str = "") -> int:
    """Grading inputs: unknown to students, identical across re-runs, workers and resumes of
    the same submission, new for a changed one (inputs a kernel saw and leaked, e.g. in an
    error message, are of no use to the next submission)."""
    msg = "\0".join((student, assignment, test_id, submission)).encode()
    return int.from_bytes(hmac.new(secret, msg, hashlib.sha256).digest()[:8], "little")


def seeds_for(secret: bytes, student: str, assignment: str, test_ids,
              submission: str = "") -> dict[str, int]:
    return {t: derive_seed(secret, student, assignment, t, submission) for t in test_ids}


@dataclass
class Verdict:
    passed: bool
    message: str = ""
    stdout: str = ""


def _names(code: types.CodeType):
    yield from code.co_names
    yield from code.co_varnames
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)


def run_test_cell(source: str, session, seeds: dict[str, int]) -> Verdict:
    """Run a course-written test cell against the kernel behind `session`; pass or fail, why."""
    try:
        code = compile(source, "<test cell>", "exec")
    except SyntaxError as e:
        raise RuntimeError(f"course bug: test cell does not compile: {e}") from None
    session.secret_text = source
    namespace = {n: session.name(n) for n in set(_names(code)) if not hasattr(builtins, n)}
    namespace["__name__"] = "__test__"
    out = io.StringIO()
    try:
        with core.reaching(core.Proxied(session, seeds)), core.quiet(), \
                contextlib.redirect_stdout(out):
            exec(code, namespace)
    except AssertionError as e:
        return Verdict(False, str(e) or "a check failed")
    except StudentError as e:
        return Verdict(False, scrub(f"your code raised {e.describe()}", source))
    except ChannelError as e:
        return Verdict(False, str(e))
    except RuntimeError as e:
        if "course bug" in str(e):
            raise
        return Verdict(False, scrub(f"{type(e).__name__}: {str(e)[:200]}", source))
    except Exception as e:  # noqa: BLE001 (a student's object broke the check's own code)
        return Verdict(False, scrub(f"{type(e).__name__}: {str(e)[:200]}", source))
    return Verdict(True, stdout=out.getvalue()[:MAX_STDOUT])
