"""Formulas of a feedback page as MathML, written when the page is made.

Browsers draw MathML themselves, so a page needs no MathJax and no network: it reads the same
offline, in the formgrader and in a student's fetched copy. The TeX comes from notebook text a
student may have edited, so what latex2mathml returns is parsed and rebuilt from an allowlist of
MathML elements and presentation attributes (no links, styles, ids or scripts); anything else,
or TeX it cannot read, is shown as the TeX source in a code span.
"""
from __future__ import annotations

import html
import xml.etree.ElementTree as ET

from latex2mathml.converter import convert

ELEMENTS = {"math", "mrow", "mi", "mn", "mo", "mtext", "mspace", "ms", "mfrac", "msqrt", "mroot",
            "mstyle", "mpadded", "mphantom", "menclose", "msub", "msup", "msubsup", "munder",
            "mover", "munderover", "mtable", "mtr", "mtd"}
ATTRIBUTES = {"display", "mathvariant", "mathsize", "displaystyle", "scriptlevel", "stretchy",
              "fence", "separator", "accent", "accentunder", "movablelimits", "largeop",
              "symmetric", "minsize", "maxsize", "lspace", "rspace", "width", "height", "depth",
              "linethickness", "notation", "columnalign", "columnspacing", "rowspacing",
              "columnlines", "rowlines", "frame", "voffset", "form", "linebreak"}
# Environments latex2mathml names differently (same layout inside display math).
ENVIRONMENTS = {"aligned": "align*"}
NS = "{http://www.w3.org/1998/Math/MathML}"


class Unsafe(ValueError):
    """MathML with an element or attribute outside the allowlist."""


def to_mathml(tex: str, display: bool) -> str:
    """A <math> element for `tex`, or the TeX itself in a code span when that fails."""
    try:
        root = ET.fromstring(convert(_normalize(tex), display="block" if display else "inline"))
        return _rebuild(root)
    except Exception:  # latex2mathml's errors have no common base; the fallback is harmless
        code = f'<code class="tex">{html.escape(tex)}</code>'
        return f"<div>{code}</div>" if display else code


def _normalize(tex: str) -> str:
    for ours, theirs in ENVIRONMENTS.items():
        tex = tex.replace(f"\\begin{{{ours}}}", f"\\begin{{{theirs}}}")
        tex = tex.replace(f"\\end{{{ours}}}", f"\\end{{{theirs}}}")
    return tex


def _rebuild(element) -> str:
    tag = element.tag.removeprefix(NS)
    if tag not in ELEMENTS:
        raise Unsafe(tag)
    attrs = ""
    for name, value in element.attrib.items():
        if name not in ATTRIBUTES:
            raise Unsafe(name)
        attrs += f' {name}="{html.escape(value)}"'
    if tag == "math":
        attrs = ' xmlns="http://www.w3.org/1998/Math/MathML"' + attrs
    inner = html.escape(element.text or "", quote=False)
    for child in element:
        inner += _rebuild(child) + html.escape(child.tail or "", quote=False)
    return f"<{tag}{attrs}>{inner}</{tag}>"
