"""nbgrader preprocessors of our own: restore cells, inject trusted verdicts, hide hidden tests."""
from __future__ import annotations

import nbformat
from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor, OverwriteCells

from course_lib.grading.verdicts import Verdict

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


class SanitizeMarkdown(NbGraderPreprocessor):
    """For feedback: markdown is rendered here and cleaned by a maintained HTML sanitizer (nh3,
    Ammonia), so a student's cell keeps its text, formulas and hints but no script, event
    handler or javascript: URL reaches a browser. The page renders the clean HTML as is."""

    def preprocess(self, nb, resources):
        import nh3
        from nbconvert.filters.markdown_mistune import markdown2html_mistune
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = nh3.clean(markdown2html_mistune(cell.source))
                cell.pop("attachments", None)
        return nb, resources
