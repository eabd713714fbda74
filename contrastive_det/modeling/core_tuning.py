"""
Core-tuning's classification head (Zhang et al., "Unleashing the Power of Contrastive
Self-Supervised Visual Models via Contrast-Regularized Fine-Tuning", NeurIPS 2021; docs/design.md
section 5).

The head sits on the trunk's pooled features: a bias-free linear classifier and a contrastive head
(Linear -> ReLU -> Linear, L2-normalised). In training it builds the Core-tuning batch (hard
negatives by mixup with a shuffled batch, hard positives by mixing each anchor's hardest positive
with its hardest negative), trains the classifier on it with soft targets and adds the focal SupCon
term on the projections. The pure parts live in :mod:`contrastive_det.losses.core_tuning`; the only
randomness (the shuffle and the mixing weights) comes from torch's global RNG, which the trainer
seeds per step.

Where this head differs from the authors' code (Core-tuning.py of github.com/Vanint/Core-tuning):

- The original features stay attached to the graph. Their ``feature_mixup`` starts the batch with
  ``features.clone().detach().requires_grad_(True)``, so the trunk learns only through the mixed
  features; the paper's objective has no such stop-gradient.
- Hard pairs are mined with the masked entries really excluded and the anchor itself as fallback
  (see :func:`~contrastive_det.losses.core_tuning.hard_pair_indices`); their ``argmin`` / ``argmax``
  over 0-filled matrices picks a masked entry whenever every cosine is >= 0.
- Soft targets become contrastive class ids by comparing rows (``soft_label_ids``), not through
  ``10**arange(C)``, which overflows int64 for C >= 19 and, in float32, merges distinct rows for
  much smaller C.
- No NaN guard by printing and replacing: an anchor without positive is excluded from the mean and
  a batch without any positive gives 0 (connected to the graph).
- The shuffle and the mixing weights come from torch's global RNG (theirs: Python's ``random`` and
  NumPy's global RNG), drawn on the CPU so that a seed gives the same draws on every device.

Kept as in their code: the classifier has no bias; the contrastive head has no batch norm (two
biased Linear layers and a ReLU); lambda ~ Beta(alpha, alpha) per sample, clipped from below at
``min_shuffled_weight`` (0.8) for the hard negatives, where it weighs the shuffled side, and
unclipped for the hard positives, where it weighs the hardest positive; mixtures keep their mixed
soft targets in both losses; the focal weight (1 - p) is not detached; by default the focal term
is normalised per anchor by the number of contrast entries (their ``.mean(1)``), the scale that
their eta (0.1 in their README) was tuned with (``con_normalization``).

The ablation of their paper's table "CE + contrastive" (neither hard-pair mining nor the smooth
decision boundary) is ``hard_pairs=False, smooth_boundary=False`` (config keys
``CLASSIFICATION.CORE_TUNING.HARD_PAIRS`` / ``SMOOTH_BOUNDARY``): cross-entropy + eta x focal SupCon
on the batch's own samples. Each flag turns off only its own part; both True (the default) is
Core-tuning exactly as above.
"""

import torch
from detectron2.utils import comm
from torch import nn
from torch.nn import functional as F

from ..losses.core_tuning import (
    NORMALIZATIONS,
    core_tuning_mixup,
    focal_supcon_loss,
    soft_label_ids,
    soft_target_cross_entropy,
)
from ..losses.numerics import logit_dtype
from ..utils import collectives
from .distributed import gather_no_grad, gather_with_grad
from .heads import ProjectionMLP

__all__ = ["CoreTuningHead", "sample_mix_weights", "check_flags"]


def check_flags(owner, **flags):
    """Raise ValueError naming ``owner`` unless every flag (``hard_pairs``, ``smooth_boundary``) is
    a bool."""
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ValueError(f"{owner}: {name} must be True or False, got {value!r}")


def sample_mix_weights(n, alpha, min_weight=0.0, *, device=None):
    """Mixing weights lambda_i ~ Beta(alpha, alpha), i = 1..n, clipped from below at ``min_weight``.

    Drawn on the CPU from torch's global RNG (so ``torch.manual_seed`` fixes them whatever the
    device), then moved to ``device``. Core-tuning's hard negatives use ``min_weight`` 0.8: values
    below it become exactly 0.8 (with alpha 1, 80% of them), as in the authors' code.

    Shape:
        - Output: n, float32.

    Raises:
        ValueError: alpha <= 0, min_weight outside [0, 1] or n < 0.

    Examples:
        >>> lam = sample_mix_weights(256, alpha=1.0, min_weight=0.8)  # all >= 0.8
    """
    if not alpha > 0:
        raise ValueError(f"sample_mix_weights: alpha must be > 0, got {alpha}")
    if not 0.0 <= min_weight <= 1.0:
        raise ValueError(f"sample_mix_weights: min_weight must be in [0, 1], got {min_weight}")
    if n < 0:
        raise ValueError(f"sample_mix_weights: n must be >= 0, got {n}")
    concentration = torch.tensor(float(alpha))
    # lam: n, drawn from the CPU global RNG
    lam = torch.distributions.Beta(concentration, concentration).sample((int(n),))
    return lam.clamp_min(min_weight).to(device) if device is not None else lam.clamp_min(min_weight)


