"""`course grade`: prepare in the trusted process, execute in sandboxes, finalize through nbgrader.

1. prepare: each submitted notebook is sanitized with nbgrader's own preprocessors against the
   gradebook (test cells restored), found under a wrong file name if need be, and packed
   with its files and HMAC seeds into a `Task`;
2. execute: tasks run in parallel (processes, or a Dask cluster): student cells in a
   sandboxed kernel, test cells (text from the gradebook) in the worker, reaching student code
   through the channel; verdicts are cached on disk, so an interrupted run resumes;
3. finalize: nbgrader's autograde preprocessors (with `InjectResults` in place of Execute)
   build autograded/ from those verdicts in the trusted finalizer processes, and this process,
   the one writer, puts their scores into the gradebook in batches (`finalize.py`).

Steps 1 and 3 run in a pool of trusted finalizer processes when grading in parallel (in this
process when serial): they never start a kernel, and the execution workers never see the
gradebook or compute a score.
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

from course_lib.channel import wire
from course_lib.grading import cells
from course_lib.grading.course import Course, folders
from course_lib.grading.runner import Result, Task, execute_task, read_files
from course_lib.grading.sandbox import Limits, bwrap_available
from course_lib.grading.verdicts import Verdict, seeds_for

CACHE = ".course_cache"


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
        """One line of counts, then one line per warning and per reason (names a student
        chose shown escaped: one line each, no terminal control sequence)."""
        lines = [f"graded {self.count('graded')}, failed {self.count('failed')}, "
                 f"skipped {self.count('skipped')}; notebooks: {self.ran} ran, "
                 f"{self.cached} from the cache (unchanged since the last run)"]
        lines += [f"  warning: {printable(w)}" for w in self.warnings]
        for o in self.outcomes:
            for reason in o.reasons:
                lines.append(f"  {printable(o.student)}/{printable(o.assignment)} "
                             f"[{o.status}]: {printable(reason)}")
        return "\n".join(lines)


def printable(text) -> str:
    """`text` with control, format and line-separator characters escaped (\\x1b, \\n,
    \\u202e): a file name a student chose cannot move the cursor, recolour or rewrite
    the instructor's terminal, start a line of its own or reverse what follows."""
    import unicodedata
    return "".join(ch.encode("unicode_escape").decode("ascii")
                   if unicodedata.category(ch) in UNPRINTABLE else ch for ch in str(text))


UNPRINTABLE = ("Cc", "Cf", "Cs", "Zl", "Zp")  # control, format (bidi), surrogate, separators


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
        stable_cell_ids(nb)
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
    if data is None and name == "timestamp.txt":
        # ignoring it would grade the hand-in as never late, as a bad date would
        raise ValueError("timestamp.txt is not a regular file (a link, a folder or larger than "
                         "4 KB); not graded: collect it again with `nbgrader collect`, which "
                         "writes this file")
    if data is None:
        reasons.append(f"{name} is not a regular file: ignored")
        return
    if name == "timestamp.txt":
        _check_timestamp(data)
    with open(os.path.join(dest, name), "wb") as f:
        f.write(data)


def _check_timestamp(data: bytes) -> None:
    """A timestamp.txt nbgrader can read, or the hand-in is refused (ignoring it would make
    late work on time; nbgrader itself stops with an AttributeError there)."""
    from nbgrader.utils import parse_utc
    text = data.decode("utf-8", "replace").strip()
    try:
        if text:
            parse_utc(text)
    except (ValueError, OverflowError) as e:
        raise ValueError(f"timestamp.txt holds no date nbgrader can read ({printable(text[:40])}"
                         f"{'...' if len(text) > 40 else ''}: {e}); not graded: collect it "
                         "again with `nbgrader collect`, which writes this file") from None


