"""LARS (You et al. 2017) as used by SimCLR/SupCon."""

import torch


class LARS(torch.optim.Optimizer):
    """
    SGD with momentum whose per-tensor step is scaled by the trust ratio
    ``eta * ||w|| / ||g + wd * w||``. Tensors with one dimension (biases, norm parameters) get
    neither the trust ratio nor, when ``exclude_1d`` (SimCLR's choice), weight decay adaptation.
    """

    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0, eta=0.001, exclude_1d=True):
        if lr <= 0 or eta <= 0:
            raise ValueError(f"LARS needs lr > 0 and eta > 0, got lr={lr}, eta={eta}")
        super().__init__(
            params,
            dict(
                lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, exclude_1d=exclude_1d
            ),
        )

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                adapt = not (group["exclude_1d"] and p.ndim == 1)
                if group["weight_decay"] and adapt:
                    g = g.add(p, alpha=group["weight_decay"])
                if adapt:
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    trust = torch.where(
                        (w_norm > 0) & (g_norm > 0),
                        group["eta"] * w_norm / g_norm,
                        torch.ones_like(w_norm),
                    )
                    g = g * trust
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = g.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(g)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss
