"""The voice encoder's pieces without its weights: the checkpoint reader and the mel filters."""

from __future__ import annotations

import io
import pickle
import struct
import sys
import types
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest

from services.analyzer import voice_encoder
from services.analyzer.voice_encoder import MEL_BANDS, WINDOW, mel_frames


class _Storage:
    """Stands for a torch storage while pickling a checkpoint the legacy way."""

    def __init__(self, key: str, data: np.ndarray) -> None:
        self.key, self.data = key, data


def _fake_torch(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """`torch` and `torch._utils` modules with just what a legacy checkpoint names."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args: Any) -> None: ...

    class FloatStorage: ...

    _rebuild_tensor_v2.__module__, FloatStorage.__module__ = "torch._utils", "torch"
    _rebuild_tensor_v2.__qualname__, FloatStorage.__qualname__ = (
        "_rebuild_tensor_v2",
        "FloatStorage",
    )
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    torch.FloatStorage = FloatStorage  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return utils._rebuild_tensor_v2, FloatStorage  # type: ignore[attr-defined]


class _Tensor:
    def __init__(self, rebuild: Any, storage: _Storage, shape: tuple[int, ...]) -> None:
        self.rebuild, self.storage, self.shape = rebuild, storage, shape

    def __reduce__(self) -> Any:
        strides = tuple(int(np.prod(self.shape[i + 1 :])) for i in range(len(self.shape)))
        return self.rebuild, (self.storage, 0, self.shape, strides, False, OrderedDict())


def _legacy_checkpoint(tree: Any, storages: list[_Storage], storage_type: Any) -> bytes:
    """Bytes laid out as torch's pre-zip `torch.save` lays them out."""

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            if isinstance(obj, _Storage):
                return ("storage", storage_type, obj.key, "cpu", obj.data.size, None)
            return None

    out = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
        pickle.dump(header, out, protocol=2)
    Pickler(out, protocol=2).dump(tree)
    pickle.dump([storage.key for storage in storages], out, protocol=2)
    for storage in storages:
        out.write(struct.pack("<q", storage.data.size))
        out.write(storage.data.astype("<f4").tobytes())
    return out.getvalue()


def test_a_legacy_checkpoint_is_read_into_arrays(monkeypatch: pytest.MonkeyPatch) -> None:
    rebuild, storage_type = _fake_torch(monkeypatch)
    weights = np.arange(6, dtype=np.float32).reshape(2, 3)
    bias = np.array([0.5, -0.5], dtype=np.float32)
    storages = [_Storage("0", weights.ravel()), _Storage("1", bias)]
    tree = {
        "step": 7,
        "model_state": OrderedDict(
            [
                ("w", _Tensor(rebuild, storages[0], (2, 3))),
                ("b", _Tensor(rebuild, storages[1], (2,))),
            ]
        ),
    }
    data = _legacy_checkpoint(tree, storages, storage_type)
    monkeypatch.delitem(sys.modules, "torch")  # the reader itself never needs torch
    checkpoint = voice_encoder._read_legacy_checkpoint(io.BytesIO(data))
    assert checkpoint["step"] == 7
    assert np.array_equal(checkpoint["model_state"]["w"], weights)
    assert np.array_equal(checkpoint["model_state"]["b"], bias)


class _Exploit:
    def __reduce__(self) -> Any:
        import os

        return os.system, ("echo pwned",)


def test_a_checkpoint_naming_any_other_object_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _, storage_type = _fake_torch(monkeypatch)
    data = _legacy_checkpoint({"model_state": _Exploit()}, [], storage_type)
    with pytest.raises(pickle.UnpicklingError, match="unexpected object"):
        voice_encoder._read_legacy_checkpoint(io.BytesIO(data))


def test_a_file_that_is_not_the_known_checkpoint_is_refused(tmp_path: Any) -> None:
    forged = tmp_path / "pretrained.pt"
    forged.write_bytes(b"not the weights")
    with pytest.raises(ValueError, match=r"Resemblyzer 0\.1\.4"):
        voice_encoder.load_state(forged)


def test_mel_frames_are_centred_25_ms_windows_every_10_ms() -> None:
    one_second = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000).astype(np.float32)
    mels = mel_frames(one_second)
    assert mels.shape == (1 + 16000 // 160, MEL_BANDS)
    # A 1 kHz tone peaks in band 13 of 40, as librosa's Slaney filters (0-8 kHz) put it.
    assert int(np.argmax(mels[50])) == 13
    assert WINDOW == 400
