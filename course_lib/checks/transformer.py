"""Checks for notebook 05: its layers (softmax, layer norm, embedding, attention), a learner's
transformer block and a training run, against torch (the block: the torch twin in
`course_lib.transformer`). Student code is reached only through `t.run`, with data.

A test cell names its cases; hidden cells add cases of the same calls, with `explain=True`
for the hints that give the formula (a visible test names the idea only):

    from course_lib.checks import suite
    from course_lib.checks import transformer as TC

    with suite("test_softmax") as t:
        TC.check_softmax(t, softmax, t.randn(4, 5, scale=2.0))
        TC.check_softmax(t, softmax, t.randn(3, 4), axis=0)
"""
from __future__ import annotations

import numpy as np

from course_lib import transformer
from course_lib.checks.core import GradeError, assert_close, assert_unchanged
from course_lib.data import char_encoding, load_text

# ---- the layers: one vjp check each, with the hints of its typical mistakes ---------------------

SOFTMAX_OUT = ("y = exp(x - max) / sum(exp(x - max)) along `axis`, with keepdims=True so the max "
               "and the sum broadcast back; subtracting the max along the axis keeps exp from "
               "overflowing for entries of magnitude 1000.")
ATTENTION_MASK = ("When causal, set the scores above the diagonal (j > i) to -inf BEFORE the "
                  "softmax; multiplying them by 0 is no mask (exp(0) = 1).")
# {layer: {argument: hint}}: what a visible test says (the idea, no formula)...
HINTS = {
    "softmax": {
        "out": SOFTMAX_OUT,
        "x": "the softmax Jacobian is diag(y) - y y^T: besides g * y there is a subtracted "
             "term, one sum per slice along the axis (the same axis as the forward pass, "
             "keepdims=True).",
    },
    "layer_norm": {
        "out": "normalise over the last axis with the BIASED variance, the mean of "
               "(x - mean)**2 (divide by D, not D - 1), computed in two passes (the mean first; "
               "mean(x**2) - mean**2 loses most digits when |x| is large), eps inside the "
               "square root, then gamma * xhat + beta.",
        "x": "x reaches the output three ways: directly through xhat, through the mean and "
             "through the variance; the last two each give a subtracted term (means over the "
             "last axis, keepdims=True).",
        "gamma": "ggamma has shape (D,): gamma scales xhat in every row, so its gradient sums "
                 "over every leading axis (all but the last).",
        "beta": "gbeta has shape (D,): beta is broadcast over every leading axis, so its "
                "gradient sums over them (all but the last).",
    },
    "embedding": {
        "out": "out = table[ids], of shape ids.shape + (D,).",
        "table": "gtable starts as zeros (V, D) and every position adds its gradient to its "
                 "id's row; an id used several times gets the SUM. Fancy-index assignment "
                 "(gtable[ids] = g, or += g) keeps one write per repeated id and loses the "
                 "others: numpy has an unbuffered add for this.",
    },
    "attention": {
        "out": "the scores compare q with k, scaled by 1/sqrt(d) (d: the last axis of q), a "
               "softmax over the keys, then the weights times v; transpose only the last two "
               "axes of a batched k (a plain transpose reverses ALL axes). " + ATTENTION_MASK,
        "q": "gq goes back through the softmax of the MASKED scores and through the 1/sqrt(d) "
             "scale of the forward pass (it scales the backward pass too); P is 0 above the "
             "diagonal, so no gradient reaches a masked position.",
        "k": "gk uses the same score gradient as gq, 1/sqrt(d) included, with its last two "
             "axes swapped; a plain transpose reverses every axis of a batched array.",
        "v": "gv has v's shape: which product of the attention weights P (..., Tq, Tk) and g "
             "(..., Tq, dv) gives it? Swap only the last two axes of P.",
    },
}
# ... and what a hidden one says instead (read on the feedback page): the formula too.
EXPLICIT_HINTS = {
    "softmax": {
        "x": "gx = y * (g - (g * y).sum(axis=axis, keepdims=True)): the softmax Jacobian is "
             "diag(y) - y y^T, so besides g * y there is a subtracted term, one sum per slice "
             "along the axis (the same axis as the forward pass).",
    },
    "layer_norm": {
        "out": "normalise over the last axis with the BIASED variance, the mean of "
               "(x - mean)**2 (divide by D, not D - 1: np.var's default ddof=0), computed in "
               "two passes (the mean first; mean(x**2) - mean**2 loses most digits when |x| is "
               "large), eps inside the square root, then gamma * xhat + beta.",
        "x": "gx = (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat)) / sqrt(var + eps) with "
             "gxhat = g * gamma and means over the last axis (keepdims=True): x reaches the "
             "output through the mean and through the variance too, and each gives a "
             "subtracted term.",
        "gamma": "ggamma = (g * xhat) summed over every leading axis (all but the last), "
                 "shape (D,).",
        "beta": "gbeta = g summed over every leading axis (all but the last), shape (D,).",
    },
    "embedding": {
        "table": "gtable starts as zeros (V, D) and the row of every id receives the gradient "
                 "of each position that used it; an id used several times gets the SUM: "
                 "np.add.at(gtable, ids, g). Fancy-index assignment (gtable[ids] = g, or += g) "
                 "keeps one write per repeated id and loses the others.",
    },
    "attention": {
        "out": "out = softmax(q @ kT / sqrt(d)) @ v with d = q.shape[-1] and kT = "
               "np.swapaxes(k, -1, -2) (k.T reverses ALL axes of a batched array). "
               + ATTENTION_MASK,
        "q": "gq = gS @ k with gS = softmax_vjp(g @ vT) / sqrt(d): the 1/sqrt(d) of the "
             "forward pass multiplies the backward pass too, and softmax_vjp is the vjp of the "
             "softmax of the MASKED scores (P = 0 above the diagonal, so no gradient reaches a "
             "masked position).",
        "k": "gk = gST @ q (gS with its last two axes swapped), with the same gS as gq, "
             "1/sqrt(d) included; gS @ q or a plain .T transposes the wrong thing.",
        "v": "gv = PT @ g with P the attention weights (the softmax of the masked scores) and "
             "PT = np.swapaxes(P, -1, -2).",
    },
}


