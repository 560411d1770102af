"""Strict test configuration, set up before JAX is imported anywhere.

* 8 fake CPU devices, so sharding / shard_map tests run on any machine;
* rank promotion raises and dtype promotion is strict, so a silently
  broadcast shape or an accidental int/float mix is a test failure;
* warnings are errors (see ``filterwarnings`` in pyproject.toml);
* hypothesis: the ``ci`` profile (derandomized, no example database) is loaded
  when ``CI`` is set, so a CI run is reproducible; ``HYPOTHESIS_PROFILE=NAME``
  picks one explicitly (``dev``: hypothesis' defaults, random seeds).
"""

import os

_DEVICES_FLAG = "--xla_force_host_platform_device_count=8"
if _DEVICES_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _DEVICES_FLAG).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev")
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)

# Fixture generators in tests/data run under TensorFlow, never under pytest.
collect_ignore_glob = ["data/*"]
