"""
Checkpoint conversion: any common ResNet checkpoint -> canonical torchvision backbone (the hub)
-> detectron2 ``.pkl`` for ``MODEL.WEIGHTS`` (and back), with a coverage report and a numeric
proof. Readers (one per input layout) and writers (one per output layout) are tables:
``READERS`` / :func:`register_reader`, ``WRITERS`` / :func:`register_writer`. The CLI is
``tools/convert_to_detectron2.py``; detection runs call :func:`convert_weights_for_detection`.

    from contrastive_det.convert import convert_checkpoint, save_canonical, load_canonical
    save_canonical("r50.pth", model.state_dict(), arch="resnet50", method="mocov2")
    convert_checkpoint("r50.pth", "r50.pkl", log=print)
"""

from .canonical import (
    CANONICAL_FORMAT,
    TORCHVISION_PIXEL_MEAN,
    TORCHVISION_PIXEL_STD,
    load_canonical,
    save_canonical,
)
from .checkpoint_io import load_checkpoint_file
from .d2config import config_overrides, detectron2_config
from .errors import (
    AmbiguousCheckpointError,
    ConversionError,
    UnsafeCheckpointError,
    VerificationError,
)
from .detection_weights import convert_weights_for_detection
from .extraction import Extraction
from .pipeline import ConversionResult, convert_checkpoint
from .readers import FORMAT_ALIASES, READERS, read_checkpoint, register_reader
from .resnet_keys import (
    d2_to_tv_key,
    detectron2_to_torchvision,
    infer_depth,
    torchvision_to_detectron2,
    tv_to_d2_key,
)
from .verify import CoverageReport, VerificationResult, check_coverage, verify_conversion
from .writers import (
    WRITERS,
    ConvertedBackbone,
    Writer,
    detectron2_payload,
    get_writer,
    register_writer,
    write_detectron2,
)

__all__ = [
    "CANONICAL_FORMAT",
    "TORCHVISION_PIXEL_MEAN",
    "TORCHVISION_PIXEL_STD",
    "save_canonical",
    "load_canonical",
    "load_checkpoint_file",
    "convert_checkpoint",
    "ConversionResult",
    "read_checkpoint",
    "register_reader",
    "READERS",
    "FORMAT_ALIASES",
    "Extraction",
    "check_coverage",
    "CoverageReport",
    "verify_conversion",
    "VerificationResult",
    "torchvision_to_detectron2",
    "detectron2_to_torchvision",
    "tv_to_d2_key",
    "d2_to_tv_key",
    "infer_depth",
    "detectron2_payload",
    "write_detectron2",
    "WRITERS",
    "Writer",
    "ConvertedBackbone",
    "register_writer",
    "get_writer",
    "convert_weights_for_detection",
    "detectron2_config",
    "config_overrides",
    "ConversionError",
    "AmbiguousCheckpointError",
    "UnsafeCheckpointError",
    "VerificationError",
]