def hints_for(layer, explain=False):
    """{argument: hint} for a layer's check: the visible wording, or the formula too."""
    return {**HINTS[layer], **(EXPLICIT_HINTS[layer] if explain else {})}


def torch_softmax(x, axis=-1):
    """The reference softmax (torch, float64)."""
    import torch
    return torch.softmax(x, dim=int(axis))


def torch_layer_norm(x, gamma, beta):
    """The reference layer norm over the last axis (torch's eps, as the notebook's)."""
    import torch
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), gamma, beta, transformer.EPS)


def torch_embedding(ids, table):
    """The reference embedding: rows of the table."""
    return table[ids]


def torch_attention(q, k, v, causal=False):
    """The reference scaled dot-product attention, masked above the diagonal when causal."""
    import torch
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if bool(causal):
        above = torch.ones(scores.shape[-2:], dtype=torch.bool).triu(1)
        scores = scores.masked_fill(above, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def check_softmax(t, softmax, x, axis=None, *, explain=False):
    """`softmax(x, axis) -> (y, vjp)` against torch; without `axis` its default (the last)."""
    __tracebackhide__ = True  # IPython: show the student's code, not ours
    inputs = {"x": x} if axis is None else {"x": x, "axis": axis}
    t.check_vjp(softmax, torch_softmax, inputs, grads=["x"],
                hints=hints_for("softmax", explain))


def check_layer_norm(t, layer_norm, x, gamma, beta, *, explain=False):
    """`layer_norm(x, gamma, beta) -> (y, vjp)` against torch, all three gradients."""
    __tracebackhide__ = True  # IPython: show the student's code, not ours
    t.check_vjp(layer_norm, torch_layer_norm, {"x": x, "gamma": gamma, "beta": beta},
                hints=hints_for("layer_norm", explain))


def check_embedding(t, embedding, ids, table, *, explain=False):
    """`embedding(ids, table) -> (out, vjp)` against torch; the vjp gives gtable only."""
    __tracebackhide__ = True  # IPython: show the student's code, not ours
    t.check_vjp(embedding, torch_embedding, {"ids": ids, "table": table}, grads=["table"],
                hints=hints_for("embedding", explain))


def check_attention(t, attention, q, k, v, causal=None, *, explain=False):
    """`attention(q, k, v, causal) -> (out, vjp)` against torch; without `causal` its default
    (no mask)."""
    __tracebackhide__ = True  # IPython: show the student's code, not ours
    inputs = {"q": q, "k": k, "v": v}
    if causal is not None:
        inputs["causal"] = causal
    t.check_vjp(attention, torch_attention, inputs, grads=["q", "k", "v"],
                hints=hints_for("attention", explain))


def random_ids(t, batch, length, vocab):
    """`(ids, targets)`, two (batch, length) int64 arrays of ids below `vocab`."""
    ids = t.labels(batch * length, vocab).reshape(batch, length)
    return ids, t.labels(batch * length, vocab).reshape(batch, length)


# ---- the block and its training ----------------------------------------------------------------

# Where each gradient comes from, for the message of the first wrong one (backward order).
BLOCK_HINTS = {
    "Wout": "logits = x2 @ Wout + bout on (B, T, D): gWout = x2.T @ glogits summed over batch "
            "AND time (flatten to (B*T, D) and (B*T, V)), with glogits = (softmax - onehot) / "
            "(B*T), the mean over every position.",
    "bout": "gbout = glogits summed over batch and time, shape (V,).",
    "W2": "x2 = x1 + f: a residual sends gx2 unchanged into both branches, so gf = gx2; then "
          "f = r @ W2 + b2 gives gW2 = r.T @ gf (over all B*T rows).",
    "b2": "gb2 = gf summed over batch and time, with gf = gx2 (the residual copies it).",
    "W1": "between f and m sits the ReLU: gm = (gf @ W2.T) * (m > 0), then gW1 = h2.T @ gm.",
    "b1": "gb1 = gm summed over batch and time, gm = (gf @ W2.T) * (m > 0).",
    "ln2_g": "h2 = layer_norm(x1, ln2_g, ln2_b): your layer_norm's vjp of gh2 = gm @ W1.T "
             "(gamma and beta gradients are summed over batch and time).",
    "ln2_b": "the layer_norm vjp of gh2 = gm @ W1.T gives gbeta = gh2 summed over batch and time.",
    "Wo": "x1 is used twice (the residual to x2 and the input of ln2): gx1 = gx2 + the "
          "layer_norm vjp's gx. Then x1 = x0 + a @ Wo gives gWo = a.T @ gx1.",
    "Wv": "ga = gx1 @ Wo.T goes through your attention's vjp (causal=True): gWv = h1.T @ gv.",
    "Wq": "attention's vjp gives gq, gk, gv; gWq = h1.T @ gq (summed over batch and time).",
    "Wk": "attention's vjp gives gq, gk, gv; gWk = h1.T @ gk (summed over batch and time).",
    "ln1_g": "h1 feeds q, k AND v, so gh1 = gq @ Wq.T + gk @ Wk.T + gv @ Wv.T (all three), "
             "then ln1's layer_norm vjp.",
    "ln1_b": "gh1 = gq @ Wq.T + gk @ Wk.T + gv @ Wv.T (all three paths), then ln1's vjp.",
    "pos": "x0 = tok[ids] + pos[:T]: pos[:T] was broadcast over the batch, so gpos[:T] = gx0 "
           "summed over the batch axis, and rows from T on (unused) get 0; gx0 = gx1 (the "
           "residual) + ln1's gx.",
    "tok": "tok's gradient is your embedding's vjp of gx0 (repeated ids add up); gx0 = gx1 "
           "(the residual path) + ln1's gx (the layer-norm path).",
}
LOSS_HINT = ("the forward pass: x0 = tok[ids] + pos[:T]; x1 = x0 + attention(h1 @ Wq, h1 @ Wk, "
             "h1 @ Wv, causal=True) @ Wo with h1 = layer_norm(x0, ln1_g, ln1_b); x2 = x1 + "
             "relu(layer_norm(x1, ln2_g, ln2_b) @ W1 + b1) @ W2 + b2; logits = x2 @ Wout + bout; "
             "the mean cross-entropy over all B*T positions.")


def random_params(t, vocab, block, dim, hidden, scale=1.0):
    """Random parameters of every kind (gamma near 1, nonzero biases), drawn from the suite."""
    params = {}
    for name, shape in transformer.param_shapes(vocab, block, dim, hidden).items():
        if name.endswith("_g"):
            params[name] = 1.0 + 0.3 * t.randn(*shape)
        elif len(shape) == 1:
            params[name] = 0.3 * t.randn(*shape)
        else:
            fan_in = 1.0 if name in ("tok", "pos") else shape[0]
            params[name] = scale * t.randn(*shape) / np.sqrt(fan_in)
    return params


def _describe(value):
    if isinstance(value, dict):
        return f"a dict with keys {sorted(value)[:20]}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    return type(value).__name__


def _copies(params):
    return {k: v.copy() for k, v in params.items()}


def check_block(t, block_loss_and_grads, params, ids, targets):
    """Loss and every gradient against torch, from the output back (the first wrong one is
    where the bug sits); params, ids and targets must be left as they were."""
    name = "block_loss_and_grads"
    V, D = params["tok"].shape
    what = (f"{name} (B={ids.shape[0]}, T={ids.shape[1]} of block {params['pos'].shape[0]}, "
            f"D={D}, H={params['W1'].shape[1]}, V={V})")
    loss_ref, grads_ref = transformer.torch_loss_and_grads(params, ids, targets)

    def probe():
        p, i, y = _copies(params), ids.copy(), targets.copy()
        return {"out": block_loss_and_grads(p, i, y), "params": p, "ids": i, "targets": y}

    got = t.run(probe, block_loss_and_grads, label=what)  # a raise tells the sizes
    out = got["out"]
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise GradeError(f"{what}: must return the pair (loss, grads); it returned "
                         f"{_describe(out)}.")
    loss, grads = out
    assert_close(loss, loss_ref, what=f"{what}: loss", hint=LOSS_HINT)
    if not isinstance(grads, dict) or set(grads) != set(transformer.KEYS):
        raise GradeError(f"{what}: grads must be a dict with the keys of params "
                         f"({', '.join(transformer.KEYS)}); it is {_describe(grads)}.")
    for key in reversed(transformer.KEYS):
        assert_close(grads[key], grads_ref[key], what=f"{what}: gradient of {key}",
                     hint=BLOCK_HINTS[key], context={"ids": ids})
    after = got["params"]
    if not isinstance(after, dict):
        raise GradeError(f"{name}: params came back as {_describe(after)}.")
    keys = list(transformer.KEYS)
    assert_unchanged(name, [after.get(k) for k in keys] + [got["ids"], got["targets"]],
                     [params[k] for k in keys] + [ids, targets],
                     names=[f"params[{k!r}]" for k in keys] + ["ids", "targets"])


def _check_trained(label, got, params, steps):
    if not (isinstance(got, (tuple, list)) and len(got) == 2):
        raise GradeError(f"{label}: train must return (params, losses); it returned "
                         f"{_describe(got)}.")
    trained, losses = got
    if not isinstance(trained, dict) or set(trained) != set(params):
        raise GradeError(f"{label}: the trained params must be a dict with the keys of params; "
                         f"got {_describe(trained)}.")
    if not (isinstance(losses, (tuple, list)) and len(losses) == steps):
        raise GradeError(f"{label}: losses must be a list of {steps} numbers, one per step; "
                         f"got {_describe(losses)}.")
    return trained, losses


def check_training(t, train, block_loss_and_grads, *, block, dim, hidden, steps, lr, batch_size,
                   twin_steps, threshold):
    """`train(params, data, steps, lr, batch_size, seed) -> (params, losses)` on the course text:
    its first `twin_steps` follow the torch twin step for step (same batches, torch's Adam), and
    a full run of `steps` brings the loss on the whole text (computed here) below `threshold`."""
    data, chars = char_encoding(load_text())
    params = transformer.init_params(len(chars), block, dim, hidden, t.rng)
    seed = int(t.rng.integers(0, 2**31))
    sizes = f"V={len(chars)}, block={block}, D={dim}, H={hidden}"

    label = (f"train({twin_steps} steps, lr={lr:g}, batch_size={batch_size}) of the block "
             f"({sizes}) against its torch twin")
    got = t.run(lambda: train(_copies(params), data.copy(), twin_steps, lr, batch_size, seed),
                train, block_loss_and_grads, label=label)
    trained, losses = _check_trained(label, got, params, twin_steps)
    twin_params, twin_losses = transformer.torch_train(params, data, twin_steps, lr, batch_size,
                                                       seed)
    assert_close(np.asarray(losses, dtype=np.float64), np.asarray(twin_losses),
                 what=f"{label}: the loss curve", rtol=1e-6, atol=1e-8,
                 hint="step 0 is the loss at the initial params (block_loss_and_grads); later "
                      "steps differ when the gradients or the Adam update differ from torch's.")
    for key in transformer.KEYS:
        assert_close(trained[key], twin_params[key], what=f"{label}: trained {key}",
                     rtol=1e-6, atol=1e-8)

    label = f"train({steps} steps, lr={lr:g}, batch_size={batch_size}) of the block ({sizes})"
    got = t.run(lambda: train(_copies(params), data.copy(), steps, lr, batch_size, seed),
                train, block_loss_and_grads, label=label)
    trained, losses = _check_trained(label, got, params, steps)
    ids, targets = transformer.all_windows(data, block, stride=3)
    try:
        final = transformer.torch_eval_loss(trained, ids, targets)
    except Exception:
        raise GradeError(f"{label}: the trained params do not fit the model's shapes.") from None
    if not final < threshold:
        raise GradeError(f"{label}: the trained block's loss on the whole text is {final:.4f}; "
                         f"it must fall below {threshold:g} (it starts near log "
                         f"{len(chars)} = {np.log(len(chars)):.2f}).")
