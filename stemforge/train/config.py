"""The training YAML: MSST's ``training:`` and ``augmentations:`` sections as frozen dataclasses.

``audio:``, ``model:`` and ``inference:`` are parsed by :func:`stemforge.config.parse_config`.
Unknown keys are errors naming the closest valid key. Keys MSST uses that stemforge accepts but
does not implement (its masked loss, pedalboard effects, ...) are listed in one ``ignored: ...``
warning per config.
"""

from __future__ import annotations

import difflib
import typing
import warnings
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from ..config import ModelConfig, parse_config, read_yaml
from ..errors import StemforgeError
from ..models import MDX23C

SECTIONS = ("audio", "model", "training", "augmentations", "inference")

_IGNORED_TRAINING = {
    "q": "MSST's masked loss; stemforge trains with L1 + training.loss_stft",
    "coarse_loss_clip": "MSST's masked loss; stemforge trains with L1 + training.loss_stft",
    "other_fix": "MSST's multisong validation option",
    "num_warmup_steps": "only used by MSST's linear scheduler",
    "read_metadata_procs": "MSST dataset-loader option",
    "precompute_chunks": "MSST dataset-loader option",
    "num_precompute_chunks": "MSST dataset-loader option",
    "precompute_batch_for_chunks": "MSST dataset-loader option",
    "max_class_presence_ratio": "MSST dataset-loader option",
    "segment": "used by other MSST models",
    "samplerate": "used by other MSST models (audio.sample_rate is used)",
    "k_sdr": "MSST metric option; stemforge reports global SDR",
}
_IGNORED_AUGMENT_PREFIXES = ("chunk_size_augm", "chunk_size_min", "chunk_size_max")
_IGNORED_STEM_AUGMENT_PREFIXES = (
    "mp3_compression", "pedalboard_", "pitch_shift", "tanh_distortion", "gaussian_noise", "time_stretch",
)
_IGNORED_SECTIONS = {"loss_multistft": "auraloss settings; use training.loss_stft and training.stft_resolutions"}
_warned: set[tuple[str, str]] = set()
EFFECT = "MSST effects not implemented"


@dataclass(frozen=True)
class TrainingConfig:
    """The ``training:`` section. ``num_steps`` counts optimizer steps per epoch."""

    instruments: tuple[str, ...]
    target_instrument: str | None = None
    batch_size: int = 6
    lr: float = 9e-5
    num_epochs: int = 1000
    num_steps: int = 1000
    gradient_accumulation_steps: int = 1
    grad_clip: float = 0.0
    optimizer: str = "adam"
    weight_decay: float = 0.0
    ema_momentum: float = 0.0
    use_amp: bool = False
    amp_dtype: str = "auto"
    scheduler: str = "ReduceLROnPlateau"
    patience: int = 2
    reduce_factor: float = 0.95
    lr_min: float = 0.0
    model_type: str = "mdx23c"
    seed: int = 0
    loss_l1: float = 1.0
    loss_stft: float = 0.0
    loss_sdr: float = 0.0
    sdr_weights: dict[str, float] = field(default_factory=dict)  # stem -> weight in loss_sdr; others 1
    stft_resolutions: tuple[tuple[int, int], ...] = ((2048, 512), (1024, 256), (512, 128))
    num_workers: int = 2
    save_every: int = 0
    fast_valid_segments: int = 0
    fast_valid_seconds: float = 10.0


@dataclass(frozen=True)
class StemAugment:
    """``augmentations.all:``: per-stem probabilities, and the ranges of the timbre augmentations."""

    channel_shuffle: float = 0.0
    random_polarity: float = 0.0
    random_inverse: float = 0.0
    varispeed: float = 0.0  # faster/slower playback, pitch and tempo together (train/augment.py)
    varispeed_semitones: float = 2.0  # uniform in +-this
    seven_band_parametric_eq: float = 0.0  # MSST's key: a random 7-band EQ
    seven_band_parametric_eq_min_gain_db: float = -9.0
    seven_band_parametric_eq_max_gain_db: float = 9.0


