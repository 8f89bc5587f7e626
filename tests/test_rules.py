"""The table of ops, checked op by op against torch and finite differences, and against the
rule table notebook 04 shows its learners.

The tests are parametrized over the table itself: add a primitive and it is tested here with
the inputs its domain asks for (or a strategy of its own in tests/strategies.py: SPECIAL) and
its torch twin.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given

from course_lib.rules import OPS, PRIMITIVES, RULES, get_rule, unbroadcast
from strategies import (FEW, SPECIAL, TORCH, away_from_zero, broadcastable_shapes, differentiable,
                        draw_case, every_primitive, normal, positive, rngs, torch_grads)


# ---------------------------------------------------------------- the table itself

def test_every_special_case_is_a_primitive():
    assert set(SPECIAL) <= set(PRIMITIVES)


def test_every_row_names_its_inputs_and_describes_itself():
    for op in OPS.values():
        assert op.inputs in (("x",), ("x", "y")), op.name
        assert set(op.domain) <= set(range(len(op.inputs))), op.name
        assert op.rules == () or len(op.rules) >= len(op.inputs), op.name
        assert "x" in op.describe(**PARAMS.get(op.name, {})), op.name


def test_every_rule_belongs_to_a_primitive():
    for op, argnum in RULES:
        assert op in PRIMITIVES and argnum >= 0


@every_primitive
def test_every_array_input_has_a_rule(op, data):
    inputs, *_ = draw_case(data, op)
    for i, x in enumerate(inputs):
        assert (op, i) in RULES or not isinstance(x, np.ndarray), f"no rule for input {i} of {op}"


def test_missing_rule_names_op_and_input():
    message = r"no gradient rule for input 1 of 'pow' \(the p\)"
    with pytest.raises(NotImplementedError, match=message):
        get_rule("pow", 1)
    with pytest.raises(NotImplementedError, match="input 2 of 'add'"):
        get_rule("add", 2)
    with pytest.raises(NotImplementedError, match="'no_such_op'"):
        get_rule("no_such_op", 0)


# ---------------------------------------------------------------- every op, every input

@every_primitive
def test_forward_matches_torch(op, data):
    inputs, params, out, _ = draw_case(data, op)
    with torch.no_grad():
        expected = TORCH[op](*[torch.from_numpy(x) if isinstance(x, np.ndarray) else x
                               for x in inputs], **params).numpy()
    assert np.shape(out) == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@every_primitive
def test_rules_match_torch_autograd(op, data):
    inputs, params, out, rng = draw_case(data, op)
    g = normal(rng, out.shape)  # a random cotangent: all-ones would hide bugs
    _, expected = torch_grads(op, inputs, params, g)
    for i, want in zip(differentiable(op, inputs), expected):
        got = get_rule(op, i)(g, out, *inputs, **params)
        assert np.shape(got) == inputs[i].shape, f"gradient of input {i} has the wrong shape"
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@every_primitive
def test_rules_match_finite_differences(op, data):
    """<g, f(x + h e_j) - f(x - h e_j)> / 2h approximates the j-th entry of the rule's result."""
    inputs, params, out, rng = draw_case(data, op)
    g = normal(rng, out.shape)
    h = 1e-6
    for i in differentiable(op, inputs):
        got = get_rule(op, i)(g, out, *inputs, **params)
        numeric = np.zeros(inputs[i].shape)
        for j in np.ndindex(inputs[i].shape):
            nudged = [x.copy() if isinstance(x, np.ndarray) else x for x in inputs]
            nudged[i][j] += h
            up = np.sum(g * PRIMITIVES[op](*nudged, **params))
            nudged[i][j] -= 2 * h
            down = np.sum(g * PRIMITIVES[op](*nudged, **params))
            numeric[j] = (up - down) / (2 * h)
        np.testing.assert_allclose(got, numeric, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- unbroadcast

@pytest.mark.parametrize("g_shape, shape, summed", [
    ((), (), ()),
    ((3,), (), (0,)),
    ((2, 3), (), (0, 1)),
    ((2, 3), (3,), (0,)),
    ((2, 3), (1, 3), (0,)),
    ((2, 3), (2, 1), (1,)),
    ((2, 3), (1, 1), (0, 1)),
    ((4, 2, 3), (2, 1), (0, 2)),
    ((4, 1, 3), (1, 1, 3), (0,)),
    ((1, 1), (1,), (0,)),
])
def test_unbroadcast_sums_the_broadcast_axes(g_shape, shape, summed):
    g = np.arange(1.0, 1.0 + np.prod(g_shape)).reshape(g_shape)
    got = unbroadcast(g, shape)
    assert isinstance(got, np.ndarray) and got.shape == shape
    np.testing.assert_array_equal(got, g.sum(axis=summed).reshape(shape))


def test_unbroadcast_returns_g_itself_when_nothing_was_broadcast():
    g = np.ones((2, 3))
    assert unbroadcast(g, (2, 3)) is g


@FEW
@given(shape_pair=broadcastable_shapes(), rng=rngs())
def test_unbroadcast_is_the_adjoint_of_broadcasting(shape_pair, rng):
    """<broadcast(x), g> = <x, unbroadcast(g)> for every x and g."""
    x_shape, y_shape = shape_pair
    out_shape = np.broadcast_shapes(x_shape, y_shape)
    x, g = normal(rng, x_shape), normal(rng, out_shape)
    got = unbroadcast(g, x_shape)
    assert got.shape == x_shape
    np.testing.assert_allclose(np.sum(np.broadcast_to(x, out_shape) * g), np.sum(x * got),
                               rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- notebook 04's rule table

NOTEBOOK_NAMES = {"div": "truediv"}  # the notebook's name for an op -> the table's
PROSE = {"sum", "mean"}              # rows whose rule the notebook explains in words
SHAPES = {"matmul": [(2, 3), (3, 4)], "binary": [(3, 1), (4,)], "unary": [(2, 3)]}
PARAMS = {"pow": {"p": 3}, "reshape": {"shape": (3, 2)}}


def notebook_rules():
    """{op: {input: formula}} read from the rule table of notebook 04 ({} for a row in prose)."""
    import re

    from harness import cell_by_id, read, source_path
    text = cell_by_id(read(source_path("04_autodiff_engine")), "rules").source
    rows = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| ")]
    table = {}
    for op, _, gradient in rows[1:]:  # rows[0] is the header
        formulas = dict(re.findall(r"`g([xy]) = ([^`]+)`", gradient))
        single = re.fullmatch(r"\s*`([^`]+)`\s*", gradient)
        table[NOTEBOOK_NAMES.get(op.strip(), op.strip())] = formulas or (
            {"x": single.group(1)} if single else {})
    return table


def test_the_notebook_shows_every_op_of_the_table():
    table = notebook_rules()
    assert set(table) == set(OPS) - {"T"}  # .T is the transpose row
    assert {op for op, formulas in table.items() if not formulas} == PROSE


@pytest.mark.parametrize("op", sorted(set(OPS) - {"T"} - PROSE))
def test_the_notebook_rules_match_torch(op):
    """Each formula of the notebook's table, evaluated with numpy, gives torch's gradient."""
    from course_lib.checks.core import torch_reference
    row, formulas = OPS[op], notebook_rules()[op]
    assert set(formulas) == set(row.inputs), f"the notebook's {op} row has {sorted(formulas)}"
    rng = np.random.default_rng(0)
    draw = {None: normal, "positive": positive, "away": away_from_zero,
            "denominator": away_from_zero}
    shapes = SHAPES.get(op) or SHAPES["binary" if len(row.inputs) == 2 else "unary"]
    args = [draw[row.domain.get(i)](rng, shape) for i, shape in enumerate(shapes)]
    params = PARAMS.get(op, {})
    out, g, expected = torch_reference(lambda *a: row.twin(*a, **params), args,
                                       range(len(args)), rng=None)
    for name, value, want in zip(row.inputs, args, expected):
        env = dict(zip(row.inputs, args), g=g, out=out, s=out, np=np, unbroadcast=unbroadcast,
                   **params)
        got = eval(formulas[name], env)  # noqa: S307 (the course's own notebook text)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=f"g{name} of {op}")
