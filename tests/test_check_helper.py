"""The kept-warm helper of `course check --only`: the same verdicts as a cold check, a fresh
kernel for every check, gone after its idle time, its own user's only."""
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time

import nbformat
import pytest

from course_lib.grading import warm
from harness import REPO, cell_by_id, read, source_path

COURSE = os.path.join(os.path.dirname(sys.executable), "course")
NOTEBOOK = "03_mlp_backward"

pytestmark = pytest.mark.slow


@pytest.fixture
def helper_env(monkeypatch):
    """An environment whose checks use a helper in a runtime folder of this test's own (a
    short path: a socket's must fit in 107 bytes)."""
    folder = tempfile.mkdtemp(prefix="course-rt-")
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_CHECK_COLD", "COURSE_ROOT")}
    env.update({warm.DIR_ENV: str(folder), warm.IDLE_ENV: "300"})
    monkeypatch.setenv(warm.DIR_ENV, str(folder))
    yield env
    _stop_all(folder)
    shutil.rmtree(folder, ignore_errors=True)


def _stop_all(folder):
    """Stop every helper listening in `folder` (as the tests leave them)."""
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        if name.endswith(".sock"):
            os.chmod(folder, 0o700)
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                conn.connect(os.path.join(folder, name))
                warm.request(conn, {"op": "stop"})
            except OSError:
                conn.close()


