"""nbgrader's own tools, made safe on this course; installed by nbgrader_config.py, so in
every process that reads it (`nbgrader` commands, the formgrader's server, `course`).

- Plain `nbgrader autograde` (and so the formgrader's button) with `--force` first deletes a
  student's autograded/ folder, then finds no notebook when the student renamed it, leaving
  nothing: here it refuses before deleting anything when a notebook the gradebook expects is
  missing under its name, and points at `course grade`, which recognises renamed notebooks.
- The formgrader's *Autograde* button would run student code unsandboxed in the server: on this
  course it is refused with a message saying to run `course grade` (nbgrader offers no hook
  to replace what the button runs; its JavaScript shows our message in its error dialog).
- Plain `nbgrader autograde` and `nbgrader validate` (and the instructor's Validate button) run
  each kernel in the bubblewrap sandbox `course grade` uses, on a copy of the notebook's own
  folder: no secret, gradebook, source/, classmate or home. Without a working bubblewrap they
  refuse, pointing at `course grade`, whenever this account can read the grading secret or
  the gradebook; a student's own Validate (no such file readable) runs as nbgrader always did.
  There a notebook also has a wall limit (`c.CourseSandbox.notebook_timeout`, 300 s like
  `course grade`'s): a cell gets at most what is left of it, and once it is spent the cells
  left are not run and carry an error saying so (a test cell left without one would score
  full marks under nbgrader's rules).
"""
from __future__ import annotations

import functools
import json
import math
import os
import stat
import sys

REFUSED = ("On this course the formgrader's Autograde button is turned off: it would run the "
           "student's code unsandboxed inside this server. In a terminal, in the course folder, "
           "run `course grade {assignment} --student {student}` (sandboxed; it recognises "
           "renamed notebooks), then reload this page.")


def missing_notebooks(coursedir, assignment: str, student: str) -> list[str]:
    """The assignment's notebooks that nbgrader would not find in submitted/ under their name."""
    from nbgrader.api import Gradebook, MissingEntry
    folder = coursedir.format_path(coursedir.submitted_directory, student, assignment)
    try:
        with Gradebook(coursedir.db_url, coursedir.course_id) as gb:
            names = [nb.name for nb in gb.find_assignment(assignment).notebooks]
    except MissingEntry:
        return []
    return [n for n in names if not os.path.isfile(os.path.join(folder, f"{n}.ipynb"))]


def _keep_results(original):
    def init_destination(self, assignment_id, student_id):
        dest = self._format_dest(assignment_id, student_id)
        missing = missing_notebooks(self.coursedir, assignment_id, student_id)
        if missing and os.path.exists(dest):
            self.log.error(
                "%s/%s: no %s in submitted/ under that name (renamed?). Earlier results in %s "
                "are kept; grade it with `course grade %s --student %s`, which recognises "
                "renamed notebooks.", student_id, assignment_id,
                ", ".join(f"{n}.ipynb" for n in missing), dest, assignment_id, student_id)
            return False
        return original(self, assignment_id, student_id)
    init_destination._course_safe = True
    return init_destination


def _refuse_button(handler_cls):
    def post(self, assignment_id, student_id):
        self.write(json.dumps({"success": False, "error": REFUSED.format(
            assignment=assignment_id, student=student_id), "log": ""}))
    post._course_safe = True
    handler_cls.post = post


SANDBOX_REQUIRED = (
    "`nbgrader {command}` on this course runs kernels only in the bubblewrap sandbox that "
    "`course grade` uses, and bubblewrap is missing or does not work here; unsandboxed, the "
    "notebook could read what this account can: {private}. Install bubblewrap (apt-get install "
    "bubblewrap), or grade with `course grade` (sandboxed; --no-sandbox only for notebooks "
    "you trust).")
# what a sandboxed nbgrader kernel gets of its notebook's folder
COPY_MAX_BYTES, COPY_MAX_FILES = 256 << 20, 2000


class SandboxRequired(RuntimeError):
    """nbgrader was about to run a kernel unsandboxed next to the course's secrets."""


@functools.lru_cache(maxsize=1)
def _bwrap_works() -> bool:
    from course_lib.grading.sandbox import bwrap_available
    return bwrap_available()


def private_readable(config) -> list[str]:
    """The grading secret and gradebook of the configured course that this account can read."""
    from course_lib.grading.course import SECRET_ENV, SECRET_FILE
    coursedir = config.get("CourseDirectory", {})
    root, url = coursedir.get("root"), str(coursedir.get("db_url") or "")
    found = [f"${SECRET_ENV}"] if os.environ.get(SECRET_ENV) else []
    paths = [os.path.join(root, SECRET_FILE)] if isinstance(root, str) else []
    if url.startswith("sqlite:///"):
        paths.append(url[len("sqlite:///"):])
    return found + [p for p in paths if os.path.exists(p) and os.access(p, os.R_OK)]


