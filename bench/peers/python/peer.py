#!/usr/bin/python3
"""A Python lock library behind the dlock bench's line protocol.

    peer.py IMPL CONFIG PATH [STALE]

IMPL is null (no lock: the protocol's own cost), portalocker, locket,
filelock (filelock.FileLock), softfilelock (filelock.SoftFileLock),
softfilelease (filelock.SoftFileLease), strictsoftfilelock
(filelock.StrictSoftFileLock) or lockbydir (the algorithm of the lockbydir
library, written afresh in lockbydir.py). softfilelease and
strictsoftfilelock need a filelock newer than Debian's 3.9 (3.2x, 2026) on
PYTHONPATH. CONFIG is "default" (the library's documented defaults) or
"tuned" (see TUNED below). STALE, in seconds, is lockbydir's TIMEOUT
(default 10) and SoftFileLease's lease_duration (default 30); the others
have none.

One command a line on stdin, one answer a line on stdout:
    lock    -> ok MONO | err MSG      wait for the lock
    try     -> ok MONO | busy | err   one attempt, no wait
    unlock  -> ok | err MSG
    bench N -> ok NS             N uncontended lock+unlock, total ns
    pid     -> ok PID            the process that holds the lock
    lost    -> ok no | ok unknown | ok told MONO WHY
               was the holder told that it lost the lock? (unknown: the
               library has no way to tell; SoftFileLease's on_compromise does)
    log     -> ok [MONO MSG | ...]   what the library reported since the
               last lock or try
MONO is time.monotonic_ns() (CLOCK_MONOTONIC, the clock of every process
of a round), read right after the library returned or reported.
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


class News:
    """What the library reported: events stamped on CLOCK_MONOTONIC, and
    whether it told its holder that the lock was lost (can: it can)."""

    def __init__(self):
        self.can = False
        self.events = []
        self.told = None

    def reset(self):
        self.events, self.told = [], None

    def add(self, msg, lost=False):
        ev = (time.monotonic_ns(), msg.replace("|", "/").replace("\n", " "))
        self.events.append(ev)
        if lost and self.told is None:
            self.told = ev


NEWS = News()


def make(impl, config, path, stale, stale_given):
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
    if impl in ("filelock", "softfilelock", "softfilelease", "strictsoftfilelock"):
        import filelock

        if impl == "softfilelease":
            # Its README: SoftFileLease(path, lease_duration=30.0); a
            # heartbeat every lease_duration/3; on_compromise is called
            # from the heartbeat thread when the lease is lost.
            NEWS.can = True

            def compromised(c):
                NEWS.add("on_compromise: %s" % c.reason, lost=True)

            lk = filelock.SoftFileLease(path, lease_duration=stale if stale_given else 30.0, on_compromise=compromised)
        elif impl == "strictsoftfilelock":
            lk = filelock.StrictSoftFileLock(path)  # never broken by age
        else:
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
    stale_given = len(sys.argv) > 4
    stale = float(sys.argv[4]) if stale_given else 10.0
    lock, try_, unlock = make(impl, config, path, stale, stale_given)
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        try:
            if cmd[0] == "lock":
                NEWS.reset()
                lock()
                ans = "ok %d" % time.monotonic_ns()
            elif cmd[0] == "try":
                NEWS.reset()
                try:
                    try_()
                    ans = "ok %d" % time.monotonic_ns()
                except Busy:
                    ans = "busy"
            elif cmd[0] == "lost":
                if not NEWS.can:
                    ans = "ok unknown"
                elif NEWS.told is None:
                    ans = "ok no"
                else:
                    ans = "ok told %d %s" % NEWS.told
            elif cmd[0] == "log":
                ans = ("ok " + " | ".join("%d %s" % e for e in NEWS.events)).strip()
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
