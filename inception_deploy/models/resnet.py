"""ResNet (He et al. 2015), ResNeXt (Xie et al. 2016) and SE-ResNet (Hu et al. 2017) in the
state_dict layout of torchvision's ``resnet18/34/50/101`` and ``resnext50_32x4d`` and timm's
``seresnet50`` (the same names: timm kept torchvision's).

``ResNet`` is also the trunk of Res2Net and ResNeSt (``res2net.py``, ``resnest.py``): they swap
the block, and ResNeSt the stem and the shortcut (``deep_stem``, ``avg_down``).
"""

import torch
from torch import nn

from .layers import make_divisible


class SqueezeExcite(nn.Module):
    """Channel attention: global average -> 1x1 conv (reduce 16x) -> ReLU -> 1x1 conv -> sigmoid,
    which scales each channel of the input (timm's ``SEModule``: convs with bias, no norm)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        reduced = make_divisible(channels / reduction, 8, round_limit=0.0)
        self.fc1 = nn.Conv2d(channels, reduced, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(reduced, channels, kernel_size=1)

    def forward(self, x):
        gate = self.fc2(self.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and the shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 (stride, ``groups`` for ResNeXt) -> 1x1 (expand 4x), [SE], + shortcut.

    The stride sits on the 3x3 convolution ("ResNet v1.5"), as in torchvision and timm.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        se: bool = False,
    ):
        super().__init__()
        width = int(planes * base_width / 64) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.se = SqueezeExcite(planes * self.expansion) if se else None
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


def _deep_stem(width: int, out_channels: int) -> nn.Sequential:
    """Three 3x3 convolutions instead of one 7x7 (the "ResNet-D" stem; timm's ``stem_type='deep'``,
    indices 0..6 are its state_dict names)."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, out_channels, 3, padding=1, bias=False),
    )


def _shortcut(inplanes: int, outplanes: int, stride: int, avg_down: bool) -> nn.Sequential:
    """Projection shortcut: 1x1 conv with the stride, or (``avg_down``, "ResNet-D") a 2x2 average
    pool and a 1x1 conv, so no input pixel is skipped. The empty slot 0 keeps timm's names."""
    if not avg_down:
        return nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, stride=stride, bias=False), nn.BatchNorm2d(outplanes))
    pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
    return nn.Sequential(pool, nn.Conv2d(inplanes, outplanes, 1, bias=False), nn.BatchNorm2d(outplanes))


class ResNet(nn.Module):
    """stem (224 -> 56) -> layer1..layer4 (56, 28, 14, 7) -> global average pool -> fc."""

    def __init__(
        self,
        block: type[nn.Module],
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
        deep_stem: int | None = None,
        avg_down: bool = False,
        **block_args,
    ):
        super().__init__()
        self.inplanes = 64 if deep_stem is None else 2 * deep_stem
        if deep_stem is None:
            self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)  # 112x112
        else:
            self.conv1 = _deep_stem(deep_stem, self.inplanes)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)  # 56x56
        self.layer1 = self._make_layer(block, 64, layers[0], 1, avg_down, block_args)  # 56x56
        self.layer2 = self._make_layer(block, 128, layers[1], 2, avg_down, block_args)  # 28x28
        self.layer3 = self._make_layer(block, 256, layers[2], 2, avg_down, block_args)  # 14x14
        self.layer4 = self._make_layer(block, 512, layers[3], 2, avg_down, block_args)  # 7x7
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes: int, blocks: int, stride: int, avg_down: bool, block_args: dict):
        outplanes = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != outplanes:
            downsample = _shortcut(self.inplanes, outplanes, stride, avg_down)
        layers = [block(self.inplanes, planes, stride, downsample, **block_args)]
        self.inplanes = outplanes
        layers += [block(outplanes, planes, **block_args) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 1000) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes)


def resnet34(num_classes: int = 1000) -> ResNet:
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes)


def resnet50(num_classes: int = 1000) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes)


def resnet101(num_classes: int = 1000) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 23, 3), num_classes)


def resnext50_32x4d(num_classes: int = 1000) -> ResNet:
    """32 groups of 4 channels in each 3x3 convolution of layer1 (wider in later layers)."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, groups=32, base_width=4)


def seresnet50(num_classes: int = 1000) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, se=True)
