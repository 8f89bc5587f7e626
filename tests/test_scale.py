"""Grading at scale: parallel and distributed runs give exactly the serial gradebook; PostgreSQL."""
import os
import shutil
import socket
import subprocess
import tempfile

import pytest

from course_lib.grading import pipeline
from course_lib.grading.sandbox import Limits
from harness import CORRECT, WRONG, make_tiny_course, submission

pytestmark = pytest.mark.slow

CLASS = {  # eight students, mixed: correct, wrong, unsolved-like, crashing, printing
    "s1": CORRECT, "s2": WRONG, "s3": CORRECT, "s4": "def square_grad(x):\n    return -2 * x\n",
    "s5": CORRECT + "import os\nos._exit(1)\n", "s6": "def square_grad(x):\n    raise NotImplementedError()\n",
    "s7": CORRECT + "print('hello ' * 1000)\n", "s8": "def square_grad(x):\n    return 2 * x.sum()\n",
}


def graded_class(root, db_url=None, **kwargs):
    course = make_tiny_course(root) if db_url is None else _course_with_db(root, db_url)
    for student, solution in CLASS.items():
        folder = course.path("submitted", student, "tiny")
        os.makedirs(folder, exist_ok=True)
        import nbformat
        nbformat.write(submission(solution), os.path.join(folder, "tiny.ipynb"))
    report = pipeline.grade(course, "tiny", progress=False, limits=Limits(cell_timeout=20), **kwargs)
    assert report.count("failed") == 0, report.summary()
    return pipeline.scores(course, "tiny")


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
    totals = {s: sum(v for v, _ in cells.values()) for (s, _), cells in serial.items()}
    assert totals == {"s1": 3, "s2": 0, "s3": 3, "s4": 0, "s5": 0, "s6": 0, "s7": 3, "s8": 0}


def test_two_workers_match_serial(serial, tmp_path):
    assert graded_class(str(tmp_path), workers=2) == serial


def test_dask_cluster_matches_serial(serial, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        assert graded_class(str(tmp_path), scheduler=cluster.scheduler_address) == serial


def test_interrupted_run_resumes_to_the_same_gradebook(serial, tmp_path):
    root = str(tmp_path)
    first = graded_class(root, workers=2)
    # a kill after execution but before the gradebook was written: drop the gradebook rows
    os.remove(os.path.join(root, "gradebook.db"))
    from course_lib.grading.course import Course
    course = Course(root)
    assert course.api().generate_assignment("tiny")["success"]
    report = pipeline.grade(course, "tiny", workers=2, progress=False,
                            limits=Limits(cell_timeout=20))
    assert pipeline.scores(course, "tiny") == first == serial
    assert report.count("graded") == len(CLASS)


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
