"""
The semantic segmentation mapper and its augmentations (keys ``INPUT.SEM_SEG.*``, documented in
contrastive_det/config/defaults.py ``add_segmentation_config``).

Training, in order: random rescale (:class:`RandomScaleRatio`), random crop with detectron2's
category-area constraint, horizontal flip, optional photometric distortion
(:class:`PhotometricDistortion`), then padding to the crop size (image: the pixel mean, so 0 after
normalisation; label: the ignore value). Test: the image at its original size, no label (the
evaluator reads the label files). Randomness comes from numpy's global generator, which the
resumable loader seeds per sample, so a resumed run draws the same augmentations.
"""

import copy
import logging

import cv2
import numpy as np
import torch

from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from .mapper import ImageReadError
from .sem_seg_labels import LabelMapError, check_label_values, read_sem_seg_label

logger = logging.getLogger(__name__)

__all__ = [
    "RandomScaleRatio",
    "PhotometricDistortion",
    "SemSegDatasetMapper",
    "build_sem_seg_augmentation",
]


class RandomScaleRatio(T.Augmentation):
    """
    Resize by a ratio drawn uniformly from ``ratio_range``, of the image's own size when
    ``base_size`` is empty (MoCo's "random scale ratio 0.5-2.0"), else of the largest size that fits
    ``base_size = (long, short)`` with the aspect ratio kept (mmseg's ``RandomResize`` with
    ``keep_ratio``). Labels are resized with nearest neighbour.
    """

    def __init__(self, ratio_range=(0.5, 2.0), base_size=(), interp=None):
        super().__init__()
        if len(ratio_range) != 2 or not 0 < ratio_range[0] <= ratio_range[1]:
            raise ValueError(
                f"INPUT.SEM_SEG.SCALE_RATIO must be (low, high) with 0 < low <= high, got "
                f"{ratio_range}"
            )
        if base_size and (len(base_size) != 2 or min(base_size) <= 0):
            raise ValueError(
                f"INPUT.SEM_SEG.BASE_SIZE must be () or (long, short) > 0, got {base_size}"
            )
        self._init(locals())

    def get_transform(self, image):
        h, w = image.shape[:2]
        ratio = np.random.uniform(self.ratio_range[0], self.ratio_range[1])
        scale = ratio
        if self.base_size:
            long_side, short_side = max(self.base_size), min(self.base_size)
            scale = ratio * min(long_side / max(h, w), short_side / min(h, w))
        new_h, new_w = max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))
        return T.ResizeTransform(h, w, new_h, new_w, self.interp)


class PhotometricDistortion(T.Augmentation):
    """
    mmseg's ``PhotoMetricDistortion`` on uint8 images, each step with probability 0.5: brightness
    (+ uniform(-32, 32)), contrast (x uniform(0.5, 1.5)) first or last at random, then in HSV:
    saturation (x uniform(0.5, 1.5)) and hue (+ randint(-18, 18) on OpenCV's 0-180 scale).
    """

    def __init__(
        self,
        image_format="BGR",
        brightness_delta=32,
        contrast_range=(0.5, 1.5),
        saturation_range=(0.5, 1.5),
        hue_delta=18,
    ):
        super().__init__()
        if image_format not in ("BGR", "RGB"):
            raise ValueError(
                f"INPUT.SEM_SEG.PHOTOMETRIC needs INPUT.FORMAT BGR or RGB, got {image_format!r}"
            )
        self._init(locals())

    def get_transform(self, image):
        draws = {
            "brightness": np.random.uniform(-self.brightness_delta, self.brightness_delta)
            if np.random.randint(2)
            else None,
            "contrast_first": bool(np.random.randint(2)),
            "contrast": np.random.uniform(*self.contrast_range) if np.random.randint(2) else None,
            "saturation": np.random.uniform(*self.saturation_range)
            if np.random.randint(2)
            else None,
            "hue": np.random.randint(-self.hue_delta, self.hue_delta)
            if np.random.randint(2)
            else None,
        }
        return T.ColorTransform(lambda img: self._apply(img, draws))

    def _apply(self, img, d):
        img = img.astype(np.float32)  # HxWx3
        if d["brightness"] is not None:
            img = np.clip(img + d["brightness"], 0, 255)
        if d["contrast_first"] and d["contrast"] is not None:
            img = np.clip(img * d["contrast"], 0, 255)
        if d["saturation"] is not None or d["hue"] is not None:
            to_hsv, from_hsv = (
                (cv2.COLOR_BGR2HSV, cv2.COLOR_HSV2BGR)
                if self.image_format == "BGR"
                else (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB)
            )
            hsv = cv2.cvtColor(img.astype(np.uint8), to_hsv).astype(np.float32)  # H in [0, 180)
            if d["saturation"] is not None:
                hsv[..., 1] = np.clip(hsv[..., 1] * d["saturation"], 0, 255)
            if d["hue"] is not None:
                hsv[..., 0] = (hsv[..., 0] + d["hue"]) % 180
            img = cv2.cvtColor(hsv.astype(np.uint8), from_hsv).astype(np.float32)
        if not d["contrast_first"] and d["contrast"] is not None:
            img = np.clip(img * d["contrast"], 0, 255)
        return img.astype(np.uint8)


