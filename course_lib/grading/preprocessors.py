"""nbgrader preprocessors of our own: restore cells, inject trusted verdicts, hide hidden tests."""
from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import jinja2
import nbformat
import nh3
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor, OverwriteCells

from course_lib.grading import mathml
from course_lib.grading.attachments import FORMATS, image_bytes, missing_attachment
from course_lib.grading.verdicts import Verdict

HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"  # nbgrader's default delimiter, as the course uses
HIDDEN_NOTE = "# Hidden tests ran here. Your result is shown below."


from course_lib.grading.cells import grade_id as _grade_id  # noqa: E402 (one reader of ids)
from course_lib.grading.cells import insert_position as _insert_at  # noqa: E402
from course_lib.grading.cells import position as _position  # noqa: E402


class RestoreCells(OverwriteCells):
    """nbgrader's OverwriteCells with a correct way of putting deleted grade cells back.

    nbgrader 0.9.6 looks up the cell before a deleted one among *graded* cells only, so a
    deleted test cell that follows a locked markdown cell raises KeyError. Here a missing
    cell goes after the nearest earlier course cell still present (any kind), or before the
    nearest later one, or first.
    """

    def add_missing_grade_cells(self, nb, resources):
        source_nb = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        order = [cell.name for cell in source_nb.source_cells]
        solution_ids = {cell.name for cell in source_nb.solution_cells}
        sources = {cell.name: cell for cell in source_nb.source_cells}
        for grade_cell in sorted(source_nb.grade_cells, key=lambda c: _position(order, c.name)):
            if any(_grade_id(cell) == grade_cell.name for cell in nb.cells):
                continue
            self.log.warning("Missing grade cell %s encountered, adding to notebook",
                             grade_cell.name)
            new_cell = self.missing_cell_transform(sources[grade_cell.name], grade_cell.max_score,
                                                   is_solution=grade_cell.name in solution_ids)
            nb.cells.insert(_insert_at(nb, order, grade_cell.name), new_cell)
        return nb, resources


def verdict_output(verdict: Verdict):
    """The only output a graded test cell keeps: our message, no traceback into test code."""
    return nbformat.v4.new_output("error", ename="AssertionError", evalue=verdict.message,
                                  traceback=[f"AssertionError: {verdict.message}"])


SAFE_MIMETYPES = ("text/plain", "image/png", "image/jpeg")
RASTER_IMAGES = tuple(FORMATS)
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")
_STREAMS = ("stdout", "stderr")


def safe_outputs(outputs):
    """Keep text and images only: no HTML or JavaScript from a student's kernel reaches a
    browser (the formgrader's or a feedback page); fields a page prints unescaped are checked."""
    kept = []
    for out in outputs:
        kind = out.get("output_type")
        if kind in ("display_data", "execute_result"):
            out["data"] = {k: v for k, v in out.get("data", {}).items()
                           if k in SAFE_MIMETYPES and _plain_value(k, v)}
            out["metadata"] = {}
            if not out["data"]:
                continue
            if kind == "execute_result":
                out["execution_count"] = _count(out.get("execution_count"))
        elif kind == "stream":
            if out.get("name") not in _STREAMS or not isinstance(out.get("text"), str):
                continue
        elif kind != "error":
            continue
        kept.append(out)
    return kept


def _plain_value(mimetype: str, value) -> bool:
    """Text is text; an image is base64 (a page puts it in an attribute unescaped)."""
    if isinstance(value, list):
        value = "".join(v for v in value if isinstance(v, str))
    if not isinstance(value, str):
        return False
    return not mimetype.startswith("image/") or _BASE64.fullmatch(value) is not None


