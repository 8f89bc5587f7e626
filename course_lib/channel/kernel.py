"""The kernel's side of the channel: answer the grader's requests with the student's objects.

`serve(folder, session)` runs as one silent execution in the student's kernel while a test cell
runs in the grader. It reads numbered requests from `<folder>/in` (read-only in the sandbox),
performs each on the notebook's objects with the shortcut guard on and output muted, and writes
numbered replies to `<folder>/out`. It never sees a test's text, a reference value or a seed:
only the operation and its arguments. Being in the kernel, it is untrusted like everything
else there; the grader checks every reply.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import linecache
import operator
import os
import sys
import time

import numpy as np

from course_lib import guard
from course_lib.channel import wire

OPERATORS = {name: getattr(operator, name) for name in (
    "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and_", "or_", "xor",
    "lshift", "rshift", "neg", "pos", "abs", "invert", "eq", "ne", "lt", "le", "gt", "ge",
    "contains", "getitem", "setitem", "delitem")}
MAX_REPORTED = 200  # characters of an exception's first line


def wait_for(path: str, deadline: float | None = None) -> bytes:
    """Poll for a message file; short sleeps first, so a quick answer is seen quickly."""
    delay = 2e-5
    while True:
        data = wire.read_regular(path)
        if data is not None:
            return data
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(delay)
        delay = min(delay * 1.3, 5e-4)


def describe_exception(e: BaseException) -> dict:
    """Type, first line of the message (capped) and the innermost line of notebook code."""
    lines = str(e).strip().splitlines()
    where = None
    tb = e.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not library_file(filename):
            where = (filename, tb.tb_lineno)
        tb = tb.tb_next
    info = {"type": type(e).__name__[:80], "message": (lines[0] if lines else "")[:MAX_REPORTED]}
    if where:
        info["line"] = where[1]
        info["code"] = linecache.getline(*where).strip()[:160]
    return info


def library_file(filename: str) -> bool:
    """Code of course_lib or of the Python installation (not the notebook's)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # course_lib/
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, here}
    return any(filename.startswith(p) for p in prefixes if p)


@contextlib.contextmanager
def muted():
    """Student output during a check goes nowhere; warnings neither (nbgrader zeroes stderr)."""
    import warnings
    sink = io.StringIO()
    with warnings.catch_warnings(), np.errstate(all="ignore"), \
            contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        yield


class CallbackError(Exception):
    """A function the grader passed in (e.g. the f of a finite difference) failed."""


class Server:
    def __init__(self, folder: str, session: int):
        self.inbox, self.outbox = os.path.join(folder, "in"), os.path.join(folder, "out")
        self.session, self.n_in, self.n_out = session, 0, 0
        self.objects: dict[int, object] = {}     # handle -> object kept alive here
        self.handles: dict[int, int] = {}        # id(object) -> handle
        self.arrays: dict[int, np.ndarray] = {}  # grader's array id -> our copy (for write-back)
        self.before: dict[int, bytes] = {}

    # ---- messages
    def receive(self):
        data = wait_for(os.path.join(self.inbox, f"{self.session}-{self.n_in}.msg"))
        self.n_in += 1
        header, buffers = wire.unpack(data)
        return header, buffers

    def send(self, message: dict, value=None, updates=None):
        encode = wire.Encoder(self._handle_spec)
        if value is not None or message.get("kind") == "result":
            message["value"] = encode(value)
        if updates:
            message["updates"] = [[i, encode(a)] for i, a in updates]
        wire.write_message(self.outbox, f"{self.session}-{self.n_out}.msg",
                           wire.pack(message, encode.buffers))
        self.n_out += 1

    # ---- values
    def _handle_spec(self, obj):
        key = id(obj)
        if key not in self.handles:
            self.handles[key] = len(self.objects)
            self.objects[len(self.objects)] = obj
        return {"handle": self.handles[key], "type": wire.type_name(obj),
                "callable": callable(obj)}

    def _reference(self, spec):
        if "handle" in spec:
            if spec["handle"] not in self.objects:
                raise wire.WireError("unknown handle")
            return self.objects[spec["handle"]]
        if "name" in spec:
            namespace = sys.modules["__main__"].__dict__
            if spec["name"] not in namespace:
                raise NameError(f"name '{spec['name']}' is not defined")
            return namespace[spec["name"]]
        return self._callback(spec["callback"])

    def _array(self, array_id, arr):
        mine = self.arrays.get(array_id)
        if mine is not None and mine.shape == arr.shape and mine.dtype == arr.dtype:
            mine[...] = arr          # same object as before: the grader resent it
        else:
            mine = self.arrays[array_id] = arr
        self.before[array_id] = mine.tobytes()
        return mine

    def _callback(self, number):
        def call(*args, **kwargs):
            self.send({"kind": "callback", "callback": number}, value=[list(args), kwargs])
            header, buffers = self.receive()
            value = self._decode(header.get("value"), buffers)
            if header.get("kind") == "raised":
                raise CallbackError(str(value)[:MAX_REPORTED])
            return value
        return call

    def _decode(self, spec, buffers):
        return wire.Decoder(buffers, self._reference, self._array)(spec)

    def _changed_arrays(self):
        changed = [(i, a) for i, a in self.arrays.items() if a.tobytes() != self.before.get(i)]
        for i, a in changed:
            self.before[i] = a.tobytes()
        return changed

    # ---- requests
    def perform(self, header, buffers):
        if header.get("scope_reset"):
            self.arrays.clear()
            self.before.clear()
        target = self._decode(header["target"], buffers) if "target" in header else None
        args, kwargs = self._decode(header.get("args", {"list": []}), buffers), \
            self._decode(header.get("kwargs", {"dict": []}), buffers)
        op = header.get("op")
        if op == "call":
            return target(*args, **kwargs)
        if op == "getattr":
            return getattr(target, args[0])
        if op == "setattr":
            return setattr(target, args[0], args[1])
        if op == "operator":
            return OPERATORS[args[0]](*args[1:])
        if op == "iter":
            return list(_bounded(iter(target)))
        if op == "len":
            return len(target)
        if op == "bool":
            return bool(target)
        if op == "float":
            return float(target)
        if op == "isinstance":
            return isinstance(args[0], target)
        if op == "apply":
            return _course_function(args[0])(*args[1:], **kwargs)
        raise ValueError(f"unknown operation {op!r}")

    def handle(self, header, buffers):
        try:
            with guard.student_code(), muted():
                value = self.perform(header, buffers)
        except (Exception, SystemExit) as e:  # noqa: BLE001 (the student's error is a verdict)
            self.send({"kind": "raised", "error": describe_exception(e)},
                      updates=self._changed_arrays())
            return
        self.send({"kind": "result"}, value=value, updates=self._changed_arrays())


def _bounded(iterator):
    for k, item in enumerate(iterator):
        if k >= wire.MAX_ITEMS:
            raise ValueError(f"more than {wire.MAX_ITEMS} items")
        yield item


def _course_function(path):
    """A function of course_lib (public code) that runs student code for a check."""
    module, _, name = str(path).partition(":")
    if not module.startswith("course_lib."):
        raise ValueError("only course_lib functions can be applied")
    fn = importlib.import_module(module)
    for part in name.split("."):
        fn = getattr(fn, part)
    return fn


def serve(folder: str, session: int) -> None:
    """Answer requests until the grader says stop (one test cell's worth)."""
    server = Server(folder, session)
    server.send({"kind": "ready"})
    while True:
        header, buffers = server.receive()
        if header.get("kind") == "stop":
            return
        server.handle(header, buffers)
