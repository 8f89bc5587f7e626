"""Checks for notebook 03: the vjps of a layer, three activations and two losses, and the MLP
built from them, against torch in float64.

Each check draws its inputs from the suite `t` (so the kernel and the grader draw the same
numbers, in the same order), then reaches the student's function through `t.check_vjp` or
`t.run` only, as every test cell does:

    from course_lib.checks import suite
    from course_lib.checks import layers as L

    with suite("test_relu_hidden") as t:
        for shape in [(5, 3), (), (2048, 2560)]:
            L.check_activation(t, "relu", relu, shape, explain=True)

A visible test's hints nudge: they name the rule, axis or shape to look at, never the formula
(a student reads them in the released notebook). `explain=True`, for the hidden tests, names
the formula too.
"""
from __future__ import annotations

import numpy as np

from course_lib.checks.core import GradeError, assert_close, assert_unchanged

SIGMOID_NUDGE = {
    "out": "sigmoid(x) = 1 / (1 + exp(-x)); to stay finite for |x| up to 1000, exp() must "
           "never see a large positive argument: treat x >= 0 and x < 0 separately, each "
           "with exp(-|x|).",
    "x": "write the derivative with the output y = sigmoid(x) and reuse it. A naive formula "
         "with exp(x) overflows (inf/inf = nan) once x > 709.",
}
CROSS_ENTROPY_NUDGE = {
    "out": "the loss is the batch mean of each row's log-sum-exp minus the logit of its "
           "label. Logits as large as 1000 overflow exp: subtract each row's max before "
           "exp, and compute log-probabilities directly, not log(softmax), which is log(0) "
           "= -inf when a probability underflows.",
    "logits": "the gradient compares the softmax probabilities with the one-hot labels, "
              "averaged over the batch, times g; use a softmax that does not overflow "
              "(subtract each row's max).",
}

# {function: {what: hint}}: the nudges of the visible tests ...
NUDGES = {
    "affine": {
        "x": "dL/dx has x's shape (N, D): which product of g (N, M) and w (D, M), one of them "
             "transposed, gives it?",
        "w": "dL/dw has w's shape (D, M): which product of x (N, D) and g (N, M) gives it? The "
             "sum runs over the batch.",
        "b": "b was added to every row, so its gradient sums g over the batch axis; shape (M,).",
    },
    "relu": {
        "out": "relu keeps the positive entries and sets the others to 0; same shape as x.",
        "x": "relu lets the gradient through only where x > 0: a mask multiplies g (not g "
             "itself, and not the mask alone).",
    },
    "sigmoid": SIGMOID_NUDGE,
    "tanh": {
        "out": "numpy has tanh built in.",
        "x": "write the derivative of tanh with its output y = tanh(x): there is a square in it "
             "(1 - y is the derivative of something else).",
    },
    "mse_loss": {
        "out": "the mean over all elements of the squared difference.",
        "pred": "the power rule on the square, and the mean divides by the number of elements "
                "(pred.size); then times g.",
    },
    "softmax_cross_entropy": CROSS_ENTROPY_NUDGE,
}

# ... and the explanations of the hidden ones (explain=True), formula included
EXPLAINED = {
    "affine": {
        "x": "dL/dx = g @ w.T: (N, M) @ (M, D) -> (N, D).",
        "w": "dL/dw = x.T @ g: (D, N) @ (N, M) -> (D, M); the sum runs over the batch.",
        "b": "b was added to every row, so its gradient sums g over the batch: "
             "g.sum(axis=0), shape (M,).",
    },
    "relu": {
        "out": "relu(x) = np.maximum(x, 0.0), same shape as x.",
        "x": "relu lets the gradient through only where x > 0: gx = g * (x > 0) "
             "(a mask, not g itself, and not the mask alone).",
    },
    "sigmoid": {
        "out": "sigmoid(x) = 1 / (1 + exp(-x)); to stay finite for |x| up to 1000, exp() must "
               "not overflow: with z = exp(-|x|), use 1/(1+z) where x >= 0 and z/(1+z) where "
               "x < 0.",
        "x": "sigmoid'(x) = y * (1 - y) with y = sigmoid(x): reuse the output. The naive "
             "exp(x) / (1 + exp(x))**2 overflows (inf/inf = nan) once x > 709.",
    },
    "tanh": {
        "out": "use np.tanh(x).",
        "x": "d tanh(x)/dx = 1 - tanh(x)**2, so gx = g * (1 - y**2) with y = tanh(x) "
             "(squared: 1 - y is the derivative of something else).",
    },
    "mse_loss": {
        "out": "the mean over all elements of (pred - target)**2.",
        "pred": "d/dpred mean((pred - target)**2) = 2 * (pred - target) / pred.size, times g.",
    },
    "softmax_cross_entropy": {
        "out": "loss = mean over the batch of logsumexp(logits[n]) - logits[n, labels[n]]. "
               "Logits as large as 1000 overflow np.exp: subtract each row's max before exp, "
               "and compute log-probabilities directly (shifted - log(sum(exp(shifted)))), not "
               "log(softmax), which is log(0) = -inf when a probability underflows.",
        "logits": "glogits = g * (softmax(logits) - onehot(labels)) / N, with a softmax that "
                  "does not overflow (subtract each row's max before exp).",
    },
}