def _count(value):
    """An execution count is an int or nothing (templates print it unescaped)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def safe_attachments(attachments) -> dict:
    """Pasted images a markdown cell may keep: raster images in base64, nothing else (no SVG,
    no HTML)."""
    kept = {}
    for name, bundle in (attachments or {}).items():
        if not isinstance(bundle, dict):
            continue
        found = image_bytes(bundle)
        if found is not None:
            kept[name] = {found[0]: base64.b64encode(found[1]).decode()}
    return kept


class InjectResults(NbGraderPreprocessor):
    """Stands in for nbgrader's Execute: the notebook was executed in a sandbox beforehand.

    `results[(student, assignment, notebook)]` holds the executed notebook and the verdict of
    every test cell (run in the grader, not in the kernel); the cells' outputs are replaced so
    that nbgrader's SaveAutoGrades scores exactly our verdicts.
    """

    results: dict = {}
    notes: dict = {}    # same keys: the grader's reasons, shown to the student at the top

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        key = (info["student"], info["assignment"], info["notebook"])
        executed, verdicts = self.results[key]
        by_id = {_grade_id(cell): cell for cell in executed.cells if _grade_id(cell)}
        for cell in nb.cells:
            grade_id = _grade_id(cell)
            ran = by_id.get(grade_id) if grade_id else None
            if cell.cell_type != "code":
                continue
            if ran is not None and ran.cell_type == "code":
                cell.outputs = safe_outputs(ran.outputs)
                cell.execution_count = _count(ran.execution_count)
            if grade_id in verdicts:  # ran in the grader: its own printout or our message
                verdict = verdicts[grade_id]
                cell.outputs = [verdict_output(verdict)] if not verdict.passed else \
                    [nbformat.v4.new_output("stream", name="stdout", text=verdict.stdout)] \
                    if verdict.stdout else []
        self._copy_unlabelled(nb, executed)
        if self.notes.get(key):
            nb.cells.insert(0, grader_note(self.notes[key]))
        return nb, resources

    @staticmethod
    def _copy_unlabelled(nb, executed):
        """Outputs of ordinary code cells, matched by position among unlabelled code cells."""
        plain = [c for c in nb.cells if c.cell_type == "code" and not _grade_id(c)]
        ran = [c for c in executed.cells if c.cell_type == "code" and not _grade_id(c)]
        for cell, done in zip(plain, ran):
            cell.outputs = safe_outputs(done.outputs)
            cell.execution_count = _count(done.execution_count)


NOTE_TITLE = "Notes from the grader"


def grader_note(reasons):
    """A markdown cell for the top of the autograded notebook (so of the feedback page): why a
    file was not graded, graded under another name, or stopped early, in the grader's words."""
    items = "\n".join(f"- {_escape(r)}" for r in reasons)
    return nbformat.v4.new_markdown_cell(f"### {NOTE_TITLE}\n\n{items}\n\nIf something here is "
                                         "not what you meant to hand in, ask your instructor.")


def _escape(text: str) -> str:
    """Plain text in markdown: file names and messages are not markup."""
    return "".join("\\" + ch if ch in "\\`*_[]<>#|$" else ch for ch in text)


class HideHiddenTests(ClearHiddenTests):
    """For feedback: a hidden test region becomes one comment line; no test text is shown.

    The kernel never sees a test's text, but it does see the inputs the tests call the
    student's code with, so a cell that runs after a hidden test could print them: outputs of
    the student's own cells after the first hidden test are left out of feedback (they are in
    the student's notebook and in autograded/).
    """

    enforce_metadata = False

    def preprocess(self, nb, resources):
        seen_hidden = False
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            if self.begin_test_delimeter in cell.source:
                seen_hidden = True
                self._remove_hidden_test_region(cell)
                cell.source = (cell.source.rstrip() + "\n" + HIDDEN_NOTE).strip()
            elif seen_hidden and not is_test_cell(cell) and cell.outputs:
                cell.outputs = [nbformat.v4.new_output(
                    "stream", name="stdout", text="(output not shown in feedback)\n")]
        return nb, resources


def is_test_cell(cell) -> bool:
    return utils.is_grade(cell) and not utils.is_solution(cell) and cell.cell_type == "code"


