"""Which architectures the per-architecture export tests export.

Exporting is the slow part of the suite (the dynamo exporter, 20-60 s per network on 2 cores), so
an architecture whose graph has the same operators as another, only deeper, wider, or with other
kernel sizes, groups or dilations, is exported once, through the one it names here. Its own
layout and logits are checked against the reference implementation (test_reference_layouts), its
parameter count and input-size limits on the network (test_models); all seven new archs were
exported with parity once, by scripts/arch_table.py (docs/architectures.md).
"""

from inception_deploy import list_archs

SAME_OPERATORS_AS = {
    "inception_next_atto": "inception_next_tiny",  # band kernel 9 and a quarter of the channels per branch
    "inception_next_small": "inception_next_tiny",  # 27 blocks in stage 3
    "inception_next_base": "inception_next_tiny",  # wider
    "skresnet34": "skresnet18",  # deeper
    # bottlenecks; both paths read all inputs (no Split) with 32 groups, the second dilated: Conv
    # attributes resnext50_32x4d and skresnet18 already export, one op (Split) fewer
    "skresnext50_32x4d": "skresnet18",
}
EXPORTED = [arch for arch in list_archs() if arch not in SAME_OPERATORS_AS]