ACTIVATIONS = ("relu", "sigmoid", "tanh")


def hints(name, explain=False):
    """The hints for `name`'s output and gradients: nudges, or with `explain` the formulas."""
    return (EXPLAINED if explain else NUDGES)[name]


def torch_twin(name):
    """The float64 torch function `name` is checked against (torch imported only when used)."""
    import torch
    return {
        "affine": lambda x, w, b: x @ w + b,
        "relu": torch.relu,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "mse_loss": lambda p, y: ((p - y) ** 2).mean(),
        "softmax_cross_entropy": torch.nn.functional.cross_entropy,
    }[name]


def distinct_sizes(t, count, low, high):
    """`count` different sizes in [low, high), drawn from the suite (as ints)."""
    return tuple(int(v) for v in t.rng.choice(np.arange(low, high), size=count, replace=False))


def check_vjp(t, name, f, inputs, *, grads=None, explain=False):
    """`f(*inputs) -> (out, vjp)` against its torch twin, with the hints of `name`."""
    __tracebackhide__ = True  # IPython: show the student's code, not ours
    t.check_vjp(f, torch_twin(name), inputs, name=name, grads=grads,
                hints=hints(name, explain))


def check_affine(t, affine, n, d, m, *, w_scale=1.0, explain=False):
    """`affine(x, w, b)` with x (n, d), w (d, m) (times `w_scale`) and b (m,)."""
    __tracebackhide__ = True
    x, w, b = t.randn(n, d), t.randn(d, m, scale=w_scale), t.randn(m)
    check_vjp(t, "affine", affine, {"x": x, "w": w, "b": b}, explain=explain)


def check_activation(t, name, f, shape, *, scale=1.0, explain=False):
    """Activation `name` on normal values of `shape` times `scale` (relu's kept off its kink)."""
    __tracebackhide__ = True
    draw = t.away_from_zero if name == "relu" else t.randn
    check_activation_at(t, name, f, draw(*shape, scale=scale), explain=explain)


def check_activation_at(t, name, f, x, *, explain=False):
    """Activation `name` (one of ACTIVATIONS) at the given values `x`."""
    __tracebackhide__ = True
    check_vjp(t, name, f, {"x": np.asarray(x, dtype=np.float64)}, explain=explain)


def check_mse_loss(t, mse_loss, shape, *, scale=1.0, explain=False):
    """`mse_loss(pred, target)` on arrays of `shape` (pred times `scale`); only pred's gradient."""
    __tracebackhide__ = True
    pred, target = t.randn(*shape, scale=scale), t.randn(*shape)
    check_vjp(t, "mse_loss", mse_loss, {"pred": pred, "target": target}, grads=["pred"],
              explain=explain)


def check_cross_entropy(t, f, rows, classes, *, scale=1.0, correct_shift=0.0, explain=False):
    """`softmax_cross_entropy` on (rows, classes) normal logits times `scale`, random labels;
    `correct_shift` is added to each row's logit of its label (-1000: far below the others)."""
    __tracebackhide__ = True
    logits, labels = t.randn(rows, classes, scale=scale), t.labels(rows, classes)
    if correct_shift:
        logits[np.arange(rows), labels] += correct_shift
    check_cross_entropy_at(t, f, logits, labels, explain=explain)


def check_cross_entropy_at(t, f, logits, labels, *, explain=False):
    """`softmax_cross_entropy(logits, labels)` at the given values; only the logits' gradient."""
    __tracebackhide__ = True
    check_vjp(t, "softmax_cross_entropy", f, {"logits": logits, "labels": labels},
              grads=["logits"], explain=explain)


# ---- the MLP: mlp_loss_and_grads(params, x, labels) -> (loss, [(gW, gb), ...]) ----------------

MLP_LOSS_HINT = ("the network is affine, ReLU, affine, ReLU, ..., affine (no ReLU after the "
                 "last layer: its outputs are the logits), then softmax_cross_entropy.")