def _status(env, timeout=180):
    """The helper's status once its spare kernel is ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = warm.ask(REPO, None, "status", env[warm.DIR_ENV])
        if answer and answer.get("ready"):
            return answer
        time.sleep(0.3)
    raise AssertionError("the helper did not get a kernel ready")


def _start_helper(env):
    return subprocess.Popen([sys.executable, "-m", "course_lib.grading.warm", REPO, "null",
                             NOTEBOOK], env=env, cwd=env[warm.DIR_ENV],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _check(env, path, *extra):
    return subprocess.run([COURSE, "--root", REPO, "check", str(path), "--only", "affine",
                           *extra], env=env, cwd=os.path.dirname(path), capture_output=True,
                          text=True, timeout=300)


def _notebook(tmp_path, name, wrong=False, first_cell=None):
    nb = read(source_path(NOTEBOOK))
    if wrong:
        cell = cell_by_id(nb, "affine")
        cell.source = cell.source.replace("x.T @ g", "g.T @ x")
    if first_cell:
        nb.cells.insert(2, nbformat.v4.new_code_cell(first_cell))
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def _shape(report):
    """A report with its numbers blanked and its lines joined: each check draws its own random
    inputs, and a number's width moves where a long message wraps."""
    numbers = re.sub(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?", "N", report)
    return re.sub(r"\s+", " ", numbers)


def _warm(result):
    return "kept ready" in result.stderr


def test_a_warm_check_says_what_a_cold_one_says(tmp_path, helper_env):
    failing = _notebook(tmp_path, "wrong.ipynb", wrong=True)
    passing = _notebook(tmp_path, "right.ipynb")
    cold_fail = _check(helper_env, failing, "--timings")  # cold, and leaves a helper behind
    assert not _warm(cold_fail) and cold_fail.returncode == 1, cold_fail.stderr
    cold_pass = _check(helper_env, passing, "--cold", "--timings")
    assert not _warm(cold_pass) and cold_pass.returncode == 0, cold_pass.stdout
    _status(helper_env)
    warm_fail = _check(helper_env, failing, "--timings")
    assert _warm(warm_fail), warm_fail.stderr
    assert warm_fail.returncode == 1 and "FAIL test_affine" in warm_fail.stdout
    assert _shape(warm_fail.stdout) == _shape(cold_fail.stdout)
    _status(helper_env)
    warm_pass = _check(helper_env, passing, "--timings")
    assert _warm(warm_pass) and warm_pass.returncode == 0, warm_pass.stdout
    assert warm_pass.stdout == cold_pass.stdout


MARKER = """import builtins, os
assert not hasattr(builtins, "_seen_by_a_check") and not os.path.exists("/tmp/seen") \\
    and not os.path.exists("seen"), "this kernel ran a check before"
builtins._seen_by_a_check = True
open("/tmp/seen", "w").close(); open("seen", "w").close()"""


def test_a_kernel_serves_one_check_and_the_helper_survives_a_crash(tmp_path, helper_env):
    _start_helper(helper_env)
    pid = _status(helper_env)["pid"]
    marked = _notebook(tmp_path, "marked.ipynb", first_cell=MARKER)
    for _ in range(2):
        result = _check(helper_env, marked, "--timings")
        assert _warm(result), result.stderr
        assert result.returncode == 0 and "ERROR" not in result.stdout, result.stdout
        _status(helper_env)
    crash = _notebook(tmp_path, "crash.ipynb", first_cell="import os; os._exit(3)")
    result = _check(helper_env, crash, "--timings")
    assert _warm(result) and result.returncode == 1, result.stdout + result.stderr
    assert "did not run" in result.stdout, result.stdout
    assert _status(helper_env)["pid"] == pid  # the same helper, a fresh kernel
    result = _check(helper_env, marked, "--timings")
    assert _warm(result) and result.returncode == 0, result.stdout


def test_the_helper_leaves_after_its_idle_time(helper_env):
    helper_env[warm.IDLE_ENV] = "5"
    proc = _start_helper(helper_env)
    deadline = time.monotonic() + 60
    while warm.ask(REPO, None, "status", helper_env[warm.DIR_ENV]) is None:
        assert time.monotonic() < deadline and proc.poll() is None, "the helper never listened"
        time.sleep(0.2)
    proc.wait(timeout=120)  # by itself: nobody asked it to stop
    assert not [f for f in os.listdir(helper_env[warm.DIR_ENV]) if f.endswith(".sock")]
    assert warm.ask(REPO, None, "status", helper_env[warm.DIR_ENV]) is None


def test_a_socket_anyone_may_use_is_not_used(helper_env, capsys):
    _start_helper(helper_env)
    _status(helper_env)
    folder = helper_env[warm.DIR_ENV]
    (sock,) = [os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".sock")]
    os.chmod(sock, 0o666)
    assert warm.connect(REPO, None, folder) is None
    assert "not this user's own" in capsys.readouterr().err
    os.chmod(sock, 0o600)
    os.chmod(folder, 0o755)
    assert warm.runtime_dir(create=False) is None  # a folder others may enter: no helper
    os.chmod(folder, 0o700)
    assert warm.ask(REPO, None, "status", folder)["ready"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_another_user_is_refused(helper_env):
    _start_helper(helper_env)
    _status(helper_env)
    folder = helper_env[warm.DIR_ENV]
    (sock,) = [os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".sock")]
    os.chmod(folder, 0o711)  # let nobody reach the socket at all, to see the helper refuse
    os.chmod(sock, 0o666)
    probe = ("import json, socket, struct, sys\n"
             "c = socket.socket(socket.AF_UNIX); c.connect(sys.argv[1])\n"
             "d = json.dumps({'op': 'stop'}).encode()\n"
             "try:\n    c.sendall(struct.pack('!I', len(d)) + d)\n"
             "except BrokenPipeError:\n    pass  # refused before it was read\n"
             "f = c.makefile('rb'); n = struct.unpack('!I', f.read(4))[0]\n"
             "print(f.read(n).decode())\n")
    result = subprocess.run(["/usr/bin/python3", "-c", probe, sock], user=65534,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().startswith("{") and "refused" in json.loads(result.stdout), \
        result.stdout + result.stderr
    os.chmod(folder, 0o700)
    os.chmod(sock, 0o600)
    assert warm.ask(REPO, None, "status", folder)["ready"]  # not stopped by the stranger
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
