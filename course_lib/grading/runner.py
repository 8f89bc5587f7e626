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
import time
from dataclasses import dataclass, field

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from course_lib.channel.proxy import Session
from course_lib.grading import cells
from course_lib.grading.sandbox import Limits, SandboxKernelManager, Scratch
from course_lib.grading.verdicts import Verdict, run_test_cell

SERVE = "import course_lib.channel.kernel as _course_channel\n_course_channel.serve({!r}, {})"
STOP_GRACE = 10.0   # seconds for the kernel's server to stop after a test cell
KILL_GRACE = 10.0   # seconds a cell may run on after its interrupt before the kernel is killed


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
    timings: dict = field(default_factory=dict)  # seconds: kernel start, cells, tests (not cached)


class CappedClient(NotebookClient):
    """Caps output while it is collected: per cell (the cell is interrupted) and per notebook
    (later output is dropped, with a note)."""

    def __init__(self, nb, limits: Limits, **kwargs):
        super().__init__(nb, **kwargs)
        self.output_bytes, self.total_bytes = limits.output_bytes, limits.output_total_bytes
        self.used = {}
        self.total = 0
        self.flooded = set()
        self.truncated = False
        self.timed_out = 0

    async def _async_handle_timeout(self, timeout, cell=None):
        self.timed_out += 1
        return await super()._async_handle_timeout(timeout, cell)

    def output(self, outs, msg, display_id, cell_index):
        size = len(json.dumps(msg.get("content", {})))
        used = self.used[cell_index] = self.used.get(cell_index, 0) + size
        self.total += size
        if self.total > self.total_bytes:
            if not self.truncated:
                self.truncated = True
                outs.append(_note(f"[output truncated: this notebook printed more than "
                                  f"{self.total_bytes} bytes in all]"))
            return None
        if used <= self.output_bytes:
            return super().output(outs, msg, display_id, cell_index)
        if cell_index not in self.flooded:
            self.flooded.add(cell_index)
            outs.append(_note(f"[output stopped: more than {self.output_bytes} bytes; "
                              "cell interrupted]"))
            asyncio.ensure_future(self.km.interrupt_kernel())
        return None


def _note(text):
    return nbformat.v4.new_output("stream", name="stdout", text=f"\n{text}\n")


def read_files(folder: str) -> dict:
    """An assignment's non-notebook files (data a notebook reads), to travel with each task."""
    files = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
        for f in filenames:
            if not f.endswith(".ipynb") and not f.startswith("."):
                path = os.path.join(dirpath, f)
                with open(path, "rb") as fh:
                    files[os.path.relpath(path, folder)] = fh.read()
    return files


def _write_files(workdir: str, files: dict) -> None:
    for rel, data in files.items():
        path = os.path.normpath(os.path.join(workdir, rel))
        if not path.startswith(workdir + os.sep):
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)


def execute_task(task: Task) -> Result:
    return asyncio.run(_execute(task))


def execute_when_given(limits: Limits, sandbox: bool, task, on_start=None, warm_up=(),
                       ready=None) -> Result:
    """Start the kernel now, run the Task that the future `task` gives once it is ready
    (`course check --only`: the kernel starts while the grader still reads the notebooks);
    `on_start()` is called once the kernel's process is launched, `ready()` once it has
    imported the modules `warm_up` and waits for its task."""
    return asyncio.run(_execute(None, (limits, sandbox, task, on_start, warm_up, ready)))


HISTORY_IN_MEMORY = "--HistoryManager.hist_file=:memory:"  # what nbclient asks of ipykernel


async def _execute(task: Task | None, later=None) -> Result:
    limits, sandbox = (task.limits, task.sandbox) if later is None else later[:2]
    launched = start = time.monotonic()
    scratch = Scratch(limits.scratch_bytes)
    workdir = scratch.folder("work")
    reasons, verdicts, calls = [], {}, 0
    timings = {"kernel": 0.0, "cells": 0.0, "tests": 0.0}
    km = None
    try:
        km = SandboxKernelManager(workdir, limits, extra_env={}, sandbox=sandbox,
                                  kdir=scratch.folder("kernel"))
        if later is not None:
            task = await _start_while_waiting(km, workdir, *later[2:])
            start = time.monotonic()  # the budget counts from the task, not from the launch
        deadline = start + task.limits.notebook_timeout
        nb = nbformat.reads(task.nb_json, as_version=4)
        _write_files(workdir, task.files)
        client = CappedClient(nb, task.limits, km=km,
                              timeout=task.limits.cell_timeout, interrupt_on_timeout=True,
                              allow_errors=True, record_timing=False,
                              shutdown_kernel="immediate", startup_timeout=120,
                              resources={"metadata": {"path": workdir}})
        stopped = None   # why the kernel stopped answering, once it has
        last = max([i for i, c in enumerate(nb.cells) if cells.grade_id(c) in task.only],
                   default=len(nb.cells) if not task.only else -1)
        try:
            async with client.async_setup_kernel():
                await client.async_wait_for_reply(await _call(client.kc.kernel_info))
                timings["kernel"] = time.monotonic() - launched
                timings["kernel after task"] = time.monotonic() - start
                for index, cell in enumerate(nb.cells):
                    gid = cells.grade_id(cell)
                    if index > last or not _needed(task, cell, gid):
                        continue
                    if gid in task.tests:
                        cell.outputs = []
                    left = deadline - time.monotonic()
                    if stopped or left <= 0:
                        stopped = stopped or _over_budget(task)
                        if gid in task.tests:
                            verdicts[gid] = Verdict(False, f"this test did not run: {stopped}")
                        continue
                    began = time.monotonic()
                    if gid in task.tests:
                        verdicts[gid], n, stopped = await _test_cell(client, km, task, gid,
                                                                     index, left)
                        calls += n
                        timings["tests"] += time.monotonic() - began
                    elif cell.cell_type == "code":
                        stopped = await _student_cell(client, km, task, cell, index, left,
                                                      deadline)
                        timings["cells"] += time.monotonic() - began
        except DeadKernelError:
            stopped = stopped or km.death_reason() or "the kernel died (os._exit or a crash)"
        except Exception as e:  # a broken notebook must not stop the others
            stopped = stopped or f"execution stopped: {type(e).__name__}: {str(e)[:300]}"
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
        if client.truncated:
            reasons.append(f"the notebook printed more than {task.limits.output_total_bytes} "
                           "bytes: later output was left out")
    finally:
        if km is not None:
            km.cleanup_all()
        scratch.remove()
    return Result(task.key, nbformat.writes(nb), verdicts, reasons, time.monotonic() - start,
                  calls, timings)


