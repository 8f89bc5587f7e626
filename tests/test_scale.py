"""Grading at scale: parallel, distributed, PostgreSQL and killed-then-resumed runs give exactly
the serial gradebook: every grade, comment, score and late penalty row (tests/gradebooks.py)."""
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import types

import pytest

from course_lib.grading import pipeline
from course_lib.grading.sandbox import Limits
from gradebooks import dump
from harness import CORRECT, REPO, WRONG, make_tiny_course, submission

BIN = os.path.dirname(sys.executable)

pytestmark = pytest.mark.slow

CLASS = {  # eight students, mixed: correct, wrong, unsolved-like, crashing, printing
    "s1": CORRECT, "s2": WRONG, "s3": CORRECT, "s4": "def square_grad(x):\n    return -2 * x\n",
    "s5": CORRECT + "import os\nos._exit(1)\n", "s6": "def square_grad(x):\n    raise NotImplementedError()\n",
    "s7": CORRECT + "print('hello ' * 1000)\n", "s8": "def square_grad(x):\n    return 2 * x.sum()\n",
}


def class_course(root, db_url=None):
    """The tiny course, released, with CLASS submitted."""
    import nbformat
    course = make_tiny_course(root) if db_url is None else _course_with_db(root, db_url)
    for student, solution in CLASS.items():
        folder = course.path("submitted", student, "tiny")
        os.makedirs(folder, exist_ok=True)
        nbformat.write(submission(solution), os.path.join(folder, "tiny.ipynb"))
    return course


def graded_class(root, db_url=None, **kwargs):
    """The class graded; the gradebook as rows."""
    course = class_course(root, db_url)
    report = pipeline.grade(course, "tiny", progress=False, limits=Limits(cell_timeout=20), **kwargs)
    assert report.count("failed") == 0, report.summary()
    return dump(course)


def _course_with_db(root, db_url):
    os.environ["COURSE_DB_URL"] = db_url
    try:
        return make_tiny_course(root)
    finally:
        del os.environ["COURSE_DB_URL"]


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    return graded_class(str(tmp_path_factory.mktemp("serial")), workers=1)


def test_serial_scores_are_what_each_submission_deserves(serial):
    totals = {key[0]: row[1] for key, row in serial.items() if key[1:] == ("tiny", "tiny")}
    assert totals == {"s1": 3, "s2": 0, "s3": 3, "s4": 0, "s5": 0, "s6": 0, "s7": 3, "s8": 0}


def test_two_workers_match_serial(serial, tmp_path):
    assert graded_class(str(tmp_path), workers=2) == serial


# ---- a Dask cluster with mutual TLS, started as the README starts it -----------------------------

def _start(argv, cwd, log):
    with open(log, "wb") as out:  # its own process group: the finalizer stops it and its children
        return subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _stop(proc):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
            return


def _scheduler_address(path, proc, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError, ValueError):
            with open(path) as f:
                return json.load(f)["address"]
        time.sleep(0.2)
    raise RuntimeError(f"dask scheduler did not start (exit code {proc.poll()})")


def readme_recipe() -> dict:
    """The README's cluster commands as argv lists, keyed by their first two words."""
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    section = text[text.index("## Grading on a cluster"):text.index("## Developing")]
    block = section.split("```bash")[1].split("```")[0].replace("\\\n", " ")
    commands = (shlex.split(line, comments=True) for line in block.splitlines())
    return {" ".join(argv[:2]): argv for argv in commands if argv}


def _local(argv, replace=(), **options):
    """`argv` with our binaries, substrings replaced and `--option value` pairs set or added."""
    argv = [os.path.join(BIN, argv[0]), *argv[1:]]
    for old, new in replace:
        argv = [arg.replace(old, new) for arg in argv]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    return argv


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    """The README's recipe on 127.0.0.1: its certificates, scheduler, two workers; grade's argv."""
    from course_lib.grading import cluster
    recipe = readme_recipe()
    top = tmp_path_factory.mktemp("cluster")
    subprocess.run(_local(recipe["course cluster-certs"], [("SCHEDULER", "localhost")]),
                   cwd=top, check=True, capture_output=True, timeout=60)
    certs = top / "certs"  # the commands name the files as copied onto each machine
    procs = []
    try:
        procs.append(_start(_local(recipe["dask scheduler"], port="0", host="127.0.0.1",
                                   scheduler_file=str(top / "scheduler.json")),
                            certs, top / "scheduler.log"))
        address = _scheduler_address(top / "scheduler.json", procs[0])
        assert address.startswith("tls://127.0.0.1:")
        at_scheduler = [("tls://SCHEDULER:8786", address)]
        procs.append(_start(_local(recipe["dask worker"], at_scheduler, nworkers="2",
                                   host="127.0.0.1"), certs, top / "worker.log"))
        scheduler = cluster.Scheduler(address, str(certs / "ca.pem"), str(certs / "client.pem"),
                                      str(certs / "client-key.pem"))
        with cluster.connect(scheduler) as client:
            client.wait_for_workers(2, timeout=120)
        yield types.SimpleNamespace(scheduler=scheduler, folder=top,
                                    grade=_local(recipe["course grade"], at_scheduler))
    finally:
        for proc in reversed(procs):
            _stop(proc)


