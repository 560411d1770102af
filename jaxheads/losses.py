"""Per-element losses in numerically stable forms, computed in float32.

Every function takes ``labels`` and ``logits`` of the same shape
``[D0, …, DN, k]`` (any float dtype, bfloat16 included) and returns the
unweighted, unreduced float32 loss; the heads apply weights and reductions.

Infinite logits (finite labels) never give NaN, neither in the value nor in
the gradient nor in any intermediate (``jax_debug_nans`` stays quiet): the
loss is its limit, a finite number or ``+inf``. Gradients are the closed
forms (``sigmoid(x) − z``, ``softmax(x)·Σy − y``, ``exp(x) − z``,
``2·(x − z)``) with every local derivative clipped to ±float32 max, so that a
zero weight (or a zero cotangent) cancels it instead of making ``0·inf``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = [
    "sigmoid_cross_entropy",
    "sparse_softmax_cross_entropy",
    "softmax_cross_entropy",
    "squared_error",
    "log_poisson_loss",
    "softmax",
]

_FINITE_MAX = float(jnp.finfo(jnp.float32).max)


def _on_flat_views(fn: Callable[..., jax.Array], *arrays: jax.Array) -> jax.Array:
    """``fn`` applied to 1-D views of same-shape ``arrays``, reshaped back.

    XLA:CPU runs fused elementwise loops over ``[N, 1]`` arrays 10-30x slower
    than over ``[N]`` (measured with jaxlib 0.10 on x86); the reshapes are free.
    """
    shape = jnp.broadcast_shapes(*(a.shape for a in arrays))
    flat = [jnp.broadcast_to(a, shape).reshape(-1) for a in arrays]
    return fn(*flat).reshape(shape)


def times_or_zero(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a * b`` where an exactly-zero factor wins: ``0 · ±inf = 0`` (and ``0 · NaN = 0``).

    No ``0 · inf`` is ever computed, not even in a discarded branch, so
    ``jax_debug_nans`` does not trip and the gradient of the discarded branch
    is not NaN either.

    Examples:
      >>> times_or_zero(jnp.array([0.0, 2.0]), jnp.array([jnp.inf, 3.0]))
      Array([0., 6.], dtype=float32)
    """
    zero = (a == 0) | (b == 0)
    return jnp.where(zero, 0, a) * jnp.where(zero, 0, b)


def _clip_finite(x: jax.Array) -> jax.Array:
    return jnp.clip(x, -_FINITE_MAX, _FINITE_MAX)


