"""Checkpointing that never leaves a half-written file behind."""
import os

import torch

from detectron2.checkpoint import DetectionCheckpointer

from ..utils.atomic import atomic_open


class AtomicDetectionCheckpointer(DetectionCheckpointer):
    """
    :class:`DetectionCheckpointer` whose ``save`` writes ``<name>.pth`` and the
    ``last_checkpoint`` tag through a temporary file and a rename: an interrupted save leaves the
    previous checkpoint and tag intact, so ``--resume`` always finds a loadable file.
    Loading (including detectron2 ``.pkl`` files with ``matching_heuristics``) is unchanged.
    """

    def save(self, name, **kwargs):
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
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
