"""Host-side preparation of a batch: labels encoded and checked, host-local
batches turned into global arrays, uneven or indivisible batches padded and masked."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from jaxheads.heads.base import Head
from jaxheads.train._mesh import data_sharding, num_data_shards


@dataclasses.dataclass(frozen=True)
class Batch:
    """A step's batch (a pytree; ``n_valid`` is static, so each padded size compiles once).

    Attributes:
      features: the features (model input and the head's weight columns).
      labels: the encoded labels.
      mask: bool ``[global_batch]``, ``True`` on real rows, or ``None`` when
        every row is real.
      n_valid: the number of real rows when ``mask`` is given, else ``None``.
    """

    features: Any
    labels: Any
    mask: jax.Array | None = None
    n_valid: int | None = None


jax.tree_util.register_dataclass(
    Batch, data_fields=["features", "labels", "mask"], meta_fields=["n_valid"]
)


def head_features(features: Any) -> Mapping[str, Any] | None:
    """What the head sees of ``features``: the dict, or ``None`` for a bare array."""
    return features if isinstance(features, Mapping) else None


def _is_traced(tree: Any) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree))


def _leading_size(features: Any, labels: Any) -> int:
    sizes = {int(np.shape(x)[0]) for x in jax.tree.leaves((features, labels)) if np.ndim(x)}
    if len(sizes) != 1:
        raise ValueError(
            "features and labels must share their leading (batch) size; got leading sizes "
            f"{sorted(sizes)}."
        )
    return sizes.pop()


def _pad_rows(x: Any, size: int) -> np.ndarray:
    x = np.asarray(x)
    missing = size - x.shape[0]
    if missing == 0:
        return x
    # Copies of a real row keep every padded label valid; the mask drops them.
    fill = (
        np.repeat(x[-1:], missing, axis=0)
        if x.shape[0]
        else np.zeros((missing,) + x.shape[1:], x.dtype)
    )
    return np.concatenate([x, fill], axis=0)


def pad_batch(
    features: Any, labels: Any, multiple: int, *, weight_key: str | None = None
) -> tuple[Any, Any, np.ndarray]:
    """Pads a host batch to a multiple of ``multiple`` rows, for hand-written steps.

    The train and eval steps pad and mask by themselves (exactly, for every
    reduction); use this helper in a step of your own. Padded rows repeat the
    last real row (so labels stay valid); with ``weight_key`` their weight
    ``features[weight_key]`` is 0 (created as ones on real rows when absent).
    Zero weights keep every metric exact, and the loss too for the ``MEAN``,
    ``SUM`` and ``SUM_BY_NONZERO_WEIGHTS`` reductions (``SUM_OVER_BATCH_SIZE``
    counts padded rows: exclude them with the returned mask).

    Args:
      features: dict of arrays ``[n, ...]`` (or one array when ``weight_key`` is None).
      labels: labels ``[n, ...]`` (any pytree).
      multiple: the padded size is the smallest multiple of this ``>= n``
        (e.g. ``jax.device_count()``).
      weight_key: the head's ``weight_column``.

    Returns:
      ``(features, labels, mask)``: NumPy arrays; ``mask`` is bool ``[padded]``.

    Examples:
      >>> import numpy as np
      >>> f, y, mask = pad_batch({"x": np.ones((3, 2))}, np.ones((3, 1)), 4, weight_key="w")
      >>> f["w"].tolist(), y.shape, mask.tolist()
      ([1.0, 1.0, 1.0, 0.0], (4, 1), [True, True, True, False])
    """
    if not isinstance(multiple, int) or multiple < 1:
        raise ValueError(f"pad_batch: multiple must be a positive int, got {multiple!r}.")
    n = _leading_size(features, labels)
    size = -(-n // multiple) * multiple
    mask = np.arange(size) < n
    features, labels = jax.tree.map(lambda x: _pad_rows(x, size), (features, labels))
    if weight_key is not None:
        if not isinstance(features, Mapping):
            raise TypeError(
                f"pad_batch(weight_key={weight_key!r}) needs dict features, got "
                f"{type(features).__name__}."
            )
        weights = np.asarray(features.get(weight_key, np.ones(size, np.float32)))
        shape = (size,) + (1,) * (weights.ndim - 1)
        features = {
            **features,
            weight_key: np.where(mask.reshape(shape), weights, 0).astype(weights.dtype),
        }
    return features, labels, mask


def _exchange(n: int, error: Exception | None) -> np.ndarray:
    """Every process's (ok, local size): one collective that every host reaches."""
    mine = np.asarray([0 if error else 1, n], np.int32)
    if jax.process_count() == 1:
        return mine[None]
    return np.asarray(multihost_utils.process_allgather(mine)).reshape(-1, 2)


def _dtype(x: Any) -> np.dtype:
    return x.dtype if isinstance(x, (jax.Array, np.ndarray)) else np.asarray(x).dtype


def _check_present(features: Any, labels: Any) -> None:
    if labels is None:
        raise ValueError(
            "You must provide a labels Tensor. Given: None. A train or eval step needs the "
            "batch's labels (its 3rd argument)."
        )
    if isinstance(features, Mapping):
        for key, value in features.items():
            if not isinstance(value, jax.Array) and _dtype(value).kind in "USO":
                raise ValueError(
                    f"features[{key!r}] holds strings (dtype {_dtype(value)}), which cannot "
                    "enter jit: encode them on the host first (a weight column must be "
                    "castable to float)."
                )


def _encode(head: Head[Any], features: Any, labels: Any, check: bool) -> Any:
    _check_present(features, labels)
    if _is_traced(labels) or isinstance(labels, jax.Array) and not labels.is_fully_addressable:
        return labels  # traced, or global already: checked where it was made.
    if not check and not any(_dtype(x).kind in "USO" for x in jax.tree.leaves(labels)):
        return labels  # numbers, unchecked on request; strings always need the vocabulary.
    return head.encode_labels(labels, head_features(features))


def prepare_batch(
    head: Head[Any],
    features: Any,
    labels: Any,
    mesh: Mesh | None,
    data_axis: str,
    check_labels: bool = True,
    micro_batches: int = 1,
) -> Batch:
    """Host side of every step: labels encoded and checked, then placed on ``mesh``.

    Each process passes its host-local rows. The global batch is their
    concatenation; when the hosts' sizes differ, or their sum does not split
    evenly over the mesh, every host pads its rows to the same multiple of its
    shards and the step masks the padding out of the loss, its gradient and
    the metrics (exact for every head and reduction). A host whose batch
    fails its checks makes every host raise (no host is left waiting).
    With ``micro_batches``, padding makes every device's rows split into them.
    """
    if mesh is None:
        return Batch(features, _encode(head, features, labels, check_labels))
    error: Exception | None = None
    n = 0
    try:
        labels = _encode(head, features, labels, check_labels)
        n = _leading_size(features, labels)
    except (ValueError, TypeError) as e:
        error = e
    table = _exchange(n, error)
    if error is not None:
        raise error
    if not table[:, 0].all():
        bad = [int(p) for p in np.flatnonzero(table[:, 0] == 0)]
        raise ValueError(f"the batch of process(es) {bad} failed its checks; see their error.")
    sizes = [int(s) for s in table[:, 1]]
    return _place(features, labels, sizes, mesh, data_axis, micro_batches)


def _already_global(tree: Any, mesh: Mesh, data_axis: str) -> bool:
    sharding = data_sharding(mesh, data_axis)
    leaves = jax.tree.leaves(tree)
    return bool(leaves) and all(isinstance(x, jax.Array) and x.sharding == sharding for x in leaves)


def _place(
    features: Any, labels: Any, sizes: list[int], mesh: Mesh, data_axis: str, micro: int
) -> Batch:
    if _already_global((features, labels), mesh, data_axis):
        return Batch(features, labels)
    n_proc = len(sizes)
    per_host = max(1, num_data_shards(mesh, data_axis) // n_proc) * micro
    local = -(-max(sizes) // per_host) * per_host
    sharding = data_sharding(mesh, data_axis)

    def to_global(x: Any) -> jax.Array:
        x = _pad_rows(x, local)
        return jax.make_array_from_process_local_data(sharding, x, (local * n_proc,) + x.shape[1:])

    features, labels = jax.tree.map(to_global, (features, labels))
    if all(s == local for s in sizes):
        return Batch(features, labels)
    mask = to_global(np.arange(local) < sizes[jax.process_index()])
    return Batch(features, labels, mask, sum(sizes))


def global_batch(batch: Any, mesh: Mesh, data_axis: str = "data") -> Any:
    """Host-local batch leaves -> global arrays sharded along ``data_axis``.

    Each process passes its own slice of the global batch (leading axis); the
    result is one global ``jax.Array`` per leaf whose leading size is the sum
    over processes (``jax.make_array_from_process_local_data``). On a single
    process this is simply the batch, sharded. Leaves that already carry the
    target sharding are returned unchanged. Hosts must pass equal sizes that
    split over their devices (else a ``ValueError`` on every host: pad with
    :func:`pad_batch`, or let the train / eval steps pad and mask).

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> from jaxheads.train import make_mesh
      >>> mesh = make_mesh(2)
      >>> x = global_batch({"x": np.ones((4, 3), np.float32)}, mesh)["x"]
      >>> x.shape, len(x.addressable_shards)
      ((4, 3), 2)
    """
    if _already_global(batch, mesh, data_axis):
        return batch
    n = _leading_size(batch, ())
    sizes = [int(s) for s in _exchange(n, None)[:, 1]]
    per_host = max(1, num_data_shards(mesh, data_axis) // len(sizes))
    if len(set(sizes)) != 1 or n % per_host:
        raise ValueError(
            f"global_batch: host batch sizes {sizes} must be equal and divisible by the "
            f"{per_host} data shard(s) of each host; pad them with "
            "jaxheads.train.pad_batch (zero weights), or pass them to a train / eval step, "
            "which pads and masks by itself."
        )
    sharding = data_sharding(mesh, data_axis)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch
    )


def refuse_padding_for_batch_statistics(batch: Batch, collections: Sequence[str]) -> None:
    """A training batch that needs padding is refused when the model keeps batch statistics.

    The step masks padded rows out of the loss, gradients and metrics, but a
    normalisation layer computes its statistics over every row it sees, so
    padding would silently change them. The padding decision is the same on
    every host (it comes from the exchanged batch sizes), so every host raises.
    """
    if batch.mask is None or not collections:
        return
    raise ValueError(
        f"this training batch has {batch.n_valid} rows, which do not split evenly over the "
        "data shards (or the hosts' batch sizes differ), so the step would pad it; the model's "
        f"mutable collections {tuple(collections)} would then compute batch statistics over "
        "the padded rows. Give every host the same batch size, divisible by its data shards "
        "(drop or refill the last uneven batch), or train without batch statistics."
    )
