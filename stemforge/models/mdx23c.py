"""MDX23C: the TFC-TDF-v3 U-Net of Kim et al. (Sound Demixing Challenge 2023).

Parameter names follow Music-Source-Separation-Training's
``models/mdx23c_tfc_tdf_v3.py`` so that its checkpoints load with
``strict=True`` unchanged. Unlike that file, the model is split into three
steps the engine can run separately:

* :meth:`MDX23C.stft`  ``mix [B, C, S] -> spec [B, C*2, dim_f, frames]``  (fp32)
* :meth:`MDX23C.net`   ``spec -> [B, stems, C*2, dim_f, frames]``         (may run in bf16/fp16)
* :meth:`MDX23C.istft` ``-> [B, stems, C, S]``                           (fp32)

so that only the network runs in reduced precision, and so that the network
alone can be exported to ONNX (``torch.istft`` cannot be).

With ``cmx=r`` (off by default) the network folds every ``r x r`` tile of the sub-band
spectrogram into channels (:mod:`stemforge.models.cmx`) and runs on ``r*r`` times fewer
positions; inputs are zero-padded so any ``n_fft``/``hop``/chunk works.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import StemforgeError
from . import cmx as cmx_ops

Norm = Callable[[int], nn.Module]


def make_norm(kind: str) -> Norm:
    """Return a constructor ``channels -> norm layer`` for an MSST ``model.norm`` name."""
    if kind == "BatchNorm":
        return nn.BatchNorm2d
    if kind == "InstanceNorm":
        return InstanceNorm
    if kind.startswith("GroupNorm"):
        return lambda c: nn.GroupNorm(num_groups=int(kind[len("GroupNorm"):]), num_channels=c)
    return lambda c: nn.Identity()


class InstanceNorm(nn.InstanceNorm2d):
    """``nn.InstanceNorm2d(c, affine=True)`` computed by PyTorch's group-norm kernel, one group per channel.

    Same parameters (``weight``, ``bias``), eps and result, to float rounding (``x: [B, c, H, W]``).
    ``instance_norm`` runs ``batch_norm`` on a reshaped copy of ``x`` with its weights repeated per
    sample; ``group_norm`` normalises and applies the affine in one pass: 4x as fast on a CPU, and
    the shipped bags 1.05-1.12x as fast in fp32 (BENCHMARKS.md, "CPU fast paths"). ONNX export
    keeps the one ``InstanceNormalization`` node.
    """

    def __init__(self, c: int):
        super().__init__(c, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return super().forward(x)
        return nn.functional.group_norm(x, self.num_features, self.weight, self.bias, self.eps)


def make_act(kind: str) -> nn.Module:
    """Activation for an MSST ``model.act`` name: gelu, relu or eluALPHA."""
    if kind == "gelu":
        return nn.GELU()
    if kind == "relu":
        return nn.ReLU()
    if kind.startswith("elu"):
        return nn.ELU(float(kind[3:]))
    raise ValueError(f"unknown activation '{kind}' (use gelu, relu or elu<alpha>)")


def _norm_act_conv(norm: Norm, act: nn.Module, in_c: int, conv: nn.Module) -> nn.Sequential:
    return nn.Sequential(norm(in_c), act, conv)


class TFCTDFBlock(nn.Module):
    """One TFC-TDF residual block: conv, a frequency MLP (TDF), conv, plus a 1x1 shortcut.

    ``x: [B, in_c, T, F] -> [B, c, T, F]`` (frequency is the last axis).
    """

    def __init__(self, in_c: int, c: int, f: int, bottleneck: int, norm: Norm, act: nn.Module):
        super().__init__()
        self.tfc1 = _norm_act_conv(norm, act, in_c, nn.Conv2d(in_c, c, 3, 1, 1, bias=False))
        self.tdf = nn.Sequential(
            norm(c), act, nn.Linear(f, f // bottleneck, bias=False),
            norm(c), act, nn.Linear(f // bottleneck, f, bias=False),
        )
        self.tfc2 = _norm_act_conv(norm, act, c, nn.Conv2d(c, c, 3, 1, 1, bias=False))
        self.shortcut = nn.Conv2d(in_c, c, 1, 1, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.shortcut(x)
        x = self.tfc1(x)
        x = x + self.tdf(x)
        return self.tfc2(x) + s


class TFCTDF(nn.Module):
    """``num_blocks`` TFC-TDF blocks in a row (the first maps ``in_c -> c``)."""

    def __init__(self, in_c: int, c: int, num_blocks: int, f: int, bottleneck: int, norm: Norm, act: nn.Module):
        super().__init__()
        self.blocks = nn.ModuleList(
            TFCTDFBlock(in_c if i == 0 else c, c, f, bottleneck, norm, act) for i in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class Downscale(nn.Module):
    """Strided conv: ``[B, in_c, T, F] -> [B, out_c, T/scale[0], F/scale[1]]``."""

    def __init__(self, in_c: int, out_c: int, scale: tuple[int, int], norm: Norm, act: nn.Module):
        super().__init__()
        self.conv = _norm_act_conv(norm, act, in_c, nn.Conv2d(in_c, out_c, scale, scale, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upscale(nn.Module):
    """Transposed conv: ``[B, in_c, T, F] -> [B, out_c, T*scale[0], F*scale[1]]``."""

    def __init__(self, in_c: int, out_c: int, scale: tuple[int, int], norm: Norm, act: nn.Module):
        super().__init__()
        self.conv = _norm_act_conv(norm, act, in_c, nn.ConvTranspose2d(in_c, out_c, scale, scale, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class EncoderLevel(nn.Module):
    def __init__(self, c: int, growth: int, num_blocks: int, f: int, bottleneck: int, scale, norm, act):
        super().__init__()
        self.tfc_tdf = TFCTDF(c, c, num_blocks, f, bottleneck, norm, act)
        self.downscale = Downscale(c, c + growth, scale, norm, act)


class DecoderLevel(nn.Module):
    def __init__(self, c: int, growth: int, num_blocks: int, f: int, bottleneck: int, scale, norm, act):
        super().__init__()
        self.upscale = Upscale(c, c - growth, scale, norm, act)
        self.tfc_tdf = TFCTDF(2 * (c - growth), c - growth, num_blocks, f, bottleneck, norm, act)


class MDX23C(nn.Module):
    """TFC-TDF-v3 separation network with its STFT front end.

    Args:
        stems: number of output stems.
        n_fft, hop_length: STFT size and hop (Hann window, centred).
        dim_f: frequency bins kept (the top bins are dropped and zero-filled on output).
        audio_channels: 2 for stereo.
        num_subbands: frequency bands folded into channels before the first conv.
        num_scales: U-Net depth; ``scale`` is the (time, freq) down-sampling per level.
        num_blocks_per_scale: TFC-TDF blocks per level.
        num_channels, growth: width of the first level and its increase per level.
        bottleneck_factor: TDF hidden size is ``f // bottleneck_factor``.
        norm, act: MSST names (``InstanceNorm``, ``BatchNorm``, ``GroupNormN``; ``gelu``, ``relu``, ``eluA``).
        cmx: CMX reduction ``r`` in 1..4, or ``None`` (default) for MSST's network. With CMX the
            sub-band spectrogram is padded and folded ``[.., F, T] -> [.. * r*r, F/r, T/r]``;
            ``r > 1`` adds the buffer ``cmx_reduction`` to the state_dict.
    """

    def __init__(
        self,
        *,
        stems: int,
        n_fft: int,
        hop_length: int,
        dim_f: int,
        audio_channels: int = 2,
        num_subbands: int = 4,
        num_scales: int = 5,
        scale: tuple[int, int] = (2, 2),
        num_blocks_per_scale: int = 2,
        num_channels: int = 128,
        growth: int = 128,
        bottleneck_factor: int = 4,
        norm: str = "InstanceNorm",
        act: str = "gelu",
        cmx: int | None = None,
    ):
        super().__init__()
        cmx_ops.check_reduction(cmx)
        self.cmx = cmx
        if cmx is not None and cmx > 1:
            self.register_buffer(cmx_ops.KEY, torch.tensor(cmx))
        self.register_load_state_dict_pre_hook(_check_cmx_hook)
        self.num_stems = stems
        self.n_fft, self.hop_length, self.dim_f = n_fft, hop_length, dim_f
        self.audio_channels = audio_channels
        self.num_subbands = num_subbands
        self.scale, self.num_scales = tuple(scale), num_scales
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)

        norm_fn, act_fn = make_norm(norm), make_act(act)
        r = cmx or 1
        dim_c = num_subbands * audio_channels * 2 * r * r
        c, g, f = num_channels, growth, self._net_freq(dim_f)
        scale = tuple(scale)

        self.first_conv = nn.Conv2d(dim_c, c, 1, 1, 0, bias=False)
        self.encoder_blocks = nn.ModuleList()
        for _ in range(num_scales):
            self.encoder_blocks.append(EncoderLevel(c, g, num_blocks_per_scale, f, bottleneck_factor, scale, norm_fn, act_fn))
            f, c = f // scale[1], c + g
        self.bottleneck_block = TFCTDF(c, c, num_blocks_per_scale, f, bottleneck_factor, norm_fn, act_fn)
        self.decoder_blocks = nn.ModuleList()
        for _ in range(num_scales):
            f = f * scale[1]
            self.decoder_blocks.append(DecoderLevel(c, g, num_blocks_per_scale, f, bottleneck_factor, scale, norm_fn, act_fn))
            c -= g
        self.final_conv = nn.Sequential(
            nn.Conv2d(c + dim_c, c, 1, 1, 0, bias=False),
            act_fn,
            nn.Conv2d(c, stems * dim_c, 1, 1, 0, bias=False),
        )

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> "MDX23C":
        """Build from a validated MSST config (see :func:`stemforge.config.load_config`)."""
        m, a = cfg.model, cfg.audio
        return cls(
            stems=len(cfg.stems), n_fft=a.n_fft, hop_length=a.hop_length, dim_f=a.dim_f,
            audio_channels=a.num_channels, num_subbands=m.num_subbands, num_scales=m.num_scales,
            scale=m.scale, num_blocks_per_scale=m.num_blocks_per_scale, num_channels=m.num_channels,
            growth=m.growth, bottleneck_factor=m.bottleneck_factor, norm=m.norm, act=m.act,
            cmx=a.cmx_reduction if a.use_cmx else None,
        )

    @staticmethod
    def check_geometry(cfg: ModelConfig, where: str = "<config>") -> None:
        """CMX-aware geometry rules: a CMX model pads, so only ``r`` and ``dim_f`` are constrained.

        Non-CMX configs keep :func:`stemforge.config.parse_config`'s divisibility rules.
        """
        a = cfg.audio
        if not a.use_cmx:
            return
        try:
            cmx_ops.check_reduction(a.cmx_reduction)
        except StemforgeError as exc:
            raise StemforgeError(f"{where}: {exc}") from None
        if a.dim_f > a.n_fft // 2 + 1:
            raise StemforgeError(f"{where}: audio.dim_f={a.dim_f} exceeds n_fft//2+1={a.n_fft // 2 + 1}")
        m, r = cfg.model, a.cmx_reduction
        bands = cmx_ops.round_up(a.dim_f, m.num_subbands) // m.num_subbands
        rows = cmx_ops.round_up(bands, r * m.scale[1] ** m.num_scales) // r // m.scale[1] ** m.num_scales
        if rows // m.bottleneck_factor == 0:
            warnings.warn(
                f"{where}: with audio.cmx_reduction={r} the U-Net bottleneck has {rows} frequency rows, so its TDF "
                f"layers get {rows} // bottleneck_factor={m.bottleneck_factor} = 0 units; lower cmx_reduction or "
                "model.num_scales, or raise audio.dim_f", UserWarning, stacklevel=2)

    def check_state_dict(self, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
        """Raise a clear error when ``state`` comes from a model with another CMX reduction."""
        cmx_ops.check_state_reduction(state, self.cmx or 1, source)

    def _multiples(self) -> tuple[int, int]:
        """(freq, time) sizes the sub-band spectrogram is padded to multiples of (CMX only)."""
        r = self.cmx
        return r * self.scale[1] ** self.num_scales, r * self.scale[0] ** self.num_scales

    def _net_freq(self, dim_f: int) -> int:
        """Frequency bins per position row at the U-Net's first level."""
        if self.cmx is None:
            return dim_f // self.num_subbands
        bands = cmx_ops.round_up(dim_f, self.num_subbands) // self.num_subbands
        return cmx_ops.round_up(bands, self._multiples()[0]) // self.cmx

    # -- STFT front end (always fp32) -------------------------------------------------

    def stft(self, mix: torch.Tensor) -> torch.Tensor:
        """``mix: [B, C, S] -> spec: [B, C*2, dim_f, frames]`` (real/imag interleaved per channel)."""
        b, c, s = mix.shape
        z = torch.stft(
            mix.reshape(b * c, s), n_fft=self.n_fft, hop_length=self.hop_length,
            window=self.window, center=True, return_complex=True,
        )
        z = torch.view_as_real(z[:, : self.dim_f])  # [B*C, dim_f, frames, 2]
        return z.permute(0, 3, 1, 2).reshape(b, c * 2, self.dim_f, -1)

    def istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """``spec: [B, stems, C*2, dim_f, frames] -> [B, stems, C, length]``; missing bins are zero."""
        b, n, c2, f, t = spec.shape
        z = spec.reshape(b * n * c2 // 2, 2, f, t).permute(0, 2, 3, 1).contiguous()
        z = torch.view_as_complex(z)
        z = nn.functional.pad(z, (0, 0, 0, self.n_fft // 2 + 1 - f))
        wav = torch.istft(z, n_fft=self.n_fft, hop_length=self.hop_length, window=self.window, center=True, length=length)
        return wav.reshape(b, n, c2 // 2, length)

    # -- the network (may run under autocast) -------------------------------------------

    def net(self, spec: torch.Tensor) -> torch.Tensor:
        """``spec: [B, C*2, dim_f, frames] -> [B, stems, C*2, dim_f, frames]``."""
        b, _, f_in, t = spec.shape
        k = self.num_subbands
        if self.cmx is not None:
            spec = nn.functional.pad(spec, (0, 0, 0, cmx_ops.round_up(f_in, k) - f_in))
        x = _bands_to_channels(spec, k)  # [B, C*2*k, dim_f/k, T]
        band_size = x.shape[-2:]
        if self.cmx is not None:
            x = cmx_ops.space_to_depth(x, self.cmx, self._multiples())  # [B, C*2*k*r*r, F'/r, T'/r]
        mix = x
        first = x = self.first_conv(x)
        x = x.transpose(-1, -2)  # [B, c, T, F]: TDF linears act on frequency
        skips = []
        for level in self.encoder_blocks:
            x = level.tfc_tdf(x)
            skips.append(x)
            x = level.downscale(x)
        x = self.bottleneck_block(x)
        for level in self.decoder_blocks:
            x = level.upscale(x)
            x = level.tfc_tdf(torch.cat([x, skips.pop()], 1))
        x = x.transpose(-1, -2) * first  # multiplicative skip ("reduce artifacts")
        x = self.final_conv(torch.cat([mix, x], 1))
        if self.cmx is not None:
            x = cmx_ops.depth_to_space(x, self.cmx, band_size)
        x = _channels_to_bands(x, k)[..., :f_in, :]
        return x.reshape(b, self.num_stems, -1, f_in, t)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """``mix: [B, C, S] -> stems: [B, stems, C, S]`` (same as MSST's forward)."""
        return self.istft(self.net(self.stft(mix)), mix.shape[-1])


def _bands_to_channels(x: torch.Tensor, k: int) -> torch.Tensor:
    """``[B, C, F, T] -> [B, C*k, F/k, T]``: fold ``k`` frequency sub-bands into channels."""
    b, c, f, t = x.shape
    return x.reshape(b, c * k, f // k, t)


def _channels_to_bands(x: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse of :func:`_bands_to_channels`: ``[B, C*k, F, T] -> [B, C, F*k, T]``."""
    b, c, f, t = x.shape
    return x.reshape(b, c // k, f * k, t)


def _check_cmx_hook(module, state, prefix, *args) -> None:
    """``load_state_dict`` pre-hook: refuse weights trained with another CMX reduction, clearly."""
    module.check_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
