"""jaxheads against TensorFlow 2.15's own numbers (fixtures in ``tests/data``).

The fixtures ``tests/data/tf_reference_<family>.json`` were produced by
``tests/data/make_tf_reference.py`` (see its docstring for how to regenerate
them and for the JSON layout): TF 2.15's v2 heads run eagerly on
deterministic pseudo-random inputs, plus TF1's canned binary head in graph
mode (``compat="v1"``).  TensorFlow is not needed to run these tests.

For every case: the loss, the unweighted unreduced loss and weights, the
predictions, the export outputs, and the metrics after streaming every batch
of the case through one metric state (``init_metrics(reg)`` → ``update_metrics``
per batch → ``compute_metrics``), eagerly; the loss and the predictions also
under ``jax.jit`` (every family but the v1 cases, which share the v2 binary
inputs).

Tolerances: ``rtol=1e-5, atol=1e-6`` (float32 rounding; TF and XLA order
their sums differently), AUC / AUC-PR ``atol=1e-6``.  Documented exceptions:

* none yet.

A head named by a fixture must exist in ``jaxheads``: a missing or renamed
class fails every case of its family (it used to skip them, silently).

Mapping onto jaxheads (deliberate differences from TF, see DESIGN.md):
``class_ids`` is int32 (TF int64); ``all_class_ids`` is ``[D0..DN, n]`` (TF
tiles ``[D0, n]`` only), so ours is compared row by row with TF's first row;
string outputs (``classes``, ``all_classes``, ``ClassificationOutput.classes``)
are ``head.class_names(<ids>)`` on the host; ``MultiHead`` streams its
per-head metrics correctly (TF 2.15's eager ``MultiHead.update_metrics``
re-creates them per call, see the generator), so ours is checked against
the per-head streamed values.
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxheads as jh

DATA = pathlib.Path(__file__).parent / "data"
RTOL, ATOL = 1e-5, 1e-6
AUC_ATOL = 1e-6

FAMILIES = (
    "binary",
    "binary_v1",
    "logistic_regression",
    "regression",
    "multi_class",
    "multi_label",
    "multi_head",
)

REDUCTIONS = {
    # TF 2 strings
    "sum": jh.Reduction.SUM,
    "sum_over_batch_size": jh.Reduction.SUM_OVER_BATCH_SIZE,
    # TF 1 strings (v1 cases)
    "weighted_sum": jh.Reduction.SUM,
    "weighted_sum_over_batch_size": jh.Reduction.SUM_OVER_BATCH_SIZE,
    "weighted_mean": jh.Reduction.MEAN,
    "weighted_sum_by_nonzero_weights": jh.Reduction.SUM_BY_NONZERO_WEIGHTS,
}


# ----------------------------------------------------------------------------- JAX twins of the
# generator's registries (tests/data/make_tf_reference.py: TF_LOSS_FNS, TF_INVERSE_LINK_FNS).
def _abs_sigmoid_error(labels, logits):
    return jnp.abs(labels.astype(jnp.float32) - jax.nn.sigmoid(logits))


def _abs_error(labels, logits):
    return jnp.abs(labels.astype(jnp.float32) - logits)


def _one_minus_true_prob(labels, logits):
    probs = jax.nn.softmax(logits, axis=-1)
    return 1.0 - jnp.take_along_axis(probs, labels.astype(jnp.int32), axis=-1)


def _mean_abs_sigmoid_error(labels, logits):
    return jnp.mean(
        jnp.abs(labels.astype(jnp.float32) - jax.nn.sigmoid(logits)), axis=-1, keepdims=True
    )


def _minus10(logits):
    return logits - 10.0


LOSS_FNS = {
    "abs_sigmoid_error": _abs_sigmoid_error,
    "abs_error": _abs_error,
    "one_minus_true_prob": _one_minus_true_prob,
    "mean_abs_sigmoid_error": _mean_abs_sigmoid_error,
}
INVERSE_LINK_FNS = {"exp": jnp.exp, "sigmoid": jax.nn.sigmoid, "minus10": _minus10}


# ----------------------------------------------------------------------------- loading
def _resolve_exports(case):
    for b in case["batches"]:
        exp = b.get("expected", {})
        outs = exp.get("export_outputs")
        if not outs:
            continue
        for sig, rec in outs.items():
            if "same_as" in rec:
                outs[sig] = {**outs[rec["same_as"]], "same_as": rec["same_as"]}
            elif rec.get("outputs") == "=predictions":
                rec["outputs"] = exp["predictions"]
    return case


def _load(family):
    with open(DATA / f"tf_reference_{family}.json") as f:
        data = json.load(f)
    return [_resolve_exports(c) for c in data["cases"]]


CASES = [(family, case) for family in FAMILIES for case in _load(family)]
IDS = [f"{family}:{case['id']}" for family, case in CASES]


def _cases(predicate=lambda family, case: True):
    chosen = [(f, c) for f, c in CASES if predicate(f, c)]
    return pytest.mark.parametrize(
        "family, case", chosen, ids=[f"{f}:{c['id']}" for f, c in chosen]
    )


# ----------------------------------------------------------------------------- building heads
HEAD_CLASSES = {
    name: cls
    for name, cls in vars(jh).items()
    if isinstance(cls, type) and issubclass(cls, jh.Head) and not cls.__abstractmethods__
}


def _head_class(name):
    if name not in HEAD_CLASSES:
        raise AssertionError(
            f"fixture head {name!r} is not a head class of jaxheads; known: {sorted(HEAD_CLASSES)}"
        )
    return HEAD_CLASSES[name]


def _tuplify(x):
    return tuple(_tuplify(v) for v in x) if isinstance(x, list) else x


def make_head(spec):
    """A jaxheads head from a fixture case (or a MultiHead's sub-head spec)."""
    name = spec["head"]
    cls = _head_class(name)
    kwargs = dict(spec.get("kwargs", {}))
    if name == "MultiHead":
        heads = tuple(make_head(h) for h in kwargs["heads"])
        weights = kwargs.get("head_weights")
        return cls(heads, head_weights=None if weights is None else tuple(weights))
    kwargs = {k: _tuplify(v) for k, v in kwargs.items()}
    if "loss_reduction" in kwargs:
        kwargs["loss_reduction"] = REDUCTIONS[kwargs["loss_reduction"]]
    if "loss_fn" in kwargs:
        kwargs["loss_fn"] = LOSS_FNS[kwargs["loss_fn"]]
    if "inverse_link_fn" in kwargs:
        kwargs["inverse_link_fn"] = INVERSE_LINK_FNS[kwargs["inverse_link_fn"]]
    if spec.get("compat"):
        kwargs["compat"] = spec["compat"]
    return cls(**kwargs)


def _sub_heads(case, head):
    """(name, jaxheads sub-head) pairs of a MultiHead case."""
    return [(h["kwargs"]["name"], make_head(h)) for h in case["kwargs"]["heads"]]


# ----------------------------------------------------------------------------- inputs
def _array(value, dtype):
    if dtype == "str":
        return np.asarray(value, dtype=str)
    # int64 ids fit int32; JAX without x64 would truncate anyway.
    return np.asarray(value, {"float32": np.float32, "int32": np.int32, "int64": np.int32}[dtype])


def _inputs(batch):
    """(logits, labels, features, regularization_losses) as numpy, TF's dtypes."""
    if isinstance(batch["logits"], dict):
        logits = {k: _array(v, batch["logits_dtype"]) for k, v in batch["logits"].items()}
        labels = {k: _array(v, batch["labels_dtype"][k]) for k, v in batch["labels"].items()}
    else:
        logits = _array(batch["logits"], batch["logits_dtype"])
        labels = _array(batch["labels"], batch["labels_dtype"])
    features = {k: np.asarray(v, np.float32) for k, v in batch["features"].items()}
    reg = batch["regularization_losses"]
    reg = None if reg is None else [np.float32(r) for r in reg]
    return logits, labels, features, reg


def _encode(head, labels):
    """Host-side label encoding before jit (strings never enter jit)."""
    if isinstance(labels, dict):
        return head.encode_labels(labels) if hasattr(head, "encode_labels") else labels
    if np.asarray(labels).dtype.kind in "SUO":
        return head.encode_labels(labels)
    return labels


# ----------------------------------------------------------------------------- comparisons
def _close(actual, expected, what, rtol=RTOL, atol=ATOL):
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != TF {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def _metric_tol(key):
    return dict(rtol=0.0, atol=AUC_ATOL) if key.startswith("auc") else dict(rtol=RTOL, atol=ATOL)


def _check_ids_rowwise(ours, tf_rows, what):
    """Ours [D0..DN, n] (every row 0..n-1) against TF's [D0, n] (tiled over D0 only)."""
    ours = np.asarray(ours)
    tf_rows = np.asarray(tf_rows)
    assert ours.shape[-1] == tf_rows.shape[-1], what
    np.testing.assert_array_equal(
        ours.reshape(-1, ours.shape[-1]),
        np.broadcast_to(tf_rows[0], (int(np.prod(ours.shape[:-1])), tf_rows.shape[-1])),
        err_msg=what,
    )


def _check_prediction_dict(head, ours, expected, logits_shape, what):
    """Compares one head's predictions with TF's (string keys through class_names)."""
    numeric = {k for k in expected if k not in ("classes", "all_classes")}
    missing = numeric - set(ours)
    assert not missing, f"{what}: missing prediction keys {sorted(missing)}"
    extra = set(ours) - numeric - {"class_ids", "all_class_ids"}
    assert not extra, f"{what}: unexpected prediction keys {sorted(extra)}"
    batch_shape = tuple(logits_shape[:-1])
    for key, value in expected.items():
        if key == "all_class_ids":
            got = ours[key]
            assert got.dtype == jnp.int32, (what, key, got.dtype)
            assert got.shape == batch_shape + (np.shape(value)[-1],), (what, key, got.shape)
            _check_ids_rowwise(got, value, f"{what}: {key}")
        elif key == "class_ids":
            got = ours[key]
            assert got.dtype == jnp.int32, (what, key, got.dtype)  # TF int64
            np.testing.assert_array_equal(got, np.asarray(value), err_msg=f"{what}: {key}")
        elif key == "classes" and "class_ids" in ours:
            names = head.class_names(np.asarray(ours["class_ids"]))
            assert names.dtype.kind == "U", (what, key, names.dtype)
            np.testing.assert_array_equal(names, np.asarray(value, str), err_msg=f"{what}: {key}")
        elif key in ("classes", "all_classes"):
            # Tiled class list [D0, n] (binary/multi-class all_classes, multi-label classes).
            assert "all_class_ids" in ours, f"{what}: no ids to name {key}"
            names = head.class_names(np.asarray(ours["all_class_ids"]))
            assert names.dtype.kind == "U", (what, key, names.dtype)
            _check_ids_rowwise(names, np.asarray(value, str), f"{what}: {key}")
        else:
            got = ours[key]
            assert got.dtype == jnp.float32, (what, key, got.dtype)
            _close(got, value, f"{what}: {key}")


def _logits_shape(logits, name=None):
    return np.shape(logits[name] if name is not None else logits)


# ----------------------------------------------------------------------------- tests: loss
@_cases()
def test_loss(family, case):
    head = make_head(case)
    for i, batch in enumerate(case["batches"]):
        logits, labels, features, reg = _inputs(batch)
        loss = head.loss(labels, logits, features=features, regularization_losses=reg)
        assert loss.shape == () and loss.dtype == jnp.float32
        _close(loss, batch["expected"]["loss"], f"{case['id']} batch {i}: loss")


# One jitted function per case for the loss and the predictions (one compile).  The
# v1 cases share inputs and code with the v2 binary cases and differ only in the
# reduction, each of which is jitted in test_tf_vectors.py: eager only, for runtime.
@_cases(lambda family, case: family != "binary_v1")
def test_loss_and_predictions_jit(family, case):
    head = make_head(case)

    @jax.jit
    def step(labels, logits, features, reg):
        return (
            head.loss(labels, logits, features=features, regularization_losses=reg),
            head.predictions(logits),
        )

    for i, batch in enumerate(case["batches"]):
        logits, labels, features, reg = _inputs(batch)
        loss, predictions = step(_encode(head, labels), logits, features, reg)
        assert loss.shape == () and loss.dtype == jnp.float32
        _close(loss, batch["expected"]["loss"], f"{case['id']} batch {i}: jit loss")
        _check_predictions(case, head, predictions, batch, logits, f"{case['id']} batch {i} jit")


@_cases()
def test_unreduced_loss_and_weights(family, case):
    head = make_head(case)
    for i, batch in enumerate(case["batches"]):
        logits, labels, features, _ = _inputs(batch)
        expected = batch["expected"]
        if case["head"] == "MultiHead":
            pairs = [
                (
                    f"{name}",
                    sub,
                    labels[name],
                    logits[name],
                    expected["unreduced_loss"][name],
                    expected["weights"][name],
                )
                for name, sub in _sub_heads(case, head)
            ]
            got = head.head_losses(labels, logits, features)
            for name, value in expected["head_losses"].items():
                _close(got[name], value, f"{case['id']} batch {i}: head_losses[{name}]")
        else:
            pairs = [("", head, labels, logits, expected["unreduced_loss"], expected["weights"])]
        for name, sub, lb, lg, tf_loss, tf_weights in pairs:
            what = f"{case['id']} batch {i} {name}"
            loss, weights = sub.unreduced_loss(lb, lg, features)
            assert loss.dtype == jnp.float32 and weights.dtype == jnp.float32, what
            _close(loss, tf_loss, f"{what}: unreduced loss (unweighted)")
            tf_weights = np.asarray(tf_weights, np.float32)
            assert np.broadcast_shapes(weights.shape, tf_weights.shape) == tf_weights.shape, (
                f"{what}: weights shape {weights.shape} does not broadcast to {tf_weights.shape}"
            )
            _close(np.broadcast_to(weights, tf_weights.shape), tf_weights, f"{what}: weights")


# ----------------------------------------------------------------------------- tests: predictions
def _check_predictions(case, head, ours, batch, logits, what):
    expected = batch["expected"]["predictions"]
    if case["head"] == "MultiHead":
        assert all(isinstance(k, tuple) and len(k) == 2 for k in ours), list(ours)
        for name, sub in _sub_heads(case, head):
            sub_ours = {k[1]: v for k, v in ours.items() if k[0] == name}
            _check_prediction_dict(
                sub, sub_ours, expected[name], _logits_shape(logits, name), f"{what} [{name}]"
            )
        assert {k[0] for k in ours} == set(expected)
    else:
        _check_prediction_dict(head, ours, expected, np.shape(logits), what)


@_cases(lambda family, case: "predictions" in case["batches"][0]["expected"])
def test_predictions(family, case):
    head = make_head(case)
    for i, batch in enumerate(case["batches"]):
        logits, _, _, _ = _inputs(batch)
        _check_predictions(
            case, head, head.predictions(logits), batch, logits, f"{case['id']} batch {i}"
        )


def _export_head(case, head, signature):
    """The (sub-)head that names a signature's class ids."""
    if case["head"] != "MultiHead":
        return head
    subs = dict(_sub_heads(case, head))
    if signature == "serving_default":
        return next(iter(subs.values()))
    if signature == "predict":  # merged '<head>/<key>' outputs: checked per head
        return None
    return subs[signature.split("/")[0]]


@_cases(lambda family, case: "export_outputs" in case["batches"][0]["expected"])
def test_export_outputs(family, case):
    head = make_head(case)
    for i, batch in enumerate(case["batches"]):
        logits, _, _, _ = _inputs(batch)
        ours = head.export_outputs(logits)
        expected = batch["expected"]["export_outputs"]
        what = f"{case['id']} batch {i}"
        assert list(ours)[0] == "serving_default", f"{what}: {list(ours)}"
        assert set(ours) == set(expected), f"{what}: {sorted(ours)} vs TF {sorted(expected)}"
        for signature, rec in expected.items():
            got = ours[signature]
            sig_head = _export_head(case, head, signature)
            where = f"{what} {signature}"
            if rec["type"] == "ClassificationOutput":
                _close(got["scores"], rec["scores"], f"{where}: scores")
                names = sig_head.class_names(np.asarray(got["class_ids"]))
                assert names.dtype.kind == "U", where
                _check_ids_rowwise(names, np.asarray(rec["classes"], str), f"{where}: classes")
            elif rec["type"] == "RegressionOutput":
                _close(got["value"], rec["value"], f"{where}: value")
            else:  # PredictOutput
                outputs = rec["outputs"]
                if case["head"] == "MultiHead" and signature == "predict":
                    for name, sub in _sub_heads(case, head):
                        prefix = f"{name}/"
                        sub_tf = {
                            k[len(prefix) :]: v for k, v in outputs.items() if k.startswith(prefix)
                        }
                        sub_ours = {
                            k[len(prefix) :]: v for k, v in got.items() if k.startswith(prefix)
                        }
                        _check_prediction_dict(
                            sub, sub_ours, sub_tf, _logits_shape(logits, name), f"{where} [{name}]"
                        )
                else:
                    _check_prediction_dict(
                        sig_head,
                        got,
                        outputs,
                        _logits_shape(
                            logits, None if case["head"] != "MultiHead" else signature.split("/")[0]
                        ),
                        where,
                    )


# ----------------------------------------------------------------------------- tests: metrics
@_cases()
def test_streaming_metrics(family, case):
    head = make_head(case)
    batches = case["batches"]
    first_reg = _inputs(batches[0])[3]
    state = head.init_metrics(first_reg)
    for batch in batches:
        logits, labels, features, reg = _inputs(batch)
        state = head.update_metrics(state, features, logits, labels, reg)
    got = head.compute_metrics(state)
    expected = case["metrics"]
    assert set(got) == set(expected), (
        f"{case['id']}: extra {sorted(set(got) - set(expected))}, "
        f"missing {sorted(set(expected) - set(got))}"
    )
    failures = []
    for key, value in expected.items():
        assert got[key].shape == () and got[key].dtype == jnp.float32, key
        tol = _metric_tol(key.split("/")[0])
        if not np.isclose(float(got[key]), value, **tol):
            failures.append(f"{key}: ours {float(got[key])!r} TF {value!r}")
    assert not failures, f"{case['id']}:\n  " + "\n  ".join(failures)


def test_every_fixture_head_is_a_jaxheads_head():
    """A renamed or removed head fails here by name (and in each of its cases)."""
    names = set()
    for _, case in CASES:
        names.add(case["head"])
        names.update(h["head"] for h in case.get("kwargs", {}).get("heads", []))
    assert names <= set(HEAD_CLASSES), sorted(names - set(HEAD_CLASSES))
    with pytest.raises(AssertionError, match="'BinaryClassHeadV3' is not a head class"):
        make_head({"head": "BinaryClassHeadV3"})


def test_fixtures_cover_the_brief():
    """Each family has cases for both v2 reductions, weights, multi-dim logits and streaming."""
    by_family = {}
    for family, case in CASES:
        by_family.setdefault(family, []).append(case)
    assert set(by_family) == set(FAMILIES)
    for family, cases in by_family.items():
        if family != "multi_head":
            reductions = {c["kwargs"].get("loss_reduction", "default") for c in cases}
            assert len(reductions) >= 2, family
        assert any(len(c["batches"]) > 1 for c in cases), family
    total = sum((DATA / f"tf_reference_{f}.json").stat().st_size for f in FAMILIES)
    assert total < 400_000
