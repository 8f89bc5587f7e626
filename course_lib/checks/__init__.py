"""Checking gradients against torch and finite differences, with messages that teach.

`core` holds the suite every test cell opens, the ways it reaches student code, the
comparisons and the hints; topic modules (`sympy`, `engine`) add probes for symbolic answers
and for a student's Tensor class.
"""
from course_lib.checks.core import *  # noqa: F401,F403
from course_lib.checks.core import (  # noqa: F401 (the names test cells use)
    ATOL, FD_ATOL, FD_RTOL, RTOL, GradeError, InKernel, Proxied, Suite, assert_close,
    assert_unchanged, check_finite_differences, compare_table, default_seed,
    numerical_gradient, quiet, reaching, student_side, suite, torch_vjp,
)
