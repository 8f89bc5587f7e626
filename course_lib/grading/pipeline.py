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
import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
import warnings
from dataclasses import asdict, dataclass, field

import nbformat
from traitlets.config import Config

from course_lib.channel import wire
from course_lib.grading import cells
from course_lib.grading import preprocessors as pp
from course_lib.grading.course import Course, folders
from course_lib.grading.runner import Result, Task, execute_task, read_files
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
    ran: int = 0          # notebooks executed in this run
    cached: int = 0       # notebooks whose result came from .course_cache (unchanged)
    warnings: list = field(default_factory=list)

    def count(self, status):
        return sum(o.status == status for o in self.outcomes)

    def summary(self) -> str:
        lines = [f"graded {self.count('graded')}, failed {self.count('failed')}, "
                 f"skipped {self.count('skipped')}; notebooks: {self.ran} ran, "
                 f"{self.cached} from the cache (unchanged since the last run)"]
        lines += [f"  warning: {w}" for w in self.warnings]
        for o in self.outcomes:
            for reason in o.reasons:
                lines.append(f"  {o.student}/{o.assignment} [{o.status}]: {reason}")
        return "\n".join(lines)


# ---- 1. prepare ---------------------------------------------------------------------------------

def submissions(course: Course, assignment: str | None = None, students=None):
    root = course.path("submitted")
    found = []
    for student in folders(root):
        if students and student not in students:
            continue
        for a in ([assignment] if assignment else course.assignments()):
            if os.path.isdir(os.path.join(root, student, a)):
                found.append((student, a))
    return found


MAX_NOTEBOOK_BYTES = 64 << 20
# nbgrader's own files in a submission: the exchange's submit writes both, release_feedback
# needs the secret to name the feedback the student can fetch.
NBGRADER_FILES = ("timestamp.txt", "submission_secret.txt")


def _read_notebook(path):
    """(notebook, None) or (None, why not): a regular file of valid UTF-8 JSON, never a link."""
    name = os.path.basename(path)
    try:
        data = wire.read_regular(path, MAX_NOTEBOOK_BYTES)
    except wire.WireError as e:
        return None, f"{name} was not graded: it is not a regular file or too large ({e})"
    try:
        return nbformat.reads(data.decode("utf-8"), as_version=4), None
    except Exception as e:  # noqa: BLE001 (anything a crafted file makes nbformat raise)
        return None, f"{name} is not a readable notebook ({type(e).__name__})"


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
        ids = cells.grade_ids(nb)
        for name, course_ids in expected.items():
            if name not in chosen and len(ids & course_ids) * 2 > len(course_ids):
                chosen[name] = f
                reasons.append(f"{f} was graded as {name}.ipynb (recognised by its cells)")
    for name in expected:
        if name not in chosen:
            reasons.append(f"no {name}.ipynb was submitted: it scores 0")
    return chosen, reasons


def stage_submission(course: Course, student: str, assignment: str, stage: str, expected,
                     cell_types=None):
    """Copy a submission into the staging area under the names nbgrader expects, repaired."""
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
        reasons += [f"{f}: {note}" for note in cells.repair(nb, cell_types)]
        nbformat.write(nb, os.path.join(dest, f"{name}.ipynb"))
    extra = []
    for entry in sorted(os.listdir(src)):
        path = os.path.join(src, entry)
        if entry in NBGRADER_FILES:
            _copy_small_file(path, dest, reasons)
        elif entry not in chosen.values() and not entry.startswith("."):  # .DS_Store, checkpoints
            extra.append(entry)
    if extra:
        reasons.append(f"extra files ignored by the grader: {', '.join(extra[:10])}"
                       + (f" and {len(extra) - 10} more" if len(extra) > 10 else ""))
    return reasons


