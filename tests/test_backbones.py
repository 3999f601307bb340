import pytest
import torch

from noisyfit.models.backbones import UnknownNameError, create_backbone, list_backbones


@pytest.mark.parametrize("name,shape,dim", [
    ("fastcnn", (3, 32, 32), 256), ("preact_resnet18", (3, 32, 32), 512), ("resnet34", (3, 32, 32), 512),
    ("mlp", (20,), 256)])
def test_features_and_logits_shapes_and_backward(name, shape, dim):
    net = create_backbone(name, num_classes=7, input_shape=shape)
    x = torch.randn(2, *shape)
    h, logits = net.features_and_logits(x)
    assert h.shape == (2, dim) and logits.shape == (2, 7) and net.feature_dim == dim
    assert torch.equal(net(x), logits) or not net.training  # same path in eval mode
    logits.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_fastcnn_widths_are_parameters():
    net = create_backbone("fastcnn", num_classes=10, input_shape=(3, 32, 32), widths=[8, 16, 24])
    assert net.feature_dim == 24 and net.head.in_features == 24


def test_preact_resnet18_is_the_dividemix_layout():
    net = create_backbone("preact_resnet18", num_classes=10, input_shape=(3, 32, 32))
    # stem conv-BN-ReLU, pre-activation blocks, no BN after the last block (DivideMix's PreActResNet18)
    assert isinstance(net.bn1, torch.nn.BatchNorm2d) and not hasattr(net, "bn_out")
    names = [n for n, _ in net.named_modules()]
    assert "layers.0.bn1" in names and "layers.7.conv2" in names and len(net.layers) == 8


def test_resnet_sizes():
    count = lambda n: sum(p.numel() for p in create_backbone(n, num_classes=10, input_shape=(3, 32, 32)).parameters())  # noqa: E731
    assert 11.0e6 < count("preact_resnet18") < 11.3e6  # the DivideMix/ELR+ PreAct ResNet-18 (11.17 M)
    assert 21.2e6 < count("resnet34") < 21.4e6  # CIFAR ResNet-34 (21.28 M)


def test_errors_name_the_choices():
    with pytest.raises(UnknownNameError, match="choose one of .*fastcnn.*mlp"):
        create_backbone("vgg", num_classes=2, input_shape=(3, 8, 8))
    with pytest.raises(ValueError, match="no option.*'hidden'.*its options: widths, stem_width"):
        create_backbone("fastcnn", num_classes=2, input_shape=(3, 8, 8), hidden=[3])
    assert set(list_backbones()) >= {"fastcnn", "preact_resnet18", "resnet34", "mlp"}


def test_a_bn_neck_normalises_the_features_any_head_sees():
    torch.manual_seed(0)
    net = create_backbone("fastcnn", num_classes=4, input_shape=(3, 16, 16), widths=[8, 16, 16], neck="bn")
    plain = create_backbone("fastcnn", num_classes=4, input_shape=(3, 16, 16), widths=[8, 16, 16])
    x = torch.randn(64, 3, 16, 16)
    net.train()
    h = net.forward_features(x)
    # train mode: Linear -> BatchNorm1d -> ReLU, so before the ReLU every feature has batch mean 0 and std 1
    pre = net.neck[1](net.neck[0](net.body.forward_features(x)))
    torch.testing.assert_close(pre.mean(0), torch.zeros(16), atol=1e-5, rtol=0)
    torch.testing.assert_close(pre.std(0, unbiased=False), torch.ones(16), atol=1e-3, rtol=0)
    assert torch.equal(h, pre.relu()) and net(x).shape == (64, 4) and net.feature_dim == 16
    f = plain.forward_features(x)  # fastcnn's own features: max-pooled GELUs, nearly all positive (a shared offset)
    assert (f > 0).float().mean() > 0.9 and f.mean() > 0.3
    with pytest.raises(ValueError, match="neck='ln'"):
        create_backbone("mlp", num_classes=2, input_shape=(4,), neck="ln")
