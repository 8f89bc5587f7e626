"""What crosses the sandbox wall, in both directions: data, handles, and message files.

A value is JSON with tagged leaves. Data: `none`, `bool`, `int`, `float`, `str`, `array`
(an index into the message's raw buffers, dtype from a short list), and `tuple`/`list`/`dict`
of values. References: `handle` (an object that stays in the kernel), `name` (a name the
notebook defines), `callback` (a function that stays in the trusted process). A message is
one file: a JSON header line, then the raw buffers it indexes. Reading a message from the
kernel trusts nothing: no links, no devices, capped sizes and depth, validated structure.
"""
from __future__ import annotations

import json
import math
import os
import re
import stat

import numpy as np

MAX_ITEMS = 10_000            # elements of one tuple/list/dict
MAX_DEPTH = 32                # nesting of containers
MAX_STR = 2_000               # characters of a string from the kernel
MAX_MESSAGE_BYTES = 64 << 20   # one message file
MAX_HEADER_BYTES = 8 << 20     # its JSON part
SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
DTYPES = {np.dtype(d).str: np.dtype(d) for d in
          ("<f8", "<f4", "<f2", "<i8", "<i4", "<i2", "|i1", "<u8", "<u4", "<u2", "|u1", "|b1")}


class WireError(ValueError):
    """A message that is not what the protocol allows (from a hostile or broken kernel)."""


class Unsupported:
    """Stands for a value that is not data (a torch tensor, an object of the student's)."""

    def __init__(self, type_name: str):
        self.type_name = str(type_name)[:200]

    def __repr__(self):
        return f"<{self.type_name}>"

    def __eq__(self, other):
        return isinstance(other, Unsupported) and other.type_name == self.type_name

    __hash__ = None


def type_name(obj) -> str:
    """`Tensor` for the notebook's own classes, `torch.Tensor` for a library's."""
    if isinstance(obj, np.ndarray):
        return f"numpy array of dtype {obj.dtype}"
    cls = type(obj)
    module = getattr(cls, "__module__", "") or ""
    name = getattr(cls, "__qualname__", "object")
    return name if module in ("builtins", "__main__") else f"{module.split('.')[0]}.{name}"


def is_array_data(obj) -> bool:
    return isinstance(obj, (np.ndarray, np.generic)) and np.asarray(obj).dtype.str in DTYPES


def is_scalar_data(obj) -> bool:
    return obj is None or isinstance(obj, (bool, int, float, str))


def is_container(obj, depth=0) -> bool:
    if depth >= MAX_DEPTH:
        return False
    if isinstance(obj, (tuple, list)):
        return len(obj) <= MAX_ITEMS
    return isinstance(obj, dict) and len(obj) <= MAX_ITEMS and all(isinstance(k, str) for k in obj)


def as_data(obj, depth=0, describe=None, left=None):
    """The value as the grader sees it: data stays, containers recurse, the rest is Unsupported.

    Both ways of reaching student code reduce results with it, so both see the same values.
    `left(array)` gives an array as student code left it (the channel's copy of an argument).
    """
    if is_scalar_data(obj):
        return obj[:MAX_STR] if isinstance(obj, str) else obj
    if is_array_data(obj):
        if not isinstance(obj, np.ndarray):
            return obj
        return (left(obj) if left is not None else obj).copy()
    if is_container(obj, depth):
        if isinstance(obj, dict):
            return {k[:200]: as_data(v, depth + 1, describe, left) for k, v in obj.items()}
        items = [as_data(v, depth + 1, describe, left) for v in obj]
        return items if isinstance(obj, list) else tuple(items)
    return Unsupported((describe or type_name)(obj))


# ---- encoding ------------------------------------------------------------------------------

class Encoder:
    """Turns values into JSON plus raw buffers; `other(obj)` encodes what is not data."""

    def __init__(self, other, array_ids=None):
        self.other, self.array_ids = other, array_ids
        self.buffers: list[np.ndarray] = []

    def __call__(self, obj, depth=0):
        if is_array_data(obj):
            spec = {"array": len(self.buffers), "generic": isinstance(obj, np.generic)}
            arr = np.asarray(obj)
            self.buffers.append(arr)
            if self.array_ids is not None and isinstance(obj, np.ndarray):
                spec["id"] = self.array_ids(obj)
            return spec
        if obj is None:
            return {"none": True}
        if isinstance(obj, bool):
            return {"bool": obj}
        if isinstance(obj, int):
            return {"int": obj} if abs(obj) < 2**63 else {"float": _float(float(obj))}
        if isinstance(obj, float):
            return {"float": _float(obj)}
        if isinstance(obj, str):
            return {"str": obj[:MAX_STR]}
        if is_container(obj, depth):
            if isinstance(obj, dict):
                return {"dict": [[k[:200], self(v, depth + 1)] for k, v in obj.items()]}
            kind = "list" if isinstance(obj, list) else "tuple"
            return {kind: [self(v, depth + 1) for v in obj]}
        return self.other(obj)


