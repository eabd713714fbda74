from .defaults import add_contrastive_det_config, get_cfg

__all__ = ["add_contrastive_det_config", "get_cfg"]
