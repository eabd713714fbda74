"""sha256 of a file's content, memoised on (absolute path, size, mtime_ns): a file rewritten in
place is hashed again, an unchanged one once per process."""

import hashlib
import os
import threading

__all__ = ["file_sha256"]

_digests = {}  # (abspath, size, mtime_ns) -> sha256 hex
_lock = threading.Lock()


def file_sha256(path):
    """sha256 (hex) of the file at ``path``. Raises FileNotFoundError when there is none."""
    path = os.path.abspath(os.fspath(path))
    st = os.stat(path)
    memo = (path, st.st_size, st.st_mtime_ns)
    with _lock:
        if memo in _digests:
            return _digests[memo]
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    digest = sha.hexdigest()
    with _lock:
        _digests[memo] = digest
    return digest
