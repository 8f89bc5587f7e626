"""Attack submissions against `course grade`, all graded in one run beside an honest student.

Each attack asserts three things: the attack did not work (files intact, nothing leaked),
the attacker earned nothing undeserved, and the honest student kept full marks.
"""
import hashlib
import os
import socket
import threading

import nbformat
import pytest

from course_lib.grading import feedback, pipeline
from course_lib.grading.sandbox import Limits, bwrap_available
from harness import CORRECT, HIDDEN, SECRET, WRONG, make_tiny_course, submission

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed: "
                                 "apt-get install bubblewrap (done by .ci/run)")]

def sandbox_paths(course):
    return {"db": course.path("gradebook.db"), "source": course.path("source", "tiny", "tiny.ipynb"),
            "victim": course.path("submitted", "honest", "tiny", "tiny.ipynb")}


def attacks(course, port):
    p = sandbox_paths(course)
    steal = f"""
import os
print(os.listdir('/'), os.path.exists(os.path.dirname({p['db']!r})))
for path in [{p['db']!r}, {p['source']!r}, {p['victim']!r}]:
    try:
        print(open(path, errors='ignore').read()[:100000])
    except Exception as e:
        print('no access', type(e).__name__)
"""
    return {
        "read_gradebook_and_source": (WRONG, [steal]),
        "write_gradebook": (WRONG, [f"""
import sqlite3
try:
    db = sqlite3.connect({p['db']!r})
    db.execute("update grade set auto_score = 100")
    db.commit()
except Exception as e:
    print('blocked', e)
"""]),
        "write_other_student": (WRONG, [f"""
try:
    open({p['victim']!r}, 'w').write('{{}}')
except Exception as e:
    print('blocked', e)
"""]),
        "fork_bomb": (WRONG, ["""
import os
children = 0
try:
    for _ in range(10000):
        if os.fork() == 0:
            import time; time.sleep(30); os._exit(0)
        children += 1
except OSError as e:
    print('fork stopped after', children, e)
"""]),
        "memory_bomb": (WRONG, ["""
try:
    hog = bytearray(16 * 1024**3)
except MemoryError:
    print('memory limit held')
"""]),
        "network": (WRONG, [f"""
import socket
try:
    socket.create_connection(('127.0.0.1', {port}), timeout=3).sendall(b'exfiltrate')
    print('connected')
except OSError as e:
    print('no network', e)
"""]),
        "os_exit": (CORRECT + "import os\nos._exit(3)\n", []),
        "patch_allclose": (WRONG, ["""
import numpy, torch
numpy.allclose = lambda *a, **k: True
numpy.testing.assert_allclose = lambda *a, **k: None
torch.allclose = lambda *a, **k: True
"""]),
        "patch_course_checks": (WRONG, ["""
import course_lib.checks as checks, course_lib.checks.core as core
core.assert_close = checks.assert_close = lambda *a, **k: None
core.Suite.run = lambda self, thunk, *objs, **kw: 2 * __import__('numpy').asarray(thunk.__closure__[0].cell_contents if thunk.__closure__ else 0)
"""]),
        "redefine_test_imports": (WRONG, ["""
import sys, types, contextlib
fake = types.ModuleType('course_lib.checks')
class T:
    def run(self, thunk, *a, **k): return None
fake.suite = lambda name: contextlib.nullcontext(T())
fake.assert_close = lambda *a, **k: None
sys.modules['course_lib.checks'] = fake
"""]),
        "forge_records": (WRONG, ["""
import os, json
d = os.environ.get('COURSE_GRADING_DIR', '.') + '/records/test_square_grad_hidden'
os.makedirs(d, exist_ok=True)
for i in range(3):
    open(f'{d}/{i}.json', 'w').write(json.dumps({'str': 'pass'}))
os.symlink('/etc/passwd', d + '/9.json')
"""]),
        "hide_errors_from_kernel": (WRONG, ["""
from IPython import get_ipython
ip = get_ipython()
ip.showtraceback = lambda *a, **k: None
ip.set_custom_exc((BaseException,), lambda *a, **k: None)
"""]),
        "torch_autograd_shortcut": ("""
import torch
def square_grad(x):
    t = torch.tensor(x, requires_grad=True)
    (t ** 2).sum().backward()
    return t.grad.numpy()
""", []),
        "infinite_loop": (CORRECT, ["while True:\n    pass"]),
        "print_gigabytes": (WRONG, ["import sys\nwhile True:\n    sys.stdout.write('x' * 100000)"]),
        "delete_tests": (WRONG, ["DELETE_TESTS"]),
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = make_tiny_course(str(tmp_path_factory.mktemp("course")))

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    received = []

    def accept():
        for _ in range(600):
            try:
                received.append(listener.accept())
            except OSError:
                pass
    threading.Thread(target=accept, daemon=True).start()

    def put(student, nb_or_bytes, name="tiny.ipynb", extra=None):
        folder = course.path("submitted", student, "tiny")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, name), "wb") as f:
            f.write(nb_or_bytes if isinstance(nb_or_bytes, bytes) else
                    nbformat.writes(nb_or_bytes).encode())
        for fname, data in (extra or {}).items():
            with open(os.path.join(folder, fname), "wb") as f:
                f.write(data)

    put("honest", submission(CORRECT))
    names = attacks(course, listener.getsockname()[1])
    for name, (solution, before) in names.items():
        if before == ["DELETE_TESTS"]:
            nb = submission(solution)
            nb.cells = [c for c in nb.cells if "test_" not in
                        c.metadata.get("nbgrader", {}).get("grade_id", "")]
        else:
            nb = submission(solution, before)
        put(name, nb)
    put("corrupt_notebook", b"{ this is not json")
    put("wrong_name_extra_files", submission(CORRECT), name="my homework.ipynb",
        extra={"notes.txt": b"hello", "evil.py": b"import os"})

    protected = {k: v for k, v in sandbox_paths(course).items() if k != "db"}
    before = {k: _hash(v) for k, v in protected.items()}
    report = pipeline.grade(course, "tiny", workers=2, sandbox=True,
                            limits=Limits(cell_timeout=10), progress=False)
    after = {k: _hash(v) for k, v in protected.items()}
    pages = feedback.generate(course, "tiny")
    listener.close()
    return {"course": course, "report": report, "scores": pipeline.scores(course, "tiny"),
            "before": before, "after": after, "received": received, "pages": pages,
            "names": names}


