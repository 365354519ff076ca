"""Inception-ResNet v1 and v2, Szegedy et al. 2016.

v1 follows facenet-pytorch's ``InceptionResnetV1`` with its classification head (``logits``);
v2 follows timm's ``inception_resnet_v2``. Both are built from the same residual blocks with
different widths, so one set of block classes serves both layouts.
"""

import torch
from torch import nn

from .inception_v4 import _Branches, _pool_branch
from .layers import BasicConv2d


def _chain(in_channels, widths, kernels, last_stride=1):
    """1x1 reduction followed by convolutions of the given kernels; the last may stride 2."""
    layers, channels = [], in_channels
    for i, (width, kernel) in enumerate(zip(widths, kernels)):
        kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
        stride = last_stride if i == len(widths) - 1 else 1
        padding = (0, 0) if stride == 2 else (kernel[0] // 2, kernel[1] // 2)
        layers.append(BasicConv2d(channels, width, kernel_size=kernel, stride=stride, padding=padding))
        channels = width
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """out = relu(x + scale * conv1x1(concat(branches(x)))): the Inception-ResNet unit."""

    def __init__(self, scale, relu):
        super().__init__()
        self.scale = scale
        self.relu = nn.ReLU() if relu else None

    def forward(self, x):
        branches = [self.branch0(x), self.branch1(x)]
        if hasattr(self, "branch2"):
            branches.append(self.branch2(x))
        out = self.conv2d(torch.cat(branches, 1)) * self.scale + x
        return self.relu(out) if self.relu is not None else out


class Block35(Residual):
    """Inception-ResNet-A on the 35x35 grid: 1x1 | 1x1->3x3 | 1x1->3x3->3x3."""

    def __init__(self, channels, branch2_widths, scale):
        super().__init__(scale, relu=True)
        self.branch0 = BasicConv2d(channels, 32, kernel_size=1)
        self.branch1 = _chain(channels, (32, 32), (1, 3))
        self.branch2 = _chain(channels, (32, *branch2_widths), (1, 3, 3))
        self.conv2d = nn.Conv2d(64 + branch2_widths[-1], channels, kernel_size=1)


class _Factorized(Residual):
    """1x1 | 1x1->1xk->kx1 residual block (Block17: k=7 on 17x17, Block8: k=3 on 8x8)."""

    kernel = 0

    def __init__(self, channels, branch0, branch1_widths, scale=1.0, relu=True):
        super().__init__(scale, relu)
        k = self.kernel
        self.branch0 = BasicConv2d(channels, branch0, kernel_size=1)
        self.branch1 = _chain(channels, branch1_widths, (1, (1, k), (k, 1)))
        self.conv2d = nn.Conv2d(branch0 + branch1_widths[-1], channels, kernel_size=1)


class Block17(_Factorized):
    kernel = 7


class Block8(_Factorized):
    kernel = 3


class Mixed6a(_Branches):
    """35x35 -> 17x17 reduction: 3x3/2 | 1x1->3x3->3x3/2 | maxpool."""

    def __init__(self, in_channels, branch0, branch1_widths):
        super().__init__()
        self.branch0 = BasicConv2d(in_channels, branch0, kernel_size=3, stride=2)
        self.branch1 = _chain(in_channels, branch1_widths, (1, 3, 3), last_stride=2)
        self.branch2 = nn.MaxPool2d(3, stride=2)


class Mixed7a(_Branches):
    """17x17 -> 8x8 reduction: three 1x1->...->3x3/2 chains and a maxpool."""

    def __init__(self, in_channels, branch0_widths, branch1_widths, branch2_widths):
        super().__init__()
        self.branch0 = _chain(in_channels, branch0_widths, (1, 3), last_stride=2)
        self.branch1 = _chain(in_channels, branch1_widths, (1, 3), last_stride=2)
        self.branch2 = _chain(in_channels, branch2_widths, (1, 3, 3), last_stride=2)
        self.branch3 = nn.MaxPool2d(3, stride=2)


class Mixed5b(_Branches):
    """v2 only: the 35x35 Inception-A block of Inception v3 widths, 192 -> 320 channels."""

    def __init__(self):
        super().__init__()
        self.branch0 = BasicConv2d(192, 96, kernel_size=1)
        self.branch1 = _chain(192, (48, 64), (1, 5))
        self.branch2 = _chain(192, (64, 96, 96), (1, 3, 3))
        self.branch3 = _pool_branch(192, 64)


def _stem():
    """Shared stem: N x 3 x 299 x 299 -> N x 192 x 71 x 71 (before each version's last step)."""
    return dict(
        conv2d_1a=BasicConv2d(3, 32, kernel_size=3, stride=2),  # 149
        conv2d_2a=BasicConv2d(32, 32, kernel_size=3),  # 147
        conv2d_2b=BasicConv2d(32, 64, kernel_size=3, padding=1),  # 147
        maxpool_3a=nn.MaxPool2d(3, stride=2),  # 73
        conv2d_3b=BasicConv2d(64, 80, kernel_size=1),  # 73
        conv2d_4a=BasicConv2d(80, 192, kernel_size=3),  # 71
    )


class InceptionResnetV1(nn.Module):
    """facenet-pytorch layout: 512-d embedding (``last_linear`` + ``last_bn``), then ``logits``."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.6):
        super().__init__()
        for name, module in _stem().items():
            self.add_module(name, module)
        self.conv2d_4b = BasicConv2d(192, 256, kernel_size=3, stride=2)  # N x 256 x 35 x 35
        self.repeat_1 = nn.Sequential(*[Block35(256, (32, 32), scale=0.17) for _ in range(5)])
        self.mixed_6a = Mixed6a(256, 384, (192, 192, 256))  # N x 896 x 17 x 17
        self.repeat_2 = nn.Sequential(*[Block17(896, 128, (128, 128, 128), scale=0.10) for _ in range(10)])
        self.mixed_7a = Mixed7a(896, (256, 384), (256, 256), (256, 256, 256))  # N x 1792 x 8 x 8
        self.repeat_3 = nn.Sequential(*[Block8(1792, 192, (192, 192, 192), scale=0.20) for _ in range(5)])
        self.block8 = Block8(1792, 192, (192, 192, 192), relu=False)
        self.avgpool_1a = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.last_linear = nn.Linear(1792, 512, bias=False)
        self.last_bn = nn.BatchNorm1d(512, eps=1e-3)
        self.logits = nn.Linear(512, num_classes)

    def forward(self, x):
        for name in (
            "conv2d_1a",
            "conv2d_2a",
            "conv2d_2b",
            "maxpool_3a",
            "conv2d_3b",
            "conv2d_4a",
            "conv2d_4b",
            "repeat_1",
            "mixed_6a",
            "repeat_2",
            "mixed_7a",
            "repeat_3",
            "block8",
        ):
            x = getattr(self, name)(x)
        x = self.dropout(torch.flatten(self.avgpool_1a(x), 1))  # N x 1792
        x = self.last_bn(self.last_linear(x))  # N x 512 embedding
        return self.logits(x)


class InceptionResnetV2(nn.Module):
    """timm layout; the classifier is named ``classif``."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        for name, module in _stem().items():
            self.add_module(name, module)
        self.maxpool_5a = nn.MaxPool2d(3, stride=2)  # N x 192 x 35 x 35
        self.mixed_5b = Mixed5b()  # N x 320 x 35 x 35
        self.repeat = nn.Sequential(*[Block35(320, (48, 64), scale=0.17) for _ in range(10)])
        self.mixed_6a = Mixed6a(320, 384, (256, 256, 384))  # N x 1088 x 17 x 17
        self.repeat_1 = nn.Sequential(*[Block17(1088, 192, (128, 160, 192), scale=0.10) for _ in range(20)])
        self.mixed_7a = Mixed7a(1088, (256, 384), (256, 288), (256, 288, 320))  # N x 2080 x 8 x 8
        self.repeat_2 = nn.Sequential(*[Block8(2080, 192, (192, 224, 256), scale=0.20) for _ in range(9)])
        self.block8 = Block8(2080, 192, (192, 224, 256), relu=False)
        self.conv2d_7b = BasicConv2d(2080, 1536, kernel_size=1)  # N x 1536 x 8 x 8
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classif = nn.Linear(1536, num_classes)

    def forward(self, x):
        for name in (
            "conv2d_1a",
            "conv2d_2a",
            "conv2d_2b",
            "maxpool_3a",
            "conv2d_3b",
            "conv2d_4a",
            "maxpool_5a",
            "mixed_5b",
            "repeat",
            "mixed_6a",
            "repeat_1",
            "mixed_7a",
            "repeat_2",
            "block8",
            "conv2d_7b",
        ):
            x = getattr(self, name)(x)
        return self.classif(torch.flatten(self.global_pool(x), 1))
