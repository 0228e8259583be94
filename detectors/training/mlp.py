"""A small multilayer perceptron ensemble, trained with numpy and written out as one ONNX graph.

Why a hand-rolled MLP: the model is tiny (one hidden layer of 32 units per member),
training takes seconds on one core, and writing the graph ourselves keeps inference
down to numpy + onnxruntime with nothing to convert. An MLP is also what dynamic int8
quantisation is made for (its MatMuls), unlike tree ensembles.

Training: softmax cross-entropy weighted per class (inverse class frequency to the
power ``class_power``: below 1, it lifts the rare S and V classes without letting
400 F beats from one record dominate), Adam (Kingma & Ba 2015), L2 on the weights, dropout on the
hidden layer, fixed seeds. Each member sees the same rows in its own order and initial
weights; their probabilities are averaged.

The exported graph does everything after feature extraction: robust standardisation
(median, interquartile range) and clipping to +-10, the members side by side (one
wide MatMul, then a block-diagonal one), softmax per member, the mean, then
``argmax(log p + class_bias)`` -> label. ``class_bias`` shifts the decision between
classes; an optional `ClassGate` then rules one class out for rows whose given feature
is below a threshold (a two-stage decision: the network proposes, the rhythm context
vetoes). `detectors.training.train_beats` tunes both by cross-validation on DS1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["MlpConfig", "Member", "ClassGate", "Ensemble", "train_ensemble", "to_onnx"]

Array = npt.NDArray[np.float64]
_CLIP = 10.0


@dataclass(frozen=True)
class MlpConfig:
    hidden: int = 32
    epochs: int = 20
    batch: int = 256
    learning_rate: float = 1e-3
    l2: float = 1e-4
    dropout: float = 0.2
    class_power: float = 0.5
    members: int = 5
    seed: int = 20260901
    record_share: float = 1.0
    """Share of the training records each member sees (drawn per member, without
    replacement); below 1, members disagree where patients differ (bagging by patient)."""


@dataclass(frozen=True)
class Member:
    w1: Array
    b1: Array
    w2: Array
    b2: Array


@dataclass(frozen=True)
class ClassGate:
    """Class ``cls`` is never the label of a row whose feature ``feature`` is below ``below``."""

    cls: int
    feature: int
    below: float

    def blocked(self, x: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Rows of ``x`` (raw features) for which the class is ruled out; compares in float32, as the graph."""
        column = np.asarray(x, dtype=np.float32)[:, self.feature]
        out: npt.NDArray[np.bool_] = column < np.float32(self.below)
        return out


_VETO = 1e4  # subtracted from a gated class's score: far beyond any log-probability


@dataclass
class Ensemble:
    centre: Array
    scale: Array
    members: list[Member]
    class_bias: Array = field(default_factory=lambda: np.zeros(0))
    gate: ClassGate | None = None

    def standardise(self, x: npt.ArrayLike) -> Array:
        z: Array = np.clip((np.asarray(x, dtype=np.float64) - self.centre) / self.scale, -_CLIP, _CLIP)
        return z

    def probabilities(self, x: npt.ArrayLike) -> Array:
        """Mean member probabilities, computed in numpy (for cross-validation)."""
        z = self.standardise(x)
        total = np.zeros((z.shape[0], self.members[0].b2.shape[0]))
        for m in self.members:
            total += _softmax(np.maximum(z @ m.w1 + m.b1, 0.0) @ m.w2 + m.b2)
        out: Array = total / len(self.members)
        return out

    def decide(self, probabilities: Array, x: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The graph's label, in numpy: ``argmax(log p + class_bias)``, gate applied."""
        return decide(probabilities, x, self.class_bias, self.gate)


def decide(probabilities: Array, x: npt.ArrayLike, class_bias: Array, gate: ClassGate | None) -> npt.NDArray[np.int64]:
    """``argmax(log p + class_bias)`` with ``gate``'s class ruled out where it applies."""
    score = np.log(probabilities + 1e-12) + class_bias
    if gate is not None:
        score[gate.blocked(x), gate.cls] -= _VETO
    out: npt.NDArray[np.int64] = np.argmax(score, axis=1)
    return out


def _softmax(z: Array) -> Array:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out: Array = e / e.sum(axis=1, keepdims=True)
    return out


def _train_member(z: Array, y: npt.NDArray[np.int64], weights: Array, n_classes: int, cfg: MlpConfig,
                  rng: np.random.Generator) -> Member:
    n, d = z.shape
    params = [rng.normal(0.0, np.sqrt(2.0 / d), (d, cfg.hidden)), np.zeros(cfg.hidden),
              rng.normal(0.0, np.sqrt(2.0 / cfg.hidden), (cfg.hidden, n_classes)), np.zeros(n_classes)]
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    beta1, beta2, step = 0.9, 0.999, 0
    sample_w = weights[y]
    for _ in range(cfg.epochs):
        order = rng.permutation(n)
        for start in range(0, n, cfg.batch):
            idx = order[start:start + cfg.batch]
            xb, yb, wb = z[idx], y[idx], sample_w[idx]
            w1, b1, w2, b2 = params
            h = np.maximum(xb @ w1 + b1, 0.0)
            keep = (rng.random(h.shape) >= cfg.dropout) / (1.0 - cfg.dropout)
            hd = h * keep
            g = _softmax(hd @ w2 + b2)
            g[np.arange(idx.shape[0]), yb] -= 1.0
            g *= (wb / wb.sum())[:, None]
            gh = (g @ w2.T) * keep * (h > 0)
            grads = [xb.T @ gh + cfg.l2 * w1, gh.sum(axis=0), hd.T @ g + cfg.l2 * w2, g.sum(axis=0)]
            step += 1
            for p, gr, a, b in zip(params, grads, m1, m2, strict=True):
                a *= beta1
                a += (1 - beta1) * gr
                b *= beta2
                b += (1 - beta2) * gr * gr
                p -= cfg.learning_rate * (a / (1 - beta1**step)) / (np.sqrt(b / (1 - beta2**step)) + 1e-8)
    return Member(*params)


def train_ensemble(x: npt.ArrayLike, y: npt.ArrayLike, n_classes: int, cfg: MlpConfig,
                   groups: npt.ArrayLike | None = None) -> Ensemble:
    """Fit the standardisation and ``cfg.members`` networks on rows ``x`` with class indices ``y``.

    ``groups`` (one record id per row) is needed when ``cfg.record_share`` < 1: each
    member then trains on the rows of its own random share of the records.
    """
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.int64)
    if cfg.record_share < 1.0 and groups is None:
        raise ValueError("record_share < 1 needs the record of each row (groups)")
    centre = np.median(xa, axis=0)
    iqr = np.percentile(xa, 75, axis=0) - np.percentile(xa, 25, axis=0)
    scale = np.where(iqr > 1e-6, iqr, xa.std(axis=0) + 1e-6)
    ens = Ensemble(centre, scale, [], np.zeros(n_classes))
    z = ens.standardise(xa)
    counts = np.bincount(ya, minlength=n_classes).astype(np.float64)
    weights = (counts.sum() / np.maximum(counts, 1.0)) ** cfg.class_power
    weights /= weights[int(np.argmax(counts))]
    rng = np.random.default_rng(cfg.seed)
    ids = np.unique(np.asarray(groups)) if groups is not None else np.zeros(0)
    for _ in range(cfg.members):
        if cfg.record_share < 1.0:
            picked = rng.choice(ids, size=max(1, round(cfg.record_share * ids.shape[0])), replace=False)
            rows = np.flatnonzero(np.isin(np.asarray(groups), picked))
            ens.members.append(_train_member(z[rows], ya[rows], weights, n_classes, cfg, rng))
        else:
            ens.members.append(_train_member(z, ya, weights, n_classes, cfg, rng))
    return ens


