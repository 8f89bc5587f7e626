"""A course on disk: its folders, its nbgrader configuration, its gradebook and its secret."""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
import secrets
import shutil
import sys
import tempfile

# nbgrader is imported where a Course is made: finding a course's folder (`course check`)
# must not cost its seconds of start-up

CONFIG_FILE = "nbgrader_config.py"
SECRET_FILE = ".grading_secret"
SECRET_ENV = "COURSE_GRADING_SECRET"
WITHDRAWN_FILE = "withdrawn.txt"
# what `course` and nbgrader write about students, at the course root: owner-only
PRIVATE_PATHS = (SECRET_FILE, "gradebook.db", "gradebook.db-journal", ".course_cache",
                 "submitted", "autograded", "feedback", "downloaded", "grades.csv",
                 "grades_by_student.csv", "grades.png")
CACHE_RESULTS = os.path.join(".course_cache", "results")


def is_course(folder: str) -> bool:
    return (os.path.exists(os.path.join(folder, CONFIG_FILE))
            and os.path.isdir(os.path.join(folder, "source")))


def find_root(start: str | None = None) -> str:
    """The course folder: COURSE_ROOT, else the nearest folder holding nbgrader_config.py and
    source/ from the current folder upwards. Never a fallback elsewhere: a TA's `course grade`
    in their home must not act on the checkout the package was installed from."""
    if os.environ.get("COURSE_ROOT"):
        return checked_root(os.environ["COURSE_ROOT"])
    here = os.path.abspath(start or os.getcwd())
    while True:
        if is_course(here):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    raise SystemExit(f"no course found in {os.path.abspath(start or os.getcwd())} or above: run "
                     f"`course` inside a course folder (with {CONFIG_FILE} and source/), or "
                     "point at one with `course --root FOLDER` (or COURSE_ROOT)")


def checked_root(folder: str) -> str:
    folder = os.path.abspath(folder)
    if not is_course(folder):
        raise SystemExit(f"{folder} is not a course folder (it needs {CONFIG_FILE} and source/)")
    return folder


