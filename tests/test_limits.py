"""One unit test per limit of the hostile-class defences (fast; the cgroup/tmpfs ones as root)."""
import concurrent.futures as cf
from concurrent.futures.process import BrokenProcessPool
import errno
import os
import subprocess
import sys

import nbformat
import pytest

from course_lib.grading import cells, pipeline
from course_lib.grading.runner import Result, Task
from course_lib.grading.sandbox import Cgroups, Limits, Scratch

ROOT = os.geteuid() == 0


@pytest.mark.skipif(not ROOT, reason="cgroups are made as root")
def test_memory_limit_binds_all_processes_of_a_sandbox_together():
    limit = 400 << 20
    groups = Cgroups(Limits(memory_bytes=limit))
    if groups.memory is None:
        pytest.skip("no writable memory cgroup here")
    code = ("import os, time\n"
            "pids = []\n"
            "for _ in range(3):\n"
            "    pid = os.fork()\n"
            "    if pid == 0:\n"
            "        try:\n"
            "            hog = bytearray(250 << 20)\n"
            "            hog[::4096] = b'x' * len(hog[::4096])\n"
            "            time.sleep(2)\n"
            "        finally:\n"
            "            os._exit(0)\n"
            "    pids.append(pid)\n"
            "for pid in pids:\n"
            "    os.waitpid(pid, 0)\n")
    try:
        subprocess.run(groups.wrap([sys.executable, "-c", code]), timeout=60)
        peak = next(os.path.join(groups.memory, f) for f in
                    ("memory.max_usage_in_bytes", "memory.peak")
                    if os.path.exists(os.path.join(groups.memory, f)))
        with open(peak) as f:
            assert int(f.read()) <= limit  # 750 MB asked for by three children together
        assert groups.out_of_memory()
    finally:
        groups.destroy()


@pytest.mark.skipif(not ROOT, reason="tmpfs is mounted as root")
def test_scratch_space_is_size_limited():
    scratch = Scratch(8 << 20)
    try:
        if not scratch.mounted:
            pytest.skip("mount is not allowed here")
        with pytest.raises(OSError) as e:
            with open(os.path.join(scratch.folder("work"), "big"), "wb") as f:
                for _ in range(20):
                    f.write(b"x" * (1 << 20))
        assert e.value.errno == errno.ENOSPC
    finally:
        scratch.remove()
    assert not os.path.exists(scratch.path)


class _Broken(cf.Executor):
    """A pool whose worker dies on `doomed` every time, and on everything else queued with it."""

    def __init__(self, log, doomed):
        self.log, self.doomed = log, doomed

    def submit(self, fn, task):
        self.log.append(task.student)
        future = cf.Future()
        if task.student == self.doomed or len(self.log) <= 3:
            future.set_exception(BrokenProcessPool("a worker died"))
        else:
            future.set_result(Result(task.key, "{}", {}, [], 1.0))
        return future


def test_a_dead_worker_costs_only_its_own_task(tmp_path, monkeypatch):
    log = []
    monkeypatch.setattr(pipeline, "make_executor",
                        lambda workers, scheduler: (_Broken(log, "doomed"), lambda: None))
    tasks = [Task(s, "a", "nb", "{}") for s in ("innocent1", "doomed", "innocent2")]
    cache = pipeline.ResultCache(str(tmp_path))
    results = {r.key[0]: r for r in pipeline.run_tasks(tasks, cache, 2, None, progress=False)}
    assert results["innocent1"].seconds == results["innocent2"].seconds == 1.0
    assert results["doomed"].seconds < 0 and "worker failed" in results["doomed"].reasons[0]
    assert log.count("doomed") == 2  # tried twice, then marked failed
    assert cache.get(tasks[1]) is None and cache.get(tasks[0]) is not None


def _cell(source, meta=None, kind="code"):
    cell = nbformat.v4.new_code_cell(source) if kind == "code" else \
        nbformat.v4.new_markdown_cell(source)
    if meta is not None:
        cell.metadata["nbgrader"] = meta
    return cell


@pytest.mark.parametrize("meta,words", [
    ("x", "malformed nbgrader metadata"),
    ({"grade_id": "../../etc"}, "malformed grade_id"),
    ({"grade_id": "f", "points": "abc"}, "malformed points"),
    ({"grade_id": "f", "points": 1e9}, "malformed points"),
    ({"grade_id": "f", "grade": "yes"}, "non-boolean 'grade'"),
    ({"grade_id": "intro", "grade": True}, "claimed to be the course's markdown cell"),
])
def test_a_malformed_cell_identity_is_dropped_with_a_reason(meta, words):
    nb = nbformat.v4.new_notebook(cells=[_cell("x = 1", meta), _cell("y = 2")])
    notes = cells.repair(nb, {"intro": "markdown"})
    assert len(notes) == 1 and words in notes[0] and "cell 1" in notes[0]
    assert "nbgrader" not in nb.cells[0].metadata and cells.grade_ids(nb) == set()


def test_text_that_is_not_unicode_is_replaced():
    nb = nbformat.v4.new_notebook(cells=[_cell("x = '\ud800'")])
    assert "not valid Unicode" in cells.repair(nb)[0]
    nb.cells[0].source.encode("utf-8")


def test_submitted_files_are_read_without_following_links(tmp_path):
    good = tmp_path / "good.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), str(good))
    (tmp_path / "link.ipynb").symlink_to(good)
    (tmp_path / "latin1.ipynb").write_bytes(b'{"cells": [], "x": "\xe9"}')
    os.mkfifo(tmp_path / "fifo.ipynb")
    assert pipeline._read_notebook(str(good))[0] is not None
    for name, words in (("link", "not a regular file"), ("fifo", "not a regular file"),
                        ("latin1", "not a readable notebook")):
        nb, why = pipeline._read_notebook(str(tmp_path / f"{name}.ipynb"))
        assert nb is None and words in why, why