@dataclass(frozen=True)
class AugmentConfig:
    """The ``augmentations:`` section. ``remix`` draws every stem from its own random track and offset."""

    enable: bool = False
    remix: bool = True
    loudness: bool = False
    loudness_min: float = 0.5
    loudness_max: float = 1.5
    loudness_log: bool = False  # draw the gain uniformly in dB between loudness_min and loudness_max
    mixup: bool = False
    mixup_probs: tuple[float, ...] = ()
    mixup_loudness_min: float = 0.5
    mixup_loudness_max: float = 1.5
    # MSST's keys: the mixture (not the targets) through an mp3 encoder and decoder at a bitrate drawn
    # uniformly in kbps (train/augment.py); stemforge always encodes with libsndfile's LAME, whatever
    # ``_backend`` names (MSST's lameenc or pedalboard)
    mp3_compression_on_mixture: float = 0.0
    mp3_compression_on_mixture_bitrate_min: int = 32
    mp3_compression_on_mixture_bitrate_max: int = 320
    mp3_compression_on_mixture_backend: str = "lameenc"
    all: StemAugment = field(default_factory=StemAugment)


@dataclass(frozen=True)
class TrainSetup:
    """Everything one training run is configured with."""

    model: ModelConfig
    training: TrainingConfig
    augment: AugmentConfig
    path: Path | None = None
    text: str = ""


def load_setup(path: str | Path, overrides: Sequence[str] = ()) -> TrainSetup:
    """Read and validate a training YAML, with ``overrides`` (``SECTION.KEY=VALUE``) applied first.

    With overrides, ``text`` (what a run saves as its ``config.yaml``) is the YAML of the merged
    config, headed by a comment naming the file and the overrides.
    """
    path = Path(path)
    where = f"config '{path}'"
    data = read_yaml(path)
    text = path.read_text()
    if overrides:
        for item in overrides:
            _apply_override(data, item, where)
        text = f"# {path.name} with --set {' '.join(overrides)}\n" + yaml.dump(
            data, Dumper=_ListDumper, sort_keys=False)
    return parse_setup(data, where=where, path=path, text=text)


def _apply_override(data: dict, item: str, where: str) -> None:
    """Set ``data[a][b]... = value`` in place from ``"a.b...=value"``; the value is read as YAML.

    The first key must be a section; keys below it are checked when the config is validated.
    """
    dotted, sep, raw = item.partition("=")
    keys = dotted.strip().split(".")
    if not sep or len(keys) < 2 or not all(keys):
        raise StemforgeError(f"--set '{item}': expected SECTION.KEY=VALUE, e.g. --set training.lr=1e-4")
    if keys[0] not in SECTIONS:
        _unknown(keys[0], SECTIONS, "", f"--set '{item}'")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise StemforgeError(f"--set '{item}': the value is not valid YAML: {exc}") from None
    node = data
    for depth, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:  # absent, or an empty section
            child = node[key] = {}
        if not isinstance(child, dict):
            raise StemforgeError(f"--set '{item}': '{'.'.join(keys[:depth + 1])}' in {where} is not a mapping")
        node = child
    node[keys[-1]] = value


class _ListDumper(yaml.SafeDumper):
    """Writes tuples (``!!python/tuple`` in MSST YAMLs) as plain lists."""


_ListDumper.add_representer(tuple, yaml.SafeDumper.represent_list)


def parse_setup(data: dict, where: str = "<config>", path: Path | None = None, text: str = "") -> TrainSetup:
    ignored: dict[str, list[str]] = {}  # reason -> keys
    for key in data:
        if key in _IGNORED_SECTIONS:
            ignored.setdefault(_IGNORED_SECTIONS[key], []).append(f"{key}:")
        elif key not in SECTIONS:
            _unknown(key, SECTIONS, "", where)
    model = parse_config(data, where, path)
    MDX23C.check_geometry(model, where)
    training = _parse(TrainingConfig, data["training"], "training", where, _ignored_training, ignored)
    training = _check_training(training, where)
    augment = _parse_augment(data.get("augmentations") or {}, where, training.instruments, ignored)
    _warn_ignored(where, ignored)
    return TrainSetup(model, training, augment, path, text)


