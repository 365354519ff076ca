"""Command lines several tests share."""

# inception-export of a quick v1: the TorchScript exporter, batch 1, 96 pixels, no parity, no engine
QUICK_V1 = ["export", "--arch", "v1", "--opset", "17", "--batch", "1", "--input-size", "96", "--no-parity"]
QUICK_V1 += ["--engine", "no"]
QUICK_V1_INT8_CPU = QUICK_V1 + ["--int8", "--int8-target", "cpu"]
