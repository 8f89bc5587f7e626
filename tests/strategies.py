"""Hypothesis strategies for the op table's primitives (inputs in each op's domain, broadcastable
shapes, seeded generators), the same ops in torch, and the frame every per-primitive test
shares: `@every_primitive` and `draw_case`. Used by test_rules, test_rules_jvp and test_engine.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.rules import OPS, PRIMITIVES, RULES

FEW = settings(max_examples=25, deadline=None)


@st.composite
def shapes(draw, min_dims=0, max_dims=3, max_side=3):
    """A shape of 0 to 3 axes (so `()` too), sides 1 to 3 (so size-1 axes too)."""
    return tuple(draw(st.lists(st.integers(1, max_side), min_size=min_dims, max_size=max_dims)))


@st.composite
def broadcastable_shapes(draw):
    """Two shapes numpy broadcasts together, including `()`, missing leading axes and 1s."""
    full = draw(shapes())

    def operand():
        ndim = draw(st.integers(0, len(full)))  # keep only the trailing `ndim` axes ...
        kept = full[len(full) - ndim:]
        return tuple(1 if draw(st.booleans()) else n for n in kept)  # ... some shrunk to 1

    return operand(), operand()


@st.composite
def rngs(draw):
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


def normal(rng, shape):
    return np.asarray(rng.standard_normal(shape))


def positive(rng, shape):
    """Inside the domain of log and of x**p for any real p."""
    return np.asarray(rng.uniform(0.5, 2.0, shape))


def away_from_zero(rng, shape):
    """|x| >= 0.1: keeps relu's kink out of reach of finite differences."""
    return np.asarray(rng.choice([-1.0, 1.0], shape) * rng.uniform(0.1, 2.0, shape))


@st.composite
def unary(draw, values=normal):
    return (values(draw(rngs()), draw(shapes())),), {}


@st.composite
def binary(draw):
    x_shape, y_shape = draw(broadcastable_shapes())
    rng = draw(rngs())
    return (normal(rng, x_shape), normal(rng, y_shape)), {}


@st.composite
def pow_case(draw):
    exponent = draw(st.sampled_from([2, 3, -1, 0.5, 1.5, -2.5]))
    return (positive(draw(rngs()), draw(shapes())), exponent), {}


@st.composite
def matmul_case(draw):
    n, k, m = (draw(st.integers(1, 4)) for _ in range(3))
    rng = draw(rngs())
    return (normal(rng, (n, k)), normal(rng, (k, m))), {}


@st.composite
def sum_case(draw):
    shape = draw(shapes())
    ndim = len(shape)
    axis_choices = [st.none()]
    if ndim:
        one_axis = st.integers(-ndim, ndim - 1)
        some_axes = st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True)
        axis_choices += [one_axis, some_axes.map(tuple)]
    axis = draw(st.one_of(axis_choices))
    return (normal(draw(rngs()), shape),), {"axis": axis, "keepdims": draw(st.booleans())}


@st.composite
def reshape_case(draw):
    shape = draw(shapes())
    new_shape = draw(st.sampled_from([(-1,), shape[::-1], shape + (1,), (1,) + shape]))
    return (normal(draw(rngs()), shape),), {"shape": new_shape}


# The primitives whose inputs are more than arrays of one domain: (inputs, params).
SPECIAL = {"pow": pow_case(), "matmul": matmul_case(), "sum": sum_case(),
           "reshape": reshape_case()}
VALUES = {None: normal, "positive": positive, "away": away_from_zero}


def case(op):
    """The strategy for primitive `op`: its own, or inputs of the shapes and domain it takes."""
    row = OPS[op]
    if op in SPECIAL:
        return SPECIAL[op]
    assert set(row.domain) <= {0} and len(row.inputs) in (1, 2), f"give {op} a SPECIAL case"
    return binary() if len(row.inputs) == 2 else unary(VALUES[row.domain.get(0)])


# One strategy per primitive, and the same ops in torch, called the same way.
CASES = {op: case(op) for op in PRIMITIVES}
TORCH = {op: OPS[op].twin for op in PRIMITIVES}
PRIMITIVE_OPS = sorted(PRIMITIVES)


def differentiable(op, inputs):
    """Indices of the inputs the table has a rule for."""
    return [i for i in range(len(inputs)) if (op, i) in RULES]


def torch_grads(op, inputs, params, g):
    """Forward and vector-Jacobian product (with cotangent g) by torch autograd, float64."""
    leaves = [torch.tensor(x, dtype=torch.float64, requires_grad=True)
              if isinstance(x, np.ndarray) else x for x in inputs]
    out = TORCH[op](*leaves, **params)
    wanted = [leaves[i] for i in differentiable(op, inputs)]
    grads = torch.autograd.grad(out, wanted, grad_outputs=torch.from_numpy(g))
    return out.detach().numpy(), [gr.numpy() for gr in grads]


def every_primitive(test):
    """`test(op, data)` for every primitive of the table, on FEW hypothesis examples each."""
    return pytest.mark.parametrize("op", PRIMITIVE_OPS)(FEW(given(data=st.data())(test)))


def draw_case(data, op):
    """(inputs, params, out, rng): a case of `op` drawn from its strategy, the table's forward
    output on it (an ndarray), and a seeded generator for cotangents and tangents."""
    inputs, params = data.draw(CASES[op])
    return inputs, params, np.asarray(PRIMITIVES[op](*inputs, **params)), data.draw(rngs())
