"""
Two-view augmentation (torchvision.transforms.v2) and the pretraining mapper: one decoded image ->
two random views (training) or one centre-cropped image (kNN bank and queries).

Speed (profiled on the toy digit crops, see docs/benchmarks.md): the image is decoded once into a
PIL image and every view is cropped and resized first, so that the colour operations run on the
small output; the v2 transforms then dispatch to their uint8 PIL kernels (ColorJitter's hue shift
on a tensor goes through a float HSV round trip, several times slower), and the Gaussian blur uses
OpenCV's separable filter. The random parameters are drawn exactly as for tensors, from torch's
global generator, which the loader seeds per item: augmentations stay a function of the seed.
"""

import cv2
import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2 as T

from .corruptions import build_corruption
from .image_reader import read_rgb_image

__all__ = [
    "build_two_view_transform",
    "build_test_transform",
    "read_rgb_tensor",
    "to_chw_uint8",
    "GaussianBlur",
    "TwoViewMapper",
]


class GaussianBlur(T.GaussianBlur):
    """
    ``torchvision.transforms.v2.GaussianBlur`` (same parameters, same draw of sigma from torch's
    global generator, same kernel: the Gaussian sampled at integer offsets, normalised; same
    reflected border) whose PIL kernel is OpenCV's uint8 separable filter instead of a float
    round trip through a tensor. Tensors use torchvision's kernel.
    """

    def transform(self, inpt, params):
        if not isinstance(inpt, Image.Image):
            return super().transform(inpt, params)
        k = self.kernel_size
        sx, sy = params["sigma"]
        out = cv2.GaussianBlur(
            np.asarray(inpt), (k[0], k[1]), sigmaX=sx, sigmaY=sy, borderType=cv2.BORDER_REFLECT_101
        )  # torch "reflect" padding
        return Image.fromarray(out, mode=inpt.mode)


def build_two_view_transform(cfg):
    """
    One random view (INPUT.TWO_VIEW.*): crop + resize, flip, colour jitter, grayscale, blur,
    solarize. Takes a PIL RGB image (fast path) or a 3xHxW uint8 tensor; returns the same type.
    """
    c = cfg.INPUT.TWO_VIEW
    kernel = max(3, int(c.BLUR_KERNEL_FRACTION * c.CROP_SIZE) // 2 * 2 + 1)  # odd
    ops = [
        T.RandomResizedCrop(c.CROP_SIZE, scale=tuple(c.CROP_SCALE), antialias=True),
        T.RandomHorizontalFlip(c.FLIP_PROB),
        T.RandomApply([T.ColorJitter(*c.JITTER)], p=c.JITTER_PROB),
        T.RandomGrayscale(p=c.GRAYSCALE_PROB),
    ]
    if c.BLUR_PROB > 0:
        ops.append(T.RandomApply([GaussianBlur(kernel, sigma=tuple(c.BLUR_SIGMA))], p=c.BLUR_PROB))
    if c.SOLARIZE_PROB > 0:
        ops.append(T.RandomSolarize(threshold=128, p=c.SOLARIZE_PROB))
    return T.Compose(ops)


def build_test_transform(cfg):
    """Resize the shorter side to INPUT.TWO_VIEW.TEST_RESIZE, then centre-crop CROP_SIZE (PIL or
    tensor)."""
    c = cfg.INPUT.TWO_VIEW
    return T.Compose([T.Resize(c.TEST_RESIZE, antialias=True), T.CenterCrop(c.CROP_SIZE)])


def to_chw_uint8(image):
    """A PIL RGB image or a 3xHxW uint8 tensor -> a contiguous 3xHxW uint8 tensor."""
    if isinstance(image, torch.Tensor):
        return image
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous()


def read_rgb_tensor(file_name):
    """3xHxW uint8 RGB tensor; unreadable files raise :class:`ImageReadError` naming the file."""
    return to_chw_uint8(read_rgb_image(file_name))


def _to_pil(image):
    return Image.fromarray(image.permute(1, 2, 0).contiguous().numpy(), mode="RGB")


class TwoViewMapper:
    """
    Dataset dict ``{"file_name", "label"}`` -> training: ``{"views": [view1, view2], "label"}``
    (``INPUT.TWO_VIEW.NUM_VIEWS`` views: 2, or 1 for the supervised baseline);
    inference: ``{"image", "label"}`` plus the dict's other keys (e.g. ``knn_role``).
    Views are 3xHxW uint8 RGB tensors (normalisation happens in the model). The image is decoded
    once; in training, the corruption of ``INPUT.CORRUPTION`` (if any) is applied to the decoded
    image before the views; inference images stay clean.
    """

    def __init__(self, cfg, is_train):
        self.is_train = is_train
        self.num_views = cfg.INPUT.TWO_VIEW.NUM_VIEWS
        if self.num_views not in (1, 2):
            raise ValueError(f"INPUT.TWO_VIEW.NUM_VIEWS must be 1 or 2, got {self.num_views}")
        self.transform = build_two_view_transform(cfg) if is_train else build_test_transform(cfg)
        self.corruption = build_corruption(cfg) if is_train else None

    def __call__(self, dataset_dict):
        image = read_rgb_image(dataset_dict["file_name"])
        label = int(dataset_dict.get("label", -1))
        if self.is_train:
            if self.corruption is not None:
                image = _to_pil(self.corruption(to_chw_uint8(image)))
            views = [to_chw_uint8(self.transform(image)) for _ in range(self.num_views)]
            return {"views": views, "label": label}
        out = {k: v for k, v in dataset_dict.items() if k != "file_name"}
        out.update(
            image=to_chw_uint8(self.transform(image)),
            label=label,
            file_name=dataset_dict["file_name"],
        )
        return out
