"""Inception v4, Szegedy et al. 2016, in timm's ``inception_v4`` layout
(``features`` Sequential with the stem and 14 blocks, then ``last_linear``)."""

import torch
from torch import nn

from .layers import BasicConv2d


def _pool_branch(in_channels, out_channels):
    """avgpool 3x3 (padding excluded from the mean, as TensorFlow does) -> 1x1 projection."""
    return nn.Sequential(
        nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
        BasicConv2d(in_channels, out_channels, kernel_size=1),
    )


class _Branches(nn.Module):
    """Runs ``branch0``, ``branch1``, ... on the same input and concatenates them on channels."""

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.children()], 1)


class Mixed3a(nn.Module):
    def __init__(self):
        super().__init__()
        self.maxpool = nn.MaxPool2d(3, stride=2)
        self.conv = BasicConv2d(64, 96, kernel_size=3, stride=2)

    def forward(self, x):
        return torch.cat([self.maxpool(x), self.conv(x)], 1)  # 160 channels


class Mixed4a(_Branches):
    def __init__(self):
        super().__init__()
        self.branch0 = nn.Sequential(
            BasicConv2d(160, 64, kernel_size=1),
            BasicConv2d(64, 96, kernel_size=3),
        )
        self.branch1 = nn.Sequential(
            BasicConv2d(160, 64, kernel_size=1),
            BasicConv2d(64, 64, kernel_size=(1, 7), padding=(0, 3)),
            BasicConv2d(64, 64, kernel_size=(7, 1), padding=(3, 0)),
            BasicConv2d(64, 96, kernel_size=3),
        )  # 192 channels together


class Mixed5a(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = BasicConv2d(192, 192, kernel_size=3, stride=2)
        self.maxpool = nn.MaxPool2d(3, stride=2)

    def forward(self, x):
        return torch.cat([self.conv(x), self.maxpool(x)], 1)  # 384 channels


class InceptionA(_Branches):
    """35x35 grid, 384 -> 384 channels."""

    def __init__(self):
        super().__init__()
        self.branch0 = BasicConv2d(384, 96, kernel_size=1)
        self.branch1 = nn.Sequential(
            BasicConv2d(384, 64, kernel_size=1),
            BasicConv2d(64, 96, kernel_size=3, padding=1),
        )
        self.branch2 = nn.Sequential(
            BasicConv2d(384, 64, kernel_size=1),
            BasicConv2d(64, 96, kernel_size=3, padding=1),
            BasicConv2d(96, 96, kernel_size=3, padding=1),
        )
        self.branch3 = _pool_branch(384, 96)


class ReductionA(_Branches):
    """35x35 -> 17x17, 384 -> 1024 channels."""

    def __init__(self):
        super().__init__()
        self.branch0 = BasicConv2d(384, 384, kernel_size=3, stride=2)
        self.branch1 = nn.Sequential(
            BasicConv2d(384, 192, kernel_size=1),
            BasicConv2d(192, 224, kernel_size=3, padding=1),
            BasicConv2d(224, 256, kernel_size=3, stride=2),
        )
        self.branch2 = nn.MaxPool2d(3, stride=2)


class InceptionB(_Branches):
    """17x17 grid, 1024 -> 1024 channels."""

    def __init__(self):
        super().__init__()
        self.branch0 = BasicConv2d(1024, 384, kernel_size=1)
        self.branch1 = nn.Sequential(
            BasicConv2d(1024, 192, kernel_size=1),
            BasicConv2d(192, 224, kernel_size=(1, 7), padding=(0, 3)),
            BasicConv2d(224, 256, kernel_size=(7, 1), padding=(3, 0)),
        )
        self.branch2 = nn.Sequential(
            BasicConv2d(1024, 192, kernel_size=1),
            BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0)),
            BasicConv2d(192, 224, kernel_size=(1, 7), padding=(0, 3)),
            BasicConv2d(224, 224, kernel_size=(7, 1), padding=(3, 0)),
            BasicConv2d(224, 256, kernel_size=(1, 7), padding=(0, 3)),
        )
        self.branch3 = _pool_branch(1024, 128)


class ReductionB(_Branches):
    """17x17 -> 8x8, 1024 -> 1536 channels."""

    def __init__(self):
        super().__init__()
        self.branch0 = nn.Sequential(
            BasicConv2d(1024, 192, kernel_size=1),
            BasicConv2d(192, 192, kernel_size=3, stride=2),
        )
        self.branch1 = nn.Sequential(
            BasicConv2d(1024, 256, kernel_size=1),
            BasicConv2d(256, 256, kernel_size=(1, 7), padding=(0, 3)),
            BasicConv2d(256, 320, kernel_size=(7, 1), padding=(3, 0)),
            BasicConv2d(320, 320, kernel_size=3, stride=2),
        )
        self.branch2 = nn.MaxPool2d(3, stride=2)


class InceptionC(nn.Module):
    """8x8 grid, 1536 -> 1536 channels; two branches end in parallel 1x3 / 3x1 pairs."""

    def __init__(self):
        super().__init__()
        self.branch0 = BasicConv2d(1536, 256, kernel_size=1)
        self.branch1_0 = BasicConv2d(1536, 384, kernel_size=1)
        self.branch1_1a = BasicConv2d(384, 256, kernel_size=(1, 3), padding=(0, 1))
        self.branch1_1b = BasicConv2d(384, 256, kernel_size=(3, 1), padding=(1, 0))
        self.branch2_0 = BasicConv2d(1536, 384, kernel_size=1)
        self.branch2_1 = BasicConv2d(384, 448, kernel_size=(3, 1), padding=(1, 0))
        self.branch2_2 = BasicConv2d(448, 512, kernel_size=(1, 3), padding=(0, 1))
        self.branch2_3a = BasicConv2d(512, 256, kernel_size=(1, 3), padding=(0, 1))
        self.branch2_3b = BasicConv2d(512, 256, kernel_size=(3, 1), padding=(1, 0))
        self.branch3 = _pool_branch(1536, 256)

    def forward(self, x):
        b1 = self.branch1_0(x)
        b2 = self.branch2_2(self.branch2_1(self.branch2_0(x)))
        return torch.cat(
            [
                self.branch0(x),
                self.branch1_1a(b1),
                self.branch1_1b(b1),
                self.branch2_3a(b2),
                self.branch2_3b(b2),
                self.branch3(x),
            ],
            1,
        )


class InceptionV4(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential(
            BasicConv2d(3, 32, kernel_size=3, stride=2),  # N x 32 x 149 x 149
            BasicConv2d(32, 32, kernel_size=3),  # N x 32 x 147 x 147
            BasicConv2d(32, 64, kernel_size=3, padding=1),  # N x 64 x 147 x 147
            Mixed3a(),  # N x 160 x 73 x 73
            Mixed4a(),  # N x 192 x 71 x 71
            Mixed5a(),  # N x 384 x 35 x 35
            *[InceptionA() for _ in range(4)],
            ReductionA(),  # N x 1024 x 17 x 17
            *[InceptionB() for _ in range(7)],
            ReductionB(),  # N x 1536 x 8 x 8
            *[InceptionC() for _ in range(3)],
        )
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.last_linear = nn.Linear(1536, num_classes)

    def forward(self, x):
        x = torch.flatten(self.global_pool(self.features(x)), 1)  # N x 1536
        return self.last_linear(x)