def package_course() -> str | None:
    """The course this package was installed from (a checkout), for `course check` only: a
    self-study learner checks a notebook from anywhere against the course they installed."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return repo if is_course(repo) else None


def folders(path: str) -> list[str]:
    """Sub-folders of `path`, sorted; stray files (.gitkeep, .DS_Store, notes) and hidden
    folders are not students or assignments."""
    if not os.path.isdir(path):
        return []
    return sorted(d for d in os.listdir(path)
                  if not d.startswith(".") and os.path.isdir(os.path.join(path, d)))


def withdrawn_ids(root: str) -> set[str]:
    """One id per line of withdrawn.txt at the course root (# starts a comment); also read by
    nbgrader's tools on this course (export, formgrader)."""
    try:
        with open(os.path.join(root, WITHDRAWN_FILE)) as f:
            lines = [line.split("#")[0].strip() for line in f]
    except FileNotFoundError:
        return set()
    return {line for line in lines if line}


def ensure_env_on_path() -> None:
    """nbgrader runs `alembic` from PATH: make ours findable without an activated venv."""
    bindir = os.path.dirname(sys.executable)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


class Course:
    def __init__(self, root: str | None = None, db_url: str | None = None):
        from nbgrader.coursedir import CourseDirectory
        ensure_env_on_path()
        self.root = checked_root(root) if root else find_root()
        self.config = self._load_config()
        if db_url:
            self.config.CourseDirectory.db_url = db_url
        self.config.CourseDirectory.root = self.root
        self.coursedir = CourseDirectory(config=self.config)
        self.coursedir.root = self.root
        self.keep_private()

    def keep_private(self) -> None:
        """Student data already there made owner-only (an earlier nbgrader command may have
        left it 0644), and an SQLite gradebook created 0600 before anything opens it. (The
        `course` command also sets umask 077, so all it writes is owner-only.)"""
        paths = [self.path(p) for p in PRIVATE_PATHS]
        if self.db_url.startswith("sqlite:///"):
            paths.append(self.db_url[len("sqlite:///"):])
            with contextlib.suppress(OSError):  # SQLite takes an empty file as an empty db
                os.close(os.open(paths[-1], os.O_WRONLY | os.O_CREAT, 0o600))
        for path in paths:
            with contextlib.suppress(OSError):
                if not os.path.islink(path):
                    os.chmod(path, 0o700 if os.path.isdir(path) else 0o600)

    def _load_config(self):
        from traitlets.config.loader import PyFileConfigLoader
        loader = PyFileConfigLoader(CONFIG_FILE, path=self.root)
        return loader.load_config()

    @property
    def db_url(self) -> str:
        return self.coursedir.db_url

    @property
    def course_id(self) -> str:
        return self.coursedir.course_id

    def path(self, *parts) -> str:
        return os.path.join(self.root, *parts)

    def api(self, extra=None):
        """nbgrader's API on this course, with `extra` (a traitlets Config) merged in."""
        from nbgrader.apps import NbGraderAPI
        from nbgrader.coursedir import CourseDirectory
        from traitlets.config import Config
        config = Config(self.config)
        if extra is not None:
            config.merge(extra)
        coursedir = CourseDirectory(config=config)
        coursedir.root = self.root
        api = NbGraderAPI(coursedir=coursedir, config=config)
        api.log.setLevel(logging.ERROR)
        return api

    def gradebook(self):
        from nbgrader.api import Gradebook
        return Gradebook(self.db_url, self.course_id)

    def assignments(self) -> list[str]:
        return folders(self.path("source"))

    def notebooks(self, assignment: str) -> list[str]:
        folder = self.path("source", assignment)
        return sorted(f[:-6] for f in os.listdir(folder) if f.endswith(".ipynb"))

    def withdrawn(self) -> set[str]:
        """Students left out of grading, feedback, tables and exports (withdrawn.txt)."""
        return withdrawn_ids(self.root)

    def students(self) -> set[str]:
        """Everyone the course knows: in the gradebook or with a folder in submitted/."""
        with self.gradebook() as gb:
            known = {s.id for s in gb.students}
        return known | set(folders(self.path("submitted")))

    def secret(self) -> bytes:
        """The HMAC key for grading inputs: outside every sandbox, never in git."""
        if os.environ.get(SECRET_ENV):
            return os.environ[SECRET_ENV].encode()
        path = self.path(SECRET_FILE)
        if not os.path.exists(path):
            with contextlib.suppress(FileExistsError):  # another run made it first: use theirs
                _write_private(path, secrets.token_hex(32), replace=False)
        with open(path) as f:
            return f.read().strip().encode()

    def secret_status(self) -> str:
        """Where the grading secret is and how old, never the secret itself."""
        if os.environ.get(SECRET_ENV):
            return (f"the grading secret comes from ${SECRET_ENV} (it wins over "
                    f"{self.path(SECRET_FILE)}); its age is not known here")
        path = self.path(SECRET_FILE)
        if not os.path.exists(path):
            return f"no grading secret yet: the first `course grade` makes {path} (mode 0600)"
        st = os.stat(path)
        made = datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc)
        backups = sorted(f for f in os.listdir(self.root) if f.startswith(SECRET_FILE + "."))
        return (f"grading secret: {path} (mode {st.st_mode & 0o777:04o}), written "
                f"{made:%Y-%m-%d %H:%M} UTC, {_age(made)} ago"
                + (f"; {len(backups)} older one(s) kept beside it, newest {backups[-1]}"
                   if backups else ""))

    def rotate_secret(self) -> tuple[str, str | None]:
        """A new grading secret in place of the old one, atomically; the old one is kept as a
        dated backup (0600). Cached executions drew their inputs from the old one: dropped.
        Returns (secret path, backup path or None)."""
        if os.environ.get(SECRET_ENV):
            raise SystemExit(f"the grading secret comes from ${SECRET_ENV}: set a new value "
                             "there (e.g. python -c 'import secrets; print(secrets.token_hex(32))'"
                             f"); {SECRET_FILE} is not used while it is set")
        path, backup = self.path(SECRET_FILE), None
        if os.path.exists(path):
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            backup = f"{path}.{stamp}"
            with open(path) as f:
                _write_private(backup, f.read(), replace=False)
        _write_private(path, secrets.token_hex(32), replace=True)
        shutil.rmtree(self.path(CACHE_RESULTS), ignore_errors=True)
        return path, backup


def _age(when: datetime.datetime) -> str:
    """How long ago, in the largest whole unit: "3 days", "5 hours", "12 minutes"."""
    seconds = (datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n > 1 else ''}"
    return "less than a minute"


def _write_private(path: str, text: str, replace: bool) -> None:
    """`text` into `path` (mode 0600) at once: written beside it, then renamed into place;
    without `replace`, FileExistsError when `path` exists."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-secret-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails when it exists: never over another's secret
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
