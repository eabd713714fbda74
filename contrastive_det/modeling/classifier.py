"""
The classifier of classification transfer: the torchvision ResNet trunk that pretraining exports
(``MODEL.TV_RESNET``) + a head (``MODEL.CLASSIFIER.HEAD``), on detectron2's meta-architecture API.
"""

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY

from ..data.classification_loader import transfer_classes
from .backbone import build_tv_resnet
from .core_tuning import CoreTuningHead

__all__ = ["Classifier", "pooled_stage_features", "STAGES", "resolve_num_classes"]

#: detectron2's names of the ResNet stages -> torchvision's modules
STAGES = {"res2": "layer1", "res3": "layer2", "res4": "layer3", "res5": "layer4"}
HEADS = ("linear", "bn_linear", "core_tuning")


def pooled_stage_features(resnet, images, layers):
    """
    Global-average-pooled outputs of the ResNet stages named in ``layers`` ("res2".."res5").

    Args:
        resnet: a torchvision ResNet.
        images: NxCxHxW normalised images.
        layers: stage names.
    Returns:
        dict ``{layer: NxD_layer}`` (D = 256/512/1024/2048 for ResNet-50, 64/128/256/512 for
        ResNet-18).
    """
    unknown = [name for name in layers if name not in STAGES]
    if unknown:
        raise ValueError(
            f"CLASSIFICATION.LAYERS: unknown stage(s) {unknown}; known: {list(STAGES)}"
        )
    x = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(images))))
    out, last = {}, max(list(STAGES).index(name) for name in layers)
    for i, (name, module) in enumerate(STAGES.items()):
        if i > last:
            break
        x = getattr(resnet, module)(x)  # NxCixHixWi
        if name in layers:
            out[name] = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # NxCi
    return out


def resolve_num_classes(cfg):
    """``MODEL.CLASSIFIER.NUM_CLASSES``, or the class count of ``DATASETS.TRAIN[0]`` when it is 0
    (with ``CLASSIFICATION.LABEL_MAP``, the count of the coarse classes its classes map to)."""
    if cfg.MODEL.CLASSIFIER.NUM_CLASSES > 0:
        return int(cfg.MODEL.CLASSIFIER.NUM_CLASSES)
    names = list(cfg.DATASETS.TRAIN) or list(cfg.DATASETS.TEST)
    if not names:
        raise ValueError(
            "MODEL.CLASSIFIER.NUM_CLASSES is 0 and there is no dataset in DATASETS.TRAIN/TEST to "
            "take it from"
        )
    classes = MetadataCatalog.get(names[0]).get("classes", None)
    if not classes:
        raise ValueError(
            f"MODEL.CLASSIFIER.NUM_CLASSES is 0 and dataset '{names[0]}' records no 'classes' in "
            f"its metadata; "
            "set MODEL.CLASSIFIER.NUM_CLASSES"
        )
    # coarser labels: one class per coarse name the set's classes map to
    if cfg.CLASSIFICATION.LABEL_MAP:
        return len(transfer_classes(cfg, names[0]))
    return len(classes)


def _is_multi_label(cfg):
    names = list(cfg.DATASETS.TRAIN) or list(cfg.DATASETS.TEST)
    return bool(names) and bool(MetadataCatalog.get(names[0]).get("multi_label", False))


def _linear(in_dim, num_classes, bias=True):
    fc = nn.Linear(in_dim, num_classes, bias=bias)
    nn.init.normal_(fc.weight, std=0.01)  # MoCo's lincls initialisation
    if bias:
        nn.init.zeros_(fc.bias)
    return fc


def multi_label_targets(batched_inputs, num_classes, device):
    """Targets NxC of multi-label inputs: 1 positive, 0 negative, -1 ignored ("difficult")."""
    targets = torch.zeros(len(batched_inputs), num_classes, dtype=torch.long, device=device)
    for i, x in enumerate(batched_inputs):
        targets[i, list(x.get("labels", []))] = 1
        targets[i, list(x.get("ignore_labels", []))] = -1
    return targets