class NameQuestions(NbGraderPreprocessor):
    """For feedback: each graded cell is named by its exercise and the function it tests, and,
    for test cells, whether its tests were visible or hidden ("Exercise 2: the chain-rule
    factors of $y$ · `du_dx` · visible tests"), so the page's header lists questions instead of
    nbgrader's "Test cell". Names come from the assignment's source cells in the gradebook,
    never from the submission: a heading a student adds renames nothing. A name is rendered
    here (code spans, formulas as MathML) and made unique in the notebook."""

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        names = question_names(info["db_url"], info["assignment"], info["notebook"])
        for cell in nb.cells:
            gid = _grade_id(cell)
            if utils.is_grade(cell) and gid:
                name = names.get(gid, f"`{gid}`")
                course = cell.metadata.setdefault("course", {})
                course["question"] = _plain(name)
                course["question_html"] = inline_html(name)
        return nb, resources


def question_names(db_url: str, assignment: str, notebook: str) -> dict:
    """{grade_id: markdown name} for the graded cells of a notebook, from its source cells in
    the gradebook (in notebook order): the last heading of the locked markdown cell above, the
    solution cell above (the function tested) unless the heading names just that function,
    visible or hidden tests, and what the test's id adds ("stable"); a name used twice still
    gets " · part N"."""
    from nbgrader.api import Gradebook
    with Gradebook(db_url) as gb:
        nb = gb.find_notebook(notebook, assignment)
        cells = [(c.name, c.cell_type, c.source) for c in nb.source_cells]
        graded = {c.name for c in nb.grade_cells}
        solutions = {c.name for c in nb.solution_cells}
    names, heading, function = {}, None, None
    for gid, kind, source in cells:
        if kind == "markdown" and gid not in graded and _last_heading(source):
            heading, function = _last_heading(source), None
        elif gid in solutions:
            function = gid
        if gid in graded:
            parts = [heading or f"`{gid}`"]
            if function and re.findall(r"`(\w+)[^`]*`", parts[0]) != [function]:
                parts.append(f"`{function}`")
            if kind == "code" and gid not in solutions:
                which = _qualifier(gid, function)
                parts.append(("hidden" if HIDDEN_BEGIN in source else "visible") + " tests"
                             + (f" ({which})" if which else ""))
            names[gid] = " · ".join(parts)
    return _unique(names)


def _qualifier(test_id: str, function: str | None) -> str:
    """What a test's id adds to its function's name: test_sigmoid_stable -> "stable"."""
    rest = test_id.removeprefix("test_").removesuffix("_hidden")
    if function and rest.startswith(function):
        rest = rest[len(function):]
    return rest.strip("_").replace("_", " ")


def _unique(names: dict) -> dict:
    seen, out = {}, {}
    for gid, name in names.items():
        seen[name] = seen.get(name, 0) + 1
        out[gid] = name if seen[name] == 1 else f"{name} · part {seen[name]}"
    repeated = {n for n, k in seen.items() if k > 1}
    for gid, name in names.items():  # the first of a repeated name is part 1
        if name in repeated and out[gid] == name:
            out[gid] = f"{name} · part 1"
    return out


def _plain(markdown: str) -> str:
    """A name as plain text (no backticks), for the formgrader and tests."""
    return markdown.replace("`", "")


def inline_html(markdown: str) -> str:
    """One line of markdown as sanitized HTML without its paragraph: code spans, MathML."""
    html = sanitized_html(markdown).strip()
    return html.removeprefix("<p>").removesuffix("</p>")


def _last_heading(markdown: str) -> str | None:
    """The last heading's text, without its "(N points)"."""
    prose = re.sub(r"^(```|~~~).*?^\1", "", markdown, flags=re.M | re.S)  # not code comments
    found = re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", prose, re.M)
    if not found:
        return None
    return re.sub(r"\(\s*\d+(\.\d+)?\s+points?\s*\)", "", found[-1]).strip() or None