def _ignored_training(key: str) -> tuple[str, str] | None:
    reason = _IGNORED_TRAINING.get(key)
    return None if reason is None else (key, reason)


def _ignored_effect(key: str) -> tuple[str, str] | None:
    for prefix in _IGNORED_AUGMENT_PREFIXES + _IGNORED_STEM_AUGMENT_PREFIXES:
        if key.startswith(prefix):
            return (prefix.rstrip("_") + "*", EFFECT)
    return None


def _parse_augment(data: Any, where: str, instruments: tuple[str, ...], ignored: dict) -> AugmentConfig:
    if not isinstance(data, dict):
        raise StemforgeError(f"{where}: section 'augmentations:' must be a mapping")
    data = dict(data)
    for name in [k for k in data if k in instruments]:
        ignored.setdefault(EFFECT, []).append(f"augmentations.{name}:")
        del data[name]
    all_data = data.pop("all", None) or {}
    stem = _parse(StemAugment, all_data, "augmentations.all", where, _ignored_effect, ignored)
    aug = replace(_parse(AugmentConfig, data, "augmentations", where, _ignored_effect, ignored), all=stem)
    for name in ("channel_shuffle", "random_polarity", "random_inverse", "varispeed", "seven_band_parametric_eq"):
        _check(0 <= getattr(stem, name) <= 1, f"augmentations.all.{name} must be a probability in 0..1", where)
    _check(0 <= stem.varispeed_semitones <= 12, "augmentations.all.varispeed_semitones must be in 0..12", where)
    _check(stem.seven_band_parametric_eq_min_gain_db <= stem.seven_band_parametric_eq_max_gain_db,
           "augmentations.all.seven_band_parametric_eq_min_gain_db must be <= ..._max_gain_db", where)
    _check(all(0 <= p <= 1 for p in aug.mixup_probs), "augmentations.mixup_probs must be probabilities", where)
    _check(0 <= aug.mp3_compression_on_mixture <= 1,
           "augmentations.mp3_compression_on_mixture must be a probability in 0..1", where)
    _check(32 <= aug.mp3_compression_on_mixture_bitrate_min <= aug.mp3_compression_on_mixture_bitrate_max <= 320,
           "augmentations.mp3_compression_on_mixture_bitrate_min and _max must be kbps with 32 <= min <= max <= 320",
           where)
    _check(0 <= aug.loudness_min <= aug.loudness_max,
           "augmentations.loudness_min must be >= 0 and <= loudness_max", where)
    _check(not aug.loudness_log or aug.loudness_min > 0,
           "augmentations.loudness_log draws the gain in dB, so loudness_min must be > 0", where)
    return aug


def _check_training(t: TrainingConfig, where: str) -> TrainingConfig:
    _check(t.model_type == "mdx23c", f"training.model_type '{t.model_type}' is not supported (stemforge trains mdx23c)", where)
    _check(t.batch_size >= 1 and t.num_epochs >= 1 and t.num_steps >= 1 and t.gradient_accumulation_steps >= 1,
           "training.batch_size, num_epochs, num_steps and gradient_accumulation_steps must be >= 1", where)
    _check(t.lr > 0, f"training.lr must be > 0, got {t.lr}", where)
    _check(t.optimizer.lower() in ("adam", "adamw"), f"training.optimizer '{t.optimizer}' is not supported; use adam or adamw", where)
    _check(t.amp_dtype in ("auto", "bf16", "fp16"), f"training.amp_dtype '{t.amp_dtype}' must be auto, bf16 or fp16", where)
    _check(t.scheduler in ("ReduceLROnPlateau", "cosine", "constant"),
           f"training.scheduler '{t.scheduler}' is not supported; use ReduceLROnPlateau, cosine or constant", where)
    _check(0 <= t.lr_min <= t.lr, f"training.lr_min must be in [0, training.lr], got {t.lr_min}", where)
    _check(0 <= t.ema_momentum < 1, f"training.ema_momentum must be in [0, 1), got {t.ema_momentum}", where)
    _check(min(t.loss_l1, t.loss_stft, t.loss_sdr) >= 0 and t.loss_l1 + t.loss_stft + t.loss_sdr > 0,
           "training.loss_l1, loss_stft and loss_sdr must be >= 0 and not all 0", where)
    stems = (t.target_instrument,) if t.target_instrument else t.instruments
    for stem, weight in t.sdr_weights.items():
        _check(stem in stems, f"training.sdr_weights: '{stem}' is not a trained stem ({', '.join(stems)})", where)
        _check(weight >= 0, f"training.sdr_weights: the weight of '{stem}' must be >= 0, got {weight}", where)
    _check(not stems or any(t.sdr_weights.get(s, 1.0) > 0 for s in stems),
           "training.sdr_weights: at least one stem needs a weight > 0", where)
    _check(not t.sdr_weights or t.loss_sdr > 0,
           "training.sdr_weights weigh the batch-SDR term, which is off: set training.loss_sdr > 0", where)
    return t


