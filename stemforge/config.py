"""Model configs in the YAML layout of Music-Source-Separation-Training (MSST).

The YAML is parsed and validated once, here, into frozen dataclasses; everything
downstream receives plain values. Real MSST configs carry ``!!python/tuple``
tags, which we accept with a safe loader (no arbitrary object construction).
"""

from __future__ import annotations

import difflib
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import StemforgeError


class _MsstLoader(yaml.SafeLoader):
    """SafeLoader that also understands ``!!python/tuple`` (read as a tuple)."""


_MsstLoader.add_constructor(
    "tag:yaml.org,2002:python/tuple",
    lambda loader, node: tuple(loader.construct_sequence(node)),
)


@dataclass(frozen=True)
class AudioConfig:
    """The ``audio:`` section: signal and STFT parameters."""

    chunk_size: int
    n_fft: int
    hop_length: int
    dim_f: int
    num_channels: int = 2
    sample_rate: int = 44100
    dim_t: int | None = None
    min_mean_abs: float = 0.0
    use_cmx: bool = False
    cmx_reduction: int = 1


@dataclass(frozen=True)
class MDX23CConfig:
    """The ``model:`` section of an MDX23C (TFC-TDF-v3) config."""

    num_subbands: int
    num_scales: int
    scale: tuple[int, int]
    num_blocks_per_scale: int
    num_channels: int
    growth: int
    bottleneck_factor: int
    norm: str = "InstanceNorm"
    act: str = "gelu"


