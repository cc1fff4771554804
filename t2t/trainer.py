"""The Trainer: token batches, label-smoothed loss, mixed precision, accumulation, validation,
checkpoints with exact resume, early stopping, and DistributedDataParallel.

The loss of an update is summed over target tokens and divided by the update's target tokens
across all workers and accumulated batches, so N workers taking N batches each compute the same
update as one process taking all of them.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import logging
import math
import random
import shutil
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from t2t import checkpoint as ckpt
from t2t import distributed
from t2t import dataset
from t2t.assembly import Assembly
from t2t.data import Problems, batch_indices, padding_ratio
from t2t.device import reduced_dtype, resolve_device
from t2t.errors import T2TError, TrainingError
from t2t.loss import sequence_loss
from t2t.metric import improves
from t2t.pipeline import Pipeline
from t2t.recipe import Recipe, recipe_from_text
from t2t.registry import get_registry
from t2t.schedule import Schedule

log = logging.getLogger("t2t")

RESETS = ("optimizer", "scheduler", "dataloader", "meters")
# train keys whose change on resume needs an explicit reset of the named part
_NEEDS_RESET = {"lr": "scheduler", "schedule": "scheduler", "warmup": "scheduler", "min_lr": "scheduler",
                "optimizer": "optimizer", "betas": "optimizer", "weight_decay": "optimizer",
                "max_tokens": "dataloader", "max_sentences": "dataloader", "update_freq": "dataloader"}


@dataclass
class RunInfo:
    """What training-event hooks see of the run."""

    directory: Path
    recipe: Recipe
    rank: int = 0
    world_size: int = 1
    resumed: bool = False
    step: int = 0
    total_steps: int | None = None


LOG_FORMAT, TIME_FORMAT = "%(asctime)s t2t: %(message)s", "%Y-%m-%d %H:%M:%S"


@contextlib.contextmanager
def train_log(path: Path | None):
    """While a run trains, what t2t logs (at the logger's level: `--quiet` keeps warnings) and every
    Python warning also go to `path` (appended to on resume), each line with its time."""
    if path is None:
        yield
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT, TIME_FORMAT))
    logger, shown = logging.getLogger("t2t"), warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        shown(message, category, filename, lineno, file, line)
        handler.emit(logging.LogRecord("t2t", logging.WARNING, filename, lineno,
                                       f"warning: {category.__name__}: {message} ({filename}:{lineno})", None, None))

    logger.addHandler(handler)
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown
        logger.removeHandler(handler)
        handler.close()


def train(recipe: Recipe, data_dir=None, device: str | None = None, resume: bool = False,
          reset: Sequence[str] = (), overwrite: bool = False, registry=None) -> dict:
    """Train a recipe; returns a summary (status, steps, best score, checkpoint paths)."""
    return Trainer(recipe, registry, data_dir, device, resume, reset, overwrite).fit()


class Trainer:
    def __init__(self, recipe: Recipe, registry=None, data_dir=None, device: str | None = None,
                 resume: bool = False, reset: Sequence[str] = (), overwrite: bool = False):
        registry = get_registry(registry)
        bad = [r for r in reset if r not in RESETS]
        if bad:
            raise T2TError(f"--reset {','.join(bad)}: unknown; allowed: {', '.join(RESETS)}")
        self.recipe, self.registry, self.data_dir = recipe, registry, data_dir
        self.opts = recipe.train
        self.seed = recipe.seed if self.opts.seed is None else self.opts.seed   # weights and batch order
        self.resume, self.reset, self.overwrite = resume, set(reset), overwrite
        self.dist = distributed.from_environment()
        device = resolve_device(device or self.opts.device)
        if device.type == "cuda" and self.dist.enabled:
            device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(device)
        self.device = device
        self.run_dir = Path(recipe.output_dir)
        self.info = RunInfo(self.run_dir, recipe, self.dist.rank, self.dist.world_size, resume)
        self.hook = registry.hook
        # training state (all of it goes into checkpoints)
        self.step = 0
        self.epoch = 1
        self.pos = 0                      # global batches of this epoch already consumed
        self.best: float | None = None
        self.best_step: int | None = None
        self.bad_validations = 0
        self.nonfinite = 0
        self.trained_s = 0.0               # training time of earlier sessions of this run (resume)
        self.trained_nothing = False       # resumed a run that had already stopped
        self.last_results: dict = {}
        self.lr = 0.0                      # the rate of the latest update
        self._stop_signal = False
        self._planned: tuple[int, list] | None = None      # (epoch, its batches)

    # ------------------------------------------------------------------ set-up
    def _prepare_directory(self) -> dict | None:
        """Check the run directory against --resume/--overwrite; return the checkpoint to resume."""
        ckdir = self.run_dir / "checkpoints"
        has = ckdir.exists() and any(ckdir.glob("step_*.pt"))
        if self.resume:
            if not has:
                raise TrainingError(f"{self.run_dir}: nothing to resume (no checkpoints); drop --resume to start")
            ckpt.clean_temporaries(self.run_dir)
            return ckpt.load(ckpt.resolve(self.run_dir, "last"))
        if has and not self.overwrite:
            raise TrainingError(f"{self.run_dir} already holds checkpoints; continue it with --resume, start over "
                                f"with --overwrite, or set output_dir")
        if self.dist.main:
            if has:
                shutil.rmtree(ckdir)
                (self.run_dir / "log.jsonl").unlink(missing_ok=True)
            (self.run_dir / "tokenizers.pt").unlink(missing_ok=True)      # a run killed before its first checkpoint
            self.run_dir.mkdir(parents=True, exist_ok=True)
        return None

    def _check_resume_recipe(self, saved_text: str) -> None:
        saved = recipe_from_text(saved_text, self.registry, where="checkpoint recipe")
        now, then = self.recipe.to_dict(), saved.to_dict()
        for d in (now, then):               # where prepared data is kept changes nothing it holds
            if isinstance(d.get("data"), dict):
                d["data"].pop("prepared_dir", None)
        for section in ("task", "data", "tokenizer", "model"):
            if now[section] != then[section]:
                diff = _diff(then[section], now[section], section)
                raise TrainingError(f"cannot resume: the recipe's {section} changed since the checkpoint ({diff}); "
                                    f"restore it, or train into a new output_dir")
        needed = {}
        for key, part in _NEEDS_RESET.items():
            if now["train"][key] != then["train"][key] and part not in self.reset:
                needed.setdefault(part, []).append(f"train.{key} {then['train'][key]} -> {now['train'][key]}")
        if needed:
            parts = ",".join(sorted(needed))
            raise TrainingError(f"the recipe changed since the checkpoint ({'; '.join(sum(needed.values(), []))}); "
                                f"resume with --reset {parts} to apply it, or restore the old values")

    def _build(self, resumed: dict | None):
        self._prepare_data(resumed)
        r, model, spec = self.recipe, self.model, self.model.spec
        if self.train_data.problems:
            log.warning(f"training data: {self.train_data.problems}")
        validate = self.opts.validation and "valid" in self.task.splits
        self.task.problems = Problems(r.data.on_error)
        self.valid_ex = self.task.examples("valid") if validate else []
        if self.task.problems.count:
            log.warning(f"validation data: {self.task.problems.summary()}")
        self.valid_data = (dataset.encode_in_memory(self.valid_ex, self.pipe.encoder(*self.limits, "truncate"))
                           if self.valid_ex else None)
        log.info(f"model {r.model.arch}: {model.num_parameters():,} parameters; vocabulary "
                 f"{spec.src_vocab or 'features'} -> {spec.tgt_vocab}; {len(self.train_data)} training examples; "
                 f"device {self.device}")

    def _prepare_data(self, resumed: dict | None) -> None:
        """Task, tokenizers, model, and the prepared training split (built here or opened)."""
        parts = Assembly(self.recipe, self.registry, self.data_dir)
        self.task, self.store = parts.task, parts.store
        if resumed is not None:
            self._check_resume_recipe(resumed["recipe"])
            self.task.load_state_dict(resumed.get("task_state", {}))
            states = resumed["tokenizers"]
        else:
            states = self._shared_tokenizers(parts)
        parts.set_tokenizers(states)
        model = parts.model(fresh=resumed is None)
        model.to(self.device)
        model.checkpoint_layers = self.opts.checkpoint_activations
        self.pipe = Pipeline.from_parts(parts, model, self.device)
        self.model = model
        self.limits = parts.limits(model)
        # every node's first worker prepares the training split (or finds it prepared); the others open it
        self.train_data = parts.training_split(self.limits, build=self.dist.local_rank == 0, fresh=resumed is None)
        counts = self.train_data.counts
        if counts["filtered"] or counts["truncated"] or counts["empty"]:
            log.info(f"training data: {len(self.train_data)} examples kept; {counts['filtered']} over the length "
                     f"limits filtered, {counts['truncated']} truncated, {counts['empty']} empty after tokenization")
        if not len(self.train_data):
            raise TrainingError("no training examples are left after tokenization and length filtering")

    def _shared_tokenizers(self, parts: Assembly) -> dict:
        """The tokenizer states: rank 0 makes them (`Assembly.tokenizer_states`) and saves them with
        the run; the other workers receive them."""
        states = None
        if self.dist.main:
            states = parts.tokenizer_states()
            ckpt.save(self.run_dir / "tokenizers.pt", {"tokenizers": states})
        return distributed.broadcast_setup(states)

    def _build_optimizer(self):
        o = self.opts
        decay = [p for p in self.model.parameters() if p.requires_grad and p.dim() >= 2]
        rest = [p for p in self.model.parameters() if p.requires_grad and p.dim() < 2]
        groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": rest, "weight_decay": 0.0}]
        if o.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=o.lr, momentum=0.9)
        cls = torch.optim.AdamW if o.optimizer == "adamw" else torch.optim.Adam
        try:                       # the fused kernel is ~3x faster than the per-tensor loop on CPU
            return cls(groups, lr=o.lr, betas=tuple(o.betas), eps=1e-8, fused=True)
        except (RuntimeError, TypeError):
            return cls(groups, lr=o.lr, betas=tuple(o.betas), eps=1e-8)

    def _batches(self, epoch: int) -> list[np.ndarray]:
        """This epoch's batches (example indices), the same on every worker. Kept for the epoch:
        set-up counts epoch 1's batches and the loop then takes them (seconds on millions of pairs)."""
        if self._planned is None or self._planned[0] != epoch:
            o = self.opts
            batches = batch_indices(self.model.batch_lengths(self.train_data.lengths), o.max_tokens, o.max_sentences,
                                    shuffle=True, seed=self.seed * 1_000_003 + epoch)
            world = self.dist.world_size
            self._planned = (epoch, batches[: len(batches) - len(batches) % world] if world > 1 else batches)
        return self._planned[1]

    def _restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        ts = state["train_state"]
        if "optimizer" not in self.reset:
            self.optimizer.load_state_dict(ts["optimizer"])
        if "scheduler" not in self.reset:
            self.schedule.load_state_dict(ts["schedule"])
        if ts.get("scaler"):
            self.scaler.load_state_dict(ts["scaler"])
        self.step = ts["step"]
        self.epoch, self.pos = (ts["epoch"], ts["pos"]) if "dataloader" not in self.reset else (ts["epoch"] + 1, 0)
        if "meters" not in self.reset:
            self.best, self.best_step, self.bad_validations = ts["best"], ts["best_step"], ts["bad_validations"]
            self.nonfinite = ts["nonfinite"]
        self.trained_s = ts.get("trained_s", 0.0)
        rngs = ts["rng"]
        ckpt.restore_rng_state(rngs[self.dist.rank] if self.dist.rank < len(rngs) else rngs[0])
        log.info(f"resumed from step {self.step} (epoch {self.epoch}, batch {self.pos})")

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict:
        o = self.opts
        started = time.time()
        if o.threads:
            torch.set_num_threads(o.threads)
        random.seed(self.seed + self.dist.rank)
        np.random.seed(self.seed + self.dist.rank)
        torch.manual_seed(self.seed + self.dist.rank)
        distributed.init(self.dist, self.device, o.dist_timeout)
        resumed = self._prepare_directory() if self.dist.main else None
        distributed.barrier()
        with train_log(self.run_dir / "train.log" if self.dist.main else None), self._loggers():
            return self._fit(resumed, started)

    @contextlib.contextmanager
    def _loggers(self):
        """The recipe's loggers (and TensorBoard's under `train.tensorboard`), made on the first
        worker and registered for this run's events."""
        wanted = [(spec.name, spec.options) for spec in self.recipe.loggers]
        if self.opts.tensorboard and all(name != "tensorboard" for name, _ in wanted):
            wanted.append(("tensorboard", None))
        made = [self.registry.get("loggers", name)(options) for name, options in wanted] if self.dist.main else []
        names = [f"logger:{name}:{id(obj)}" for (name, _), obj in zip(wanted, made)]
        for obj, name in zip(made, names):
            self.registry.pm.register(obj, name=name)
        try:
            yield
        finally:
            for obj, name in zip(made, names):
                self.registry.pm.unregister(name=name)
                obj.close()

    def _fit(self, resumed: dict | None, started: float) -> dict:
        o = self.opts
        if not self.dist.main and self.resume:
            resumed = ckpt.load(ckpt.resolve(self.run_dir, "last"))
        self._build(resumed)
        if self.dist.main:
            (self.run_dir / "recipe.yaml").write_text(self.recipe.to_yaml(), encoding="utf-8")
            (self.run_dir / "plugins.json").write_text(json.dumps(self.registry.versions(), indent=1), encoding="utf-8")
        self.amp = reduced_dtype(o.precision, self.device, "train.precision")
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        self.optimizer = self._build_optimizer()
        per_epoch = math.ceil(len(self._batches(1)) / (self.dist.world_size * o.update_freq))
        self.total_steps = o.max_steps or per_epoch * o.max_epochs
        self.info.total_steps = self.total_steps
        self.schedule = Schedule(o, self.total_steps)
        if resumed is not None:
            self._restore(resumed)
            del resumed
        self.info.step = self.step
        forward = torch.compile(self.model) if o.compile else self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel
            forward = DistributedDataParallel(forward, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.forward = forward
        self.session_start = time.time()
        self.hook.t2t_run_start(run=self.info)
        status = "finished"
        previous = signal.getsignal(signal.SIGINT)
        if self.dist.main:
            with contextlib.suppress(ValueError):      # not in the main thread: keep the default
                signal.signal(signal.SIGINT, self._on_signal)
        try:
            status = self._loop()
        finally:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGINT, previous)
        if self.dist.main and (o.average_best or o.average_last) and status != "interrupted" \
                and not self.trained_nothing:
            paths = (ckpt.best_checkpoints(self.run_dir, o.average_best) if o.average_best
                     else ckpt.last_checkpoints(self.run_dir, o.average_last))
            averaged = ckpt.average_run(self.run_dir, paths)
            if averaged:
                self._validate_average(averaged, "best" if o.average_best else "last")
        index = ckpt.read_index(self.run_dir) if self.dist.main else {}
        average = index.get("average") or {}
        summary = {"status": status, "step": self.step, "epoch": self.epoch, "best": self.best,
                   "best_step": self.best_step, "metric": self._metric_name(), "time_s": round(time.time() - started, 1),
                   "run_dir": str(self.run_dir), "last_checkpoint": index.get("last"),
                   "best_checkpoint": index.get("best"), "average_checkpoint": average.get("name") if average.get("used", True) else None,
                   "last_validation": self.last_results}
        self.hook.t2t_run_end(run=self.info, summary=summary)
        distributed.barrier()
        return summary

    def _validate_average(self, averaged: dict, which: str) -> None:
        """Validate the averaged weights as the checkpoints were validated and keep the average as
        the run's best only where it scores no worse than the best checkpoint (without validation,
        the average stands for the run)."""
        n = len(averaged["from"])
        said = (f"averaged the {f'{n} best' if which == 'best' else f'last {n}'} checkpoints "
                f"({', '.join(averaged['from'])}) into {averaged['name']}")
        if self.valid_data is None:
            ckpt.score_average(self.run_dir, None)
            log.info(said)
            return
        final = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(ckpt.load(self.run_dir / "checkpoints" / averaged["name"])["model"])
        try:
            results = self.validate()
        finally:
            self.model.load_state_dict(final)
        name = self._metric_name()
        avg = ckpt.score_average(self.run_dir, results.get(name))
        if avg["score"] is not None and avg["best_score"] is not None:
            said += f": validation {name} {avg['score']:.4g}, best checkpoint {avg['best']} {avg['best_score']:.4g}"
        if avg["used"]:
            log.info(said)
        else:
            log.warning(said + f"; the average is worse, so evaluation and generation use {avg['best']} "
                        "(average only checkpoints from late in training: fewer, or a later validate_every)")

    def _elapsed(self) -> float:
        """Seconds of training in this run, earlier sessions included (the same on every worker)."""
        return distributed.broadcast(self.trained_s + time.time() - self.session_start, self.device)

    def _on_signal(self, signum, frame):
        if self._stop_signal:                        # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self._stop_signal = True
        log.warning("interrupt: finishing this update, saving a checkpoint, then stopping (Ctrl-C again to abort)")

    def _loop(self) -> str:
        o = self.opts
        per_update = self.dist.world_size * o.update_freq
        window = {"loss": 0.0, "nll": 0.0, "tokens": 0, "sentences": 0, "time": time.time(), "gnorm": 0.0, "n": 0}
        validated_at = self.step if self.resume else -1
        done = self._finished_before()
        if done:
            log.warning(f"{self.run_dir}: the run had already stopped ({done[1]}); nothing to train. Raise that "
                        f"limit to train on, or start over with --overwrite")
            self.trained_nothing = True
            return done[0]
        while True:
            if self.epoch > o.max_epochs:
                status = "finished"
                break
            batches = self._batches(self.epoch)
            if self.pos == 0:
                log.info(f"epoch {self.epoch}: {len(batches)} batches, padding "
                         f"{100 * padding_ratio(batches, self.train_data.lengths):.1f}%")
            stop = None
            while self.pos < len(batches):
                chunk = batches[self.pos: self.pos + per_update]
                mine = [b for j, b in enumerate(chunk) if j % self.dist.world_size == self.dist.rank]
                before = self.step
                try:
                    self._update(mine, window)
                except RuntimeError as e:                  # e.g. DDP's gradient all-reduce lost a peer
                    if self.dist.enabled and distributed.communication_error(e):
                        raise distributed.stopped("an update", e) from None
                    raise
                self.pos += len(chunk)
                if self.step == before:                    # a skipped (non-finite) update
                    if self._stop_signal:
                        stop = "interrupted"
                        break
                    continue
                if self.step % o.log_every == 0:
                    self._log(window)
                if o.validate_every and self.step % o.validate_every == 0:
                    stop = self._validate_and_save()
                    validated_at = self.step
                if stop is None and o.max_steps and self.step >= o.max_steps:
                    stop = "max_steps"
                if stop is None and o.max_time is not None and self._elapsed() >= 60 * o.max_time:
                    stop = "max_time"
                if stop is None and self._stop_signal:
                    stop = "interrupted"
                if stop:
                    break
            if stop is None:
                self.epoch, self.pos = self.epoch + 1, 0
                if not o.validate_every:
                    stop = self._validate_and_save()
                    validated_at = self.step
            if stop:
                status = stop
                break
        if status == "interrupted":
            self._save(results=None)
        elif validated_at != self.step:
            self._validate_and_save()
        return status

    def _finished_before(self) -> tuple[str, str] | None:
        """(status, why) where a resumed run has nothing left to train, else None: a finished run
        resumed must not take one more update each time."""
        o = self.opts
        if not self.resume:
            return None
        if o.max_steps and self.step >= o.max_steps:
            return "max_steps", f"train.max_steps {o.max_steps} reached at step {self.step}"
        if self.epoch > o.max_epochs:
            return "finished", f"train.max_epochs {o.max_epochs} done at step {self.step}"
        if o.max_time is not None and self.trained_s >= 60 * o.max_time:
            return "max_time", f"train.max_time {o.max_time:g} min spent at step {self.step}"
        if o.patience and self.bad_validations >= o.patience:
            return "early_stop", f"train.patience {o.patience} ran out at step {self.step}"
        return None

    def _update(self, batches: list[np.ndarray], window: dict) -> None:
        o = self.opts
        local_tokens = sum(self.train_data.target_tokens(b) for b in batches)
        total_tokens, = distributed.all_sum([float(local_tokens)], self.device)
        scale = self.dist.world_size / max(total_tokens, 1.0)     # DDP averages over workers; undo that
        self.model.train()
        while True:
            try:
                loss_sum, nll_sum = self._accumulate(batches, scale)
                break
            except torch.OutOfMemoryError:
                self.optimizer.zero_grad(set_to_none=True)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if self.dist.enabled or all(len(b) == 1 for b in batches):
                    raise TrainingError(f"step {self.step + 1}: out of {self.device.type} memory even with "
                                        f"{'one example per batch' if not self.dist.enabled else 'several workers'}; "
                                        f"lower train.max_tokens (now {o.max_tokens})") from None
                batches = [half for b in batches for half in ((b[: len(b) // 2], b[len(b) // 2:]) if len(b) > 1 else (b,))]
                log.warning(f"step {self.step + 1}: out of {self.device.type} memory; retrying the update in "
                            f"{len(batches)} smaller batches (consider lowering train.max_tokens)")
        self._step(loss_sum, nll_sum, local_tokens, sum(len(b) for b in batches), window)

    def _accumulate(self, batches: list[np.ndarray], scale: float) -> tuple[float, float]:
        """Forward and backward over this worker's batches of one update; returns the loss sums."""
        o, sp = self.opts, self.pipe.specials
        loss_sum = nll_sum = 0.0
        for i, b in enumerate(batches):
            batch = self.train_data.collate(b, sp.pad, sp.bos, sp.eos).to(self.device)
            batch.src = self.task.augment(batch.src, batch.src_lengths)
            sync = contextlib.nullcontext()
            if self.dist.enabled and i < len(batches) - 1:
                sync = self.forward.no_sync()
            with sync, torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
                loss, nll = sequence_loss(self.forward, self.model, batch, o.label_smoothing, sp.pad,
                                          auxiliary=True)
            self.scaler.scale(loss * scale).backward()
            loss_sum += float(loss.detach())
            nll_sum += float(nll.detach())
        return loss_sum, nll_sum

    def _step(self, loss_sum: float, nll_sum: float, tokens: int, sentences: int, window: dict) -> None:
        """Clip, skip a non-finite update, or apply it."""
        o = self.opts
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        gnorm = torch.nn.utils.clip_grad_norm_(params, o.clip_norm if o.clip_norm > 0 else float("inf"))
        bad, = distributed.all_sum([float(not (math.isfinite(loss_sum) and torch.isfinite(gnorm)))], self.device)
        if bad and self.amp != torch.float16:
            self.optimizer.zero_grad(set_to_none=True)
            self.nonfinite += 1
            log.warning(f"step {self.step + 1}: non-finite loss or gradient; update skipped "
                        f"({self.nonfinite} of at most {o.max_nonfinite})")
            if self.nonfinite > o.max_nonfinite:
                raise TrainingError(f"{self.nonfinite} updates had non-finite loss or gradients (limit "
                                    f"train.max_nonfinite = {o.max_nonfinite}); lower train.lr, use fp32, or check "
                                    f"the data. The last good checkpoint is in {self.run_dir / 'checkpoints'}")
            return
        spent = self._elapsed() / (60 * o.max_time) if o.max_time else 0.0
        lr = self.lr = self.schedule.lr(self.step + 1, spent)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.info.step = self.step
        window["loss"] += loss_sum
        window["nll"] += nll_sum
        window["tokens"] += tokens
        window["sentences"] += sentences
        window["gnorm"] += float(gnorm)
        window["n"] += 1

    def _log(self, window: dict) -> None:
        loss, nll, tokens, sentences = distributed.all_sum(
            [window["loss"], window["nll"], float(window["tokens"]), float(window["sentences"])], self.device)
        elapsed = max(time.time() - window["time"], 1e-9)
        logs = {"epoch": self.epoch, "loss": loss / max(tokens, 1), "ppl": math.exp(min(nll / max(tokens, 1), 50)),
                "lr": self.lr, "gnorm": window["gnorm"] / max(window["n"], 1),
                "tokens_per_s": tokens / elapsed, "sentences_per_s": sentences / elapsed,
                "total_steps": self.total_steps}
        if self.dist.main:
            self.hook.t2t_step_end(run=self.info, step=self.step, logs=logs)
        trim_heap()                 # before the next window starts: its time is not training time
        window.update(loss=0.0, nll=0.0, tokens=0, sentences=0, time=time.time(), gnorm=0.0, n=0)

    # ------------------------------------------------------------------ validation and checkpoints
    def _metric_name(self) -> str:
        if self.opts.valid_metric:
            return self.opts.valid_metric
        return self.recipe.metrics[0].name if self.recipe.metrics and self.opts.valid_max_sentences else "loss"

    def _higher_is_better(self, name: str) -> bool:
        if name in ("loss", "ppl"):
            return False
        return self.registry.get("metrics", name).higher_is_better

    def _validate_and_save(self) -> str | None:
        """Validate (rank 0), update best/patience/plateau, save; 'early_stop' when patience ran out.
        Without validation data, only save."""
        if self.valid_data is None:
            self._save(None)
            trim_heap()
            return None
        results = self.validate() if self.dist.main else None
        results = distributed.broadcast(results, self.device)
        self.last_results = results
        name = self._metric_name()
        value, higher = results.get(name), self._higher_is_better(name)
        if value is not None:
            self.schedule.validated(value, higher)
            if improves(value, self.best, higher):
                self.best, self.best_step, self.bad_validations = value, self.step, 0
            else:
                self.bad_validations += 1
        if self.dist.main:
            self.hook.t2t_validation_end(run=self.info, step=self.step, results=results)
            log.info(f"step {self.step} validation: " + ", ".join(f"{k} {v:.4g}" for k, v in results.items()
                                                                if isinstance(v, float)))
        self._save(results)
        trim_heap()
        if self.opts.patience and self.bad_validations >= self.opts.patience:
            log.info(f"early stop: {name} did not improve for {self.bad_validations} validations "
                     f"(best {self.best:.4g} at step {self.best_step})")
            return "early_stop"
        return None

    @torch.no_grad()
    def validate(self) -> dict:
        """Loss and perplexity over the validation split; metrics on up to valid_max_sentences,
        decoded with beam valid_beam and the recipe's other decode settings."""
        o = self.opts
        if self.valid_data is None:
            return {}
        self.model.eval()
        sp = self.pipe.specials
        loss = nll = tokens = 0.0
        for b in batch_indices(self.model.batch_lengths(self.valid_data.lengths), o.max_tokens, o.max_sentences):
            batch = self.valid_data.collate(b, sp.pad, sp.bos, sp.eos).to(self.device)
            with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
                part, n = sequence_loss(self.model, self.model, batch, o.label_smoothing, sp.pad)
            loss, nll, tokens = loss + float(part), nll + float(n), tokens + batch.target_tokens
        results = {"loss": loss / tokens, "ppl": math.exp(min(nll / tokens, 50))}
        count = min(o.valid_max_sentences, len(self.valid_ex))
        if count and self.recipe.metrics:
            metrics = [self.registry.get("metrics", m.name)(m.options) for m in self.recipe.metrics]
            dec = dataclasses.replace(self.recipe.decode, beam=o.valid_beam, nbest=1, sampling=False, mbr=0,
                                      max_sentences=o.max_sentences_decode)
            for start in range(0, count, o.max_sentences_decode):
                chunk = self.valid_ex[start: min(count, start + o.max_sentences_decode)]
                with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
                    hyps = self.pipe.search([ex.source for ex in chunk], dec)
                texts = [self.pipe.detokenize(h[0].tokens) for h in hyps]
                for m in metrics:
                    m.update(texts, [ex.refs for ex in chunk])
            for m in metrics:
                results[m.name] = m.result().value
        return results

    def _save(self, results: dict | None) -> None:
        rngs = [ckpt.plain_rng_state()]
        if self.dist.enabled:
            import torch.distributed as dist
            gathered = [None] * self.dist.world_size if self.dist.main else None
            dist.gather_object(rngs[0], gathered, dst=0)
            rngs = gathered
        if not self.dist.main:
            return
        name = f"step_{self.step:08d}.pt"
        path = self.run_dir / "checkpoints" / name
        train_state = {"step": self.step, "epoch": self.epoch, "pos": self.pos,
                       "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                       "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                       "best": self.best, "best_step": self.best_step, "bad_validations": self.bad_validations,
                       "nonfinite": self.nonfinite, "rng": rngs,
                       "trained_s": self.trained_s + time.time() - self.session_start}
        payload = {**self.pipe.payload(), "train_state": train_state, "validation": results or {}}
        ckpt.save(path, payload)
        self._update_index(name, results)
        self.hook.t2t_checkpoint_saved(run=self.info, step=self.step, path=path)

    def _update_index(self, name: str, results: dict | None) -> None:
        """Record the checkpoint; keep the last `keep_last` and the best `keep_best`, delete the rest."""
        o = self.opts
        index = ckpt.read_index(self.run_dir)
        metric = self._metric_name()
        entries = [e for e in index["checkpoints"] if e["name"] != name]
        entries.append({"name": name, "step": self.step, "metric": metric,
                        "score": (results or {}).get(metric)})
        higher = self._higher_is_better(metric)
        ranked = ckpt.rank(entries, higher)
        keep = {e["name"] for e in sorted(entries, key=lambda e: e["step"])[-max(o.keep_last, o.average_last):]}
        keep |= {e["name"] for e in ranked[: max(o.keep_best, o.average_best)]}
        best = ranked[0]["name"] if ranked else name
        keep.add(best)
        index = {"checkpoints": [e for e in entries if e["name"] in keep], "best": best, "last": name,
                 "metric": metric, "higher_is_better": higher}
        ckpt.write_index(self.run_dir, index)
        for e in entries:
            if e["name"] not in keep:
                (self.run_dir / "checkpoints" / e["name"]).unlink(missing_ok=True)


_malloc_trim = None


def trim_heap() -> None:
    """Return freed heap pages to the OS. glibc keeps them, and with batches of varying shapes a
    long CPU run's resident memory grows by gigabytes of free but fragmented heap (seen: 4.6 GB
    resident, 1.6 GB after trimming, in a Multi30k run)."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):           # not glibc: nothing to do
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


def _diff(old: dict, new: dict, prefix: str) -> str:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return f"{prefix}: {old} -> {new}"
    keys = sorted(set(old) | set(new))
    return "; ".join(f"{prefix}.{k}: {old.get(k)} -> {new.get(k)}" for k in keys if old.get(k) != new.get(k))
