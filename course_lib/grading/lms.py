"""Submissions downloaded from an LMS, for `nbgrader zip_collect`: file names to student ids.

Canvas names a download `<lastfirst>_[LATE_]<user id>_<submission id>_<file>` and Moodle
`<Full Name>_<participant id>_assignsubmission_file_<file>`. nbgrader matches its regular
expression (`FileNameCollectorPlugin.named_regexp` in nbgrader_config.py) against the whole
extracted path; this plugin matches the file name alone and makes the student id from the name
and the LMS's number ("Jane Doe", 12345 -> "jane_doe_12345"), so every file lands in
`submitted/<student_id>/<assignment>/` under an id of its own:

- letters of every script are kept (`王芳_10004`), and the number makes namesakes distinct
  (`Jane Doe` and `Jane-Doe` are two participants); an id is never empty;
- a second file claiming an id and notebook already taken in this run (the same student in two
  downloads, or a pattern without a number) is kept under `<id>-2` and reported, where nbgrader
  would stop the whole class ("Duplicate submission file");
- a file name with a control character (a newline) is refused with the reason;
- ids that mix scripts, or that differ from another only by look-alike letters (`hоnest_a` with
  a Cyrillic о beside `honest_a`), are reported here and by `course grade`.

`BoundedExtractor` unpacks the downloads in nbgrader's place: zip archives only, and a zip a
student handed in inside them, within one budget of bytes and files per download (a student's
zip bomb would otherwise fill the instructor's disk: nbgrader extracts nested archives
without a limit), never a link, an absolute path or a `..`.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import unicodedata
import zipfile

from nbgrader.plugins.zipcollect import ExtractorPlugin, FileNameCollectorPlugin
from traitlets import Integer

# Cyrillic and Greek letters drawn like Latin ones (after casefold): a small confusables table.
LOOK_ALIKES = str.maketrans({
    "а": "a", "в": "b", "с": "c", "ԁ": "d", "е": "e", "һ": "h", "і": "i", "ј": "j",
    "к": "k", "ӏ": "l", "м": "m", "н": "h", "о": "o", "р": "p", "ԛ": "q", "ѕ": "s",
    "т": "t", "у": "y", "х": "x", "ԝ": "w", "ү": "y", "ё": "e", "ї": "i",
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "γ": "y",
    "0": "o", "1": "l", "ı": "i", "ℓ": "l",
})


def control_characters(text: str) -> list[str]:
    """The control or format characters in `text`, named ("U+000A '\\n'")."""
    return [f"U+{ord(ch):04X} {unicodedata.name(ch, repr(ch))}" for ch in text
            if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")]


def student_id(name: str, number: str | None = None) -> str:
    """A folder-safe student id from an LMS name and number: letters and digits of any script
    in lower case, runs of anything else -> "_", then the number; never empty."""
    text = unicodedata.normalize("NFKC", name).casefold()
    slug = re.sub(r"[\W_]+", "_", text).strip("_")
    found = "_".join(part for part in (slug, number) if part)
    return found or "unnamed_" + hashlib.sha256(name.encode()).hexdigest()[:8]


def scripts(identifier: str) -> set[str]:
    """The scripts of an id's letters ("LATIN", "CYRILLIC", "CJK"...), by Unicode name."""
    return {unicodedata.name(ch, "UNKNOWN").split()[0] for ch in identifier if ch.isalpha()}


def skeleton(identifier: str) -> str:
    """What an id looks like: normalized, case-folded, look-alike letters mapped to Latin."""
    return unicodedata.normalize("NFKC", identifier).casefold().translate(LOOK_ALIKES)


def id_warnings(ids) -> list[str]:
    """Ids a person could not tell apart or should look at twice: mixed scripts, look-alikes."""
    ids = sorted(set(ids))
    warnings = [f"student id {i!r} mixes scripts ({', '.join(sorted(scripts(i)))}): check "
                "it is who it seems" for i in ids if len(scripts(i)) > 1]
    by_look: dict[str, list[str]] = {}
    for i in ids:
        by_look.setdefault(skeleton(i), []).append(i)
    for same in by_look.values():
        if len(same) > 1:
            shown = " and ".join(f"{i!r} ({_codes(i)})" for i in same)
            warnings.append(f"student ids {shown} differ only by look-alike characters: "
                            "two students, or one under two names?")
    return warnings


def _codes(identifier: str) -> str:
    """An id's non-ASCII characters as code points, so a reader sees what differs."""
    odd = [f"U+{ord(ch):04X}" for ch in identifier if ord(ch) > 127]
    return "non-ASCII: " + " ".join(odd) if odd else "all ASCII"


