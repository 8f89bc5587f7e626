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

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HUB_DIR = os.path.join(REPO, ".hub")
INSTRUCTOR = "bfs-instructor"
STUDENTS = ("bfs-student1", "bfs-student2")
COURSE_ID = "backprop-from-scratch"
PROXY = os.path.join(HUB_DIR, "node_modules", ".bin", "configurable-http-proxy")
# The class environment: outside any checkout, so no account needs to reach one.
ENV_DIR = "/opt/backprop-from-scratch/class-venv"
# Students see the Assignments tab and Validate; the instructor also gets these.
INSTRUCTOR_ONLY = ("@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment",
                   "@jupyter/nbgrader:course-list")


def password(user: str) -> str:
    """The known test password of a class account (a local class, never a real one)."""
    return f"{user}-pw"


@dataclasses.dataclass
class Classroom:
    hub_dir: str = HUB_DIR
    env_dir: str = ENV_DIR
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
    """The bin folder of the class environment, which every account runs: the pinned
    dependencies and course_lib as a built wheel (a copy of the package, no course folder).

    It lives outside the checkout (`room.env_dir`), from a system Python 3.11; the wheel is
    rebuilt when course_lib changes, the dependencies when pyproject.toml does.
    """
    venv = room.env_dir
    python = shutil.which("python3.11", path="/usr/local/bin:/usr/bin:/bin")
    if python is None or python.startswith("/root"):
        raise SystemExit("no Python 3.11 that the class accounts can run: install one outside "
                         "/root (apt-get install python3.11-venv)")
    pip = os.path.join(venv, "bin", "pip")
    if not os.path.exists(pip):
        os.makedirs(os.path.dirname(venv), mode=0o755, exist_ok=True)
        run([python, "-m", "venv", venv])
    deps, package = os.path.join(venv, ".dependencies"), os.path.join(venv, ".course_lib")
    wanted_deps, wanted_package = _hash_files(["pyproject.toml"]), _hash_files(_package_files())
    if _read(deps) != wanted_deps or _read(package) != wanted_package:
        print(f"installing the class environment in {venv} (course_lib as a wheel)")
        wheel = build_wheel(pip)
        reuse_deps = [] if _read(deps) != wanted_deps else ["--no-deps"]
        run([pip, "install", "--quiet", "--force-reinstall", *reuse_deps, wheel])
        shutil.rmtree(os.path.dirname(wheel), ignore_errors=True)
        _write(deps, wanted_deps)
        _write(package, wanted_package)
    where = _course_lib_seen_by(room.students[0], os.path.join(venv, "bin"))
    if where is None or not where.startswith(venv + os.sep):
        raise SystemExit(f"the class accounts do not import course_lib from {venv} "
                         f"(they see {where}): remove it and run `make hub` again")
    return os.path.join(venv, "bin")


