"""The numpy layers of notebooks 02, 03 and 05 and their reference vjps, against torch autograd."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from course_lib import guard, ops


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def leaf(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def torch_vjp(fn, arrays, g):
    """Output of fn on torch leaves and the gradient of each leaf for the cotangent g."""
    leaves = [leaf(a) for a in arrays]
    out = fn(*leaves)
    grads = torch.autograd.grad(out, leaves, grad_outputs=torch.as_tensor(g, dtype=torch.float64))
    return out.detach().numpy(), [gr.numpy() for gr in grads]


def assert_close(got, want):
    assert np.shape(got) == np.shape(want)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- layers

def test_affine(rng):
    x, w, b = rng.standard_normal((5, 3)), rng.standard_normal((3, 4)), rng.standard_normal(4)
    out, vjp = ops.affine(x, w, b)
    g = rng.standard_normal(out.shape)
    want_out, want = torch_vjp(lambda x, w, b: x @ w + b, [x, w, b], g)
    assert_close(out, want_out)
    for got, expected in zip(vjp(g), want):
        assert_close(got, expected)


@pytest.mark.parametrize("name, torch_fn", [
    ("relu", torch.relu), ("sigmoid", torch.sigmoid), ("tanh", torch.tanh),
])
def test_activations(name, torch_fn, rng):
    x = rng.choice([-1.0, 1.0], (4, 3)) * rng.uniform(0.1, 3.0, (4, 3))  # no x near relu's kink
    out, vjp = getattr(ops, name)(x)
    g = rng.standard_normal(out.shape)
    want_out, (want,) = torch_vjp(torch_fn, [x], g)
    assert_close(out, want_out)
    assert_close(vjp(g), want)


def test_mse_loss(rng):
    pred, target = rng.standard_normal((6, 2)), rng.standard_normal((6, 2))
    loss, vjp = ops.mse_loss(pred, target)
    assert isinstance(loss, float)
    g = float(rng.uniform(0.5, 2.0))  # a cotangent other than 1

    def torch_loss(p):
        return torch.mean((p - torch.from_numpy(target)) ** 2)

    want_loss, (want,) = torch_vjp(torch_loss, [pred], g)
    assert loss == pytest.approx(float(want_loss))
    assert_close(vjp(g), want)
    assert_close(vjp(), torch_vjp(torch_loss, [pred], 1.0)[1][0])


@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_softmax_cross_entropy(scale, rng):
    logits = rng.standard_normal((5, 4)) * scale
    labels = np.array([0, 3, 3, 1, 2], dtype=np.int64)
    loss, vjp = ops.softmax_cross_entropy(logits, labels)
    assert isinstance(loss, float) and np.isfinite(loss)

    def torch_loss(z):
        return torch.nn.functional.cross_entropy(z, torch.from_numpy(labels))

    g = float(rng.uniform(0.5, 2.0))
    want_loss, (want,) = torch_vjp(torch_loss, [logits], g)
    assert loss == pytest.approx(float(want_loss), rel=1e-12)
    got = vjp(g)
    assert np.all(np.isfinite(got))
    assert_close(got, want)
    assert_close(vjp(), torch_vjp(torch_loss, [logits], 1.0)[1][0])


# ---------------------------------------------------------------- transformer pieces

@pytest.mark.parametrize("shape, axis, scale", [((3, 5), -1, 1.0), ((2, 3, 4), 1, 1.0),
                                                ((4, 3), 0, 1000.0), ((5,), 0, 1.0)])
def test_softmax_op(shape, axis, scale, rng):
    x = scale * rng.standard_normal(shape)
    out, vjp = ops.softmax_op(x, axis=axis)
    g = rng.standard_normal(shape)
    want_out, (want,) = torch_vjp(lambda t: torch.softmax(t, dim=axis), [x], g)
    assert_close(out, want_out)
    assert_close(vjp(g), want)


@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 5), (3, 1)])
def test_layer_norm(shape, rng):
    x = 3.0 * rng.standard_normal(shape) + 100.0
    gamma, beta = rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])
    out, vjp = ops.layer_norm(x, gamma, beta)
    g = rng.standard_normal(shape)
    want_out, want = torch_vjp(
        lambda x, w, b: torch.nn.functional.layer_norm(x, (shape[-1],), w, b, 1e-5),
        [x, gamma, beta], g)
    assert_close(out, want_out)
    for got, expected in zip(vjp(g), want):
        np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-10)


def test_embedding_accumulates_repeated_ids(rng):
    ids = np.array([[0, 2, 2], [3, 0, 2]])
    table = rng.standard_normal((4, 5))
    out, vjp = ops.embedding(ids, table)
    g = rng.standard_normal(out.shape)
    want_out, (want,) = torch_vjp(lambda t: t[torch.from_numpy(ids)], [table], g)
    assert_close(out, want_out)
    assert_close(vjp(g), want)
    assert_close(vjp(g)[2], g[0, 1] + g[0, 2] + g[1, 2])


@pytest.mark.parametrize("causal, tq, tk, lead", [(False, 3, 5, (2,)), (True, 4, 4, (2, 3)),
                                                  (True, 1, 1, ()), (False, 4, 2, ())])
def test_attention(causal, tq, tk, lead, rng):
    q = rng.standard_normal((*lead, tq, 3))
    k, v = rng.standard_normal((*lead, tk, 3)), rng.standard_normal((*lead, tk, 2))

    def reference(q, k, v):
        s = q @ k.transpose(-1, -2) / np.sqrt(3)
        if causal:
            s = s.masked_fill(torch.ones(tq, tk).triu(1).bool(), float("-inf"))
        return torch.softmax(s, dim=-1) @ v

    out, vjp = ops.attention(q, k, v, causal=causal)
    g = rng.standard_normal(out.shape)
    want_out, want = torch_vjp(reference, [q, k, v], g)
    assert_close(out, want_out)
    for got, expected in zip(vjp(g), want):
        assert_close(got, expected)


# ---------------------------------------------------------------- stable forward helpers

def test_forward_helpers_match_torch(rng):
    z = rng.standard_normal((3, 5))
    t = torch.from_numpy(z)
    assert_close(ops.softmax(z), torch.softmax(t, dim=-1).numpy())
    assert_close(ops.softmax(z, axis=0), torch.softmax(t, dim=0).numpy())
    assert_close(ops.log_softmax(z, axis=1), torch.log_softmax(t, dim=1).numpy())
    assert_close(ops.logsumexp(z), torch.logsumexp(t, dim=(0, 1)).numpy())
    assert_close(ops.logsumexp(z, axis=1, keepdims=True),
                 torch.logsumexp(t, dim=1, keepdim=True).numpy())
    assert_close(ops.sigmoid_forward(z), torch.sigmoid(t).numpy())


def test_forward_helpers_are_stable_at_1000():
    z = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -999.0, -1000.0]])
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        np.testing.assert_array_equal(ops.sigmoid_forward(np.array([1000.0, -1000.0])), [1.0, 0.0])
        out, vjp = ops.sigmoid(np.array([1000.0, -1000.0]))
        assert np.all(np.isfinite(vjp(np.ones(2))))
        p = ops.softmax(z, axis=1)
        assert np.all(np.isfinite(p)) and np.allclose(p.sum(axis=1), 1.0)
        assert np.all(np.isfinite(ops.log_softmax(z, axis=1)))
        expected = [1000.0, -999.0 + np.log1p(2 * np.exp(-1.0))]
        np.testing.assert_allclose(ops.logsumexp(z, axis=1), expected)


# ---------------------------------------------------------------- the guard

@pytest.mark.parametrize("name, make", [
    ("affine", lambda: ops.affine(np.ones((2, 3)), np.ones((3, 1)), np.ones(1))),
    ("relu", lambda: ops.relu(np.ones(3))),
    ("sigmoid", lambda: ops.sigmoid(np.ones(3))),
    ("tanh", lambda: ops.tanh(np.ones(3))),
    ("mse_loss", lambda: ops.mse_loss(np.ones(3), np.zeros(3))),
    ("softmax_cross_entropy", lambda: ops.softmax_cross_entropy(np.ones((2, 3)), np.array([0, 2]))),
    ("softmax_op", lambda: ops.softmax_op(np.ones((2, 3)))),
    ("layer_norm", lambda: ops.layer_norm(np.ones((2, 3)), np.ones(3), np.zeros(3))),
    ("embedding", lambda: ops.embedding(np.array([1, 1]), np.ones((3, 2)))),
    ("attention", lambda: ops.attention(np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 3)))),
])
def test_vjps_refuse_inside_student_code(name, make):
    with guard.student_code():
        out, vjp = make()  # forward passes are fine
        with pytest.raises(guard.ShortcutError, match=f"course_lib.ops.{name}"):
            vjp(np.ones(np.shape(out)) if np.ndim(out) else 1.0)
    out, vjp = make()
    vjp(np.ones(np.shape(out)) if np.ndim(out) else 1.0)  # and work again outside
