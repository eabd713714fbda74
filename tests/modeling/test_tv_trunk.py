"""The torchvision trunk in channels-last memory order: the same function, parameter names and
exported checkpoint as in NCHW order."""

import torch

from contrastive_det.config import get_cfg
from contrastive_det.modeling import TorchvisionResNetTrunk, build_tv_resnet


def _pair(depth=18):
    torch.manual_seed(0)
    nchw = TorchvisionResNetTrunk(depth, channels_last=False)
    nhwc = TorchvisionResNetTrunk(depth, channels_last=True)
    nhwc.load_state_dict(nchw.state_dict())
    return nchw, nhwc


def test_channels_last_is_the_default_and_stores_conv_weights_nhwc():
    cfg = get_cfg()
    cfg.MODEL.TV_RESNET.DEPTH = 18
    assert cfg.MODEL.TV_RESNET.CHANNELS_LAST is True
    trunk = build_tv_resnet(cfg)
    conv = trunk.resnet.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    cfg.MODEL.TV_RESNET.CHANNELS_LAST = False
    assert build_tv_resnet(cfg).resnet.conv1.weight.is_contiguous()


def test_channels_last_computes_the_same_features_and_gradients():
    nchw, nhwc = (t.double() for t in _pair())  # float64: summation order is all that differs
    assert nhwc.resnet.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 64, 64, dtype=torch.float64)  # NCHW input; the trunk reorders it
    outs, grads = [], []
    for trunk in (nchw, nhwc):
        trunk.train()
        y = trunk(x)  # 4x512
        y.pow(2).sum().backward()
        outs.append(y.detach())
        grads.append(trunk.resnet.layer1[0].conv1.weight.grad.clone())
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-9)


def test_the_exported_checkpoint_is_nchw_and_equal():
    nchw, nhwc = _pair()
    a, b = nchw.export_state_dict(), nhwc.export_state_dict()
    assert list(a) == list(b) and not any(k.startswith("fc.") for k in b)
    for k in a:
        assert b[k].is_contiguous(), k  # plain NCHW order, as every reader expects
        assert torch.equal(a[k], b[k]), k
