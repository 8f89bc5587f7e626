"""The grader's side of the channel: `Remote` stands for an object in the student's kernel.

A test cell running in the grader sees the notebook's names as `Remote`s. Calling one, reading
an attribute, an operator (`x + y`, `ndarray - Tensor`, `@`, `**`), `isinstance`, `len`,
iteration: each is one request to the kernel's server, answered with data or a new handle.
The kernel gets a copy of every array it is sent (its bytes), and no grader array is ever
written from the kernel: when student code changes an argument in place, the kernel's version
is kept beside ours (`left_by_student`), and shows only in what a `t.run` returns, so "must not
modify its arguments" checks read the same as in the kernel while every reference is computed
from values the kernel never touched. Functions of the test (the `f` of a finite difference)
stay here and are called back with plain data only (numbers, listed-dtype arrays, bounded
lists/tuples of those); anything else (a handle, a string, a huge int) is refused.

Every reply is hostile input: malformed, oversized, too deep, too late. Each costs the current
test its points (`ChannelError`), never the grader.
"""
from __future__ import annotations

import builtins
import contextlib
import os
import time

import numpy as np

from course_lib.channel import wire
from course_lib.channel.kernel import wait_for


class StudentError(Exception):
    """The student's code raised, in the kernel: type, first line and where (all capped)."""

    def __init__(self, info: dict):
        self.type_name = _text(info.get("type"), 80) or "Exception"
        self.message = _text(info.get("message"), 200)
        line, code = info.get("line"), _text(info.get("code"), 160)
        self.where = f" (at line {line}: `{code}`)" if isinstance(line, int) and code else ""
        super().__init__(self.message)

    def describe(self) -> str:
        return f"{self.type_name}: {self.message}{self.where}"


class ChannelError(Exception):
    """The kernel did not answer as the protocol requires (too late, malformed, dead)."""


_ERROR_CLASSES: dict[str, type] = {}


def student_error(info: dict) -> StudentError:
    """A StudentError that is also the builtin type it names, so `except NameError` still works."""
    name = info.get("type") if isinstance(info, dict) else None
    base = getattr(builtins, name, None) if isinstance(name, str) else None
    if not (isinstance(base, type) and issubclass(base, Exception)) or base is Exception:
        return StudentError(info if isinstance(info, dict) else {})
    if name not in _ERROR_CLASSES:
        _ERROR_CLASSES[name] = type(f"Student{name}", (StudentError, base), {})
    return _ERROR_CLASSES[name](info)


def _text(value, limit):
    return value[:limit] if isinstance(value, str) else ""


def scrub(message: str, secret_text: str) -> str:
    """Remove any line of a test cell's text from a message that came from a kernel."""
    for line in secret_text.splitlines():
        line = line.strip()
        if len(line) >= 8 and line in message:
            message = message.replace(line, "[...]")
    return message


