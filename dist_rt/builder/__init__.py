"""The builder: ``Builder(BuilderConfig(...)).build(network) -> Engine``."""

from dist_rt.builder.builder import Builder
from dist_rt.builder.config import BuilderConfig, Profile

__all__ = ["Builder", "BuilderConfig", "Profile"]
