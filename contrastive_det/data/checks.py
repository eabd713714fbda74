"""Check that a registered dataset's files are where its metadata says, before any training starts."""
import os

from detectron2.data import DatasetCatalog, MetadataCatalog

from .paths import datasets_root

README_HINT = "See datasets/README.md for the layouts; the root is $DETECTRON2_DATASETS (now {root!r})."


class DatasetLayoutError(FileNotFoundError):
    """A dataset folder or file is missing or not in the expected layout."""


def _voc_expected(dirname, split):
    return [
        os.path.join(dirname, "JPEGImages") + "/",
        os.path.join(dirname, "Annotations") + "/",
        os.path.join(dirname, "ImageSets", "Main", f"{split}.txt"),
    ]


def check_dataset_layout(name):
    """
    Raise :class:`DatasetLayoutError` naming the missing path and the expected layout when the
    files of dataset ``name`` are not in place. Unknown names raise KeyError listing the
    registered ones. Datasets whose metadata names no files are not checked.
    """
    if name not in DatasetCatalog.list():
        raise KeyError(f"Dataset '{name}' is not registered. Registered: {', '.join(sorted(DatasetCatalog.list()))}")
    meta = MetadataCatalog.get(name)
    hint = README_HINT.format(root=datasets_root())
    if hasattr(meta, "dirname") and hasattr(meta, "split"):
        expected = _voc_expected(meta.dirname, meta.split)
        missing = [p for p in expected if not os.path.exists(p.rstrip("/"))]
        if missing:
            raise DatasetLayoutError(
                f"Dataset '{name}' (Pascal VOC layout) is incomplete: missing {missing[0]}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                + f". Expected under {meta.dirname}: JPEGImages/<id>.jpg, Annotations/<id>.xml, "
                f"ImageSets/Main/{meta.split}.txt. {hint}"
            )
        with open(expected[2]) as f:
            num_ids = sum(1 for line in f if line.strip())
        if num_ids < 2:
            # detectron2's load_voc_instances reads the list with np.loadtxt, which fails on one line
            raise DatasetLayoutError(
                f"Dataset '{name}': {expected[2]} lists {num_ids} image(s); detectron2's VOC loader "
                "needs at least 2 ids in an image set."
            )
    elif hasattr(meta, "json_file"):
        if not os.path.isfile(meta.json_file):
            raise DatasetLayoutError(
                f"Dataset '{name}' (COCO JSON) is missing its annotation file {meta.json_file}. "
                f"Expected the instances JSON there and images under {meta.image_root}. {hint}"
            )
        if not os.path.isdir(meta.image_root):
            raise DatasetLayoutError(
                f"Dataset '{name}' (COCO JSON) is missing its image folder {meta.image_root}. {hint}"
            )
    elif getattr(meta, "evaluator_type", None) == "classification":
        if not os.path.isdir(meta.image_root):
            raise DatasetLayoutError(
                f"Dataset '{name}' (class-per-folder) is missing {meta.image_root}; "
                f"expected {meta.image_root}/<class_name>/<image>. {hint}"
            )
