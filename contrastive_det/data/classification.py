"""Class-per-folder classification sets: ``root/<class_name>/<image file>``."""
import os

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


def load_class_folders(root, class_names=None):
    """
    Return detectron2-style dicts ``{"file_name", "image_id", "label", "class_name"}`` for ``root/<class>/<img>``,
    sorted by class then file name. ``class_names`` fixes the label order (default: sorted folder
    names); a listed class without a folder raises FileNotFoundError naming it.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Classification root {root} does not exist; expected {root}/<class_name>/<image>")
    folders = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    class_names = list(class_names) if class_names else folders
    missing = [c for c in class_names if c not in folders]
    if missing:
        raise FileNotFoundError(f"Classification root {root} has no folder for class(es) {missing}")
    dicts = []
    for label, cls in enumerate(class_names):
        cls_dir = os.path.join(root, cls)
        for fname in sorted(os.listdir(cls_dir)):
            if fname.lower().endswith(IMAGE_EXTENSIONS):
                dicts.append(
                    {
                        "file_name": os.path.join(cls_dir, fname),
                        "image_id": f"{cls}/{fname}",
                        "label": label,
                        "class_name": cls,
                    }
                )
    if not dicts:
        raise FileNotFoundError(
            f"Classification root {root} has no images (extensions {', '.join(IMAGE_EXTENSIONS)}) "
            f"in its class folders {class_names}"
        )
    return dicts
