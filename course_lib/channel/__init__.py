"""The narrow channel between the trusted grader and a student's kernel.

Under `course grade` and `course check` a test cell runs in the trusted process; the names it
uses from the notebook are `Remote` proxies (`proxy.py`). Every use of one (a call, an
attribute, an operator) becomes a request that the kernel's server (`kernel.py`) answers.
Both sides speak `wire.py`: plain data (numbers, strings, float/int/bool arrays as raw
buffers, lists/tuples/dicts of those) and handles to objects that stay in the kernel. Nothing
that comes back is unpickled, evaluated or sympified, and every size is capped.

    trusted grader                                  sandboxed kernel
    test cell text (gradebook) -- request: op + data args -->  student objects
    torch / sympy references   <-- reply: data or handle ----  (guard on, output muted)
"""