class GraderMarks(NbGraderPreprocessor):
    """For feedback, after nbgrader's GetGrades: what a grader changed and the late penalty,
    in words. Each graded cell gets the autograder's score, a manual score and extra credit
    (metadata `course`); the page gets how late the submission was, the policy, and the
    points before and after the penalty (resources `course_late`)."""

    def preprocess(self, nb, resources):
        from nbgrader.api import Gradebook
        from course_lib.grading import late
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            sub = gb.find_submission_notebook(info["notebook"], info["assignment"],
                                              info["student"])
            grades = {g.name: g for g in sub.grades}
            for cell in nb.cells:
                grade = grades.get(_grade_id(cell)) if utils.is_grade(cell) else None
                if grade is not None:
                    cell.metadata.setdefault("course", {}).update(_marks(grade))
            penalty = float(sub.late_submission_penalty or 0)
            if penalty > 0:
                before = float(sub.score)
                seconds = sub.assignment.total_seconds_late
                resources["course_late"] = {
                    "late_by": late.how_late(seconds), "days": late.started_days(seconds),
                    "policy": late.policy(self.config), "before": before,
                    "penalty": penalty, "after": max(0.0, before - penalty)}
        return nb, resources


def _marks(grade) -> dict:
    return {"auto_score": None if grade.auto_score is None else float(grade.auto_score),
            "manual_score": None if grade.manual_score is None else float(grade.manual_score),
            "extra_credit": float(grade.extra_credit or 0)}


class SanitizeMarkdown(NbGraderPreprocessor):
    """For feedback: markdown is rendered here and cleaned by a maintained HTML sanitizer (nh3,
    Ammonia), so a student's cell keeps its text, formulas and hints but no script, event
    handler or javascript: URL reaches a browser. Formulas become MathML here (mathml.py), so
    the page needs no MathJax; the page renders the clean HTML as is."""

    def preprocess(self, nb, resources):
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = sanitized_html(cell.source, cell.get("attachments"))
                cell.pop("attachments", None)  # the images are in the HTML now
        resources["course_sanitized"] = True  # the template then shows markdown cells as is
        return nb, resources


def sanitized_html(markdown: str, attachments=None) -> str:
    """Markdown to HTML with formulas as MathML, through nh3 with MathML's elements allowed;
    pasted raster images (attachments) are kept as images, anything else they hold is not."""
    return clean_html(rendered_markdown(markdown, attachments))


def rendered_markdown(markdown: str, attachments=None) -> str:
    """Markdown to HTML as nbconvert renders it, formulas as MathML; not yet sanitized."""
    renderer = _MathMLRenderer(escape=False, attachments=safe_attachments(attachments))
    return MarkdownWithMath(renderer=renderer).render(markdown)


def _allowed_attributes() -> dict:
    attributes = {tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()}
    for tag in mathml.ELEMENTS:
        attributes[tag] = mathml.ATTRIBUTES | ({"xmlns"} if tag == "math" else set())
    return attributes


ALLOWED_TAGS = nh3.ALLOWED_TAGS | mathml.ELEMENTS
ALLOWED_ATTRIBUTES = _allowed_attributes()
URL_ATTRIBUTES = {"href", "src", "cite", "action", "formaction", "background", "poster",
                  "data", "xlink:href", "longdesc", "srcset"}
_IMAGE_DATA_URL = re.compile(r"data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]*")


def _data_urls_for_images_only(tag: str, attribute: str, value: str):
    """nh3's attribute filter: a data: URL survives only as an <img>'s raster image."""
    if value.strip().lower().startswith("data:"):
        ok = tag == "img" and attribute == "src" and _IMAGE_DATA_URL.fullmatch(value.strip())
        return value if ok else None
    return value


def clean_html(html: str) -> str:
    """nh3 (Ammonia) with the course's allowlist: no script, style, event handler, srcdoc,
    frame, form or javascript: URL; data: URLs only as raster images."""
    return nh3.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
                     url_schemes=nh3.ALLOWED_URL_SCHEMES | {"data"},
                     attribute_filter=_data_urls_for_images_only)


