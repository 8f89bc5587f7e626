"""Figures for the notebooks (matplotlib, imported lazily so importing this module is cheap)."""
from __future__ import annotations


# ---- training curves and classifier figures (notebook 03) -------------------------------------

def _axes(ax, figsize=(6, 3.5)):
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def loss_curve(losses, *, ax=None, smooth=25, title="Training loss", xlabel="step",
               ylabel="loss", label="loss", log=False):
    """Plot a loss per step (faint) and its moving average over `smooth` steps (solid)."""
    import numpy as np
    ax = _axes(ax)
    losses = np.asarray(losses, dtype=np.float64)
    steps = np.arange(1, len(losses) + 1)
    line, = ax.plot(steps, losses, alpha=0.3, lw=1)
    if smooth and len(losses) >= smooth:
        kernel = np.ones(smooth) / smooth
        avg = np.convolve(losses, kernel, mode="valid")
        ax.plot(steps[smooth - 1:], avg, color=line.get_color(), lw=2,
                label=f"{label} (mean of {smooth} steps)")
        ax.legend()
    if log:
        ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    return ax


def accuracy_curves(curves, *, ax=None, target=None, title="Accuracy per epoch",
                    xlabel="epoch"):
    """Plot {name: [accuracy after epoch 1, 2, ...]} as percentages, with an optional target."""
    import numpy as np
    ax = _axes(ax)
    for name, values in curves.items():
        values = 100 * np.asarray(values, dtype=np.float64)
        epochs = np.arange(1, len(values) + 1)
        ax.plot(epochs, values, marker="o", ms=3, label=f"{name} (last {values[-1]:.1f}%)")
    if target is not None:
        ax.axhline(100 * target, color="gray", ls="--", lw=1, label=f"target {100 * target:g}%")
    ax.set(title=title, xlabel=xlabel, ylabel="accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return ax


def confusion_matrix(y_true, y_pred, *, n_classes=None, ax=None, title="Confusion matrix"):
    """Counts of (true class, predicted class) as an annotated heat map; returns the counts."""
    import numpy as np
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    n = int(n_classes or max(y_true.max(), y_pred.max()) + 1)
    counts = np.zeros((n, n), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    ax = _axes(ax, figsize=(4.5, 4.5))
    ax.imshow(counts, cmap="Blues")
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                dark = counts[i, j] > counts.max() / 2
                ax.text(j, i, counts[i, j], ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
    ax.set(title=title, xlabel="predicted", ylabel="true", xticks=range(n), yticks=range(n))
    return counts


def image_grid(images, titles=None, *, image_shape=(8, 8), ncols=10, size=1.0, cmap="gray_r",
               suptitle=None):
    """Show flat images (one per row of `images`) in a grid, each with an optional title."""
    import matplotlib.pyplot as plt
    import numpy as np
    images = np.asarray(images, dtype=np.float64)
    count = len(images)
    ncols = max(1, min(ncols, count))
    nrows = max(1, -(-count // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * 1.25 * nrows),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < count:
            ax.imshow(images[k].reshape(image_shape), cmap=cmap)
            if titles is not None:
                ax.set_title(str(titles[k]), fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


# ---- computation graphs and 1-D fits (notebook 04) ---------------------------------------------

def _graph_parents(node, parents_attr="_parents"):
    """The Tensors `node` was computed from (None entries, used for constants, are skipped)."""
    return [p for p in (getattr(node, parents_attr, None) or ()) if p is not None]


def _graph_order(root, parents_attr="_parents", max_nodes=80):
    """Nodes reachable from `root` through `parents_attr`, each after all its parents (a stack,
    no recursion)."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        if len(seen) > max_nodes:
            raise ValueError(f"draw_graph draws graphs of at most {max_nodes} nodes; "
                             "draw a smaller example (or pass max_nodes=...)")
        stack.append((node, True))
        for parent in reversed(_graph_parents(node, parents_attr)):
            if id(parent) not in seen:
                stack.append((parent, False))
    return order


def _short(value, digits=4):
    """A number as '1.234', an array as its shape (or its values when it is tiny)."""
    import numpy as np
    if value is None:
        return "None"
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return type(value).__name__
    if arr.size == 1:
        return f"{float(arr.reshape(())):.{digits}g}"
    if arr.size <= 3:
        return "[" + ", ".join(f"{v:.3g}" for v in arr.ravel()) + "]"
    return f"shape {arr.shape}"


def draw_graph(root, names=None, *, ax=None, show_order=False, show_grad=True, title=None,
               parents_attr="_parents", op_attr="_op", max_nodes=80):
    """Draw the computation graph that produced `root`, inputs on the left, `root` on the right.

    Works on any Tensor-like object with `.data`, `.grad`, `.requires_grad` and two recorded
    attributes (the convention of notebook 04 and `course_lib.engine`):
      `_parents`: the tensors an op's output was computed from (empty for a leaf);
      `_op`:      a short name of the op that made it ("+", "*", "exp"...; "" for a leaf).
    Each box shows the op (or the tensor's name from `names`, a dict {"x": x, ...}), its value
    (a number, or the shape of an array) and its `.grad`. Blue boxes are leaves that require
    grad, grey boxes constants, yellow boxes results of ops; `show_order=True` numbers the
    boxes in topological order (the order of the forward pass; backward runs it in reverse).
    Uses matplotlib only (no graphviz). Returns the axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    label_of = {id(t): name for name, t in (names or {}).items()}
    order = _graph_order(root, parents_attr, max_nodes)
    depth = {}
    for node in order:
        parents = _graph_parents(node, parents_attr)
        depth[id(node)] = 1 + max(depth[id(p)] for p in parents) if parents else 0
    # leaves sit just before their first consumer, so inputs line up with the op using them
    consumers = {}
    for node in order:
        for p in _graph_parents(node, parents_attr):
            consumers.setdefault(id(p), []).append(depth[id(node)])
    for node in order:
        if not _graph_parents(node, parents_attr) and id(node) in consumers:
            depth[id(node)] = min(consumers[id(node)]) - 1
    columns = {}
    for node in order:
        columns.setdefault(depth[id(node)], []).append(node)

    dx, dy, w, h = 2.3, 1.25, 1.7, 0.95
    tallest = max(len(c) for c in columns.values())
    pos = {}
    users = {}  # id -> the nodes using it, to order each column next to its consumers
    for node in order:
        for p in _graph_parents(node, parents_attr):
            users.setdefault(id(p), []).append(node)
    for d in sorted(columns, reverse=True):  # right to left: consumers are placed first
        def height(node):
            ys = [pos[id(u)][1] for u in users.get(id(node), []) if id(u) in pos]
            return -sum(ys) / len(ys) if ys else 0.0
        nodes = sorted(columns[d], key=height)
        for i, node in enumerate(nodes):
            pos[id(node)] = (d * dx, (len(nodes) - 1) / 2 * dy - i * dy)

    if ax is None:
        skips = any(depth[id(n)] - depth[id(p)] > 1 for n in order
                    for p in _graph_parents(n, parents_attr))
        width = max(4.0, 1.25 * dx * (max(columns) + 1))
        _, ax = plt.subplots(figsize=(width, max(2.2, dy * tallest + 0.6 + 1.0 * skips)))
    arc_up = arc_down = 0.0  # how far arcs around skipped columns reach beyond the boxes
    for k, node in enumerate(order):
        x, y = pos[id(node)]
        parents = _graph_parents(node, parents_attr)
        requires = bool(getattr(node, "requires_grad", False))
        colour = "#fff3c4" if parents else ("#cfe3ff" if requires else "#e6e6e6")
        edge = "#2a9d4a" if node is root else "0.35"
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.03",
                                    fc=colour, ec=edge, lw=2.0 if node is root else 1.0))
        op = getattr(node, op_attr, "") or ""
        head = label_of.get(id(node)) or (op if parents else ("leaf" if requires else "const"))
        if label_of.get(id(node)) and parents and op:
            head = f"{head} = {op}"
        lines = [head, f"data {_short(getattr(node, 'data', None))}"]
        if show_grad:
            lines.append(f"grad {_short(getattr(node, 'grad', None))}")
        ax.text(x, y, "\n".join(lines), ha="center", va="center", fontsize=8,
                family="monospace")
        if show_order:
            ax.text(x - w / 2 + 0.06, y + h / 2 - 0.06, str(k), ha="left", va="top",
                    fontsize=7, color="#b03a2e")
        seen_edges = {}
        for p in parents:
            n_same = seen_edges.get(id(p), 0)
            seen_edges[id(p)] = n_same + 1
            px, py = pos[id(p)]
            rad = [0.0, 0.35, -0.35, 0.6][min(n_same, 3)]
            if x - px > 1.5 * dx and rad == 0.0:  # skips a column: arc around the boxes
                rad = -0.7 if py >= y else 0.7
                reach = 0.5 * 0.7 * (x - px - w) + abs(py - y) / 2
                arc_up, arc_down = ((max(arc_up, reach), arc_down) if py >= y
                                    else (arc_up, max(arc_down, reach)))
            ax.annotate("", xy=(x - w / 2, y), xytext=(px + w / 2, py),
                        arrowprops=dict(arrowstyle="-|>", color="0.35", lw=1.0, shrinkA=0,
                                        shrinkB=0, connectionstyle=f"arc3,rad={rad}"))
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - w / 2 - 0.2, max(xs) + w / 2 + 0.2)
    ax.set_ylim(min(ys) - h / 2 - 0.3 - arc_down, max(ys) + h / 2 + 0.3 + arc_up)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title)
    return ax


def regression_fit(x_train, y_train, x_test, y_test, x_grid, y_grid, *, truth=None, ax=None,
                   title="Fit", test_pred=None):
    """1-D regression: training points, test points, the model's curve and (optionally) the
    noise-free truth `truth(x)`. With `test_pred`, the test MSE goes into the legend."""
    import numpy as np
    ax = _axes(ax, figsize=(7, 3.8))
    x_train, y_train, x_test, y_test, x_grid, y_grid = (
        np.asarray(v, dtype=np.float64).ravel()
        for v in (x_train, y_train, x_test, y_test, x_grid, y_grid))
    ax.scatter(x_train, y_train, s=10, color="0.55", alpha=0.7, label="training data")
    ax.scatter(x_test, y_test, s=18, color="#e07b00", marker="x", label="test points")
    if truth is not None:
        ax.plot(x_grid, truth(x_grid), color="0.2", ls="--", lw=1, label="truth (no noise)")
    fit_label = "model"
    if test_pred is not None:
        mse = float(np.mean((np.asarray(test_pred, dtype=np.float64).ravel() - y_test) ** 2))
        fit_label += f" (test MSE {mse:.4f})"
    ax.plot(x_grid, y_grid, color="#1f5fbf", lw=2, label=fit_label)
    ax.set(title=title, xlabel="x", ylabel="y")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return ax


# ---- optimisation (notebook 06) ---------------------------------------------------------------

def convergence(curves, *, title="Gradient norm per step", target=1e-8):
    """{name: [|grad| before step 0, 1, ...]}: one panel per method, side by side, log scale,
    each with its step count in the title and the target tolerance as a dashed line."""
    import matplotlib.pyplot as plt
    import numpy as np
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.5), sharey=True)
    for ax, (name, norms) in zip(np.atleast_1d(axes), curves.items()):
        norms = np.asarray(norms, dtype=np.float64)
        ax.semilogy(np.arange(len(norms)), np.maximum(norms, 1e-300), marker="o" if
                    len(norms) < 30 else None)
        if target:
            ax.axhline(target, color="gray", ls="--", lw=1)
        ax.set(title=f"{name}: {len(norms) - 1} steps", xlabel="step", ylabel="|gradient|")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
