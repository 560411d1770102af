"""Flax wrappers for heads: a ``flax.linen`` module and a ``flax.nnx`` module.

Both wrap any :class:`~jaxheads.heads.base.Head`. The module optionally owns
the final projection to ``head.logits_dimension`` (a ``Dense`` / ``Linear``
layer) and exposes the head's public methods (``loss``, ``loss_terms``,
``predictions``, the metric methods, ``export_outputs``, ``encode_labels``,
``class_names``, ``class_vocabularies``, ``create_spec``), so a head goes into
a model in two lines::

    self.head = NnxHead(jh.BinaryClassHead(), in_features=64, rngs=rngs)  # nnx
    logits = LinenHead(jh.BinaryClassHead())(x)                           # linen

The methods are not re-declared here: each one is the head's own bound method,
reached through the typed ``head`` attribute (``module.loss is``
``module.head.loss`` up to binding), so a type checker sees the head's exact
signatures and the wrappers cannot drift from the contract. The head's
``name`` is ``module.head.name`` (linen's ``name`` is the module's).

The projection works on the last axis, so inputs may have any leading
dimensions ``[D0, …, DN, in_features]``. With ``dtype=jnp.bfloat16`` the logits
are bfloat16 and the head still computes its loss and metrics in float32.

Only this module imports Flax; the heads themselves do not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar, final, overload

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import nnx
from jax.typing import ArrayLike, DTypeLike

from jaxheads.heads.base import Head

__all__ = ["HeadMethods", "LinenHead", "NnxHead", "check_logits_dimension"]

Initializer = Callable[..., jax.Array]
_default_kernel_init: Initializer = nn.initializers.lecun_normal()
_default_bias_init: Initializer = nn.initializers.zeros_init()

T = TypeVar("T")
H = TypeVar("H", bound="Head[Any]")


def check_logits_dimension(head: Head[Any], logits: ArrayLike | Mapping[str, ArrayLike]) -> None:
    """Raises ``ValueError`` when ``logits``' last dimension is not ``head.logits_dimension``.

    Args:
      head: any head.
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


def _check_inputs(inputs: Any, in_features: int | None = None, project: bool = True) -> None:
    """Raises when ``inputs`` is not one array ``[D0, …, DN, in_features]``.

    The wrappers map an array to logits; a features dict (as the train steps
    take it) must be indexed first, ``module(features["x"])``.

    Args:
      inputs: what the module was called with.
      in_features: the expected last dimension, or ``None`` for any.
      project: whether the module projects (else ``inputs`` are the logits).

    Examples:
      >>> _check_inputs(jnp.zeros((2, 3)), 3)
      >>> _check_inputs({"x": jnp.zeros((2, 3))})
      Traceback (most recent call last):
      ...
      TypeError: inputs must be an array [D0, …, DN, F], got a dict with keys ['x']; pass the model input, e.g. module(features['x']).
    """
    if isinstance(inputs, Mapping) and not project:
        raise TypeError(
            "inputs: a module without projection takes the logits as one array "
            f"[D0, …, DN, logits_dimension], got a dict with keys {sorted(map(str, inputs))}."
        )
    if isinstance(inputs, Mapping):
        keys = sorted(str(k) for k in inputs)
        first = repr(keys[0]) if keys else "'x'"
        raise TypeError(
            f"inputs must be an array [D0, …, DN, F], got a dict with keys {keys}; pass the "
            f"model input, e.g. module(features[{first}])."
        )
    shape = jnp.shape(inputs)
    if not shape:
        raise ValueError("inputs must have at least one dimension [D0, …, DN, F], got a scalar.")
    if in_features is not None and shape[-1] != in_features:
        raise ValueError(
            f"inputs shape {tuple(shape)} must end in in_features={in_features}, the size the "
            "projection was built for."
        )


class _HasHead(Protocol):
    @property
    def head(self) -> Head[Any]: ...


@final
class _Delegated(Generic[T]):
    """A read-only attribute that is ``select(instance.head)``.

    Typed by ``select``: ``_Delegated(lambda head: head.loss)`` has the type of
    ``Head.loss`` bound to a head, so the signature is the head's, checked by
    the type checker, and never written twice.
    """

    def __init__(self, select: Callable[[Head[Any]], T]) -> None:
        self._select = select

    def __set_name__(self, owner: type, name: str) -> None:
        self.__doc__ = f"The wrapped head's ``{name}`` (``module.head.{name}``)."

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> _Delegated[T]: ...
    @overload
    def __get__(self, instance: _HasHead, owner: type | None = None) -> T: ...
    def __get__(self, instance: _HasHead | None, owner: type | None = None) -> T | _Delegated[T]:
        if instance is None:
            return self
        return self._select(instance.head)


