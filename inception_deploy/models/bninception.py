"""BN-Inception (Inception v2), Ioffe & Szegedy 2015, in Cadene ``pretrainedmodels``' layout.

That port from Caffe registers every layer flat on the model (``inception_3a_1x1``,
``inception_3a_1x1_bn``, ...), so this module does the same, driven by the table below, and its
state_dict matches the published checkpoint key for key. Convolutions carry a bias, BN has
eps 1e-5. The reference ends in a fixed 7x7 average pool (224 input only); an adaptive pool
computes the same there and lets other multiples of 32 through.
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class _Block(NamedTuple):
    name: str
    in_channels: int
    ch1x1: int  # 0: no 1x1 branch (reduction blocks)
    ch3x3red: int
    ch3x3: int
    double_red: int
    double: int
    pool: str  # "avg" | "max" (stride 1 unless the block reduces)
    pool_proj: int  # 0: pooled input passes through unprojected
    stride: int = 1


_BLOCKS = (
    _Block("3a", 192, 64, 64, 64, 64, 96, "avg", 32),  # N x 256 x 28 x 28
    _Block("3b", 256, 64, 64, 96, 64, 96, "avg", 64),  # N x 320 x 28 x 28
    _Block("3c", 320, 0, 128, 160, 64, 96, "max", 0, stride=2),  # N x 576 x 14 x 14
    _Block("4a", 576, 224, 64, 96, 96, 128, "avg", 128),  # N x 576
    _Block("4b", 576, 192, 96, 128, 96, 128, "avg", 128),  # N x 576
    _Block("4c", 576, 160, 128, 160, 128, 160, "avg", 128),  # N x 608
    _Block("4d", 608, 96, 128, 192, 160, 192, "avg", 128),  # N x 608
    _Block("4e", 608, 0, 128, 192, 192, 256, "max", 0, stride=2),  # N x 1056 x 7 x 7
    _Block("5a", 1056, 352, 192, 320, 160, 224, "avg", 128),  # N x 1024
    _Block("5b", 1024, 352, 192, 320, 192, 224, "max", 128),  # N x 1024 x 7 x 7
)


class BNInception(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv("conv1_7x7_s2", 3, 64, 7, stride=2, padding=3)
        self._conv("conv2_3x3_reduce", 64, 64, 1)
        self._conv("conv2_3x3", 64, 192, 3, padding=1)
        for b in _BLOCKS:
            p = f"inception_{b.name}"
            if b.ch1x1:
                self._conv(f"{p}_1x1", b.in_channels, b.ch1x1, 1)
            self._conv(f"{p}_3x3_reduce", b.in_channels, b.ch3x3red, 1)
            self._conv(f"{p}_3x3", b.ch3x3red, b.ch3x3, 3, stride=b.stride, padding=1)
            self._conv(f"{p}_double_3x3_reduce", b.in_channels, b.double_red, 1)
            self._conv(f"{p}_double_3x3_1", b.double_red, b.double, 3, padding=1)
            self._conv(f"{p}_double_3x3_2", b.double, b.double, 3, stride=b.stride, padding=1)
            if b.pool_proj:
                self._conv(f"{p}_pool_proj", b.in_channels, b.pool_proj, 1)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.last_linear = nn.Linear(1024, num_classes)

    def _conv(self, name, in_channels, out_channels, kernel_size, stride=1, padding=0):
        self.add_module(name, nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding))
        self.add_module(f"{name}_bn", nn.BatchNorm2d(out_channels, eps=1e-5))

    def _conv_bn_relu(self, name, x):
        return F.relu(getattr(self, f"{name}_bn")(getattr(self, name)(x)))

    def _inception(self, b: _Block, x):
        p = f"inception_{b.name}"
        branches = []
        if b.ch1x1:
            branches.append(self._conv_bn_relu(f"{p}_1x1", x))
        branches.append(self._conv_bn_relu(f"{p}_3x3", self._conv_bn_relu(f"{p}_3x3_reduce", x)))
        d = self._conv_bn_relu(f"{p}_double_3x3_reduce", x)
        d = self._conv_bn_relu(f"{p}_double_3x3_2", self._conv_bn_relu(f"{p}_double_3x3_1", d))
        branches.append(d)
        if b.pool == "avg":
            pooled = F.avg_pool2d(x, 3, stride=1, padding=1, ceil_mode=True, count_include_pad=True)
        else:
            pooled = F.max_pool2d(x, 3, stride=b.stride, padding=1 if b.stride == 1 else 0, ceil_mode=True)
        branches.append(self._conv_bn_relu(f"{p}_pool_proj", pooled) if b.pool_proj else pooled)
        return torch.cat(branches, 1)

    def forward(self, x):
        # N x 3 x 224 x 224 (BGR, 0-255, mean-subtracted)
        x = self._conv_bn_relu("conv1_7x7_s2", x)  # N x 64 x 112 x 112
        x = F.max_pool2d(x, 3, stride=2, ceil_mode=True)  # N x 64 x 56 x 56
        x = self._conv_bn_relu("conv2_3x3", self._conv_bn_relu("conv2_3x3_reduce", x))
        x = F.max_pool2d(x, 3, stride=2, ceil_mode=True)  # N x 192 x 28 x 28
        for b in _BLOCKS:
            x = self._inception(b, x)
        x = torch.flatten(self.global_pool(x), 1)  # N x 1024
        return self.last_linear(x)
