"""BuilderConfig validation and profiles."""

from __future__ import annotations

import pytest

from dist_rt import BuilderConfig
from dist_rt.errors import BuildError


class TestBuilderConfig:
    def test_defaults(self):
        cfg = BuilderConfig()
        assert (cfg.device, cfg.precision, cfg.optimization_level) == ("cpu", "fp32", 2)

    @pytest.mark.parametrize("kw, word", [
        ({"device": "tpu"}, "device"), ({"precision": "int4"}, "precision"),
        ({"optimization_level": 4}, "optimization_level"),
        ({"optimization_level": True}, "optimization_level"),
        ({"memory_limit": -1}, "memory_limit"), ({"timing_cache": 3}, "timing_cache")])
    def test_bad_fields(self, kw, word):
        with pytest.raises(BuildError, match=word):
            BuilderConfig(**kw)

    def test_profile_ok(self):
        cfg = BuilderConfig()
        p = cfg.add_profile("p", min={"x": (1, 4)}, opt={"x": [2, 4]}, max={"x": (8, 4)})
        assert p.max == {"x": (8, 4)} and cfg.profiles == [p]

    @pytest.mark.parametrize("lo, mid, hi, word", [
        ((4, 4), (2, 4), (8, 4), "min <= opt <= max"),
        ((1,), (2, 4), (8, 4), "ranks"),
        ((1, -4), (2, 4), (8, 4), "non-negative")])
    def test_profile_bad(self, lo, mid, hi, word):
        with pytest.raises(BuildError, match=word):
            BuilderConfig().add_profile("p", min={"x": lo}, opt={"x": mid}, max={"x": hi})

    def test_profile_duplicate_and_mismatched_inputs(self):
        cfg = BuilderConfig()
        cfg.add_profile("p", min={"x": (1,)}, opt={"x": (1,)}, max={"x": (1,)})
        with pytest.raises(BuildError, match="twice"):
            cfg.add_profile("p", min={"x": (1,)}, opt={"x": (1,)}, max={"x": (1,)})
        with pytest.raises(BuildError, match="same inputs"):
            cfg.add_profile("q", min={"x": (1,)}, opt={"y": (1,)}, max={"x": (1,)})
