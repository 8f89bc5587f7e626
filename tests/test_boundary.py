"""The trust boundary of `course grade`: what a kernel is sent, and what comes back.

Everything the grader hands a kernel during one real grading run is recorded (the code of
every cell it executes and every channel message) and searched for the tests' text, the
grading seeds and the reference answers torch computed: none of them may be there.
"""
import os

import nbformat
import numpy as np
import pytest

from course_lib.channel import proxy, wire
from course_lib.checks import core
from course_lib.grading import pipeline, runner
from course_lib.grading.sandbox import bwrap_available
from harness import grade_id, is_test, make_course, read, source_path, submit

ASSIGNMENT = "03_mlp_backward"


@pytest.mark.slow
@pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed")
def test_a_kernel_is_sent_no_test_text_seed_or_reference(tmp_path, monkeypatch):
    course = make_course(str(tmp_path), [ASSIGNMENT])
    submit(course, "reference", ASSIGNMENT, source_path(ASSIGNMENT))
    sent, references = [], []

    seeds = {}
    real_seeds = pipeline.seeds_for
    monkeypatch.setattr(pipeline, "seeds_for",
                        lambda *a: seeds.update(real_seeds(*a)) or real_seeds(*a))
    real_write = wire.write_message
    monkeypatch.setattr(wire, "write_message",
                        lambda folder, name, data: (sent.append(data), real_write(folder, name, data))[1])
    real_cell = runner.CappedClient.async_execute_cell

    async def spy_cell(self, cell, index, **kwargs):
        sent.append(cell.source.encode())
        return await real_cell(self, cell, index, **kwargs)
    monkeypatch.setattr(runner.CappedClient, "async_execute_cell", spy_cell)
    real_torch_vjp = core.torch_vjp

    def spy_torch_vjp(*args, **kwargs):
        out, expected = real_torch_vjp(*args, **kwargs)
        # what the kernel must see anyway: a reference equal to (a row of) an input or the
        # cotangent, as db = g[0] when N = 1, is not a leak
        given = b"|".join(np.ascontiguousarray(v).tobytes() for v in [out["g"], *args[1].values()])
        references.extend(r for r in [out["out"], *expected] if np.unique(r).size > 1
                          and np.ascontiguousarray(r).tobytes() not in given)
        return out, expected
    monkeypatch.setattr(core, "torch_vjp", spy_torch_vjp)

    report = pipeline.grade(course, ASSIGNMENT, workers=1, sandbox=True, progress=False)
    assert report.count("graded") == 1, report.summary()
    scores = pipeline.scores(course, ASSIGNMENT)[("reference", ASSIGNMENT)]
    assert all(s == m for s, m in scores.values()), scores
    assert len(sent) > 100 and len(references) > 20  # the run really talked to the kernel

    blob = b"\n".join(sent)
    nb = read(source_path(ASSIGNMENT))
    student_lines = {line.strip() for c in nb.cells if not is_test(c) for line in c.source.splitlines()}
    test_lines = {line.strip() for c in nb.cells if is_test(c) for line in c.source.splitlines()
                  if len(line.strip()) > 20} - student_lines
    assert test_lines
    for line in test_lines:
        assert line.encode() not in blob, line
    assert set(seeds) == {grade_id(c) for c in nb.cells if is_test(c)}
    for seed in seeds.values():
        assert str(seed).encode() not in blob
        assert np.int64(np.uint64(seed).astype(np.int64)).tobytes() not in blob
    for ref in references:
        assert np.ascontiguousarray(ref).tobytes() not in blob


def test_student_errors_keep_their_builtin_type_and_lose_test_text():
    error = proxy.student_error({"type": "NameError", "message": "name 'x' is not defined",
                                 "line": 3, "code": "return x + 1"})
    assert isinstance(error, NameError) and isinstance(error, proxy.StudentError)
    assert error.describe() == "NameError: name 'x' is not defined (at line 3: `return x + 1`)"
    odd = proxy.student_error({"type": "SystemExit", "message": "m" * 5000})
    assert type(odd) is proxy.StudentError and len(odd.describe()) < 300
    assert proxy.student_error("garbage").describe() == "Exception: "
    secret = "    assert_close(got, reference_gradient, what='hidden')\n"
    assert "reference_gradient" not in proxy.scrub(
        "oops assert_close(got, reference_gradient, what='hidden') here", secret)


