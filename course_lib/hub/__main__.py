"""`python -m course_lib.hub start [--port N]` (what `make hub` runs) and `... clean`."""
from __future__ import annotations

import argparse
import signal
import sys

from course_lib.hub import classroom, server


def start(port: int) -> int:
    room = classroom.Classroom()
    env_bin = classroom.prepare(room)
    class_file = server.describe(room, env_bin, port, hub_port=port + 81,
                                 proxy_api_port=port + 1)
    proc = server.start(room, class_file)
    # The hub runs in its own session: stop it on SIGTERM too, not only on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.wait_ready(port, proc)
        print(banner(room, port), flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop(proc)


def banner(room: classroom.Classroom, port: int) -> str:
    accounts = "\n".join(f"  {'instructor' if u == room.instructor else 'student   '}  {u:16} "
                         f"password {classroom.password(u)}" for u in room.users)
    return (f"\nA local class is running at http://127.0.0.1:{port}/  (Ctrl-C stops it)\n"
            f"{accounts}\n"
            f"  exchange    {room.exchange}\n"
            f"  course      {room.course_dir} (the instructor's copy)\n"
            "`make hub-clean` removes the accounts, their homes and the exchange.\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.hub",
                                     description="a local class on JupyterHub")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("start", help="create the accounts and run the hub")
    p.add_argument("--port", type=int, default=8000)
    sub.add_parser("clean", help="remove the accounts, their homes, the exchange and hub state")
    args = parser.parse_args(argv)
    if args.action == "start":
        return start(args.port)
    classroom.clean(classroom.Classroom())
    print("removed the class accounts, their homes, the exchange and the hub's state")
    return 0


if __name__ == "__main__":
    sys.exit(main())