def _const(name: str, value: npt.ArrayLike, dtype: type = np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def to_onnx(ens: Ensemble, *, n_features: int, metadata: dict[str, str], doc: str) -> onnx.ModelProto:
    """One graph: ``features`` float32 [N, F] -> ``probabilities`` float32 [N, C], ``label`` int64 [N]."""
    k = len(ens.members)
    hidden = ens.members[0].b1.shape[0]
    n_classes = ens.members[0].b2.shape[0]
    w1 = np.concatenate([m.w1 for m in ens.members], axis=1)
    b1 = np.concatenate([m.b1 for m in ens.members])
    w2 = np.zeros((k * hidden, k * n_classes))
    for i, m in enumerate(ens.members):
        w2[i * hidden:(i + 1) * hidden, i * n_classes:(i + 1) * n_classes] = m.w2
    b2 = np.concatenate([m.b2 for m in ens.members])
    inits = [
        _const("centre", ens.centre), _const("inv_scale", 1.0 / ens.scale),
        _const("clip_lo", -_CLIP), _const("clip_hi", _CLIP),
        _const("w1", w1), _const("b1", b1), _const("w2", w2), _const("b2", b2),
        _const("member_shape", [-1, k, n_classes], np.int64),
        _const("eps", 1e-12), _const("class_bias", ens.class_bias),
    ]
    nodes = [
        helper.make_node("Sub", ["features", "centre"], ["centred"]),
        helper.make_node("Mul", ["centred", "inv_scale"], ["scaled"]),
        helper.make_node("Clip", ["scaled", "clip_lo", "clip_hi"], ["z"]),
        helper.make_node("MatMul", ["z", "w1"], ["h_pre"]),
        helper.make_node("Add", ["h_pre", "b1"], ["h_lin"]),
        helper.make_node("Relu", ["h_lin"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["o_pre"]),
        helper.make_node("Add", ["o_pre", "b2"], ["logits"]),
        helper.make_node("Reshape", ["logits", "member_shape"], ["member_logits"]),
        helper.make_node("Softmax", ["member_logits"], ["member_p"], axis=2),
        helper.make_node("ReduceMean", ["member_p"], ["probabilities"], axes=[1], keepdims=0),
        helper.make_node("Add", ["probabilities", "eps"], ["p_safe"]),
        helper.make_node("Log", ["p_safe"], ["log_p"]),
        helper.make_node("Add", ["log_p", "class_bias"], ["score"]),
    ]
    if ens.gate is None:
        nodes.append(helper.make_node("ArgMax", ["score"], ["label"], axis=1, keepdims=0))
    else:
        veto = np.zeros(n_classes)
        veto[ens.gate.cls] = -_VETO
        inits += [_const("gate_feature", [ens.gate.feature], np.int64), _const("gate_below", ens.gate.below),
                  _const("gate_veto", veto[None, :])]
        nodes += [
            helper.make_node("Gather", ["features", "gate_feature"], ["gate_column"], axis=1),
            helper.make_node("Less", ["gate_column", "gate_below"], ["gate_on"]),
            helper.make_node("Cast", ["gate_on"], ["gate_mask"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["gate_mask", "gate_veto"], ["gate_penalty"]),
            helper.make_node("Add", ["score", "gate_penalty"], ["gated_score"]),
            helper.make_node("ArgMax", ["gated_score"], ["label"], axis=1, keepdims=0),
        ]
    graph = helper.make_graph(
        nodes, "beat_classifier",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", n_features])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", n_classes]),
         helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="vigil",
                              doc_string=doc)
    model.ir_version = 9
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    return model
