"""Checkpointing that never leaves a half-written file behind, and records the run's seed."""
import os

import torch

from detectron2.checkpoint import DetectionCheckpointer

from ..utils.atomic import atomic_open


class AtomicDetectionCheckpointer(DetectionCheckpointer):
    """
    :class:`DetectionCheckpointer` whose ``save`` writes ``<name>.pth`` and the
    ``last_checkpoint`` tag through a temporary file and a rename: an interrupted save (even
    ``kill -9``) leaves the previous checkpoint and tag intact, so ``--resume`` always finds a
    loadable file. ``extra_state`` (e.g. ``{"seed": 3}``) is stored in every checkpoint; a
    resumed run reads its seed back with :func:`read_resume_state`.
    Loading (including detectron2 ``.pkl`` files with ``matching_heuristics``) is unchanged.
    """

    def __init__(self, model, save_dir="", *, extra_state=None, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.extra_state = dict(extra_state or {})

    def save(self, name, **kwargs):
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

    def tag_last_checkpoint(self, last_filename_basename):
        with atomic_open(os.path.join(self.save_dir, "last_checkpoint"), "w") as f:
            f.write(last_filename_basename)


def last_checkpoint_path(output_dir):
    """The file named by ``output_dir/last_checkpoint`` (what ``--resume`` loads), or None."""
    tag = os.path.join(output_dir, "last_checkpoint")
    if not os.path.isfile(tag):
        return None
    with open(tag) as f:
        name = f.read().strip()
    path = os.path.join(output_dir, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{tag} names {name}, which does not exist in {output_dir}; cannot resume")
    return path


def read_resume_state(output_dir):
    """
    ``(path, iteration, seed)`` of the checkpoint ``--resume`` would load from ``output_dir``, or
    None when there is none. ``seed`` is None for checkpoints written before seeds were recorded.
    The file is memory-mapped: only the two small entries are read.
    """
    path = last_checkpoint_path(output_dir)
    if path is None:
        return None
    ckpt = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    return path, ckpt.get("iteration"), ckpt.get("seed")
