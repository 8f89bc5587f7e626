"""nbgrader's exchange on this course: a hand-in belongs to the account that made it.

nbgrader 0.9.6's `collect` only warns when a folder in inbound/ is owned by someone else than
the student it names, and takes the newest timestamp a student wrote, so one student can hand
in as another and replace their work; its `submit` leaves hand-ins world-readable and
writable (0777). It has no option for either, so its exchange classes are extended here and
chosen with `c.ExchangeFactory.collect` / `.submit` (nbgrader_config.py; the students' own
configuration on a hub, course_lib/hub/classroom.py):

- `OwnedCollect` refuses, with a reason, a hand-in whose folder or any file in it is not owned
  by the Unix account it names, holds a link or a special file, says it was made in the
  future, or whose timestamp.txt disagrees with its name or with when the folder was made. A
  refused hand-in is never chosen over the student's real one.
- `PrivateSubmit` leaves a hand-in readable by its owner and the instructor's group only
  (inbound/ is setgid to it, as nbgrader's release makes it), not by other students.
"""
from __future__ import annotations

import datetime
import os
import pwd
import shutil
import stat

from nbgrader.exchange.default.collect import ExchangeCollect
from nbgrader.exchange.default.submit import ExchangeSubmit
from nbgrader.utils import parse_utc
from traitlets import Integer

FOLDER_MODE, FILE_MODE = 0o770, 0o640  # owner and the instructor's group; nobody else


class OwnedCollect(ExchangeCollect):
    """nbgrader's collect, refusing hand-ins that are not their named student's own."""

    future_tolerance = Integer(300, help="Seconds a hand-in's timestamp may lie ahead of this "
                                         "machine's clock (clock skew)").tag(config=True)
    backdate_tolerance = Integer(600, help="Seconds a hand-in's timestamp may lie before the "
                                           "time its folder was made").tag(config=True)

    def _path_to_record(self, path):
        record = super()._path_to_record(path)
        record["refused"] = refusal(path, record["username"], record["timestamp"],
                                    self.future_tolerance, self.backdate_tolerance)
        if record["refused"]:
            self.log.error("Refused hand-in %s: %s. It is not collected and replaces nothing.",
                           record["filename"], record["refused"])
        return record

    def _sort_by_timestamp(self, records):
        """Newest first, every refused hand-in after every acceptable one."""
        return sorted(records, key=lambda r: (not r.get("refused"), r["timestamp"]),
                      reverse=True)

    def copy_files(self):
        for record in self.src_records:
            if record.get("refused"):
                self.log.error("Nothing collected for %s from %s (refused above).",
                               record["username"], record["filename"])
        self.src_records = [r for r in self.src_records if not r.get("refused")]
        super().copy_files()

    def do_copy(self, src, dest, log=None):
        """nbgrader's copy, never following a link a student swapped in after the checks."""
        super().do_copy(src, dest, log)
        links = [os.path.join(d, n) for d, dirs, files in os.walk(dest) for n in dirs + files
                 if os.path.islink(os.path.join(d, n))]
        if links:
            shutil.rmtree(dest)
            self.fail(f"Refused hand-in {src}: it holds links ({links[0]}), not files")


def refusal(path: str, student: str, claimed: datetime.datetime, future_tolerance: int = 300,
            backdate_tolerance: int = 600) -> str | None:
    """Why the hand-in folder `path`, named for `student` at time `claimed`, is not theirs
    (None: it is)."""
    try:
        uid = pwd.getpwnam(student).pw_uid
    except KeyError:
        return f"no account is named {student!r}"
    top = os.lstat(path)
    if not stat.S_ISDIR(top.st_mode):
        return "it is not a folder"
    if top.st_uid != uid:
        return f"it names {student} but belongs to {_owner(top.st_uid)}"
    foreign = _foreign_entry(path, uid)
    if foreign:
        return foreign
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    if claimed > now + datetime.timedelta(seconds=future_tolerance):
        return f"its timestamp {claimed} UTC lies in the future (now {now:%Y-%m-%d %H:%M:%S} UTC)"
    made = datetime.datetime.fromtimestamp(top.st_ctime, datetime.timezone.utc).replace(
        tzinfo=None)
    if claimed < made - datetime.timedelta(seconds=backdate_tolerance):
        return f"its timestamp {claimed} UTC is earlier than the folder ({made:%Y-%m-%d %H:%M:%S} UTC)"
    return _timestamp_file_disagrees(path, claimed)


def _foreign_entry(path: str, uid: int) -> str | None:
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            entry = os.path.join(dirpath, name)
            info = os.lstat(entry)
            rel = os.path.relpath(entry, path)
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                return f"{rel} is a link or a special file, not a file"
            if info.st_uid != uid:
                return f"{rel} belongs to {_owner(info.st_uid)}"
    return None


def _timestamp_file_disagrees(path: str, claimed) -> str | None:
    try:
        with open(os.path.join(path, "timestamp.txt")) as f:
            written = parse_utc(f.read().strip())
    except OSError:
        return None  # nbgrader then judges lateness by the folder's name
    except Exception:  # noqa: BLE001 (whatever a student wrote there)
        return "its timestamp.txt is not a time"
    if abs((written - claimed).total_seconds()) > 1:
        return f"its timestamp.txt says {written} but its name says {claimed}"
    return None


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


class PrivateSubmit(ExchangeSubmit):
    """nbgrader's submit, leaving the hand-in to its owner and the instructor's group."""

    def copy_files(self):
        super().copy_files()
        dest = os.path.join(self.inbound_path, self.assignment_filename)
        private = os.path.join(self.inbound_path, "." + self.assignment_filename)
        os.mkdir(private)  # inbound/ is setgid: what is made in it takes the instructor's group
        if os.stat(private).st_gid != os.stat(self.inbound_path).st_gid:
            os.rmdir(private)
            self.log.warning("%s is not in inbound/'s group: left as nbgrader makes it", dest)
            return
        _copy_into(dest, private)
        shutil.rmtree(dest)
        os.rename(private, dest)


def _copy_into(src: str, dest: str) -> None:
    """Files and folders of `src` made anew in `dest` (so they take its group), owner and
    group only. nbgrader's copy keeps the source folder's mode, which drops the setgid bit."""
    for dirpath, dirnames, filenames in os.walk(src):
        target = os.path.normpath(os.path.join(dest, os.path.relpath(dirpath, src)))
        if target != dest:
            os.mkdir(target)
        for name in filenames:
            shutil.copyfile(os.path.join(dirpath, name), os.path.join(target, name))
            os.chmod(os.path.join(target, name), FILE_MODE)
    for dirpath, dirnames, filenames in os.walk(dest):
        os.chmod(dirpath, FOLDER_MODE)