def _copy_small_file(path, dest, reasons):
    """nbgrader's own small files, read like any submitted file: never through a link."""
    name = os.path.basename(path)
    try:
        data = wire.read_regular(path, 4096)
    except wire.WireError:
        data = None
    if data is None:
        reasons.append(f"{name} is not a regular file: ignored")
        return
    with open(os.path.join(dest, name), "wb") as f:
        f.write(data)


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
    return read_files(course.path("source", assignment))


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


def make_executor(workers: int, scheduler):
    """(executor, close): a Dask cluster reached over mutual TLS, local processes, or None.

    `scheduler` is an address or a `cluster.Scheduler` (address, TLS files, `insecure`).
    """
    if scheduler:
        from course_lib.grading import cluster
        client = cluster.connect(scheduler)
        return client.get_executor(pure=False), client.close
    if workers <= 1:
        return None, lambda: None
    pool = cf.ProcessPoolExecutor(max_workers=workers,
                                  mp_context=multiprocessing.get_context("spawn"))
    return pool, lambda: pool.shutdown(cancel_futures=True)


def run_tasks(tasks, cache: ResultCache, workers: int, scheduler: str | None, progress=True,
              counts: dict | None = None):
    """Execute what the cache does not hold; yield results as they come.

    A worker process that dies (killed, out of memory) breaks its pool and fails every task
    queued on it: those are run again, each in a fresh worker of its own, and a task that fails
    twice comes back failed (not cached, never scored as 0). Dask retries on its own.
    `counts` (if given) gets "cached" and "ran" (how many results came from where) and
    "ran_keys" (the keys of the tasks executed).
    """
    counts = {"cached": 0, "ran": 0} if counts is None else counts
    todo = []
    for task in tasks:
        cached = cache.get(task)
        if cached is not None:
            counts["cached"] = counts.get("cached", 0) + 1
            yield cached
        else:
            todo.append(task)
    if not todo:
        return
    counts["ran"] = counts.get("ran", 0) + len(todo)
    counts.setdefault("ran_keys", set()).update(task.key for task in todo)
    bar = _progress(len(todo), progress)
    try:
        retry = []
        for task, result in _run(todo, workers, scheduler):
            if result.seconds < 0 and not scheduler and workers > 1:
                retry.append(task)
                continue
            yield _done(task, result, cache, bar)
        for task in retry:
            (result,) = [r for _, r in _run([task], 2, None)]  # a pool of its own
            yield _done(task, result, cache, bar)
    finally:
        bar.close()


def _done(task, result, cache, bar):
    if result.seconds >= 0:
        cache.put(task, result)
    bar.update(1)
    return result


def _run(tasks, workers, scheduler):
    """(task, result) pairs as they finish; a failure is a result with seconds < 0."""
    executor, close = make_executor(workers, scheduler)
    try:
        if executor is None:
            for task in tasks:
                yield task, _result_or_failure(task, _Now(execute_task, task))
            return
        futures = {executor.submit(execute_task, t): t for t in tasks}
        for future in cf.as_completed(futures):
            yield futures[future], _result_or_failure(futures[future], future)
    finally:
        close()


class _Now:
    """A finished 'future' for serial execution, so both paths check results alike."""

    def __init__(self, fn, *args):
        try:
            self.value, self.error = fn(*args), None
        except Exception as e:  # noqa: BLE001 (one notebook's crash is that notebook's)
            self.value, self.error = None, e

    def result(self):
        if self.error is not None:
            raise self.error
        return self.value


def _result_or_failure(task: Task, future) -> Result:
    """A worker that broke (killed, out of memory) fails this task only; not cached."""
    try:
        result = future.result()
    except Exception as e:  # noqa: BLE001 (BrokenProcessPool, KilledWorker, a crash...)
        return _failed(task, f"grading worker failed: {type(e).__name__}: {str(e)[:200]}")
    if not _is_result_for(task, result):
        return _failed(task, "grading worker returned something other than this notebook's result")
    return result


def _failed(task: Task, reason: str) -> Result:
    return Result(task.key, task.nb_json, {}, [reason], -1.0)


