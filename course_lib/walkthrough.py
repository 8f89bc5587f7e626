"""The walkthrough: a static HTML site of the solved, executed source notebooks.

`build(root)` runs every `source/<assignment>/<notebook>.ipynb` (two kernels at a time, each in
its notebook's folder), renders it with nbconvert (plots embedded as base64, so the folder is
self-contained and works from `file://`), and writes `<root>/walkthrough/`:

    index.html                   the stages in order: title, learning goals, link
    <assignment>.html            one page per notebook, with a previous / index / next bar

The pages show the solutions (that is the point: a learner who is stuck reads them) without
nbgrader's markers, and never show hidden tests: the text between `### BEGIN HIDDEN TESTS` and
`### END HIDDEN TESTS` is removed before the notebook runs, and a cell left empty is dropped.
"""
from __future__ import annotations

import asyncio
import html
import json
import os
import re
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass, field

import nbformat

OUTPUT_DIR = "walkthrough"
WORKERS = 2                 # kernels running at once
CELL_TIMEOUT = 600          # seconds per cell: generous, a slow machine must still build
SITE_TITLE = "Backprop from Scratch: the walkthrough"

SOLUTION_MARKERS = ("BEGIN SOLUTION", "END SOLUTION")   # nbgrader matches these as substrings
BEGIN_HIDDEN, END_HIDDEN = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"


@dataclass
class Page:
    assignment: str
    notebook: str            # file name without .ipynb
    source: str              # path of the source notebook
    filename: str = ""       # the HTML page, relative to the output folder
    title: str = ""
    goals_html: str = ""
    figures: int = 0         # cells whose outputs hold an image
    nb: object = field(default=None, repr=False)


# --------------------------------------------------------------------------- finding notebooks

def find_pages(root: str) -> list[Page]:
    """Every source notebook, in stage order (assignment folders sort as 01_, 02_, ...)."""
    source = os.path.join(root, "source")
    pages = []
    for assignment in sorted(os.listdir(source)) if os.path.isdir(source) else []:
        folder = os.path.join(source, assignment)
        if not os.path.isdir(folder) or assignment.startswith("."):
            continue
        notebooks = sorted(n for n in os.listdir(folder)
                           if n.endswith(".ipynb") and not n.startswith("."))
        for name in notebooks:
            stem = name[:-len(".ipynb")]
            filename = f"{assignment}.html" if len(notebooks) == 1 else f"{assignment}-{stem}.html"
            pages.append(Page(assignment, stem, os.path.join(folder, name), filename))
    return pages


# --------------------------------------------------------------------------- nbgrader markers

def strip_markers(text: str) -> str:
    """Drop nbgrader's solution markers and everything between the hidden-test markers."""
    kept, hidden = [], False
    for line in text.split("\n"):
        if BEGIN_HIDDEN in line:
            hidden = True
        elif END_HIDDEN in line:
            hidden = False
        elif not hidden and not any(m in line for m in SOLUTION_MARKERS):
            kept.append(line)
    return "\n".join(kept).strip("\n")


def prepare(nb):
    """The notebook as the walkthrough shows it: markers gone, hidden tests gone, no outputs."""
    nb = nbformat.from_dict(nb)
    cells = []
    for cell in nb.cells:
        cell.source = strip_markers(cell.source)
        if not cell.source.strip():
            continue                       # e.g. a hidden test cell: nothing left to show
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    nb.cells = cells
    return nb


# --------------------------------------------------------------------------- titles and goals

def first_heading(nb, default: str) -> str:
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            m = re.match(r"\s*#{1,6}\s+(.+?)\s*#*\s*$", line)
            if m:
                return m.group(1)
    return default


_LIST_ITEM = re.compile(r"\s*([-*+]|\d+[.)])\s+")


def learning_goals(nb) -> str:
    """The markdown list that follows a 'Learning goals' line in the opening cells, or ''."""
    for cell in [c for c in nb.cells if c.cell_type == "markdown"][:4]:
        lines = cell.source.splitlines()
        for i, line in enumerate(lines):
            if not re.search(r"learning goals?|you will learn|by the end", line, re.I):
                continue
            items = []
            for nxt in lines[i + 1:]:
                if _LIST_ITEM.match(nxt) or (items and nxt.startswith((" ", "\t")) and nxt.strip()):
                    items.append(nxt)
                elif nxt.strip() or items:
                    break
            if items:
                return "\n".join(items)
    return ""


