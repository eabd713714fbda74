"""--resume --allow-config-change: a change the checkpoint's optimizer state would silently undo is
refused; the schedule's length may change."""

import pytest

from contrastive_det.config import get_cfg
from contrastive_det.engine.checkpoint import resumable_config
from contrastive_det.engine.defaults import OPTIMIZER_STATE_KEYS, check_resume_config


def _state(cfg):
    return ("/run/model_0000004.pth", 4, 0, resumable_config(cfg))


@pytest.mark.parametrize("key,value", [("BASE_LR", 0.1), ("WEIGHT_DECAY", 0.01), ("MOMENTUM", 0.5)])
def test_optimizer_settings_cannot_change_on_resume_even_when_allowed(key, value):
    before = get_cfg()
    now = before.clone()
    setattr(now.SOLVER, key, value)
    with pytest.raises(ValueError, match=f"SOLVER.{key} cannot change on resume.*MODEL.WEIGHTS"):
        check_resume_config(now, _state(before), allow_change=True)
    with pytest.raises(ValueError, match="add --allow-config-change"):
        check_resume_config(now, _state(before), allow_change=False)


def test_the_schedule_may_change_when_allowed():
    before = get_cfg()
    now = before.clone()
    now.SOLVER.MAX_ITER, now.SOLVER.STEPS = 9000, (6000,)
    message = check_resume_config(now, _state(before), allow_change=True)
    assert "SOLVER.MAX_ITER: 40000 in the checkpoint, 9000 now" in message


def test_every_listed_key_exists_in_the_defaults():
    flat = resumable_config(get_cfg())
    assert all(k in flat for k in OPTIMIZER_STATE_KEYS)
