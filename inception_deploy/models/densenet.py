"""DenseNet (Huang et al. 2016, "Densely Connected Convolutional Networks") in the state_dict
layout of torchvision's ``densenet121``: every layer of a dense block reads the concatenation of
all earlier outputs of that block.

torchvision's published files name the layers' modules ``norm.1``, ``conv.2``, ... (from before
dots were refused in module names): the arch's spec renames those keys on load (``legacy_keys``).
"""

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class DenseLayer(nn.Module):
    """BN -> ReLU -> 1x1 conv (to ``bn_size`` x growth) -> BN -> ReLU -> 3x3 conv (to growth)."""

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]):
        x = self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))
        return self.conv2(self.relu2(self.norm2(x)))


class DenseBlock(nn.ModuleDict):
    def __init__(self, layers: int, in_channels: int, growth_rate: int, bn_size: int):
        super().__init__()
        for i in range(layers):
            self[f"denselayer{i + 1}"] = DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size)

    def forward(self, x):
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """Between dense blocks: BN -> ReLU -> 1x1 conv (halve the channels) -> 2x2 average pool."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2)


class DenseNet(nn.Module):
    """stem (224 -> 56) -> dense block / transition x 3 (56, 28, 14) -> dense block (7) -> BN ->
    ReLU -> global average pool -> classifier."""

    def __init__(
        self,
        block_config: tuple[int, ...] = (6, 12, 24, 16),
        growth_rate: int = 32,
        num_init_features: int = 64,
        bn_size: int = 4,
        num_classes: int = 1000,
    ):
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv0", nn.Conv2d(3, num_init_features, 7, stride=2, padding=3, bias=False)),  # 112x112
                    ("norm0", nn.BatchNorm2d(num_init_features)),
                    ("relu0", nn.ReLU(inplace=True)),
                    ("pool0", nn.MaxPool2d(3, stride=2, padding=1)),  # 56x56
                ]
            )
        )
        channels = num_init_features
        for i, layers in enumerate(block_config, start=1):
            self.features.add_module(f"denseblock{i}", DenseBlock(layers, channels, growth_rate, bn_size))
            channels += layers * growth_rate
            if i < len(block_config):
                self.features.add_module(f"transition{i}", Transition(channels, channels // 2))
                channels //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.classifier = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = F.relu(self.features(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def densenet121(num_classes: int = 1000) -> DenseNet:
    return DenseNet((6, 12, 24, 16), 32, 64, num_classes=num_classes)
