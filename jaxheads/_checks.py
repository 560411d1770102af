"""Validation shared by the heads: shapes and dtypes at trace time, values on the host.

Shape and dtype problems are static and raise ``ValueError``/``TypeError``
while tracing. Value problems (labels outside their range, say) depend on
data: they raise ``ValueError`` whenever the values are concrete (eager
calls, host-side arrays). Under ``jit`` the values are abstract; inside
:func:`traced_value_checks` the heads then emit ``checkify`` checks, which
the caller functionalises with ``jax.experimental.checkify.checkify``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from jaxheads import _validate
from jaxheads._shapes import shape_str

__all__ = ["traced_value_checks"]

# A jit-cache-sensitive context: a function traced outside the context and
# called inside it (or the reverse) is traced again, so the checks are staged
# exactly when the context is active, whatever the jit cache already holds.
_TRACED_CHECKS = jax.make_user_context(default_value=False)


@contextlib.contextmanager
def traced_value_checks(enabled: bool = True) -> Iterator[None]:
    """Emits ``checkify`` checks for value conditions while tracing under this context.

    Label-range and similar checks cannot raise inside ``jit`` (the values
    are not known while tracing). Trace a function under this context and
    wrap it with ``checkify.checkify`` to get them as runtime errors::

        with jaxheads.traced_value_checks():
            err, loss = jax.jit(checkify.checkify(step))(batch)
        err.throw()

    The context is part of ``jax.jit``'s cache key (``jax.make_user_context``):
    a function first traced outside the context is traced again inside it,
    so the checks are never skipped because of the jit cache. Without
    ``checkify`` around it, a function traced in this context fails to
    compile (JAX cannot stage a check it does not functionalise).
    """
    with _TRACED_CHECKS(bool(enabled)):
        yield


def on_accelerator(x: Any) -> bool:
    """Whether ``x`` is a concrete ``jax.Array`` with a buffer off the CPU (reading it copies)."""
    if not isinstance(x, jax.Array) or isinstance(x, jax.core.Tracer):
        return False
    return any(d.platform != "cpu" for d in x.sharding.device_set)  # type: ignore[attr-defined]


@jax.jit
def _min_max(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return jnp.min(x), jnp.max(x)


def device_bounds(x: jax.Array) -> tuple[Any, Any] | None:
    """``(min, max)`` of a non-empty accelerator array, reduced on the device (two scalars
    come back, not the array); ``None`` for anything else (check it on the host)."""
    if not on_accelerator(x) or x.size == 0:
        return None
    lo, hi = jax.device_get(_min_max(x))
    return lo, hi


def concrete_value(x: Any) -> np.ndarray | None:
    """The value of ``x`` as a NumPy array, or ``None`` when ``x`` is being traced."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


def check_values(
    array: jax.Array, predicate: Callable[[Any], Any], message: Callable[[np.ndarray], str]
) -> None:
    """Raises ``ValueError(message(bad))`` unless ``predicate(array)`` holds everywhere.

    ``predicate`` must work on NumPy and JAX arrays alike. ``message`` gets the
    offending values (NumPy) when they are concrete.
    """
    value = concrete_value(array)
    if value is not None:
        ok = np.asarray(predicate(value))
        if not ok.all():
            raise ValueError(message(value[~ok]))
    elif _TRACED_CHECKS.value:
        checkify.check(jnp.all(predicate(array)), message(np.array(["<traced>"])))


def float_logits(logits: Any, logits_dimension: int) -> jax.Array:
    """Casts logits to float32 and checks their shape is ``[D0, …, DN, logits_dimension]``."""
    if logits is None:
        raise ValueError(
            "logits must not be None: expected an array of shape [D0, ..., DN, "
            f"{logits_dimension}]."
        )
    logits = _validate.as_numeric_array(logits, "logits")
    if not (
        jnp.issubdtype(logits.dtype, jnp.floating) or jnp.issubdtype(logits.dtype, jnp.integer)
    ):
        raise TypeError(f"logits must be a float or integer array, got dtype {logits.dtype}.")
    if logits.ndim < 2:
        raise ValueError(
            f"logits must have rank at least 2.  Received rank {logits.ndim}, shape "
            f"{shape_str(logits.shape)}; expected [D0, ..., DN, {logits_dimension}]."
        )
    if logits.shape[-1] != logits_dimension:
        raise ValueError(
            "logits shape must be [D0, D1, ... DN, logits_dimension], got "
            f"{shape_str(logits.shape)}: expected the last dimension to be "
            f"logits_dimension={logits_dimension}."
        )
    return jnp.asarray(logits, jnp.float32)


def check_features(features: Any) -> None:
    """``features`` must be ``None`` or a mapping of feature name to array (TF's features dict)."""
    if features is not None and not isinstance(features, Mapping):
        shape = np.shape(features) if isinstance(features, (np.ndarray, jax.Array)) else None
        got = f"an array of shape {shape_str(shape)}" if shape is not None else type(features)
        raise TypeError(
            f"features must be a dict mapping feature names to arrays (or None); got {got}. "
            "Give the model its inputs directly and the head a dict such as {'weight': w}."
        )


