"""Images pasted into a student's markdown cell: the feedback page shows them as images (data
URLs we rebuilt from checked bytes) and nothing they could smuggle; `course feedback` no longer
fails on them."""
import base64
import os
import struct
import subprocess
import sys
import zlib

import nbformat
import pytest

from course_lib.grading.preprocessors import sanitized_html
from course_lib.grading.sandbox import bwrap_available
from harness import CORRECT, make_tiny_course, submission, submit


def png_bytes() -> bytes:
    """A real 1x1 PNG."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


PNG = base64.b64encode(png_bytes()).decode()
SVG = base64.b64encode(b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>').decode()


def test_a_pasted_png_stays_an_image():
    html = sanitized_html("My sketch:\n\n![image.png](attachment:image.png)",
                          {"image.png": {"image/png": PNG}})
    assert f'src="data:image/png;base64,{PNG}"' in html and 'alt="image.png"' in html


def test_what_is_not_a_checked_raster_image_is_not_shown():
    bundles = {"vector.svg": {"image/svg+xml": SVG},
               "fake.png": {"image/png": base64.b64encode(b"<script>alert(1)</script>").decode()},
               "quote.png": {"image/png": PNG + '" onerror="alert(1)'},
               "html.png": {"text/html": "<script>alert(1)</script>"}}
    md = "\n\n".join(f"![{n}](attachment:{n})" for n in [*bundles, "absent.png"])
    html = sanitized_html(md + '\n\n<img src="x" onerror="alert(1)">', bundles)
    assert "data:" not in html and "alert" not in html and "onerror" not in html, html
    for name in [*bundles, "absent.png"]:
        assert f"attachment {name} not shown" in html


def test_a_planted_placeholder_address_shows_no_foreign_image():
    html = sanitized_html('<img src="course-attachment-0000-0">\n\n![a](attachment:a.png)',
                          {"a.png": {"image/png": PNG}})
    assert html.count("data:image/png") == 1  # only the real attachment's own <img>


@pytest.mark.slow
@pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed")
def test_course_feedback_shows_a_pasted_image(tmp_path):
    course = make_tiny_course(str(tmp_path / "course"))
    nb = submission(CORRECT)
    cell = nbformat.v4.new_markdown_cell("My sketch of x ** 2:\n\n![image.png](attachment:image.png)")
    cell.attachments = {"image.png": {"image/png": PNG}}
    nb.cells.insert(3, cell)
    submit(course, "pic", "tiny", nb, name="tiny.ipynb")
    course_cmd = os.path.join(os.path.dirname(sys.executable), "course")
    for verb in (["grade", "tiny", "--quiet"], ["feedback", "tiny"]):
        result = subprocess.run([course_cmd, *verb], cwd=course.root, capture_output=True,
                                text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    with open(course.path("feedback", "pic", "tiny", "tiny.html")) as f:
        page = f.read()
    assert f'src="data:image/png;base64,{PNG}"' in page and "My sketch of x" in page
