"""Speaker embeddings: Resemblyzer's GE2E voice encoder, run with NumPy alone.

The weights are the `pretrained.pt` that the `Resemblyzer` wheel ships (Apache-2.0);
nothing is downloaded. The network is small (a 3-layer LSTM of 256 units over 40 mel
bands, then a 256-unit projection), so NumPy runs it at a fraction of the ASR's cost
without torch and librosa in the image: the mel front end follows librosa's defaults
that Resemblyzer uses (25 ms Hann windows every 10 ms, Slaney mel filters, power 2),
and the LSTM follows PyTorch's gate layout.

The checkpoint is in PyTorch's legacy (pre-zip) format: a few pickles, then the raw
bytes of each tensor storage. It is read with an unpickler that only builds
dictionaries and tensors, never arbitrary objects.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from services.analyzer.audio import SAMPLE_RATE_HZ, Samples

WINDOW = int(SAMPLE_RATE_HZ * 0.025)
HOP = int(SAMPLE_RATE_HZ * 0.010)
MEL_BANDS = 40
# The encoder was trained on 1.6 s partial utterances (160 frames).
PARTIAL_FRAMES = 160
PARTIAL_S = PARTIAL_FRAMES * HOP / SAMPLE_RATE_HZ
EMBEDDING_SIZE = 256
Embeddings = npt.NDArray[np.float32]

_DTYPES = {"FloatStorage": np.float32, "LongStorage": np.int64, "IntStorage": np.int32}


# The checkpoint of Resemblyzer 0.1.4; another file is refused rather than guessed at.
WEIGHTS_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"
INSTALL_HINT = "pip install --no-deps --require-hashes -r models.txt"


def bundled_weights() -> Path:
    """`pretrained.pt` inside the installed Resemblyzer package (found, never imported:
    importing it would pull torch and librosa)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the Resemblyzer package is not installed ({INSTALL_HINT})")
    return Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"


@dataclass(frozen=True)
class _Tensor:
    storage: tuple[str, str]  # (key, storage type)
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]


