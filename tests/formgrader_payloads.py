"""Script payloads a hostile student puts in a submission, and the marker each would set.

Every payload, if it ran in the instructor's browser, appends its name to `window.__pwned`
(the iframe's to its parent's). Shared by the formgrader test and the hub test.
"""
import base64
import os

import nbformat

MARK = "(window.parent.__pwned = (window.parent.__pwned || [])).push"


def _js(name: str) -> str:
    return f"{MARK}('{name}')"


MARKDOWN = {
    "script": f"<script>{_js('script')}</script>",
    "img_onerror": f'<img src="x" onerror="{_js("img_onerror")}">',
    "svg_onload": f'<svg onload="{_js("svg_onload")}"><circle r="5"/></svg>',
    "svg_script": f"<svg><script>{_js('svg_script')}</script></svg>",
    "details_ontoggle": f'<details open ontoggle="{_js("details_ontoggle")}"><summary>s'
                        "</summary>x</details>",
    "iframe_srcdoc": f'<iframe srcdoc="<script>{_js("iframe_srcdoc")}</script>"></iframe>',
    "javascript_link": "[click me](javascript:window.parent.__pwned=['javascript_link'])",
    "comment_breakout": f'<!-- --!><img src="x" onerror="{_js("comment_breakout")}"> -->',
}
_SVG = (f'<svg xmlns="http://www.w3.org/2000/svg" onload="{_js("attachment_svg")}">'
        f"<script>{_js('attachment_svg_script')}</script></svg>")
ATTACHMENTS = {"evil.svg": {"image/svg+xml": base64.b64encode(_SVG.encode()).decode()},
               "evil.html": {"text/html": base64.b64encode(
                   f"<script>{_js('attachment_html')}</script>".encode()).decode()}}
OUTPUTS = [  # what a hostile kernel could print, as autograded/ would hold it unsanitized
    nbformat.v4.new_output("display_data", data={
        "text/html": f'<img src="x" onerror="{_js("output_html")}">', "text/plain": "html"}),
    nbformat.v4.new_output("display_data", data={
        "application/javascript": _js("output_javascript"), "text/plain": "js"}),
    nbformat.v4.new_output("display_data", data={
        "image/svg+xml": f'<svg xmlns="http://www.w3.org/2000/svg" onload="{_js("output_svg")}"/>',
        "text/plain": "svg"}),
    nbformat.v4.new_output("display_data", data={
        "image/png": f'x" onerror="{_js("output_png_attr")}'}),
    nbformat.v4.new_output("stream", name=f'x"><img src=x onerror="{_js("stream_name")}">',
                           text="hello"),
]
# The same, printed by the student's own code cell when it runs.
PRINTING_CELL = "\n".join([
    "from IPython.display import HTML, Javascript, SVG, display",
    f"display(HTML({OUTPUTS[0]['data']['text/html']!r}))",
    f"display(Javascript({_js('kernel_javascript')!r}))",
    f"display(SVG({OUTPUTS[2]['data']['image/svg+xml']!r}))",
])
# Files a student hands in beside the notebook: the formgrader serves a submission's folder on
# the instructor's origin, so each would run there if served as active content.
EXTRA_FILES = {
    "notes.html": f"<html><body><script>{_js('extra_html')}</script>my notes</body></html>",
    "plot.svg": f'<svg xmlns="http://www.w3.org/2000/svg" onload="{_js("extra_svg")}">'
                f"<script>{_js('extra_svg_script')}</script></svg>",
    "page.xhtml": '<html xmlns="http://www.w3.org/1999/xhtml"><body><script>'
                  f"{_js('extra_xhtml')}</script></body></html>",
}
# A link to a file of the submitted/ folder, out of autograded/ by encoded slashes.
UP_TO_SUBMITTED = "..%2F..%2F..%2Fsubmitted%2F{student}%2F{assignment}%2Fnotes.html"
NAMES = [*MARKDOWN, "attachment_svg", "attachment_svg_script", "attachment_html",
         "output_html", "output_javascript", "output_svg", "output_png_attr", "stream_name",
         "kernel_javascript"]


def add_files(folder: str):
    """The extra files, handed in beside the notebook."""
    for name, text in EXTRA_FILES.items():
        with open(os.path.join(folder, name), "w") as f:
            f.write(text)


def links_cell(student: str, assignment: str = "tiny"):
    """A markdown cell linking each extra file (what the instructor would click in the grading
    view), and the submitted/ copy of one."""
    links = [f"[{name}]({name})" for name in EXTRA_FILES]
    up = UP_TO_SUBMITTED.format(student=student, assignment=assignment)
    links.append(f"[my submitted notes]({up})")
    return nbformat.v4.new_markdown_cell("See also " + " ".join(links))


def markdown_cells():
    """Student-added markdown cells: one per payload, one with hostile attachments."""
    cells = [nbformat.v4.new_markdown_cell(f"payload {name}: {text}")
             for name, text in MARKDOWN.items()]
    pasted = nbformat.v4.new_markdown_cell(
        "![evil svg](attachment:evil.svg) ![evil html](attachment:evil.html)")
    pasted.attachments = ATTACHMENTS
    return [*cells, pasted]


def add_to(nb):
    """The payloads in a submission: markdown cells at the end, a printing code cell first."""
    nb.cells.insert(0, nbformat.v4.new_code_cell(PRINTING_CELL))
    nb.cells.extend(markdown_cells())
    return nb


def poison_outputs(nb):
    """Hostile outputs written straight into an autograded notebook (a non-integer execution
    count would make the notebook invalid: nbconvert refuses to render it)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [nbformat.from_dict(o) for o in OUTPUTS]
    return nb


def control_page() -> str:
    """All markdown payloads as raw HTML: in a page that does not sanitize, they run."""
    return "<html><body>" + "".join(
        v for k, v in MARKDOWN.items() if k not in ("javascript_link",)) + "</body></html>"


def pwned(page):
    """The names of the payloads that ran in this page."""
    return page.evaluate("() => window.__pwned || []")


def live_markup(page):
    """Script, frames, handlers and javascript: URLs in the rendered notebook (not in the
    formgrader's own page around it)."""
    return page.evaluate("""() => {
        const found = [];
        for (const el of document.querySelectorAll('#notebook-container *')) {
            const tag = el.tagName.toLowerCase();
            if (['script', 'iframe', 'object', 'embed', 'svg'].includes(tag)) found.push(tag);
            for (const a of el.attributes) {
                const v = a.value.trim().toLowerCase();
                if (a.name.startsWith('on') || a.name === 'srcdoc' || v.startsWith('javascript:'))
                    found.push(tag + '[' + a.name + ']');
            }
        }
        return found;
    }""")


def grade_in_page(page, score_input: str, score: str, comment_box: str, comment: str):
    """Type a manual score and a comment into the formgrader's grading view (it saves on
    change, through its API)."""
    page.fill(f"#{score_input}", score)
    page.fill(f"#{comment_box}", comment)
    page.keyboard.press("Tab")


def wait_for_manual_grade(page, db_url, course_id, where, grade_name, comment_name, score):
    """(manual score, manual comment) once the page's saves reached the gradebook.
    `where` is (notebook, assignment, student)."""
    from nbgrader.api import Gradebook
    for _ in range(120):
        with Gradebook(db_url, course_id) as gb:
            nb = gb.find_submission_notebook(*where)
            grade = next(g for g in nb.grades if g.name == grade_name)
            note = next(c for c in nb.comments if c.name == comment_name)
            found = grade.manual_score, note.manual_comment
        if found[0] == score and found[1]:
            return found
        page.wait_for_timeout(500)
    return found
