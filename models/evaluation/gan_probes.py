"""What the GAN stage measures while it trains, on held-out (valid-split) instruments.

From one source note per instrument (nearest middle C, loudest): a fixed mel grid across the
keyboard, pitch accuracy of generated notes by the evaluation pitch classifier, timbre
identification (is the source instrument the nearest one-shot in f space?), and FID on the
evaluation instrument classifier's features.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models import checkpoint
from models.evaluation.metrics import fid
from models.train import common
from models.train.plots import mel_grid_png
from models.units import LOWEST_KEY

GRID_KEYS = (24, 36, 48, 60, 72, 84, 96, 105)


def _maybe_load(path: Path, cls_name: str, device: torch.device):
    if not path.is_file():
        return None
    from models.nets import classifiers

    net, _, _ = checkpoint.load(path, getattr(classifiers, cls_name), device=device)
    return net.eval().requires_grad_(False)


class GanProbe:
    """Callable ``probe(G, step) -> metrics``; also writes ``mels_latest.png`` into ``out``."""

    def __init__(self, data, f, weights: Path, device: torch.device, out: Path, queries_per_instrument: int = 16,
                 seed: int = 1234) -> None:
        self.f, self.device, self.out = f, device, Path(out)
        self.notes = common.DeviceNotes(data, device, splits=(1,))
        self.log_min = data.mel_cfg.log_min
        self.pitch_net = _maybe_load(Path(weights) / "pitch_classifier.safetensors", "PitchClassifier", device)
        self.inst_net = _maybe_load(Path(weights) / "instrument_classifier.safetensors", "InstrumentClassifier", device)
        inst = self.notes.instrument.cpu().numpy()
        pitch = self.notes.pitch.cpu().numpy()
        vel = self.notes.velocity.cpu().numpy()
        self.instruments = np.unique(inst)
        # source note per instrument: nearest MIDI 60, loudest velocity
        score = np.abs(pitch - 60) * 1000 - vel
        src = [np.nonzero(inst == i)[0][np.argmin(score[inst == i])] for i in self.instruments]
        self.src = torch.as_tensor(np.array(src), device=device)
        self.pitched = self.notes.pitched[self.src].cpu().numpy()
        rng = np.random.default_rng(seed)
        # query keys: keys each instrument really has in the data (so real notes exist to compare)
        q_inst, q_key, q_real = [], [], []
        for row, i in enumerate(self.instruments):
            have = np.nonzero((inst == i) & (pitch != pitch[src[row]]))[0]
            if len(have) == 0:
                continue
            pick = rng.choice(have, size=min(queries_per_instrument, len(have)), replace=False)
            q_inst += [row] * len(pick)
            q_key += list(pitch[pick])
            q_real += list(pick)
        self.q_row = torch.as_tensor(q_inst, device=device)
        self.q_key = torch.as_tensor(np.array(q_key, dtype=np.int64), device=device)
        self.q_real = torch.as_tensor(np.array(q_real, dtype=np.int64), device=device)
        with torch.no_grad(), common.autocast(device):
            self.h_src = self.f(self.notes.x(self.src)).float()

    @torch.no_grad()
    def _generate(self, G, h: torch.Tensor, keys: torch.Tensor, chunk: int = 128) -> torch.Tensor:
        z_dim = checkpoint.unwrap(G).cfg.z_dim
        outs = []
        for s in range(0, len(h), chunk):
            hb, kb = h[s:s + chunk], keys[s:s + chunk]
            with common.autocast(self.device):
                outs.append(G(hb, torch.zeros(len(hb), z_dim, device=self.device), kb).float())
        return torch.cat(outs)

    @torch.no_grad()
    def _embed(self, fn, x: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        outs = []
        for s in range(0, len(x), chunk):
            with common.autocast(self.device):
                outs.append(fn(x[s:s + chunk]).float())
        return torch.cat(outs)

    def _timbre_id(self, h_query: torch.Tensor) -> float:
        ref = torch.nn.functional.normalize(self.h_src, dim=1)
        q = torch.nn.functional.normalize(h_query, dim=1)
        return float(((q @ ref.T).argmax(1) == self.q_row).float().mean())

    @torch.no_grad()
    def __call__(self, G, step: int) -> dict[str, float]:
        rows = min(6, len(self.src))
        keys = torch.tensor(GRID_KEYS, device=self.device)
        grid = self._generate(G, self.h_src[:rows].repeat_interleave(len(keys), 0), keys.repeat(rows))
        grid = grid.view(rows, len(keys), *grid.shape[1:])
        mel_grid_png(self.out / "mels_latest.png", grid, self.log_min)
        mel_grid_png(self.out / f"mels_{step:07d}.png", grid, self.log_min)
        fake = self._generate(G, self.h_src[self.q_row], self.q_key)
        metrics: dict[str, float] = {}
        metrics["timbre_id_gen"] = self._timbre_id(self._embed(self.f, fake))
        metrics["timbre_id_real"] = self._timbre_id(self._embed(self.f, self.notes.x(self.q_real)))
        if self.pitch_net is not None:
            pitched = torch.as_tensor(self.pitched, device=self.device)[self.q_row]
            pred = self._embed(self.pitch_net.logits, fake).argmax(1) + LOWEST_KEY
            ok = (pred == self.q_key)[pitched].float()
            metrics["pitch_acc_gen"] = float(ok.mean())
            for lo, hi in ((21, 42), (43, 64), (65, 86), (87, 108)):
                m = (self.q_key[pitched] >= lo) & (self.q_key[pitched] <= hi)
                if m.any():
                    metrics[f"pitch_acc_gen_{lo}_{hi}"] = float(ok[m].mean())
        if self.inst_net is not None and len(fake) > 64:
            metrics["fid"] = fid(self._embed(self.inst_net.features, fake),
                                              self._embed(self.inst_net.features, self.notes.x(self.q_real)))
        return metrics