@pytest.mark.parametrize("data", [
    b"no newline at all",
    b"[1, 2]\n",
    b'{"buffers": 3}\n',
    b'{"buffers": [["|O", [1], 8]]}\n' + bytes(8),
    b'{"buffers": [["<f8", [1000000, 1000000], 8]]}\n' + bytes(8),
    b'{"buffers": [["<f8", [-1], 8]]}\n' + bytes(8),
    b'{"buffers": [["<f8", [2], 16]]}\n' + bytes(8),
    b'{"x": ' + b"[" * 100000 + b"\n",
])
def test_malformed_messages_are_refused(data):
    with pytest.raises(wire.WireError):
        wire.unpack(data)


@pytest.mark.parametrize("spec", [
    {"array": 5}, {"array": True}, {"int": True}, {"float": "1e400x"}, {"str": 3},
    {"dict": [[1, {"none": True}]]}, {"tuple": "abc"}, {"what": 1}, {}, "string",
    {"list": [{"list": [{"list": []}]}] * 3, "extra": 1, "more": 2, "and": 3, "five": 5},
])
def test_malformed_values_are_refused(spec):
    with pytest.raises(wire.WireError):
        wire.Decoder([], lambda s: None)(spec)


def test_values_survive_the_wire_exactly():
    value = {"a": [np.arange(6.0).reshape(2, 3), np.float64(2.5), np.array(True)],
             "b": (1, -2**62, float("nan"), None, "text", np.zeros((0, 3))),
             "c": np.array(7, dtype=np.int64)}
    encode = wire.Encoder(lambda obj: pytest.fail("no references here"))
    header, buffers = wire.unpack(wire.pack({"value": encode(value)}, encode.buffers))
    back = wire.Decoder(buffers, lambda s: None)(header["value"])
    assert back["a"][0].shape == (2, 3) and np.array_equal(back["a"][0], value["a"][0])
    assert isinstance(back["a"][1], np.float64) and back["a"][2].shape == ()
    assert back["b"][:2] == (1, -2**62) and np.isnan(back["b"][2]) and back["b"][3:5] == (None, "text")
    assert back["b"][5].shape == (0, 3) and back["c"].shape == () and back["c"].dtype == np.int64


# A kernel that answers a call by calling back the grader's function without end, each time
# with a deeper argument: the grader answers what it can decode, refuses the rest, and the
# test fails within its time, with a reason (no hang, no crash of the grader).
CALLBACK_FLOOD = r'''
import json, os, time
import course_lib.channel.kernel as K
def serve(folder, session):
    sent, received = [0], [0]
    def put(header):
        with open(os.path.join(folder, "out", f"{session}-{sent[0]}.msg"), "wb") as f:
            f.write(json.dumps(header).encode() + b"\n")
        sent[0] += 1
    def get():
        path = os.path.join(folder, "in", f"{session}-{received[0]}.msg")
        while not os.path.exists(path):
            time.sleep(0.0005)
        received[0] += 1
        return open(path, "rb").read()
    put({"kind": "ready", "buffers": []})
    get()
    depth = 1
    while True:
        value = {"list": [{"list": []}, {"dict": []}]}
        for _ in range(depth):
            value = {"list": [value]}
        value = {"list": [value, {"dict": []}]}
        put({"kind": "callback", "callback": 0, "buffers": [], "value": value})
        if b'"stop"' in get():
            return
        depth *= 2
K.serve = serve
'''


def test_a_callback_flood_from_the_kernel_ends_in_a_refusal():
    from harness import ChannelKernel
    kernel = ChannelKernel(CALLBACK_FLOOD)
    source = ("from course_lib.checks import suite\n"
              "with suite('test_cd') as t:\n"
              "    t.run(lambda: central_difference(lambda x: x * x, 1.0), central_difference)\n")
    try:
        verdict = kernel.verdict(source, timeout=20)
    finally:
        kernel.close()
    assert not verdict.passed
    assert "malformed" in verdict.message or "refused" in verdict.message, verdict.message