def _is_result_for(task: Task, result) -> bool:
    """A worker's answer is data about this task only: it cannot stand in for another student."""
    return (isinstance(result, Result) and result.key == task.key
            and isinstance(result.nb_json, str)
            and isinstance(result.verdicts, dict)
            and all(isinstance(k, str) and isinstance(v, Verdict) and isinstance(v.passed, bool)
                    and isinstance(v.message, str) and isinstance(v.stdout, str)
                    for k, v in result.verdicts.items())
            and isinstance(result.calls, int)
            and isinstance(result.reasons, list) and all(isinstance(r, str) for r in result.reasons)
            and isinstance(result.seconds, (int, float)))


def _progress(total, enabled):
    from tqdm import tqdm
    return tqdm(total=total, desc="grading", unit="nb", disable=not enabled, dynamic_ncols=True,
                bar_format="{desc}: {n}/{total} |{bar}| {rate_fmt} elapsed {elapsed} ETA {remaining}")


# ---- the three steps over one job per submitted notebook ------------------------------------

@dataclass
class Job:
    """One (student, assignment): its outcome and one task per notebook to execute."""
    student: str
    assignment: str
    outcome: Outcome
    tasks: list = field(default_factory=list)
    results: dict = field(default_factory=dict)   # notebook -> (executed nb, verdicts)
    tests: dict = field(default_factory=dict)     # notebook -> {grade_id: test text}
    only: tuple = ()                              # test ids to run (`course check --only`)

    @property
    def ready(self) -> bool:
        return all(task.notebook in self.results for task in self.tasks)


class SandboxMissing(SystemExit):
    pass


def require_sandbox(sandbox: bool | None) -> bool:
    """Sandboxed unless told otherwise; no silent fallback to running kernels as ourselves."""
    if sandbox is False:
        return False
    if not bwrap_available():
        raise SandboxMissing(
            "bubblewrap is missing or does not work here, and grading runs student code only "
            "in a sandbox: install it (apt-get install bubblewrap) or pass --no-sandbox to run "
            "kernels with your own rights (only for notebooks you trust).")
    return True


def mode_line(sandbox: bool | None) -> str:
    """What the instructor is told before grading starts (refuses when no sandbox works)."""
    if require_sandbox(sandbox):
        return "grading in bubblewrap sandboxes (no network, no course files, limits per kernel)"
    return "WARNING: grading UNSANDBOXED (--no-sandbox): kernels run with your rights"


def grade(course: Course, assignment: str | None = None, *, students=None, workers: int = 0,
          scheduler: str | None = None, sandbox: bool | None = None, limits: Limits = Limits(),
          force: bool = False, progress: bool = True, only=()) -> Report:
    """prepare -> execute -> finalize; each submission is written as soon as it is done.

    `only` (test ids) runs just those tests and scores the others 0 (`course check --only`).
    """
    sandbox = require_sandbox(sandbox)
    workers = workers or os.cpu_count() or 1
    cache = ResultCache(course.path(CACHE, "results"))
    if force:
        shutil.rmtree(cache.root, ignore_errors=True)
    counts = {"cached": 0, "ran": 0}
    with _private_files(course):
        jobs = prepare(course, assignment, students, limits, sandbox, tuple(only))
        overrides = manual_overrides(course, jobs)
        writer = Finalizer(course)
        by_key = {task.key: job for job in jobs for task in job.tasks}
        for job in jobs:
            if not job.tasks:
                writer.finalize(job)
        tasks = [t for job in jobs for t in job.tasks]
        for result in run_tasks(tasks, cache, workers, scheduler, progress, counts):
            job = by_key[result.key]
            execute_done(job, result)
            if job.ready:
                writer.finalize(job)
    return Report([job.outcome for job in jobs], counts["ran"], counts["cached"],
                  _override_warnings(overrides, counts.get("ran_keys", set())))


