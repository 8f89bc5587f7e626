"""What crosses the sandbox wall: a student's outputs as JSON plus `.npy` arrays, nothing else.

The kernel encodes what the student's code returned; the trusted grader decodes it. Decoding
never unpickles, evaluates or sympifies anything: arrays load with `allow_pickle=False`, the
rest is plain JSON of bounded size. Anything else a student returns (a torch tensor, an object
of their own) crosses as `Unsupported(type name)`, so a check can say what came back.
"""
from __future__ import annotations

import io
import json
import math
import os
import re
import stat

import numpy as np

MAX_ITEMS = 10_000          # elements of a tuple/list/dict
MAX_STR = 2_000             # characters of a string (messages from the kernel)
MAX_FILE_BYTES = 64 << 20   # one file read back from a sandbox
MAX_TREE_BYTES = 256 << 20  # all files read back from one sandbox
SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class Unsupported:
    """Stands for a value of a type that cannot cross the wall (e.g. torch.Tensor)."""

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __repr__(self):
        return f"<{self.type_name}>"


class Raised:
    """The student's code raised instead of returning."""

    def __init__(self, message: str):
        self.message = message[:MAX_STR]

    def __repr__(self):
        return f"raised {self.message}"


def _encode_float(v: float):
    return v if math.isfinite(v) else repr(v)


def encode(obj, arrays: list) -> object:
    """Turn a returned value into JSON-able data, appending its arrays to `arrays`."""
    if isinstance(obj, np.ndarray) or isinstance(obj, np.generic):
        arr = np.asarray(obj)
        if arr.dtype.kind not in "biuf":
            return {"unsupported": f"numpy array of dtype {arr.dtype}"}
        arrays.append(np.array(arr, copy=True))
        return {"array": len(arrays) - 1, "generic": isinstance(obj, np.generic)}
    if isinstance(obj, bool):
        return {"bool": obj}
    if isinstance(obj, int):
        return {"int": obj} if abs(obj) < 2**63 else {"float": _encode_float(float(obj))}
    if isinstance(obj, float):
        return {"float": _encode_float(obj)}
    if obj is None:
        return {"none": True}
    if isinstance(obj, str):
        return {"str": obj[:MAX_STR]}
    if isinstance(obj, Raised):
        return {"raised": obj.message}
    if isinstance(obj, (tuple, list)):
        if len(obj) > MAX_ITEMS:
            return {"unsupported": f"{type(obj).__name__} of {len(obj)} items"}
        return {type(obj).__name__: [encode(item, arrays) for item in obj]}
    if isinstance(obj, dict) and all(isinstance(k, str) for k in obj) and len(obj) <= MAX_ITEMS:
        return {"dict": [[k[:200], encode(v, arrays)] for k, v in obj.items()]}
    return {"unsupported": _type_name(obj)}


def _type_name(obj) -> str:
    cls = type(obj)
    module = getattr(cls, "__module__", "") or ""
    name = getattr(cls, "__qualname__", "object")
    return name if module in ("builtins", "__main__") else f"{module.split('.')[0]}.{name}"


def _decode_float(v) -> float:
    if isinstance(v, str):
        if v not in ("nan", "inf", "-inf"):
            raise ValueError(f"bad float {v!r}")
        return float(v)
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise ValueError("bad float")
    return float(v)


def decode(spec, arrays: list):
    """Inverse of `encode`, for data that came from an untrusted kernel: validate everything."""
    if not isinstance(spec, dict) or len(spec) not in (1, 2):
        raise ValueError("malformed record")
    kind = next(iter(spec))
    value = spec[kind]
    if kind == "array":
        if not isinstance(value, int) or not 0 <= value < len(arrays):
            raise ValueError("bad array index")
        arr = arrays[value]
        return arr[()] if spec.get("generic") is True and arr.ndim == 0 else arr
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float":
        return _decode_float(value)
    if kind == "none":
        return None
    if kind in ("str", "unsupported", "raised") and isinstance(value, str):
        text = value[:MAX_STR]
        return {"str": text, "unsupported": Unsupported(text), "raised": Raised(text)}[kind]
    if kind in ("tuple", "list") and isinstance(value, list) and len(value) <= MAX_ITEMS:
        items = [decode(item, arrays) for item in value]
        return tuple(items) if kind == "tuple" else items
    if kind == "dict" and isinstance(value, list) and len(value) <= MAX_ITEMS:
        out = {}
        for pair in value:
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
                raise ValueError("bad dict item")
            out[pair[0]] = decode(pair[1], arrays)
        return out
    raise ValueError(f"malformed record ({kind})")


# ---- files: one probe = <n>.json + <n>.<k>.npy inside <test_id>/ -------------------------

def dump_files(obj) -> dict[str, bytes]:
    """Encode one probe's outputs as {suffix: bytes}: '.json' and '.<k>.npy'."""
    arrays: list = []
    spec = encode(obj, arrays)
    files = {".json": json.dumps(spec).encode()}
    for k, arr in enumerate(arrays):
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        files[f".{k}.npy"] = buf.getvalue()
    return files


def load_files(files: dict[str, bytes]):
    """Decode what `dump_files` wrote (the bytes may come from an untrusted kernel)."""
    if ".json" not in files:
        raise KeyError("no record")
    spec = json.loads(files[".json"].decode())
    arrays = []
    k = 0
    while f".{k}.npy" in files:
        arr = np.load(io.BytesIO(files[f".{k}.npy"]), allow_pickle=False)
        if arr.dtype.kind not in "biuf":
            raise ValueError("bad array dtype")
        arrays.append(arr)
        k += 1
    return decode(spec, arrays)


def roundtrip(obj):
    """What the trusted grader would see: the kernel checks this, so both paths agree."""
    return load_files(dump_files(obj))


def write_probe(directory: str, test_id: str, index: int, obj) -> None:
    folder = os.path.join(directory, test_id)
    os.makedirs(folder, exist_ok=True)
    for suffix, data in dump_files(obj).items():
        with open(os.path.join(folder, f"{index}{suffix}"), "wb") as f:
            f.write(data)


def probe_files(tree: dict[str, bytes], test_id: str, index: int) -> dict[str, bytes]:
    """The files of one probe out of a tree read back by `read_tree`."""
    prefix = f"{test_id}/{index}."
    return {name[len(prefix) - 1:]: data for name, data in tree.items() if name.startswith(prefix)}


def read_tree(root: str, max_bytes: int = MAX_TREE_BYTES) -> dict[str, bytes]:
    """Read an untrusted folder (two levels: <test_id>/<file>) without following links.

    Symlinks, devices and oversized files are skipped: a kernel cannot make the trusted
    process read a host file by planting a link in its records folder.
    """
    tree: dict[str, bytes] = {}
    total = 0
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return tree
    try:
        for sub in sorted(os.listdir(root_fd))[:1000]:
            if not SAFE_ID.match(sub):
                continue
            try:
                sub_fd = os.open(sub, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=root_fd)
            except OSError:
                continue
            try:
                for name in sorted(os.listdir(sub_fd))[:10_000]:
                    data = _read_regular(name, sub_fd)
                    if data is None or total + len(data) > max_bytes:
                        continue
                    total += len(data)
                    tree[f"{sub}/{name}"] = data
            finally:
                os.close(sub_fd)
    finally:
        os.close(root_fd)
    return tree


def _read_regular(name: str, dir_fd: int) -> bytes | None:
    if not SAFE_ID.match(name):
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE_BYTES:
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(MAX_FILE_BYTES + 1)[:MAX_FILE_BYTES]
    finally:
        os.close(fd)
