"""Core-tuning on several processes: mining and both loss terms run over the global batch, so two
gloo processes of N features equal one process of the 2N features (losses and every gradient)."""

import torch
from torch.nn.parallel import DistributedDataParallel

from contrastive_det.modeling.core_tuning import CoreTuningHead
from ddp_helpers import run_on_processes

N, D, C = 6, 8, 3


def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2 * N, D, generator=g), torch.randint(0, C, (2 * N,), generator=g)


def new_head():
    torch.manual_seed(0)
    return CoreTuningHead(D, C, hidden_dim=16, proj_dim=4, eta=0.5)


def step(head, features, labels, seed=5):
    features = features.clone().requires_grad_(True)
    torch.manual_seed(seed)  # the draws (permutation, mixing weights): the main process's are used
    losses = head(features, labels)
    (losses["loss_cls"] + losses["loss_con"]).backward()
    module = getattr(head, "module", head)
    grads = {k: p.grad.clone() for k, p in module.named_parameters()}
    return {k: v.item() for k, v in losses.items()}, grads, features.grad


def on_rank(rank, world):
    features, labels = batch()
    head = DistributedDataParallel(new_head().train())
    rows = slice(rank * N, (rank + 1) * N)
    # each process seeded apart, as StepSeed does
    return step(head, features[rows], labels[rows], seed=5 + 100 * rank)


def test_two_processes_equal_one_process_on_the_concatenated_batch(tmp_path):
    features, labels = batch()
    one_losses, one_grads, one_feature_grad = step(new_head().train(), features, labels)
    results = run_on_processes(on_rank, 2, tmp_path)
    for rank, (losses, grads, feature_grad) in enumerate(results):
        assert losses.keys() == one_losses.keys()
        for k in losses:
            assert abs(losses[k] - one_losses[k]) < 1e-6, (rank, k)
        for k in grads:  # DDP averages what every process computed on the same global loss
            torch.testing.assert_close(grads[k], one_grads[k], rtol=1e-5, atol=1e-6)
        # each process's rows get the gradient summed over the W processes that computed the loss,
        # which DDP's average divides by W again: W x the one-process gradient here
        torch.testing.assert_close(
            feature_grad, 2 * one_feature_grad[rank * N : (rank + 1) * N], rtol=1e-5, atol=1e-6
        )
