"""`course grade`: prepare in the trusted process, execute in sandboxes, finalize through nbgrader.

1. prepare: each submitted notebook is sanitized with nbgrader's own preprocessors against the
   gradebook (test cells restored), found under a wrong file name if need be, and packed
   with its files and HMAC seeds into a `Task`;
2. execute: tasks run in parallel (processes, or a Dask cluster): student cells in a
   sandboxed kernel, test cells (text from the gradebook) in the worker, reaching student code
   through the channel; verdicts are cached on disk, so an interrupted run resumes;
3. finalize: nbgrader's Autograde converter (with `InjectResults` in place of Execute) writes
   autograded/ and the gradebook from those verdicts, one writer for the whole run.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import os
import shutil
import warnings
from dataclasses import asdict, dataclass, field

import nbformat
from traitlets.config import Config

from course_lib.grading import preprocessors as pp
from course_lib.grading.course import Course
from course_lib.grading.runner import Result, Task, execute_task
from course_lib.grading.sandbox import Limits, bwrap_available
from course_lib.grading.verdicts import Verdict, seeds_for

CACHE = ".course_cache"
FINALIZE_PREPROCESSORS = [
    "course_lib.grading.preprocessors.InjectResults",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]


@dataclass
class Outcome:
    student: str
    assignment: str
    status: str = "graded"           # graded | failed | skipped
    reasons: list = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Report:
    outcomes: list = field(default_factory=list)

    def count(self, status):
        return sum(o.status == status for o in self.outcomes)

    def summary(self) -> str:
        lines = [f"graded {self.count('graded')}, failed {self.count('failed')}, "
                 f"skipped {self.count('skipped')}"]
        for o in self.outcomes:
            for reason in o.reasons:
                lines.append(f"  {o.student}/{o.assignment} [{o.status}]: {reason}")
        return "\n".join(lines)


# ---- 1. prepare ---------------------------------------------------------------------------------

def submissions(course: Course, assignment: str | None = None, students=None):
    root = course.path("submitted")
    if not os.path.isdir(root):
        return []
    found = []
    for student in sorted(os.listdir(root)):
        if students and student not in students:
            continue
        for a in ([assignment] if assignment else course.assignments()):
            if os.path.isdir(os.path.join(root, student, a)):
                found.append((student, a))
    return found


def _grade_ids(nb) -> set:
    return {pp._grade_id(c) for c in nb.cells if pp._grade_id(c)}


def _read_notebook(path):
    try:
        with open(path, encoding="utf-8") as f:
            return nbformat.read(f, as_version=4), None
    except Exception as e:
        return None, f"{os.path.basename(path)} is not a readable notebook ({type(e).__name__})"


def match_notebooks(folder: str, expected: dict[str, set]):
    """Map each expected notebook name to a submitted file: by name, else by its cell ids."""
    files = sorted(f for f in os.listdir(folder) if f.endswith(".ipynb"))
    chosen, reasons = {}, []
    for name in expected:
        if f"{name}.ipynb" in files:
            chosen[name] = f"{name}.ipynb"
    for f in files:
        if f in chosen.values():
            continue
        nb, _ = _read_notebook(os.path.join(folder, f))
        if nb is None:
            continue
        ids = _grade_ids(nb)
        for name, course_ids in expected.items():
            if name not in chosen and len(ids & course_ids) * 2 > len(course_ids):
                chosen[name] = f
                reasons.append(f"{f} was graded as {name}.ipynb (recognised by its cells)")
    for name in expected:
        if name not in chosen:
            reasons.append(f"no {name}.ipynb was submitted: it scores 0")
    return chosen, reasons


def stage_submission(course: Course, student: str, assignment: str, stage: str, expected):
    """Copy a submission into the staging area under the names nbgrader expects."""
    src = course.path("submitted", student, assignment)
    dest = os.path.join(stage, student, assignment)
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    chosen, reasons = match_notebooks(src, expected)
    for name, f in chosen.items():
        nb, problem = _read_notebook(os.path.join(src, f))
        if nb is None:
            reasons.append(problem + ": it scores 0")
            continue
        nbformat.write(nb, os.path.join(dest, f"{name}.ipynb"))
    extra = []
    for entry in sorted(os.listdir(src)):
        path = os.path.join(src, entry)
        if entry in chosen.values() or entry == "timestamp.txt":
            if entry == "timestamp.txt":
                shutil.copy(path, dest)
            continue
        if os.path.isfile(path) and not os.path.islink(path):
            extra.append(entry)
    if extra:
        reasons.append(f"extra files ignored by the grader: {', '.join(extra[:10])}")
    return reasons


def sanitize(course: Course, nb, student, assignment, notebook):
    """nbgrader's sanitize step, with the preprocessors `nbgrader autograde` is configured with."""
    from traitlets.utils.importstring import import_item
    resources = {"nbgrader": {"notebook": notebook, "assignment": assignment,
                              "student": student, "db_url": course.db_url}}
    for name in course.config.Autograde.sanitize_preprocessors:
        cls = import_item(name) if isinstance(name, str) else name
        nb, resources = cls(config=course.config).preprocess(nb, resources)
    return nb


def course_files(course: Course, assignment: str) -> dict:
    """Non-notebook files of the assignment (data a notebook reads), shipped with each task."""
    folder = course.path("source", assignment)
    files = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
        for f in filenames:
            if not f.endswith(".ipynb") and not f.startswith("."):
                path = os.path.join(dirpath, f)
                with open(path, "rb") as fh:
                    files[os.path.relpath(path, folder)] = fh.read()
    return files


def test_cells(gb, notebook, assignment):
    """(grade_id, source) of every autograded test cell, text taken from the gradebook."""
    nb = gb.find_notebook(notebook, assignment)
    solutions = {s.name for s in nb.solution_cells}
    return {c.name: gb.find_source_cell(c.name, notebook, assignment).source
            for c in nb.grade_cells if c.cell_type == "code" and c.name not in solutions}


# ---- 2. execute ---------------------------------------------------------------------------------

def _task_hash(task: Task) -> str:
    h = hashlib.sha256()
    h.update(task.nb_json.encode())
    h.update(json.dumps(task.seeds, sort_keys=True).encode())
    h.update(json.dumps(task.tests, sort_keys=True).encode())
    h.update(json.dumps(sorted(task.only)).encode())
    h.update(json.dumps(asdict(task.limits), sort_keys=True).encode())
    h.update(str(task.sandbox).encode())
    for name in sorted(task.files):
        h.update(name.encode() + hashlib.sha256(task.files[name]).digest())
    return h.hexdigest()


class ResultCache:
    """Executed notebooks and verdicts on disk: a killed run resumes without re-running."""

    def __init__(self, root: str):
        self.root = root

    def _path(self, task: Task):
        return os.path.join(self.root, task.student, task.assignment, f"{task.notebook}.json")

    def get(self, task: Task) -> Result | None:
        try:
            with open(self._path(task)) as f:
                data = json.load(f)
        except (OSError, ValueError):
            return None
        if data.get("hash") != _task_hash(task):
            return None
        verdicts = {k: Verdict(**v) for k, v in data["verdicts"].items()}
        return Result(task.key, data["nb_json"], verdicts, data["reasons"], data["seconds"],
                      data.get("calls", 0))

    def put(self, task: Task, result: Result) -> None:
        path = self._path(task)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = {"hash": _task_hash(task), "nb_json": result.nb_json, "reasons": result.reasons,
                "seconds": result.seconds, "calls": result.calls,
                "verdicts": {k: asdict(v) for k, v in result.verdicts.items()}}
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)  # atomic: a kill never leaves half a result


def make_executor(workers: int, scheduler: str | None):
    if scheduler:
        from dask.distributed import Client
        client = Client(scheduler)
        return client.get_executor(pure=False), client.close
    if workers <= 1:
        return None, lambda: None
    pool = cf.ProcessPoolExecutor(max_workers=workers,
                                  mp_context=multiprocessing.get_context("spawn"))
    return pool, lambda: pool.shutdown(cancel_futures=True)


def run_tasks(tasks, cache: ResultCache, workers: int, scheduler: str | None, progress=True):
    """Execute what the cache does not hold; yield results as they come."""
    todo = []
    for task in tasks:
        cached = cache.get(task)
        if cached is not None:
            yield cached
        else:
            todo.append(task)
    if not todo:
        return
    bar = _progress(len(todo), progress)
    executor, close = make_executor(workers, scheduler)
    try:
        if executor is None:
            done = (execute_task(t) for t in todo)
            pairs = zip(todo, done)
        else:
            futures = {executor.submit(execute_task, t): t for t in todo}
            pairs = ((futures[f], _result_or_failure(futures[f], f))
                     for f in cf.as_completed(futures))
        for task, result in pairs:
            if result.seconds >= 0:
                cache.put(task, result)
            bar.update(1)
            yield result
    finally:
        bar.close()
        close()


def _result_or_failure(task: Task, future) -> Result:
    """A worker that broke (killed, out of memory) fails this task only; not cached."""
    try:
        return future.result()
    except Exception as e:
        return Result(task.key, task.nb_json, {}, [f"grading worker failed: {type(e).__name__}: "
                                                   f"{str(e)[:200]}"], -1.0)


def _progress(total, enabled):
    from tqdm import tqdm
    return tqdm(total=total, desc="grading", unit="nb", disable=not enabled, dynamic_ncols=True,
                bar_format="{desc}: {n}/{total} |{bar}| {rate_fmt} elapsed {elapsed} ETA {remaining}")


