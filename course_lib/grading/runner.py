"""Execute one submission's notebook: student cells in a sandboxed kernel, test cells here.

`execute_task` is the unit of work a worker runs: a pure function of a picklable `Task` (the
notebook, its files, its test cells' text and its seeds travel with it, so a Dask worker on
another machine needs no shared filesystem). It never touches the gradebook.

The kernel runs the student's cells in order. At each test cell's place the worker runs the
cell's text itself (`verdicts.run_test_cell`), reaching the notebook's objects through the
channel (`course_lib.channel`): the kernel never receives a test's text, a reference value or
a seed, only the arguments of the calls a test makes.
"""
from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import tempfile
import time
from dataclasses import dataclass, field

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from course_lib.channel.proxy import Session
from course_lib.grading.sandbox import Limits, SandboxKernelManager
from course_lib.grading.verdicts import Verdict, run_test_cell

SERVE = "import course_lib.channel.kernel as _course_channel\n_course_channel.serve({!r}, {})"
STOP_GRACE = 10.0   # seconds for the kernel's server to stop after a test cell


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
    tests: dict = field(default_factory=dict)   # grade_id -> test cell text (from the gradebook)
    only: tuple = ()   # if given, run just these tests and what they need (`course check --only`)

    @property
    def key(self):
        return (self.student, self.assignment, self.notebook)


@dataclass
class Result:
    key: tuple
    nb_json: str
    verdicts: dict                     # grade_id -> Verdict
    reasons: list
    seconds: float
    calls: int = 0                     # requests the tests sent through the channel


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


def _grade_id(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def execute_task(task: Task) -> Result:
    return asyncio.run(_execute(task))


async def _execute(task: Task) -> Result:
    start = time.monotonic()
    nb = nbformat.reads(task.nb_json, as_version=4)
    workdir = tempfile.mkdtemp(prefix="course-work-")
    reasons, verdicts, calls = [], {}, 0
    km = None
    try:
        _write_files(workdir, task.files)
        km = SandboxKernelManager(workdir, task.limits, extra_env={}, sandbox=task.sandbox)
        client = CappedClient(nb, task.limits.output_bytes, km=km,
                              timeout=task.limits.cell_timeout, interrupt_on_timeout=True,
                              allow_errors=True, record_timing=False,
                              shutdown_kernel="immediate", startup_timeout=120,
                              resources={"metadata": {"path": workdir}})
        stopped = None   # why the kernel stopped answering, once it has
        last = max([i for i, c in enumerate(nb.cells) if _grade_id(c) in task.only],
                   default=len(nb.cells) if not task.only else -1)
        try:
            async with client.async_setup_kernel():
                await client.async_wait_for_reply(await _call(client.kc.kernel_info))
                for index, cell in enumerate(nb.cells):
                    gid = _grade_id(cell)
                    if index > last or not _needed(task, cell, gid):
                        continue
                    if gid in task.tests:
                        cell.outputs = []
                        if stopped:
                            verdicts[gid] = Verdict(False, f"this test did not run: {stopped}")
                            continue
                        verdicts[gid], n, stopped = await _test_cell(client, km, task, gid, index)
                        calls += n
                    elif cell.cell_type == "code" and not stopped:
                        await client.async_execute_cell(cell, index,
                                                        execution_count=client.code_cells_executed + 1)
        except DeadKernelError:
            stopped = "the kernel died (os._exit, a crash, or the memory limit)"
        except Exception as e:  # a broken notebook must not stop the others
            stopped = f"execution stopped: {type(e).__name__}: {str(e)[:300]}"
        if stopped:
            reasons.append(f"{stopped}; cells after that point earned nothing")
            for gid in task.only or task.tests:
                verdicts.setdefault(gid, Verdict(False, f"this test did not run: {stopped}"))
        if client.timed_out:
            reasons.append(f"{client.timed_out} cell(s) ran longer than "
                           f"{task.limits.cell_timeout} s and were interrupted")
        if client.flooded:
            reasons.append(f"{len(client.flooded)} cell(s) printed more than "
                           f"{task.limits.output_bytes} bytes and were interrupted")
    finally:
        if km is not None:
            km.cleanup_all()
        shutil.rmtree(workdir, ignore_errors=True)
    return Result(task.key, nbformat.writes(nb), verdicts, reasons, time.monotonic() - start,
                  calls)


def _needed(task: Task, cell, gid) -> bool:
    """With `only`: other exercises' tests and cells tagged "demo" (plots, training) are skipped."""
    if not task.only:
        return True
    if gid in task.tests:
        return gid in task.only
    return "demo" not in cell.metadata.get("tags", [])


async def _call(fn, *args, **kwargs):
    return fn(*args, **kwargs)


async def _test_cell(client, km, task: Task, gid: str, index: int):
    """Run one test cell here against the kernel; (verdict, requests sent, why it stopped)."""
    loop = asyncio.get_running_loop()
    started = {}

    def start(number):
        code = SERVE.format(km.channel_dir, number)
        started["id"] = asyncio.run_coroutine_threadsafe(
            _call(client.kc.execute, code, silent=True, store_history=False, allow_stdin=False),
            loop).result(30)

    def interrupt():
        asyncio.run_coroutine_threadsafe(km.interrupt_kernel(), loop)

    session = Session(km.channel_dir, index, start, interrupt,
                      call_timeout=task.limits.cell_timeout, cell_timeout=task.limits.cell_timeout)
    verdict = await asyncio.to_thread(run_test_cell, task.tests[gid], session, task.seeds)
    session.close()
    if "id" in started and not await _wait_reply(client, started["id"], STOP_GRACE):
        return verdict, session.calls, (f"the kernel did not stop after test {gid} "
                                        "(it ignored an interrupt)")
    return verdict, session.calls, None


async def _wait_reply(client, msg_id: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            msg = await client.kc.shell_channel.get_msg(timeout=0.5)
        except queue.Empty:
            if not await client.km.is_alive():
                return False
            continue
        if msg.get("parent_header", {}).get("msg_id") == msg_id:
            return True
    return False
