"""
Checkpointing that never leaves a half-written file behind, records the run's seed and settings,
and loads only what a checkpoint of ours can hold.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Tuple

import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode

from ..utils.atomic import atomic_open, remove_stale_temporaries

#: settings a resumed run may change: the machine's and the launcher's (device, workers; norms
#: become BN on one process, see resumable_config), where the run writes, the seed (a resumed run
#: adopts its checkpoint's), and how often it checkpoints (a resume is exact whatever the period)
RESUMABLE_CHANGES = (
    "OUTPUT_DIR",
    "SEED",
    "MODEL.DEVICE",
    "DATALOADER.NUM_WORKERS",
    "SOLVER.CHECKPOINT_PERIOD",
    "DETERMINISTIC",
)


class CheckpointReadError(RuntimeError):
    """A checkpoint file cannot be read (truncated, not a PyTorch file, or holding unsafe
    objects)."""


def flat_config(cfg: CfgNode) -> dict[str, Any]:
    """``{dotted key: value}`` of every leaf of a config (tuples as lists), in key order."""
    out = {}

    def walk(node, prefix):
        for key in sorted(node):
            value = node[key]
            if isinstance(value, dict):  # a CfgNode is a dict
                walk(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = json.loads(json.dumps(value, default=str))

    walk(cfg, "")
    return out


def resumable_config(cfg: CfgNode) -> dict[str, Any]:
    """The settings a resumed run must share with its checkpoint: :func:`flat_config` less
    :data:`RESUMABLE_CHANGES` and every ``NORM`` key (SyncBN flavours follow the process count)."""
    return {
        k: v
        for k, v in flat_config(cfg).items()
        if k not in RESUMABLE_CHANGES and not k.endswith(".NORM")
    }


def load_checkpoint(path: str, mmap: bool = False) -> dict[str, Any]:
    """
    A checkpoint file of ours, read with ``torch.load(weights_only=True)`` (tensors, numbers,
    strings and containers only: a file that needs arbitrary unpickling is not one of ours).

    Raises:
        CheckpointReadError: naming the file, when it is truncated, not a PyTorch file or unsafe.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001  (zip reader errors, unpickling errors, EOFError, ...)
        size = os.path.getsize(path) if os.path.exists(path) else 0
        raise CheckpointReadError(
            f"Checkpoint {path} ({size} bytes) cannot be read: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}. It is truncated (a copy or a disk that "
            "filled up?), not a PyTorch checkpoint, or holds objects that weights_only loading "
            "refuses. Delete it, or write the name of an earlier model_*.pth of the same folder "
            "into its last_checkpoint file, then resume again."
        ) from None


class AtomicDetectionCheckpointer(DetectionCheckpointer):
    """
    :class:`DetectionCheckpointer` whose ``save`` writes ``<name>.pth`` and the
    ``last_checkpoint`` tag through a temporary file and a rename: an interrupted save (even
    ``kill -9``) leaves the previous checkpoint and tag intact, so ``--resume`` always finds a
    loadable file, and the next checkpointer on that folder removes the temporary file such a kill
    left (:func:`~contrastive_det.utils.atomic.remove_stale_temporaries`). ``extra_state`` (e.g.
    ``{"seed": 3, "config": {...}}``) is stored in every
    checkpoint; a resumed run reads it back with :func:`read_resume_state`.

    Loading ``.pth`` files uses ``weights_only=True`` and names the file when it cannot be read;
    ``--resume`` only follows a ``last_checkpoint`` tag to a file inside ``save_dir``. detectron2
    ``.pkl`` files (with ``matching_heuristics``) load as in detectron2.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        save_dir: str = "",
        *,
        extra_state: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        super().__init__(model, save_dir, **kwargs)
        self.extra_state = dict(extra_state or {})
        if self.save_dir and self.save_to_disk:
            stale = remove_stale_temporaries(self.save_dir)
            if stale:
                self.logger.info(
                    f"Removed {len(stale)} temporary file(s) of an interrupted save in "
                    f"{self.save_dir}: {', '.join(stale[:4])}{' ...' if len(stale) > 4 else ''}"
                )

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(self.extra_state)
        data.update(kwargs)

        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        with atomic_open(save_file, "wb") as f:
            torch.save(data, f)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        with atomic_open(os.path.join(self.save_dir, "last_checkpoint"), "w") as f:
            f.write(last_filename_basename)

    def get_checkpoint_file(self) -> str | None:
        return last_checkpoint_path(self.save_dir)

    def _torch_load(self, f):
        return load_checkpoint(f)


def last_checkpoint_path(output_dir: str) -> str | None:
    """
    The file named by ``output_dir/last_checkpoint`` (what ``--resume`` loads), or None without a
    tag.

    Raises:
        ValueError: the tag names a file outside ``output_dir`` (an absolute path, ``..``).
        FileNotFoundError: the file it names does not exist.
    """
    tag = os.path.join(output_dir, "last_checkpoint")
    if not os.path.isfile(tag):
        return None
    with open(tag) as f:
        name = f.read().strip()
    folder = os.path.realpath(output_dir)
    path = os.path.realpath(os.path.join(output_dir, name))
    if not name or os.path.dirname(path) != folder:
        raise ValueError(
            f"{tag} names {name!r}, which is not a file of {output_dir}; --resume only loads "
            f"checkpoints of "
            "the run's own OUTPUT_DIR (write the name of one of its model_*.pth files into the tag)"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{tag} names {name}, which does not exist in {output_dir}; cannot resume"
        )
    return os.path.join(output_dir, name)


# (checkpoint path, iteration, seed, resumable config): see read_resume_state
ResumeState = Tuple[str, Optional[int], Optional[int], Optional[Dict[str, Any]]]


def read_resume_state(output_dir: str) -> ResumeState | None:
    """
    ``(path, iteration, seed, config)`` of the checkpoint ``--resume`` would load from
    ``output_dir``, or None when there is none. ``seed`` and ``config`` (:func:`resumable_config`)
    are None for checkpoints written before they were recorded.

    Raises:
        CheckpointReadError, ValueError, FileNotFoundError: see :func:`load_checkpoint` and
            :func:`last_checkpoint_path`.
    """
    path = last_checkpoint_path(output_dir)
    if path is None:
        return None
    ckpt = load_checkpoint(path, mmap=True)  # memory-mapped: only the small entries are read
    return path, ckpt.get("iteration"), ckpt.get("seed"), ckpt.get("config")