def sigmoid_loss_and_probability(
    labels: jax.Array, logits: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Sigmoid cross-entropy and sigmoid from ONE ``exp``: ``(loss, p)``, float32.

    The single definition of the binary loss (``sigmoid_cross_entropy`` is
    its first output; the metric kernels take both, so an update pays one
    ``exp`` for the loss and the probability). ``loss = max(x, 0) − x·y +
    log1p(exp(−|x|))`` with the ``x·y`` terms written so that ``x = ±inf``
    gives 0 when the label agrees and ``inf`` otherwise (never ``inf − inf``);
    ``p = 1 / (1 + e)`` or ``e / (1 + e)`` with ``e = exp(−|x|)`` (no overflow).

    Examples:
      >>> loss, p = sigmoid_loss_and_probability(jnp.array([1.0, 0.0]), jnp.array([0.0, 40.0]))
      >>> loss.tolist(), p.tolist()
      ([0.6931471824645996, 40.0], [0.5, 1.0])
    """
    e = jnp.exp(-jnp.abs(logits))
    linear = jnp.where(
        logits > 0, times_or_zero(logits, 1 - labels), times_or_zero(-logits, labels)
    )
    inv = 1.0 / (1.0 + e)
    return linear + jnp.log1p(e), jnp.where(logits >= 0, inv, e * inv)


@jax.custom_jvp
def _sigmoid_ce(labels: jax.Array, logits: jax.Array) -> jax.Array:
    return sigmoid_loss_and_probability(labels, logits)[0]


@_sigmoid_ce.defjvp
def _sigmoid_ce_jvp(
    primals: tuple[jax.Array, jax.Array], tangents: tuple[jax.Array, jax.Array]
) -> tuple[jax.Array, jax.Array]:
    labels, logits = primals
    d_labels, d_logits = tangents
    # d/dlogits = sigmoid(x) - z (exact, finite even for ±inf); d/dlabels = -x, clipped.
    d_loss = (jax.nn.sigmoid(logits) - labels) * d_logits - _clip_finite(logits) * d_labels
    return _sigmoid_ce(labels, logits), d_loss


def sigmoid_cross_entropy(labels: ArrayLike, logits: ArrayLike) -> jax.Array:
    """Sigmoid cross-entropy, ``max(x, 0) − x·z + log1p(exp(−|x|))``.

    Equal to TF's ``tf.nn.sigmoid_cross_entropy_with_logits``. Logits of
    ±1e4 give exact losses and gradients; ±inf logits give 0 for a matching
    hard label, ``inf`` otherwise, and a finite gradient ``sigmoid(x) − z``.

    Args:
      labels: targets in [0, 1], any float dtype, shape ``[..., k]``.
      logits: same shape as ``labels``, any float (or int) dtype.

    Returns:
      float32 array of the common shape.

    Examples:
      >>> sigmoid_cross_entropy(jnp.array([1.0, 0.0]), jnp.array([-41.0, 0.0]))
      Array([41.       ,  0.6931472], dtype=float32)
      >>> sigmoid_cross_entropy(jnp.array([1.0, 0.0]), jnp.array([jnp.inf, jnp.inf]))
      Array([ 0., inf], dtype=float32)
    """
    labels = jnp.asarray(labels, jnp.float32)
    logits = jnp.asarray(logits, jnp.float32)
    return _on_flat_views(_sigmoid_ce, labels, logits)


def _log_softmax(logits: jax.Array) -> jax.Array:
    """``log_softmax`` over the last axis, defined at infinite logits.

    Where the row maximum is infinite, the logits equal to it share the
    probability evenly (the limit of equal logits growing together) and the
    others get ``-inf``: a single ``+inf`` logit is a one-hot distribution, a
    row of ``-inf`` is uniform. Nothing computes ``inf − inf``.
    """
    top = jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
    infinite_top = jnp.isinf(top)
    shifted = jnp.where(
        infinite_top,
        jnp.where(logits == top, 0.0, -jnp.inf),
        logits - jnp.where(infinite_top, 0.0, top),
    )
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))


def softmax(logits: ArrayLike, axis: int = -1) -> jax.Array:
    """Softmax over ``axis`` in float32, defined at infinite logits (no NaN).

    ``jax.nn.softmax`` gives NaN for a ``+inf`` logit (``inf − inf``). Here the
    logits equal to an infinite row maximum share the probability evenly: a
    single ``+inf`` gives a one-hot row, a row of ``-inf`` a uniform one. The
    heads' ``probabilities`` use it, so they agree with the losses.

    Examples:
      >>> softmax(jnp.array([[jnp.inf, 0.0], [-jnp.inf, -jnp.inf]]))
      Array([[1. , 0. ],
             [0.5, 0.5]], dtype=float32)
    """
    logits = jnp.moveaxis(jnp.asarray(logits, jnp.float32), axis, -1)
    return jnp.moveaxis(jnp.exp(_log_softmax(logits)), -1, axis)


@jax.custom_jvp
def _softmax_ce(labels: jax.Array, logits: jax.Array) -> jax.Array:
    log_probs = _log_softmax(logits)
    # `0 - Σ`, not `-Σ`: a zero loss is +0.0, not -0.0.
    return 0.0 - jnp.sum(times_or_zero(log_probs, labels), axis=-1, keepdims=True)


@_softmax_ce.defjvp
def _softmax_ce_jvp(
    primals: tuple[jax.Array, jax.Array], tangents: tuple[jax.Array, jax.Array]
) -> tuple[jax.Array, jax.Array]:
    labels, logits = primals
    d_labels, d_logits = tangents
    log_probs = _log_softmax(logits)
    probs = jnp.exp(log_probs)
    # d/dlogits = softmax(x)·Σy − y (finite everywhere); d/dlabels = −log p, clipped.
    d_x = probs * jnp.sum(labels, axis=-1, keepdims=True) - labels
    d_loss = jnp.sum(d_x * d_logits + _clip_finite(-log_probs) * d_labels, axis=-1, keepdims=True)
    loss = 0.0 - jnp.sum(times_or_zero(log_probs, labels), axis=-1, keepdims=True)
    return loss, d_loss


def sparse_softmax_cross_entropy(labels: ArrayLike, logits: ArrayLike) -> jax.Array:
    """Softmax cross-entropy of integer class ids, ``−log_softmax(x)[label]``.

    A ``+inf`` logit takes all the probability (loss 0 on its class, ``inf``
    on the others; several ``+inf`` logits share it evenly); a ``-inf`` logit
    has probability 0. The gradient is ``softmax(x) − onehot(label)``, finite
    for any logits. A class id outside ``[0, n)`` gives a NaN loss, never the
    loss of another class (JAX would wrap ``-1`` to the last class); the
    heads reject such ids wherever the labels are concrete.

    Args:
      labels: integer class ids, shape ``[D0, …, DN, 1]``, in ``[0, n)``.
      logits: float, shape ``[D0, …, DN, n]``.

    Returns:
      float32 loss of shape ``[D0, …, DN, 1]``.

    Examples:
      >>> sparse_softmax_cross_entropy(jnp.array([[1]]), jnp.array([[0.0, 0.0]]))
      Array([[0.6931472]], dtype=float32)
      >>> sparse_softmax_cross_entropy(jnp.array([[0], [1]]), jnp.array([[jnp.inf, 0.0]] * 2))
      Array([[ 0.],
             [inf]], dtype=float32)
    """
    logits = jnp.asarray(logits, jnp.float32)
    labels = jnp.asarray(labels).astype(jnp.int32)
    if labels.shape != (*logits.shape[:-1], 1):
        raise ValueError(
            f"labels must have shape [D0, …, DN, 1] = {[*logits.shape[:-1], 1]} for logits of "
            f"shape {list(logits.shape)}; got labels of shape {list(labels.shape)}."
        )
    n_classes = logits.shape[-1]
    one_hot = jax.nn.one_hot(labels[..., 0], n_classes, dtype=jnp.float32)
    loss = _softmax_ce(one_hot, logits)
    valid = (labels >= 0) & (labels < n_classes)
    return jnp.where(valid, loss, jnp.nan)


def softmax_cross_entropy(labels: ArrayLike, logits: ArrayLike) -> jax.Array:
    """Softmax cross-entropy of (soft or one-hot) label distributions, ``−Σ_c y_c·log_softmax(x)_c``.

    A zero label weight contributes 0 even where the log-probability is
    −inf. Infinite logits as in :func:`sparse_softmax_cross_entropy`; the
    gradient with respect to the logits is ``softmax(x)·Σy − y``.

    Args:
      labels: float ``[D0, …, DN, n]``, each row a distribution over classes.
      logits: float ``[D0, …, DN, n]``.

    Returns:
      float32 loss of shape ``[D0, …, DN, 1]``.

    Examples:
      >>> softmax_cross_entropy(jnp.array([[0.0, 1.0]]), jnp.array([[0.0, 0.0]]))
      Array([[0.6931472]], dtype=float32)
    """
    labels = jnp.asarray(labels, jnp.float32)
    return _softmax_ce(labels, jnp.asarray(logits, jnp.float32))


@jax.custom_jvp
def _squared_error(labels: jax.Array, logits: jax.Array) -> jax.Array:
    return (labels - logits) * (labels - logits)


@_squared_error.defjvp
def _squared_error_jvp(
    primals: tuple[jax.Array, jax.Array], tangents: tuple[jax.Array, jax.Array]
) -> tuple[jax.Array, jax.Array]:
    labels, logits = primals
    d_labels, d_logits = tangents
    slope = _clip_finite(2 * (logits - labels))
    return _squared_error(labels, logits), slope * (d_logits - d_labels)


def squared_error(labels: ArrayLike, logits: ArrayLike) -> jax.Array:
    """Elementwise ``(labels − logits)²`` in float32.

    ``inf`` for an infinite logit (finite label), with the gradient
    ``2·(x − z)`` clipped to ±float32 max.

    Examples:
      >>> squared_error(jnp.array([43.0, 44.0]), jnp.array([45.0, 41.0]))
      Array([4., 9.], dtype=float32)
    """
    return _on_flat_views(
        _squared_error, jnp.asarray(labels, jnp.float32), jnp.asarray(logits, jnp.float32)
    )


def _stirling(labels: jax.Array) -> jax.Array:
    """``z·log z − z + ½·log(2πz)`` where ``z > 1``, else 0 (TF's ``log(z!)`` term)."""
    safe = jnp.where(labels > 1, labels, 1.0)
    stirling = safe * jnp.log(safe) - safe + 0.5 * jnp.log(2 * math.pi * safe)
    return jnp.where(labels > 1, stirling, 0.0)


@jax.custom_jvp
def _poisson(labels: jax.Array, logits: jax.Array) -> jax.Array:
    # Where exp(x) overflows, it dominates z·x (which may overflow too): the loss is
    # +inf, never inf − inf.
    overflow = jnp.exp(logits) == jnp.inf
    finite_x = jnp.where(overflow, 0.0, logits)
    loss = jnp.exp(finite_x) - times_or_zero(finite_x, labels)
    return jnp.where(overflow, jnp.inf, loss)


@_poisson.defjvp
def _poisson_jvp(
    primals: tuple[jax.Array, jax.Array], tangents: tuple[jax.Array, jax.Array]
) -> tuple[jax.Array, jax.Array]:
    labels, logits = primals
    d_labels, d_logits = tangents
    d_x = _clip_finite(jnp.exp(logits) - labels)
    return _poisson(labels, logits), d_x * d_logits - _clip_finite(logits) * d_labels


def log_poisson_loss(
    labels: ArrayLike, logits: ArrayLike, compute_full_loss: bool = True
) -> jax.Array:
    """Poisson negative log-likelihood with log-rate ``logits``: ``exp(x) − z·x``.

    With ``compute_full_loss`` the Stirling approximation of ``log(z!)``,
    ``z·log z − z + ½·log(2πz)``, is added where ``z > 1`` (TF's
    ``tf.nn.log_poisson_loss``). A ``+inf`` logit gives ``+inf`` (TF: NaN for
    ``z > 0``); a ``-inf`` logit gives ``+inf`` for ``z > 0`` and ``0`` for
    ``z = 0``. The gradient ``exp(x) − z`` is clipped to ±float32 max.

    Examples:
      >>> log_poisson_loss(jnp.array([1.0]), jnp.array([0.0]))
      Array([1.], dtype=float32)
      >>> log_poisson_loss(jnp.array([2.0, 0.0]), jnp.array([jnp.inf, -jnp.inf]), False)
      Array([inf,  0.], dtype=float32)
    """

    def poisson(z: jax.Array, x: jax.Array) -> jax.Array:
        loss = _poisson(z, x)
        return loss + _stirling(z) if compute_full_loss else loss

    return _on_flat_views(
        poisson, jnp.asarray(labels, jnp.float32), jnp.asarray(logits, jnp.float32)
    )
