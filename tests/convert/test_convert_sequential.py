"""nn.Sequential ResNet trunks (lightly, tutorials) convert with full coverage and numeric proof."""

import pytest
import torch
import torchvision
from torch import nn

from contrastive_det.convert import AmbiguousCheckpointError, convert_checkpoint
from resnet_checkpoints import random_resnet

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def sequential_trunk(depth, seed):
    """lightly's pattern: ``nn.Sequential(*list(resnet.children())[:-1])`` of a random ResNet."""
    resnet = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    resnet.load_state_dict(random_resnet(depth, seed=seed))
    return nn.Sequential(*list(resnet.children())[:-1])


class LightlySimCLR(nn.Module):
    """Like lightly's examples: a Sequential trunk beside a projection head (and a momentum
    copy)."""

    def __init__(self, depth, seed=0, momentum=False):
        super().__init__()
        self.backbone = sequential_trunk(depth, seed)
        dim = 2048 if depth >= 50 else 512
        self.projection_head = nn.Sequential(nn.Linear(dim, 64), nn.ReLU(), nn.Linear(64, 16))
        if momentum:
            self.backbone_momentum = sequential_trunk(depth, seed + 1)


class LitModule(nn.Module):
    """A Lightning-style wrapper (self.model): keys under ``model.backbone.``."""

    def __init__(self, depth):
        super().__init__()
        self.model = LightlySimCLR(depth, seed=3)


def res5_of_trunk(trunk, x):
    with torch.no_grad():
        return trunk.eval()[:8](x)  # conv1 .. layer4, before the average pool


@pytest.mark.parametrize(
    "depth,layout",
    [(18, "backbone."), (50, "backbone."), (18, "model.backbone."), (18, "bare"), (18, "momentum")],
)
def test_sequential_trunk_converts_and_matches_the_trunk(depth, layout, tmp_path, capsys):
    if layout == "model.backbone.":
        module = LitModule(depth)
        trunk, ckpt = module.model.backbone, {"state_dict": module.state_dict(), "epoch": 9}
    elif layout == "bare":
        trunk = sequential_trunk(depth, seed=5)
        ckpt = trunk.state_dict()
    else:
        module = LightlySimCLR(depth, seed=depth, momentum=layout == "momentum")
        trunk, ckpt = module.backbone, module.state_dict()
    src, out = tmp_path / "lightly.pth", tmp_path / "out.pkl"
    torch.save(ckpt, src)

    result = convert_checkpoint(src, out, log=print)
    printed = capsys.readouterr().out

    assert result.format == "sequential" and result.depth == depth
    cov = result.coverage
    assert cov.ok and len(cov.matched) == cov.expected
    assert f"coverage: {cov.expected}/{cov.expected}" in printed
    if layout != "bare":
        assert any(label.endswith("projection_head.*") for label in cov.dropped.values()), (
            cov.dropped
        )
    if layout == "momentum":
        assert "backbone_momentum.*" in cov.dropped.values()
    assert result.verification.passed and result.verification.max_diff < 1e-4
    assert max(result.verification.max_abs_output.values()) > 1e-2

    # independent of the library: detectron2's backbone loaded from the .pkl computes the trunk's
    # features
    from contrastive_det.convert.verify import load_detectron2_file
    from contrastive_det.convert.resnet_keys import build_detectron2_resnet

    d2 = build_detectron2_resnet(depth)
    assert load_detectron2_file(d2, out) == (
        [],
        [],
        [],
    )  # detectron2's own loader took every weight
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = d2.eval()(x)["res5"]
    assert torch.allclose(got, res5_of_trunk(trunk, x), atol=1e-4)


def test_two_sequential_trunks_without_a_backbone_name_are_ambiguous(tmp_path):
    ckpt = {
        f"{name}.{k}": v
        for name in ("student", "teacher")
        for k, v in sequential_trunk(18, seed=len(name)).state_dict().items()
    }
    torch.save(ckpt, tmp_path / "in.pth")
    with pytest.raises(AmbiguousCheckpointError, match="student., teacher.") as info:
        convert_checkpoint(tmp_path / "in.pth", tmp_path / "out.pkl")
    assert info.value.candidates == ["student.", "teacher."]
    result = convert_checkpoint(
        tmp_path / "in.pth", tmp_path / "out.pkl", prefix="teacher.", verify=False
    )
    assert result.format == "raw" and "student.*" in result.coverage.dropped.values()


def test_a_modified_sequential_trunk_is_not_dropped_silently(tmp_path):
    sd = sequential_trunk(18, seed=0).state_dict()
    sd["8.weight"] = torch.ones(3)  # a layer torchvision's ResNet does not have
    torch.save({"backbone." + k: v for k, v in sd.items()}, tmp_path / "in.pth")
    with pytest.raises(Exception, match=r"backbone\.8\.weight"):
        convert_checkpoint(tmp_path / "in.pth", tmp_path / "out.pkl")
    assert not (tmp_path / "out.pkl").exists()
