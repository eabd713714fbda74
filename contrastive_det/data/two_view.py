"""Two-view augmentation (torchvision.transforms.v2) and the mapper/loaders of pretraining."""
import torch
from torchvision.transforms import v2 as T

from detectron2.data import DatasetCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.data.detection_utils import read_image

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
    Views are 3xHxW uint8 RGB tensors (normalisation happens in the model).
    """

    def __init__(self, cfg, is_train):
        self.is_train = is_train
        self.transform = build_two_view_transform(cfg) if is_train else build_test_transform(cfg)

    def __call__(self, dataset_dict):
        image = read_rgb_tensor(dataset_dict["file_name"])
        label = int(dataset_dict.get("label", -1))
        if self.is_train:
            return {"views": [self.transform(image), self.transform(image)], "label": label}
        out = {k: v for k, v in dataset_dict.items() if k != "file_name"}
        out.update(image=self.transform(image), label=label, file_name=dataset_dict["file_name"])
        return out


def classification_dicts(names):
    """The concatenated dicts of registered classification datasets; an empty one raises naming it."""
    dicts = []
    for name in names:
        part = DatasetCatalog.get(name)
        if not part:
            raise ValueError(f"Dataset '{name}' has no images")
        dicts.extend(part)
    return dicts


def build_pretrain_train_loader(cfg):
    return build_detection_train_loader(
        classification_dicts(cfg.DATASETS.TRAIN),
        mapper=TwoViewMapper(cfg, is_train=True),
        total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
        aspect_ratio_grouping=False,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )


def knn_bank_name(cfg):
    return cfg.TEST.KNN.BANK or cfg.DATASETS.TRAIN[0]


def build_knn_test_loader(cfg, dataset_name):
    """Bank images (``knn_role`` "bank") then the query images of ``dataset_name`` ("query")."""
    bank = [dict(d, knn_role="bank") for d in classification_dicts([knn_bank_name(cfg)])]
    query = [dict(d, knn_role="query") for d in classification_dicts([dataset_name])]
    return build_detection_test_loader(
        bank + query,
        mapper=TwoViewMapper(cfg, is_train=False),
        batch_size=cfg.TEST.KNN.BATCH_SIZE,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
