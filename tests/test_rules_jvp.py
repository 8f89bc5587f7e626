"""The forward-mode half of the op table (`defjvp`), op by op against torch.func.jvp, and the
duality with the reverse-mode rules: <g, J dx> = <J^T g, dx> for every op and input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.rules import JVPS, OPS, RULES, defjvp
from strategies import TORCH, differentiable, draw_case, every_primitive, normal


def torch_jvp(op, inputs, params, i, dx):
    """torch.func.jvp of `op` along input i (tangent dx), the other inputs held fixed."""
    tensors = [torch.from_numpy(x) if isinstance(x, np.ndarray) else x for x in inputs]

    def along_i(xi):
        return TORCH[op](*tensors[:i], xi, *tensors[i + 1:], **params)

    out, tangent = torch.func.jvp(along_i, (tensors[i],), (torch.from_numpy(dx),))
    return out.numpy(), tangent.numpy()


def test_every_vjp_has_its_jvp_twin():
    assert set(JVPS) == set(RULES)


def test_defjvp_refuses_an_op_without_vjps():
    with pytest.raises(ValueError, match="not a primitive"):
        defjvp("sub", lambda dx, out, x, y: dx)
    assert OPS["sub"].jvps == ()


@every_primitive
def test_jvps_match_torch_func_jvp(op, data):
    inputs, params, out, rng = draw_case(data, op)
    for i in differentiable(op, inputs):
        dx = normal(rng, inputs[i].shape)  # a random tangent: all-ones would hide transposes
        expected_out, expected = torch_jvp(op, inputs, params, i, dx)
        got = JVPS[op, i](dx, out, *inputs, **params)
        assert np.shape(got) == out.shape, f"tangent of input {i} of {op} has the wrong shape"
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@every_primitive
def test_jvp_and_vjp_are_adjoint(op, data):
    """The dot-product test, rule by rule: <g, jvp(dx)> = <vjp(g), dx>."""
    inputs, params, out, rng = draw_case(data, op)
    g = normal(rng, out.shape)
    for i in differentiable(op, inputs):
        dx = normal(rng, inputs[i].shape)
        forward = np.sum(g * JVPS[op, i](dx, out, *inputs, **params))
        backward = np.sum(RULES[op, i](g, out, *inputs, **params) * dx)
        np.testing.assert_allclose(forward, backward, rtol=1e-10, atol=1e-12)