class _UnsafeMarkup(HTMLParser):
    """Finds anything in rendered markdown that the sanitizer would remove or that parsers
    disagree on (comments, declarations): such a cell is replaced by its sanitized HTML."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found = []

    def handle_starttag(self, tag, attrs):
        allowed = ALLOWED_ATTRIBUTES.get(tag, set()) | ALLOWED_ATTRIBUTES.get("*", set()) | \
            {"id", "class"}
        if tag not in ALLOWED_TAGS:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name not in allowed:
                self.found.append(f"{tag}[{name}]")
            elif name in URL_ATTRIBUTES and not _safe_url(tag, name, value or ""):
                self.found.append(f"{tag}[{name}]={value[:40]!r}")

    handle_startendtag = handle_starttag

    def handle_comment(self, data):
        self.found.append("<!-- -->")

    def handle_decl(self, decl):
        self.found.append("<!...>")

    def handle_pi(self, data):
        self.found.append("<?...>")

    def unknown_decl(self, data):
        self.found.append("<![...]>")


def _safe_url(tag: str, attribute: str, url: str) -> bool:
    url = "".join(url.split()).lower()
    scheme = re.match(r"([a-z][a-z0-9+.-]*):", url)
    if scheme is None:
        return ":" not in url.split("/")[0]  # relative, or an anchor
    if scheme.group(1) == "data":
        return _data_urls_for_images_only(tag, attribute, url) is not None
    return scheme.group(1) in nh3.ALLOWED_URL_SCHEMES


def unsafe_markup(markdown: str, attachments=None) -> list[str]:
    """What in a markdown cell would not survive the sanitizer (empty: the cell is plain)."""
    finder = _UnsafeMarkup()
    finder.feed(rendered_markdown(markdown, attachments))
    finder.close()
    if safe_attachments(attachments) != (attachments or {}):
        finder.found.append("attachments other than raster images")
    return finder.found


class SanitizeStudentCells(NbGraderPreprocessor):
    """Autograde's last sanitize step, and the formgrader's before it renders a submission:
    a markdown cell holding markup the sanitizer would remove becomes its sanitized HTML
    (plain markdown is kept as written, so headings and formulas stay), attachments keep
    raster images only, and code cells keep text and image outputs only, with fields the
    page prints unescaped checked. The formgrader also renders markdown through
    `markdown2html` below, so an older autograded/ notebook is safe there too."""

    def preprocess(self, nb, resources):
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                _clean_markdown_cell(cell)
            elif cell.cell_type == "code":
                cell.outputs = safe_outputs(cell.get("outputs", []))
                cell.execution_count = _count(cell.get("execution_count"))
        return nb, resources


def _clean_markdown_cell(cell) -> None:
    attachments = cell.get("attachments")
    if unsafe_markup(cell.source, attachments):
        cell.source = sanitized_html(cell.source, attachments)
        cell.pop("attachments", None)  # the images are in the HTML now, as data: URLs
    elif attachments is not None:
        cell.attachments = safe_attachments(attachments)


@jinja2.pass_context
def markdown2html(context, source):
    """The formgrader's markdown filter (nbconvert's, sanitized): in place of nbconvert's
    `markdown2html` for every HTML page rendered with this course's configuration."""
    cell = context.get("cell") or {}
    return sanitized_html(source, cell.get("attachments"))


class _MathMLRenderer(IPythonRenderer):
    """nbconvert's renderer, with formulas drawn as MathML instead of left for MathJax."""

    def block_math(self, body):
        return mathml.to_mathml(body, display=True)

    def inline_math(self, body):
        return mathml.to_mathml(body, display=False)

    def latex_environment(self, name, body):
        return mathml.to_mathml(f"\\begin{{{name}}}{body}\\end{{{name}}}", display=True)

    def image(self, text, url, title=None):
        """An attachment that is no valid raster image is named, not drawn."""
        if url.startswith("attachment:") and not self._embed_image_or_attachment(url):
            return missing_attachment(url[len("attachment:"):], text)
        return super().image(text, url, title)

    def _embed_image_or_attachment(self, src):
        """A pasted image as a data: URL rebuilt from its decoded bytes when it is a valid
        raster image (attachments.py); otherwise no image."""
        if not src.startswith("attachment:"):
            return src
        found = image_bytes(self.attachments.get(src[len("attachment:"):]))
        if found is None:
            return ""
        mimetype, data = found
        return f"data:{mimetype};base64,{base64.b64encode(data).decode()}"