@META_ARCH_REGISTRY.register()
class Classifier(nn.Module):
    """
    Images -> trunk -> pooled features -> head -> logits.

    Inputs: a list of dicts with ``image`` (3xHxW uint8 RGB tensor) and, in training, ``label``
    (int) or, multi-label, ``labels`` / ``ignore_labels`` (lists of class ids).
    Training returns ``{"loss_cls": ...}`` (plus ``"loss_con"`` for Core-tuning); inference returns
    one dict per image: ``{"logits": C, "features": {layer: D}}`` (the pooled stages of
    ``feature_layers``).

    With ``freeze_trunk`` the trunk has no trainable parameter and stays in eval mode whatever
    ``train()`` is called with, so its BN statistics never change (and detectron2's PreciseBN,
    which only updates BN layers in training mode, leaves them alone).
    """

    @configurable
    def __init__(
        self,
        *,
        trunk,
        head,
        num_classes,
        freeze_trunk,
        feature_layers,
        pixel_mean,
        pixel_std,
        multi_label=False,
    ):
        super().__init__()
        self.trunk = trunk
        self.head = head
        self.num_classes = num_classes
        self.freeze_trunk = freeze_trunk
        self.feature_layers = tuple(feature_layers)
        self.multi_label = multi_label
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        if multi_label and isinstance(head, CoreTuningHead):
            raise ValueError(
                "MODEL.CLASSIFIER.HEAD core_tuning needs single-label data; this dataset is "
                "multi-label"
            )
        if freeze_trunk:
            for p in self.trunk.parameters():
                p.requires_grad_(False)
        self.train()

    @classmethod
    def from_config(cls, cfg):
        c = cfg.MODEL.CLASSIFIER
        if c.HEAD not in HEADS:
            raise ValueError(f"MODEL.CLASSIFIER.HEAD must be one of {HEADS}, got {c.HEAD!r}")
        trunk = build_tv_resnet(cfg)
        num_classes = resolve_num_classes(cfg)
        dim = trunk.out_dim
        if c.HEAD == "linear":
            head = _linear(dim, num_classes)
        elif c.HEAD == "bn_linear":
            head = nn.Sequential(nn.BatchNorm1d(dim, affine=False), _linear(dim, num_classes))
        else:
            ct = cfg.CLASSIFICATION.CORE_TUNING
            head = CoreTuningHead(
                dim,
                num_classes,
                hidden_dim=ct.HIDDEN_DIM,
                proj_dim=ct.PROJ_DIM,
                eta=ct.ETA,
                alpha=ct.ALPHA,
                temperature=ct.TEMPERATURE,
                min_shuffled_weight=ct.MIN_SHUFFLED_WEIGHT,
                con_normalization=ct.CON_NORMALIZATION,
                hard_pairs=ct.HARD_PAIRS,
                smooth_boundary=ct.SMOOTH_BOUNDARY,
            )
        return {
            "trunk": trunk,
            "head": head,
            "num_classes": num_classes,
            "freeze_trunk": bool(c.FREEZE_TRUNK),
            "feature_layers": tuple(cfg.CLASSIFICATION.LAYERS),
            "pixel_mean": list(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": list(cfg.MODEL.PIXEL_STD),
            "multi_label": _is_multi_label(cfg),
        }

    @property
    def device(self):
        return self.pixel_mean.device

    def train(self, mode=True):
        super().train(mode)
        if self.freeze_trunk:
            self.trunk.eval()  # frozen BN statistics
        return self

    def preprocess(self, batched_inputs):
        images = torch.stack([x["image"] for x in batched_inputs]).to(
            self.device, non_blocking=True
        )
        return (images.float() - self.pixel_mean) / self.pixel_std  # Nx3xHxW

    def forward(self, batched_inputs):
        images = self.preprocess(batched_inputs)
        if not self.training:
            return self.inference(images)
        with torch.set_grad_enabled(not self.freeze_trunk):
            features = self.trunk(images)  # NxD
        if isinstance(self.head, CoreTuningHead):
            labels = torch.tensor([int(x["label"]) for x in batched_inputs], device=self.device)
            return self.head(features, labels)
        logits = self.head(features)  # NxC
        if self.multi_label:
            targets = multi_label_targets(batched_inputs, self.num_classes, self.device)
            known = targets >= 0
            loss = F.binary_cross_entropy_with_logits(logits[known], targets[known].float())
        else:
            labels = torch.tensor([int(x["label"]) for x in batched_inputs], device=self.device)
            loss = F.cross_entropy(logits, labels)
        return {"loss_cls": loss}

    def inference(self, images):
        layers = (
            self.feature_layers
            if "res5" in self.feature_layers
            else self.feature_layers + ("res5",)
        )
        stages = pooled_stage_features(self.trunk.resnet, images, layers)
        logits = self.head(stages["res5"])  # NxC
        return [
            {
                "logits": logits[i],
                "features": {name: stages[name][i] for name in self.feature_layers},
            }
            for i in range(images.shape[0])
        ]