def check_weight_values(features: Any, weight_column: Any) -> None:
    """Host side: the weight column, when its values are concrete, is numeric and never NaN.

    Called by the heads' ``encode_labels`` (which the train and eval steps run
    before tracing), so a bad weight is a ``ValueError`` naming it, not a NaN
    loss or a staging error inside ``jit``.
    """
    if weight_column is None or features is None:
        return
    check_features(features)
    key = weight_column if isinstance(weight_column, str) else weight_column.key
    if key not in features:
        raise ValueError(
            f"weight_column {key!r} is missing from features: expected a key {key!r} in "
            f"features, got keys {sorted(features)}."
        )
    raw = features[key]
    if isinstance(raw, jax.core.Tracer):
        return
    if on_accelerator(raw) and (jnp.issubdtype(raw.dtype, jnp.number) or raw.dtype == np.bool_):
        bounds = device_bounds(raw.astype(jnp.float32))
        if bounds is None or not np.isnan(bounds[0]):  # NaN propagates through min
            return
    values = np.asarray(raw)
    if not (jnp.issubdtype(values.dtype, jnp.number) or values.dtype == np.bool_):
        raise ValueError(f"Weight column should be castable to float. Given dtype: {values.dtype}")
    if np.isnan(values.astype(np.float32)).any():
        raise ValueError(
            f"weights must not be NaN; got NaN in features[{key!r}] (weight_column): "
            f"{values.reshape(-1)[:5]}{'...' if values.size > 5 else ''}."
        )


def weights_from_features(
    features: Mapping[str, Any] | None,
    weight_column: Any,
    logits_shape: tuple[int, ...],
    allow_per_logit_weights: bool = False,
) -> jax.Array:
    """The float32 weights for ``logits_shape``, shaped ``[D0, …, DN, 1]`` (or ``[…, d]``).

    Without a weight column the weights are ones. ``weight_column`` is a
    feature key (``str``) or a :class:`NumericColumn`.
    """
    from jaxheads.feature_column import NumericColumn

    check_features(features)
    ones_shape = tuple(logits_shape[:-1]) + (1,)
    if weight_column is None:
        return jnp.ones(ones_shape, jnp.float32)
    column = NumericColumn(weight_column) if isinstance(weight_column, str) else weight_column
    if not isinstance(column, NumericColumn):
        raise TypeError(
            "Weight column must be either a string or NumericColumn. Given type: "
            f"{type(weight_column)}."
        )
    if features is None or column.key not in features:
        available = sorted(features) if features is not None else None
        raise ValueError(
            f"weight_column {column.key!r} is missing from features: expected a key "
            f"{column.key!r} in features, got keys {available}."
        )
    raw = features[column.key]
    if not isinstance(raw, jax.Array) and np.asarray(raw).dtype.kind in "USO":
        raise ValueError(
            f"Weight column should be castable to float. Given dtype: {np.asarray(raw).dtype}"
        )
    weights = jnp.asarray(raw)
    if not (
        jnp.issubdtype(weights.dtype, jnp.floating)
        or jnp.issubdtype(weights.dtype, jnp.integer)
        or weights.dtype == jnp.bool_
    ):
        raise ValueError(f"Weight column should be castable to float. Given dtype: {weights.dtype}")
    weights = weights.astype(jnp.float32)
    if column.normalizer_fn is not None:
        weights = jnp.asarray(column.normalizer_fn(weights), jnp.float32)
    batch_shape = tuple(logits_shape[:-1])
    allowed = [batch_shape, batch_shape + (1,)]
    if allow_per_logit_weights:
        allowed.append(tuple(logits_shape))
    if weights.shape not in allowed:
        expected = "[D0, D1, ... DN] or [D0, D1, ... DN, 1]"
        if allow_per_logit_weights:
            expected = "[D0, D1, ... DN], [D0, D1, ... DN, 1] or [D0, D1, ... DN, logits_dimension]"
        raise ValueError(
            f"weights shape must be {expected}, logits_shape: {shape_str(logits_shape)}. "
            f"weights_shape: {shape_str(weights.shape)}. (Expected one of "
            f"{', '.join(shape_str(s) for s in allowed)}.)"
        )
    if weights.shape == batch_shape:
        weights = weights[..., None]
    return weights


def check_loss_fn_args(loss_fn: Callable[..., Any] | None, allowed: frozenset[str]) -> None:
    """Validates a custom ``loss_fn``'s parameter names the way TF does."""
    import inspect

    if loss_fn is None:
        return
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn)}.")
    params = inspect.signature(loss_fn).parameters.values()
    names = tuple(p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
    for required in ("labels", "logits"):
        if required not in names:
            raise ValueError(f"loss_fn must contain argument: {required}. Given arguments: {names}")
    unexpected = [n for n in names if n not in allowed]
    if unexpected:
        raise ValueError(
            f"loss_fn has unexpected args: {unexpected}; allowed arguments are {sorted(allowed)}."
        )


def loss_fn_params(loss_fn: Callable[..., Any]) -> frozenset[str]:
    import inspect

    return frozenset(inspect.signature(loss_fn).parameters)


def check_thresholds(thresholds: Any) -> tuple[float, ...]:
    """``thresholds`` as a tuple of floats, each strictly inside (0, 1) (see ``_validate``)."""
    return _validate.thresholds(thresholds)


def check_num_thresholds(num_thresholds: Any) -> int:
    """A head's ``num_thresholds`` (AUC curve size): an int > 1 (NumPy integers too, not bool)."""
    return _validate.positive_int(num_thresholds, "num_thresholds", minimum=2)
