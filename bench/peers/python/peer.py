#!/usr/bin/python3
"""A Python lock library behind the dlock bench's line protocol.

    peer.py IMPL CONFIG PATH [STALE]

IMPL is null (no lock: the protocol's own cost), portalocker, locket, filelock (filelock.FileLock), softfilelock
(filelock.SoftFileLock) or lockbydir (the algorithm of the lockbydir
library, written afresh in lockbydir.py). CONFIG is "default" (the
library's documented defaults) or "tuned" (see TUNED below). STALE, in
seconds, is lockbydir's TIMEOUT (default 10); the others have none.

One command a line on stdin, one answer a line on stdout:
    lock    -> ok | err MSG      wait for the lock
    try     -> ok | busy | err   one attempt, no wait
    unlock  -> ok | err MSG
    bench N -> ok NS             N uncontended lock+unlock, total ns
    pid     -> ok PID            the process that holds the lock
The peer prints "ready" when it can take commands.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Waiting forever: the bench decides when to stop.
FOREVER = 1e9

# TUNED: the poll interval of the polling libraries, set to 1 ms (the
# shortest that keeps a waiter from spinning) so that their hand-off is
# not their default interval's; locket's default already blocks in flock.
TUNED_POLL = 0.001


class Busy(Exception):
    pass


def make(impl, config, path, stale):
    tuned = config == "tuned"
    if impl == "portalocker":
        import portalocker

        # README: portalocker.Lock(filename, timeout=...); defaults:
        # check_interval 0.25 s, timeout 5 s (waiting longer is ours).
        kw = {"timeout": FOREVER}
        if tuned:
            kw["check_interval"] = TUNED_POLL
        lk = portalocker.Lock(path, **kw)

        def lock():
            lk.acquire()

        def try_():
            try:
                lk.acquire(timeout=0, fail_when_locked=True)
            except portalocker.exceptions.BaseLockException:
                raise Busy()

        return lock, try_, lk.release
    if impl == "locket":
        import locket

        # README: locket.lock_file(path) blocks (flock without LOCK_NB).
        lk = locket.lock_file(path)
        lk0 = locket.lock_file(path, timeout=0)

        def try_():
            try:
                lk0.acquire()
            except locket.LockError:
                raise Busy()

        return lk.acquire, try_, lk.release
    if impl in ("filelock", "softfilelock"):
        import filelock

        cls = filelock.FileLock if impl == "filelock" else filelock.SoftFileLock
        lk = cls(path)  # timeout -1: wait forever; poll_interval 0.05 s
        poll = TUNED_POLL if tuned else 0.05

        def lock():
            lk.acquire(poll_interval=poll)

        def try_():
            try:
                lk.acquire(timeout=0)
            except filelock.Timeout:
                raise Busy()

        return lock, try_, lk.release
    if impl == "lockbydir":
        import lockbydir

        kw = {"timeout": stale, "patience": FOREVER}
        if tuned:
            kw["poll"] = TUNED_POLL
        lk = lockbydir.DLock(path, **kw)

        def try_():
            if not lk.try_lock():
                raise Busy()

        return lk.lock, try_, lk.unlock
    if impl == "null":  # no lock at all: what the protocol itself costs
        nop = lambda: None
        return nop, nop, nop
    raise SystemExit("peer.py: no implementation %r" % impl)


def main():
    impl, config, path = sys.argv[1], sys.argv[2], sys.argv[3]
    stale = float(sys.argv[4]) if len(sys.argv) > 4 else 10.0
    lock, try_, unlock = make(impl, config, path, stale)
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        try:
            if cmd[0] == "lock":
                lock()
                ans = "ok"
            elif cmd[0] == "try":
                try:
                    try_()
                    ans = "ok"
                except Busy:
                    ans = "busy"
            elif cmd[0] == "unlock":
                unlock()
                ans = "ok"
            elif cmd[0] == "bench":
                n = int(cmd[1])
                t0 = time.perf_counter_ns()
                for _ in range(n):
                    lock()
                    unlock()
                ans = "ok %d" % (time.perf_counter_ns() - t0)
            elif cmd[0] == "pid":
                ans = "ok %d" % os.getpid()
            elif cmd[0] == "quit":
                return
            else:
                ans = "err unknown command " + cmd[0]
        except Exception as e:  # report, keep serving
            ans = "err %s: %s" % (type(e).__name__, str(e).replace("\n", " "))
        out.write(ans + "\n")
        out.flush()


if __name__ == "__main__":
    main()
