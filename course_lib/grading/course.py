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


def find_root(start: str | None = None) -> str:
    """The folder holding nbgrader_config.py: COURSE_ROOT, then upwards from cwd, then ours."""
    if os.environ.get("COURSE_ROOT"):
        return os.path.abspath(os.environ["COURSE_ROOT"])
    here = os.path.abspath(start or os.getcwd())
    while True:
        if os.path.exists(os.path.join(here, CONFIG_FILE)) and os.path.isdir(os.path.join(here, "source")):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.path.exists(os.path.join(repo, CONFIG_FILE)):
        return repo
    raise SystemExit("no course found: run inside a course folder (with nbgrader_config.py "
                     "and source/) or set COURSE_ROOT")


def ensure_env_on_path() -> None:
    """nbgrader runs `alembic` from PATH: make ours findable without an activated venv."""
    bindir = os.path.dirname(sys.executable)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


class Course:
    def __init__(self, root: str | None = None, db_url: str | None = None):
        ensure_env_on_path()
        self.root = os.path.abspath(root or find_root())
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
        source = self.path("source")
        return sorted(d for d in os.listdir(source)
                      if os.path.isdir(os.path.join(source, d)) and not d.startswith("."))

    def notebooks(self, assignment: str) -> list[str]:
        folder = self.path("source", assignment)
        return sorted(f[:-6] for f in os.listdir(folder) if f.endswith(".ipynb"))

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