def build_wheel(pip: str) -> str:
    """course_lib as a wheel, built from a copy holding only the package and its metadata."""
    import tempfile
    work = tempfile.mkdtemp(prefix="bfs-wheel-")
    tree = os.path.join(work, "src")
    os.makedirs(tree)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO, name), tree)
    shutil.copytree(os.path.join(REPO, "course_lib"), os.path.join(tree, "course_lib"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    run([pip, "wheel", "--quiet", "--no-deps", "-w", os.path.join(work, "dist"), tree])
    [wheel] = [f for f in os.listdir(os.path.join(work, "dist")) if f.endswith(".whl")]
    shutil.rmtree(tree)
    return os.path.join(work, "dist", wheel)


def _package_files() -> list[str]:
    files = []
    for dirpath, dirnames, filenames in os.walk(os.path.join(REPO, "course_lib")):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        files += [os.path.relpath(os.path.join(dirpath, f), REPO) for f in sorted(filenames)
                  if not f.endswith(".pyc")]
    return ["pyproject.toml", *files]


def _hash_files(relpaths) -> str:
    digest = hashlib.sha256()
    for rel in relpaths:
        digest.update(rel.encode() + b"\0")
        with open(os.path.join(REPO, rel), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _course_lib_seen_by(user: str, bindir: str) -> str | None:
    """Where `user`'s Python in `bindir` imports course_lib from (None: it cannot)."""
    probe = subprocess.run(["runuser", "-u", user, "--", os.path.join(bindir, "python"), "-c",
                            "import nbgrader, jupyterhub, course_lib; print(course_lib.__file__)"],
                           cwd="/", capture_output=True, text=True)
    return probe.stdout.strip() or None if probe.returncode == 0 else None


# ---- what a student account must not read -----------------------------------------------------

_PROBE = """import os, sys
for path in sys.argv[1:]:
    try:
        os.listdir(path) if os.path.isdir(path) else open(path, "rb").close()
    except OSError:
        continue
    print(path)
"""


def private_paths(room: Classroom) -> list[str]:
    """The course's secrets as files: source/ (with each notebook), the gradebook, the grading
    secret, submissions and feedback, in the instructor's copy and in the checkout."""
    paths = []
    for root in (room.course_dir, REPO):
        paths += [os.path.join(root, name) for name in (
            "source", "gradebook.db", ".grading_secret", "submitted", "autograded", "feedback",
            "grades.csv")]
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, "source")):
            paths += [os.path.join(dirpath, f) for f in filenames if f.endswith(".ipynb")]
    return [p for p in paths if os.path.exists(p)]


def readable_by(user: str, paths: list[str]) -> list[str]:
    """Those of `paths` that `user` can open (a folder: list)."""
    probe = subprocess.run(["runuser", "-u", user, "--", "/usr/bin/python3", "-c", _PROBE, *paths],
                           cwd="/", capture_output=True, text=True)
    return probe.stdout.split("\n")[:-1] if probe.returncode == 0 else list(paths)


def refuse_readable_course(room: Classroom) -> None:
    """Stop before the hub starts when a student account could read the course's secrets."""
    leaks = readable_by(room.students[0], private_paths(room))
    if leaks:
        shown = "\n  ".join(leaks[:8]) + ("\n  ..." if len(leaks) > 8 else "")
        raise SystemExit(
            f"refusing to start the class: {room.students[0]} (a student account) can read\n  "
            f"{shown}\nthe hidden tests and solutions are in source/. Make the checkout "
            f"private (chmod 700 {REPO}, or clone it under /root) and keep the instructor's "
            f"home 0700, then run `make hub` again.")


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
             f"c.CourseDirectory.course_id = {COURSE_ID!r}",
             # a hand-in is its owner's and the instructor's only; collect refuses forgeries
             'c.ExchangeFactory.submit = "course_lib.grading.exchange.PrivateSubmit"',
             'c.ExchangeFactory.collect = "course_lib.grading.exchange.OwnedCollect"']
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
    """The instructor's working copy: configuration, source/ and release/ (no student data),
    owner-only in an owner-only home."""
    dest = room.course_dir
    if not os.path.exists(dest):
        os.makedirs(dest)
        shutil.copy(os.path.join(REPO, "nbgrader_config.py"), dest)
        ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
        for folder in ("source", "release"):
            shutil.copytree(os.path.join(REPO, folder), os.path.join(dest, folder), ignore=ignore)
        chown_tree(dest, room.instructor)
    os.chmod(home(room.instructor), 0o700)
    run(["chmod", "-R", "go-rwx", dest])
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
    env_bin = environment(room)
    refuse_readable_course(room)
    return env_bin


def clean(room: Classroom) -> None:
    """Remove the accounts (with their homes), the exchange, the hub's state and configuration."""
    require_root()
    remove_accounts(room)
    for folder in ("exchange", "state", "config"):
        shutil.rmtree(room.path(folder), ignore_errors=True)
