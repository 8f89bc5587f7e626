"""Submissions downloaded from an LMS, for `nbgrader zip_collect`: file names to student ids.

Canvas names a download `<lastfirst>_[LATE_]<user id>_<submission id>_<file>` and Moodle
`<Full Name>_<participant id>_assignsubmission_file_<file>`. nbgrader matches its regular
expression (`FileNameCollectorPlugin.named_regexp` in nbgrader_config.py) against the whole
extracted path; this plugin matches the file name alone and turns the name it captures into a
folder-safe student id ("Full Name" -> "full_name"), so both LMSs' downloads land in
`submitted/<student_id>/<assignment>/`.
"""
from __future__ import annotations

import os
import re

from nbgrader.plugins.zipcollect import FileNameCollectorPlugin

def student_id(name: str) -> str:
    """A student id from an LMS name: lower case, runs of anything else than a-z0-9 -> "_"."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


class LmsFileNames(FileNameCollectorPlugin):
    """FileNameCollectorPlugin on the file name (not the path), with folder-safe student ids."""

    def collect(self, submitted_file: str) -> dict | None:
        info = super().collect(os.path.basename(submitted_file))
        if info is None:
            return None
        info["student_id"] = student_id(info["student_id"])
        return info
