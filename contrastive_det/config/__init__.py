from .defaults import add_contrastive_det_config, get_cfg
from .renamed import RENAMED_KEYS, upgrade_renamed_keys

__all__ = ["add_contrastive_det_config", "get_cfg", "RENAMED_KEYS", "upgrade_renamed_keys"]