def test_grading_through_the_tls_cluster_matches_serial(serial, tls_cluster, tmp_path):
    course = class_course(str(tmp_path))
    course_bin, *rest = tls_cluster.grade
    argv = [course_bin, "--root", course.root, *rest, "tiny", "--timeout", "20", "--quiet"]
    result = subprocess.run(argv, cwd=tls_cluster.folder, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed 0" in result.stdout
    assert dump(course) == serial


def test_a_client_certificate_from_another_ca_is_refused(tls_cluster, tmp_path):
    from distributed import Client
    from distributed.security import Security
    from course_lib.grading import cluster
    other = cluster.make_certs(str(tmp_path / "other"))
    # the intruder trusts the real CA (a public file) but holds no certificate signed by it
    intruder = Security(tls_ca_file=tls_cluster.scheduler.ca, tls_client_cert=other["client"],
                        tls_client_key=other["client_key"], require_encryption=True)
    with pytest.raises(OSError, match=r"SSL\w*Error"):  # an alert (unknown CA) or a hang-up
        Client(tls_cluster.scheduler.address, security=intruder, timeout="5s")
    with cluster.connect(tls_cluster.scheduler) as client:  # up: refused for the certificate
        assert client.scheduler_info()["workers"]


def test_a_client_without_a_certificate_is_refused(tls_cluster):
    context = ssl.create_default_context(cafile=tls_cluster.scheduler.ca)
    context.check_hostname = False
    host, port = tls_cluster.scheduler.address.removeprefix("tls://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError)):  # accepted: recv times out
            with context.wrap_socket(raw) as tls:  # TLS 1.3: the refusal comes with the read
                tls.sendall(b"\0" * 8)
                tls.recv(1)


GRADE_IN_A_CHILD = """
import sys
sys.path.insert(0, {tests!r})
from course_lib.grading import pipeline
from course_lib.grading.course import Course
from course_lib.grading.sandbox import Limits
pipeline.grade(Course({root!r}), "tiny", workers=2, progress=False, batch=1,
               limits=Limits(cell_timeout=20))
"""


def _graded_rows(course) -> int:
    import sqlite3
    with contextlib.closing(sqlite3.connect(course.path("gradebook.db"), timeout=30)) as db:
        return db.execute("SELECT COUNT(*) FROM grade WHERE auto_score IS NOT NULL").fetchone()[0]


def test_a_killed_run_resumes_to_the_same_gradebook(serial, tmp_path):
    course = class_course(str(tmp_path))
    code = GRADE_IN_A_CHILD.format(tests=os.path.dirname(__file__), root=course.root)
    child = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:  # killed, with all it started, once some submissions are in the gradebook
        deadline = time.monotonic() + 600
        while _graded_rows(course) < 2 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    written = _graded_rows(course)
    assert 2 <= written < 2 * len(CLASS), "the run was not stopped half way"
    report = pipeline.grade(course, "tiny", workers=2, progress=False,
                            limits=Limits(cell_timeout=20))
    assert dump(course) == serial
    assert report.count("graded") == len(CLASS) and report.cached >= written // 2


# ---- PostgreSQL ---------------------------------------------------------------------------------

def _pg_bin():
    for version in ("17", "16", "15", "14", "13"):
        path = f"/usr/lib/postgresql/{version}/bin"
        if os.path.exists(os.path.join(path, "initdb")):
            return path
    return None


@pytest.fixture(scope="module")
def postgres():
    bindir = _pg_bin()
    if bindir is None or os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL server not installed (apt-get install postgresql; .ci/run does)")
    pytest.importorskip("psycopg2")
    data = tempfile.mkdtemp(prefix="course-pg-")
    shutil.chown(data, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(as_pg + [f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run(as_pg + [f"{bindir}/pg_ctl", "-D", data, "-w", "-l", f"{data}/log", "-o",
                            f"-c listen_addresses=127.0.0.1 -p {port} -k {data}", "start"],
                   check=True, capture_output=True)
    try:
        subprocess.run(as_pg + [f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port),
                                "gradebook"], check=True, capture_output=True)
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/gradebook"
    finally:
        subprocess.run(as_pg + [f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def test_postgresql_gradebook_matches_sqlite(serial, postgres, tmp_path):
    assert graded_class(str(tmp_path), db_url=postgres, workers=2) == serial
    assert not os.path.exists(tmp_path / "gradebook.db")  # SQLite stayed untouched
