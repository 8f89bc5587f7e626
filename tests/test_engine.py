"""The reference engine: its Tensor API, against torch autograd, on deep graphs, in training."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib import guard
from course_lib.data import wiggly_regression
from course_lib.engine import (MLP, Linear, Tensor, apply, cross_entropy, log_softmax, sgd_step,
                               softmax)
from strategies import differentiable, draw_case, every_primitive, normal, torch_grads


def compare(engine_fn, torch_fn, *arrays, seed=0, rtol=1e-10, atol=1e-12):
    """Run engine_fn on Tensors and torch_fn on torch leaves made from `arrays`; compare the
    outputs and the gradients of every input for a random cotangent."""
    xs = [Tensor(a, requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out, expected = engine_fn(*xs), torch_fn(*ts)
    assert isinstance(out, Tensor) and out.requires_grad
    assert out.shape == tuple(expected.shape)
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=rtol, atol=atol)
    g = np.asarray(np.random.default_rng(seed).standard_normal(out.shape))
    out.backward(g)
    expected.backward(torch.from_numpy(g))
    for x, t in zip(xs, ts):
        assert isinstance(x.grad, np.ndarray) and x.grad.shape == x.shape
        np.testing.assert_allclose(x.grad, t.grad.numpy(), rtol=rtol, atol=atol)
    return out


def arrays(*shapes, seed=0, low=None):
    rng = np.random.default_rng(seed)
    if low is not None:
        return [rng.uniform(low, low + 2.0, s) for s in shapes]
    return [rng.standard_normal(s) for s in shapes]


# ---------------------------------------------------------------- every primitive, via the engine

@every_primitive
def test_engine_differentiates_every_primitive_like_torch(op, data):
    inputs, params, _, rng = draw_case(data, op)
    wanted = differentiable(op, inputs)
    tensors = [Tensor(x, requires_grad=True) if i in wanted else x for i, x in enumerate(inputs)]
    out = apply(op, *tensors, **params)
    g = normal(rng, out.shape)
    out.backward(g)
    expected_out, expected_grads = torch_grads(op, inputs, params, g)
    np.testing.assert_allclose(out.data, expected_out, rtol=1e-12, atol=1e-12)
    for i, want in zip(wanted, expected_grads):
        assert tensors[i].grad.shape == inputs[i].shape
        np.testing.assert_allclose(tensors[i].grad, want, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- the Tensor API

def test_tensor_stores_a_float64_copy():
    source = np.array([1, 2, 3])
    t = Tensor(source)
    assert isinstance(t.data, np.ndarray) and t.data.dtype == np.float64
    source[0] = 100
    assert t.data[0] == 1.0
    assert t.shape == (3,) and t.grad is None and t.requires_grad is False
    assert Tensor(2.5, True).requires_grad and Tensor([[1.0]], requires_grad=True).shape == (1, 1)
    assert "requires_grad=True" in repr(Tensor(1.0, requires_grad=True))


def test_results_require_grad_when_any_input_does():
    a, b = Tensor(1.0), Tensor(2.0, requires_grad=True)
    assert not (a * 3.0).requires_grad
    assert (a * b).requires_grad and (b + a).requires_grad and (-b).exp().requires_grad


def test_ops_read_data_when_they_run():
    p = Tensor([1.0, 2.0], requires_grad=True)
    p.data -= 0.5 * np.array([2.0, 2.0])  # what an SGD step does
    (p * p).sum().backward()
    np.testing.assert_allclose(p.grad, [0.0, 2.0])


@pytest.mark.parametrize("name, engine_fn, torch_fn", [
    ("array + T", lambda a, t: a + t, lambda a, t: a + t),
    ("T + array", lambda a, t: t + a, lambda a, t: t + a),
    ("array - T", lambda a, t: a - t, lambda a, t: a - t),
    ("T - array", lambda a, t: t - a, lambda a, t: t - a),
    ("array * T", lambda a, t: a * t, lambda a, t: a * t),
    ("T * array", lambda a, t: t * a, lambda a, t: t * a),
    ("array / T", lambda a, t: a / t, lambda a, t: a / t),
    ("T / array", lambda a, t: t / a, lambda a, t: t / a),
    ("array @ T", lambda a, t: a @ t, lambda a, t: a @ t),
    ("T @ array", lambda a, t: t @ a.T, lambda a, t: t @ a.T),
    ("2 - T", lambda a, t: 2.0 - t, lambda a, t: 2.0 - t),
    ("2 / T", lambda a, t: 2.0 / t, lambda a, t: 2.0 / t),
    ("T / 4", lambda a, t: t / 4, lambda a, t: t / 4),
    ("3 * T + 1", lambda a, t: 3 * t + 1, lambda a, t: 3 * t + 1),
])
def test_ndarray_and_numbers_on_either_side(name, engine_fn, torch_fn):
    a, = arrays((3, 3), seed=1, low=0.5)
    compare(lambda t: engine_fn(a, t), lambda t: torch_fn(torch.from_numpy(a), t),
            *arrays((3, 3), low=0.5))


def test_reshape_and_transpose():
    compare(lambda x: x.reshape(2, 3).T @ x.reshape((3, 2)).transpose(),
            lambda x: x.reshape(2, 3).T @ x.reshape(3, 2).T, *arrays((6,)))

    def f(x):
        return x.reshape(-1, 2) * x.reshape(3, -1)

    compare(f, f, *arrays((6,)))


def test_pow_needs_a_number_exponent():
    compare(lambda x: x**3 + x**-1.5 + x**0.5, lambda x: x**3 + x**-1.5 + x**0.5,
            *arrays((2, 3), low=0.5))
    with pytest.raises(TypeError, match="number"):
        Tensor(2.0) ** Tensor(3.0)


# ---------------------------------------------------------------- built from primitives

def test_sub_and_div_broadcast():
    compare(lambda x, y: (x - y) / (y * y + 1.0), lambda x, y: (x - y) / (y * y + 1.0),
            *arrays((2, 3), (3,)))

    def f(x, y):
        return x / y - y / x

    compare(f, f, *arrays((4, 1), (1, 3), low=0.5))


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2), (-1, 0), (0, 1, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_mean_and_sum_over_axes(axis, keepdims):
    dim = axis if axis is not None else tuple(range(3))
    compare(lambda x: x.mean(axis=axis, keepdims=keepdims) * x.sum(axis, keepdims),
            lambda x: x.mean(dim=dim, keepdim=keepdims) * x.sum(dim=dim, keepdim=keepdims),
            *arrays((2, 3, 4)))


def test_mean_of_everything_is_a_scalar():
    (x,) = arrays((2, 3))
    out = compare(lambda t: t.mean(), lambda t: t.mean(), x)
    assert out.shape == ()


def test_softmax_and_log_softmax():
    compare(lambda x: log_softmax(x, axis=1), lambda x: torch.log_softmax(x, dim=1),
            *arrays((4, 5)))
    compare(lambda x: softmax(x), lambda x: torch.softmax(x, dim=-1), *arrays((4, 5)))


@pytest.mark.parametrize("scale", [1.0, 1000.0])
def test_cross_entropy_matches_torch(scale):
    (logits,) = arrays((6, 4), seed=3)
    labels = np.array([0, 3, 1, 1, 2, 0], dtype=np.int64)
    out = compare(lambda z: cross_entropy(z, labels),
                  lambda z: torch.nn.functional.cross_entropy(z, torch.from_numpy(labels)),
                  logits * scale, rtol=1e-9)
    assert out.shape == () and np.isfinite(out.data)


# ---------------------------------------------------------------- graph shapes

def test_a_value_used_many_times():
    def f(x):
        return (x * x * x + x.exp() * x - x / (x * x + 1.0) + x.tanh() * x.sigmoid()).sum()

    compare(f, f, *arrays((3, 2)))


def test_paths_of_different_lengths_meet_again():
    """x reaches the output directly and through a long detour: both paths must count."""
    def f(x):
        detour = x.exp().log().exp().sum(axis=1, keepdims=True).log()
        return x - detour

    compare(f, f, *arrays((3, 4)))


def test_repeated_backward_accumulates_like_torch():
    (a,) = arrays((2, 3))
    x, t = Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    for k in range(3):
        (x * x * float(k + 1)).sum().backward()  # a fresh graph each time
        (t * t * float(k + 1)).sum().backward()
        np.testing.assert_allclose(x.grad, t.grad.numpy())
    x.grad = None
    (x * 2.0).sum().backward()
    np.testing.assert_allclose(x.grad, np.full((2, 3), 2.0))


def test_leaf_gradients_are_separate_arrays():
    x, y = Tensor(np.ones(3), requires_grad=True), Tensor(np.ones(3), requires_grad=True)
    g = np.array([1.0, 2.0, 3.0])
    (x + y).backward(g)
    assert x.grad is not y.grad and x.grad is not g
    x.grad[0] = 100.0
    np.testing.assert_allclose(y.grad, g)
    np.testing.assert_allclose(g, [1.0, 2.0, 3.0])


def test_only_leaves_keep_gradients():
    x = Tensor(np.ones(3), requires_grad=True)
    h = x * 2.0
    h.sum().backward()
    assert h.grad is None and x.grad is not None


def test_a_100000_op_chain_needs_no_recursion():
    x = Tensor(1.0, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.00001
    y.backward()
    np.testing.assert_allclose(x.grad, 1.00001**100_000, rtol=1e-9)


def test_backward_errors_are_clear():
    x = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="scalar"):
        (x * 2.0).backward()
    with pytest.raises(ValueError, match="shape"):
        (x * 2.0).backward(np.ones(2))
    with pytest.raises(RuntimeError, match="require"):
        Tensor(1.0).backward()


def test_non_scalar_backward_with_a_cotangent():
    compare(lambda x: (x @ x.T).tanh(), lambda x: (x @ x.T).tanh(), *arrays((3, 2)))


def test_backward_refuses_inside_student_code():
    x = Tensor(2.0, requires_grad=True)
    y = x * x
    with guard.student_code():
        with pytest.raises(guard.ShortcutError):
            y.backward()
    y.backward()
    assert x.grad == 4.0


# ---------------------------------------------------------------- layers and training

def test_linear_mlp_and_sgd_step():
    rng = np.random.default_rng(0)
    layer = Linear(3, 5, rng=rng)
    assert layer.W.shape == (3, 5) and layer.b.shape == (5,)
    assert all(p.requires_grad for p in layer.parameters())
    x = rng.standard_normal((4, 3))
    out = layer(Tensor(x))
    np.testing.assert_allclose(out.data, x @ layer.W.data + layer.b.data)

    model = MLP([3, 8, 8, 2], rng=rng)
    assert len(model.parameters()) == 6 and model(Tensor(x)).shape == (4, 2)
    before = [p.data.copy() for p in model.parameters()]
    (model(Tensor(x)) ** 2).mean().backward()
    grads = [p.grad for p in model.parameters()]
    sgd_step(model.parameters(), lr=0.1)
    for p, old, g in zip(model.parameters(), before, grads):
        np.testing.assert_allclose(p.data, old - 0.1 * g)
        assert p.grad is None


def test_mlp_learns_the_wiggly_regression():
    """Notebook 04's exercise: plain SGD gets the test MSE under 0.05 in a few seconds."""
    x_train, y_train, x_test, y_test = wiggly_regression(n_train=200, n_test=100, noise=0.1, seed=0)
    assert x_train.shape == y_train.shape == (200, 1) and x_test.shape == y_test.shape == (100, 1)

    def features(x):
        return 6.0 * (x - 0.5)  # spread [0, 1] over [-3, 3], where tanh bends

    rng = np.random.default_rng(0)
    model = MLP([1, 64, 64, 1], rng=rng, activation="tanh")
    for _ in range(8000):  # 0.010 to 0.027 over rng seeds 0..7; 0.015 with seed 0
        batch = rng.integers(0, len(x_train), 16)
        loss = ((model(Tensor(features(x_train[batch]))) - y_train[batch]) ** 2).mean()
        loss.backward()
        sgd_step(model.parameters(), lr=0.1)
    test_mse = float(((model(Tensor(features(x_test))).data - y_test) ** 2).mean())
    assert test_mse < 0.05, test_mse