class Session:
    """One test cell's conversation with the kernel's server (`serve(folder, number)`)."""

    def __init__(self, folder: str, number: int, start, interrupt, *, call_timeout=60.0,
                 cell_timeout=120.0, ready_timeout=30.0):
        self.inbox, self.outbox = os.path.join(folder, "in"), os.path.join(folder, "out")
        self.number, self.start_server, self.interrupt = number, start, interrupt
        self.call_timeout, self.ready_timeout = call_timeout, ready_timeout
        self.cell_deadline = time.monotonic() + cell_timeout
        self.n_in = self.n_out = 0
        self.started = False
        self.broken: str | None = None
        self.remotes: dict[int, Remote] = {}
        self.callbacks: list = []
        self.arrays: dict[int, np.ndarray] = {}    # our arrays the kernel holds, by id
        self.array_ids: dict[int, int] = {}        # id(array) -> array id
        self.changed: dict[int, np.ndarray] = {}   # array id -> as student code left it
        self.refused: str | None = None            # why a callback of this request was refused
        self.scope_reset = False
        self.next_array_id = 0
        self.calls = 0
        self.secret_text = ""   # the running test cell's text: never echoed back

    # ---- lifecycle
    def name(self, name: str) -> "Remote":
        return Remote(self, {"name": name}, name, callable_=True)

    def new_scope(self):
        """A new `t.run`: arrays sent before are forgotten, with what student code did to them."""
        self.arrays.clear()
        self.array_ids.clear()
        self.changed.clear()
        self.scope_reset = True

    def _ensure_started(self):
        if self.started:
            return
        self.started = True
        self.start_server(self.number)
        header, _ = self._receive(min(self.cell_deadline, time.monotonic() + self.ready_timeout))
        if header.get("kind") != "ready":
            self._break("the kernel did not start answering the grader")

    def close(self):
        """Tell the server to stop (if it runs and answers); False if it may be stuck."""
        if self.started and not self.broken:
            self._send({"kind": "stop"})
        for n in range(self.n_out - 1 if self.started and not self.broken else self.n_out):
            with contextlib.suppress(OSError):  # requests read long ago (the stop is still due)
                os.unlink(os.path.join(self.inbox, f"{self.number}-{n}.msg"))
        return not self.broken

    # ---- messages
    def _send(self, message, **fields):
        encode = wire.Encoder(self._reference_spec, self._array_id)
        for key, item in fields.items():
            message[key] = encode(item)
        if self.scope_reset:
            message["scope_reset"], self.scope_reset = True, False
        wire.write_message(self.inbox, f"{self.number}-{self.n_out}.msg",
                           wire.pack(message, encode.buffers))
        self.n_out += 1

    def _receive(self, deadline):
        path = os.path.join(self.outbox, f"{self.number}-{self.n_in}.msg")
        try:
            data = wait_for(path, deadline)
        except TimeoutError:
            self._break(None)
        except wire.WireError as e:
            self._break(f"the kernel's answer was refused ({e})")
        self.n_in += 1
        try:
            os.unlink(path)
        except OSError:
            pass
        try:
            return wire.unpack(data)
        except wire.WireError as e:
            self._break(f"the kernel's answer was malformed ({e})")

    def _break(self, reason):
        if reason is None:
            reason = (f"your code did not return within {self.call_timeout:g} s (or the test "
                      "cell's time ran out): it was interrupted")
            self.interrupt()
        self.broken = reason
        raise ChannelError(reason)

    # ---- values
    def _reference_spec(self, obj):
        if isinstance(obj, Remote):
            if obj._session is not self:
                raise ChannelError("a value from an earlier test cell was reused")
            return dict(obj._ref)
        if callable(obj):
            self.callbacks.append(obj)
            return {"callback": len(self.callbacks) - 1}
        raise TypeError(f"course bug: cannot send a {type(obj).__name__} to the kernel")

    def _array_id(self, arr):
        key = id(arr)
        if key not in self.array_ids:
            self.next_array_id += 1
            self.array_ids[key] = self.next_array_id
            self.arrays[self.next_array_id] = arr
        return self.array_ids[key]

    def _remote(self, spec):
        handle = spec.get("handle")
        if not isinstance(handle, int) or isinstance(handle, bool) or handle < 0 or \
                handle > 10_000_000:
            raise wire.WireError("bad handle")
        if handle not in self.remotes:
            self.remotes[handle] = Remote(self, {"handle": handle}, _text(spec.get("type"), 200)
                                          or "object", callable_=spec.get("callable") is True)
        return self.remotes[handle]

    def _decode(self, spec, buffers):
        if spec is None:
            raise wire.WireError("no value")
        return wire.Decoder(buffers, self._remote)(spec)

    def _write_back(self, updates, buffers):
        """Student code changed arrays we sent: note its version beside ours (never into ours)."""
        if not isinstance(updates, list):
            raise wire.WireError("bad updates")
        for item in updates[:wire.MAX_ITEMS]:
            if not (isinstance(item, list) and len(item) == 2):
                raise wire.WireError("bad update")
            mine = self.arrays.get(item[0]) if isinstance(item[0], int) else None
            new = wire.Decoder(buffers, _refuse_reference)(item[1])
            if mine is not None and isinstance(new, np.ndarray) and new.shape == mine.shape:
                self.changed[item[0]] = new.astype(mine.dtype)

    def left_by_student(self, arr):
        """`arr` as student code left it: the kernel's version if it changed the copy it got."""
        array_id = self.array_ids.get(id(arr))
        if array_id is None or self.arrays.get(array_id) is not arr:
            return arr
        return self.changed.get(array_id, arr)

    # ---- requests
    def request(self, op, target=None, *args, **kwargs):
        if self.broken:
            raise ChannelError(self.broken)
        self._ensure_started()
        self.calls += 1
        message = {"kind": "request", "op": op}
        fields = {"args": list(args), "kwargs": kwargs}
        if target is not None:
            fields["target"] = target
        self._send(message, **fields)
        deadline = min(self.cell_deadline, time.monotonic() + self.call_timeout)
        while True:
            header, buffers = self._receive(deadline)
            kind = header.get("kind")
            try:
                if "updates" in header:
                    self._write_back(header["updates"], buffers)
                if kind in ("result", "raised") and self.refused:
                    reason, self.refused = self.refused, None
                    raise ChannelError(reason)
                if kind == "result":
                    return self._decode(header.get("value"), buffers)
                if kind == "raised":
                    raise student_error(header.get("error"))
                if kind == "callback":
                    self._answer_callback(header, buffers)
                    continue
            except wire.WireError as e:
                self._break(f"the kernel's answer was malformed ({e})")
            self._break("the kernel's answer was malformed (unknown kind)")

    def _answer_callback(self, header, buffers):
        """Call the test's function on plain data only; refuse anything else, with a reason."""
        number = header.get("callback")
        if not isinstance(number, int) or isinstance(number, bool) \
                or not 0 <= number < len(self.callbacks):
            raise wire.WireError("unknown callback")
        try:
            value = wire.Decoder(buffers, _refuse_reference)(header.get("value"))
        except wire.WireError as e:
            return self._refuse(f"it was not plain data ({e})")
        if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], list)
                and isinstance(value[1], dict)):
            raise wire.WireError("bad callback arguments")
        bad = next((v for v in [*value[0], *value[1].values()] if not plain_data(v)), _NONE)
        if bad is not _NONE:
            return self._refuse(f"it was {_plain_description(bad)}")
        try:
            result = self.callbacks[number](*value[0], **value[1])
        except Exception:  # noqa: BLE001 (the student's code learns only that it failed)
            self._send({"kind": "raised"}, value=CALLBACK_FAILED)
            return
        self._send({"kind": "result"}, value=result)

    def _refuse(self, why):
        self.refused = self.refused or (
            "your code called a function the test gave it with an argument the grader refuses: "
            f"{why}. Call it with numbers or float arrays only.")
        self._send({"kind": "raised"}, value=CALLBACK_REFUSED)

    def apply(self, path: str, *args, **kwargs):
        """Run course_lib function `path` ('module:name') in the kernel on these arguments."""
        return self.request("apply", None, path, *args, **kwargs)


