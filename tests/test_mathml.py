"""Formulas of feedback pages as MathML: drawn offline, and nothing but MathML gets through."""
import glob
import json
import os
from html.parser import HTMLParser

from course_lib.grading.mathml import ELEMENTS, to_mathml
from course_lib.grading.preprocessors import sanitized_html
from harness import REPO


def test_a_formula_becomes_mathml():
    out = to_mathml(r"\frac{\partial L}{\partial x}", display=True)
    assert out.startswith('<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">')
    assert "<mfrac>" in out


def test_tex_it_cannot_read_stays_tex_in_code():
    assert to_mathml(r"\style{a}", display=False) == r'<code class="tex">\style{a}</code>'


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.seen = []

    def handle_starttag(self, tag, attrs):
        self.seen.append((tag, [name for name, _ in attrs]))


def test_no_script_link_or_handler_gets_through():
    for tex in [r"\text{<script>alert(1)</script>}", r"\href{javascript:alert(1)}{x}",
                r"\text{x\" onmouseover=\"alert(1)}", r"\class{x}{y}", r"\style{color:red}{x}"]:
        parsed = Tags()
        parsed.feed(sanitized_html(f"see ${tex}$ and $${tex}$$"))
        for tag, names in parsed.seen:
            assert tag in ELEMENTS | {"p", "code", "div"}, (tex, tag)
            assert not {n for n in names if n.startswith("on") or n in ("href", "style")}, tex


def test_math_in_code_stays_code():
    out = sanitized_html("`cost = $5` and $x^2$")
    assert "<code>cost = $5</code>" in out and "<msup>" in out


def test_every_formula_of_the_course_draws():
    """All formulas in the five source notebooks come out as MathML, none as TeX."""
    for path in glob.glob(os.path.join(REPO, "source", "*", "*.ipynb")):
        with open(path) as f:
            cells = json.load(f)["cells"]
        for cell in cells:
            if cell["cell_type"] == "markdown":
                out = sanitized_html("".join(cell["source"]))
                assert 'class="tex"' not in out, (path, out)
