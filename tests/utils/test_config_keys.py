"""utils/config_keys.py: dotted keys, and the one writer of command-line override values
(cli_value)."""

import pytest

from contrastive_det.config import get_cfg
from contrastive_det.utils.config_keys import cli_value, get_key, nest_keys, set_key


@pytest.mark.parametrize(
    "key, value",
    [
        ("MODEL.PIXEL_MEAN", [123.675, 116.28, 103.53]),
        (
            "MODEL.PIXEL_STD",
            [58.3951234, 57.12, 57.375],
        ),  # floats round-trip (a "{:g}" writer gives 58.3951)
        ("SOLVER.BASE_LR", 0.0012345678),
        ("SOLVER.STEPS", [7]),  # one element: still a sequence, not the int 7
        ("SOLVER.STEPS", []),
        ("MODEL.ANCHOR_GENERATOR.SIZES", [[16], [32, 64]]),
        ("DATASETS.TRAIN", ["a_train", "b_train"]),  # strings in a sequence stay strings
        ("MODEL.RESNETS.STRIDE_IN_1X1", False),
        ("MODEL.RESNETS.DEPTH", 18),
        ("INPUT.FORMAT", "BGR"),
        ("MODEL.WEIGHTS", "/models/x y.pkl"),
    ],
)
def test_cli_value_is_decoded_by_yacs_back_to_the_value(key, value):
    cfg = get_cfg()
    cfg.merge_from_list([key, cli_value(value)])
    assert plain(get_key(cfg, key)) == value


def plain(value):
    """Tuples (yacs) as lists, nested too."""
    return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value


# run digests hash the commands: a change redoes runs
def test_cli_value_keeps_the_study_command_format():
    assert (
        cli_value([1, 2]) == "(1, 2, )"
        and cli_value(["a"]) == "('a', )"
        and cli_value(None) == "None"
    )
    assert cli_value(True) == "True" and cli_value(0.5) == "0.5" and cli_value("x") == "x"


def test_nest_and_set_keys():
    nested = nest_keys({"SOLVER.BASE_LR": 0.1, "SOLVER.STEPS": [3], "SEED": 1})
    assert nested == {"SOLVER": {"BASE_LR": 0.1, "STEPS": [3]}, "SEED": 1}
    set_key(nested, "SOLVER.BASE_LR", 0.2)
    assert (
        get_key(nested, "SOLVER.BASE_LR") == 0.2
        and get_key(nested, "MODEL.X", default=None) is None
    )
    with pytest.raises(KeyError, match="MODEL.X: no 'MODEL'"):
        get_key(nested, "MODEL.X")