# ---- 3. finalize --------------------------------------------------------------------------------

def grade(course: Course, assignment: str | None = None, *, students=None, workers: int = 0,
          scheduler: str | None = None, sandbox: bool | None = None, limits: Limits = Limits(),
          force: bool = False, progress: bool = True, only=()) -> Report:
    """Grade submissions; `only` (test ids) runs just those tests and scores the others 0."""
    workers = workers or os.cpu_count() or 1
    sandbox = bwrap_available() if sandbox is None else sandbox
    report = Report()
    stage = course.path(CACHE, "staging")
    cache = ResultCache(course.path(CACHE, "results"))
    if force:
        shutil.rmtree(cache.root, ignore_errors=True)
    secret = course.secret()
    tasks, outcomes, tests_of = [], {}, {}
    with course.gradebook() as gb:
        known = {a.name: a for a in gb.assignments}
        for student, a in submissions(course, assignment, students):
            outcome = outcomes[(student, a)] = Outcome(student, a)
            if a not in known:
                outcome.status = "skipped"
                outcome.reasons.append(f"{a} is not in the gradebook: run `course release {a}`")
                continue
            expected = {nb.name: {c.name for c in nb.source_cells} for nb in known[a].notebooks}
            outcome.reasons += stage_submission(course, student, a, stage, expected)
            files = course_files(course, a)
            for notebook in sorted(expected):
                path = os.path.join(stage, student, a, f"{notebook}.ipynb")
                if not os.path.exists(path):
                    continue
                tests = tests_of[(a, notebook)] = tests_of.get((a, notebook)) or \
                    test_cells(gb, notebook, a)
                nb = sanitize(course, nbformat.read(path, as_version=4), student, a, notebook)
                nb_json = nbformat.writes(nb)
                seeds = seeds_for(secret, student, a, tests,
                                  hashlib.sha256(nb_json.encode()).hexdigest())
                tasks.append(Task(student, a, notebook, nb_json, files, seeds, limits, sandbox,
                                  tests, tuple(only)))
    results = {}
    for result in run_tasks(tasks, cache, workers, scheduler, progress):
        student, a, notebook = result.key
        skipped = Verdict(False, "not selected (--only)")
        verdicts = {gid: result.verdicts.get(gid) or (skipped if only and gid not in only else
                                                      Verdict(False, "this test did not run"))
                    for gid in tests_of[(a, notebook)]}
        results[result.key] = (nbformat.reads(result.nb_json, as_version=4), verdicts)
        outcomes[(student, a)].reasons += [f"{notebook}: {r}" for r in result.reasons]
        outcomes[(student, a)].seconds += result.seconds
    _finalize(course, outcomes, results, stage)
    report.outcomes = list(outcomes.values())
    return report


def _finalize(course: Course, outcomes: dict, results: dict, stage: str) -> None:
    """One writer: nbgrader's Autograde converter, fed our executed notebooks and verdicts."""
    extra = Config()
    extra.Autograde.autograde_preprocessors = FINALIZE_PREPROCESSORS
    extra.CourseDirectory.submitted_directory = stage
    pp.InjectResults.results = results
    api = course.api(extra)
    try:
        for (student, a), outcome in sorted(outcomes.items()):
            if outcome.status == "skipped":
                continue
            if not any(f.endswith(".ipynb") for f in os.listdir(os.path.join(stage, student, a))):
                _record_zero(course, student, a)
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # nbgrader's SQLAlchemy notes are not for users
                result = api.autograde(a, student, force=True, create=True)
            if not result["success"]:
                outcome.status = "failed"
                outcome.reasons.append(_last_error(result))
    finally:
        pp.InjectResults.results = {}


def _record_zero(course: Course, student: str, assignment: str) -> None:
    """No readable notebook at all: the submission exists in the gradebook and scores 0."""
    with course.gradebook() as gb:
        gb.update_or_create_student(student)
        submission = gb.update_or_create_submission(assignment, student)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                grade.auto_score = 0
                grade.needs_manual_grade = False
        gb.db.commit()


def _last_error(result) -> str:
    text = (result.get("error") or result.get("log") or "unknown error").strip().splitlines()
    return text[-1][:300] if text else "unknown error"


# ---- scores -----------------------------------------------------------------------------------

def scores(course: Course, assignment: str | None = None) -> dict:
    """{(student, assignment): {grade_id: (score, max)}} from the gradebook."""
    table = {}
    with course.gradebook() as gb:
        for a in gb.assignments:
            if assignment and a.name != assignment:
                continue
            for sub in a.submissions:
                cells = {}
                for nb in sub.notebooks:
                    for g in nb.grades:
                        cells[g.name] = (float(g.score), float(g.max_score))
                table[(sub.student.id, a.name)] = cells
    return table

