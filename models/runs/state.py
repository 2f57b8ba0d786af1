"""Move training state between the lent GPU, git history and the shipped ``assets/``.

    python -m models.runs.state cast SRC_DIR DST_DIR [--dtype float16] [--weights-only]
        rewrite the weights of a sharded state (``state-*.safetensors``) at another precision (the
        optimiser moments and random streams keep theirs): smaller to carry, no longer bit-exact;
        ``--weights-only`` drops the rest too (a GAN state: 23 MiB instead of 39 MiB in float16).
    python -m models.runs.state ship-generator STATE_DIR OUT.safetensors
        write G_ema of a GAN state as the shipped float16 ``generator.safetensors``.
    python -m models.runs.state ship-vocoder STATE_DIR OUT.safetensors
        write the vocoder of a vocoder state as the shipped float16 ``vocoder.safetensors``.
    python -m models.runs.state ship-discriminator STATE_DIR OUT.safetensors
        D of a GAN state as a float16 ``discriminator.safetensors`` (S4 starts its D from it).
    python -m models.runs.state ship-hyper STATE_DIR OUT.safetensors
        H of a hyper-pre / hyper-adv state as the shipped float16 ``hyper.safetensors``.
    python -m models.runs.state half IN.safetensors OUT.safetensors
        a float16 copy of one network file (header kept), for ``assets/``.

Weights restored from a float16 state are cast back to float32 by ``resume.restore``; the
precision lost is far below one optimizer step's change (see models/README.md, "Training on the
lent GPU"). A state of weights alone resumes with fresh optimiser moments.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from models import checkpoint
from models.errors import UserError
from models.nets.discriminator import Discriminator
from models.nets.features import FeatureExtractor
from models.nets.generator import Generator
from models.nets.hyper import HyperNetwork
from models.signal.mel import MelConfig
from models.train import resume
from models.train.hyper_pre import pair_digests
from models.nets.vocoder import NeuralVocoder

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
NOT_WEIGHTS = ("optim.", "rng.", "extra.")  # resume-state keys that are not network weights


def _cast(tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Floating network weights at ``dtype``; optimiser moments, random streams and extras untouched."""
    return {k: v.to(dtype) if v.is_floating_point() and not k.startswith(NOT_WEIGHTS) else v
            for k, v in tensors.items()}


def cast_state(src: Path, dst: Path, dtype: torch.dtype, name: str = "state", weights_only: bool = False) -> list[Path]:
    """Re-shard the state ``name`` of ``src`` into ``dst`` with its weights at ``dtype`` (and nothing
    but the weights if ``weights_only``: a resume from it starts the optimisers afresh)."""
    state = resume.load_state(src, name)
    if state is None:
        raise UserError(f"no {name}-*.safetensors in {src}")
    tensors, meta = state
    drop = ("shard", "format", "git", "split") + (("optim", "scalers") if weights_only else ())
    meta = {k: v for k, v in meta.items() if k not in drop}
    if weights_only:
        tensors = {k: v for k, v in tensors.items() if not k.startswith(NOT_WEIGHTS)}
    meta["state_dtype"] = str(dtype).removeprefix("torch.")
    return resume.save_tensor_state(dst, name, _cast(tensors, dtype), meta)


def _ship(state_dir: Path, out: Path, net_cls: type, config_key: str, prefix: str, *stages: str) -> Path:
    """The network ``prefix`` of a state of one of ``stages`` -> float16 ``out`` with its config."""
    state = resume.load_state(state_dir, "state")
    if state is None or state[1].get("stage", stages[0]) not in stages:
        raise UserError(f"no {' or '.join(stages)} state in {state_dir}")
    tensors, meta = state
    if config_key in meta:
        cfg = checkpoint.config_from_dict(net_cls.Config, json.loads(meta[config_key]))
    else:  # states written before the config was recorded used the shipped one (their logs say so)
        cfg = net_cls.Config.shipped(MelConfig.from_json(meta["mel"]))
        print(f"{state_dir}: no {config_key} in the state; assuming {net_cls.__name__}.Config.shipped")
    net = net_cls(cfg)
    resume.restore(net, tensors, prefix)
    keep = {k: v for k, v in meta.items()
            if k in ("stage", "step", "kimg", "train_config", "mel", "git", "features_digest", "generator_digest")}
    keep["source_git"] = keep.pop("git", "unknown")
    checkpoint.save(out, net, keep, dtype=torch.float16)
    return out