def manual_overrides(course: Course, jobs) -> dict:
    """{(student, assignment, notebook): [grade_id, ...]} with a TA's manual score in place."""
    found = {}
    with course.gradebook() as gb:
        for job in jobs:
            try:
                sub = gb.find_submission(job.assignment, job.student)
            except Exception:  # noqa: BLE001 (MissingEntry: never graded before)
                continue
            for nb in sub.notebooks:
                manual = [g.name for g in nb.grades if g.manual_score is not None]
                if manual:
                    found[(job.student, job.assignment, nb.name)] = manual
    return found


def _override_warnings(overrides: dict, ran: set) -> list[str]:
    """A manual score outlives a resubmission: nbgrader keeps it over the new autograde score."""
    return [f"{s}/{a}/{nb}.ipynb was graded anew (resubmitted or forced) but a manual score "
            f"stays in place on {', '.join(gids)}: review it in the formgrader"
            for (s, a, nb), gids in sorted(overrides.items()) if (s, a, nb) in ran]


def prepare(course: Course, assignment, students, limits: Limits, sandbox: bool,
            only=()) -> list[Job]:
    """Stage, repair, sanitize and pack every submission; a broken one fails for itself only."""
    stage = course.path(CACHE, "staging")
    secret = course.secret()
    jobs = []
    with course.gradebook() as gb:
        known = {a.name: a for a in gb.assignments}
        for student, a in submissions(course, assignment, students):
            job = Job(student, a, Outcome(student, a), only=only)
            jobs.append(job)
            if a not in known:
                job.outcome.status = "skipped"
                job.outcome.reasons.append(f"{a} is not in the gradebook: run `course release {a}`")
                continue
            if any(os.path.islink(course.path("submitted", *parts))
                   for parts in ((student,), (student, a))):
                job.outcome.status = "failed"
                job.outcome.reasons.append(f"submitted/{student}/{a} is a link, not a folder: "
                                           "not graded")
                continue
            try:
                _prepare_job(course, gb, job, known[a], stage, secret, limits, sandbox)
            except Exception as e:  # noqa: BLE001 (a crafted notebook must not stop the class)
                job.tasks, job.outcome.status = [], "failed"
                job.outcome.reasons.append(f"{student}/{a} could not be prepared for grading: "
                                           f"{type(e).__name__}: {str(e)[:200]}")
    return jobs


def _prepare_job(course, gb, job, known, stage, secret, limits, sandbox):
    student, a = job.student, job.assignment
    expected = {nb.name: {c.name for c in nb.source_cells} for nb in known.notebooks}
    cell_types = {c.name: c.cell_type for nb in known.notebooks for c in nb.source_cells}
    job.outcome.reasons += stage_submission(course, student, a, stage, expected, cell_types)
    files = course_files(course, a)
    for notebook in sorted(expected):
        path = os.path.join(stage, student, a, f"{notebook}.ipynb")
        tests = job.tests[notebook] = test_cells(gb, notebook, a)
        if not os.path.exists(path):
            _stand_in(course, job, notebook, path, tests)
            continue
        nb = sanitize(course, nbformat.read(path, as_version=4), student, a, notebook)
        nb_json = nbformat.writes(nb)
        seeds = seeds_for(secret, student, a, tests, hashlib.sha256(nb_json.encode()).hexdigest())
        job.tasks.append(Task(student, a, notebook, nb_json, files, seeds, limits, sandbox, tests,
                              job.only))


def _stand_in(course: Course, job: Job, notebook: str, path: str, tests: dict) -> None:
    """No gradable notebook: the released one stands in, every test at 0 with the reason, so
    the student gets a feedback page saying why, and the formgrader a graded submission."""
    release = course.path("release", job.assignment, f"{notebook}.ipynb")
    if not os.path.exists(release):
        return  # the submission still scores 0 (_record_zero), without a page
    shutil.copy(release, path)
    why = "no notebook of yours could be graded for this exercise (see the note at the top)"
    job.results[notebook] = (nbformat.read(release, as_version=4),
                             {gid: Verdict(False, why) for gid in tests})


