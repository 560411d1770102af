"""Flax wrappers for heads: a ``flax.linen`` module and a ``flax.nnx`` module.

Both wrap any :class:`jaxheads` head (binary, logistic regression, and every
head with the same interface). The module optionally owns the final projection
to ``head.logits_dimension`` (a ``Dense`` / ``Linear`` layer) and exposes the
head's pure methods (``loss``, ``predictions``, the metric methods,
``export_outputs``, ``create_spec``), so a head goes into a model in two lines::

    self.head = NnxHead(jh.BinaryClassHead(), in_features=64, rngs=rngs)  # nnx
    logits = LinenHead(jh.BinaryClassHead())(x)                           # linen

The projection works on the last axis, so inputs may have any leading
dimensions ``[D0, …, DN, in_features]``. With ``dtype=jnp.bfloat16`` the logits
are bfloat16 and the head still computes its loss and metrics in float32.

Only this module imports Flax; the heads themselves do not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import nnx
from jax.typing import ArrayLike, DTypeLike

__all__ = ["HeadMethods", "LinenHead", "NnxHead", "check_logits_dimension"]

Initializer = Callable[..., jax.Array]
_default_kernel_init: Initializer = nn.initializers.lecun_normal()
_default_bias_init: Initializer = nn.initializers.zeros_init()


def check_logits_dimension(head: Any, logits: Any) -> None:
    """Raises ``ValueError`` when ``logits``' last dimension is not ``head.logits_dimension``.

    Args:
      head: any head (has ``logits_dimension``).
      logits: an array ``[D0, …, DN, logits_dimension]`` (a dict of arrays is
        left to the head to check).

    Examples:
      >>> import jaxheads as jh
      >>> check_logits_dimension(jh.BinaryClassHead(), jnp.zeros((4, 1)))
      >>> check_logits_dimension(jh.BinaryClassHead(), jnp.zeros((4, 2)))
      Traceback (most recent call last):
      ...
      ValueError: logits shape (4, 2) must end in the head's logits_dimension 1.
    """
    if isinstance(logits, Mapping):
        return
    shape = jnp.shape(logits)
    if not shape or shape[-1] != head.logits_dimension:
        raise ValueError(
            f"logits shape {tuple(shape)} must end in the head's logits_dimension "
            f"{head.logits_dimension}."
        )


class HeadMethods:
    """The head's pure methods, delegated by :class:`LinenHead` and :class:`NnxHead`.

    Every method forwards to ``self.head`` unchanged (see the head's own
    docstrings for shapes and dtypes); none touches the module's parameters,
    so they can be called on an unbound linen module, outside ``apply``.
    """

    head: Any

    @property
    def logits_dimension(self) -> int:
        """``head.logits_dimension``: the size of the last axis of the logits."""
        return self.head.logits_dimension

    def loss(
        self,
        labels: Any,
        logits: Any,
        features: Mapping[str, ArrayLike] | None = None,
        mode: str | None = None,
        regularization_losses: Sequence[ArrayLike] | None = None,
    ) -> jax.Array:
        """The head's regularized, reduced training loss (float32 scalar)."""
        return self.head.loss(
            labels,
            logits,
            features=features,
            mode=mode,
            regularization_losses=regularization_losses,
        )

    def unreduced_loss(
        self, labels: Any, logits: Any, features: Mapping[str, ArrayLike] | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """The head's per-element loss and weights, both float32 ``[D0, …, DN, 1]``."""
        return self.head.unreduced_loss(labels, logits, features=features)

    def predictions(self, logits: Any, keys: Sequence[str] | None = None) -> dict[str, jax.Array]:
        """The head's predictions dict (all keys, or only ``keys``)."""
        return self.head.predictions(logits, keys=keys)

    def init_metrics(self) -> Any:
        """An empty metric state (a pytree of additive states)."""
        return self.head.init_metrics()

    def update_metrics(
        self,
        state: Any,
        features: Mapping[str, ArrayLike] | None,
        logits: Any,
        labels: Any,
        regularization_losses: Sequence[ArrayLike] | None = None,
    ) -> Any:
        """``state`` updated with one batch."""
        return self.head.update_metrics(
            state, features, logits, labels, regularization_losses=regularization_losses
        )

    def compute_metrics(self, state: Any) -> dict[str, jax.Array]:
        """The metric values (TF's keys) of ``state``."""
        return self.head.compute_metrics(state)

    def export_outputs(self, logits: Any) -> dict[str, dict[str, jax.Array]]:
        """Serving signature name -> outputs, ``serving_default`` first."""
        return self.head.export_outputs(logits)

    def create_spec(self, mode: str, logits: Any, labels: Any = None, **kwargs: Any) -> Any:
        """The head's ``create_spec`` (a ``HeadSpec`` for ``mode``)."""
        return self.head.create_spec(mode, logits, labels, **kwargs)


class LinenHead(HeadMethods, nn.Module):
    """A ``flax.linen`` module: optional final ``Dense`` + a head's methods.

    Calling the module maps ``inputs [D0, …, DN, F]`` to logits
    ``[D0, …, DN, head.logits_dimension]`` (with ``project=False`` the inputs
    must already be logits and are returned unchanged after a shape check).
    The head's methods are plain functions of their arguments; call them on
    the module (bound or not) or on ``module.head``.

    Attributes:
      head: any jaxheads head.
      project: whether the module owns the projection to ``logits_dimension``.
      use_bias: whether the projection has a bias.
      kernel_init: initializer of the projection kernel ``[F, logits_dimension]``.
      bias_init: initializer of the bias ``[logits_dimension]``.
      dtype: computation dtype of the projection (e.g. ``jnp.bfloat16``);
        ``None`` infers it from the inputs and parameters.
      param_dtype: dtype of the projection parameters.

    Examples:
      >>> import jaxheads as jh
      >>> module = LinenHead(jh.BinaryClassHead())
      >>> x = jnp.ones((4, 3))
      >>> variables = module.init(jax.random.key(0), x)
      >>> logits = module.apply(variables, x)
      >>> logits.shape
      (4, 1)
      >>> module.loss(jnp.ones((4, 1)), logits).dtype
      dtype('float32')
    """

    head: Any
    project: bool = True
    use_bias: bool = True
    kernel_init: Initializer = _default_kernel_init
    bias_init: Initializer = _default_bias_init
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32

    @nn.compact
    def __call__(self, inputs: ArrayLike) -> jax.Array:
        """Returns logits ``[D0, …, DN, logits_dimension]`` for ``inputs [D0, …, DN, F]``."""
        if not self.project:
            check_logits_dimension(self.head, inputs)
            return jnp.asarray(inputs, self.dtype)
        return nn.Dense(
            self.head.logits_dimension,
            use_bias=self.use_bias,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="logits",
        )(inputs)


class NnxHead(HeadMethods, nnx.Module):
    """A ``flax.nnx`` module: optional final ``Linear`` + a head's methods.

    Args:
      head: any jaxheads head.
      in_features: size of the last input axis; ``None`` means no projection
        (the inputs are already logits).
      rngs: the ``nnx.Rngs`` for the projection's initializers (required when
        ``in_features`` is given).
      use_bias: whether the projection has a bias.
      kernel_init: initializer of the kernel ``[in_features, logits_dimension]``.
      bias_init: initializer of the bias ``[logits_dimension]``.
      dtype: computation dtype of the projection (``None``: inferred).
      param_dtype: dtype of the projection parameters.

    Examples:
      >>> import jaxheads as jh
      >>> from flax import nnx
      >>> module = NnxHead(jh.BinaryClassHead(), in_features=3, rngs=nnx.Rngs(0))
      >>> logits = module(jnp.ones((2, 4, 3)))   # any leading dims
      >>> logits.shape
      (2, 4, 1)
      >>> sorted(module.export_outputs(logits))
      ['classification', 'predict', 'regression', 'serving_default']
    """

    def __init__(
        self,
        head: Any,
        in_features: int | None = None,
        *,
        rngs: nnx.Rngs | None = None,
        use_bias: bool = True,
        kernel_init: Initializer = _default_kernel_init,
        bias_init: Initializer = _default_bias_init,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
    ) -> None:
        self.head = head
        self.dtype = dtype
        if in_features is None:
            self.logits = None
        else:
            if rngs is None:
                raise ValueError("NnxHead needs `rngs` to initialize its projection.")
            self.logits = nnx.Linear(
                in_features,
                head.logits_dimension,
                use_bias=use_bias,
                kernel_init=kernel_init,
                bias_init=bias_init,
                dtype=dtype,
                param_dtype=param_dtype,
                rngs=rngs,
            )

    def __call__(self, inputs: ArrayLike) -> jax.Array:
        """Returns logits ``[D0, …, DN, logits_dimension]`` for ``inputs [D0, …, DN, F]``."""
        if self.logits is None:
            check_logits_dimension(self.head, inputs)
            return jnp.asarray(inputs, self.dtype)
        return self.logits(inputs)