class LmsFileNames(FileNameCollectorPlugin):
    """FileNameCollectorPlugin on the file name (not the path), with an id of its own for
    every file and a line in the log for each decision."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._claims: dict[tuple[str, str], str] = {}  # (student id, file id) -> file name
        self._warned: set[str] = set()

    def collect(self, submitted_file: str) -> dict | None:
        name = os.path.basename(submitted_file)
        bad = control_characters(name)
        if bad:
            self.log.error("Refused %r: its name holds %s, which no student id may contain; "
                           "rename the file (or fix the name in the LMS) and collect again",
                           name, ", ".join(bad))
            return None
        info = super().collect(name)
        if info is None:
            return None
        wanted = student_id(info["student_id"], info.pop("participant", None))
        info["student_id"] = self._unclaimed(wanted, info["file_id"], name)
        return info

    def _unclaimed(self, wanted: str, file_id: str, name: str) -> str:
        """`wanted`, or `wanted-2`, `-3`... when another file of this run took it for the
        same notebook; logs the id given and any look-alike of it."""
        claims = self._claims
        chosen, n = wanted, 1
        while (chosen, file_id) in claims:
            n += 1
            chosen = f"{wanted}-{n}"
        claims[(chosen, file_id)] = name
        if chosen != wanted:
            self.log.warning("Two files claim student id %r for %s: %r and %r; the second is "
                             "kept as %r (check in the LMS whose it is)", wanted, file_id,
                             claims[(wanted, file_id)], name, chosen)
        else:
            self.log.info("%r -> student id %r", name, chosen)
        known = {i for i, _ in claims} | set(self._submitted())
        for warning in id_warnings(known):
            if repr(chosen) in warning and warning not in self._warned:
                self._warned.add(warning)
                self.log.warning(warning)
        return chosen

    def _submitted(self) -> list[str]:
        """Student ids already in submitted/ (an earlier collection)."""
        coursedir = getattr(self.parent, "coursedir", None)
        if coursedir is None:
            return []
        folder = os.path.join(coursedir.root, coursedir.submitted_directory)
        return [d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d))] \
            if os.path.isdir(folder) else []


class ArchiveRefused(Exception):
    """A download past the extractor's budget, or not a zip archive at all."""


class BoundedExtractor(ExtractorPlugin):
    """nbgrader's extractor with limits: zip only, nested zips one level deep, a budget of
    bytes and files per download, regular files under their own folder only."""

    max_bytes = Integer(2 << 30, help="Bytes one download may extract to, nested zips included."
                        ).tag(config=True)
    max_files = Integer(20000, help="Files one download may extract.").tag(config=True)
    max_depth = 2  # the LMS's zip, and a zip a student handed in inside it

    def extract(self, archive_path: str, extracted_path: str) -> None:
        for root, _, names in os.walk(archive_path):
            dest = os.path.normpath(os.path.join(extracted_path, os.path.relpath(root, archive_path)))
            os.makedirs(dest, exist_ok=True)
            for name in sorted(names):
                path = os.path.join(root, name)
                if not name.lower().endswith(".zip"):
                    shutil.copy(path, os.path.join(dest, name))
                    continue
                self.log.info("Extracting from: %s", path)
                budget = [self.max_bytes, self.max_files]
                try:
                    self._unzip(path, os.path.join(dest, name[:-4]), budget, 1)
                except (ArchiveRefused, zipfile.BadZipFile) as e:
                    self.log.error("Stopped extracting %r: %s; what was extracted before is "
                                   "kept in %s", name, e, dest)

    def _unzip(self, path: str, dest: str, budget: list, depth: int) -> None:
        """Every safe member of one zip into `dest`, paid from `budget` [bytes, files]."""
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                target = self._member_target(info, dest)
                if target is None:
                    continue
                budget[0] -= info.file_size
                budget[1] -= 1
                if budget[0] < 0 or budget[1] < 0:
                    raise ArchiveRefused(
                        f"{info.filename!r} would pass the budget of {self.max_bytes} bytes and "
                        f"{self.max_files} files per download (c.BoundedExtractor.max_bytes, "
                        ".max_files)")
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with z.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)  # at most file_size bytes: zipfile stops there
                if target.lower().endswith(".zip") and depth < self.max_depth:
                    self._unzip(target, target[:-4], budget, depth + 1)
                    os.remove(target)

    def _member_target(self, info, dest: str) -> str | None:
        """Where a member goes, or None (folder, link, special file, or a path out of `dest`)."""
        mode = info.external_attr >> 16
        parts = info.filename.replace("\\", "/").split("/")
        if info.is_dir() or (stat.S_IFMT(mode) and not stat.S_ISREG(mode)):
            if not info.is_dir():
                self.log.warning("Skipped %r: not a regular file", info.filename)
            return None
        if info.filename.startswith("/") or ".." in parts or not parts[-1]:
            self.log.warning("Skipped %r: its path leaves the archive's folder", info.filename)
            return None
        return os.path.join(dest, *[p for p in parts if p not in ("", ".")])
