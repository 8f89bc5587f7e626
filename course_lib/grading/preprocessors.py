"""nbgrader preprocessors of our own: restore cells, inject trusted verdicts, hide hidden tests."""
from __future__ import annotations

import re

import nbformat
import nh3
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor, OverwriteCells

from course_lib.grading import mathml
from course_lib.grading.verdicts import Verdict

HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"  # nbgrader's default delimiter, as the course uses
HIDDEN_NOTE = "# Hidden tests ran here. Your result is shown below."


from course_lib.grading.cells import grade_id as _grade_id  # noqa: E402 (one reader of ids)


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


def _position(order, name):
    return order.index(name) if name in order else len(order)


def _insert_at(nb, order, name) -> int:
    present = {_grade_id(cell): i for i, cell in enumerate(nb.cells) if _grade_id(cell)}
    pos = _position(order, name)
    for earlier in reversed(order[:pos]):
        if earlier in present:
            return present[earlier] + 1
    for later in order[pos + 1:]:
        if later in present:
            return present[later]
    return 0


def verdict_output(verdict: Verdict):
    """The only output a graded test cell keeps: our message, no traceback into test code."""
    return nbformat.v4.new_output("error", ename="AssertionError", evalue=verdict.message,
                                  traceback=[f"AssertionError: {verdict.message}"])


SAFE_MIMETYPES = ("text/plain", "image/png", "image/jpeg")


def safe_outputs(outputs):
    """Keep text and images only: no HTML or JavaScript from a student's kernel reaches a
    browser (the formgrader's or a feedback page)."""
    kept = []
    for out in outputs:
        if out.get("output_type") in ("display_data", "execute_result"):
            out["data"] = {k: v for k, v in out.get("data", {}).items() if k in SAFE_MIMETYPES}
            out["metadata"] = {}
            if not out["data"]:
                continue
        kept.append(out)
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
                cell.execution_count = ran.execution_count
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
            cell.execution_count = done.execution_count


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
                cell.source = sanitized_html(cell.source)
                cell.pop("attachments", None)
        resources["course_sanitized"] = True  # the template then shows markdown cells as is
        return nb, resources


def sanitized_html(markdown: str) -> str:
    """Markdown to HTML with formulas as MathML, through nh3 with MathML's elements allowed."""
    html = MarkdownWithMath(renderer=_MathMLRenderer(escape=False)).render(markdown)
    tags = nh3.ALLOWED_TAGS | mathml.ELEMENTS
    attributes = dict(nh3.ALLOWED_ATTRIBUTES)
    for tag in mathml.ELEMENTS:
        attributes[tag] = mathml.ATTRIBUTES | ({"xmlns"} if tag == "math" else set())
    return nh3.clean(html, tags=tags, attributes=attributes)


class _MathMLRenderer(IPythonRenderer):
    """nbconvert's renderer, with formulas drawn as MathML instead of left for MathJax."""

    def block_math(self, body):
        return mathml.to_mathml(body, display=True)

    def inline_math(self, body):
        return mathml.to_mathml(body, display=False)

    def latex_environment(self, name, body):
        return mathml.to_mathml(f"\\begin{{{name}}}{body}\\end{{{name}}}", display=True)