def _hash(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _total(scores, student):
    cells = scores[(student, "tiny")]
    return sum(s for s, _ in cells.values()), sum(m for _, m in cells.values())


def _outcome(graded, student):
    return next(o for o in graded["report"].outcomes if o.student == student)


def test_honest_student_keeps_full_marks(graded):
    assert _total(graded["scores"], "honest") == (3.0, 3.0)
    assert _outcome(graded, "honest").status == "graded"


ATTACKS = ["read_gradebook_and_source", "write_gradebook", "write_other_student", "fork_bomb",
           "memory_bomb", "network", "os_exit", "patch_allclose", "patch_course_checks",
           "redefine_test_imports", "forge_records", "hide_errors_from_kernel",
           "torch_autograd_shortcut", "infinite_loop", "print_gigabytes", "delete_tests",
           "corrupt_notebook"]


@pytest.mark.parametrize("attacker", ATTACKS)
def test_attacker_earns_no_undeserved_points(graded, attacker):
    earned, possible = _total(graded["scores"], attacker)
    assert possible == 3.0
    if attacker == "os_exit":
        # a correct function, but the notebook killed its kernel before the tests ran
        assert earned < possible
    elif attacker == "infinite_loop":
        # the loop is interrupted at the time limit; the correct function earns its points
        assert earned == possible
    else:
        assert earned == 0.0, graded["scores"][(attacker, "tiny")]
    assert _outcome(graded, attacker).status == "graded"


def test_course_files_and_other_students_are_untouched(graded):
    assert graded["before"] == graded["after"]
    for cells in graded["scores"].values():
        assert all(score <= possible for score, possible in cells.values())
    assert _total(graded["scores"], "honest") == (3.0, 3.0)


def test_nothing_reached_the_network(graded):
    assert graded["received"] == []


def test_autograded_outputs_leak_no_course_secrets(graded):
    course = graded["course"]
    path = course.path("autograded", "read_gradebook_and_source", "tiny", "tiny.ipynb")
    assert SECRET not in _outputs(path)
    assert "no access" in _outputs(path)


def _outputs(path):
    nb = nbformat.read(path, as_version=4)
    return "\n".join(str(o) for c in nb.cells for o in c.get("outputs", []))


def test_runaway_notebooks_get_clear_reasons(graded):
    reasons = {name: " ".join(_outcome(graded, name).reasons)
               for name in ("os_exit", "infinite_loop", "print_gigabytes", "corrupt_notebook",
                            "wrong_name_extra_files")}
    assert "kernel died" in reasons["os_exit"]
    assert "longer than 10 s" in reasons["infinite_loop"]
    assert "more than" in reasons["print_gigabytes"]
    assert "not a readable notebook" in reasons["corrupt_notebook"]
    assert "recognised by its cells" in reasons["wrong_name_extra_files"]
    assert "notes.txt" in reasons["wrong_name_extra_files"]


def test_wrong_file_name_is_still_graded(graded):
    assert _total(graded["scores"], "wrong_name_extra_files") == (3.0, 3.0)


def test_shortcut_gets_a_message_that_says_why(graded):
    path = graded["course"].path("autograded", "torch_autograd_shortcut", "tiny", "tiny.ipynb")
    assert "compute the gradient yourself" in _outputs(path)


def test_feedback_never_shows_hidden_tests(graded):
    assert graded["pages"], "no feedback pages were written"
    hidden_lines = [line.strip() for line in HIDDEN.splitlines()[1:-1] if len(line.strip()) > 12]
    for page in graded["pages"]:
        html = open(page).read()
        assert SECRET not in html, page
        assert "BEGIN HIDDEN TESTS" not in html
        for line in hidden_lines:
            assert line not in html, (page, line)


def test_regrading_is_idempotent(graded):
    course = graded["course"]
    again = pipeline.grade(course, "tiny", workers=2, sandbox=True,
                           limits=Limits(cell_timeout=10), progress=False)
    assert pipeline.scores(course, "tiny") == graded["scores"]
    assert again.count("graded") == graded["report"].count("graded")
