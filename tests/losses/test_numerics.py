"""Cross-cutting properties of all losses: float32 logits under autocast / for half inputs, no
in-place modification of inputs, scalar outputs, CUDA parity (skipped without a GPU), package
exports."""

import pytest
import torch
from torch.nn import functional as F

import contrastive_det.losses as losses
from contrastive_det.losses import (
    ce_selfsupcon_loss,
    infonce_loss,
    nt_xent_loss,
    queue_supcon_loss,
    scan_loss,
    supcon_loss,
    supcon_selfsupcon_loss,
)


def _inputs(device="cpu", dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)

    def unit(*shape):
        return F.normalize(torch.randn(*shape, generator=gen), dim=-1).to(
            device=device, dtype=dtype
        )

    n, k, d = 4, 6, 8
    labels = torch.tensor([0, 1, 0, 2], device=device)
    queue_labels = torch.tensor([0, 1, 1, 2, 0, -1], device=device)
    return dict(
        z1=unit(n, d),
        z2=unit(n, d),
        q=unit(n, d),
        k=unit(n, d),
        queue=unit(k, d),
        labels=labels,
        queue_labels=queue_labels,
        feats=unit(n, 2, d),
        class_logits=torch.randn(n, 3, generator=gen).to(device=device, dtype=dtype),
        cls_labels=torch.tensor([0, 2, 1, 1], device=device),
    )


def _all_losses(x):
    """name -> scalar tensor, every loss (joint ones summed)."""
    return {
        "nt_xent": nt_xent_loss(x["z1"], x["z2"], 0.1),
        "infonce": infonce_loss(x["q"], x["k"], x["queue"], 0.07),
        "supcon_all": supcon_loss(x["feats"], x["labels"], temperature=0.07),
        "supcon_one": supcon_loss(x["feats"], x["labels"], temperature=0.07, contrast_mode="one"),
        "queue_supcon": queue_supcon_loss(
            x["q"], x["labels"], x["k"], x["labels"], x["queue"], x["queue_labels"], 0.07
        ),
        "scan_mask": scan_loss(
            x["q"], x["labels"], x["k"], x["labels"], x["queue"], x["queue_labels"], 3, 0.07
        ),
        "scan_negative": scan_loss(
            x["q"],
            x["labels"],
            x["k"],
            x["labels"],
            x["queue"],
            x["queue_labels"],
            3,
            0.07,
            "negative",
        ),
        "ce_selfsupcon": sum(
            ce_selfsupcon_loss(
                x["class_logits"], x["cls_labels"], x["q"], x["k"], x["queue"]
            ).values()
        ),
        "supcon_selfsupcon": sum(
            supcon_selfsupcon_loss(
                x["q"],
                x["k"],
                x["queue"],
                x["z1"],
                x["labels"],
                x["z2"],
                x["labels"],
                x["queue"],
                x["queue_labels"],
            ).values()
        ),
    }


def test_outputs_are_finite_float32_scalars():
    out = _all_losses(_inputs())
    for name, v in out.items():
        assert v.dim() == 0 and v.dtype == torch.float32 and torch.isfinite(v) and v.item() > 0, (
            name
        )


def test_autocast_computes_in_float32():
    x = _inputs()
    plain = _all_losses(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = _all_losses(x)
    for name in plain:
        assert auto[name].dtype == torch.float32, name
        torch.testing.assert_close(auto[name], plain[name], rtol=1e-6, atol=1e-6, msg=name)


def test_half_precision_inputs_give_float32_losses():
    x32 = _inputs()
    xbf = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in x32.items()}
    # reference: the bf16-rounded inputs, evaluated in float32
    ref = _all_losses({k: (v.float() if v.is_floating_point() else v) for k, v in xbf.items()})
    got = _all_losses(xbf)
    for name in ref:
        assert got[name].dtype == torch.float32, name
        torch.testing.assert_close(got[name], ref[name], rtol=1e-6, atol=1e-6, msg=name)


def test_inputs_not_modified():
    x = _inputs()
    before = {k: v.clone() for k, v in x.items()}
    _all_losses(x)
    for k in x:
        assert torch.equal(x[k], before[k]), k


def test_gradients_finite_for_all_losses():
    x = {
        k: (v.clone().requires_grad_(True) if v.is_floating_point() else v)
        for k, v in _inputs().items()
    }
    total = sum(_all_losses(x).values())
    total.backward()
    for k, v in x.items():
        if v.is_floating_point():
            assert v.grad is not None and torch.isfinite(v.grad).all(), k


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_autocast():
    cpu = _all_losses(_inputs())
    xg = _inputs("cuda")
    gpu = _all_losses(xg)
    with torch.autocast("cuda", dtype=torch.float16):
        auto = _all_losses(xg)
    for name in cpu:
        assert gpu[name].device.type == "cuda" and auto[name].dtype == torch.float32, name
        torch.testing.assert_close(gpu[name].cpu(), cpu[name], rtol=1e-5, atol=1e-5, msg=name)
        torch.testing.assert_close(auto[name].cpu(), cpu[name], rtol=1e-5, atol=1e-5, msg=name)


def test_package_exports_and_docstring():
    expected = {
        "nt_xent_loss",
        "infonce_loss",
        "supcon_loss",
        "queue_supcon_loss",
        "ce_selfsupcon_loss",
        "supcon_selfsupcon_loss",
        "scan_loss",
        "focal_supcon_loss",
        "soft_target_cross_entropy",
        "hard_pair_indices",
        "mix_rows",
        "mixed_soft_targets",
        "soft_label_ids",
        "core_tuning_mixup",
    }
    assert set(losses.__all__) == expected
    for name in expected:
        assert callable(getattr(losses, name)) and name in losses.__doc__
