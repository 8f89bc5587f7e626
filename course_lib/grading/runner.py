"""Execute one submission's notebook in a sandbox and bring back its outputs and records.

`execute_task` is the unit of work a worker runs: a pure function of a picklable `Task`
(the notebook, its files and its seeds travel with it, so a Dask worker on another machine
needs no shared filesystem). It never touches the gradebook.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from course_lib.checks.core import GRADING_DIR_ENV
from course_lib.grading import records
from course_lib.grading.sandbox import Limits, SandboxKernelManager

GRADING_DIR = ".grading"


@dataclass
class Task:
    student: str
    assignment: str
    notebook: str
    nb_json: str                       # the sanitized notebook (test cells restored)
    files: dict = field(default_factory=dict)   # relative path -> bytes, for the workdir
    seeds: dict = field(default_factory=dict)   # test id -> seed
    limits: Limits = field(default_factory=Limits)
    sandbox: bool = True

    @property
    def key(self):
        return (self.student, self.assignment, self.notebook)


@dataclass
class Result:
    key: tuple
    nb_json: str
    tree: dict
    reasons: list
    seconds: float


class CappedClient(NotebookClient):
    """Caps each cell's output while it is collected, and interrupts a cell that floods it."""

    def __init__(self, nb, output_bytes, **kwargs):
        super().__init__(nb, **kwargs)
        self.output_bytes = output_bytes
        self.used = {}
        self.flooded = set()
        self.timed_out = 0

    async def _async_handle_timeout(self, timeout, cell=None):
        self.timed_out += 1
        return await super()._async_handle_timeout(timeout, cell)

    def output(self, outs, msg, display_id, cell_index):
        size = len(json.dumps(msg.get("content", {})))
        used = self.used.get(cell_index, 0) + size
        self.used[cell_index] = used
        if used <= self.output_bytes:
            return super().output(outs, msg, display_id, cell_index)
        if cell_index not in self.flooded:
            self.flooded.add(cell_index)
            outs.append(nbformat.v4.new_output(
                "stream", name="stdout",
                text=f"\n[output stopped: more than {self.output_bytes} bytes; cell interrupted]\n"))
            asyncio.ensure_future(self.km.interrupt_kernel())
        return None


def _write_files(workdir: str, files: dict) -> None:
    for rel, data in files.items():
        path = os.path.normpath(os.path.join(workdir, rel))
        if not path.startswith(workdir + os.sep):
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)


def execute_task(task: Task) -> Result:
    start = time.monotonic()
    nb = nbformat.reads(task.nb_json, as_version=4)
    workdir = tempfile.mkdtemp(prefix="course-work-")
    reasons = []
    km = None
    try:
        _write_files(workdir, task.files)
        grading = os.path.join(workdir, GRADING_DIR)
        os.makedirs(os.path.join(grading, "records"))
        with open(os.path.join(grading, "seeds.json"), "w") as f:
            json.dump(task.seeds, f)
        env = {GRADING_DIR_ENV: grading, "NBGRADER_EXECUTION": "autograde"}
        km = SandboxKernelManager(workdir, task.limits, extra_env=env, sandbox=task.sandbox)
        client = CappedClient(nb, task.limits.output_bytes, km=km,
                              timeout=task.limits.cell_timeout, interrupt_on_timeout=True,
                              allow_errors=True, record_timing=False,
                              shutdown_kernel="immediate", startup_timeout=120,
                              resources={"metadata": {"path": workdir}})
        try:
            client.execute()
        except DeadKernelError:
            reasons.append("the kernel died (os._exit, a crash, or the memory limit); "
                           "cells after that point earned nothing")
        except Exception as e:  # a broken notebook must not stop the others
            reasons.append(f"execution stopped: {type(e).__name__}: {str(e)[:300]}")
        if client.timed_out:
            reasons.append(f"{client.timed_out} cell(s) ran longer than "
                           f"{task.limits.cell_timeout} s and were interrupted")
        if client.flooded:
            reasons.append(f"{len(client.flooded)} cell(s) printed more than "
                           f"{task.limits.output_bytes} bytes and were interrupted")
        tree = records.read_tree(os.path.join(grading, "records"))
    finally:
        if km is not None:
            km.cleanup_all()
        shutil.rmtree(workdir, ignore_errors=True)
    return Result(task.key, nbformat.writes(nb), tree, reasons, time.monotonic() - start)
