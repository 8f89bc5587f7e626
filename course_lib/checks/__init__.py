"""Checking gradients against torch and finite differences, with messages that teach.

`core` holds the suite every test cell opens, the ways it reaches student code, the
comparisons and the hints. One module per notebook holds that notebook's checks, written once
(a test cell lists cases and calls them): `chain_rule` (01), `gradcheck` (02), `layers` (03),
`engine` (04), `transformer` (05), `forward` (06); `sympy` compares symbolic answers.
Every check takes `explain`: False in the visible tests (hints nudge), True in the hidden ones
(hints may give the formula).
"""
from course_lib.checks.core import *  # noqa: F401,F403
from course_lib.checks.core import (  # noqa: F401 (the names test cells use)
    ATOL, FD_ATOL, FD_RTOL, RTOL, GradeError, InKernel, Proxied, Suite, assert_close,
    assert_unchanged, check_finite_differences, compare_table, default_seed,
    numerical_gradient, quiet, reaching, student_side, suite, torch_vjp,
)
