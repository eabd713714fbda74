"""
Content digests of dataset dicts: what a cache of values computed from a dataset (extracted
features, say) must be keyed on so that it cannot serve the data of yesterday.

A dataset's name says nothing about what is on disk now: a user fixing mislabelled folders, adding
images or editing a CSV keeps the name. :func:`dataset_fingerprint` digests every field of every
dict (file names, image ids, labels, class names, array indices, ...) together with the size and
modification time of each file the dicts name, so any of those edits changes it. It reads no
pixel: a stat per file is cheap next to decoding the image.
"""

import hashlib
import json
import os

__all__ = ["dataset_fingerprint"]


def _file_stamp(path, stamps):
    """``[size, mtime_ns, inode]`` of ``path`` (memoised in ``stamps``: containers hold many items),
    or None. The inode tells apart two files swapped by renaming (``mv`` keeps size and mtime)."""
    if path not in stamps:
        try:
            st = os.stat(path)
            stamps[path] = [st.st_size, st.st_mtime_ns, st.st_ino]
        # a missing file is reported by the reader; here it is just part of the state
        except OSError:
            stamps[path] = None
    return stamps[path]


def dataset_fingerprint(dicts):
    """
    sha256 (hex) of the content of a list of dataset dicts.

    Each dict is encoded as canonical JSON (sorted keys; values JSON cannot hold are written with
    ``str``) with the ``[size, mtime_ns, inode]`` of its ``file_name`` (and ``sem_seg_file_name``)
    added; the encodings are
    sorted, so the order of the dicts does not matter (a cache entry of features sorted by image id
    does not depend on it either).

    Args:
        dicts (list[dict]): detectron2-style dataset dicts.
    Returns:
        str: 64 lowercase hex characters.

    Example::

        >>> a = [{"file_name": "/nonexistent/1.png", "image_id": "1", "label": 0}]
        >>> dataset_fingerprint(a) == dataset_fingerprint([dict(a[0], label=1)])
        False
    """
    stamps = {}
    lines = []
    for d in dicts:
        item = dict(d)
        file_name = item.get("file_name")
        if isinstance(file_name, str):
            item["__file__"] = _file_stamp(os.path.abspath(file_name), stamps)
        label_file = item.get("sem_seg_file_name")  # a label map edited in place counts too
        if isinstance(label_file, str):
            item["__sem_seg_file__"] = _file_stamp(os.path.abspath(label_file), stamps)
        lines.append(
            json.dumps(item, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=True)
        )
    lines.sort()
    sha = hashlib.sha256(f"{len(lines)}\n".encode("ascii"))
    for line in lines:
        sha.update(line.encode("ascii"))
        sha.update(b"\n")
    return sha.hexdigest()
