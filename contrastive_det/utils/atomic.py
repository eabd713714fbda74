"""Write files so that readers see either the old content or the complete new one, never half."""

import contextlib
import json
import os
import re
import secrets
import time

# Permissions asked for when creating the temporary file; the process umask applies to them, as
# for open(path, "w"): 0644 with umask 022, 0640 with 027. (tempfile.mkstemp would give 0600,
# which other users of a shared OUTPUT_DIR could not read.)
_FILE_MODE = 0o666


def _create_temp(directory, basename):
    """Create and open a new file ``directory/.<basename>.<random>.tmp``; returns (fd, path)."""
    flags = (
        os.O_WRONLY
        | os.O_CREAT
        | os.O_EXCL
        | getattr(os, "O_CLOEXEC", 0)
        | getattr(os, "O_BINARY", 0)
    )
    for _ in range(100):
        tmp = os.path.join(directory, f".{basename}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, _FILE_MODE), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a unique temporary file for {basename} in {directory}")


# the temporary files of atomic_open: ".<basename>.<12 hex digits>.tmp"
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")


def remove_stale_temporaries(directory, older_than_s=60.0):
    """
    Remove the temporary files that :func:`atomic_open` left in ``directory`` when its process was
    killed mid-write (SIGKILL, out of memory): a checkpoint's can take 100 MB. Only files of its
    naming pattern, untouched for ``older_than_s`` seconds (a write in progress refreshes its
    file); returns the names removed.
    """
    removed = []
    now = time.time()
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        path = os.path.join(directory, name)
        if not _TEMP_NAME.match(name):
            continue
        with contextlib.suppress(OSError):
            if os.path.isfile(path) and now - os.path.getmtime(path) > older_than_s:
                os.remove(path)
                removed.append(name)
    return removed


def _fsync_directory(directory):
    """Make a rename inside ``directory`` durable (POSIX); a no-op where directories cannot be
    opened."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems do not support fsync on directories
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path, mode="w"):
    """
    Open a temporary file next to ``path``; on a clean exit, flush, fsync and rename it onto
    ``path``, then fsync the directory so that the rename survives a crash. On an exception the
    temporary file is removed and ``path`` is untouched.

    The new file gets the mode a plain ``open(path, "w")`` would give it (0666 minus the umask),
    not the 0600 of :func:`tempfile.mkstemp`.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports modes 'w' and 'wb', got {mode!r}")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = _create_temp(directory, os.path.basename(path))
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _fsync_directory(directory)


def atomic_write_json(path, obj):
    """Dump ``obj`` as indented JSON to ``path`` atomically."""
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")
