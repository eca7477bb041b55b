"""The lockbydir algorithm, written afresh from its description.

A lock is a directory. Acquire: mkdir; if it exists, look at its age
(now - mtime): older than TIMEOUT (default 10 s) means the holder is
gone, so reclaim it by rmdir then mkdir (not atomic: the original says so
too); else sleep POLL (default 30 ms) and try again, giving up after
PATIENCE (default 30 s). There is no heartbeat: a holder may hold for at
most TIMEOUT. Any mkdir error other than "exists" (EACCES, ENOSPC) reads as
"locked", as in the original. Release: rmdir.
"""

import errno
import os
import time


class Timeout(Exception):
    pass


class DLock:
    def __init__(self, path, timeout=10.0, patience=30.0, poll=0.03):
        self.path = path
        self.timeout = timeout
        self.patience = patience
        self.poll = poll

    def try_lock(self):
        try:
            os.mkdir(self.path)
            return True
        except OSError as e:
            if e.errno != errno.EEXIST:
                return False
        try:
            age = time.time() - os.stat(self.path).st_mtime
        except FileNotFoundError:
            return False  # released meanwhile: the next try may win
        if age > self.timeout:
            try:
                os.rmdir(self.path)
            except OSError:
                pass
            try:
                os.mkdir(self.path)
                return True
            except OSError:
                return False
        return False

    def lock(self):
        start = time.monotonic()
        while not self.try_lock():
            if time.monotonic() - start > self.patience:
                raise Timeout("lockbydir: %s still locked after %g s" % (self.path, self.patience))
            time.sleep(self.poll)

    def unlock(self):
        os.rmdir(self.path)
