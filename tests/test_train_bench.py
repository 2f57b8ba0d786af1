"""The GAN step benchmark runs end to end on the CPU with tiny networks (its timings are not tested)."""
from __future__ import annotations

import torch

from bench import bench_gan_step


def test_gan_step_bench_prints_a_table(capsys):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        bench_gan_step.main(["--device", "cpu", "--tiny", "--steps", "1", "--warmup", "1", "--batch", "4",
                             "--notes", "64", "--variants", "fp32,cl+b2"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out.splitlines()
    assert out[-4].startswith("| variant | batch | s/step | kimg/10min")
    assert out[-2].startswith("| fp32 | 4 |") and out[-1].startswith("| cl+b2 | 2 |")