CALLBACK_FAILED = "the test's function raised an error on the arguments it was given"
CALLBACK_REFUSED = "the grader refused this call: a test's function takes numbers and arrays only"
MAX_PLAIN_DEPTH = 4
_NONE = object()


def _refuse_reference(spec):
    raise wire.WireError("a handle, name or function where data was expected")


def plain_data(value, depth=0) -> bool:
    """A number (within int64), an array of a listed dtype, or a bounded list/tuple of those."""
    if isinstance(value, bool) or isinstance(value, float):
        return True
    if isinstance(value, int):
        return -2**63 <= value < 2**63
    if wire.is_array_data(value):
        return True
    if isinstance(value, (list, tuple)) and depth < MAX_PLAIN_DEPTH and len(value) <= wire.MAX_ITEMS:
        return all(plain_data(v, depth + 1) for v in value)
    return False


def _plain_description(value):
    if isinstance(value, int):
        return "an integer outside int64"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} nested too deeply or holding something else"
    return f"a {type(value).__name__}"


def _forward(op):
    def method(self, *args):
        return self._session.request("operator", None, op, self, *args)
    return method


def _reflected(op):
    def method(self, other):
        return self._session.request("operator", None, op, other, self)
    return method


class Remote:
    """An object in the student's kernel; every use is a request."""

    __slots__ = ("_session", "_ref", "_type", "_callable")
    __array_ufunc__ = None  # `ndarray op Remote` calls our reflected method, as for a Tensor

    def __init__(self, session, ref, type_, callable_=False):
        object.__setattr__(self, "_session", session)
        object.__setattr__(self, "_ref", ref)
        object.__setattr__(self, "_type", type_)
        object.__setattr__(self, "_callable", callable_)

    def __repr__(self):
        return f"<{self._type} in your notebook>"

    __str__ = __repr__

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            if name == "__name__" and "name" in self._ref:
                return self._ref["name"]
            if name not in ("__name__", "__qualname__"):
                raise AttributeError(name)
        return self._session.request("getattr", self, name)

    def __setattr__(self, name, value):
        self._session.request("setattr", self, name, value)

    def __call__(self, *args, **kwargs):
        return self._session.request("call", self, *args, **kwargs)

    def __instancecheck__(self, obj):
        return self._session.request("isinstance", self, obj) is True

    def __iter__(self):
        items = self._session.request("iter", self)
        return iter(items if isinstance(items, list) else [])

    def __len__(self):
        n = self._session.request("len", self)
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise TypeError("len() of your object is not a non-negative int")
        return n

    def __bool__(self):
        return self._session.request("bool", self) is True

    def __float__(self):
        value = self._session.request("float", self)
        if not isinstance(value, float):
            raise TypeError("float() of your object did not give a float")
        return value

    __hash__ = object.__hash__

    def module(self):
        """The `__module__` the kernel reports for this object (a teaching aid, not proof)."""
        value = self._session.request("getattr", self, "__module__")
        return value if isinstance(value, str) else None


for _op in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and_", "or_",
            "xor", "lshift", "rshift"):
    _name = _op.rstrip("_")
    setattr(Remote, f"__{_name}__", _forward(_op))
    setattr(Remote, f"__r{_name}__", _reflected(_op))
for _op in ("neg", "pos", "abs", "invert", "eq", "ne", "lt", "le", "gt", "ge", "getitem",
            "setitem", "delitem"):
    setattr(Remote, f"__{_op}__", _forward(_op))
Remote.__contains__ = lambda self, item: self._session.request(
    "operator", None, "contains", self, item) is True
