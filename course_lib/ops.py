"""Layers in numpy with reference vector-Jacobian products (notebooks 02, 03 and 05).

Every layer returns `(out, vjp)`: the forward result and a function mapping the upstream
gradient `g` (shape of `out`) to the gradient of each input. The vjp closures are reference
gradients, so they refuse to run inside graded student code (see `course_lib.guard`).
The plain forward helpers at the top (`softmax`, `log_softmax`, `logsumexp`,
`sigmoid_forward`) are free to use anywhere.
"""
from __future__ import annotations

import numpy as np

from course_lib import guard
from course_lib.rules import sigmoid_forward  # the overflow-free sigmoid of the rules table


# ---------------------------------------------------------------- stable forward helpers

def logsumexp(z, axis=None, keepdims=False):
    """log(sum(e**z)) = m + log(sum(e**(z - m))) with m = max z, so e**(...) <= 1."""
    z = np.asarray(z, dtype=np.float64)
    m = np.max(z, axis=axis, keepdims=True)
    out = m + np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)


def log_softmax(z, axis=-1):
    """log softmax(z) = z - logsumexp(z)"""
    return np.asarray(z, dtype=np.float64) - logsumexp(z, axis=axis, keepdims=True)


def softmax(z, axis=-1):
    """e**z / sum(e**z), shifted by max z first (softmax ignores shifts) to avoid overflow."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


# ---------------------------------------------------------------- layers with reference vjps

def affine(x, w, b):
    """out = x @ w + b for x (N, in), w (in, out), b (out,); vjp(g) -> (gx, gw, gb)."""
    out = x @ w + b

    def vjp(g):
        guard.refuse("course_lib.ops.affine")
        return g @ w.T, x.T @ g, g.sum(axis=0)

    return out, vjp


def relu(x):
    """out = max(x, 0); vjp(g) -> g where x > 0, else 0."""
    out = np.maximum(x, 0.0)

    def vjp(g):
        guard.refuse("course_lib.ops.relu")
        return g * (x > 0)

    return out, vjp


def sigmoid(x):
    """out = 1 / (1 + e**-x); vjp(g) -> g * out * (1 - out)."""
    out = sigmoid_forward(x)

    def vjp(g):
        guard.refuse("course_lib.ops.sigmoid")
        return g * out * (1.0 - out)

    return out, vjp


def tanh(x):
    """out = tanh x; vjp(g) -> g * (1 - out**2)."""
    out = np.tanh(x)

    def vjp(g):
        guard.refuse("course_lib.ops.tanh")
        return g * (1.0 - out**2)

    return out, vjp


def mse_loss(pred, target):
    """loss = mean((pred - target)**2) as a float; vjp(g=1.0) -> g * 2 (pred - target) / size."""
    diff = pred - target
    loss = float(np.mean(diff**2))

    def vjp(g=1.0):
        guard.refuse("course_lib.ops.mse_loss")
        return g * 2.0 * diff / diff.size

    return loss, vjp


def softmax_cross_entropy(logits, labels):
    """loss = mean over the batch of -log softmax(logits)[i, labels[i]] as a float.

    logits (N, C), labels int (N,); vjp(g=1.0) -> g * (softmax(logits) - onehot(labels)) / N.
    """
    n = logits.shape[0]
    rows = np.arange(n)
    log_p = log_softmax(logits, axis=1)
    loss = float(-np.mean(log_p[rows, labels]))

    def vjp(g=1.0):
        guard.refuse("course_lib.ops.softmax_cross_entropy")
        glogits = np.exp(log_p)  # softmax(logits)
        glogits[rows, labels] -= 1.0
        return g * glogits / n

    return loss, vjp


# ---------------------------------------------------------------- transformer pieces (notebook 05)

def softmax_op(x, axis=-1):
    """out = softmax(x) along axis (ops.softmax is the forward alone);
    vjp(g) -> out * (g - sum(g * out, axis))."""
    out = softmax(x, axis=axis)

    def vjp(g):
        guard.refuse("course_lib.ops.softmax_op")
        return out * (g - np.sum(g * out, axis=axis, keepdims=True))

    return out, vjp


def layer_norm(x, gamma, beta, eps=1e-5):
    """out = gamma * (x - mean) / sqrt(var + eps) + beta over the last axis (biased var);
    vjp(g) -> (gx, ggamma, gbeta) with gx = (gh - mean(gh) - xhat * mean(gh * xhat)) / std."""
    mean = x.mean(axis=-1, keepdims=True)
    std = np.sqrt(((x - mean) ** 2).mean(axis=-1, keepdims=True) + eps)
    xhat = (x - mean) / std
    out = gamma * xhat + beta

    def vjp(g):
        guard.refuse("course_lib.ops.layer_norm")
        lead = tuple(range(g.ndim - 1))
        gh = g * gamma
        gx = (gh - gh.mean(axis=-1, keepdims=True)
              - xhat * (gh * xhat).mean(axis=-1, keepdims=True)) / std
        return gx, (g * xhat).sum(axis=lead), g.sum(axis=lead)

    return out, vjp


def embedding(ids, table):
    """out = table[ids] for int ids of any shape, table (V, D);
    vjp(g) -> gtable (V, D), rows of g added at their ids (repeats accumulate)."""
    out = table[ids]

    def vjp(g):
        guard.refuse("course_lib.ops.embedding")
        gtable = np.zeros_like(table)
        np.add.at(gtable, ids, g)
        return gtable

    return out, vjp


def attention(q, k, v, causal=False):
    """out = softmax(q @ k^T / sqrt(d) + mask) @ v over (..., T, d) (mask: -inf above the
    diagonal when causal); vjp(g) -> (gq, gk, gv)."""
    scale = 1.0 / np.sqrt(q.shape[-1])
    scores = (q @ np.swapaxes(k, -1, -2)) * scale             # (..., Tq, Tk)
    if causal:
        above = np.triu(np.ones(scores.shape[-2:], dtype=bool), k=1)
        scores = np.where(above, -np.inf, scores)
    p = softmax(scores, axis=-1)
    out = p @ v

    def vjp(g):
        guard.refuse("course_lib.ops.attention")
        gp = g @ np.swapaxes(v, -1, -2)
        gv = np.swapaxes(p, -1, -2) @ g
        gs = p * (gp - np.sum(gp * p, axis=-1, keepdims=True)) * scale
        return gs @ k, np.swapaxes(gs, -1, -2) @ q, gv

    return out, vjp
