"""The batch-norm flavours that the trunk and the projection heads accept, by detectron2 name.

``MODEL.TV_RESNET.NORM`` takes detectron2's names of batch norms (``detectron2.layers.get_norm``):

- ``"BN"``: per-process BatchNorm;
- ``"SyncBN"`` / ``"nnSyncBN"``: ``torch.nn.SyncBatchNorm`` (statistics over the global batch; needs
  CUDA when several processes run);
- ``"naiveSyncBN"`` / ``"naiveSyncBN_N"``: detectron2's ``NaiveSyncBatchNorm`` (an all-reduce of the
  statistics, works on CPU over gloo; ``engine.setup.adapt_norms`` picks it for several CPU
  processes).

All of them have BatchNorm's parameters and buffers (weight, bias, running_mean, running_var,
num_batches_tracked), so a checkpoint written with one loads into a model built with another and the
trunk always exports in torchvision layout. Norms without running statistics (GN, FrozenBN, LN) are
refused for that reason.
"""

from torch import nn

from detectron2.layers import NaiveSyncBatchNorm, get_norm

__all__ = ["BATCH_NORMS", "NaiveSyncBatchNorm1d", "batch_norm_2d", "batch_norm_1d"]

BATCH_NORMS = ("BN", "SyncBN", "nnSyncBN", "naiveSyncBN", "naiveSyncBN_N")


def _check(norm, key):
    if norm not in BATCH_NORMS:
        raise ValueError(
            f"{key} must be one of {', '.join(repr(n) for n in BATCH_NORMS)}, got {norm!r}"
        )


class NaiveSyncBatchNorm1d(NaiveSyncBatchNorm):
    """detectron2's ``NaiveSyncBatchNorm`` for NxC inputs (projection heads): statistics all-reduced
    over the processes in training, plain BatchNorm in one process or in eval mode."""

    def forward(self, input):
        if input.dim() != 2:
            raise ValueError(
                f"NaiveSyncBatchNorm1d expects NxC input, got shape {tuple(input.shape)}"
            )
        return super().forward(input[:, :, None, None])[:, :, 0, 0]  # NxC -> NxCx1x1 -> NxC


def batch_norm_2d(norm, key="MODEL.TV_RESNET.NORM"):
    """A ``channels -> module`` factory for images (NxCxHxW), as torchvision's ``norm_layer``
    expects."""
    _check(norm, key)
    return lambda channels: get_norm(norm, channels)


def batch_norm_1d(norm, channels, key="MODEL.TV_RESNET.NORM"):
    """The batch norm ``norm`` for NxC features."""
    _check(norm, key)
    if norm == "BN":
        return nn.BatchNorm1d(channels)
    if norm in ("SyncBN", "nnSyncBN"):
        return nn.SyncBatchNorm(channels)  # accepts NxC
    return NaiveSyncBatchNorm1d(channels, stats_mode="N" if norm == "naiveSyncBN_N" else "")