# A kernel whose server answers with handles where arrays are expected: each array of a result
# becomes an object of the kernel's that acts like one, so any test code that computed with it
# (a callback, an operator) would send the grader's own values into the kernel as operands.
HANDLES_FOR_ARRAYS = r'''
import os

import nbformat
import numpy as np
import course_lib.channel.kernel as K
class _Box:
    def __init__(self, a):
        self.a = a
    def __array__(self, *args, **kwargs):
        return self.a
    def __getattr__(self, name):
        return getattr(self.a, name)
def _unbox(x):
    return x.a if isinstance(x, _Box) else x
for _op in ("add", "sub", "mul", "truediv", "matmul", "pow", "radd", "rsub", "rmul",
            "rtruediv", "rmatmul", "neg", "getitem", "eq", "lt", "gt", "le", "ge"):
    setattr(_Box, f"__{_op}__", (lambda op: lambda self, *o: _Box(
        getattr(self.a, f"__{op}__")(*map(_unbox, o))))(_op))
def _boxed(v, depth=0):
    if isinstance(v, np.ndarray) and v.dtype.kind == "f":
        return _Box(v)
    if isinstance(v, (list, tuple)) and depth < 8:
        return type(v)(_boxed(x, depth + 1) for x in v)
    if isinstance(v, dict) and depth < 8:
        return {k: _boxed(x, depth + 1) for k, x in v.items()}
    return v
_send = K.Server.send
K.Server.send = lambda self, message, value=None, updates=None: _send(
    self, message, _boxed(value), updates)
'''


def _arrays_in(value, depth=0):
    """Every ndarray in a value, a function's closure, or nested containers of them."""
    if isinstance(value, np.ndarray):
        return [value]
    if depth > 4:
        return []
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in _arrays_in(v, depth + 1)]
    if isinstance(value, dict):
        return [a for v in value.values() for a in _arrays_in(v, depth + 1)]
    cells = getattr(value, "__closure__", None) or ()
    return [a for c in cells for a in _arrays_in(_cell_contents(c), depth + 1)]


def _cell_contents(cell):
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return None


def _distinct(arrays):
    return [a for a in arrays if a.size > 1 and np.unique(a).size > 1]


@pytest.mark.slow
@pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed")
def test_a_kernel_answering_handles_gets_no_reference_or_closure_data(tmp_path, monkeypatch):
    """Every notebook, graded once under a kernel that answers handles for arrays: what the
    kernel is sent holds no reference answer and no array a callback of a test closes over,
    other than the arguments the test's calls gave the student's code."""
    from harness import NOTEBOOKS
    from course_lib import transformer
    from course_lib.checks import engine as engine_checks
    course = make_course(str(tmp_path), tuple(NOTEBOOKS))
    for assignment in NOTEBOOKS:
        nb = read(source_path(assignment))
        nb.cells.insert(0, nbformat.v4.new_code_cell(HANDLES_FOR_ARRAYS))
        submit(course, "handles", assignment, nb)
    sent, references, closures, arguments = [], [], [], []
    real_write = wire.write_message
    monkeypatch.setattr(wire, "write_message",
                        lambda folder, name, data: (sent.append(data), real_write(folder, name, data))[1])

    real_reference = core.torch_reference

    def spy_reference(torch_f, args, wrt=(), g=None, rng=None):
        out, g, grads = real_reference(torch_f, args, wrt, g, rng)
        references.extend(_distinct([np.asarray(out), *grads]))
        arguments.extend(_arrays_in(list(args)) + [np.asarray(g)])
        return out, g, grads
    monkeypatch.setattr(core, "torch_reference", spy_reference)
    monkeypatch.setattr(engine_checks, "torch_reference", spy_reference)
    real_block = transformer.torch_loss_and_grads

    def spy_block(params, ids, targets):
        loss, grads = real_block(params, ids, targets)
        references.extend(_distinct(list(grads.values())))
        return loss, grads
    monkeypatch.setattr(transformer, "torch_loss_and_grads", spy_block)
    real_spec, real_request = proxy.Session._reference_spec, proxy.Session.request

    def spy_spec(self, obj):
        if callable(obj) and not isinstance(obj, proxy.Remote):
            closures.extend(_distinct(_arrays_in(obj)))
        return real_spec(self, obj)

    def spy_request(self, op, target=None, *args, **kwargs):
        if op in ("call", "apply"):  # what the student's code has to see
            arguments.extend(_arrays_in([args, kwargs]))
        return real_request(self, op, target, *args, **kwargs)
    monkeypatch.setattr(proxy.Session, "_reference_spec", spy_spec)
    monkeypatch.setattr(proxy.Session, "request", spy_request)

    for assignment in NOTEBOOKS:
        report = pipeline.grade(course, assignment, workers=1, sandbox=True, progress=False)
        assert report.count("graded") == 1, report.summary()
    assert len(sent) > 500 and len(references) > 100 and closures  # it really talked

    blob = b"\n".join(sent)
    given = {np.ascontiguousarray(a).tobytes() for a in arguments}
    for ref in references:
        data = np.ascontiguousarray(ref).tobytes()
        if data not in given:  # a reference equal to an argument (db = g when N = 1) is not one
            assert data not in blob, ref
    text = blob.decode("latin-1")
    private = [a for a in closures if np.ascontiguousarray(a).tobytes() not in given]
    for a in private:
        assert np.ascontiguousarray(a).tobytes() not in blob
        # nor one element at a time, as the JSON numbers of operator requests on a handle
        leaked = [v for v in np.ravel(a).tolist()[:2000] if isinstance(v, float)
                  and len(repr(v)) > 12 and repr(v) in text]
        assert not leaked, leaked[:5]


