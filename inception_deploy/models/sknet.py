"""SK-Net (Li et al. 2019, "Selective Kernel Networks") in the state_dict layout of timm's
``skresnet18``, ``skresnet34`` and ``skresnext50_32x4d``: a ResNet (``resnet.py``'s trunk) whose
3x3 convolution becomes a selective-kernel unit.

A selective-kernel unit runs two 3x3 paths, the second dilated by 2 (the paper's 5x5, as timm
keeps it), pools their sum to a small bottleneck and a softmax across the paths per channel, and
sums the paths with those weights: each channel picks its receptive field from the image.
"""

import torch
from torch import nn

from .layers import BasicConv2d, make_divisible
from .resnet import ResNet

_EPS = 1e-5  # timm's ConvNormAct: PyTorch's BatchNorm default, not the Inception ports' 1e-3


class SelectiveKernelAttn(nn.Module):
    """Sum of the paths -> global average -> 1x1 conv (reduce) -> BN -> ReLU -> 1x1 conv to one
    logit per path and channel -> softmax across the paths."""

    def __init__(self, channels: int, paths: int, attention: int):
        super().__init__()
        self.fc_reduce = nn.Conv2d(channels, attention, 1, bias=False)
        self.bn = nn.BatchNorm2d(attention)
        self.act = nn.ReLU(inplace=True)
        self.fc_select = nn.Conv2d(attention, channels * paths, 1, bias=False)

    def forward(self, x):  # x: N x paths x C x H x W
        pooled = x.sum(1).mean((2, 3), keepdim=True)  # N x C x 1 x 1
        logits = self.fc_select(self.act(self.bn(self.fc_reduce(pooled))))
        return torch.softmax(logits.reshape(x.shape[0], x.shape[1], x.shape[2], 1, 1), dim=1)


class SelectiveKernel(nn.Module):
    """Two 3x3 paths (dilation 1 and 2) weighted per channel by ``SelectiveKernelAttn``.

    ``split_input`` (timm's skresnet18/34) gives each path half of the input channels rather than
    all of them, which keeps the parameter count near the plain ResNet's.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        groups: int = 1,
        reduction: float = 1 / 16,
        divisor: int = 8,
        split_input: bool = True,
    ):
        super().__init__()
        self.split = in_channels // 2 if split_input else None
        path_in = self.split or in_channels
        groups = min(groups, out_channels)
        self.paths = nn.ModuleList(
            BasicConv2d(path_in, out_channels, _EPS, kernel_size=3, stride=stride, padding=d, dilation=d, groups=groups)
            for d in (1, 2)
        )
        self.attn = SelectiveKernelAttn(out_channels, 2, make_divisible(out_channels * reduction, divisor))

    def forward(self, x):
        inputs = torch.split(x, self.split, 1) if self.split else (x, x)
        paths = torch.stack([path(part) for path, part in zip(self.paths, inputs)], dim=1)  # N x 2 x C x H x W
        return (paths * self.attn(paths)).sum(1)


class SelectiveKernelBasic(nn.Module):
    """Selective kernel (3x3, with the stride) -> 3x3 conv -> + shortcut (SK-ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, **sk_args):
        super().__init__()
        self.conv1 = SelectiveKernel(inplanes, planes, stride, **sk_args)
        self.conv2 = BasicConv2d(planes, planes, _EPS, relu=False, kernel_size=3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.act(self.conv2(self.conv1(x)) + shortcut)


class SelectiveKernelBottleneck(nn.Module):
    """1x1 (reduce) -> selective kernel (with the stride, ``groups``) -> 1x1 (expand 4x) + shortcut."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        **sk_args,
    ):
        super().__init__()
        width = int(planes * base_width / 64) * groups
        self.conv1 = BasicConv2d(inplanes, width, _EPS, kernel_size=1)
        self.conv2 = SelectiveKernel(width, width, stride, groups, **sk_args)
        self.conv3 = BasicConv2d(width, planes * self.expansion, _EPS, relu=False, kernel_size=1)
        self.act = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.act(self.conv3(self.conv2(self.conv1(x))) + shortcut)


def skresnet18(num_classes: int = 1000) -> ResNet:
    return ResNet(SelectiveKernelBasic, (2, 2, 2, 2), num_classes, reduction=1 / 8, divisor=16)


def skresnet34(num_classes: int = 1000) -> ResNet:
    return ResNet(SelectiveKernelBasic, (3, 4, 6, 3), num_classes, reduction=1 / 8, divisor=16)


def skresnext50_32x4d(num_classes: int = 1000) -> ResNet:
    """The paper's SKNet-50: ResNeXt-50 (32 groups of 4 channels) with every path taking all inputs."""
    return ResNet(
        SelectiveKernelBottleneck,
        (3, 4, 6, 3),
        num_classes,
        groups=32,
        base_width=4,
        reduction=1 / 16,
        divisor=32,
        split_input=False,
    )
