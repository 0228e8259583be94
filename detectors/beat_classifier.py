"""AAMI beat classes (N, S, V, F, Q) for feature rows, with an ONNX model run by onnxruntime.

The model file is the whole decision: standardisation, the network, the class bias
and the S gate (no S where the recent P waves do not match the template) are inside
the graph (``detectors/training/mlp.py`` builds it), so the version and SHA-256 of
that one file identify exactly what labelled a beat. Every result an
event is built from carries them (`ModelProvenance`), so an auditor replaying the log
can tell which model raised what, and check the file still hashes the same.

Threading: a worker runs one process per core and classifies one patient's beats
at a time, so the session gets one intra-op and one inter-op thread, sequential
execution and no spinning: a model this small (a few thousand weights) gains
nothing from a thread pool, and idle spinning threads would steal the core from the
DSP. Open one session per process (`shared_classifier`) and hand it batches: one
call per chunk of beats costs about as much as one call per beat.

Q also stands for "not a beat I can classify": the model was taught to give it to
detections that match no annotated beat (artefacts), so a Q beat should not count as
a normal one.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort  # type: ignore[import-untyped]

from detectors.beat_features import FEATURE_NAMES, FEATURE_SET

__all__ = ["AAMI_CLASSES", "MODEL_DIR", "BeatModelError", "ModelProvenance", "BeatClassifier", "model_path",
           "shared_classifier"]

AAMI_CLASSES = ("N", "S", "V", "F", "Q")
MODEL_DIR = Path(__file__).resolve().parent / "models"
MODEL_NAME = "beats-v2"
Variant = Literal["fp32", "int8"]


class BeatModelError(ValueError):
    """The model file is missing or was built for other features or classes.
    Rebuild it with ``python -m detectors.training.train_beats``, or point at the right file."""


@dataclass(frozen=True, slots=True)
class ModelProvenance:
    version: str
    """``beats-v2`` or ``beats-v2.int8``: the model and its numeric variant."""
    sha256: str
    """Hex digest of the ONNX file the session was built from."""

    def as_metadata(self) -> dict[str, str]:
        """The fields an event records."""
        return {"model_version": self.version, "model_sha256": self.sha256}


def model_path(variant: Variant = "fp32") -> Path:
    return MODEL_DIR / (f"{MODEL_NAME}.onnx" if variant == "fp32" else f"{MODEL_NAME}.int8.onnx")


class BeatClassifier:
    """One onnxruntime session over a beat model; `classify` takes a batch of rows
    from `detectors.beat_features` and returns one AAMI class per row."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else model_path("fp32")
        try:
            blob = self.path.read_bytes()
        except OSError as e:
            raise BeatModelError(f"cannot read beat model {self.path}: {e.strerror}") from e
        self.model_sha256 = hashlib.sha256(blob).hexdigest()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(blob, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own untyped errors for a bad file
            raise BeatModelError(f"{self.path} is not a loadable ONNX model: {e}") from e
        meta = self._session.get_modelmeta().custom_metadata_map
        self.metadata: dict[str, str] = dict(meta)
        """The model's own description (training data, configuration, class bias, S gate, DS1 figures)."""
        self.model_version = meta.get("model_version", "")
        if meta.get("feature_set") != FEATURE_SET or meta.get("n_features") != str(len(FEATURE_NAMES)):
            raise BeatModelError(f"{self.path} was built for features {meta.get('feature_set')!r} "
                                 f"({meta.get('n_features')} columns), this code makes {FEATURE_SET!r} "
                                 f"({len(FEATURE_NAMES)} columns)")
        if tuple(meta.get("classes", "").split(",")) != AAMI_CLASSES:
            raise BeatModelError(f"{self.path} has classes {meta.get('classes')!r}, expected {AAMI_CLASSES}")
        self.provenance = ModelProvenance(self.model_version, self.model_sha256)
        self._lock = threading.Lock()  # sessions are thread-safe, but one thread at a time keeps it one core

    def predict(self, features: npt.ArrayLike) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """(class index into `AAMI_CLASSES`, class probabilities) for each row."""
        x = np.ascontiguousarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(FEATURE_NAMES):
            raise ValueError(f"features must be [n, {len(FEATURE_NAMES)}], got shape {x.shape}")
        if x.shape[0] == 0:
            return np.empty(0, dtype=np.int64), np.empty((0, len(AAMI_CLASSES)), dtype=np.float32)
        with self._lock:
            probabilities, labels = self._session.run(["probabilities", "label"], {"features": x})
        return np.asarray(labels, dtype=np.int64), np.asarray(probabilities, dtype=np.float32)

    def classify(self, features: npt.ArrayLike) -> list[str]:
        """One AAMI class letter per row of ``features`` ([n, len(FEATURE_NAMES)])."""
        labels, _ = self.predict(features)
        return [AAMI_CLASSES[i] for i in labels.tolist()]


@cache
def shared_classifier(variant: Variant = "fp32") -> BeatClassifier:
    """The process's one session for the packaged model ``variant``."""
    return BeatClassifier(model_path(variant))