# A kernel that calls the grader's function with each kind of non-data, straight on the wire,
# then with good data, and keeps every answer it got (in seen.txt) to show what it learnt.
CALLBACK_ABUSE = r'''
import json, os, time
import course_lib.channel.kernel as K
BAD = [{"handle": 0, "type": "ndarray"}, {"name": "secret"}, {"callback": 0}, {"str": "x"},
       {"int": 10 ** 30}, {"dict": [["a", {"float": 1.0}]]}, {"none": True},
       {"list": [{"list": [{"list": [{"list": [{"list": [{"float": 1.0}]}]}]}]}]}]
GOOD = [{"float": 2.0}, {"int": 3}, {"list": [{"float": 1.0}, {"int": 2}]}]
def serve(folder, session):
    sent, received = [0], [0]
    def put(header):
        path = os.path.join(folder, "out", f"{session}-{sent[0]}.msg")
        with open(path + ".tmp", "wb") as f:
            f.write(json.dumps(dict(header, buffers=[])).encode() + b"\n")
        os.replace(path + ".tmp", path)
        sent[0] += 1
    def get():
        path = os.path.join(folder, "in", f"{session}-{received[0]}.msg")
        while not os.path.exists(path):
            time.sleep(0.0005)
        received[0] += 1
        return open(path, "rb").read()
    put({"kind": "ready"})
    get()                                               # where central_difference comes from
    put({"kind": "result", "value": {"str": "__main__"}})
    get()                                               # the call, with the test's f
    seen = []
    for arg in BAD + GOOD:
        put({"kind": "callback", "callback": 0, "value": {"list": [{"list": [arg]}, {"dict": []}]}})
        seen.append(get().split(b"\n")[0].decode("utf-8", "replace"))
    with open(os.path.join(folder, "seen.txt"), "w") as f:
        f.write("\n".join(seen))
    put({"kind": "result", "value": {"float": 1.0}})
    while b'"stop"' not in get():
        pass
K.serve = serve
'''


def test_callbacks_take_plain_data_only_and_say_nothing_of_the_test():
    from harness import ChannelKernel
    kernel = ChannelKernel(CALLBACK_ABUSE)
    source = ("from course_lib.checks import suite\n"
              "import numpy as np\n"
              "PRIVATE = np.array([7.25, -3.5])\n"
              "def f(v):\n"
              "    assert np.ndim(v) > 0, 'hidden-assertion-text'\n"
              "    return float(np.sum(PRIVATE * v))\n"
              "with suite('test_cd') as t:\n"
              "    t.run(lambda: central_difference(f, 1.0), central_difference)\n")
    try:
        verdict = kernel.verdict(source, timeout=20)
        seen = open(os.path.join(kernel.folder, "seen.txt")).read().splitlines()
    finally:
        kernel.close()
    assert not verdict.passed and "refuses" in verdict.message, verdict.message
    assert len(seen) == 11
    assert all(proxy.CALLBACK_REFUSED in answer for answer in seen[:8]), seen[:8]
    # good data is answered: 2.0 and 3 are not arrays (the test's assertion fails: a fixed
    # sentence, not its text), the list is data: f's value reaches the kernel, as it must
    assert all(proxy.CALLBACK_FAILED in answer for answer in seen[8:10]), seen[8:10]
    assert "hidden-assertion-text" not in "".join(seen) and "PRIVATE" not in "".join(seen)
    assert '"kind": "result"' in seen[10]
