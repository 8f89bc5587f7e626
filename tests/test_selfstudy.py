"""The in-notebook check, in this process: hidden tests from source/, or the visible ones only."""
import pytest

from course_lib import selfstudy
from harness import cell_by_id, read, release_path, source_path

A = "03_mlp_backward"


def _kernel_with(monkeypatch, *sources):
    """A stand-in for the learner's kernel: their cells run in a namespace of `__main__`."""
    namespace = {"__name__": "__main__"}
    for source in sources:
        exec(compile(source, "<cell>", "exec"), namespace)
    monkeypatch.setattr(selfstudy, "_user_namespace", lambda: namespace)
    return namespace


def _affine(wrong=False):
    source = cell_by_id(read(source_path(A)), "affine").source
    return source.replace("x.T @ g", "g.T @ x") if wrong else source


def test_hidden_tests_run_on_the_kernels_definitions(monkeypatch, capsys):
    namespace = _kernel_with(monkeypatch, "import numpy as np", _affine(wrong=True))
    selfstudy.check("affine")
    out = capsys.readouterr().out
    assert "FAIL test_affine  0/1" in out and "FAIL test_affine_hidden  0/2" in out, out
    assert "gradient with respect to w" in out, out
    assert "visible and hidden tests, from source/" in out and "not grading" in out, out
    exec(compile(_affine(), "<cell>", "exec"), namespace)  # the learner re-runs one cell
    selfstudy.check("affine")
    out = capsys.readouterr().out
    assert out.rstrip().endswith("score 3/3; everything passes"), out
    assert "x" not in namespace and "t" not in namespace  # the tests' own names stay theirs


def test_without_source_only_the_visible_tests_run(monkeypatch, capsys):
    _kernel_with(monkeypatch, "import numpy as np", _affine())
    monkeypatch.setattr(selfstudy, "_course_root", lambda mine: None)
    selfstudy.check("affine", notebook=release_path(A))
    out = capsys.readouterr().out
    assert "PASS test_affine  1/1" in out and "test_affine_hidden" not in out, out
    assert "the hidden ones are your instructor's" in out, out


def test_an_unknown_name_lists_the_names_it_accepts(monkeypatch):
    _kernel_with(monkeypatch)
    with pytest.raises(selfstudy.CheckError, match="accepts: .*affine.*training"):
        selfstudy.check("afine")