def sanitize(course: Course, nb, student, assignment, notebook, preprocessors=None):
    """nbgrader's sanitize step, with the preprocessors `nbgrader autograde` is configured with
    (`c.Autograde.sanitize_preprocessors`), or those instances of them."""
    from traitlets.utils.importstring import import_item
    resources = {"nbgrader": {"notebook": notebook, "assignment": assignment,
                              "student": student, "db_url": course.db_url}}
    if preprocessors is None:
        preprocessors = [(import_item(n) if isinstance(n, str) else n)(config=course.config)
                         for n in course.config.Autograde.sanitize_preprocessors]
    for preprocessor in preprocessors:
        nb, resources = preprocessor(nb, resources)  # as nbconvert runs them: if enabled
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

    def future(self) -> cf.Future:
        future = cf.Future()
        if self.error is not None:
            future.set_exception(self.error)
        else:
            future.set_result(self.value)
        return future


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
    """One (student, assignment): its outcome, the tasks to execute and what is done."""
    student: str
    assignment: str
    outcome: Outcome
    tasks: list = field(default_factory=list)
    done: dict = field(default_factory=dict)      # notebook -> (sanitized, executed, verdicts)
    tests: dict = field(default_factory=dict)     # notebook -> [grade_id of its test cells]
    expected: list = field(default_factory=list)  # the assignment's notebooks
    only: tuple = ()                              # test ids to run (`course check --only`)

    @property
    def ready(self) -> bool:
        return all(task.notebook in self.done for task in self.tasks)


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


BATCH = 64   # submissions per gradebook transaction


