"""The lock of an output file: one writer at a time (:class:`WriterLock`),
and the removal of a lock whose holder is gone (:func:`clear_stale_lock`)."""
import contextlib
import errno
import os
import stat

__all__ = ["WriterLock", "clear_stale_lock"]


class WriterLock:
    """An exclusive lock on the output ``target`` for one writer: the file
    ``target + '.lock'``, locked with ``fcntl.flock`` (freed by the system
    when the process ends, however it ends), holding the holder's pid. A
    lock file whose holder is gone is stale and harmless: the next run takes
    it over, and removes it when done. Every output format of
    ``lrpnb explain`` is written under it."""

    def __init__(self, target):
        self.target = os.fspath(target)
        self.path, self.fd = self.target + ".lock", None
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return
        for _ in range(3):
            fd = _open_lock_file(self.path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)  # a filesystem without locks (some network mounts): go on without
                    with contextlib.suppress(OSError):
                        os.remove(self.path)
                    return
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise ValueError(f"{self.target}: another lrpnb run (pid {holder}) is writing it (it holds "
                                 f"the lock {self.path}); wait for it to end or stop it") from None
            # a holder that was releasing may have removed the file we opened
            if _same_file(self.path, fd):
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                self.fd = fd
                return
            os.close(fd)
        raise ValueError(f"{self.path}: could not take the lock")

    def release(self):
        if self.fd is not None:
            try:
                os.remove(self.path)
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None


def _open_lock_file(path):
    """The lock file, opened for writing without following a symbolic link
    and refused where it is not a plain file of its own (a hard link to
    another file, a FIFO): the lock is truncated and written, and a lock
    file planted as a link would write over the file it leads to."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0),
                     0o644)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ValueError(f"{path}: the lock file is a symbolic link; lrpnb writes its own lock file "
                             f"there: remove the link") from None
        raise
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode) or status.st_nlink > 1:
        os.close(fd)
        what = "not a regular file" if not stat.S_ISREG(status.st_mode) else "a hard link to another file"
        raise ValueError(f"{path}: the lock file is {what}; lrpnb writes its own lock file there: remove it")
    return fd


def _same_file(path, fd):
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except OSError:
        return False


def clear_stale_lock(target):
    """Remove ``target + '.lock'`` where no process holds it (a run killed
    after its output was complete left it), so that a run refused for
    another reason (the output exists) leaves none behind either."""
    try:
        import fcntl

        fd = os.open(os.fspath(target) + ".lock",
                     os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except (ImportError, OSError):
        return
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode) or status.st_nlink > 1:
            return  # not a lock lrpnb made: taking the lock refuses it, naming it
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held_by = os.read(fd, 64).strip()
        # only a lock file as lrpnb writes it: a pid, or nothing yet
        if (not held_by or held_by.isdigit()) and _same_file(os.fspath(target) + ".lock", fd):
            os.remove(os.fspath(target) + ".lock")
    except OSError:
        pass  # held: a live run, refused when this one takes the lock
    finally:
        os.close(fd)