def markdown_to_html(text: str) -> str:
    from nbconvert.filters.markdown_mistune import markdown2html_mistune
    return markdown2html_mistune(text)


# --------------------------------------------------------------------------- running

def _kernel_spec_dir() -> str:
    """A kernelspec for *this* Python, so the kernel imports the same course_lib."""
    folder = tempfile.mkdtemp(prefix="walkthrough-kernels-")
    spec = os.path.join(folder, "python3")
    os.makedirs(spec)
    with open(os.path.join(spec, "kernel.json"), "w") as f:
        json.dump({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                   "display_name": "Python 3", "language": "python"}, f)
    return folder


async def _execute(page: Page, kernel_dirs: str, limit: asyncio.Semaphore) -> None:
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    async with limit:
        km = AsyncKernelManager(kernel_name="python3",
                                kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernel_dirs]))
        client = NotebookClient(page.nb, km=km, timeout=CELL_TIMEOUT, startup_timeout=120,
                                kernel_name="python3", record_timing=False,
                                resources={"metadata": {"path": os.path.dirname(page.source)}})
        # The kernel's stderr (its startup chatter, a crash's last words) goes to a log that a
        # failure report quotes, not to the terminal of `make walkthrough`.
        with tempfile.TemporaryFile("w+") as log:
            try:
                await client.async_execute(stderr=log)
            except BaseException as e:
                log.seek(0)
                tail = "".join(l for l in log.read().splitlines(True)[-20:]
                               if "running over TCP" not in l)
                if tail.strip():
                    raise RuntimeError(f"{e}\n--- kernel stderr ---\n{tail}") from e
                raise


async def _execute_all(pages: list[Page], workers: int) -> list[tuple[Page, BaseException]]:
    kernel_dirs = _kernel_spec_dir()
    limit = asyncio.Semaphore(workers)
    try:
        results = await asyncio.gather(*(_execute(p, kernel_dirs, limit) for p in pages),
                                       return_exceptions=True)
    finally:
        shutil.rmtree(kernel_dirs, ignore_errors=True)
    return [(p, r) for p, r in zip(pages, results) if isinstance(r, BaseException)]


def execute(pages: list[Page], workers: int = WORKERS) -> None:
    """Run the pages' notebooks in place, `workers` kernels at a time; raise on any error."""
    try:
        asyncio.get_running_loop()
        running = True
    except RuntimeError:
        running = False
    if not running:
        failures = asyncio.run(_execute_all(pages, workers))
    else:                       # called from a notebook or another event loop: use a thread
        box = {}
        t = threading.Thread(target=lambda: box.update(r=asyncio.run(_execute_all(pages, workers))))
        t.start()
        t.join()
        failures = box["r"]
    if failures:
        report = "\n\n".join(f"{os.path.relpath(p.source)}:\n{str(e)[-2000:]}" for p, e in failures)
        raise RuntimeError(f"{len(failures)} notebook(s) failed to run:\n\n{report}")


# --------------------------------------------------------------------------- rendering

NAV_CSS = """
<style>
.walkthrough-nav { display: flex; justify-content: space-between; align-items: center;
  gap: 1em; font: 15px/1.4 system-ui, sans-serif; padding: 0.6em 1em; margin: 0 0 1em 0;
  background: #f3f5f8; border-bottom: 1px solid #d0d7de; }
.walkthrough-nav.bottom { border-top: 1px solid #d0d7de; border-bottom: none; margin: 2em 0 0 0; }
.walkthrough-nav a { color: #0b57d0; text-decoration: none; }
.walkthrough-nav a:hover { text-decoration: underline; }
.walkthrough-nav .muted { color: #888; }
.walkthrough-nav > span { flex: 1; }
.walkthrough-nav > span:nth-child(2) { text-align: center; }
.walkthrough-nav > span:last-child { text-align: right; }
</style>
"""


def _nav(pages: list[Page], i: int, where: str) -> str:
    def link(j, rel, arrow_left):
        if not 0 <= j < len(pages):
            return f'<span class="muted">{"&larr; start" if arrow_left else "the end &rarr;"}</span>'
        text = html.escape(pages[j].title)
        text = f"&larr; {text}" if arrow_left else f"{text} &rarr;"
        return f'<a rel="{rel}" href="{html.escape(pages[j].filename)}">{text}</a>'
    return (f'<nav class="walkthrough-nav {where}" aria-label="walkthrough">'
            f'<span>{link(i - 1, "prev", True)}</span>'
            f'<span><a href="index.html">All stages</a> &middot; stage {i + 1} of {len(pages)}</span>'
            f'<span>{link(i + 1, "next", False)}</span></nav>')


