"""A course on disk: its folders, its nbgrader configuration, its gradebook and its secret."""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys

from nbgrader.api import Gradebook
from nbgrader.apps import NbGraderAPI
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

CONFIG_FILE = "nbgrader_config.py"
SECRET_FILE = ".grading_secret"
SECRET_ENV = "COURSE_GRADING_SECRET"
WITHDRAWN_FILE = "withdrawn.txt"


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
        ensure_env_on_path()
        self.root = checked_root(root) if root else find_root()
        self.config = self._load_config()
        if db_url:
            self.config.CourseDirectory.db_url = db_url
        self.config.CourseDirectory.root = self.root
        self.coursedir = CourseDirectory(config=self.config)
        self.coursedir.root = self.root

    def _load_config(self) -> Config:
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

    def api(self, extra: Config | None = None) -> NbGraderAPI:
        config = Config(self.config)
        if extra is not None:
            config.merge(extra)
        coursedir = CourseDirectory(config=config)
        coursedir.root = self.root
        api = NbGraderAPI(coursedir=coursedir, config=config)
        api.log.setLevel(logging.ERROR)
        return api

    def gradebook(self) -> Gradebook:
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
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        with open(path) as f:
            return f.read().strip().encode()
