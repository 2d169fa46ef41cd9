"""The shipped multilingual model: joined once from its two packages into the analyzer's
cache, checked by SHA-256, refused with a clear message when a part is damaged."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.analyzer.shipped_models import (
    BASE_PACKAGES,
    BASE_SHA256,
    ModelError,
    joined_base,
    model_folder,
)


def _installed(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    assert spec is not None
    assert spec.origin is not None
    return Path(spec.origin).parent


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_model_is_joined_once_and_checked(tmp_path: Path) -> None:
    folder = joined_base(tmp_path)

    assert _sha256(folder / "model.bin") == BASE_SHA256
    assert {path.name for path in folder.iterdir()} == {
        "config.json",
        "tokenizer.json",
        "vocabulary.txt",
        "model.bin",
    }
    assert [path.name for path in tmp_path.iterdir()] == [folder.name]  # nothing left over
    written_ns = (folder / "model.bin").stat().st_mtime_ns

    assert joined_base(tmp_path) == folder  # a second start reuses it
    assert (folder / "model.bin").stat().st_mtime_ns == written_ns


def test_a_joined_model_damaged_since_is_joined_again(tmp_path: Path) -> None:
    folder = joined_base(tmp_path)
    with (folder / "model.bin").open("r+b") as model:
        model.truncate(1000)

    assert joined_base(tmp_path) == folder
    assert _sha256(folder / "model.bin") == BASE_SHA256


def test_a_damaged_part_is_refused_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A copy of the packages on the path ahead of the installed ones, one byte of the
    # second half changed.
    packages = tmp_path / "site"
    for package in BASE_PACKAGES:
        data = packages / package / "data"
        data.mkdir(parents=True)
        (packages / package / "__init__.py").write_text("")
        for source in (_installed(package) / "data").iterdir():
            os.symlink(source, data / source.name)
    damaged = packages / BASE_PACKAGES[1] / "data" / "model.bin.part2"
    content = bytearray(damaged.read_bytes())
    damaged.unlink()
    content[len(content) // 2] ^= 0xFF
    damaged.write_bytes(content)
    monkeypatch.syspath_prepend(str(packages))

    with pytest.raises(ModelError, match=r"SHA-256 .* not d01c3014.*reinstall"):
        joined_base(tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # no half-made model is left


def test_a_model_that_is_neither_shipped_nor_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="nothing is downloaded at run time"):
        model_folder("large-v3", cache_dir=tmp_path)
    assert model_folder(str(tmp_path), cache_dir=tmp_path) == tmp_path  # a mounted folder


def test_an_analyzer_with_a_model_it_cannot_use_stops_and_says_why(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "services.analyzer"],
        env={**os.environ, "ROP_ASR_MODEL": "large-v3", "ROP_ASR_MODEL_CACHE_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert finished.returncode != 0
    assert "Cannot load the ASR model 'large-v3' (ROP_ASR_MODEL)" in finished.stderr
    assert "nothing is downloaded at run time" in finished.stderr
