"""Images pasted into a student's markdown cell (`![image.png](attachment:image.png)`), kept as
images on the pages we render from it, and nothing else.

A cell's attachment is shown only as a raster image (PNG, JPEG, GIF, WebP) whose bytes decode
from strict base64, start as that format does and are at most `MAX_BYTES`; an SVG (it can
carry script), another type or a bad one is replaced by its alt text and a note. The data URL
is rebuilt from the decoded bytes, so nothing but base64 of a checked image reaches the page.
"""
from __future__ import annotations

import base64
import binascii
import html
import re

MAX_BYTES = 4 << 20
FORMATS = {"image/png": (b"\x89PNG\r\n\x1a\n",), "image/jpeg": (b"\xff\xd8\xff",),
           "image/gif": (b"GIF87a", b"GIF89a"), "image/webp": (b"RIFF",)}


def image_bytes(bundle) -> tuple[str, bytes] | None:
    """(type, bytes) of the first raster image a cell's attachment bundle holds, if valid."""
    if not isinstance(bundle, dict):
        return None
    for mime, magics in FORMATS.items():
        value = bundle.get(mime)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = "".join(value)
        if not isinstance(value, str) or len(value) > MAX_BYTES * 4 // 3 + 1024:
            continue
        try:
            data = base64.b64decode(re.sub(r"\s+", "", value), validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(data) <= MAX_BYTES and data.startswith(magics) \
                and (mime != "image/webp" or data[8:12] == b"WEBP"):
            return mime, data
    return None


def missing_attachment(name: str, alt: str) -> str:
    """What stands in the page for an attachment that is not shown."""
    return (f"<em>[{html.escape(alt or name)}: attachment {html.escape(name)!s} not shown "
            "(only PNG, JPEG, GIF or WebP images are)]</em>")