class CoreTuningHead(nn.Module):
    """Core-tuning head: bias-free linear classifier + contrastive head, with Core-tuning's training
    losses.

    ``forward(features, labels)`` in training mode returns ``{"loss_cls", "loss_con"}``:

    1. draw a permutation of the batch and lambdas (``sample_mix_weights``; hard negatives clipped
       at ``min_shuffled_weight``, hard positives not) from torch's global RNG;
    2. build [original; mixed negatives; mixed positives] features (3N) and soft targets with
       :func:`~contrastive_det.losses.core_tuning.core_tuning_mixup`;
    3. ``loss_cls`` = soft-target cross-entropy of the classifier on the 3N rows (the smooth
       decision boundary);
    4. ``loss_con`` = ``eta`` * focal SupCon of the 3N L2-normalised projections, positives = rows
       with identical soft targets (``soft_label_ids``).

    Ablations (Core-tuning's "CE + contrastive" row is both off): ``smooth_boundary=False`` makes
    ``loss_cls`` the cross-entropy of the classifier on the N real rows with their labels only;
    ``hard_pairs=False`` makes ``loss_con`` ``eta`` * focal SupCon of the N real rows' projections,
    positives = same label. Steps 1-2 (the draws and the mixup) run only when a flag is on.

    In eval mode, or without labels, it returns the classifier's logits.

    With several processes the batch is the global one: features and labels are gathered from
    every process (gradients flow back to each process's rows), the draws of the main process are
    used everywhere, and every process computes the same losses; with DDP averaging the parameter
    gradients, a run on W processes of N images equals one process on the W*N images. (The
    authors' code mixes within each GPU's share of the batch; that would make the result depend on
    the number of processes.)

    Reference: Zhang et al., "Unleashing the Power of Contrastive Self-Supervised Visual Models via
    Contrast-Regularized Fine-Tuning", NeurIPS 2021. See the module docstring for where this
    differs from the authors' code.

    Args:
        in_dim: feature dimension (2048 for a ResNet-50).
        num_classes: C (any number: no ``10**arange(C)`` encoding).
        hidden_dim, proj_dim: contrastive head in_dim -> hidden_dim -> ReLU -> proj_dim.
        eta: weight of the contrastive term.
        alpha: lambda ~ Beta(alpha, alpha).
        temperature: T of the focal SupCon term.
        min_shuffled_weight: smallest weight of the shuffled side of a hard negative.
        con_normalization: "batch" (default, the authors' code: per-anchor sum over positives
            divided by the 3N contrast entries) or "positives" (SupCon's mean over positives; about
            3N / |P| times larger, so scale ``eta`` down accordingly).
        hard_pairs: the contrastive term over the mixed hard negatives and positives too (True,
            Core-tuning) or over the N real rows only (False).
        smooth_boundary: the classifier trained on the mixtures with their soft targets too (True,
            Core-tuning) or by cross-entropy on the N real rows only (False).

    Shape:
        - features: NxD (D = in_dim); labels: N integer classes in [0, C).
        - Output: training, a dict of two scalar tensors; otherwise NxC logits.

    Layout (``state_dict`` keys): ``classifier.weight``; ``contrastor.mlp.0`` Linear, ReLU,
    ``contrastor.mlp.2`` Linear (see :class:`~contrastive_det.modeling.heads.ProjectionMLP`).

    Raises:
        ValueError: a hyper-parameter is out of range or a flag is not a bool (constructor);
        features
            are not NxD or the label count differs from N (forward).

    Examples:
        >>> head = CoreTuningHead(2048, 10)
        >>> losses = head(
        ...     torch.randn(32, 2048), torch.randint(0, 10, (32,))
        ... )  # {"loss_cls", "loss_con"}
        >>> logits = head.eval()(torch.randn(4, 2048))  # 4x10
    """

    def __init__(
        self,
        in_dim,
        num_classes,
        *,
        hidden_dim=2048,
        proj_dim=256,
        eta=0.1,
        alpha=1.0,
        temperature=0.07,
        min_shuffled_weight=0.8,
        con_normalization="batch",
        hard_pairs=True,
        smooth_boundary=True,
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"CoreTuningHead: num_classes must be >= 1, got {num_classes}")
        if eta < 0:
            raise ValueError(f"CoreTuningHead: eta must be >= 0, got {eta}")
        if not alpha > 0:
            raise ValueError(f"CoreTuningHead: alpha must be > 0, got {alpha}")
        if not temperature > 0:
            raise ValueError(f"CoreTuningHead: temperature must be > 0, got {temperature}")
        if not 0.0 <= min_shuffled_weight <= 1.0:
            raise ValueError(
                f"CoreTuningHead: min_shuffled_weight must be in [0, 1], got {min_shuffled_weight}"
            )
        if con_normalization not in NORMALIZATIONS:
            raise ValueError(
                f"CoreTuningHead: con_normalization must be one of {NORMALIZATIONS}, got "
                f"{con_normalization!r}"
            )
        check_flags("CoreTuningHead", hard_pairs=hard_pairs, smooth_boundary=smooth_boundary)
        self.num_classes = int(num_classes)
        self.eta = float(eta)
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.min_shuffled_weight = float(min_shuffled_weight)
        self.con_normalization = con_normalization
        self.hard_pairs, self.smooth_boundary = hard_pairs, smooth_boundary
        self.classifier = nn.Linear(in_dim, num_classes, bias=False)
        self.contrastor = ProjectionMLP(in_dim, hidden_dim, proj_dim, num_layers=2, use_bn=False)

    def project(self, features):
        """L2-normalised contrastive projections: NxD -> Nxproj_dim."""
        return F.normalize(self.contrastor(features), dim=1)

    def forward(self, features, labels=None):
        if features.dim() != 2:
            raise ValueError(
                f"CoreTuningHead expects features NxD, got shape {tuple(features.shape)}"
            )
        if not self.training or labels is None:
            return self.classifier(features)  # NxC
        device = features.device
        labels = labels.reshape(-1).to(device)
        if labels.numel() != features.shape[0]:
            raise ValueError(
                f"CoreTuningHead: {labels.numel()} labels for {features.shape[0]} features"
            )
        # the global batch: with W processes, mining and both terms run over all W*N rows on every
        # process (gradients flow back to each process's rows), as one process on the whole batch
        features = gather_with_grad(features)  # features: (W*N)xD
        labels = gather_no_grad(labels)  # labels: W*N
        n = features.shape[0]
        if self.hard_pairs or self.smooth_boundary:  # the mixup batch (no draws when both are off)
            perm = torch.randperm(n).to(device)  # W*N, CPU global RNG
            shuffled_weight = sample_mix_weights(
                n, self.alpha, self.min_shuffled_weight, device=device
            )  # W*N
            positive_weight = sample_mix_weights(n, self.alpha, 0.0, device=device)  # W*N
            if comm.get_world_size() > 1:  # every process mixes with the main process's draws
                for drawn in (perm, shuffled_weight, positive_weight):
                    collectives.broadcast(drawn, src=0)
            feats, targets = core_tuning_mixup(
                features, labels, self.num_classes, perm, shuffled_weight, positive_weight
            )  # feats: 3NxD, targets: 3NxC
        if self.smooth_boundary:
            loss_cls = soft_target_cross_entropy(self.classifier(feats), targets)
        else:  # plain cross-entropy on the real rows
            one_hot = F.one_hot(labels, self.num_classes).to(logit_dtype(features))  # NxC
            loss_cls = soft_target_cross_entropy(self.classifier(features), one_hot)
        if self.hard_pairs:
            z, ids = self.project(feats), soft_label_ids(targets)  # z: 3Nxproj_dim, ids: 3N
        else:  # the real rows only, positives = same label
            z, ids = self.project(features), labels  # z: Nxproj_dim, ids: N
        loss_con = focal_supcon_loss(z, ids, self.temperature, normalization=self.con_normalization)
        return {"loss_cls": loss_cls, "loss_con": self.eta * loss_con}

    def extra_repr(self):
        return (
            f"num_classes={self.num_classes}, eta={self.eta}, alpha={self.alpha}, "
            f"temperature={self.temperature}, min_shuffled_weight={self.min_shuffled_weight}, "
            f"con_normalization={self.con_normalization!r}, hard_pairs={self.hard_pairs}, "
            f"smooth_boundary={self.smooth_boundary}"
        )
