"""Res2Net (Gao et al. 2019, "Res2Net: A New Multi-scale Backbone Architecture") in the
state_dict layout of timm's ``res2net50_26w_4s``: a ResNet-50 whose 3x3 convolution is split into
``scale`` groups of ``width`` channels, each group's 3x3 also seeing the previous group's output.
"""

import torch
from torch import nn

from .resnet import ResNet


class Bottle2neck(nn.Module):
    """1x1 -> split into ``scale`` groups -> a chain of 3x3 convs (group i adds output i-1) -> concat
    -> 1x1 (expand 4x) + shortcut. In a stage's first block (stride or projection) the groups do
    not chain and the last group is average-pooled instead of passed through."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        base_width: int = 26,
        scale: int = 4,
    ):
        super().__init__()
        self.width = int(planes * base_width / 64)
        self.first = stride > 1 or downsample is not None
        self.conv1 = nn.Conv2d(inplanes, self.width * scale, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.width * scale)
        self.convs = nn.ModuleList(
            nn.Conv2d(self.width, self.width, 3, stride=stride, padding=1, bias=False) for _ in range(scale - 1)
        )
        self.bns = nn.ModuleList(nn.BatchNorm2d(self.width) for _ in range(scale - 1))
        # timm keeps count_include_pad=True here: the published weights were trained with it
        self.pool = nn.AvgPool2d(3, stride=stride, padding=1) if self.first else None
        self.conv3 = nn.Conv2d(self.width * scale, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        groups = torch.split(self.relu(self.bn1(self.conv1(x))), self.width, 1)
        outputs = []
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            part = groups[i] if i == 0 or self.first else outputs[-1] + groups[i]
            outputs.append(self.relu(bn(conv(part))))
        outputs.append(self.pool(groups[-1]) if self.first else groups[-1])
        out = self.bn3(self.conv3(torch.cat(outputs, 1)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


def res2net50_26w_4s(num_classes: int = 1000) -> ResNet:
    return ResNet(Bottle2neck, (3, 4, 6, 3), num_classes, base_width=26, scale=4)
