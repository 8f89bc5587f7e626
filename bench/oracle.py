"""The sized hidden cases against a numerical oracle: honest answers vs one forward per element.

Every gradient exercise of notebooks 02, 03 and 05 has a hidden case sized so that any method
needing one forward evaluation per input element (finite differences, complex step, a
forward-mode sweep) needs far more than the per-call limit, while the honest answer is quick.
For each sized case this prints: the honest vectorized answer (the notebook's solution,
forward and vjp), an honest Python loop where one is natural (over elements, or rows for the
matrix ones), a loop over rows for the elementwise ones, and the
oracle's cost: one forward evaluation (real, and complex where the forward accepts complex
input) times the number of input elements whose gradient is asked, against the 60 s limit.

    .venv/bin/python bench/oracle.py [NAME ...]
"""
from __future__ import annotations

import math
import os
import sys
import time

import nbformat
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CALL_LIMIT = 60.0   # seconds per call (course_lib.grading.sandbox.Limits.cell_timeout)
NOTEBOOKS = {"02": "02_manual_backprop/manual_backprop.ipynb",
             "03": "03_mlp_backward/mlp_backward.ipynb",
             "05": "05_attention_backward/attention_backward.ipynb"}


def solutions(key):
    """The notebook's solution functions (its setup, tools and solution cells, executed)."""
    nb = nbformat.read(os.path.join(REPO, "source", NOTEBOOKS[key]), as_version=4)
    namespace = {"__name__": "__main__"}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and (meta.get("solution") or meta.get("grade_id") in
                                         ("setup", "setup_imports", "tools")):
            exec(compile(cell.source, meta.get("grade_id", "cell"), "exec"), namespace)
    return namespace


def best_of(fn, repeat=3):
    """The fastest of `repeat` runs of fn(), in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def vjp_call(f, args, g):
    """The honest answer of a (out, vjp) exercise: forward, then vjp(g)."""
    out, vjp = f(*args)
    return vjp(g)


# ---- honest loops: what a student who writes loops would write ----------------------------

def loop_elementwise(derivative):
    def run(x, g):
        return [gi * derivative(xi) for xi, gi in zip(x.ravel().tolist(), g.ravel().tolist())]
    return run


def loop_rows_regression(X, W, b, y):
    """Linear regression's gradients, one row at a time."""
    n = X.shape[0]
    dX, dW, db = np.empty_like(X), np.zeros_like(W), np.zeros(1)
    for i in range(n):
        r = 2.0 * (X[i] @ W[:, 0] + b[0] - y[i, 0]) / n
        dX[i] = r * W[:, 0]
        dW[:, 0] += r * X[i]
        db += r
    return dX, dW, db


def loop_rows(fn):
    """Apply a row-wise computation row by row."""
    def run(x, g):
        return [fn(x[i], g[i]) for i in range(x.shape[0])]
    return run


def softmax_row(x, g):
    y = np.exp(x - x.max())
    y /= y.sum()
    return y * (g - g @ y)


def layer_norm_row(x, g, gamma=None):
    xhat = (x - x.mean()) / np.sqrt(x.var() + 1e-5)
    gh = g if gamma is None else g * gamma
    return (gh - gh.mean() - xhat * (gh @ xhat) / x.size) / np.sqrt(x.var() + 1e-5)


def loop_embedding(ids, table, g):
    gtable = np.zeros_like(table)
    for k, i in enumerate(ids.tolist()):
        gtable[i] += g[k]
    return gtable


def loop_affine(x, w, b, g):
    gx, gw = np.empty_like(x), np.zeros_like(w)
    for i in range(x.shape[0]):
        gx[i] = w @ g[i]
        gw += np.outer(x[i], g[i])
    return gx, gw, g.sum(axis=0)


# ---- the sized cases (the same shapes as the hidden cells) ------------------------------------

def cases(rng):
    """name -> (notebook, honest(), loop() or None, forward(complex?) -> fn, n_elements)."""
    s02, s03, s05 = solutions("02"), solutions("03"), solutions("05")
    r = rng.standard_normal
    out, rows = {}, {}   # rows: a loop over rows, for the elementwise exercises

    def regression(name, fn, loss, rows, labels=False, with_y=True):
        X, W, b = r((rows, 1000)), 2.0 * r((1000, 1)), r(1)
        y = (rng.random((rows, 1)) < 0.5).astype(float) if labels else 3.0 * r((rows, 1))
        loop = (lambda: loop_rows_regression(X, W, b, y)) if name == "linear_regression" else None
        args = (X, W, b, y) if with_y else (X, W, b)
        out[name] = ("02", lambda: fn(*args), loop,
                     lambda c: (lambda: loss(X.astype(complex) if c else X, W, b, y)),
                     X.size + W.size + 1)

    regression("linear_regression", s02["linear_regression_grads"],
               lambda X, W, b, y: np.mean((X @ W + b - y) ** 2), 6000)
    regression("logistic_regression", s02["logistic_regression_grads"],
               lambda X, W, b, y: np.mean(np.logaddexp(0, -(X @ W + b)) * y
                                          + np.logaddexp(0, X @ W + b) * (1 - y)), 4000,
               labels=True)
    regression("ridge", s02["ridge_grads"],
               lambda X, W, b, y: np.mean(X @ W + b + np.sum(W ** 2)), 6000, with_y=False)

    def vjp_case(name, key, sol, args, g, loop=None, wrt=None):
        f = sol[name]
        n = sum(args[i].size for i in (wrt if wrt is not None else range(len(args))))
        out[name] = (key, lambda: vjp_call(f, args, g), loop,
                     lambda c: (lambda: f(*[a.astype(complex) if c and a.dtype.kind == "f" else a
                                            for a in args])), n)

    x, w, b = r((1024, 1024)), 3.0 * r((1024, 64)), r(64)
    ga = r((1024, 64))
    vjp_case("affine", "03", s03, (x, w, b), ga, lambda: loop_affine(x, w, b, ga))
    xe, ge = r((1024, 2048)), r((1024, 2048))
    xr, gr = r((2048, 2560)), r((2048, 2560))
    vjp_case("relu", "03", s03, (xr,), gr, lambda: loop_elementwise(lambda v: v > 0)(xr, gr))
    rows["relu"] = lambda: [gr[i] * (xr[i] > 0) for i in range(xr.shape[0])]
    xs, xt, xh, xq = 2.0 * xe, 1.5 * xe, xe, xe[:512]
    gh, gq2 = ge, ge[:512]
    vjp_case("sigmoid", "03", s03, (2.0 * xq,), gq2, lambda: loop_elementwise(
        lambda v: (lambda s: s * (1 - s))(1 / (1 + math.exp(-v))))(2.0 * xq, gq2))
    vjp_case("tanh", "03", s03, (xt,), gh,
             lambda: loop_elementwise(lambda v: 1 - math.tanh(v) ** 2)(xt, gh))
    rows["sigmoid"] = lambda: [gq2[i] / (2 + 2 * np.cosh(2.0 * xq[i])) for i in range(512)]
    rows["tanh"] = lambda: [gh[i] * (1 - np.tanh(xt[i]) ** 2) for i in range(1024)]
    target = r((1024, 2048))
    vjp_case("mse_loss", "03", s03, (xs, target), 1.0, lambda: [
        2 * (p - q) / xs.size for p, q in zip(xs.ravel().tolist(), target.ravel().tolist())],
        wrt=(0,))
    rows["mse_loss"] = lambda: [2 * (xs[i] - target[i]) / xs.size for i in range(xs.shape[0])]
    logits, labels = r((8192, 256)), rng.integers(0, 256, 8192)
    vjp_case("softmax_cross_entropy", "03", s03, (logits, labels), 1.0,
             lambda: loop_rows(softmax_row)(logits, np.zeros_like(logits)), wrt=(0,))
    sizes = [1024, 512, 10]
    params = [(r((a, c)) / np.sqrt(a), 0.1 * r(c)) for a, c in zip(sizes, sizes[1:])]
    xm, lm = r((1024, 1024)), rng.integers(0, 10, 1024)

    def mlp_forward(c):
        def run():
            h = xm.astype(complex) if c else xm
            for i, (W, bb) in enumerate(params):
                h, _ = s03["affine"](h, W, bb)
                if i < len(params) - 1:
                    h = np.maximum(h.real, 0) if c else s03["relu"](h)[0]
            return s03["softmax_cross_entropy"](h.real, lm)[0]
        return run
    out["mlp_loss_and_grads"] = ("03", lambda: s03["mlp_loss_and_grads"](params, xm, lm), None,
                                 mlp_forward, sum(W.size + bb.size for W, bb in params))

    vjp_case("softmax", "05", s05, (xh,), gh, lambda: loop_rows(softmax_row)(xh, gh), wrt=(0,))
    gamma, beta = 1.0 + r(2048), r(2048)
    vjp_case("layer_norm", "05", s05, (xh, gamma, beta), gh,
             lambda: loop_rows(lambda a, b: layer_norm_row(a, b, gamma))(xh, gh))
    ids, table = rng.integers(0, 4096, 8192), r((4096, 512))
    gt = r((8192, 512))
    vjp_case("embedding", "05", s05, (ids, table), gt, lambda: loop_embedding(ids, table, gt),
             wrt=(1,))
    q, k, v = r((8, 384, 64)), r((8, 384, 64)), r((8, 384, 64))
    gq = r((8, 384, 64))
    f = s05["attention"]
    out["attention"] = ("05", lambda: f(q, k, v, True)[1](gq),
                        lambda: [f(q[i], k[i], v[i], True)[1](gq[i]) for i in range(8)],
                        lambda c: (lambda: f(*(a.astype(complex) if c else a for a in (q, k, v)), True)),
                        3 * q.size)
    from course_lib import transformer
    vocab, block = 9, 8
    P = transformer.init_params(vocab, block, 256, 1024, rng)
    ids_b = rng.integers(0, vocab, (32, block))
    tgt_b = rng.integers(0, vocab, (32, block))
    out["block_loss_and_grads"] = (
        "05", lambda: s05["block_loss_and_grads"](P, ids_b, tgt_b), None,
        lambda c: None if c else (lambda: transformer.torch_eval_loss(P, ids_b, tgt_b)),
        sum(a.size for a in P.values()))
    return out, rows


