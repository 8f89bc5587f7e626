"""The walkthrough site: solved notebooks with their plots, stages linked in order, no hidden tests."""
from __future__ import annotations

import html
import os
import re
from html.parser import HTMLParser

import nbformat
import pytest

from course_lib import walkthrough
from harness import NOTEBOOKS, REPO

IMG = re.compile(r'<img\b[^>]*\bsrc="data:image/png;base64,')
# A cell that draws: pyplot calls, or a course_lib plotting helper (course_lib.plots / plot_*).
PLOTS = re.compile(r"\bplt\.(show|plot|subplots?|figure|imshow|matshow|scatter|hist|bar|"
                   r"semilogy|loglog|contourf?)\b|\bplots\.\w+\(|\bplot_\w+\(|\bdraw_\w+\(")


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []      # (href, rel)

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            a = dict(attrs)
            self.links.append((a.get("href"), a.get("rel")))


def links(text):
    p = Links()
    p.feed(text)
    return p.links


def page_text(text):
    """What a reader sees: tags (and so syntax-highlighting spans) gone, entities decoded."""
    text = re.sub(r"<(script|style)\b.*?</\1>", "", text, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def source_notebooks():
    return [(a, os.path.join(REPO, "source", a, n + ".ipynb")) for a, n in NOTEBOOKS.items()]


def hidden_only_lines():
    """Lines of hidden-test regions that occur nowhere outside them (in any source notebook)."""
    hidden, visible = set(), set()
    for _, path in source_notebooks():
        if not os.path.exists(path):
            continue
        for cell in nbformat.read(path, as_version=4).cells:
            inside = False
            for line in cell.source.splitlines():
                if walkthrough.BEGIN_HIDDEN in line:
                    inside = True
                elif walkthrough.END_HIDDEN in line:
                    inside = False
                else:
                    (hidden if inside else visible).add(line.strip())
    public = "\n".join(visible)  # a hidden line that is part of a public one is no secret
    return {line for line in hidden - visible if len(line) > 12 and line not in public}


def plotting_cells(path):
    nb = walkthrough.prepare(nbformat.read(path, as_version=4))
    return sum(1 for c in nb.cells if c.cell_type == "code"
               and PLOTS.search("\n".join(l for l in c.source.splitlines()
                                          if not l.lstrip().startswith("#"))))


# --------------------------------------------------------------------------- fast, no kernels

def test_strip_markers_keeps_solutions_and_drops_hidden_tests():
    src = ("def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n"
           "### BEGIN HIDDEN TESTS\nassert f(3) == 6  # secret\n### END HIDDEN TESTS\nprint('ok')")
    assert walkthrough.strip_markers(src) == "def f(x):\n    return 2 * x\nprint('ok')"


def test_prepare_drops_cells_left_empty():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_code_cell("### BEGIN HIDDEN TESTS\nassert x == 1\n### END HIDDEN TESTS"),
                nbformat.v4.new_markdown_cell("### BEGIN SOLUTION\nBecause.\n### END SOLUTION")]
    out = walkthrough.prepare(nb)
    assert [c.source for c in out.cells] == ["x = 1", "Because."]


def test_title_and_learning_goals():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(
        "# 02 · Manual backprop\n\n## Learning goals\n- derive a rule\n- check it\n\nTime: 1 h")]
    assert walkthrough.first_heading(nb, "x") == "02 · Manual backprop"
    assert walkthrough.learning_goals(nb) == "- derive a rule\n- check it"


# --------------------------------------------------------------------------- the real site

@pytest.mark.slow
def test_walkthrough_builds_with_every_stage_linked_in_order_and_its_plots(tmp_path):
    missing = [p for _, p in source_notebooks() if not os.path.exists(p)]
    assert not missing, f"source notebooks missing: {missing}"
    index = walkthrough.build(REPO, output=str(tmp_path / "site"))
    site = os.path.dirname(index)
    assert index == os.path.join(site, "index.html")
    expected = [f"{a}.html" for a in NOTEBOOKS]

    # The index links every stage, in order.
    with open(index, encoding="utf-8") as f:
        index_html = f.read()
    stage_links = [h for h, _ in links(index_html) if h in expected]
    assert stage_links == expected, stage_links

    secrets = hidden_only_lines()
    for i, ((assignment, source), page) in enumerate(zip(source_notebooks(), expected)):
        with open(os.path.join(site, page), encoding="utf-8") as f:
            text = f.read()
        found = links(text)
        # Each page links to the index and to its neighbours.
        assert ("index.html", None) in found, page
        if i + 1 < len(expected):
            assert (expected[i + 1], "next") in found, f"{page} does not link to the next stage"
        if i > 0:
            assert (expected[i - 1], "prev") in found, f"{page} does not link to the previous stage"

        # Plots: one embedded PNG at least per cell that draws, and at least one per page.
        images, drawing = len(IMG.findall(text)), plotting_cells(source)
        assert images >= max(1, drawing), f"{page}: {images} images, {drawing} cells that plot"

        # Solutions shown without nbgrader's markers; hidden tests never shown.
        visible = page_text(text)
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
            assert marker not in visible, f"{page} shows {marker!r}"
        leaked = [line for line in secrets if line in visible]
        assert not leaked, f"{page} shows hidden-test lines: {leaked[:3]}"
        assert "Traceback (most recent call last)" not in visible, f"{page} shows an error"
