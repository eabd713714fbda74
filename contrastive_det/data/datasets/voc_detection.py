"""
Detection sets in Pascal VOC's layout, read as annotation tools write them:

    <dirname>/Annotations/<image_id>.xml       one <object> per box: <name>, <bndbox>, and usually
                                               <pose>, <truncated>, <difficult>
    <dirname>/ImageSets/Main/<split>.txt       one image_id per line
    <dirname>/JPEGImages/<image_id>.jpg

detectron2 loads the training dicts (``load_voc_instances``, float coordinates); its evaluation
parser (``parse_rec``) wants integer coordinates and all three optional tags, which CVAT's and Label
Studio's exports do not always give. :func:`parse_voc_record` reads both kinds, and every error
names the file.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Any, Sequence

from detectron2.data.datasets.pascal_voc import load_voc_instances

__all__ = ["parse_voc_record", "voc_image_ids", "load_voc_detection", "check_voc_annotations"]


def _text(obj, tag, path, default=None):
    node = obj.find(tag)
    if node is None or node.text is None or not node.text.strip():
        if default is not None:
            return default
        raise ValueError(f"{path}: an <object> has no <{tag}>")
    return node.text.strip()


def parse_voc_record(path: str) -> list[dict[str, Any]]:
    """
    The objects of one VOC XML file, in the form of detectron2's ``parse_rec`` (``name``, ``pose``,
    ``truncated``, ``difficult``, ``bbox`` [xmin, ymin, xmax, ymax]): coordinates as floats (whole
    numbers in VOC itself, so its scores are unchanged), ``pose`` "Unspecified" and ``truncated``,
    ``difficult`` 0 when the tag is missing. Read afresh on each call (an edited file counts).

    Raises:
        ValueError: unreadable XML, or an object without <name> or a coordinate, naming the file.
    """
    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError) as e:
        raise ValueError(f"{path}: cannot read the VOC annotation: {e}") from None
    objects = []
    for obj in tree.findall("object"):
        box = obj.find("bndbox")
        if box is None:
            raise ValueError(f"{path}: an <object> has no <bndbox>")
        try:
            bbox = [float(_text(box, t, path)) for t in ("xmin", "ymin", "xmax", "ymax")]
            flags = {t: int(float(_text(obj, t, path, "0"))) for t in ("truncated", "difficult")}
        except ValueError as e:
            raise ValueError(f"{path}: {e}" if not str(e).startswith(path) else str(e)) from None
        objects.append(
            {
                "name": _text(obj, "name", path),
                "pose": _text(obj, "pose", path, "Unspecified"),
                "bbox": bbox,
                **flags,
            }
        )
    return objects


def voc_image_ids(dirname: str, split: str) -> list[str]:
    with open(os.path.join(dirname, "ImageSets", "Main", split + ".txt")) as f:
        return [line.strip() for line in f if line.strip()]


def check_voc_annotations(
    dirname: str, split: str, class_names: Sequence[str] | None = None
) -> None:
    """
    Parse every annotation of the split (:func:`parse_voc_record`); raise ValueError listing the
    files that cannot be read or that name a class outside ``class_names``.
    """
    known = set(class_names) if class_names is not None else None
    problems = []
    for image_id in voc_image_ids(dirname, split):
        path = os.path.join(dirname, "Annotations", image_id + ".xml")
        try:
            names = {o["name"] for o in parse_voc_record(path)}
        except ValueError as e:
            problems.append(str(e))
            continue
        unknown = sorted(names - known) if known is not None else []
        if unknown:
            problems.append(f"{path}: class(es) {unknown} not among the dataset's classes")
    if problems:
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise ValueError(
            f"VOC annotations of {dirname} ({split}):\n  "
            + "\n  ".join(problems[:10])
            + more
            + f"\n  (classes: {list(class_names) if class_names is not None else '?'})"
        )


def load_voc_detection(dirname: str, split: str, class_names: Sequence[str]) -> list[dict]:
    """detectron2's ``load_voc_instances``; when it fails, the files at fault named instead of its
    bare ``'car' is not in list``."""
    try:
        return load_voc_instances(dirname, split, list(class_names))
    except (ValueError, AttributeError, ET.ParseError):
        check_voc_annotations(dirname, split, class_names)
        raise