def grade(course: Course, assignment: str | None = None, *, students=None, workers: int = 0,
          scheduler: str | None = None, sandbox: bool | None = None, limits: Limits = Limits(),
          force: bool = False, progress: bool = True, only=(), finalizers: int | None = None,
          batch: int = BATCH) -> Report:
    """prepare -> execute -> finalize; submissions reach the gradebook in batches as they end.

    Preparing and finalizing (nbgrader's preprocessors, the autograded notebooks) run in a
    pool of `finalizers` trusted processes (default: one per 8 local workers, half this
    machine's cores with a cluster, none when grading serially); this process only schedules
    and writes the gradebook, one transaction per `batch` submissions. `only` (test ids) runs
    just those tests and scores the others 0 (`course check --only`).
    """
    sandbox = require_sandbox(sandbox)
    workers = workers or os.cpu_count() or 1
    cache = ResultCache(course.path(CACHE, "results"))
    if force:
        shutil.rmtree(cache.root, ignore_errors=True)
    counts = {"cached": 0, "ran": 0}
    serial = workers <= 1 and not scheduler
    if finalizers is None:  # a finalizer keeps up with ~8 execution slots (bench/finalize.py)
        cores = os.cpu_count() or 1
        per_workers = min(cores, -(-workers // 8))
        finalizers = 0 if serial else max(1, cores // 2 if scheduler else per_workers)
    setup = Setup(course.root, course.db_url, limits, sandbox, tuple(only))
    with _private_files(course), Trusted(course, setup, finalizers) as trusted:
        specs = submissions(course, assignment, students)
        overrides = manual_overrides(course, specs)
        jobs = trusted.prepare(specs)
        finishing = Finishing(course, trusted, batch)
        by_key = {task.key: job for job in jobs for task in job.tasks}
        for job in jobs:
            if job.ready:
                finishing.add(job)
        tasks = [t for job in jobs for t in job.tasks]
        for result in run_tasks(tasks, cache, workers, scheduler, progress, counts):
            job = by_key[result.key]
            execute_done(job, result)
            if job.ready:
                finishing.add(job)
            finishing.collect()
        finishing.close()
    return Report([job.outcome for job in jobs], counts["ran"], counts["cached"],
                  _override_warnings(overrides, counts.get("ran_keys", set())))


def manual_overrides(course: Course, specs) -> dict:
    """{(student, assignment, notebook): [grade_id, ...]} with a TA's manual score in place."""
    from nbgrader.api import (Assignment, BaseCell, Grade, Notebook, SubmittedAssignment,
                              SubmittedNotebook)
    wanted = set(specs)
    found = {}
    with course.gradebook() as gb:
        rows = gb.db.query(SubmittedAssignment.student_id, Assignment.name, Notebook.name,
                           BaseCell.name).select_from(Grade) \
            .join(SubmittedNotebook, SubmittedNotebook.id == Grade.notebook_id) \
            .join(SubmittedAssignment, SubmittedAssignment.id == SubmittedNotebook.assignment_id) \
            .join(Assignment, Assignment.id == SubmittedAssignment.assignment_id) \
            .join(Notebook, Notebook.id == SubmittedNotebook.notebook_id) \
            .join(BaseCell, BaseCell.id == Grade.cell_id) \
            .filter(Grade.manual_score.isnot(None))
        for student, a, notebook, gid in rows:
            if (student, a) in wanted:
                found.setdefault((student, a, notebook), []).append(gid)
    return found


def _override_warnings(overrides: dict, ran: set) -> list[str]:
    """A manual score outlives a resubmission: nbgrader keeps it over the new autograde score."""
    return [f"{s}/{a}/{nb}.ipynb was graded anew (resubmitted or forced) but a manual score "
            f"stays in place on {', '.join(gids)}: review it in the formgrader"
            for (s, a, nb), gids in sorted(overrides.items()) if (s, a, nb) in ran]


# ---- the trusted side: prepare and build, in this process or a pool of finalizers ----------------

@dataclass(frozen=True)
class Setup:
    """What a trusted process needs to prepare and finalize submissions (picklable)."""
    root: str
    db_url: str
    limits: Limits
    sandbox: bool
    only: tuple = ()


class Station:
    """One trusted process's tools: the course, its secret, nbgrader's preprocessors (sanitize
    with one reused gradebook connection, autograde without database writes), the
    assignments' definitions read once."""

    def __init__(self, setup: Setup):
        from course_lib.grading import finalize
        from traitlets.utils.importstring import import_item
        self.setup = setup
        self.course = Course(setup.root, db_url=setup.db_url)
        self.secret = self.course.secret()
        self.stage = self.course.path(CACHE, "staging")
        classes = [import_item(n) if isinstance(n, str) else n
                   for n in self.course.config.Autograde.sanitize_preprocessors]
        self.sanitizers = [cls(config=self.course.config, log=finalize.QUIET) for cls in classes]
        self.reused = finalize.ReusedGradebooks(classes)
        self.builder = finalize.Builder(self.course, self.stage)
        self.assignments: dict = {}

    def close(self):
        self.reused.close()

    def assignment(self, name: str):
        """(expected cells per notebook, cell types, tests per notebook, files), or None."""
        if name not in self.assignments:
            with self.reused() as gradebook, gradebook(self.course.db_url,
                                                      self.course.course_id) as gb:
                self.assignments[name] = _definition(self.course, gb, name)
        return self.assignments[name]

    def prepare(self, student: str, assignment: str) -> Job:
        return prepare_job(self, student, assignment)

    def build(self, finished):
        return self.builder.build(finished)


def _definition(course, gb, name):
    known = {a.name: a for a in gb.assignments}.get(name)
    if known is None:
        return None
    expected = {nb.name: {c.name for c in nb.source_cells} for nb in known.notebooks}
    cell_types = {c.name: c.cell_type for nb in known.notebooks for c in nb.source_cells}
    tests = {nb: test_cells(gb, nb, name) for nb in expected}
    return expected, cell_types, tests, course_files(course, name)


_STATION: Station | None = None   # a finalizer process's own


def _start_station(setup: Setup) -> None:
    global _STATION
    _STATION = Station(setup)


def _in_station(method: str, *args):
    return getattr(_STATION, method)(*args)


class Trusted:
    """Prepare and build: in this process (`finalizers=0`) or in a pool of trusted processes
    (forked from this one where that is safe, so nbgrader is not imported again)."""

    def __init__(self, course: Course, setup: Setup, finalizers: int):
        from nbgrader.api import Gradebook
        Gradebook(course.db_url).close()  # nbgrader's default course row, made by the writer
        self.setup, self.size = setup, finalizers
        self.local = Station(setup) if finalizers == 0 else None
        self.pool = None if finalizers == 0 else self._pool()

    def _pool(self):
        import threading
        method = "fork" if ("fork" in multiprocessing.get_all_start_methods()
                            and threading.active_count() == 1) else "spawn"
        return cf.ProcessPoolExecutor(self.size, mp_context=multiprocessing.get_context(method),
                                      initializer=_start_station, initargs=(self.setup,))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.local is not None:
            self.local.close()
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def submit(self, method: str, *args) -> cf.Future:
        if self.pool is None:
            return _Now(getattr(self.local, method), *args).future()
        try:
            return self.pool.submit(_in_station, method, *args)
        except cf.process.BrokenProcessPool:  # a finalizer died: a fresh pool for what follows
            self.pool.shutdown(cancel_futures=True)
            self.pool = self._pool()
            return self.pool.submit(_in_station, method, *args)

    def prepare(self, specs) -> list[Job]:
        futures = [self.submit("prepare", s, a) for s, a in specs]
        jobs = []
        for (student, a), future in zip(specs, futures):
            try:
                jobs.append(future.result())
            except Exception as e:  # noqa: BLE001 (a finalizer that died: this submission only)
                job = Job(student, a, Outcome(student, a, status="failed"))
                job.outcome.reasons.append(f"{student}/{a} could not be prepared: "
                                           f"{type(e).__name__}: {str(e)[:200]}")
                jobs.append(job)
        return jobs


class Finishing:
    """Submissions done executing: built by the trusted side, written in batches."""

    def __init__(self, course: Course, trusted: Trusted, batch: int):
        from course_lib.grading.finalize import GradebookWriter
        self.trusted, self.batch_size = trusted, max(1, batch)
        self.writer = GradebookWriter(course)
        self.building: dict = {}    # future -> job
        self.records: list = []
        self.jobs: dict = {}        # (student, assignment) -> job, for the records in hand

    def add(self, job: Job) -> None:
        from course_lib.grading.finalize import Finished, Record
        if job.outcome.status in ("skipped", "failed"):
            job.done.clear()
            return
        if not job.done:
            self._record(job, Record(job.student, job.assignment, kind="zero"))
            return
        finished = Finished(job.student, job.assignment, list(job.outcome.reasons),
                            dict(job.done), job.expected)
        job.done.clear()  # memory stays bounded by what is in flight, not what students print
        self.building[self.trusted.submit("build", finished)] = job

    def collect(self, wait: bool = False) -> None:
        """Take the builds that are done (all of them with `wait`); write full batches."""
        done = [f for f in self.building if f.done()] if not wait else list(self.building)
        for future in done:
            job = self.building.pop(future)
            try:
                record = future.result()
            except Exception as e:  # noqa: BLE001 (a finalizer that died: this submission only)
                job.outcome.status = "failed"
                job.outcome.reasons.append(f"finalizing failed: {type(e).__name__}: "
                                           f"{str(e)[:200]}")
                continue
            if record.kind == "failed":
                job.outcome.status = "failed"
                job.outcome.reasons.append(record.reason)
                continue
            self._record(job, record)
        if len(self.records) >= self.batch_size or (wait and self.records):
            self.flush()

    def _record(self, job, record) -> None:
        self.records.append(record)
        self.jobs[(job.student, job.assignment)] = job
        if len(self.records) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SQLAlchemy's notes are not for users
            failed = self.writer.write(self.records)
        for key, why in failed.items():
            self.jobs[key].outcome.status = "failed"
            self.jobs[key].outcome.reasons.append(why)
        self.records, self.jobs = [], {}

    def close(self) -> None:
        while self.building:
            cf.wait(list(self.building))
            self.collect(wait=True)
        if self.records:
            self.flush()
        self.writer.close()


def prepare_job(station: Station, student: str, a: str) -> Job:
    """Stage, repair, sanitize and pack one submission; a broken one fails for itself only."""
    job = Job(student, a, Outcome(student, a), only=station.setup.only)
    course = station.course
    definition = station.assignment(a)
    if definition is None:
        job.outcome.status = "skipped"
        job.outcome.reasons.append(f"{a} is not in the gradebook: run `course release {a}`")
        return job
    links = ((student,), (student, a))
    if any(os.path.islink(course.path("submitted", *parts)) for parts in links):
        job.outcome.status = "failed"
        job.outcome.reasons.append(f"submitted/{student}/{a} is a link, not a folder: not graded")
        return job
    try:
        _prepare_job(station, job, definition)
    except Exception as e:  # noqa: BLE001 (a crafted notebook must not stop the class)
        job.tasks, job.done, job.outcome.status = [], {}, "failed"
        job.outcome.reasons.append(f"{student}/{a} could not be prepared for grading: "
                                   f"{type(e).__name__}: {str(e)[:200]}")
    return job


def _prepare_job(station: Station, job: Job, definition) -> None:
    course, setup = station.course, station.setup
    student, a = job.student, job.assignment
    expected, cell_types, tests_by_nb, files = definition
    job.expected = sorted(expected)
    job.outcome.reasons += stage_submission(course, student, a, station.stage, expected,
                                            cell_types)
    for notebook in sorted(expected):
        path = os.path.join(station.stage, student, a, f"{notebook}.ipynb")
        tests = tests_by_nb[notebook]
        job.tests[notebook] = list(tests)
        if not os.path.exists(path):
            _stand_in(station, job, notebook, path, tests)
            continue
        nb_json = _sanitized(station, path, student, a, notebook)
        seeds = seeds_for(station.secret, student, a, tests,
                          hashlib.sha256(nb_json.encode()).hexdigest())
        job.tasks.append(Task(student, a, notebook, nb_json, files, seeds, setup.limits,
                              setup.sandbox, tests, job.only))


def _sanitized(station: Station, path: str, student, a, notebook) -> str:
    with station.reused():
        nb = sanitize(station.course, nbformat.read(path, as_version=4), student, a, notebook,
                      station.sanitizers)
    stable_cell_ids(nb)
    return nbformat.writes(nb)


def stable_cell_ids(nb) -> None:
    """Every cell a unique id made from the notebook itself: nbformat would make up random ones
    for cells without (a test cell put back) or with a repeated id, and the same submission
    would then hash anew each run (new seeds, no cache hit)."""
    if (nb.nbformat, nb.nbformat_minor) < (4, 5):
        return
    seen = set()
    for index, cell in enumerate(nb.cells):
        cid = cell.get("id")
        if not isinstance(cid, str) or cid in seen:
            base = f"{cid}|{cells.grade_id(cell)}|{index}|{cell.get('source', '')}"
            cid = hashlib.sha256(base.encode()).hexdigest()[:12]
            while cid in seen:
                cid = hashlib.sha256(cid.encode()).hexdigest()[:12]
            cell["id"] = cid
        seen.add(cid)


def _stand_in(station: Station, job: Job, notebook: str, path: str, tests: dict) -> None:
    """No gradable notebook: the released one stands in, every test at 0 with the reason, so
    the student gets a feedback page saying why, and the formgrader a graded submission."""
    release = station.course.path("release", job.assignment, f"{notebook}.ipynb")
    if not os.path.exists(release):
        return  # the submission still scores 0 (a "zero" record), without a page
    shutil.copy(release, path)
    why = "no notebook of yours could be graded for this exercise (see the note at the top)"
    with open(release, encoding="utf-8") as f:
        executed = f.read()
    sanitized = _sanitized(station, path, job.student, job.assignment, notebook)
    job.done[notebook] = (sanitized, executed, {gid: Verdict(False, why) for gid in tests})


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
    task = next(t for t in job.tasks if t.notebook == notebook)
    job.done[notebook] = (task.nb_json, result.nb_json, verdicts)


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