def ship_generator(state_dir: Path, out: Path) -> Path:
    """G_ema of a GAN state -> float16 ``generator.safetensors`` with its config and provenance."""
    return _ship(state_dir, out, Generator, "g_config", "ema", "gan")


def ship_vocoder(state_dir: Path, out: Path) -> Path:
    """The vocoder of a vocoder-stage state -> float16 ``vocoder.safetensors`` with its config."""
    return _ship(state_dir, out, NeuralVocoder, "v_config", "V", "vocoder")


def ship_discriminator(state_dir: Path, out: Path) -> Path:
    """D of a GAN state -> float16 ``discriminator.safetensors`` (what S4 starts its D from)."""
    return _ship(state_dir, out, Discriminator, "d_config", "D", "gan")


def ship_hyper(state_dir: Path, out: Path) -> Path:
    """H of a hyper-pre or hyper-adv state -> float16 ``hyper.safetensors`` with its config."""
    return _ship(state_dir, out, HyperNetwork, "h_config", "H", "hyper-pre", "hyper-adv")


def half_copy(src: Path, dst: Path) -> Path:
    """A float16 copy of a network file written by ``checkpoint.save``, header kept."""
    tensors, meta = checkpoint.read_tensors(src)
    meta = {k: v for k, v in meta.items() if k != "format"}
    meta["source_git"] = meta.pop("git", "unknown")
    checkpoint.save_tensors(dst, _cast(tensors, torch.float16), meta)
    return dst


def bind_hyper(src: Path, dst: Path, weights: Path) -> Path:
    """A float16 copy of an H file that records the digests of the f and G in ``weights`` it was trained
    with (H files written before the trainers recorded them); the engine then refuses H beside another G."""
    tensors, meta = checkpoint.read_tensors(src)
    if meta.get("kind") != HyperNetwork.__name__:
        raise UserError(f"{src} holds a {meta.get('kind')!r}, not a HyperNetwork")
    f = checkpoint.load(weights / "features.safetensors", FeatureExtractor)[0]
    G = checkpoint.load(weights / "generator.safetensors", Generator)[0]
    meta = {k: v for k, v in meta.items() if k not in ("format", "features", "generator", "init")}
    meta["source_git"] = meta.pop("git", "unknown")
    meta.update(pair_digests(f, G))
    checkpoint.save_tensors(dst, _cast(tensors, torch.float16), meta)
    return dst


SHIP = {"ship-generator": ship_generator, "ship-vocoder": ship_vocoder, "ship-discriminator": ship_discriminator,
        "ship-hyper": ship_hyper}


def parser() -> argparse.ArgumentParser:
    p0 = argparse.ArgumentParser(prog="python -m models.runs.state", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p0.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("cast")
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float16")
    p.add_argument("--name", default="state")
    p.add_argument("--weights-only", action="store_true", help="drop optimiser state and random streams")
    for name in SHIP:
        p = sub.add_parser(name)
        p.add_argument("state_dir", type=Path)
        p.add_argument("out", type=Path)
    p = sub.add_parser("bind-hyper")
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--weights", type=Path, required=True, help="folder with the f and G that H was trained with")
    p = sub.add_parser("half")
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    return p0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.cmd == "cast":
        for path in cast_state(args.src, args.dst, DTYPES[args.dtype], args.name, args.weights_only):
            print(path)
    elif args.cmd in SHIP:
        print(SHIP[args.cmd](args.state_dir, args.out))
    elif args.cmd == "bind-hyper":
        print(bind_hyper(args.src, args.dst, args.weights))
    else:
        print(half_copy(args.src, args.dst))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
