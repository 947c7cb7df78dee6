"""How the network runs: eager PyTorch, ``torch.compile`` (inductor), or ONNX Runtime.

A backend is a callable ``net(spec, dtype) -> out``: ``spec: [B, C*2, dim_f, frames]`` fp32 in,
``[B, stems, C*2, dim_f, frames]`` fp32 out, the network computed at ``dtype``. Only
``model.net`` changes hands; the STFT and iSTFT always run in PyTorch fp32.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import StemforgeError
from .batching import is_oom
from .precision import autocast

BACKENDS = ("eager", "compile", "onnx")


def cache_dir(*parts: str) -> Path:
    """``platformdirs.user_cache_dir('stemforge')/parts...`` (``STEMFORGE_CACHE`` overrides the root)."""
    root = os.environ.get("STEMFORGE_CACHE")
    if not root:
        import platformdirs

        root = platformdirs.user_cache_dir("stemforge")
    return Path(root, *parts)


class EagerNet:
    """``model.net`` in PyTorch, under autocast when ``dtype`` is not fp32."""

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.model, self.device = model, device

    def __call__(self, spec: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        with autocast(self.device, dtype):
            return self.model.net(spec).float()


class CompiledNet:
    """``torch.compile(model.net)`` with inductor's FX graph cache kept under the user cache dir.

    The first run on a machine compiles (minutes on 2 cores); later runs load the cached
    graph. Partial batches are zero-padded to the largest batch seen, so a track's last batch
    does not trigger a recompile for a new shape (unless padding runs out of memory).
    """

    def __init__(self, model: torch.nn.Module, device: torch.device, compiler: str = "inductor"):
        use_persistent_cache()
        self.device = device
        self.fn = torch.compile(model.net, backend=compiler, dynamic=False)
        self.size = 0

    def __call__(self, spec: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        n = spec.shape[0]
        self.size = max(self.size, n)
        with autocast(self.device, dtype):
            if n < self.size:
                try:
                    padded = torch.cat([spec, spec.new_zeros(self.size - n, *spec.shape[1:])])
                    return self.fn(padded)[:n].float()
                except Exception as exc:
                    if not is_oom(exc):
                        raise
                self.size = n  # the batch was cut after an out-of-memory error: stop padding to the old size
            return self.fn(spec).float()


def use_persistent_cache() -> Path:
    """Point inductor's caches at ``cache_dir('inductor')`` unless the user chose a directory."""
    path = Path(os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir("inductor"))))
    path.mkdir(parents=True, exist_ok=True)
    import torch._inductor.config as inductor

    inductor.fx_graph_cache = True
    return path


class OnnxNet:
    """The network exported to ONNX (see :func:`export_onnx`), run by ONNX Runtime. fp32 only.

    Providers: CUDA when the device is CUDA and onnxruntime-gpu is installed, else CPU, with
    ``threads`` intra-op threads (default: as many as torch uses).
    """

    def __init__(self, path: str | Path, device: torch.device, threads: int | None = None):
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.input = self.session.get_inputs()[0]
        self.device = device

    @property
    def frames(self) -> int | str:
        """The time axis length the network was exported for."""
        return self.input.shape[-1]

    def __call__(self, spec: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if dtype != torch.float32:
            raise StemforgeError("the onnx backend runs in fp32; use --precision fp32 or --backend eager")
        out = self.session.run(None, {self.input.name: spec.detach().cpu().numpy()})[0]
        return torch.from_numpy(out).to(spec.device)


def make_backend(name: str, model: torch.nn.Module, device: torch.device, onnx: str | Path | None = None,
                 chunk: int | None = None, threads: int | None = None):
    """Build backend ``name`` for ``model``; ``onnx``: a file from ``stemforge export-onnx``, else one
    exported on first use into the cache (keyed by the weights and ``chunk``). ``threads``: ONNX
    Runtime's intra-op threads (torch backends use the calling thread's torch setting)."""
    if name == "eager":
        return EagerNet(model, device)
    if name == "compile":
        return CompiledNet(model, device)
    if name == "onnx":
        if onnx is None:
            if chunk is None:
                raise ValueError("the onnx backend needs the chunk length to export the network")
            onnx = cached_onnx(model, chunk)
        return OnnxNet(onnx, device, threads)
    raise StemforgeError(f"unknown backend '{name}'; use one of {', '.join(BACKENDS)}")


# -- export ---------------------------------------------------------------------------------------


class _Net(torch.nn.Module):
    """``model.net`` as a module's forward, for the exporter."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.model.net(spec)


def example_spec(model: torch.nn.Module, chunk: int, batch: int = 2) -> torch.Tensor:
    """A network input ``[batch, C*2, dim_f, frames]`` for chunks of ``chunk`` samples."""
    device = next(model.parameters()).device
    with torch.inference_mode():
        return model.stft(torch.zeros(batch, model.audio_channels, chunk, device=device)).clone()


def export_onnx(model: torch.nn.Module, chunk: int, path: str | Path, opset: int = 17) -> Path:
    """Export ``model.net`` for chunks of ``chunk`` samples with a dynamic batch axis; written atomically.

    Uses the TorchScript exporter (``dynamo=False``): it needs no onnxscript and exports
    InstanceNorm as one ``InstanceNormalization`` node.
    """
    from ..audio import atomic_write

    model = model.eval()
    spec = example_spec(model, chunk)
    path = Path(path)
    with atomic_write(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Net(model), (spec,), str(tmp), dynamo=False, opset_version=opset,
                          input_names=["spec"], output_names=["stems"],
                          dynamic_axes={"spec": {0: "batch"}, "stems": {0: "batch"}})
    return path


def verify_onnx(model: torch.nn.Module, chunk: int, path: str | Path, batches: tuple[int, ...] = (1, 3)) -> float:
    """Max abs difference between ONNX Runtime and eager fp32 ``model.net`` over ``batches``."""
    net = OnnxNet(path, torch.device("cpu"))
    worst = 0.0
    torch.manual_seed(0)
    for b in batches:
        with torch.inference_mode():
            spec = model.stft(0.1 * torch.randn(b, model.audio_channels, chunk))
            ref = model.net(spec)
        worst = max(worst, float((net(spec, torch.float32) - ref).abs().max()))
    return worst


def fingerprint(model: torch.nn.Module, chunk: int) -> str:
    """Hash of the weights, the architecture's repr and ``chunk``: the ONNX cache key."""
    h = hashlib.sha256(f"{model!r}|{chunk}|{torch.__version__}".encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(np.ascontiguousarray(t.detach().cpu().float().numpy()).tobytes())
    return h.hexdigest()[:24]


def cached_onnx(model: torch.nn.Module, chunk: int) -> Path:
    """Path of ``model.net`` exported to ONNX in the cache, exporting it on first use."""
    path = cache_dir("onnx", f"{fingerprint(model, chunk)}.onnx")
    if not path.exists():
        export_onnx(model, chunk, path)
    return path


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise StemforgeError("the onnx backend needs onnxruntime: pip install 'stemforge[onnx]'") from None
    return onnxruntime