async def _start_while_waiting(km, workdir: str, future, on_start=None, warm_up=(),
                              ready=None) -> Task:
    """Launch the kernel (it boots on its own from there), import `warm_up` in it, then wait
    for the task; `ready()` is called once the kernel waits for it."""
    await km.start_kernel(extra_arguments=[HISTORY_IN_MEMORY], cwd=workdir)
    if on_start is not None:
        on_start()
    if warm_up:
        await _import_in_kernel(km, warm_up)
    if ready is not None:
        ready()
    return await asyncio.wrap_future(future)


WARM_UP = ("import importlib\nfor name in NAMES:\n    try:\n        importlib.import_module(name)"
           "\n    except Exception:\n        pass")


async def _import_in_kernel(km, modules, timeout: float = 120.0) -> None:
    """Import `modules` in the fresh kernel before any student cell: the course's own imports
    (numpy, matplotlib, course_lib.plots...), run silently in a namespace of their own, so the
    notebook's namespace, history and execution count stay untouched."""
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=timeout)
        code = f"exec({WARM_UP!r}, {{'NAMES': {tuple(modules)!r}}})"
        msg_id = kc.execute(code, silent=True, store_history=False, allow_stdin=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                reply = await kc.get_shell_msg(timeout=1)
            except queue.Empty:
                if not await km.is_alive():
                    return
                continue
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                return
    finally:
        kc.stop_channels()
        if kc in km._clients:
            km._clients.remove(kc)


def _over_budget(task):
    return f"the notebook ran longer than its budget of {task.limits.notebook_timeout} s"


async def _student_cell(client, km, task, cell, index, left, deadline):
    """Run one of the student's cells; why the kernel had to be killed, or None.

    nbclient interrupts a cell at its time limit; one that ignores the interrupt (or runs
    past the notebook's budget) is stopped here by killing the kernel: waiting on is no limit.
    """
    run = asyncio.ensure_future(
        client.async_execute_cell(cell, index, execution_count=client.code_cells_executed + 1))
    done, _ = await asyncio.wait({run}, timeout=min(task.limits.cell_timeout + KILL_GRACE, left))
    if run in done:
        run.result()  # a kernel that died by itself raises DeadKernelError here
        return None
    if time.monotonic() >= deadline - 1:
        reason = _over_budget(task)
    else:
        reason = (f"a cell kept running after it was interrupted at its "
                  f"{task.limits.cell_timeout} s limit (it ignored the interrupt): the kernel "
                  "was killed")
    await _kill(km, run)
    return reason


async def _kill(km, *pending):
    """Kill the kernel, then let what waited on it notice (nbclient raises DeadKernelError)."""
    await km.shutdown_kernel(now=True)
    for task in pending:
        try:
            await asyncio.wait_for(task, 30)
        except BaseException:  # noqa: BLE001 (DeadKernelError, a timeout, a cancellation)
            pass


def _needed(task: Task, cell, gid) -> bool:
    """With `only`: other exercises' tests and cells tagged "demo" (plots, training) are skipped."""
    if not task.only:
        return True
    if gid in task.tests:
        return gid in task.only
    return "demo" not in cell.metadata.get("tags", [])


async def _call(fn, *args, **kwargs):
    return fn(*args, **kwargs)


async def _test_cell(client, km, task: Task, gid: str, index: int, left: float):
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
                      call_timeout=task.limits.cell_timeout,
                      cell_timeout=min(task.limits.cell_timeout, left))
    verdict = await asyncio.to_thread(run_test_cell, task.tests[gid], session, task.seeds)
    session.close()
    if "id" in started and not await _wait_reply(client, started["id"], STOP_GRACE):
        await _kill(km)
        return verdict, session.calls, (f"the kernel did not stop after test {gid} "
                                        "(it ignored an interrupt): it was killed")
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