# -- generic section parsing ---------------------------------------------------------------


def _parse(cls, data: Any, name: str, where: str, is_ignored, ignored: dict) -> Any:
    """Build dataclass ``cls`` from ``data``: coerce types, error on unknown keys, collect ignored ones.

    ``is_ignored(key) -> (shown name, reason) | None``; ignored keys go to ``ignored[reason]``.
    """
    if not isinstance(data, dict):
        raise StemforgeError(f"{where}: section '{name}:' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in fields(cls) if f.name != "all"]
    kwargs = {}
    for key, value in data.items():
        if key in valid:
            kwargs[key] = _coerce(value, hints[key], f"{name}.{key}", where)
        elif (hit := is_ignored(key)) is not None:
            shown = f"{name}.{hit[0]}"
            keys = ignored.setdefault(hit[1], [])
            if shown not in keys:
                keys.append(shown)
        else:
            _unknown(key, valid, f"{name}.", where)
    missing = [f.name for f in fields(cls) if f.name not in kwargs and f.default is f.default_factory is MISSING]
    _check(not missing, f"section '{name}:' is missing required key(s): {', '.join(missing)}", where)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str, where: str) -> Any:
    """Convert a YAML value to the field's type (``'1e-4'`` -> float, lists -> tuples)."""
    if value is None:
        return None
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = typing.get_origin(hint)
    try:
        if base is dict:
            if not isinstance(value, dict):
                raise TypeError
            return {_coerce(k, args[0], key, where): _coerce(v, args[1], key, where) for k, v in value.items()}
        if base is tuple:
            inner = args[0]
            return tuple(_coerce(v, inner, key, where) for v in value)
        if args and base is not tuple and typing.get_origin(hint) is not None:  # Optional[X]
            return _coerce(value, args[0], key, where)
        if hint is bool:
            if not isinstance(value, bool):
                raise ValueError
            return value
        if hint in (int, float):
            number = float(value)
            if hint is int and number != int(number):
                raise ValueError
            return hint(number)
        return hint(value)
    except (TypeError, ValueError):
        raise StemforgeError(f"{where}: '{key}' must be {getattr(hint, '__name__', hint)}, got {value!r}") from None


def _unknown(key: Any, valid, prefix: str, where: str) -> None:
    close = difflib.get_close_matches(str(key), list(valid), n=1)
    hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
    raise StemforgeError(f"{where}: unknown key '{prefix}{key}'{hint}; valid keys: {', '.join(sorted(valid))}")


def _check(ok: bool, message: str, where: str) -> None:
    if not ok:
        raise StemforgeError(f"{where}: {message}")


def _warn_ignored(where: str, ignored: dict[str, list[str]]) -> None:
    """One warning per config listing the accepted-but-unimplemented keys, grouped by reason."""
    if not ignored:
        return
    text = "; ".join(f"{', '.join(keys)} ({reason})" for reason, keys in ignored.items())
    if (where, text) not in _warned:
        _warned.add((where, text))
        warnings.warn(f"{where}: ignored: {text}", UserWarning, stacklevel=3)
