"""Finalize off the critical path: autograded notebooks built in parallel, the gradebook written
in batches by the one trusted writer.

nbgrader's Autograde converter does, per submission and in one process: student and
submission rows, files copied into autograded/, the sanitize and autograde preprocessors on
every notebook (SaveAutoGrades and AssignLatePenalties committing as they go) and the
notebook written. The same work, split where it belongs:

- `Builder.build` (a process of the trusted finalizer pool, or this one): the autograde
  preprocessors run through nbconvert's own NotebookExporter, as the converter runs them,
  with `RecordAutoGrades` in the place of SaveAutoGrades (the same `determine_grade` and
  "No response." rule, recorded instead of written); notebooks and files go to autograded/;
  what comes back is a small `Record` of data.
- `GradebookWriter.write` (the instructor's process, the only writer): a batch of records in
  one transaction through nbgrader's models: the rows `add_submission` makes, SaveAutoGrades's
  auto_score / needs_manual_grade / auto_comment, AssignLatePenalties's penalty with the
  configured plugin.

Scores are computed from verdicts by trusted code only: an execution worker returns verdicts
(pass or fail, a message), never scores.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field

from nbgrader import utils
from nbgrader.preprocessors import SaveAutoGrades

QUIET = logging.getLogger("course_lib.grading.finalize")
QUIET.setLevel(logging.ERROR)  # nbgrader's per-cell warnings are not for the instructor

AUTOGRADE_PREPROCESSORS = [   # nbgrader's Autograde list: InjectResults for Execute (its outputs
    # sanitized, as SanitizeStudentCells follows Execute for plain nbgrader), no DB writes
    "course_lib.grading.preprocessors.InjectResults",
    "course_lib.grading.preprocessors.SanitizeStudentCells",  # what the kernel printed
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "course_lib.grading.finalize.RecordAutoGrades",
    "nbgrader.preprocessors.CheckCellMetadata",
]
PERMISSIONS = 0o400   # autograded/ holds hidden tests: readable by the instructor only


@dataclass
class Finished:
    """A submission whose notebooks all ran: per notebook (sanitized, executed, verdicts)."""
    student: str
    assignment: str
    reasons: list
    notebooks: dict          # name -> (sanitized nb_json, executed nb_json, {grade_id: Verdict})
    expected: list           # the assignment's notebooks (gradebook)


@dataclass
class Record:
    """What one submission writes into the gradebook; data only."""
    student: str
    assignment: str
    kind: str = "grades"     # grades | zero (nothing gradable) | none (left as it is) | failed
    timestamp: datetime.datetime | None = None
    notebooks: dict = field(default_factory=dict)  # name -> ({gid: auto_score}, {gid: comment})
    missing: list = field(default_factory=list)    # notebooks not submitted: every grade 0
    reason: str = ""


class RecordAutoGrades(SaveAutoGrades):
    """SaveAutoGrades without the database: each grade cell's auto_score (nbgrader's
    `determine_grade`) and each answer cell's auto comment go into resources, for
    `GradebookWriter` to write with the rest of its batch."""

    def preprocess(self, nb, resources):
        resources["course_grades"], resources["course_comments"] = {}, {}
        for index, cell in enumerate(nb.cells):
            nb.cells[index], resources = self.preprocess_cell(cell, resources, index)
        return nb, resources

    def _add_score(self, cell, resources):
        score, _ = utils.determine_grade(cell, self.log)
        resources["course_grades"][cell.metadata["nbgrader"]["grade_id"]] = score

    def _add_comment(self, cell, resources):
        unchanged = cell.metadata.nbgrader.get("checksum", None) == utils.compute_checksum(cell)
        resources["course_comments"][cell.metadata["nbgrader"]["grade_id"]] = \
            "No response." if unchanged and not utils.is_task(cell) else None


# ---- a reused gradebook for the sanitize preprocessors ------------------------------------------

class _Reused:
    """One open nbgrader Gradebook standing in for the many the preprocessors open (each costs
    an engine, a schema check and a cold statement cache); every use ends its own transaction,
    so SQLite's read lock never outlives it and the one writer is not kept waiting."""

    def __init__(self, gradebook):
        self._gradebook = gradebook

    def __getattr__(self, name):
        return getattr(self._gradebook, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._gradebook.db.remove()


class ReusedGradebooks:
    """`with reused:` makes `Gradebook(url)` in the given preprocessors' modules a `_Reused`."""

    def __init__(self, classes):
        from nbgrader.api import Gradebook
        self.real = Gradebook
        names = {c.__module__ for c in classes} | {
            m for m in sys.modules if m.startswith("nbgrader.preprocessors.")}
        self.modules = [sys.modules[m] for m in sorted(names)
                        if getattr(sys.modules.get(m), "Gradebook", None) is Gradebook]
        self.open: dict = {}

    def _make(self, db_url, course_id="default_course", authenticator=None):
        key = (db_url, course_id)
        if key not in self.open:
            self.open[key] = self.real(db_url, course_id, authenticator)
        return _Reused(self.open[key])

    @contextlib.contextmanager
    def __call__(self):
        for module in self.modules:
            module.Gradebook = self._make
        try:
            yield self._make
        finally:
            for module in self.modules:
                module.Gradebook = self.real

    def close(self):
        for gradebook in self.open.values():
            gradebook.close()
        self.open.clear()


# ---- build: one submission's autograded notebooks ---------------------------------------------

class Builder:
    """nbgrader's autograde pass for one course, without its database writes."""

    def __init__(self, course, stage: str):
        from nbconvert.exporters import NotebookExporter
        from nbgrader.converters import Autograde
        from traitlets.config import Config
        from traitlets.utils.importstring import import_item
        self.course, self.stage = course, stage
        config = Config(course.config)
        config.Exporter.default_preprocessors = []  # as nbgrader's converters set it
        self.exporter = NotebookExporter(config=config, log=QUIET)
        for name in AUTOGRADE_PREPROCESSORS:
            self.exporter.register_preprocessor(import_item(name))
        for pp in self.exporter._preprocessors:
            pp.log = QUIET
        self.settings = Autograde(coursedir=course.coursedir, config=config, log=QUIET)

    def destination(self, student, assignment):
        cd = self.course.coursedir
        return os.path.normpath(cd.format_path(cd.autograded_directory, student, assignment))

    def build(self, job: Finished) -> Record:
        staged = os.path.join(self.stage, job.student, job.assignment)
        dest = self.destination(job.student, job.assignment)
        missing = [n for n in job.expected
                   if not os.path.isfile(os.path.join(staged, f"{n}.ipynb"))]
        if missing and os.path.exists(dest):  # nbgrader_safety: earlier results are kept
            return Record(job.student, job.assignment, kind="none")
        record = Record(job.student, job.assignment, missing=missing)
        try:
            self._write(job, staged, dest, record)
        except Exception as e:  # noqa: BLE001 (as nbgrader: the submission fails, alone)
            shutil.rmtree(dest, ignore_errors=True)
            return Record(job.student, job.assignment, kind="failed",
                          reason=f"finalizing failed: {type(e).__name__}: {str(e)[:200]}")
        return record

    def _write(self, job: Finished, staged: str, dest: str, record: Record) -> None:
        cd = self.course.coursedir
        shutil.rmtree(dest, ignore_errors=True)
        os.makedirs(dest)
        _copy_files(utils.find_all_files(staged, cd.ignore + ["*.ipynb"]), staged, dest)
        record.timestamp = cd.get_existing_timestamp(staged)
        source = cd.format_path(cd.source_directory, ".", job.assignment)
        kept = {os.path.join(source, x)
                for x in self.settings.exclude_overwriting.get(job.assignment, [])}
        _copy_files(set(utils.find_all_files(source, cd.ignore + ["*.ipynb"])) - kept, source, dest)
        for name in sorted(job.notebooks):
            output, grades, comments = self.autograde(job, name)
            with open(os.path.join(dest, f"{name}.ipynb"), "w", encoding="utf-8") as f:
                f.write(output)
            record.notebooks[name] = (grades, comments)
        for dirname, _, filenames in os.walk(dest):
            for filename in filenames:
                os.chmod(os.path.join(dirname, filename), PERMISSIONS)

    def autograde(self, job: Finished, name: str):
        """(notebook text, {gid: auto_score}, {gid: auto comment}) of one notebook."""
        import nbformat
        from course_lib.grading.preprocessors import InjectResults
        sanitized, executed, verdicts = job.notebooks[name]
        key = (job.student, job.assignment, name)
        InjectResults.results = {key: (nbformat.reads(executed, as_version=4), verdicts)}
        InjectResults.notes = {key: job.reasons}
        resources = {"unique_key": name, "output_files_dir": f"{name}_files",
                     "nbgrader": {"student": job.student, "assignment": job.assignment,
                                  "notebook": name, "db_url": self.course.db_url}}
        try:
            with utils.setenv(NBGRADER_EXECUTION="autograde"):
                output, resources = self.exporter.from_notebook_node(
                    nbformat.reads(sanitized, as_version=4), resources)
        finally:
            InjectResults.results, InjectResults.notes = {}, {}
        return output, resources["course_grades"], resources["course_comments"]


def _copy_files(paths, top: str, dest: str) -> None:
    for path in paths:
        target = os.path.join(dest, os.path.relpath(path, top))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.exists(target):
            os.remove(target)
        shutil.copy(path, target)


# ---- write: a batch of records, one transaction ------------------------------------------------

class GradebookWriter:
    """The one writer of grades: batches of records through nbgrader's models."""

    def __init__(self, course):
        from nbgrader.preprocessors import AssignLatePenalties
        self.gradebook = course.gradebook()
        self.late = AssignLatePenalties(config=course.config, log=QUIET)
        self.late.init_plugin()

    def close(self):
        self.gradebook.close()

    def write(self, records) -> dict:
        """Write the records in one transaction; {(student, assignment): why} for those that
        could not be written (a batch that fails is written again one record at a time)."""
        records = [r for r in records if r.kind in ("grades", "zero")]
        if not records:
            return {}
        db = self.gradebook.db
        try:
            failed = self._apply(records)
            db.commit()
            return failed
        except Exception as e:  # noqa: BLE001 (a database error: find the record that caused it)
            db.rollback()
            if len(records) == 1:
                r = records[0]
                return {(r.student, r.assignment): f"the gradebook refused the grades: "
                                                   f"{type(e).__name__}: {str(e)[:200]}"}
        failed = {}
        for record in records:
            failed.update(self.write([record]))
        return failed

    def _apply(self, records) -> dict:
        rows = _Rows(self.gradebook.db, records)
        failed, late = {}, []
        for record in records:
            try:
                plan = rows.plan(record)
            except KeyError as e:
                failed[(record.student, record.assignment)] = f"not in the gradebook: {e}"
                continue
            late += _apply_record(record, plan)
        self.gradebook.db.flush()
        for submission, notebook in late:
            self._penalize(submission, notebook)
        return failed

    def _penalize(self, submission, notebook) -> None:
        """AssignLatePenalties for one notebook: its score as the database sums it."""
        notebook.late_submission_penalty = None
        seconds = submission.total_seconds_late
        if seconds > 0:
            self.gradebook.db.expire(notebook, ["score"])
            penalty = self.late.plugin_inst.late_submission_penalty(
                submission.student_id, notebook.score, seconds)
            if penalty is not None:
                notebook.late_submission_penalty = self.late._check_late_penalty(notebook, penalty)


def _apply_record(record: Record, plan) -> list:
    """Set one record's rows; the (submission, notebook) pairs that need a late penalty."""
    submission, notebooks = plan
    if record.kind == "zero":
        for grades, _ in notebooks.values():
            _zero(grades)
        return []
    if record.timestamp is not None:
        submission.timestamp = record.timestamp
    for name in record.missing:
        _zero(notebooks[name][0])
    late = []
    for name, (scores, comments) in record.notebooks.items():
        grades, rows = notebooks[name]
        for gid, score in scores.items():
            grade = grades[gid]
            grade.auto_score = score
            grade.needs_manual_grade = grade.manual_score is not None or score is None
        for gid, text in comments.items():
            rows[gid].auto_comment = text
        late.append((submission, rows[None]))
    return late


def _check(record: Record, names: dict) -> None:
    """KeyError naming the first notebook or cell of `record` that `names` does not hold."""
    for name in [*record.notebooks, *record.missing]:
        if name not in names:
            raise KeyError(f"notebook {name}")
    for name, (scores, comments) in record.notebooks.items():
        grades, answers = names[name]
        unknown = [g for g in scores if g not in grades] + [c for c in comments if c not in answers]
        if unknown:
            raise KeyError(f"cell {unknown[0]} of {name}")


def _zero(grades: dict) -> None:
    for grade in grades.values():
        grade.auto_score = 0
        grade.needs_manual_grade = False


class _Rows:
    """The batch's students, submissions, grades and comments: a few queries per batch."""

    def __init__(self, db, records):
        from nbgrader.api import (Assignment, Grade, Comment, Notebook, Student,
                                  SubmittedAssignment, SubmittedNotebook)
        from sqlalchemy.orm import selectinload
        self.db = db
        self.models = (Student, SubmittedAssignment, SubmittedNotebook, Grade, Comment)
        ids = sorted({r.student for r in records})
        names = sorted({r.assignment for r in records})
        self.students = {s.id: s for s in db.query(Student).filter(Student.id.in_(ids))}
        self.assignments = {a.name: a for a in db.query(Assignment).filter(
            Assignment.name.in_(names)).options(
            selectinload(Assignment.notebooks).selectinload(Notebook._base_cells))}
        found = db.query(SubmittedAssignment).join(Assignment).filter(
            Assignment.name.in_(names), SubmittedAssignment.student_id.in_(ids)).options(
            selectinload(SubmittedAssignment.notebooks).selectinload(SubmittedNotebook.grades)
            .selectinload(Grade.cell),
            selectinload(SubmittedAssignment.notebooks).selectinload(SubmittedNotebook.comments)
            .selectinload(Comment.cell),
            selectinload(SubmittedAssignment.notebooks).selectinload(SubmittedNotebook.notebook))
        self.submissions = {(s.student_id, s.assignment.name): s for s in found}

    def plan(self, record: Record):
        """(submission, {notebook: (grades by name, comments by name + None: the notebook)}),
        made as nbgrader's update_or_create_student/submission make them; KeyError, before
        anything is changed, when the record names a cell the gradebook does not have."""
        key = (record.student, record.assignment)
        submission = self.submissions.get(key)
        if submission is None:
            names = {nb.name: ({c.name for c in nb.grade_cells + nb.task_cells},
                               {c.name for c in nb.solution_cells + nb.task_cells})
                     for nb in self.assignments[record.assignment].notebooks}
        else:
            names = {nb.notebook.name: ({g.cell.name for g in nb.grades},
                                        {c.cell.name for c in nb.comments})
                     for nb in submission.notebooks}
        _check(record, names)
        if submission is not None:
            return submission, self._existing(submission)
        notebooks = self._blank(self.assignments[record.assignment])
        submission = self.submissions[key] = self._create(record, notebooks)
        return submission, notebooks

    @staticmethod
    def _existing(submission):
        return {nb.notebook.name: ({g.cell.name: g for g in nb.grades},
                                   {**{c.cell.name: c for c in nb.comments}, None: nb})
                for nb in submission.notebooks}

    def _blank(self, assignment):
        """The rows `add_submission` makes, not yet in the session."""
        _, _, SubmittedNotebook, Grade, Comment = self.models
        notebooks = {}
        for notebook in assignment.notebooks:
            nb = SubmittedNotebook(notebook=notebook)
            grades = {c.name: Grade(cell_id=c.id, notebook=nb) for c in notebook.grade_cells}
            comments = {c.name: Comment(cell_id=c.id, notebook=nb)
                        for c in notebook.solution_cells}
            for c in notebook.task_cells:
                comments[c.name] = Comment(cell_id=c.id, notebook=nb)
                grades[c.name] = Grade(cell_id=c.id, notebook=nb)
            notebooks[notebook.name] = (grades, {**comments, None: nb})
        return notebooks

    def _create(self, record: Record, notebooks):
        Student, SubmittedAssignment, *_ = self.models
        student = self.students.get(record.student)
        if student is None:
            student = self.students[record.student] = Student(id=record.student)
            self.db.add(student)
        extra = {} if record.timestamp is None else {"timestamp": utils.parse_utc(record.timestamp)}
        submission = SubmittedAssignment(assignment=self.assignments[record.assignment],
                                         student=student, **extra)
        for _, rows in notebooks.values():
            rows[None].assignment = submission
        self.db.add(submission)
        return submission
