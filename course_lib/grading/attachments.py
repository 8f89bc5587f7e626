"""Images pasted into a student's markdown cell (`![image.png](attachment:image.png)`), kept as
images on the pages we render from it, and nothing else.

A cell's attachment is shown only as a raster image (PNG, JPEG, GIF, WebP) whose bytes decode
from strict base64, start as that format does and are at most `MAX_BYTES`; an SVG (it can
carry script), another type or a bad one is replaced by its alt text and a note. While the
cell's HTML is sanitized an image's address is a placeholder; the data URL we rebuilt from the
decoded bytes replaces it only afterwards, so the sanitizer never has to allow `data:` URLs.
"""
from __future__ import annotations

import base64
import binascii
import html
import re
import secrets

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


class Attachments:
    """One cell's attachments while its markdown is rendered and sanitized."""

    def __init__(self, bundles):
        self.bundles = bundles if isinstance(bundles, dict) else {}
        self.nonce = secrets.token_hex(8)
        self.urls: dict[str, str] = {}

    def placeholder(self, name: str) -> str | None:
        """A plain relative address standing for attachment `name`; None if it is no image."""
        found = image_bytes(self.bundles.get(name))
        if found is None:
            return None
        key = f"course-attachment-{self.nonce}-{len(self.urls)}"
        self.urls[key] = f"data:{found[0]};base64,{base64.b64encode(found[1]).decode()}"
        return key

    @staticmethod
    def missing(name: str, alt: str) -> str:
        """What stands in the page for an attachment that is not shown."""
        return (f"<em>[{html.escape(alt or name)}: attachment {html.escape(name)!s} not shown "
                "(only PNG, JPEG, GIF or WebP images are)]</em>")

    def restore(self, clean_html: str) -> str:
        """The sanitized HTML with each placeholder replaced by its image's data URL."""
        for key, url in self.urls.items():
            clean_html = clean_html.replace(f'src="{key}"', f'src="{url}"')
        return clean_html
