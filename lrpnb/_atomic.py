"""Atomic file writing: a temporary file in the target's folder, renamed into place.

A rename is only as durable as what the disk holds when it happens: the
file's contents are synced before it is renamed and the folder after, so
that after a power cut a file under its final name is the whole file, not
an empty or half-written one (:func:`sync_file`, :func:`sync_folder`).
"""
import contextlib
import os
import tempfile


def sync_file(path_or_fd):
    """Ask the system to put the file's contents on the disk (``fsync``)."""
    if isinstance(path_or_fd, int):
        os.fsync(path_or_fd)
        return
    fd = os.open(path_or_fd, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_folder(path):
    """Put the folder of ``path``'s entries on the disk, so that a rename
    into it survives a power cut (POSIX; elsewhere a no-op)."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # folders cannot be opened (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # filesystems that do not sync folders
        pass
    finally:
        os.close(fd)


def replace_durably(source, target):
    """``os.replace(source, target)`` after ``source``'s contents are on the
    disk, with the folder synced after it."""
    sync_file(source)
    os.replace(source, target)
    sync_folder(target)


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yield a temporary path next to ``path``; on success it replaces ``path``.

    On any error the temporary file is removed and ``path`` is left as it
    was, so a crash never leaves a truncated file that looks complete.
    ``suffix`` keeps an extension for writers that insist on one.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp" + suffix,
                               dir=folder)
    os.close(fd)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give it the mode a plain
        # open() would have: the old file's, or 0666 less the umask
        os.chmod(tmp, os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o666 & ~_umask())
        replace_durably(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def remove_leftovers(path):
    """Remove the temporary files a killed earlier write of ``path`` left in
    its folder (``.NAME.XXXXXXXX.tmp*``, as :func:`atomic_path` and the
    streaming writers make them). Only for a caller that holds the output's
    lock: no other run is writing them. Returns the paths removed."""
    import re

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    pattern = re.compile(r"\." + re.escape(os.path.basename(path)) + r"\.[A-Za-z0-9_]{8}\.tmp(\..*)?")
    removed = []
    for name in os.listdir(folder):
        if pattern.fullmatch(name):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, name))
                removed.append(os.path.join(folder, name))
    return removed
