"""
Two-view augmentation (torchvision.transforms.v2) and the pretraining mapper: one decoded image ->
two random views (training) or one centre-cropped image (kNN bank and queries).
"""
import torch
from torchvision.transforms import v2 as T

from detectron2.data.detection_utils import read_image

from .corruptions import build_corruption
from .mapper import ImageReadError


def build_two_view_transform(cfg):
    """One random view: crop, flip, colour jitter, grayscale, blur, solarize (INPUT.TWO_VIEW.*)."""
    c = cfg.INPUT.TWO_VIEW
    kernel = max(3, int(c.BLUR_KERNEL_FRACTION * c.CROP_SIZE) // 2 * 2 + 1)  # odd
    ops = [
        T.RandomResizedCrop(c.CROP_SIZE, scale=tuple(c.CROP_SCALE), antialias=True),
        T.RandomHorizontalFlip(c.FLIP_PROB),
        T.RandomApply([T.ColorJitter(*c.JITTER)], p=c.JITTER_PROB),
        T.RandomGrayscale(p=c.GRAYSCALE_PROB),
    ]
    if c.BLUR_PROB > 0:
        ops.append(T.RandomApply([T.GaussianBlur(kernel, sigma=tuple(c.BLUR_SIGMA))], p=c.BLUR_PROB))
    if c.SOLARIZE_PROB > 0:
        ops.append(T.RandomSolarize(threshold=128, p=c.SOLARIZE_PROB))
    return T.Compose(ops)


def build_test_transform(cfg):
    c = cfg.INPUT.TWO_VIEW
    return T.Compose([T.Resize(c.TEST_RESIZE, antialias=True), T.CenterCrop(c.CROP_SIZE)])


def read_rgb_tensor(file_name):
    """3xHxW uint8 RGB tensor; unreadable files raise :class:`ImageReadError` naming the file."""
    try:
        image = read_image(file_name, format="RGB")  # HxWx3 uint8
    except OSError as e:
        raise ImageReadError(f"Could not read image {file_name}: {e}") from e
    return torch.from_numpy(image.copy()).permute(2, 0, 1)


class TwoViewMapper:
    """
    Dataset dict ``{"file_name", "label"}`` -> training: ``{"views": [view1, view2], "label"}``;
    inference: ``{"image", "label"}`` plus the dict's other keys (e.g. ``knn_role``).
    Views are 3xHxW uint8 RGB tensors (normalisation happens in the model). In training, the
    corruption of ``INPUT.CORRUPTION`` (if any) is applied to the decoded image before the views;
    inference images stay clean.
    """

    def __init__(self, cfg, is_train):
        self.is_train = is_train
        self.transform = build_two_view_transform(cfg) if is_train else build_test_transform(cfg)
        self.corruption = build_corruption(cfg) if is_train else None

    def __call__(self, dataset_dict):
        image = read_rgb_tensor(dataset_dict["file_name"])
        label = int(dataset_dict.get("label", -1))
        if self.is_train:
            if self.corruption is not None:
                image = self.corruption(image)
            return {"views": [self.transform(image), self.transform(image)], "label": label}
        out = {k: v for k, v in dataset_dict.items() if k != "file_name"}
        out.update(image=self.transform(image), label=label, file_name=dataset_dict["file_name"])
        return out
