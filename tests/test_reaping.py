"""Grading reaps every process it starts: no zombies pile up, nothing outlives its notebook.

A zombie holds a process slot (RLIMIT_NPROC counts it for an instructor who is not root), so a
worker that kept one per graded notebook would end up unable to fork at all.
"""
import asyncio
import os
import uuid

import nbformat
import pytest

from course_lib.grading import pipeline
from course_lib.grading.cluster import Scheduler
from course_lib.grading.runner import Task, execute_task
from course_lib.grading.sandbox import Limits, SandboxKernelManager, bwrap_available
from harness import CORRECT, make_tiny_course, submission, submit
from proctree import Sampler, counts, descendants

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed: "
                                 "apt-get install bubblewrap (done by .ci/run)")]

MARK = f"{uuid.uuid4().int % 10**6}"   # `sleep 1000.<MARK>` tells this run's strays apart
LINGER = f"import subprocess\nsubprocess.Popen(['sleep', '1000.{MARK}'])\n"
ENDINGS = {  # how a notebook's kernel can end, as a student's cell
    "finished": "x = 1",
    "died": "import os\nos._exit(1)",
    "killed": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
    "timed out": "import time\nwhile True:\n    time.sleep(0.05)",
    "left a child": LINGER,
}


def strays() -> list[int]:
    """Processes anywhere on the machine that this run's notebooks started and left running."""
    found = []
    for pid in (int(d) for d in os.listdir("/proc") if d.isdigit()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f"1000.{MARK}".encode() in f.read():
                    found.append(pid)
        except OSError:
            pass
    return found


def leftovers() -> dict:
    """Zombies, sandboxes and kernels still below this process."""
    tally = counts(descendants())
    return {k: v for k, v in tally.items() if k != "descendants" and v}


def notebook(*sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    return nbformat.writes(nb)


@pytest.mark.parametrize("ending", ENDINGS)
def test_a_notebook_leaves_nothing_behind(ending):
    task = Task("s", "a", "nb", notebook("print('start')", ENDINGS[ending], "print('end')"),
                limits=Limits(cell_timeout=3))
    result = execute_task(task)
    assert "start" in result.nb_json
    assert leftovers() == {}
    assert strays() == []


def test_jupyter_kill_then_cleanup_leaves_nothing_behind(tmp_path):
    """The kernel manager's own kill (shutdown_kernel(now=True)) reaps too."""
    km = SandboxKernelManager(str(tmp_path), Limits())

    async def start_and_kill():
        await km.start_kernel()
        kc = km.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=120)
        kc.execute(LINGER)
        await kc.get_shell_msg(timeout=60)
        assert leftovers().get("sandbox") == 1 and strays()
        await km.shutdown_kernel(now=True)

    try:
        asyncio.run(start_and_kill())
    finally:
        km.cleanup_all()
    assert leftovers() == {}
    assert strays() == []


def grade_sampled(root, size, workers=2, **kwargs):
    """Grade a class of `size` (a crash, two lingering children and a timeout among them)
    while sampling the process tree; the sampler's peaks."""
    course = make_tiny_course(root)
    students = {f"s{i:02d}": submission(CORRECT) for i in range(size - 4)}
    students["crash"] = submission(CORRECT + "import os\nos._exit(1)\n")
    students["linger1"] = students["linger2"] = submission(CORRECT, before=[LINGER])
    students["loop"] = submission(CORRECT, before=["import time\nwhile True:\n    time.sleep(0.05)"])
    for student, nb in students.items():
        submit(course, student, "tiny", nb, name="tiny.ipynb")
    with Sampler() as sampler:
        report = pipeline.grade(course, "tiny", workers=workers, sandbox=True, progress=False,
                                limits=Limits(cell_timeout=5), **kwargs)
    assert report.count("graded") == len(students), report.summary()
    assert sampler.samples > 20
    assert sampler.peak["kernel"] >= 1                # the sampler did see the sandboxes
    return sampler.peak


def test_grading_a_class_keeps_zombies_few(tmp_path):
    """30 notebooks on 2 workers: zombies stay a handful, one sandbox per worker at a time."""
    peak = grade_sampled(str(tmp_path), 30)
    assert peak["zombie"] <= 4, peak                 # unfixed: one per graded notebook
    assert peak["sandbox"] <= 2 and peak["kernel"] <= 2   # one per worker at a time
    assert leftovers() == {}
    assert strays() == []


def test_dask_workers_keep_zombies_few(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        # an in-process test cluster on loopback: plain tcp, said explicitly
        scheduler = Scheduler(cluster.scheduler_address, insecure=True)
        peak = grade_sampled(str(tmp_path), 16, scheduler=scheduler)
        assert peak["zombie"] <= 4, peak
        assert peak["sandbox"] <= 2 and peak["kernel"] <= 2
    assert leftovers() == {}
    assert strays() == []