@dataclass(frozen=True)
class InferenceConfig:
    """The ``inference:`` section (defaults used when the CLI does not override)."""

    num_overlap: int = 4
    batch_size: int | None = None
    dim_t: int | None = None
    chunk_size: int | None = None
    normalize: bool = False
    soft_mask: bool = False
    """Run the soft-mask post-filter (:mod:`stemforge.engine.soft_mask`) on the network's stems."""
    soft_mask_power: float = 1.0
    soft_mask_n_fft: int = 4096
    soft_mask_max_gain: float | None = None
    soft_mask_spatial: bool | list[str] = False
    """Filter the channels together, by each stem's stereo image (a multichannel Wiener filter):
    ``true`` for every stem, or a list of the stems that are (the others keep the ratio mask)."""
    soft_mask_spatial_block: int = 64
    """STFT frames per block; a stem's stereo image is taken over its block and the two beside it."""
    soft_mask_keep: float | dict[str, float] = 0.0
    """The share of the network's own estimate blended back into the filter's output: one number for
    every stem, or ``{stem: share}`` (stems left out: 0)."""


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build a model and run inference with it."""

    audio: AudioConfig
    model: MDX23CConfig
    instruments: tuple[str, ...]
    target_instrument: str | None
    inference: InferenceConfig
    path: Path | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def stems(self) -> tuple[str, ...]:
        """Stems the network outputs, in output order (MSST's ``prefer_target_instrument``)."""
        if self.target_instrument:
            return (self.target_instrument,)
        return self.instruments

    @property
    def sample_rate(self) -> int:
        return self.audio.sample_rate

    @property
    def chunk_size(self) -> int:
        return self.inference.chunk_size or self.audio.chunk_size

    @property
    def soft_mask_settings(self):
        """The post-filter's :class:`~stemforge.engine.soft_mask.SoftMask` (whether or not
        ``inference.soft_mask`` is on), with the stems named in ``soft_mask_spatial`` as indices."""
        from .engine.soft_mask import SoftMask

        inference, spatial = self.inference, self.inference.soft_mask_spatial
        if isinstance(spatial, (list, tuple)):
            unknown = [s for s in spatial if s not in self.stems]
            if unknown:
                raise ValueError(f"soft_mask_spatial names {unknown}, which are not among the stems {list(self.stems)}")
            spatial = tuple(self.stems.index(s) for s in spatial)
        elif not isinstance(spatial, bool):
            raise ValueError(f"soft_mask_spatial must be true, false or a list of stems, got {spatial!r}")
        return SoftMask(inference.soft_mask_power, inference.soft_mask_n_fft, inference.soft_mask_max_gain,
                        spatial, inference.soft_mask_spatial_block, self._soft_mask_keep())

    def _soft_mask_keep(self) -> tuple[float, ...] | None:
        """``inference.soft_mask_keep`` as one share per stem, in stem order (``None``: keep nothing)."""
        keep = self.inference.soft_mask_keep
        if isinstance(keep, dict):
            unknown = [s for s in keep if s not in self.stems]
            if unknown:
                raise ValueError(f"soft_mask_keep names {unknown}, which are not among the stems {list(self.stems)}")
            shares = [keep.get(s, 0.0) for s in self.stems]
        else:
            shares = [keep] * len(self.stems)
        if not all(isinstance(k, (int, float)) and not isinstance(k, bool) for k in shares):
            raise ValueError(f"soft_mask_keep must be a number or a mapping of stems to numbers, got {keep!r}")
        return tuple(float(k) for k in shares) if any(shares) else None


def _section(cls, data: Any, name: str, where: str):
    """Build dataclass ``cls`` from mapping ``data``; unknown keys name the closest valid one."""
    if not isinstance(data, dict):
        raise StemforgeError(f"{where}: section '{name}:' must be a mapping, got {type(data).__name__}")
    valid = {f.name for f in fields(cls)} - {"path", "raw"}
    for key in data:
        if key not in valid:
            close = difflib.get_close_matches(str(key), sorted(valid), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise StemforgeError(
                f"{where}: unknown key '{name}.{key}'{hint}; valid keys: {', '.join(sorted(valid))}"
            )
    missing = [f.name for f in fields(cls) if f.name not in data and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise StemforgeError(f"{where}: section '{name}:' is missing required key(s): {', '.join(missing)}")
    try:
        return cls(**data)
    except TypeError as exc:  # pragma: no cover - guarded above
        raise StemforgeError(f"{where}: bad '{name}:' section: {exc}") from None


def read_yaml(path: str | Path) -> dict:
    """Read an MSST-style YAML file safely (``!!python/tuple`` allowed, nothing executable)."""
    path = Path(path)
    if not path.is_file():
        raise StemforgeError(f"config file not found: '{path}'; pass the YAML the checkpoint was trained with")
    try:
        data = yaml.load(path.read_text(), Loader=_MsstLoader)
    except yaml.YAMLError as exc:
        raise StemforgeError(f"could not parse config '{path}': {exc}") from None
    if not isinstance(data, dict):
        raise StemforgeError(f"config '{path}' must be a YAML mapping with audio:, model:, training: sections")
    return data


def parse_config(data: dict, where: str = "<config>", path: Path | None = None) -> ModelConfig:
    """Validate an MSST config mapping into a :class:`ModelConfig`."""
    for name in ("audio", "model", "training"):
        if name not in data:
            raise StemforgeError(f"{where}: missing section '{name}:' (an MSST MDX23C config has audio:, model:, training:)")
    audio = _section(AudioConfig, dict(data["audio"]), "audio", where)
    model_data = dict(data["model"])
    if "scale" in model_data:
        model_data["scale"] = _pair(model_data["scale"], "model.scale", where)
    model = _section(MDX23CConfig, model_data, "model", where)
    training = data["training"]
    if not isinstance(training, dict) or not training.get("instruments"):
        raise StemforgeError(f"{where}: 'training.instruments' must list the stems, e.g. [vocals, bass, drums, other]")
    instruments = tuple(str(s) for s in training["instruments"])
    target = training.get("target_instrument") or None
    if target is not None and target not in instruments:
        raise StemforgeError(
            f"{where}: training.target_instrument '{target}' is not one of training.instruments {list(instruments)}"
        )
    inference = _section(InferenceConfig, dict(data.get("inference") or {}), "inference", where)
    cfg = ModelConfig(audio, model, instruments, target, inference, path=path, raw=data)
    try:
        cfg.soft_mask_settings
    except (ValueError, TypeError) as exc:
        raise StemforgeError(f"{where}: inference.{exc}") from None
    _check_geometry(cfg, where)
    return cfg


def load_config(path: str | Path) -> ModelConfig:
    """Read and validate an MSST MDX23C YAML config file."""
    path = Path(path)
    return parse_config(read_yaml(path), where=f"config '{path}'", path=path)


def _pair(value: Any, key: str, where: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return (int(value[0]), int(value[1]))
    raise StemforgeError(f"{where}: '{key}' must be an int or a pair like [2, 2], got {value!r}")


def _check_geometry(cfg: ModelConfig, where: str) -> None:
    """Reject configs whose shapes cannot work, with the rule that is broken."""
    a, m = cfg.audio, cfg.model
    if a.dim_f > a.n_fft // 2 + 1:
        raise StemforgeError(f"{where}: audio.dim_f={a.dim_f} exceeds n_fft//2+1={a.n_fft // 2 + 1}")
    if a.dim_f % m.num_subbands:
        raise StemforgeError(f"{where}: audio.dim_f={a.dim_f} must be divisible by model.num_subbands={m.num_subbands}")
    if a.use_cmx:
        return  # the CMX model pads frequency and time itself (see MDX23C.check_geometry)
    f = a.dim_f // m.num_subbands
    if f % (m.scale[1] ** m.num_scales):
        raise StemforgeError(
            f"{where}: dim_f/num_subbands={f} must be divisible by scale[1]**num_scales={m.scale[1] ** m.num_scales}"
        )
    frames = cfg.chunk_size // a.hop_length + 1
    if frames % (m.scale[0] ** m.num_scales):
        raise StemforgeError(
            f"{where}: chunk_size//hop_length+1={frames} STFT frames must be divisible by "
            f"scale[0]**num_scales={m.scale[0] ** m.num_scales}; choose chunk_size = hop_length*(k*"
            f"{m.scale[0] ** m.num_scales}-1)"
        )
