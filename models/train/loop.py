"""The one training loop every stage runs.

A stage module builds its networks, optimisers, loss step and probes into a ``Stage`` and hands it
to ``Run.train``; the loop owns the rest: distributed set-up, seeding, ``--set`` overrides, the
wall-clock budget, the log / evaluation / save cadence and complete resume (weights, EMA,
optimisers, grad scalers, every random stream and the position in the data order, in
``models/train/resume.py``). A run stopped at any step and resumed takes the same steps as one
that never stopped.

    run = Run(opts, GanTrainConfig())
    g_cfg = run.config(Generator.Config.shipped(mel), "G")
    if run.announce("gan", run.cfg, G=g_cfg):
        return {}  # --dry-run
    ... build nets, optimisers, the step ...
    return run.train(Stage("gan", run.cfg, nets, step, optimizers, probe=..., export=...), out)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
import torch.distributed as dist

from models.errors import UserError
from models.train import common, resume
from models.train.overrides import Overrides


@dataclass(frozen=True)
class LoopConfig:
    """What the loop reads from a stage's training config (each stage's config extends it)."""

    log_every: int = 100
    eval_every: int = 1000
    save_every: int = 2000
    seed: int = 0
    moments_dtype: str = "bfloat16"  # optimiser moments in the resume state: "float32" resumes bit for bit


class StatePart(Protocol):
    """Stage state that is neither a network nor an optimiser (a feature bank, a warm-up origin)."""

    def state_tensors(self) -> dict[str, torch.Tensor]: ...

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None: ...


Step = Callable[[int, torch.Generator], dict[str, torch.Tensor]]


@dataclass
class Stage:
    """What a stage gives the loop.

    ``step(step, data_gen)`` takes one optimisation step, drawing its batch with ``data_gen`` (on
    the device; saved and restored with the state), and returns its losses (tensors, averaged
    between log lines). ``probe(step, final)`` evaluates on the main process and returns metrics
    (the loop forks the torch random streams around it; numpy's and python's it must leave alone);
    with ``probe_first`` it also runs before the first step. ``export(out, meta)`` writes the
    stage's network files beside each saved state. ``parts`` is state that is neither a network
    nor an optimiser; ``check_resume(header)`` may refuse a state (e.g. one trained with another f).
    """

    name: str
    cfg: Any
    nets: dict[str, torch.nn.Module]
    step: Step
    optimizers: dict[str, torch.optim.Optimizer]
    probe: Callable[[int, bool], dict[str, float]] | None = None
    export: Callable[[Path, dict[str, Any]], None] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    scalers: dict[str, Any] = field(default_factory=dict)
    parts: dict[str, StatePart] = field(default_factory=dict)
    probe_first: bool = False
    check_resume: Callable[[dict[str, str]], None] | None = None


class Run:
    """One invocation of a stage: processes, settings and seeds, then ``train``."""

    def __init__(self, opts: common.RunOptions, cfg: Any, single_process: str | None = None) -> None:
        self.opts = opts
        self.d = common.setup_distributed(opts.device)
        if single_process and self.d.world_size > 1:
            raise UserError(single_process)
        self.overrides = Overrides(opts.overrides)
        self.cfg = self.overrides.apply(cfg)
        if self.cfg.moments_dtype not in resume.MOMENTS_DTYPES:
            raise UserError(f"moments_dtype must be one of {sorted(resume.MOMENTS_DTYPES)}")
        common.seed_everything(self.cfg.seed + self.d.rank)
        common.configure_backends(self.d.device)

    @property
    def device(self) -> torch.device:
        return self.d.device

    @property
    def weights(self) -> Path:
        """Earlier stages' weights (``--weights``, default ``assets``)."""
        return Path(self.opts.weights or "assets")

    def config(self, cfg: Any, prefix: str) -> Any:
        """A network config with the ``prefix.`` settings of ``--set`` applied."""
        return self.overrides.apply(cfg, prefix)

    def wrap(self, net: torch.nn.Module) -> torch.nn.Module:
        return common.wrap_ddp(net, self.d)

    def announce(self, name: str, cfg: Any, **net_cfgs: Any) -> bool:
        """Print the resolved configs (main process); True on ``--dry-run``."""
        self.overrides.check_all_used()
        if self.d.is_main:
            lines = [f"{name}: {common.config_json(cfg)}"] + [f"{k}: {common.config_json(v)}" for k, v in net_cfgs.items()]
            print("\n".join(lines))  # the stages run as CLI commands: this is the resolved config they report
        return self.opts.dry_run

    # ------------------------------------------------------------ the loop
    def train(self, stage: Stage, out: str | Path) -> dict[str, float]:
        """Resume ``stage`` from ``out`` if it holds a state, train for the budget, save, evaluate."""
        out, cfg, d = Path(out), stage.cfg, self.d
        data_gen = torch.Generator(device=d.device).manual_seed(cfg.seed * 1000 + d.rank)
        step = self.resume(stage, out, data_gen)
        log = common.MetricsLog(out / "metrics.jsonl", enabled=d.is_main)
        if stage.probe_first:
            self.evaluate(stage, log, step, final=False)
        avg, budget, start = common.Averager(), common.Budget(self.opts.minutes, self.opts.max_steps), step
        while not budget.expired():
            avg.add(**stage.step(step, data_gen))
            step += 1
            if step % cfg.log_every == 0:
                losses = avg.pop()
                kimg = step * cfg.batch_size * d.world_size / 1000
                if d.is_main:
                    log.write(step, **losses, kimg=kimg, s_per_step=budget.elapsed_s / (step - start))
            if step % cfg.eval_every == 0:
                self.evaluate(stage, log, step, final=False)
            if step % cfg.save_every == 0:
                self.save(stage, out, step, data_gen)
        self.save(stage, out, step, data_gen)
        return self.evaluate(stage, log, step, final=True)

    def evaluate(self, stage: Stage, log: common.MetricsLog, step: int, final: bool) -> dict[str, float]:
        """The stage's probe on the main process, outside the training's random streams."""
        metrics: dict[str, float] = {}
        if stage.probe is not None and self.d.is_main:
            devices = [self.d.device] if self.d.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                metrics = stage.probe(step, final)
        if final or metrics:
            log.write(step, **({"final": 1} if final else {}), **metrics)
        return metrics

    # ------------------------------------------------------------ state
    def save(self, stage: Stage, out: Path, step: int, data_gen: torch.Generator) -> None:
        """Write the complete state (all processes give their random streams) and the network files."""
        streams = self._gather_streams(resume.rng_tensors(data_gen))
        if self.d.is_main:
            self._write(stage, out, step, streams)
        if self.d.world_size > 1:
            dist.barrier()  # no process reads the state (resuming a next run) before it is written

    def _write(self, stage: Stage, out: Path, step: int, streams: dict[str, torch.Tensor]) -> None:
        cfg = stage.cfg
        names = resume.parameter_names(stage.nets)
        optim, optim_meta = resume.optimizer_tensors(stage.optimizers, names, resume.MOMENTS_DTYPES[cfg.moments_dtype])
        tensors = {**resume.net_tensors(stage.nets), **optim, **streams}
        for part_name, part in stage.parts.items():
            tensors.update({f"extra.{part_name}.{k}": v.detach().cpu() for k, v in part.state_tensors().items()})
        meta = dict(stage.meta, stage=stage.name, train_config=common.config_json(cfg), step=step,
                    kimg=round(step * cfg.batch_size * self.d.world_size / 1000, 2))
        full = dict(meta, optim=optim_meta, scalers=resume.scaler_meta(stage.scalers), world_size=self.d.world_size,
                    moments_dtype=cfg.moments_dtype)
        resume.save_tensor_state(out, "state", tensors, full)
        if stage.export is not None:
            stage.export(out, meta)

    def resume(self, stage: Stage, out: Path, data_gen: torch.Generator) -> int:
        """Restore ``stage`` from the state in ``out``; returns the step to continue from (0: none).

        A state of weights alone (written before optimiser state was kept) restores the weights and
        the step; the optimisers then start afresh and the random streams from the seed.
        """
        state = resume.load_state(out, "state")
        if state is None:
            return 0
        tensors, meta = state
        if stage.check_resume is not None:
            stage.check_resume(meta)
        for name, net in stage.nets.items():
            resume.restore(net, tensors, name)
        missing = [] if "optim" in meta else ["optimiser"]
        if "optim" in meta:
            names = resume.parameter_names(stage.nets)
            resume.restore_optimizers(stage.optimizers, names, tensors, json.loads(meta["optim"]))
            resume.restore_scalers(stage.scalers, json.loads(meta.get("scalers", "{}")))
        for part_name, part in stage.parts.items():
            prefix = f"extra.{part_name}."
            own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            if own:
                part.load_state_tensors(own)
        missing += resume.restore_rng(resume.rank_streams(tensors, self.d.rank), data_gen)
        if missing and self.d.is_main:
            # A CLI stage's note: a state of weights alone, of another number of processes or device.
            print(f"{out}: no saved {', '.join(missing)} state for this process; those start afresh")
        return int(meta["step"])

    def _gather_streams(self, own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every process's random streams as ``rng.{rank}.{stream}`` (on the main process)."""
        if self.d.world_size == 1:
            return {f"rng.0.{k}": v for k, v in own.items()}
        out: dict[str, torch.Tensor] = {}
        for k, v in sorted(own.items()):
            v = v.to(self.d.device)
            parts = [torch.empty_like(v) for _ in range(self.d.world_size)]
            dist.all_gather(parts, v)
            out.update({f"rng.{r}.{k}": p.cpu() for r, p in enumerate(parts)})
        return out

