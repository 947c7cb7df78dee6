"""The user-facing API: ``Separator(...).separate(path_or_array) -> {stem: [channels, samples]}``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from .checkpoint import load_weights, read_state_dict
from .config import ModelConfig, load_config
from .engine import ChunkRunner, resolve_device, resolve_precision, separate_tensor
from .engine.allocator import keep_freed_memory
from .engine.backends import BACKENDS, make_backend
from .engine.batching import auto_batch_size, batch_cap
from .engine.lanes import Lanes, network_size, resolve_lanes
from .engine.msst import separate_msst
from .engine.soft_mask import SoftMaskedStream, soft_mask
from .engine.tta import Mirrored
from .errors import StemforgeError
from .models import MDX23C, StemBag

if TYPE_CHECKING:  # imported lazily at run time: decoding pulls in PyAV, soundfile and soxr
    from .audio.stream import StemWriter

Progress = Callable[[int, int], None]
WINDOWS = ("hann", "msst")


@dataclass(frozen=True)
class LoadedModel:
    """A network (or a bag of networks sharing one config) with its config and the name used for output folders."""

    name: str
    config: ModelConfig
    model: MDX23C | StemBag


def load_model(checkpoint: str | Path, config: str | Path, name: str | None = None) -> LoadedModel:
    """Build an MDX23C from an MSST YAML and load a checkpoint into it (strict)."""
    cfg = load_config(config)
    model = MDX23C.from_config(cfg)
    load_weights(model, read_state_dict(checkpoint), checkpoint, config)
    return LoadedModel(name or Path(checkpoint).stem, cfg, model.eval())


def resolve_model(name: str | None, checkpoint: str | Path | None, config: str | Path | None,
                  allow_unverified: bool = False) -> LoadedModel:
    """Pick the model from ``checkpoint`` + ``config``, or from the registry by ``name``."""
    if checkpoint or config:
        if not (checkpoint and config):
            missing = "--config YAML" if checkpoint else "--checkpoint CKPT"
            raise StemforgeError(f"a checkpoint needs its MSST config and vice versa: add {missing}")
        if name:
            raise StemforgeError("give either a model name (-n) or --checkpoint/--config, not both")
        return load_model(checkpoint, config)
    from . import registry

    if name is None and "default" not in registry.load_registry():
        raise StemforgeError(
            "no model given, and this version ships no trained default model yet: pass "
            "--checkpoint CKPT --config YAML (an MSST MDX23C checkpoint), or -n NAME (see `stemforge models`)"
        )
    entry = registry.get_model(name or "default")
    if entry.is_bag:
        members = [load_model(*registry.fetch_model(m.name, allow_unverified=allow_unverified), name=m.name)
                   for m in registry.bag_members(entry)]
        return load_bag(entry.name, members, registry.bag_weights(entry))
    ckpt, cfg = registry.fetch_model(entry.name, allow_unverified=allow_unverified)
    return load_model(ckpt, cfg, name=entry.name)


def load_bag(name: str, members: list[LoadedModel], weights: list[list[float]]) -> LoadedModel:
    """One :class:`StemBag` of ``members``, which must share their config's audio and inference
    sections and stems (the bag separates with that config); ``weights: [members, stems]``."""
    for member in members[1:]:
        check_separates_alike(name, members[0], member)
    return LoadedModel(name, members[0].config, StemBag([m.model for m in members], weights).eval())


def check_separates_alike(bag: str, first: LoadedModel, member: LoadedModel) -> None:
    """Refuse ``member`` in ``bag`` unless its config has ``first``'s audio and inference settings and
    stems: a bag separates every member with one config (one STFT, one chunking)."""
    for what in ("audio", "inference", "stems"):
        if getattr(member.config, what) != getattr(first.config, what):
            raise StemforgeError(f"bag '{bag}': '{member.name}' has another {what} than '{first.name}' "
                                 f"({member.config.path} vs {first.config.path}); members must separate alike")


@dataclass(frozen=True)
class Normalization:
    """``inference.normalize`` (MSST's): the network sees ``(x - mean) / std`` and its output is
    mapped back. The default is the identity, which costs no pass over the audio."""

    mean: float = 0.0
    std: float = 1.0

    def apply(self, x: np.ndarray) -> np.ndarray:
        return x if self.identity else (x - self.mean) / self.std

    def undo(self, x: np.ndarray) -> np.ndarray:
        return x if self.identity else x * self.std + self.mean

    @property
    def identity(self) -> bool:
        return self.mean == 0.0 and self.std == 1.0


class Separator:
    """Separates songs into stems with an MDX23C model.

    Args:
        model: registered model name (see ``stemforge models``); default ``"default"``.
        checkpoint, config: an MSST ``.ckpt``/``.safetensors`` and its YAML, instead of a name.
        device: ``auto|cpu|cuda|cuda:N|mps``.
        precision: ``auto|fp32|bf16|fp16`` for the network (STFT and accumulation stay fp32).
        overlap: chunks per chunk length (hop = chunk / overlap); default from the config, else 4.
        batch_size: chunks per network call, or ``"auto"``.
        window: ``"hann"`` (default) or ``"msst"`` to reproduce MSST's ``demix`` exactly.
        backend: how the network runs: ``"eager"`` (default), ``"compile"`` (torch.compile, cached
            under the user cache dir) or ``"onnx"`` (ONNX Runtime, fp32; ``onnx`` names a file from
            ``stemforge export-onnx``, else the network is exported into the cache on first use).
        lanes: chunks run at once on their own CPU threads, each with ``torch.get_num_threads() //
            lanes`` threads (:mod:`stemforge.engine.lanes`); ``"auto"``: 2 for a network under 10 M
            parameters (a bag: its largest member) on a CPU with 2+ threads, else 1.
        soft_mask: run the soft-mask post-filter on the stems (:mod:`stemforge.engine.soft_mask`);
            ``None`` (default): as the config's ``inference.soft_mask`` says (on for the shipped models).
        tta: test-time augmentation: each chunk also runs with its channels swapped and its polarity
            inverted, and the mirrored-back outputs are averaged (:mod:`stemforge.engine.tta`; a few
            hundredths of a dB for three times the network time).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        checkpoint: str | Path | None = None,
        config: str | Path | None = None,
        device: str = "auto",
        precision: str = "auto",
        overlap: int | None = None,
        batch_size: int | str = "auto",
        window: str = "hann",
        allow_unverified: bool = False,
        backend: str = "eager",
        onnx: str | Path | None = None,
        lanes: int | str = "auto",
        soft_mask: bool | None = None,
        tta: bool = False,
    ):
        if window not in WINDOWS:
            raise StemforgeError(f"unknown window '{window}'; use one of {', '.join(WINDOWS)}")
        self.loaded = resolve_model(model, checkpoint, config, allow_unverified)
        # from here on, no page faults on every network call (engine/allocator.py); after loading,
        # so the checkpoint's read buffers still go back to the system
        keep_freed_memory()
        self.config = self.loaded.config
        self.device = resolve_device(device)
        if backend not in BACKENDS:
            raise StemforgeError(f"unknown backend '{backend}'; use one of {', '.join(BACKENDS)}")
        if backend == "onnx" and precision not in ("auto", "fp32"):
            raise StemforgeError("the onnx backend runs in fp32; use --precision fp32 or --backend eager")
        self.dtype = resolve_precision("fp32" if backend == "onnx" else precision, self.device)
        self.backend = backend
        self.overlap = int(overlap or self.config.inference.num_overlap or 4)
        if self.overlap < 1:
            raise StemforgeError(f"--overlap must be at least 1, got {self.overlap}")
        self.window = window
        use_mask = self.config.inference.soft_mask if soft_mask is None else soft_mask
        self.soft_mask = self.config.soft_mask_settings if use_mask else None
        """The post-filter's settings, or ``None`` when it is off."""
        self.loaded.model.to(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # every call has the same chunk shape: tune convolutions once
        self.lanes, self.lane_threads = resolve_lanes(lanes, self.device,
                                                      parameters=network_size(self.loaded.model))
        net = make_backend(backend, self.loaded.model, self.device, onnx=onnx, chunk=self.config.chunk_size,
                           threads=self.lane_threads)
        self._check_onnx(net)
        self.runner = ChunkRunner(self.loaded.model, self.device, self.dtype, backend=net)
        self.batch_size = self._batch_size(batch_size)
        self.run = Lanes(self.runner, self.lanes, self.lane_threads) if self.lanes > 1 else self.runner
        """``chunks: [lanes * batch_size, C, chunk] -> [.., stems, C, chunk]``: the runner, on every lane
        (and on each chunk's mirror images with ``tta``)."""
        self.tta = tta
        if tta:
            self.run = Mirrored(self.run)

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def stems(self) -> tuple[str, ...]:
        return self.config.stems

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def _batch_size(self, batch_size: int | str) -> int:
        if batch_size == "auto":
            if self.window == "msst" and self.config.inference.batch_size:
                return int(self.config.inference.batch_size)
            # measured through eager PyTorch: a compiled or ONNX network is not run twice just to measure
            probe = self.runner if self.backend == "eager" else ChunkRunner(self.loaded.model, self.device, self.dtype)
            # per lane: every lane holds its own batch, so each gets 1/lanes of the memory budget
            return auto_batch_size(probe, self.config.chunk_size, self.config.audio.num_channels, self.device,
                                   safety=0.5 / self.lanes, cap=batch_cap(self.device, self.lane_threads))
        if int(batch_size) < 1:
            raise StemforgeError(f"--batch-size must be at least 1 or 'auto', got {batch_size}")
        return int(batch_size)

    def _check_onnx(self, net) -> None:
        frames = getattr(net, "frames", None)
        expected = self.config.chunk_size // self.config.audio.hop_length + 1
        if isinstance(frames, int) and frames != expected:
            raise StemforgeError(f"the ONNX network takes {frames} STFT frames but this config's chunks have "
                                 f"{expected}; export it with this config (stemforge export-onnx)")

    def load(self, path: str | Path) -> np.ndarray:
        """Decode ``path`` at the model's rate: ``[channels, samples]`` fp32; silence is an error."""
        from .audio import load_audio

        mix = load_audio(path, sample_rate=self.sample_rate, channels=self.config.audio.num_channels)
        if not np.any(mix):
            raise StemforgeError(f"'{path}' is digital silence: there is nothing to separate")
        return mix

    def separate(self, audio: str | Path | np.ndarray, sample_rate: int | None = None,
                 progress: Progress | None = None) -> dict[str, np.ndarray]:
        """Separate a file or an array ``[channels, samples]`` into ``{stem: [channels, samples]}``.

        An array must be at ``sample_rate`` (default: the model's rate); it is resampled otherwise.
        ``progress(chunks_done, chunks_total)`` is called after every batch.
        """
        mix = self.load(audio) if isinstance(audio, (str, Path)) else self._check_array(audio, sample_rate)
        stems = self.separate_mix(mix, progress)
        return {name: stems[i] for i, name in enumerate(self.stems)}

    def separate_mix(self, mix: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """``mix: [channels, samples]`` at the model rate -> ``[stems, channels, samples]`` fp32."""
        norm = self._normalization(mix)
        mix = norm.apply(mix)
        kwargs = dict(chunk=self.config.chunk_size, overlap=self.overlap, num_stems=len(self.stems), progress=progress)
        if self.window == "msst":  # MSST's result depends on its batch, so the lanes split that batch
            out = separate_msst(self.run, mix, batch_size=self.batch_size, **kwargs)
        else:
            out = separate_tensor(self.run, mix, device=self.device, batch_size=self.batch_size * self.lanes, **kwargs)
        if self.soft_mask is not None:
            out = soft_mask(torch.as_tensor(mix, dtype=torch.float32), out, self.soft_mask)
        return norm.undo(out.numpy())

    def post_filter(self, mix: np.ndarray, stems: np.ndarray) -> np.ndarray:
        """What :meth:`separate_mix` does after the network, alone: ``mix: [channels, samples]`` and
        ``stems: [stems, channels, samples]``, raw estimates as a separator of this config gives them with
        ``soft_mask=False`` -> the stems after this separator's soft mask (``stems`` itself when it has
        none). With it a benchmark can mix several networks' raw estimates (a bag's members, or a
        candidate in a member's place) and filter each mix without running the networks again."""
        if self.soft_mask is None:
            return stems
        norm = self._normalization(mix)
        out = soft_mask(torch.as_tensor(norm.apply(mix), dtype=torch.float32),
                        torch.as_tensor(norm.apply(stems), dtype=torch.float32), self.soft_mask)
        return norm.undo(out.numpy())

    def _normalization(self, mix: np.ndarray) -> Normalization:
        if not self.config.inference.normalize:
            return Normalization()
        return Normalization(float(mix.mean()), float(mix.std()) or 1.0)

    def separate_file(self, path: str | Path, outdir: str | Path, *, two_stems: str | None = None,
                      stems: list[str] | None = None, format: str = "wav", subtype: str = "PCM_16",
                      bitrate: int = 320, clip: str = "rescale", stream: bool = True,
                      progress: Progress | None = None) -> dict[str, Path]:
        """Separate the file ``path`` into ``outdir/<stem>.<format>``; all files or none.

        ``two_stems``/``stems`` as :func:`select_stems`. With ``stream`` (default) memory does not
        grow with the track: it is decoded, separated and encoded block by block, decoding and
        encoding on background threads while the network runs (:mod:`stemforge.engine.streaming`;
        same result as in memory). ``window="msst"`` needs the whole track and ignores ``stream``.
        """
        check_stems(self.stems, two_stems=two_stems, only=stems)
        write = dict(format=format, subtype=subtype, bitrate=bitrate, clip=clip)
        pick = partial(select_stems, two_stems=two_stems, only=stems)
        if stream and self.window != "msst":
            names = [two_stems, f"no_{two_stems}"] if two_stems else list(stems or self.stems)
            return self._separate_streaming(path, outdir, names, pick, write, progress)
        mix = self.load(path)
        raw = self.separate_mix(mix, progress)
        return save_stems(pick(dict(zip(self.stems, raw)), mix), outdir, self.sample_rate, **write)

    def _separate_streaming(self, path, outdir, names: list[str], pick, write: dict,
                            progress: Progress | None) -> dict[str, Path]:
        """decode thread -> blocks -> network (this thread) -> finished pieces -> encode thread."""
        from .audio.stream import AudioReader

        reader = AudioReader(path, self.sample_rate, self.config.audio.num_channels)
        norm = self.file_normalization(path)
        engine = self.stream(progress, reader.frames_hint)

        def encode(piece: tuple[torch.Tensor, torch.Tensor], writer) -> None:
            mix, out = (norm.undo(t.numpy()) for t in piece)
            writer.write(pick(dict(zip(self.stems, out)), mix))

        return write_streamed(reader, path, outdir, names, write, lambda block: engine.push(norm.apply(block)),
                              engine.finish, encode)

    def stream(self, progress: Progress | None = None, length_hint: int | None = None):
        """A fresh :class:`~stemforge.engine.streaming.OverlapAddStream` with this separator's settings
        (and the post-filter after it when :attr:`soft_mask` is on).

        ``push(block [C, n])`` blocks at the model rate (normalised if ``inference.normalize``), then
        ``finish()``; both return the finished ``(mix [C, n], stems [stems, C, n])`` pieces.
        """
        from .engine.streaming import OverlapAddStream

        stream = OverlapAddStream(self.run, chunk=self.config.chunk_size, overlap=self.overlap,
                                  num_stems=len(self.stems), channels=self.config.audio.num_channels,
                                  batch_size=self.batch_size * self.lanes, device=self.device, progress=progress,
                                  length_hint=length_hint)
        return stream if self.soft_mask is None else SoftMaskedStream(stream, self.soft_mask)

    def file_normalization(self, path: str | Path) -> Normalization:
        """What the network's input and output go through for the file ``path``: with
        ``inference.normalize``, its mean and standard deviation (a streamed pass); else nothing."""
        return Normalization(*self._stats(path)) if self.config.inference.normalize else Normalization()

    def _stats(self, path: str | Path) -> tuple[float, float]:
        """Mean and standard deviation of the decoded file, streamed (for ``inference.normalize``)."""
        from .audio.stream import AudioReader

        n, total, squares = 0, 0.0, 0.0
        for block in AudioReader(path, self.sample_rate, self.config.audio.num_channels):
            n += block.size
            total += float(block.sum(dtype=np.float64))
            squares += float(np.square(block, dtype=np.float64).sum())
        mean = total / max(n, 1)
        return mean, float(np.sqrt(max(squares / max(n, 1) - mean * mean, 0.0))) or 1.0

    def _check_array(self, audio: np.ndarray, sample_rate: int | None) -> np.ndarray:
        from .audio import convert_channels, resample

        mix = np.asarray(audio, dtype=np.float32)
        if mix.ndim == 1:
            mix = mix[None]
        if mix.ndim != 2 or mix.shape[-1] == 0:
            raise StemforgeError(f"audio array must be [channels, samples] with samples > 0, got shape {mix.shape}")
        if not np.isfinite(mix).all():
            raise StemforgeError("audio array contains NaN or inf samples; clean it (np.nan_to_num) first")
        mix = convert_channels(mix, self.config.audio.num_channels)
        if sample_rate and sample_rate != self.sample_rate:
            mix = resample(mix, sample_rate, self.sample_rate)
        return np.ascontiguousarray(mix)

    def save(self, stems: dict[str, np.ndarray], outdir: str | Path, *, format: str = "wav",
             subtype: str = "PCM_16", bitrate: int = 320, clip: str = "rescale") -> dict[str, Path]:
        """Write ``{stem: audio}`` as ``outdir/<stem>.<format>``; all files or none."""
        return save_stems(stems, outdir, self.sample_rate, format=format, subtype=subtype, bitrate=bitrate, clip=clip)


def _reject_silence(blocks, path):
    """Pass ``blocks`` through; at the end, fail if every sample was zero (as :meth:`Separator.load`)."""
    heard = False
    for block in blocks:
        heard = heard or bool(np.any(block))
        yield block
    if not heard:
        raise StemforgeError(f"'{path}' is digital silence: there is nothing to separate")


def write_streamed(reader, path: str | Path, outdir: str | Path, names: list[str], write: dict,
                   push: Callable[[np.ndarray], list], finish: Callable[[], list],
                   encode: Callable[[object, StemWriter], None]) -> dict[str, Path]:
    """Stream a file into ``outdir/<name>.<format>`` files; all of them or none.

    ``reader`` (an :class:`~stemforge.audio.stream.AudioReader` of ``path``) is decoded on a
    background thread; each block ``[C, n]`` goes to ``push`` and the end of the file to
    ``finish``, both on this thread and both returning finished pieces. ``encode(piece, writer)``
    writes every piece on a second background thread. ``write``: the
    :class:`~stemforge.audio.stream.StemWriter` options. A silent file is refused.
    """
    from .audio.stream import StemWriter
    from .engine.background import Prefetch, Sink

    with StemWriter(outdir, names, reader.sample_rate, reader.channels, **write) as writer:
        with Sink(lambda piece: encode(piece, writer), name="stemforge-encode") as sink:
            with Prefetch(_reject_silence(reader, path), name="stemforge-decode") as blocks:
                for block in blocks:
                    for piece in push(block):
                        sink.put(piece)
            for piece in finish():
                sink.put(piece)
        return writer.commit()


def select_stems(stems: dict[str, np.ndarray], mix: np.ndarray, *, two_stems: str | None = None,
                 only: list[str] | None = None) -> dict[str, np.ndarray]:
    """Apply ``--two-stems STEM`` (STEM and ``no_STEM`` = mix - STEM, fp32) and ``--stems a,b``."""
    check_stems(tuple(stems), two_stems=two_stems, only=only)
    if two_stems:
        target = stems[two_stems]
        return {two_stems: target, f"no_{two_stems}": mix.astype(np.float32) - target}
    if only:
        return {name: stems[name] for name in only}
    return stems


def check_stems(available: tuple[str, ...], *, two_stems: str | None = None, only: list[str] | None = None) -> None:
    """Fail early, naming the valid choices, when a requested stem is not one the model outputs."""
    for name in [two_stems] + list(only or []):
        if name is not None and name not in available:
            raise StemforgeError(f"unknown stem '{name}'; this model outputs: {', '.join(available)}")


def save_stems(stems: dict[str, np.ndarray], outdir: str | Path, sample_rate: int, *, format: str = "wav",
               subtype: str = "PCM_16", bitrate: int = 320, clip: str = "rescale") -> dict[str, Path]:
    """Write each stem atomically; if any write fails, the ones already written are removed."""
    from .audio import save_audio

    outdir = Path(outdir)
    written: dict[str, Path] = {}
    try:
        for name, audio in stems.items():
            written[name] = save_audio(outdir / f"{name}.{format}", audio, sample_rate,
                                       subtype=subtype, bitrate=bitrate, clip=clip)
    except BaseException:
        for path in written.values():
            path.unlink(missing_ok=True)
        raise
    return written


def random_checkpoint(config: str | Path, out: str | Path, seed: int = 0) -> Path:
    """Write a random-weight checkpoint for ``config`` (demos, tests and benchmarks only)."""
    torch.manual_seed(seed)
    cfg = load_config(config)
    model = MDX23C.from_config(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:  # make norms non-identity, as trained models are
                p.add_(0.1 * torch.randn_like(p))
    from .audio import atomic_write

    out = Path(out)
    with atomic_write(out) as tmp:
        if out.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(model.state_dict(), str(tmp))
        else:
            torch.save(model.state_dict(), tmp)
    return out