def _count_figures(nb) -> int:
    return sum(1 for c in nb.cells if c.cell_type == "code"
               and any("image/png" in o.get("data", {}) or "image/svg+xml" in o.get("data", {})
                       for o in c.get("outputs", [])))


def render_page(pages: list[Page], i: int) -> str:
    from nbconvert import HTMLExporter

    page = pages[i]
    exporter = HTMLExporter(template_name="lab", embed_images=True)
    body, _ = exporter.from_notebook_node(page.nb, resources={"metadata": {"name": page.title}})
    top, bottom = _nav(pages, i, "top"), _nav(pages, i, "bottom")
    body = body.replace("</head>", NAV_CSS + "</head>", 1)
    body, n = re.subn(r"(<body[^>]*>)", lambda m: m.group(1) + "\n" + top, body, count=1)
    if not n:
        body = top + body
    body = body.replace("</body>", bottom + "\n</body>", 1) if "</body>" in body else body + bottom
    return body


INDEX_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<script>window.MathJax = {{ tex: {{ inlineMath: [['$', '$'], ['\\\\(', '\\\\)']] }} }};</script>
<script defer src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script>
<style>
body {{ font: 16px/1.55 system-ui, sans-serif; max-width: 52em; margin: 2em auto; padding: 0 1em;
       color: #1f2328; }}
h1 {{ margin-bottom: 0.2em; }}
.lede {{ color: #444; }}
ol.stages {{ padding-left: 0; list-style: none; counter-reset: stage; }}
ol.stages > li {{ border: 1px solid #d0d7de; border-radius: 8px; padding: 0.8em 1.2em;
                 margin: 1em 0; }}
ol.stages > li h2 {{ margin: 0 0 0.3em 0; font-size: 1.25em; }}
ol.stages > li h2 a {{ color: #0b57d0; text-decoration: none; }}
ol.stages > li h2 a:hover {{ text-decoration: underline; }}
.goals {{ margin: 0.2em 0 0 0; }}
.goals-label {{ font-weight: 600; margin: 0.4em 0 0 0; }}
code {{ background: #f3f5f8; padding: 0 0.2em; border-radius: 3px; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p class="lede">The notebooks of the course, <strong>solved and run</strong>: every
solution, every output and every plot. Try each exercise in your own copy first (the hints in
the notebook go from a nudge to nearly the answer), check it with <code>course check
my_notebook.ipynb</code>, and come here when you are stuck or to compare your answer.</p>
<ol class="stages">
{items}
</ol>
</body>
</html>
"""


def render_index(pages: list[Page]) -> str:
    items = []
    for i, p in enumerate(pages):
        goals = (f'<p class="goals-label">Learning goals</p><div class="goals">{p.goals_html}</div>'
                 if p.goals_html else "")
        items.append(f'<li id="{html.escape(p.assignment)}"><h2><a href="{html.escape(p.filename)}">'
                     f'{html.escape(p.title)}</a></h2>{goals}</li>')
    return INDEX_TEMPLATE.format(title=html.escape(SITE_TITLE), items="\n".join(items))


# --------------------------------------------------------------------------- the whole site

def build(root: str, output: str | None = None, workers: int = WORKERS) -> str:
    """Execute and render every source notebook; return the path of the site's index.html."""
    root = os.path.abspath(root)
    output = os.path.abspath(output or os.path.join(root, OUTPUT_DIR))
    pages = find_pages(root)
    if not pages:
        raise SystemExit(f"no notebooks under {os.path.join(root, 'source')}")
    for p in pages:
        original = nbformat.read(p.source, as_version=4)
        p.title = first_heading(original, f"{p.assignment}: {p.notebook}")
        goals = learning_goals(original)
        p.goals_html = markdown_to_html(goals) if goals else ""
        p.nb = prepare(original)

    execute(pages, workers)

    os.makedirs(output, exist_ok=True)
    for i, p in enumerate(pages):
        p.figures = _count_figures(p.nb)
        with open(os.path.join(output, p.filename), "w", encoding="utf-8") as f:
            f.write(render_page(pages, i))
    index = os.path.join(output, "index.html")
    with open(index, "w", encoding="utf-8") as f:
        f.write(render_index(pages))
    return index