def execute_done(job: Job, result: Result) -> None:
    """Record one notebook's result on its job (a failed execution fails the submission)."""
    notebook = result.key[2]
    job.outcome.reasons += [f"{notebook}: {r}" for r in result.reasons]
    job.outcome.seconds += max(result.seconds, 0.0)
    if result.seconds < 0:
        job.outcome.status = "failed"
    skipped = Verdict(False, "not selected (--only)")
    verdicts = {gid: result.verdicts.get(gid) or (skipped if job.only and gid not in job.only
                                                  else Verdict(False, "this test did not run"))
                for gid in job.tests[notebook]}
    job.results[notebook] = (nbformat.reads(result.nb_json, as_version=4), verdicts)


class Finalizer:
    """The one writer: nbgrader's Autograde converter, fed our executed notebooks and verdicts."""

    def __init__(self, course: Course):
        self.course = course
        self.stage = course.path(CACHE, "staging")
        extra = Config()
        extra.Autograde.autograde_preprocessors = FINALIZE_PREPROCESSORS
        extra.CourseDirectory.submitted_directory = self.stage
        extra.Autograde.permissions = 400  # nbgrader reads it as octal: r-------- (hidden tests)
        self.api = course.api(extra)

    def finalize(self, job: Job) -> None:
        outcome = job.outcome
        if outcome.status in ("skipped", "failed"):
            job.results.clear()
            return
        student, a = job.student, job.assignment
        if not job.results:
            _record_zero(self.course, student, a)
            return
        pp.InjectResults.results = {(student, a, nb): r for nb, r in job.results.items()}
        pp.InjectResults.notes = {(student, a, nb): outcome.reasons for nb in job.results}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # nbgrader's SQLAlchemy notes are not for users
                result = self.api.autograde(a, student, force=True, create=True)
        finally:
            pp.InjectResults.results, pp.InjectResults.notes = {}, {}
            job.results.clear()  # memory stays bounded by the class, not by what students print
        if not result["success"]:
            outcome.status = "failed"
            outcome.reasons.append(_last_error(result))


@contextlib.contextmanager
def _private_files(course: Course):
    """What grading writes (gradebook, cache, staging, autograded/) is readable by us only."""
    old = os.umask(0o077)
    url = course.db_url
    for path in ([url[len("sqlite:///"):]] if url.startswith("sqlite:///") else []) + \
            [course.path(CACHE), course.path("autograded")]:
        with contextlib.suppress(OSError):
            os.chmod(path, 0o700 if os.path.isdir(path) else 0o600)
    try:
        yield
    finally:
        os.umask(old)


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

LATE = "late_penalty"


def _was_graded(sub) -> bool:
    return any(g.auto_score is not None or g.manual_score is not None
               for nb in sub.notebooks for g in nb.grades)


def scores(course: Course, assignment: str | None = None) -> dict:
    """{(student, assignment): {grade_id: (score, max)}} from the gradebook, late-adjusted:
    a late penalty is the pseudo-question `late_penalty` worth (-penalty, 0)."""
    table = {}
    with course.gradebook() as gb:
        for a in gb.assignments:
            if assignment and a.name != assignment:
                continue
            for sub in a.submissions:
                if not _was_graded(sub):
                    continue  # a record only (an extension granted before grading)
                cells = {}
                for nb in sub.notebooks:
                    for g in nb.grades:
                        cells[g.name] = (float(g.score), float(g.max_score))
                penalty = float(sub.late_submission_penalty or 0)
                if penalty > 0:  # nbgrader's AssignLatePenalties, as `nbgrader export` applies it
                    cells[LATE] = (-min(penalty, sum(e for e, _ in cells.values())), 0.0)
                table[(sub.student.id, a.name)] = cells
    return table

