"""The machine side of a local class: Unix accounts, the exchange, the environment, the course.

Everything lives under one folder (`.hub/` at the repository root) except the accounts and
their homes, which `clean` removes. All of it needs root: the hub switches to each user.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HUB_DIR = os.path.join(REPO, ".hub")
INSTRUCTOR = "bfs-instructor"
STUDENTS = ("bfs-student1", "bfs-student2")
COURSE_ID = "backprop-from-scratch"
PROXY = os.path.join(HUB_DIR, "node_modules", ".bin", "configurable-http-proxy")
ENV_DIR = os.path.join(HUB_DIR, "venv")  # built only where the project's .venv is unreachable
# Students see the Assignments tab and Validate; the instructor also gets these.
INSTRUCTOR_ONLY = ("@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment",
                   "@jupyter/nbgrader:course-list")


def password(user: str) -> str:
    """The known test password of a class account (a local class, never a real one)."""
    return f"{user}-pw"


@dataclasses.dataclass
class Classroom:
    hub_dir: str = HUB_DIR
    instructor: str = INSTRUCTOR
    students: tuple = STUDENTS

    @property
    def users(self) -> tuple:
        return (self.instructor, *self.students)

    def path(self, *parts) -> str:
        return os.path.join(self.hub_dir, *parts)

    @property
    def exchange(self) -> str:
        return self.path("exchange")

    @property
    def course_dir(self) -> str:
        """The instructor's own copy of the course, where they release, grade and give feedback."""
        return os.path.join(home(self.instructor), COURSE_ID)

    def config_dir(self, user: str) -> str:
        return self.path("config", "instructor" if user == self.instructor else "student")


def home(user: str) -> str:
    return pwd.getpwnam(user).pw_dir


def require_root() -> None:
    if os.geteuid() != 0:
        raise SystemExit("a local class needs root: it creates Unix accounts and the hub "
                         "switches to them (run `sudo make hub`)")


def run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


# ---- accounts -----------------------------------------------------------------------------------

def create_accounts(room: Classroom) -> None:
    """A Unix account with a home and a known password per user (PAM logs them in)."""
    for user in room.users:
        try:
            pwd.getpwnam(user)
        except KeyError:
            run(["useradd", "--create-home", "--shell", "/bin/bash", user])
    lines = "".join(f"{u}:{password(u)}\n" for u in room.users)
    run(["chpasswd"], input=lines, text=True)
    for user in room.users:
        os.chmod(home(user), 0o700)  # useradd's default may be world-readable
        _quiet_lab_settings(user)


def remove_accounts(room: Classroom) -> None:
    for user in room.users:
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        subprocess.run(["pkill", "-KILL", "-u", user], check=False)  # their servers and kernels
        run(["userdel", "--remove", user], stderr=subprocess.DEVNULL)


def _quiet_lab_settings(user: str) -> None:
    """No news or update pop-ups in JupyterLab: nothing to fetch on a machine off the net."""
    folder = os.path.join(home(user), ".jupyter", "lab", "user-settings", "@jupyterlab",
                          "apputils-extension")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "notification.jupyterlab-settings"), "w") as f:
        json.dump({"fetchNews": "false", "checkForUpdates": False}, f)
    chown_tree(os.path.join(home(user), ".jupyter"), user)


def chown_tree(path: str, user: str) -> None:
    run(["chown", "-R", f"{user}:{user}", path])


def as_user(user: str, cmd, env_bin: str, config_dir: str, cwd: str, **kw):
    """Run `cmd` as `user` in the class environment, as that user's terminal would."""
    env = [f"HOME={home(user)}", f"USER={user}", f"PATH={env_bin}:/usr/bin:/bin",
           f"JUPYTER_CONFIG_PATH={config_dir}"]
    return subprocess.run(["runuser", "-u", user, "--", "env", "-i", *env, *cmd],
                          cwd=cwd, **kw)


# ---- the environment every user runs -----------------------------------------------------------