def _float(v: float):
    return v if math.isfinite(v) else repr(v)


def decode_float(v) -> float:
    if isinstance(v, str) and v in ("nan", "inf", "-inf"):
        return float(v)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    raise WireError("bad float")


class Decoder:
    """Validates and rebuilds values; `reference(spec)` turns handles/names/callbacks into objects."""

    def __init__(self, buffers, reference, on_array=None):
        self.buffers, self.reference, self.on_array = buffers, reference, on_array
        self.items = 0

    def __call__(self, spec, depth=0):
        if depth > MAX_DEPTH:
            raise WireError("nested too deeply")
        self.items += 1
        if self.items > 10 * MAX_ITEMS:
            raise WireError("too many values")
        if not isinstance(spec, dict) or not 1 <= len(spec) <= 4:
            raise WireError("malformed value")
        kind = next(iter(spec))
        value = spec[kind]
        if kind == "none" and value is True:
            return None
        if kind == "bool" and isinstance(value, bool):
            return value
        if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind == "float":
            return decode_float(value)
        if kind == "str" and isinstance(value, str):
            return value[:MAX_STR]
        if kind == "array":
            return self._array(spec)
        if kind in ("tuple", "list") and isinstance(value, list) and len(value) <= MAX_ITEMS:
            items = [self(v, depth + 1) for v in value]
            return tuple(items) if kind == "tuple" else items
        if kind == "dict" and isinstance(value, list) and len(value) <= MAX_ITEMS:
            out = {}
            for pair in value:
                if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
                    raise WireError("bad dict item")
                out[pair[0][:200]] = self(pair[1], depth + 1)
            return out
        if kind in ("handle", "name", "callback"):
            return self.reference(spec)
        raise WireError(f"malformed value ({str(kind)[:40]})")

    def _array(self, spec):
        index = spec["array"]
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(self.buffers):
            raise WireError("bad array index")
        arr = self.buffers[index]
        if spec.get("generic") is True and arr.ndim == 0:
            return arr[()]
        if self.on_array is not None and "id" in spec:
            return self.on_array(spec["id"], arr)
        return arr


# ---- message files ------------------------------------------------------------------------

def pack(message: dict, buffers: list[np.ndarray]) -> bytes:
    header = dict(message, buffers=[[b.dtype.str, list(b.shape), b.nbytes] for b in buffers])
    return json.dumps(header).encode() + b"\n" + b"".join(b.tobytes() for b in buffers)


def unpack(data: bytes) -> tuple[dict, list[np.ndarray]]:
    """Parse a message; raw buffers must match their declared dtype and shape exactly."""
    end = data.find(b"\n", 0, MAX_HEADER_BYTES + 1)
    if end < 0:
        raise WireError("no header")
    try:
        header = json.loads(data[:end].decode("utf-8"))
    except (ValueError, RecursionError):
        raise WireError("header is not JSON") from None
    if not isinstance(header, dict) or not isinstance(header.get("buffers"), list) \
            or len(header["buffers"]) > MAX_ITEMS:
        raise WireError("malformed header")
    buffers, offset = [], end + 1
    for entry in header.pop("buffers"):
        if not (isinstance(entry, list) and len(entry) == 3 and entry[0] in DTYPES
                and isinstance(entry[1], list) and len(entry[1]) <= 32
                and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in entry[1])
                and isinstance(entry[2], int)):
            raise WireError("malformed buffer")
        dtype, shape, nbytes = DTYPES[entry[0]], tuple(entry[1]), entry[2]
        if math.prod(shape) * dtype.itemsize != nbytes or offset + nbytes > len(data):
            raise WireError("buffer size does not match its shape")
        buffers.append(np.frombuffer(data, dtype, math.prod(shape), offset).reshape(shape).copy())
        offset += nbytes
    return header, buffers


def write_message(folder: str, name: str, data: bytes) -> None:
    """Write atomically: the reader never sees half a message (a temp name, then rename)."""
    tmp = os.path.join(folder, f".{name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, os.path.join(folder, name))


def read_regular(path: str, max_bytes: int = MAX_MESSAGE_BYTES) -> bytes | None:
    """The bytes of a regular file, without following links; None if absent or not allowed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as e:  # a link (ELOOP), a folder...: planted, not written by the protocol
        raise WireError(f"unreadable message ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise WireError("not a regular file")
        if st.st_size > max_bytes:
            raise WireError(f"message larger than {max_bytes} bytes")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise WireError(f"message larger than {max_bytes} bytes")
        return data
    finally:
        os.close(fd)
