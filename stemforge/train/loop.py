"""The training loop: :func:`train` runs, or resumes, one experiment.

Per optimizer step: ``gradient_accumulation_steps`` micro-batches (forward with the STFT in fp32
and the network under autocast, L1 [+ STFT] loss, backward, DDP gradient averaging on the last
one), gradient clipping, optimizer and grad-scaler step, EMA update. Per epoch
(``training.num_steps`` steps): validation on rank 0 through the inference engine, the
ReduceLROnPlateau step on the mean SDR, best/last checkpoints and the resume state. A ``cosine``
schedule sets the LR before every optimizer step instead.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..checkpoint import load_weights, read_state_dict
from ..engine import resolve_device
from ..engine.allocator import keep_freed_memory
from ..engine.precision import autocast, resolve_precision
from ..errors import StemforgeError
from ..models import MDX23C
from . import distributed
from .checkpointing import RunFiles, atomic_save, load_resume, rng_state, save_weights, set_rng_state
from .config import TrainingConfig, TrainSetup, load_setup
from .data import SegmentDataset, StepBatches
from .ema import EMA
from .log import JsonlLog
from .loss import SeparationLoss
from .tracks import find_tracks
from .validate import Separation, random_segments, validate
from .widen import widen_state_dict


def train(
    config: str | Path,
    data: str | Path,
    results: str | Path,
    *,
    valid: str | Path | None = None,
    resume: bool = False,
    device: str = "auto",
    stop_after: int | None = None,
    init: str | Path | None = None,
    widen: bool = False,
    overrides: Sequence[str] = (),
) -> MDX23C:
    """Train the model of ``config`` on ``data``; write checkpoints and the log to ``results``.

    ``init``: weights to start a new run from (fine-tuning); with ``widen``, weights of a narrower
    network (smaller ``num_channels``/``growth``), embedded so that the run starts from the function they
    compute (:mod:`stemforge.train.widen`). ``overrides``: ``SECTION.KEY=VALUE``
    strings applied to the config (``--set``). ``stop_after``: return after that
    many optimizer steps without saving (as if killed there). Returns the trained model (raw
    weights, not EMA).
    """
    if init is not None and resume:
        raise StemforgeError("--init starts a new run from weights and --resume continues a run; pass one of them")
    if widen and init is None:
        raise StemforgeError("--widen widens the --init weights; pass --init CKPT too")
    setup = load_setup(config, overrides)
    keep_freed_memory()  # a CPU step re-faulted its activations on every forward and backward
    info, dev = distributed.init(resolve_device(device))
    try:
        trainer = Trainer(setup, Path(data), valid and Path(valid), Path(results), dev, info, resume,
                          init and Path(init), widen)
        trainer.run(stop_after)
        return trainer.model
    finally:
        distributed.shutdown(info)


class AmpForward(nn.Module):
    """``mix [B, C, S] -> [B, stems, C, S]`` as the engine runs it: STFT/iSTFT in fp32, the net under autocast."""

    def __init__(self, model: MDX23C, device: torch.device, dtype: torch.dtype):
        super().__init__()
        self.model, self.device, self.dtype = model, device, dtype

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        spec = self.model.stft(mix)
        with autocast(self.device, self.dtype):
            out = self.model.net(spec)
        return self.model.istft(out.float(), mix.shape[-1])


class Trainer:
    """Holds the model, optimizer, scaler, scheduler, EMA, data and the step counter of one run."""

    def __init__(self, setup: TrainSetup, data: Path, valid: Path | None, results: Path,
                 device: torch.device, info: distributed.Dist, resume: bool, init: Path | None = None,
                 widen: bool = False):
        self.setup, self.t, self.device, self.info = setup, setup.training, device, info
        self.files = RunFiles(results)
        self._prepare_results(resume)
        cfg, t = setup.model, setup.training
        self.stems, self.targets = cfg.instruments, cfg.stems
        self.train_tracks = find_tracks(data, self.stems, cfg.sample_rate, self.files.cache / "train")
        self.valid_tracks = find_tracks(valid, self.stems, cfg.sample_rate, self.files.cache / "valid") if valid else []
        self.dataset = SegmentDataset(
            self.train_tracks, self.stems, self.targets, chunk=cfg.audio.chunk_size,
            channels=cfg.audio.num_channels, augment=setup.augment, seed=t.seed, min_mean_abs=cfg.audio.min_mean_abs,
            sample_rate=cfg.audio.sample_rate,
        )
        torch.manual_seed(t.seed)
        self.model = MDX23C.from_config(cfg).to(device)
        if init is not None:  # before the EMA copies the model
            state = read_state_dict(init)
            if widen:
                state = widen_state_dict(state, self.model, f"--init '{init}'")
            load_weights(self.model, state, init, setup.path)
        self.dtype = amp_dtype(t, device)
        forward = AmpForward(self.model, device, self.dtype)
        self.forward = DistributedDataParallel(forward) if info.world > 1 else forward
        self.ema = EMA(self.model, t.ema_momentum) if t.ema_momentum > 0 else None
        self.optimizer = make_optimizer(self.model, t)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        self.scheduler = None
        if t.scheduler == "ReduceLROnPlateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, mode="max", factor=t.reduce_factor, patience=t.patience)
        sdr_weights = tuple(t.sdr_weights.get(s, 1.0) for s in self.targets) if t.sdr_weights else None
        self.loss_fn = SeparationLoss(t.loss_l1, t.loss_stft, t.stft_resolutions, sdr=t.loss_sdr,
                                      sdr_weights=sdr_weights).to(device)
        self.log = JsonlLog(self.files.log)
        self.step, self.best = 0, -math.inf
        if resume:
            self._load_resume()
        elif not self.valid_tracks and info.main:
            lost = "validation, LR schedule or best.ckpt" if self.scheduler is not None else "validation or best.ckpt"
            warnings.warn(f"no --valid data: no {lost}", UserWarning, stacklevel=2)

    # -- the loop ----------------------------------------------------------------------

    def run(self, stop_after: int | None = None) -> None:
        t = self.t
        while self.step < t.num_epochs * t.num_steps:
            epoch = self.step // t.num_steps
            end = (epoch + 1) * t.num_steps
            batches = self._batches(self.step, end)
            bar = tqdm(total=t.num_steps, initial=self.step - epoch * t.num_steps, unit="step",
                       desc=f"epoch {epoch + 1}/{t.num_epochs}", disable=not self.info.main, dynamic_ncols=True)
            with bar:
                while self.step < end:
                    loss = self._train_step(batches)
                    self.step += 1
                    self._log_step(epoch, loss, bar)
                    if stop_after is not None and self.step >= stop_after:
                        return
                    if t.save_every and self.step % t.save_every == 0 and self.step < end:
                        self._save()
            self._end_epoch(epoch)
            self._save()
        if t.fast_valid_segments and self.valid_tracks and self.info.main:
            self._validate(t.num_epochs - 1, full=True)

    def _batches(self, start: int, stop: int):
        sampler = StepBatches(start, stop, batch=self.t.batch_size, accum=self.t.gradient_accumulation_steps,
                              rank=self.info.rank, world=self.info.world)
        return iter(DataLoader(self.dataset, batch_sampler=sampler, num_workers=self.t.num_workers,
                               pin_memory=self.device.type == "cuda"))

    def _train_step(self, batches) -> float:
        """One optimizer step over ``gradient_accumulation_steps`` micro-batches; returns the mean loss."""
        accum = self.t.gradient_accumulation_steps
        total = torch.zeros((), device=self.device)
        for micro in range(accum):
            mix, target = (x.to(self.device, non_blocking=True) for x in next(batches))
            last = micro == accum - 1
            with contextlib.nullcontext() if last or self.info.world == 1 else self.forward.no_sync():
                loss = self.loss_fn(self.forward(mix), target) / accum
                self.scaler.scale(loss).backward()
            total += loss.detach()
        if self.t.scheduler == "cosine":
            lr = cosine_lr(self.step, self.t.num_epochs * self.t.num_steps, self.t.lr, self.t.lr_min)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        self.scaler.unscale_(self.optimizer)
        if self.t.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.t.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model, self.step)
        return float(distributed.mean(total, self.info))

    def _log_step(self, epoch: int, loss: float, bar: tqdm) -> None:
        if self.info.main:
            self.log.write(step=self.step, epoch=epoch, loss=loss, lr=self.optimizer.param_groups[0]["lr"])
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")

    # -- validation ---------------------------------------------------------------------

    def _end_epoch(self, epoch: int) -> None:
        """Validate on rank 0, keep the best weights, step the LR schedule on every rank."""
        if not self.valid_tracks:
            return
        score = math.nan
        if self.info.main:
            score = self._validate(epoch, full=not self.t.fast_valid_segments)
            if score > self.best:
                self.best = score
                save_weights(self._inference_weights(), self.files.best)
        score = distributed.broadcast(score, self.info, self.device)
        if self.scheduler is not None:
            self.scheduler.step(score)

    def _validate(self, epoch: int, full: bool) -> float:
        cfg, t = self.setup.model, self.t
        how = Separation(cfg.chunk_size, cfg.inference.num_overlap, cfg.inference.batch_size or 1, self.device, self.dtype)
        segments = None
        if not full:
            rng = np.random.default_rng([t.seed, 1, epoch])
            length = int(t.fast_valid_seconds * cfg.sample_rate)
            segments = random_segments(self.valid_tracks, t.fast_valid_segments, length, rng)
        model = self.ema.model if self.ema is not None else self.model
        per_stem, score = validate(model, self.valid_tracks, self.stems, self.targets, how,
                                   cfg.audio.num_channels, segments)
        self.model.train()
        self.log.write(kind="valid", step=self.step, epoch=epoch, sdr=per_stem, mean_sdr=score, full=full)
        tqdm.write(f"epoch {epoch + 1}: {'' if full else 'fast '}validation SDR {score:.3f} dB "
                   + " ".join(f"{k} {v:.2f}" for k, v in per_stem.items()))
        return score

    # -- checkpoints --------------------------------------------------------------------

    def _inference_weights(self) -> dict[str, torch.Tensor]:
        return (self.ema.model if self.ema is not None else self.model).state_dict()

    def _save(self) -> None:
        if self.info.main:
            save_weights(self._inference_weights(), self.files.last)
            atomic_save({
                "step": self.step,
                "best": self.best,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "rng": rng_state(),
            }, self.files.resume)
        distributed.barrier(self.info)

    def _load_resume(self) -> None:
        path = self.files.resume
        state = load_resume(path)
        self.model.check_state_dict(state["model"], f"resume state '{path}'")
        load_weights(self.model, state["model"], path, self.setup.path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        set_rng_state(state["rng"])
        self.step, self.best = state["step"], state["best"]
        if self.info.main:
            self.log.truncate_after(self.step)

    def _prepare_results(self, resume: bool) -> None:
        root = self.files.root
        if not resume and self.files.resume.exists():
            raise StemforgeError(f"'{root}' already holds a run; pass --resume to continue it or choose another --results")
        root.mkdir(parents=True, exist_ok=True)
        if self.info.main and self.setup.text:
            if resume and self.files.config.is_file() and self.files.config.read_text() != self.setup.text:
                warnings.warn(f"resuming with a config that differs from '{self.files.config}'", UserWarning, stacklevel=3)
            self.files.config.write_text(self.setup.text)


def cosine_lr(step: int, total: int, lr: float, lr_min: float) -> float:
    """The learning rate of optimizer step ``step`` (0-based) of ``total``: half a cosine from ``lr`` to
    ``lr_min``. A pure function of the step, so a resumed run (even one that ran another schedule
    before) continues on the same curve."""
    return lr_min + (lr - lr_min) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


def amp_dtype(t: TrainingConfig, device: torch.device) -> torch.dtype:
    """fp32 unless ``use_amp``; ``amp_dtype: auto`` is fp16 on CUDA, bf16 on CPUs with native bf16, else fp32."""
    if not t.use_amp:
        return torch.float32
    if t.amp_dtype == "auto":
        return resolve_precision("auto", device)
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[t.amp_dtype]


def make_optimizer(model: nn.Module, t: TrainingConfig) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if t.optimizer.lower() == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
