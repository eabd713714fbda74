"""SimCLR's global BN: the real SimCLR model (ResNet-18 trunk + BN projection head) on 2 gloo
processes with synchronised BN gives the loss and the gradients of one process with plain BN on the
concatenated batch."""

import os

import torch

from detectron2.modeling import build_model

import contrastive_det  # noqa: F401
from contrastive_det.config import get_cfg
from ddp_helpers import REPO, run_on_processes, two_view_batch

WORLD, N, SIZE = 2, 4, 32  # processes, images per process, image side


def simclr_cfg(norm):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs/toy/pretrain_simclr_R18.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.TV_RESNET.NORM = norm  # the head (PROJ_BN True in the recipe) takes the same norm
    cfg.MODEL.CONTRASTIVE.PROJ_HIDDEN_DIM = 32
    cfg.MODEL.CONTRASTIVE.PROJ_DIM = 16
    return cfg


def global_batch():
    return two_view_batch([i % 3 for i in range(WORLD * N)], SIZE)


def step(model, batch):
    """One forward/backward; returns the loss, every parameter's gradient and the BN running
    means."""
    model.train()
    loss = model(batch)["loss_ntxent"]
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    means = {n: b.detach().clone() for n, b in model.named_buffers() if n.endswith("running_mean")}
    return loss.detach(), grads, means


def worker(rank, world, state_file, norm):
    torch.manual_seed(100 + rank)
    model = build_model(simclr_cfg(norm)).double()
    model.load_state_dict(torch.load(state_file, weights_only=True))
    loss, grads, means = step(model, global_batch()[rank * N : (rank + 1) * N])
    for g in grads.values():  # what DDP does: average the parameter gradients over the processes
        torch.distributed.all_reduce(g)
        g /= world
    return loss, grads, means


def test_two_processes_with_synced_bn_equal_one_process_with_bn_on_the_concatenated_batch(tmp_path):
    torch.manual_seed(0)
    reference = build_model(simclr_cfg("BN")).double()
    state_file = tmp_path / "init.pth"
    torch.save(reference.state_dict(), state_file)
    heads_bn = [m for m in reference.projection.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert heads_bn, "the SimCLR recipe has a BN projection head"
    ref_loss, ref_grads, ref_means = step(reference, global_batch())

    per_rank = run_on_processes(worker, WORLD, tmp_path, str(state_file), "naiveSyncBN")
    for loss, grads, means in per_rank:
        torch.testing.assert_close(loss, ref_loss, rtol=1e-9, atol=1e-12)
        assert set(grads) == set(ref_grads)
        for name, g in grads.items():
            torch.testing.assert_close(g, ref_grads[name], rtol=1e-7, atol=1e-9, msg=name)
        for name, m in means.items():  # BN statistics of the global batch, trunk and head
            torch.testing.assert_close(m, ref_means[name], rtol=1e-9, atol=1e-12, msg=name)
    assert (
        ref_grads["projection.mlp.1.weight"].abs().sum() > 0
        and ref_grads["encoder.resnet.conv1.weight"].abs().sum() > 0
    )
