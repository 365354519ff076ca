"""ResNeSt (Zhang et al. 2020, "ResNeSt: Split-Attention Networks") in the state_dict layout of
timm's ``resnest50d``: a ResNet-D (deep stem, average-pool shortcut) whose 3x3 convolution is a
split-attention block over ``radix`` groups.
"""

import torch
from torch import nn

from .layers import make_divisible
from .resnet import ResNet


class SplitAttention(nn.Module):
    """A grouped 3x3 conv giving ``radix`` splits of the channels; their sum, globally pooled,
    goes through a small bottleneck (fc1 -> BN -> ReLU -> fc2) to one logit per split and channel;
    a softmax across the splits weights them, and the weighted splits are summed."""

    def __init__(self, channels: int, stride: int = 1, radix: int = 2, reduction: int = 4):
        super().__init__()
        self.radix = radix
        attention = make_divisible(channels * radix / reduction, 8, min_value=32)
        self.conv = nn.Conv2d(channels, channels * radix, 3, stride=stride, padding=1, groups=radix, bias=False)
        self.bn0 = nn.BatchNorm2d(channels * radix)
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = nn.Conv2d(channels, attention, 1)
        self.bn1 = nn.BatchNorm2d(attention)
        self.fc2 = nn.Conv2d(attention, channels * radix, 1)

    def forward(self, x):
        x = self.relu(self.bn0(self.conv(x)))
        batch, channels = x.shape[0], x.shape[1] // self.radix
        splits = x.reshape(batch, self.radix, channels, x.shape[2], x.shape[3])  # N x radix x C x H x W
        pooled = splits.sum(1).mean((2, 3), keepdim=True)
        logits = self.fc2(self.relu(self.bn1(self.fc1(pooled))))  # N x (radix * C) x 1 x 1
        weights = torch.softmax(logits.reshape(batch, self.radix, channels, 1, 1), dim=1)
        return (splits * weights).sum(1)


class ResNestBottleneck(nn.Module):
    """1x1 -> split attention (3x3) -> [3x3 average pool with the stride] -> 1x1 (expand 4x) +
    shortcut. The stride moves from the 3x3 to a pool after it (timm's ``avd``, ``avd_last``)."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, radix: int = 2
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = SplitAttention(planes, radix=radix)
        self.avd_last = nn.AvgPool2d(3, stride, padding=1) if stride > 1 else None
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = downsample

    def forward(self, x):
        out = self.conv2(self.relu(self.bn1(self.conv1(x))))
        if self.avd_last is not None:
            out = self.avd_last(out)
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


def resnest50d(num_classes: int = 1000) -> ResNet:
    return ResNet(ResNestBottleneck, (3, 4, 6, 3), num_classes, deep_stem=32, avg_down=True, radix=2)
