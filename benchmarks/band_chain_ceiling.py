"""How far a per-band chain of two free curves can explain ONE capture (no knobs).

The Studio Preamp's source (Guitarix ``gx_studiopre.dsp``) splits the input into five
bands (``fi.filterbank(3, (86, 210, 1200, 6531))``) and runs each through the same amp:
a 4th-order filter (Volume and the tone stack), a clipper table, a 2nd-order high-pass
times Master, a second clipper table; the five outputs are summed. This probe fits that
shape with everything free, to measure the ceiling of the structure before any
parameterisation of it (the product's ``band_chain`` option has physical filters and
smooth clippers)::

    y = g_out * sum_k T2( g_mid * H * T1( g_in * F * band_k(x) ) ) + dc

F (1024 taps) and H (512 taps) are free FIRs (F starts as a unit impulse, so a latency
is a shift in F), T1 and T2 free tables (``--knots`` values on ±``--range``, linear
between them, from tanh), the bands the product's delay-equalised Butterworth-3 split
(``dsp.topologies.split_bands``) at Guitarix's crossovers (``--bands none``: one band),
all at the capture's rate (Guitarix's tables run at the base rate). Adam, 4 random
0.5 s segments per step, cosine learning rate; it prints the whole capture's ESR every
100 steps::

    python benchmarks/fidelity.py --plugin studiopre --minutes 4     # makes the project
    python benchmarks/band_chain_ceiling.py studiopre Master_10p0 [--bands none] [--steps 5000]

Measured (session 18, Master 10): five bands 0.052 after 1,500 steps, 0.0079 after
5,000 (257 knots on ±4; 49 knots on ±3: 0.018 after 2,500); one band 0.24 after 1,500.
It asserts nothing.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GUITARIX_CROSSOVERS_HZ = (86.0, 210.0, 1200.0, 6531.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("key", help="fidelity project (studiopre, metalhead, ds1)")
    ap.add_argument("capture", help="a substring of the capture's name, e.g. Master_10p0")
    ap.add_argument("--bands", choices=("guitarix", "none"), default="guitarix")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--knots", type=int, default=257)
    ap.add_argument("--range", type=float, default=4.0, dest="x_range")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "unit-fidelity"))
    args = ap.parse_args(argv)

    import numpy as np
    import soundfile as sf
    import torch

    from dsp import topologies as T

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    root = Path(args.work) / args.key
    if not (root / "input.wav").is_file():
        ap.error(f"no project at {root}: run benchmarks/fidelity.py --plugin {args.key} first")
    found = sorted(p for p in root.rglob("*.wav") if args.capture in p.name and p.name != "input.wav")
    if not found:
        ap.error(f"no capture matching {args.capture!r} under {root}")
    x, sr = sf.read(root / "input.wav", dtype="float64")
    y, _ = sf.read(found[0], dtype="float64")
    y = y if y.ndim == 1 else y[:, 0]
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    print(f"{found[0].name}: {n / sr:.1f} s at {sr} Hz, bands {args.bands}, {args.knots} knots on "
          f"±{args.x_range:g}", flush=True)

    xt = torch.tensor(x)[None]
    if args.bands == "guitarix":
        path = T._Path(True, n, float(sr), 1)
        xo = [torch.tensor([f], dtype=torch.float64) for f in GUITARIX_CROSSOVERS_HZ]
        bands = T.split_bands(xt, float(sr), xo, path)[0]
    else:
        bands = xt
    bands = bands.float()
    yt = torch.tensor(y).float()

    def unit(k):
        h = torch.zeros(k)
        h[0] = 1.0
        return torch.nn.Parameter(h)

    F, H = unit(1024), unit(512)
    grid = torch.linspace(-args.x_range, args.x_range, args.knots)
    T1, T2 = torch.nn.Parameter(torch.tanh(grid)), torch.nn.Parameter(torch.tanh(grid))
    g_in = torch.nn.Parameter(torch.tensor(math.log(4.0)))
    g_mid = torch.nn.Parameter(torch.tensor(0.0))
    g_out = torch.nn.Parameter(torch.tensor(math.log(float(np.std(y)) / 0.5 + 1e-9)))
    dc = torch.nn.Parameter(torch.tensor(0.0))

    def table(u, v):
        h = 2 * args.x_range / (args.knots - 1)
        q = (u.clamp(-args.x_range, args.x_range) + args.x_range) / h
        j = q.detach().floor().clamp(0, args.knots - 2)
        f = q - j
        j = j.long()
        return (1 - f) * v[j] + f * v[j + 1]

    def conv(sig, h):
        m = 1 << (sig.shape[-1] + h.shape[-1] - 1).bit_length()
        return torch.fft.irfft(torch.fft.rfft(sig, m) * torch.fft.rfft(h, m), m)[..., : sig.shape[-1]]

    def model(b):
        u = table(conv(b, F) * torch.exp(g_in), T1)
        u = table(conv(u, H) * torch.exp(g_mid), T2)
        return u.sum(0) * torch.exp(g_out) + dc

    opt = torch.optim.Adam([{"params": [F, H], "lr": 2e-3}, {"params": [T1, T2], "lr": 3e-3},
                            {"params": [g_in, g_mid, g_out, dc], "lr": 1e-2}])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    seg, warm, rows = int(0.5 * sr), 4096, 4
    floor = 1e-3 * seg * float((yt ** 2).mean())
    t0 = time.time()
    for s in range(args.steps):
        loss = 0.0
        for _ in range(rows):
            i = int(rng.integers(0, n - seg - warm))
            out = model(bands[:, i:i + seg + warm])[warm:]
            tgt = yt[i + warm:i + seg + warm]
            loss = loss + ((out - tgt) ** 2).sum() / ((tgt ** 2).sum() + floor)
        opt.zero_grad()
        (loss / rows).backward()
        opt.step()
        sched.step()
        if s % 100 == 0 or s == args.steps - 1:
            with torch.no_grad():
                esr = float(((model(bands) - yt) ** 2).sum() / (yt ** 2).sum())
            print(f"step {s:5d}  ESR {esr:.4f}  ({time.time() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
