"""
Config keys that moved, read under their old names for one version.

Each old key stays in the default config with the value ``None`` (yacs then accepts any value for
it). After a config file and the command line are merged, :func:`upgrade_renamed_keys` moves a value
given under an old name to its new key, logs a deprecation message naming both, and resets the old
key, so a run's saved config.yaml holds the new name only. The old name wins over the new key: only
a user's own (older) config or command line gives it, which is more specific than the shipped
configs it inherits from; the message names the value it replaced. A value of the wrong type names
both keys.
"""

import logging

from yacs.config import CfgNode

from ..utils.config_keys import get_key, set_key

__all__ = ["RENAMED_KEYS", "REMOVED_IN", "add_renamed_keys", "upgrade_renamed_keys"]

REMOVED_IN = "0.3.0"
# old key -> new key (moved in 0.2.0: each method's keys in its own node)
RENAMED_KEYS = {
    "MODEL.CONTRASTIVE.INSTANCE_WEIGHT": "MODEL.JOINT.INSTANCE_WEIGHT",
    "MODEL.CONTRASTIVE.SUPCON_WEIGHT": "MODEL.JOINT.SUPCON_WEIGHT",
    "MODEL.CONTRASTIVE.SCAN_NUM_NEIGHBORS": "MODEL.SCAN.NUM_NEIGHBORS",
    "MODEL.CONTRASTIVE.SCAN_NON_NEIGHBOR": "MODEL.SCAN.NON_NEIGHBOR",
}


def add_renamed_keys(cfg: CfgNode) -> CfgNode:
    """The old names, each ``None`` (= not given). Call after the new keys exist."""
    for old in RENAMED_KEYS:
        set_key(cfg, old, None)
    return cfg


def upgrade_renamed_keys(
    cfg: CfgNode, defaults: CfgNode, logger: logging.Logger | None = None
) -> CfgNode:
    """
    Move the values given under old names to their new keys (see the module docstring).
    ``defaults``: the default config (:func:`contrastive_det.config.get_cfg`), to tell a new key the
    user set.
    """
    logger = logger or logging.getLogger(__name__)
    for old, new in RENAMED_KEYS.items():
        value = get_key(cfg, old)
        if value is None:
            continue
        current, default = get_key(cfg, new), get_key(defaults, new)
        try:
            value = type(default)(value) if not isinstance(value, type(default)) else value
        except (TypeError, ValueError):
            raise ValueError(
                f"{old} (deprecated, now {new}): expected a {type(default).__name__}, got {value!r}"
            ) from None
        replaced = f", replacing {current!r}" if current != value else ""
        logger.warning(
            f"{old} is deprecated and will be removed in {REMOVED_IN}: it now reads {new} "
            f"(set to {value!r}{replaced}); rename it in your config"
        )
        set_key(cfg, new, value)
        set_key(cfg, old, None)
    return cfg