def copy_folder(src: str, dest: str) -> list[str]:
    """Regular files of a notebook's folder into the sandbox's (no link, no hidden entry, no
    nbgrader secret, bounded); returns what was left out."""
    from course_lib.channel import wire
    from course_lib.grading.pipeline import NBGRADER_FILES
    total, count, skipped = 0, 0, []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__"
                             and not os.path.islink(os.path.join(dirpath, d)))
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, src)
            if name.startswith(".") or name in NBGRADER_FILES:
                continue
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or total + st.st_size > COPY_MAX_BYTES \
                    or count >= COPY_MAX_FILES:
                skipped.append(rel)
                continue
            try:
                data = wire.read_regular(path, COPY_MAX_BYTES)
            except wire.WireError:
                data = None
            if data is None:
                skipped.append(rel)
                continue
            total, count = total + len(data), count + 1
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), mode=0o700, exist_ok=True)
            with open(os.path.join(dest, rel), "wb") as f:
                f.write(data)
    return skipped


NOTEBOOK_TIMEOUT = ("not run: this notebook used up its wall limit of {seconds} s "
                    "(c.CourseSandbox.notebook_timeout in nbgrader_config.py); `course grade` "
                    "has the same limit (--notebook-timeout)")


def notebook_timeout(config) -> int:
    """Seconds of wall time one notebook gets under plain nbgrader's sandboxed kernels."""
    from course_lib.grading.sandbox import Limits
    section = config["CourseSandbox"] if "CourseSandbox" in config else {}
    return int(section.get("notebook_timeout") or Limits.notebook_timeout)


class WallLimit:
    """One notebook's wall-time budget on an Execute preprocessor: each cell's timeout is
    clipped to what is left; once spent, code cells are not run and get an error output."""

    def __init__(self, execute, seconds: int):
        import time
        self.execute, self.seconds, self.clock = execute, seconds, time.monotonic
        self.deadline = self.clock() + seconds
        self.cell_limit = execute.timeout if execute.timeout and execute.timeout > 0 else None
        self.logged = False

    def left(self) -> float:
        return self.deadline - self.clock()

    def cell_timeout(self, cell) -> int:
        """nbclient's timeout_func: the cell limit, or what is left of the notebook's."""
        left = max(1, math.ceil(self.left()))
        return min(self.cell_limit, left) if self.cell_limit else left

    def preprocess_cell(self, cell, resources, index):
        """nbconvert's per-cell step, refused once the budget is spent."""
        if cell.cell_type != "code" or self.left() > 0:
            return type(self.execute).preprocess_cell(self.execute, cell, resources, index)
        message = NOTEBOOK_TIMEOUT.format(seconds=self.seconds)
        if not self.logged:
            self.execute.log.error("cell %d and the code cells after it: %s", index, message)
            self.logged = True
        cell.execution_count = None
        cell.outputs = [_error_output("NotebookTimeoutError", message)]
        return cell, resources

    def __enter__(self):
        self.previous = self.execute.timeout_func
        self.execute.timeout_func, self.execute.preprocess_cell = self.cell_timeout, \
            self.preprocess_cell
        return self

    def __exit__(self, *exc):
        self.execute.timeout_func = self.previous
        del self.execute.preprocess_cell


def _error_output(ename: str, evalue: str):
    import nbformat
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue,
                                  traceback=[f"{ename}: {evalue}"])


def _in_sandbox(original, execute, nb, resources):
    """nbconvert's execution of `nb`, its kernel in a sandbox on a copy of its folder."""
    from course_lib.grading.sandbox import Limits, SandboxKernelManager, Scratch
    resources = resources if resources is not None else {}
    meta = resources.setdefault("metadata", {})
    had_path, folder = "path" in meta, meta.get("path") or os.getcwd()
    limits = Limits(cell_timeout=execute.timeout or Limits.cell_timeout)
    scratch, km = Scratch(limits.scratch_bytes), None
    try:
        workdir = scratch.folder("work")
        skipped = copy_folder(folder, workdir)
        if skipped:
            execute.log.warning("left out of the sandbox (links, special or too many/large "
                                "files): %s", ", ".join(skipped[:10]))
        km = SandboxKernelManager(workdir, limits, extra_env={}, kdir=scratch.folder("kernel"))
        meta["path"] = workdir
        with WallLimit(execute, notebook_timeout(execute.config)):
            return original(execute, nb, resources, km)
    finally:
        if had_path:
            meta["path"] = folder
        else:
            meta.pop("path", None)
        if km is not None:
            km.cleanup_all()
        scratch.remove()


def _sandboxed_execute(original):
    def preprocess(self, nb, resources=None, km=None):
        if km is not None:  # a caller's own kernel manager (not nbgrader's commands)
            return original(self, nb, resources, km)
        if _bwrap_works():
            return _in_sandbox(original, self, nb, resources)
        private = private_readable(self.config)
        if private:
            raise SandboxRequired(SANDBOX_REQUIRED.format(
                command=os.environ.get("NBGRADER_EXECUTION", "autograde"),
                private=", ".join(private)))
        self.log.warning("no bubblewrap here: this kernel runs with your own rights")
        return original(self, nb, resources, km)
    preprocess._course_safe = True
    return preprocess


def install() -> None:
    from nbgrader.converters.autograde import Autograde
    from nbgrader.preprocessors import Execute
    if not getattr(Execute.preprocess, "_course_safe", False):
        Execute.preprocess = _sandboxed_execute(Execute.preprocess)
    if not getattr(Autograde.init_destination, "_course_safe", False):
        Autograde.init_destination = _keep_results(Autograde.init_destination)
    handlers = sys.modules.get("nbgrader.server_extensions.formgrader.apihandlers")
    if handlers is not None and not getattr(handlers.AutogradeHandler.post, "_course_safe", False):
        _refuse_button(handlers.AutogradeHandler)