class HeadMethods:
    """The head's public members, forwarded by :class:`LinenHead` and :class:`NnxHead`.

    Each attribute is the wrapped head's own (bound method or property); none
    touches the module's parameters, so they can be used on an unbound linen
    module, outside ``apply``. See :class:`~jaxheads.heads.base.Head` for
    shapes and dtypes.
    """

    logits_dimension = _Delegated(lambda head: head.logits_dimension)
    loss = _Delegated(lambda head: head.loss)
    loss_terms = _Delegated(lambda head: head.loss_terms)
    predictions = _Delegated(lambda head: head.predictions)
    init_metrics = _Delegated(lambda head: head.init_metrics)
    update_metrics = _Delegated(lambda head: head.update_metrics)
    compute_metrics = _Delegated(lambda head: head.compute_metrics)
    export_outputs = _Delegated(lambda head: head.export_outputs)
    encode_labels = _Delegated(lambda head: head.encode_labels)
    class_vocabularies = _Delegated(lambda head: head.class_vocabularies)
    class_names = _Delegated(lambda head: head.class_names)
    create_spec = _Delegated(lambda head: head.create_spec)


@final
class LinenHead(HeadMethods, nn.Module, Generic[H]):
    """A ``flax.linen`` module: optional final ``Dense`` + the head's methods.

    Calling the module maps ``inputs [D0, …, DN, F]`` to logits
    ``[D0, …, DN, head.logits_dimension]`` (with ``project=False`` the inputs
    must already be logits and are returned unchanged after a shape check).
    The head's methods (see :class:`HeadMethods`) are plain functions of their
    arguments; call them on the module (bound or not) or on ``module.head``.

    Attributes:
      head: the wrapped head (``module.head`` keeps its concrete type).
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

    head: H
    project: bool = True
    use_bias: bool = True
    kernel_init: Initializer = _default_kernel_init
    bias_init: Initializer = _default_bias_init
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32

    def __post_init__(self) -> None:
        if not isinstance(self.head, Head):
            raise TypeError(f"head must be a jaxheads Head, got {type(self.head).__name__}.")
        super().__post_init__()

    @nn.compact
    def __call__(self, inputs: ArrayLike) -> jax.Array:
        """Returns logits ``[D0, …, DN, logits_dimension]`` for ``inputs [D0, …, DN, F]``."""
        _check_inputs(inputs, project=self.project)
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


@final
class NnxHead(HeadMethods, nnx.Module, Generic[H]):
    """A ``flax.nnx`` module: optional final ``Linear`` + the head's methods.

    Args:
      head: the wrapped head (``module.head`` keeps its concrete type).
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
        head: H,
        in_features: int | None = None,
        *,
        rngs: nnx.Rngs | None = None,
        use_bias: bool = True,
        kernel_init: Initializer = _default_kernel_init,
        bias_init: Initializer = _default_bias_init,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
    ) -> None:
        if not isinstance(head, Head):
            raise TypeError(f"head must be a jaxheads Head, got {type(head).__name__}.")
        self.head: H = head
        self.dtype = dtype
        self.in_features = None if in_features is None else int(in_features)
        if in_features is not None and (
            isinstance(in_features, bool)
            or not isinstance(in_features, (int, np.integer))
            or in_features < 1
        ):
            raise ValueError(
                f"in_features must be a positive int (or None: no projection), got {in_features!r}."
            )
        if in_features is not None and rngs is None:
            raise ValueError("NnxHead needs `rngs` to initialize its projection.")
        # Assigned once: nnx fixes an attribute's data/static status at first assignment.
        self.logits: nnx.Linear | None = (
            None
            if in_features is None or rngs is None
            else nnx.Linear(
                int(in_features),
                head.logits_dimension,
                use_bias=use_bias,
                kernel_init=kernel_init,
                bias_init=bias_init,
                dtype=dtype,
                param_dtype=param_dtype,
                rngs=rngs,
            )
        )

    def __call__(self, inputs: ArrayLike) -> jax.Array:
        """Returns logits ``[D0, …, DN, logits_dimension]`` for ``inputs [D0, …, DN, F]``."""
        _check_inputs(inputs, self.in_features, project=self.logits is not None)
        if self.logits is None:
            check_logits_dimension(self.head, inputs)
            return jnp.asarray(inputs, self.dtype)
        return self.logits(jnp.asarray(inputs))
