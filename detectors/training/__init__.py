"""Offline training of Vigil's ONNX detectors, run by hand, never by the worker.

`train_beats` rebuilds the beat classifier in ``detectors/models/`` from the MIT-BIH
DS1 records; `mitdb` reads those records, runs them through the worker's streaming
chain and scores beat labels against the reference annotations. These modules may
use training-only packages (``onnx``, ``wfdb``); inference does not import them.
"""

__all__: list[str] = []