LAST_LAYER_HINT = {
    False: "the last layer's gradients are the affine vjp of the loss's gradient (its vjp of "
           "1.0), with the last layer's input (after the ReLU).",
    True: "the last layer's gradients are the affine vjp of g = the loss's vjp(1.0) "
          "(softmax - onehot) / N, with the last layer's input (after the ReLU).",
}
INPUT_GRADIENT = {False: "the gradient for its input", True: "gx = g @ W.T"}


def random_params(t, sizes):
    """(W, b) per layer for layer sizes [d_in, ..., classes], scaled to keep ReLUs alive."""
    return [(t.randn(d_in, d_out, scale=1.5 / np.sqrt(d_in)), t.randn(d_out, scale=0.5))
            for d_in, d_out in zip(sizes[:-1], sizes[1:])]


def torch_mlp(params, x, labels):
    """Reference loss and (gW, gb) pairs from torch autograd, in float64."""
    import torch
    pairs = [(torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True))
             for W, b in params]
    h = torch.tensor(x)
    for i, (W, b) in enumerate(pairs):
        h = h @ W + b
        if i < len(pairs) - 1:
            h = torch.relu(h)
    loss = torch.nn.functional.cross_entropy(h, torch.tensor(labels))
    flat = torch.autograd.grad(loss, [p for pair in pairs for p in pair])
    return loss.item(), [(flat[2 * i].numpy(), flat[2 * i + 1].numpy())
                         for i in range(len(pairs))]


def describe_structure(value):
    """What a returned value is, its first items included: "a list of 2 items (float, ...)"."""
    if isinstance(value, (tuple, list)):
        inner = ", ".join(describe_structure(v) for v in value[:4]) + \
            (", ..." if len(value) > 4 else "")
        return f"a {type(value).__name__} of {len(value)} items ({inner})"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    return f"{type(value).__name__}"


def layer_hint(i, layers, explain=False):
    """Where layer i's gradients come from, for the first wrong one (the last layer first)."""
    if i == layers - 1:
        return LAST_LAYER_HINT[explain]
    return (f"layer {i + 2}'s gradients are right, so look at the step back from layer "
            f"{i + 2} to layer {i + 1}: g goes through layer {i + 2}'s affine vjp "
            f"({INPUT_GRADIENT[explain]}), then through the ReLU mask of layer {i + 1}'s "
            f"output (zero where the pre-activation was <= 0), before layer {i + 1}'s affine "
            "vjp.")


def _check_pair(what, out):
    """`out` must be the pair (loss, grads)."""
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise GradeError(f"{what}: must return the pair (loss, grads); it returned "
                         f"{describe_structure(out)}.")


def _check_grads_structure(what, grads, layers):
    """`grads` must be a list of `layers` (gW, gb) pairs, as params is."""
    if not (isinstance(grads, (tuple, list)) and len(grads) == layers
            and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in grads)):
        raise GradeError(f"{what}: grads must have the structure of params: a list of {layers} "
                         f"(gW, gb) pairs, one per layer in the order of params; it is "
                         f"{describe_structure(grads)}.")


def check_mlp(t, f, sizes, rows, *, explain=False):
    """`f(params, x, labels)` for random params of layer `sizes` and `rows` examples: the loss,
    then every gradient from the last layer back (the first wrong one is where the bug sits);
    params, x and labels must be left as they were."""
    __tracebackhide__ = True
    params = random_params(t, sizes)
    x, labels = t.randn(rows, sizes[0]), t.labels(rows, sizes[-1])
    name, layers = "mlp_loss_and_grads", len(params)
    what = f"{name} (layer sizes {list(sizes)}, N={rows})"
    loss_ref, grads_ref = torch_mlp(params, x, labels)

    def probe():
        p = [(W.copy(), b.copy()) for W, b in params]
        xc, yc = x.copy(), labels.copy()
        out = f(p, xc, yc)
        return {"out": out, "args": [a for pair in p for a in pair] + [xc, yc]}

    got = t.run(probe, f, label=name)
    _check_pair(what, got["out"])
    loss, grads = got["out"]
    assert_close(loss, loss_ref, what=f"{what}: loss", hint=MLP_LOSS_HINT)
    _check_grads_structure(what, grads, layers)
    for i in reversed(range(layers)):                  # the last layer first: errors flow back
        for k, param in enumerate("Wb"):
            assert_close(grads[i][k], grads_ref[i][k], hint=layer_hint(i, layers, explain),
                         context={"x": x},
                         what=f"{what}: gradient of {param}{i + 1} (layer {i + 1} of {layers})")
    assert_unchanged(name, got["args"], [a for pair in params for a in pair] + [x, labels])