def build_sem_seg_augmentation(cfg, is_train):
    """The augmentations of ``INPUT.SEM_SEG`` (see the module docstring)."""
    s = cfg.INPUT.SEM_SEG
    if not is_train:
        return [RandomScaleRatio((1.0, 1.0), tuple(s.TEST_BASE_SIZE))] if s.TEST_BASE_SIZE else []
    crop = tuple(int(v) for v in s.CROP_SIZE)
    if len(crop) != 2 or min(crop) <= 0:
        raise ValueError(
            f"INPUT.SEM_SEG.CROP_SIZE must be (height, width) > 0, got {tuple(s.CROP_SIZE)}"
        )
    augs = [
        RandomScaleRatio(tuple(s.SCALE_RATIO), tuple(s.BASE_SIZE)),
        T.RandomCrop_CategoryAreaConstraint(
            "absolute",
            crop,
            cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA,
            cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
        ),
    ]
    if s.FLIP_PROB > 0:
        augs.append(T.RandomFlip(prob=s.FLIP_PROB, horizontal=True))
    if s.PHOTOMETRIC:
        augs.append(PhotometricDistortion(cfg.INPUT.FORMAT))
    return augs


def _pad_to(image, label, size, pad_pixel, ignore_value):
    """Pad HxWxC ``image`` (with ``pad_pixel`` per channel) and HxW ``label`` at the bottom/right to
    ``size``."""
    h, w = label.shape
    ph, pw = max(size[0] - h, 0), max(size[1] - w, 0)
    if not (ph or pw):
        return image, label
    out = np.empty((h + ph, w + pw, image.shape[2]), image.dtype)  # (H+ph)x(W+pw)xC
    out[...] = np.asarray(pad_pixel, dtype=np.float32).astype(image.dtype)
    out[:h, :w] = image
    return out, np.pad(label, ((0, ph), (0, pw)), constant_values=ignore_value)


class SemSegDatasetMapper:
    """
    Map a semantic segmentation dataset dict (contract: :mod:`.sem_seg_labels`) to the model's
    input: ``image`` (CxHxW uint8 tensor in ``INPUT.FORMAT``), ``height``/``width`` (the original
    size: predictions come back at it) and, in training, ``sem_seg`` (HxW int64, ignore value on
    void and padding). Unreadable images and label maps, label maps of another size, and label
    values outside the classes raise errors that name the file.
    """

    @configurable
    def __init__(
        self,
        is_train,
        *,
        augmentations,
        image_format,
        num_classes,
        ignore_value,
        crop_size,
        pad_pixel,
    ):
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.num_classes = num_classes
        self.ignore_value = ignore_value
        self.crop_size = crop_size
        self.pad_pixel = pad_pixel
        logger.info(
            f"[SemSegDatasetMapper] augmentations ({'train' if is_train else 'test'}): "
            f"{augmentations}"
        )

    @classmethod
    def from_config(cls, cfg, is_train=True):
        mean = list(cfg.MODEL.PIXEL_MEAN)
        return {
            "is_train": is_train,
            "augmentations": build_sem_seg_augmentation(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "ignore_value": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            "crop_size": tuple(int(v) for v in cfg.INPUT.SEM_SEG.CROP_SIZE),
            # pixel mean in the image's channel order (the model normalises with the same numbers)
            "pad_pixel": mean,
        }

    def __call__(self, dataset_dict):
        d = copy.deepcopy(dataset_dict)
        try:
            image = utils.read_image(d["file_name"], format=self.image_format)  # HxWxC uint8
        except OSError as e:
            raise ImageReadError(f"Could not read image {d['file_name']}: {e}") from e
        h, w = image.shape[:2]
        d.setdefault("height", h)
        d.setdefault("width", w)
        if not self.is_train:
            aug_input = T.AugInput(image)
            self.augmentations(aug_input)  # TEST_BASE_SIZE, or nothing
            image = aug_input.image
            d["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))  # CxHxW
            return d
        label = read_sem_seg_label(d)  # HxW int64
        path = d["sem_seg_file_name"]
        if label.shape != (h, w):
            raise LabelMapError(
                f"Label map {path} is {label.shape[1]}x{label.shape[0]} (WxH) but its image "
                f"{d['file_name']} is {w}x{h}"
            )
        check_label_values(label, self.num_classes, path, self.ignore_value)
        aug_input = T.AugInput(
            image, sem_seg=label.astype(np.uint8) if label.max() < 256 else label
        )
        self.augmentations(aug_input)
        image, label = _pad_to(
            aug_input.image, aug_input.sem_seg, self.crop_size, self.pad_pixel, self.ignore_value
        )
        d["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))  # CxHxW
        d["sem_seg"] = torch.as_tensor(label.astype(np.int64))  # HxW
        return d


def sem_seg_metadata(dataset_name):
    """(stuff_classes, ignore_label) of a registered segmentation set; a clear error when absent."""
    meta = MetadataCatalog.get(dataset_name)
    classes = meta.get("stuff_classes", None)
    if not classes:
        raise ValueError(
            f"Dataset '{dataset_name}' has no 'stuff_classes' metadata: it is not a semantic "
            "segmentation set (register it with FORMAT: sem_seg, see datasets/README.md)"
        )
    return list(classes), int(meta.get("ignore_label", 255))
