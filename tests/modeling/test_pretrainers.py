import pytest
import torch

from detectron2.modeling import build_model

import contrastive_det  # noqa: F401
from contrastive_det.config import get_cfg
from contrastive_det.modeling.queue import KeyQueue


def tiny_cfg(arch):
    cfg = get_cfg()
    cfg.merge_from_file("configs/toy/pretrain_mocov2_R18.yaml")
    cfg.MODEL.META_ARCHITECTURE = arch
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.CONTRASTIVE.PROJ_HIDDEN_DIM = 16
    cfg.MODEL.CONTRASTIVE.PROJ_DIM = 8
    cfg.MODEL.CONTRASTIVE.QUEUE_SIZE = 8
    cfg.MODEL.CONTRASTIVE.MOMENTUM = 0.9
    return cfg


def batch(n=4, size=32, labels=(0, 1, 0, 1)):
    g = torch.Generator().manual_seed(0)
    return [
        {
            "views": [
                torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
                for _ in range(2)
            ],
            "label": labels[i],
        }
        for i in range(n)
    ]


def test_momentum_update_and_queue_advance_by_hand():
    torch.manual_seed(0)
    model = build_model(tiny_cfg("MoCoV2")).train()
    q_before = model.encoder.resnet.conv1.weight.detach().clone()
    k_before = model.encoder_k.resnet.conv1.weight.detach().clone()
    with torch.no_grad():
        model.encoder.resnet.conv1.weight.add_(1.0)  # make query and key encoders differ
    losses = model(batch())
    assert set(losses) == {"loss_infonce"} and torch.isfinite(losses["loss_infonce"])
    # k <- 0.9 k + 0.1 q (q already shifted by +1)
    torch.testing.assert_close(
        model.encoder_k.resnet.conv1.weight, 0.9 * k_before + 0.1 * (q_before + 1.0)
    )
    assert int(model.queues["projection"].ptr) == 4 and model.queues["projection"].labels[
        :4
    ].tolist() == [0, 1, 0, 1]
    assert not any(p.requires_grad for p in model.encoder_k.parameters())


@pytest.mark.parametrize(
    "arch, keys",
    [
        ("SimCLR", {"loss_ntxent"}),
        ("SupCon", {"loss_supcon"}),
        ("CESelfSupCon", {"loss_ce", "loss_instance"}),
        ("SupConSelfSupCon", {"loss_instance", "loss_supcon"}),
        ("SCAN", {"loss_scan"}),
    ],
)
def test_every_method_returns_finite_losses_with_gradients(arch, keys):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(arch)).train()
    losses = model(batch())
    assert set(losses) == keys
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total) and model.encoder.resnet.conv1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("arch", ["SimCLR", "SupCon"])
def test_view_batching_sets_which_images_bn_normalises_together(arch):
    # "concat": one forward of 2N (BN over both views); "separate": a forward per view. Both give
    # the per-view forward in eval mode; in training BN statistics tell them apart.
    views = [torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in (1, 2)]
    out = {}
    for batching in ("concat", "separate"):
        cfg = tiny_cfg(arch)
        cfg.MODEL.CONTRASTIVE.VIEW_BATCHING = batching
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        with torch.no_grad():
            out[batching + "_eval"] = model._projections(views)  # before BN's running stats move
            model.train()
            out[batching] = model._projections(views)
            alone = [model._project(v) for v in views]  # NxD each, BN over one view
    for z, ref in zip(out["separate"], alone):
        torch.testing.assert_close(z, ref)
    assert not torch.allclose(out["concat"][0], out["separate"][0], atol=1e-4)
    for a, b in zip(out["concat_eval"], out["separate_eval"]):
        torch.testing.assert_close(a, b)
    cfg = tiny_cfg(arch)
    cfg.MODEL.CONTRASTIVE.VIEW_BATCHING = "split"
    with pytest.raises(ValueError, match="VIEW_BATCHING 'split': expected one of concat, separate"):
        build_model(cfg)


def test_supervised_methods_refuse_unlabelled_images():
    model = build_model(tiny_cfg("SupCon")).train()
    with pytest.raises(ValueError, match="SupCon needs labelled images"):
        model(batch(labels=(0, -1, 0, 1)))


def test_queue_size_must_be_a_multiple_of_the_global_batch():
    queue = KeyQueue(size=6, dim=2)
    with pytest.raises(
        ValueError, match="QUEUE_SIZE=6 must be a multiple of the global batch size 4"
    ):
        queue.enqueue(torch.ones(4, 2))


def test_inference_returns_normalised_embeddings():
    model = build_model(tiny_cfg("SimCLR")).eval()
    out = model(
        [
            {"image": torch.zeros(3, 32, 32, dtype=torch.uint8)},
            {"image": torch.full((3, 32, 32), 200, dtype=torch.uint8)},
        ]
    )
    norms = torch.stack([o["embedding"] for o in out]).norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(2))