class _CheckpointUnpickler(pickle.Unpickler):
    """Knows dictionaries, tensors and their storages; refuses every other class."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda storage, offset, shape, strides, *_: _Tensor(
                storage, offset, tuple(shape), tuple(strides)
            )
        if module == "torch" and name in _DTYPES:
            return name
        raise pickle.UnpicklingError(f"unexpected object in the checkpoint: {module}.{name}")

    def persistent_load(self, pid: Any) -> tuple[str, str]:
        kind, storage_type, key, *_ = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {kind!r}")
        return key, storage_type


def _read_legacy_checkpoint(file: IO[bytes]) -> Any:
    for _header in range(3):  # magic number, protocol version, system info
        pickle.load(file)
    tree = _CheckpointUnpickler(file).load()
    storages: dict[str, npt.NDArray[Any]] = {}
    types: dict[str, str] = {}
    _collect_storage_types(tree, types)
    for key in pickle.load(file):
        (count,) = struct.unpack("<q", file.read(8))
        dtype = np.dtype(_DTYPES[types.get(key, "FloatStorage")])
        storages[key] = np.frombuffer(file.read(count * dtype.itemsize), dtype=dtype)
    return _materialise(tree, storages)


def _collect_storage_types(tree: Any, types: dict[str, str]) -> None:
    if isinstance(tree, _Tensor):
        types[tree.storage[0]] = tree.storage[1]
    elif isinstance(tree, dict):
        for value in tree.values():
            _collect_storage_types(value, types)
    elif isinstance(tree, list | tuple):
        for value in tree:
            _collect_storage_types(value, types)


def _materialise(tree: Any, storages: dict[str, npt.NDArray[Any]]) -> Any:
    if isinstance(tree, _Tensor):
        data = storages[tree.storage[0]]
        return np.lib.stride_tricks.as_strided(
            data[tree.offset :],
            shape=tree.shape,
            strides=[stride * data.itemsize for stride in tree.strides],
        ).copy()
    if isinstance(tree, dict):
        return {key: _materialise(value, storages) for key, value in tree.items()}
    return tree


def load_state(path: Path) -> dict[str, npt.NDArray[np.float32]]:
    """The encoder's named weights from Resemblyzer's checkpoint (checked by its hash)."""
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != WEIGHTS_SHA256:
        raise ValueError(f"{path} is not Resemblyzer 0.1.4's voice encoder ({INSTALL_HINT})")
    checkpoint = _read_legacy_checkpoint(io.BytesIO(data))
    return {
        name: np.asarray(value, dtype=np.float32)
        for name, value in checkpoint["model_state"].items()
    }


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    # Slaney's scale: linear below 1 kHz, logarithmic above (librosa's default).
    linear = hz / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log, linear)


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    linear = mel * (200.0 / 3)
    log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log, linear)


@functools.cache
def _mel_filters() -> npt.NDArray[np.float32]:
    """Slaney-normalised triangular mel filters over the FFT bins, as librosa builds them."""
    bins = np.linspace(0, SAMPLE_RATE_HZ / 2, 1 + WINDOW // 2)
    edges = _mel_to_hz(
        np.linspace(
            _hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(SAMPLE_RATE_HZ / 2)), MEL_BANDS + 2
        )
    )
    widths = np.diff(edges)
    ramps = edges[:, None] - bins[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    filters = np.maximum(0.0, np.minimum(lower, upper))
    filters *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return filters.astype(np.float32)


@functools.cache
def _hann() -> npt.NDArray[np.float32]:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW) / WINDOW)).astype(np.float32)


def mel_frames(audio: Samples) -> npt.NDArray[np.float32]:
    """Mel power spectrogram, frames × bands (librosa `melspectrogram`, centred frames)."""
    padded = np.pad(audio, WINDOW // 2)
    count = 1 + (len(padded) - WINDOW) // HOP
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(count, WINDOW), strides=(padded.strides[0] * HOP, padded.strides[0])
    )
    power = np.abs(np.fft.rfft(frames * _hann(), axis=1)) ** 2
    return (power.astype(np.float32) @ _mel_filters().T).astype(np.float32)


def _sigmoid(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return np.asarray(0.5 * (np.tanh(0.5 * x) + 1.0), dtype=np.float32)


class VoiceEncoder:
    """GE2E embeddings of fixed-length windows of speech (L2-normalised, 256 values)."""

    def __init__(self, weights: Path | None = None) -> None:
        state = load_state(weights or bundled_weights())
        self._layers = [
            (
                np.ascontiguousarray(state[f"lstm.weight_ih_l{n}"].T),
                np.ascontiguousarray(state[f"lstm.weight_hh_l{n}"].T),
                state[f"lstm.bias_ih_l{n}"] + state[f"lstm.bias_hh_l{n}"],
            )
            for n in range(3)
        ]
        self._projection = (np.ascontiguousarray(state["linear.weight"].T), state["linear.bias"])

    def embed_mels(self, mels: npt.NDArray[np.float32]) -> Embeddings:
        """Embeddings of a batch of mel windows (batch × frames × bands)."""
        batch, steps, _ = mels.shape
        sequence = mels
        hidden = np.zeros((batch, EMBEDDING_SIZE), dtype=np.float32)
        for input_weights, hidden_weights, bias in self._layers:
            # The input side of every step at once; only the recurrence is sequential.
            inputs = (sequence.reshape(batch * steps, -1) @ input_weights + bias).reshape(
                batch, steps, -1
            )
            hidden = np.zeros((batch, EMBEDDING_SIZE), dtype=np.float32)
            cell = np.zeros_like(hidden)
            outputs = np.empty((batch, steps, EMBEDDING_SIZE), dtype=np.float32)
            for step in range(steps):
                gates = inputs[:, step] + hidden @ hidden_weights
                i, f, g, o = np.split(gates, 4, axis=1)
                cell = _sigmoid(f) * cell + _sigmoid(i) * np.tanh(g)
                hidden = _sigmoid(o) * np.tanh(cell)
                outputs[:, step] = hidden
            sequence = outputs
        weights, bias = self._projection
        raw = np.maximum(hidden @ weights + bias, 0.0)
        norms = np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-8)
        return np.asarray(raw / norms, dtype=np.float32)