def forward_cost(make_forward, complex_step):
    fn = make_forward(complex_step)
    if fn is None:
        return None
    try:
        with np.errstate(all="ignore"):
            fn()
            return best_of(fn)
    except Exception:  # noqa: BLE001 (a forward that refuses complex input: no complex step)
        return None


def main(names):
    import warnings
    warnings.simplefilter("ignore")
    print(f"per-call limit {CALL_LIMIT:g} s; the oracle needs one forward evaluation per "
          "input element (its cheapest: real or complex)")
    print(f"{'exercise':<24}{'nb':<4}{'elements':>10}{'honest':>10}{'loop':>10}{'row loop':>10}"
          f"{'forward':>10}{'complex':>10}{'oracle':>11}{'x limit':>9}{'x honest':>11}")
    table, rows = cases(np.random.default_rng(0))
    for name, (nb, honest, loop, forward, n) in table.items():
        if names and name not in names:
            continue
        with np.errstate(all="ignore"):
            t_honest = best_of(honest)
            t_loop = best_of(loop, repeat=1) if loop is not None else None
            t_rows = best_of(rows[name], repeat=1) if name in rows else None
        t_real, t_complex = forward_cost(forward, False), forward_cost(forward, True)
        t_oracle = n * min(t for t in (t_real, t_complex) if t is not None)
        fmt = lambda t: f"{t * 1e3:8.1f}ms" if t is not None else "       -"  # noqa: E731
        print(f"{name:<24}{nb:<4}{n:>10,}{fmt(t_honest):>10}{fmt(t_loop):>10}{fmt(t_rows):>10}"
              f"{fmt(t_real):>10}"
              f"{fmt(t_complex):>10}{t_oracle:>10.0f}s{t_oracle / CALL_LIMIT:>8.0f}x"
              f"{t_oracle / t_honest:>10.0f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
