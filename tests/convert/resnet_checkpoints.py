"""Helpers shared by the converter tests: random torchvision ResNets."""

import torch
import torchvision


def random_resnet(depth, seed=0):
    """state_dict of a torchvision ResNet with random weights, BN affine parameters and
    statistics."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.num_batches_tracked.fill_(123)
    return model.state_dict()


def d2_name(tv_key):
    """detectron2 name of a torchvision backbone key, written out independently of the library."""
    if tv_key.startswith("conv1."):
        return "stem.conv1." + tv_key[len("conv1.") :]
    if tv_key.startswith("bn1."):
        return "stem.conv1.norm." + tv_key[len("bn1.") :]
    layer, block, rest = tv_key.split(".", 2)
    rest = rest.replace("downsample.0.", "shortcut.").replace("downsample.1.", "shortcut.norm.")
    for i in (1, 2, 3):
        rest = rest.replace(f"bn{i}.", f"conv{i}.norm.")
    return f"res{int(layer[len('layer') :]) + 1}.{block}.{rest}"
