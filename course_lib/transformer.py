"""The tiny transformer of notebook 05: its parameters, a numpy reference and a torch twin.

One pre-norm block on character ids `(B, T)` (T at most `block`, the length of the position
table), `D` features, an MLP of `H` hidden units and a vocabulary of `V` characters:

    x0 = tok[ids] + pos[:T]                       (B, T, D)
    x1 = x0 + attention(ln1(x0) @ Wq, ln1(x0) @ Wk, ln1(x0) @ Wv, causal) @ Wo
    x2 = x1 + relu(ln2(x1) @ W1 + b1) @ W2 + b2
    loss = mean cross-entropy of x2 @ Wout + bout against targets, over all B * T positions

The torch twin (`torch_logits`, `torch_loss_and_grads`, `torch_train`) is what the checks and
the notebook compare a learner's numpy block with; `reference_loss_and_grads` is the same
block from `course_lib.ops`, so the twin itself is tested against a second implementation.
"""
from __future__ import annotations

import numpy as np

from course_lib import ops
from course_lib.data import text_batch

KEYS = ("tok", "pos", "ln1_g", "ln1_b", "Wq", "Wk", "Wv", "Wo", "ln2_g", "ln2_b",
        "W1", "b1", "W2", "b2", "Wout", "bout")
EPS = 1e-5  # layer norm, as torch's default


def param_shapes(vocab, block, dim, hidden):
    """{name: shape} of every parameter, in forward order."""
    V, T, D, H = vocab, block, dim, hidden
    return {"tok": (V, D), "pos": (T, D), "ln1_g": (D,), "ln1_b": (D,),
            "Wq": (D, D), "Wk": (D, D), "Wv": (D, D), "Wo": (D, D),
            "ln2_g": (D,), "ln2_b": (D,), "W1": (D, H), "b1": (H,), "W2": (H, D), "b2": (D,),
            "Wout": (D, V), "bout": (V,)}


def init_params(vocab, block, dim, hidden, rng):
    """Small random matrices (std 1/sqrt(fan-in); the output layer 10x smaller, so the first
    loss is about log V), layer norms at gamma = 1, beta = 0, biases 0."""
    params = {}
    for name, shape in param_shapes(vocab, block, dim, hidden).items():
        if name.endswith("_g"):
            params[name] = np.ones(shape)
        elif len(shape) == 1:
            params[name] = np.zeros(shape)
        else:
            scale = 0.5 if name in ("tok", "pos") else 1.0 / np.sqrt(shape[0])
            params[name] = rng.standard_normal(shape) * scale * (0.1 if name == "Wout" else 1.0)
    return params


# ---------------------------------------------------------------- the torch twin

def torch_logits(P, ids):
    """The block in torch: P holds float64 tensors under KEYS, ids an int64 tensor (B, T)."""
    import torch
    import torch.nn.functional as F

    T, D = ids.shape[-1], P["tok"].shape[1]
    x0 = P["tok"][ids] + P["pos"][:T]
    h1 = F.layer_norm(x0, (D,), P["ln1_g"], P["ln1_b"], EPS)
    q, k, v = h1 @ P["Wq"], h1 @ P["Wk"], h1 @ P["Wv"]
    scores = q @ k.transpose(-1, -2) / D**0.5
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    x1 = x0 + (torch.softmax(scores, dim=-1) @ v) @ P["Wo"]
    h2 = F.layer_norm(x1, (D,), P["ln2_g"], P["ln2_b"], EPS)
    x2 = x1 + torch.relu(h2 @ P["W1"] + P["b1"]) @ P["W2"] + P["b2"]
    return x2 @ P["Wout"] + P["bout"]


def torch_loss(P, ids, targets):
    """Mean cross-entropy over all positions; ids, targets int64 tensors (B, T)."""
    import torch.nn.functional as F

    logits = torch_logits(P, ids)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def _tensors(params, grad):
    import torch
    return {k: torch.tensor(np.asarray(params[k], dtype=np.float64), requires_grad=grad)
            for k in KEYS}


def torch_loss_and_grads(params, ids, targets):
    """(loss, {name: gradient}) from torch autograd, in float64."""
    import torch

    P = _tensors(params, grad=True)
    loss = torch_loss(P, torch.as_tensor(ids), torch.as_tensor(targets))
    grads = torch.autograd.grad(loss, [P[k] for k in KEYS])
    return loss.item(), {k: g.numpy() for k, g in zip(KEYS, grads)}


def torch_eval_loss(params, ids, targets):
    """The loss alone (no gradients)."""
    import torch

    with torch.no_grad():
        return torch_loss(_tensors(params, grad=False), torch.as_tensor(ids),
                          torch.as_tensor(targets)).item()


def torch_train(params, data, steps, lr, batch_size, seed):
    """The twin of notebook 05's `train`: torch.optim.Adam on the batches `text_batch` draws
    with `np.random.default_rng(seed)`. Returns (final params as numpy, list of losses)."""
    import torch

    P = _tensors(params, grad=True)
    opt = torch.optim.Adam(list(P.values()), lr=lr, betas=(0.9, 0.999), eps=1e-8)
    rng, losses = np.random.default_rng(seed), []
    for _ in range(steps):
        ids, targets = text_batch(data, P["pos"].shape[0], batch_size, rng)
        loss = torch_loss(P, torch.as_tensor(ids), torch.as_tensor(targets))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return {k: v.detach().numpy().copy() for k, v in P.items()}, losses


def all_windows(data, block, stride=1):
    """Every window of `block` ids (stride apart) and the ids that follow: (ids, targets)."""
    starts = np.arange(0, len(data) - block, stride)
    windows = starts[:, None] + np.arange(block)
    return data[windows], data[windows + 1]


# ---------------------------------------------------------------- the numpy reference

def reference_loss_and_grads(params, ids, targets):
    """The block from course_lib.ops' reference VJPs (refused inside graded code)."""
    p, T = params, ids.shape[-1]
    D = p["tok"].shape[1]
    e, tok_vjp = ops.embedding(ids, p["tok"])
    x0 = e + p["pos"][:T]
    h1, ln1_vjp = ops.layer_norm(x0, p["ln1_g"], p["ln1_b"], EPS)
    q, k, v = h1 @ p["Wq"], h1 @ p["Wk"], h1 @ p["Wv"]
    a, att_vjp = ops.attention(q, k, v, causal=True)
    x1 = x0 + a @ p["Wo"]
    h2, ln2_vjp = ops.layer_norm(x1, p["ln2_g"], p["ln2_b"], EPS)
    m = h2 @ p["W1"] + p["b1"]
    r, relu_vjp = ops.relu(m)
    x2 = x1 + r @ p["W2"] + p["b2"]
    logits = x2 @ p["Wout"] + p["bout"]
    V = logits.shape[-1]
    loss, ce_vjp = ops.softmax_cross_entropy(logits.reshape(-1, V), targets.reshape(-1))

    def flat(a):
        return a.reshape(-1, a.shape[-1])

    g, G = ce_vjp(1.0).reshape(logits.shape), {}
    G["Wout"], G["bout"] = flat(x2).T @ flat(g), flat(g).sum(axis=0)
    gx2 = g @ p["Wout"].T
    G["W2"], G["b2"] = flat(r).T @ flat(gx2), flat(gx2).sum(axis=0)
    gm = relu_vjp(gx2 @ p["W2"].T)
    G["W1"], G["b1"] = flat(h2).T @ flat(gm), flat(gm).sum(axis=0)
    gx1, G["ln2_g"], G["ln2_b"] = ln2_vjp(gm @ p["W1"].T)
    gx1 = gx1 + gx2
    ga = gx1 @ p["Wo"].T
    G["Wo"] = flat(a).T @ flat(gx1)
    gq, gk, gv = att_vjp(ga)
    G["Wq"], G["Wk"], G["Wv"] = (flat(h1).T @ flat(gi) for gi in (gq, gk, gv))
    gh1 = gq @ p["Wq"].T + gk @ p["Wk"].T + gv @ p["Wv"].T
    gx0, G["ln1_g"], G["ln1_b"] = ln1_vjp(gh1)
    gx0 = gx0 + gx1
    G["pos"] = np.zeros_like(p["pos"])
    G["pos"][:T] = gx0.reshape(-1, T, D).sum(axis=0)       # pos was broadcast over the batch
    G["tok"] = tok_vjp(gx0)
    return loss, {k: G[k] for k in KEYS}