def environment(room: Classroom) -> str:
    """The bin folder of a Python environment with this course that every account can run.

    The project's .venv when its interpreter is reachable by the accounts; otherwise (e.g. an
    interpreter under /root) a second one, .hub/venv, from a system Python 3.11.
    """
    ours = os.path.dirname(sys.executable)
    if _usable_by(room.students[0], ours):
        return ours
    venv = ENV_DIR
    stamp, wanted = os.path.join(venv, ".installed-from"), _requirements_hash()
    if not _usable_by(room.students[0], os.path.join(venv, "bin")) or _read(stamp) != wanted:
        python = shutil.which("python3.11", path="/usr/local/bin:/usr/bin:/bin")
        if python is None:
            raise SystemExit("no Python 3.11 that the class accounts can run: install one "
                             "outside /root (apt-get install python3.11-venv)")
        print(f"building {venv} for the class (the project's .venv is not readable by them)")
        if not os.path.exists(os.path.join(venv, "bin", "pip")):
            run([python, "-m", "venv", venv])
        run([os.path.join(venv, "bin", "pip"), "install", "--quiet", "-e", REPO])
        with open(stamp, "w") as f:  # rebuilt when pyproject.toml's dependencies change
            f.write(wanted)
        if not _usable_by(room.students[0], os.path.join(venv, "bin")):
            raise SystemExit(f"the class accounts cannot import the course from {REPO}: "
                             "every folder above it must be world-executable (chmod o+x)")
    return os.path.join(venv, "bin")


def _requirements_hash() -> str:
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _usable_by(user: str, bindir: str) -> bool:
    python = os.path.join(bindir, "python")
    if not os.path.exists(python):
        return False
    probe = subprocess.run(["runuser", "-u", user, "--", python, "-c",
                            "import nbgrader, jupyterhub, course_lib"],
                           cwd="/", capture_output=True)
    return probe.returncode == 0


# ---- exchange, configuration, the instructor's course ------------------------------------------

def make_folders(room: Classroom) -> None:
    os.makedirs(room.hub_dir, exist_ok=True)
    os.chmod(room.hub_dir, 0o755)
    os.makedirs(room.path("state"), mode=0o700, exist_ok=True)  # hub database, cookie secret
    os.chmod(room.path("state"), 0o700)
    # nbgrader's exchange: everyone writes, nobody removes another's files (sticky bit).
    os.makedirs(room.exchange, exist_ok=True)
    os.chmod(room.exchange, 0o1777)
    for role in ("student", "instructor"):
        _write_config(room, os.path.join(room.hub_dir, "config", role), role == "instructor")


def _write_config(room: Classroom, folder: str, instructor: bool) -> None:
    """nbgrader's exchange and course id, and which nbgrader lab extensions a role sees."""
    os.makedirs(os.path.join(folder, "labconfig"), exist_ok=True)
    lines = ["c = get_config()  # noqa: F821",
             f"c.Exchange.root = {room.exchange!r}",
             f"c.CourseDirectory.course_id = {COURSE_ID!r}"]
    if instructor:  # formgrader reads this, not the course's file (its cwd is the home)
        lines.append(f"c.CourseDirectory.root = {room.course_dir!r}")
    with open(os.path.join(folder, "nbgrader_config.py"), "w") as f:
        f.write("\n".join(lines) + "\n")
    disabled = {} if instructor else {ext: True for ext in INSTRUCTOR_ONLY}
    with open(os.path.join(folder, "labconfig", "page_config.json"), "w") as f:
        json.dump({"disabledExtensions": disabled}, f, indent=1)
    for dirpath, dirnames, filenames in os.walk(folder):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)


def copy_course(room: Classroom) -> str:
    """The instructor's working copy: configuration, source/ and release/ (no student data)."""
    dest = room.course_dir
    if not os.path.exists(dest):
        os.makedirs(dest)
        shutil.copy(os.path.join(REPO, "nbgrader_config.py"), dest)
        ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
        for folder in ("source", "release"):
            shutil.copytree(os.path.join(REPO, folder), os.path.join(dest, folder), ignore=ignore)
        chown_tree(dest, room.instructor)
    return dest


def prepare(room: Classroom) -> str:
    """Accounts, folders, configuration and the course; returns the environment's bin folder."""
    require_root()
    if not os.path.exists(PROXY):
        raise SystemExit(f"{PROXY} missing: run `make hub` (it installs configurable-http-proxy "
                         "from npm)")
    create_accounts(room)
    make_folders(room)
    copy_course(room)
    return environment(room)


def clean(room: Classroom) -> None:
    """Remove the accounts (with their homes), the exchange, the hub's state and configuration."""
    require_root()
    remove_accounts(room)
    for folder in ("exchange", "state", "config"):
        shutil.rmtree(room.path(folder), ignore_errors=True)
