"""A reference reverse-mode autodiff engine, built only on the table in `course_lib.rules`.

Every `Tensor` made by a primitive op remembers the op, the arrays it ran on and which inputs
require grad. `backward()` walks that graph from the output to the leaves, asking the rules
table for one vector-Jacobian product per (op, input), and accumulates the results into the
`.grad` of the leaf tensors (the ones created with `requires_grad=True`), as torch does.

Subtraction, division, mean, softmax and cross-entropy are built from the primitives here,
so they need no gradient rules of their own.
"""
from __future__ import annotations

import itertools
import operator

import numpy as np

from course_lib import guard
from course_lib.rules import PRIMITIVES, get_rule

_clock = itertools.count()  # creation order: every tensor is newer than its inputs
_creation_order = operator.attrgetter("_seq")
_NO_PARAMS: dict = {}  # the params of every op that has none (never modified)


class Tensor:
    """An ndarray (`.data`, float64) that records the ops applied to it, for `backward()`."""

    __slots__ = ("data", "requires_grad", "grad", "_seq", "_op", "_args", "_parents", "_params")
    __array_ufunc__ = None  # makes `ndarray + Tensor` call Tensor.__radd__ instead of numpy

    def __init__(self, data, requires_grad=False):
        self.data = np.array(data, dtype=np.float64)  # a copy: the caller's array stays as is
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._seq = next(_clock)
        self._op, self._parents = None, ()  # a leaf: made by the user, not by an op

    @property
    def shape(self):
        return self.data.shape

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.data!r}{grad})"

    # ------------------------------------------------------------ primitive ops

    def __add__(self, other):
        return apply("add", self, other)

    def __radd__(self, other):
        return apply("add", other, self)

    def __mul__(self, other):
        return apply("mul", self, other)

    def __rmul__(self, other):
        return apply("mul", other, self)

    def __matmul__(self, other):
        return apply("matmul", self, other)

    def __rmatmul__(self, other):
        return apply("matmul", other, self)

    def __neg__(self):
        return apply("neg", self)

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor):
            raise TypeError("Tensor ** Tensor is not supported: the exponent must be a number")
        return apply("pow", self, exponent)

    def exp(self):
        return apply("exp", self)

    def log(self):
        return apply("log", self)

    def relu(self):
        return apply("relu", self)

    def sigmoid(self):
        return apply("sigmoid", self)

    def tanh(self):
        return apply("tanh", self)

    def sum(self, axis=None, keepdims=False):
        return apply("sum", self, axis=_axis(axis), keepdims=keepdims)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]  # reshape((2, 3)) as well as reshape(2, 3)
        return apply("reshape", self, shape=tuple(shape))

    def transpose(self):
        return apply("transpose", self)

    @property
    def T(self):
        return self.transpose()

    # ------------------------------------------------------------ built from primitives

    def __sub__(self, other):
        """x - y = x + (-y)"""
        return self + (-other)

    def __rsub__(self, other):
        """x - y = (-y) + x"""
        return (-self) + other

    def __truediv__(self, other):
        """x / y = x * y**-1"""
        if isinstance(other, Tensor):
            return self * other**-1
        return self * (1.0 / other)  # a constant: take its reciprocal in numpy, no node

    def __rtruediv__(self, other):
        """x / y = x * y**-1"""
        return other * self**-1

    def mean(self, axis=None, keepdims=False):
        """sum / n, n = how many elements each output averages"""
        total = self.sum(axis, keepdims)
        return total / (self.data.size / total.data.size)

    # ------------------------------------------------------------ reverse mode

    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf), times `grad`, into `.grad` of every leaf requiring grad.

        `grad` (shape of self) defaults to 1 when self has a single element.
        """
        guard.refuse("course_lib.engine.Tensor.backward")
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad: "
                               "no input was created with requires_grad=True")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without grad= needs a scalar output, but this "
                                   f"tensor has shape {self.shape}; pass grad= of that shape")
            grad = np.ones(self.shape)
        else:
            grad = np.asarray(grad, dtype=np.float64)
            if grad.shape != self.shape:
                raise ValueError(f"grad has shape {grad.shape}, expected {self.shape}")

        grads = {self: grad}  # tensor -> d(self)/d(tensor), summed over the paths seen so far
        for node in _newest_first(self):
            g = grads.pop(node)  # all consumers of `node` are done: its gradient is complete
            if node._op is None:  # a leaf: keep its gradient
                if node.grad is None:
                    node.grad = np.array(g)  # a copy: g may be shared with other inputs
                else:
                    node.grad += g
                continue
            for argnum, parent in enumerate(node._parents):
                if parent is not None:
                    rule = get_rule(node._op, argnum)
                    g_parent = rule(g, node.data, *node._args, **node._params)
                    pending = grads.get(parent)
                    grads[parent] = g_parent if pending is None else pending + g_parent


def apply(op, *inputs, **params):
    """Run primitive `op` on Tensors and/or constants; record it if any input requires grad."""
    args, parents = [], []  # what the forward function gets; the inputs to differentiate
    for x in inputs:
        if isinstance(x, Tensor):
            args.append(x.data)
            parents.append(x if x.requires_grad else None)
        else:  # a constant (number or ndarray): used as is, never differentiated
            args.append(x)
            parents.append(None)
    data = PRIMITIVES[op](*args, **params)
    out = Tensor.__new__(Tensor)  # skip __init__: no copy or dtype conversion needed here
    out.data = data if type(data) is np.ndarray else np.asarray(data)  # 0-d results come as scalars
    out.grad = None
    out._seq = next(_clock)
    out.requires_grad = parents.count(None) < len(parents)  # some input requires grad
    if out.requires_grad:  # keep the node small: it lives until backward (tuples, shared {})
        out._op, out._args, out._parents = op, tuple(args), tuple(parents)
        out._params = params or _NO_PARAMS
    else:
        out._op, out._parents = None, ()  # a constant: nothing to differentiate, keep nothing
    return out


def _newest_first(root):
    """`root` and all tensors it depends on through inputs that require grad, newest first.

    A tensor is always created after its inputs, so in this order every tensor comes after
    all the tensors that consumed it. The search uses a stack, not recursion, so a chain of
    10**6 ops is fine.
    """
    seen, stack = {root}, [root]
    while stack:
        for parent in stack.pop()._parents:
            if parent is not None and parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return sorted(seen, key=_creation_order, reverse=True)


def _axis(axis):
    """Accept an int, a tuple or a list of axes (numpy wants a tuple)."""
    return tuple(axis) if isinstance(axis, list) else axis


# ---------------------------------------------------------------- losses built from primitives

def log_softmax(x, axis=-1):
    """x - log(sum(e**x)), after subtracting the max of x, which changes nothing but overflow."""
    # The max is a constant here (no gradient flows through it): log_softmax(x - c) equals
    # log_softmax(x) for any c, so its gradient with respect to x is unchanged.
    shifted = x - x.data.max(axis=axis, keepdims=True)
    return shifted - shifted.exp().sum(axis=axis, keepdims=True).log()


def softmax(x, axis=-1):
    """e**log_softmax(x)"""
    return log_softmax(x, axis).exp()


def cross_entropy(logits, labels):
    """Mean over the batch of -log softmax(logits)[i, labels[i]]; logits (N, C), labels int (N,)."""
    n, c = logits.shape
    onehot = np.eye(c)[labels]  # picks each row's label entry out of the sum below
    return -(log_softmax(logits, axis=1) * onehot).sum() / n


# ---------------------------------------------------------------- layers and training

class Linear:
    """x @ W + b with W (in, out) and b (out,), both ~ U(-1/sqrt(in), 1/sqrt(in)) as in torch."""

    def __init__(self, in_features, out_features, rng=None):
        rng = np.random.default_rng() if rng is None else rng
        bound = 1.0 / np.sqrt(in_features)
        self.W = Tensor(rng.uniform(-bound, bound, (in_features, out_features)), requires_grad=True)
        self.b = Tensor(rng.uniform(-bound, bound, out_features), requires_grad=True)

    def __call__(self, x):
        return x @ self.W + self.b

    def parameters(self):
        return [self.W, self.b]


class MLP:
    """Linear layers of the given sizes with an activation ("relu" or "tanh") between them."""

    def __init__(self, sizes, rng=None, activation="relu"):
        rng = np.random.default_rng() if rng is None else rng
        self.layers = [Linear(a, b, rng) for a, b in zip(sizes[:-1], sizes[1:])]
        self.activation = activation

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = getattr(layer(x), self.activation)()
        return self.layers[-1](x)

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]


def sgd_step(params, lr):
    """p <- p - lr * dL/dp for each parameter, then clear its gradient for the next step."""
    for p in params:
        if p.grad is not None:
            p.data -= lr * p.grad
            p.grad = None
