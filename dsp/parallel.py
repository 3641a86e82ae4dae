"""Data-parallel rows: a batch's rows computed by helper processes beside this one.

A training step renders a batch of independent rows (one audio segment and one control
vector each) through the topology, then backpropagates their mean loss. On two cores
the second core is best used by a second process computing half of the rows, each
process on one torch thread: measured on the MetalHead twin, two torch threads in one
process took a step from 0.97 s to 0.75 s alone and to 2.0 s beside another busy
process (``benchmarks/README.md``, session 23), so the fitter keeps one thread.

:class:`RowPool` splits the rows into one chunk per process. This process computes the
first chunk while each helper computes its own: the losses and their gradients with
respect to the chunk's control rows and the topology's parameters (or, for scoring,
only the rendered audio). :func:`RowPool.loss_rows` then hands back the per-row losses
as a tensor whose backward pass applies those gradients, so the caller builds its loss
(``rows.mean() + ...``) and calls ``backward()`` exactly as with a serial render.

Helpers are plain ``python -m dsp.parallel`` processes speaking length-prefixed pickles
over their stdin / stdout (no ``multiprocessing``: it needs its resource tracker
started before a Textual app runs, and re-imports the caller's ``__main__``). A helper
holds a topology of the same name, sample rate and oversampling, and takes the
caller's state (``state_dict``, oversampling) with every request. It ignores SIGINT
(Ctrl-C reaches the whole process group; the caller stops at its next checkpoint) and
ends when its stdin closes, so it never outlives the caller. A helper that fails or
dies is closed and its chunk computed here: the result is the same, only slower.

The chunks' results equal a serial render of the whole batch up to float rounding
(``tests/test_dsp_fit.py``).
"""
from __future__ import annotations

import os
import pickle
import signal
import struct
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import torch

__all__ = ["RowPool", "usable_cores", "default_processes", "closed_helpers_peak_rss_mb"]

_HEADER = struct.Struct("<Q")

#: peak RSS (MB) of every helper closed in this process, read from its own
#: ``/proc/PID/status`` (VmHWM) just before it is told to exit (Linux; elsewhere none)
_CLOSED_PEAKS_MB: list[float] = []


def closed_helpers_peak_rss_mb() -> float:
    """The largest peak RSS (MB) of the helpers closed so far in this process (0 when
    none, or where ``/proc`` is missing): what the benchmarks add to the fit's own peak.
    ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` cannot give it: Linux carries the parent's
    resident size at the fork over the helper's exec into that figure."""
    return max(_CLOSED_PEAKS_MB, default=0.0)


def _peak_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_processes() -> int:
    """Processes a fit computes its rows on: ``UNIT_FIT_PROCESSES`` when set, else two
    where two cores are usable (measured: 2 is what this project's 2-core machines
    give; more is untested), else one."""
    env = os.environ.get("UNIT_FIT_PROCESSES", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"UNIT_FIT_PROCESSES={env!r} is not a whole number; "
                             "set it to 1 (one process) or more, or unset it") from None
    return 2 if usable_cores() >= 2 else 1


def _send(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _recv(stream):
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError("the helper process closed its pipe")
    (n,) = _HEADER.unpack(head)
    data = stream.read(n)
    if len(data) < n:
        raise EOFError("the helper process closed its pipe mid-message")
    return pickle.loads(data)


def _state_numpy(topo) -> dict:
    return {k: v.detach().cpu().numpy() for k, v in topo.state_dict().items()}


def _load_state(topo, state: dict, oversample: int) -> None:
    if "output_fir_taps" in state:  # a buffer whose length may change (set_output_fir)
        topo.set_output_fir(state["output_fir_taps"])
    topo.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    topo.oversample = int(oversample)


def _trainable(topo) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in topo.named_parameters() if p.requires_grad]


def _chunk_loss_grad(topo, X, raw, Y, P, warm, stft_weight, names):
    """Losses of the rows and the gradients of their sum with respect to the rows'
    controls and the topology's parameters ``names`` (the caller's trainable ones):
    (losses, d/d raw, {name: d})."""
    from dsp.fit import loss_rows

    raw = raw.detach().requires_grad_(True)
    params = dict(topo.named_parameters())
    named = [(n, params[n]) for n in names]
    with torch.enable_grad():
        l = loss_rows(topo(X, raw), Y, warm, P, stft_weight)
        grads = torch.autograd.grad(l.sum(), [raw] + [p for _, p in named], allow_unused=True)
    g_params = {n: (torch.zeros_like(p) if g is None else g) for (n, p), g in zip(named, grads[1:])}
    return l.detach(), grads[0], g_params


def _serve() -> int:
    """The helper's loop (``python -m dsp.parallel TOPOLOGY SAMPLE_RATE OVERSAMPLE``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not corrupt the replies
    inp = os.fdopen(os.dup(0), "rb")
    torch.set_num_threads(1)
    from dsp.topologies import make_topology

    topo = make_topology(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]))
    while True:
        try:
            req = _recv(inp)
        except EOFError:
            return 0
        if req is None:
            return 0
        try:
            _load_state(topo, req["state"], req["oversample"])
            X, raw = torch.from_numpy(req["X"]), torch.from_numpy(req["raw"])
            if req["op"] == "render":
                with torch.no_grad():
                    rep = {"y": topo(X, raw, exact=req["exact"]).numpy()}
            else:
                l, g_raw, g = _chunk_loss_grad(topo, X, raw, torch.from_numpy(req["Y"]),
                                               torch.from_numpy(req["P"]), req["warm"], req["stft_weight"],
                                               req["names"])
                rep = {"l": l.numpy(), "g_raw": g_raw.numpy(), "g": {k: v.numpy() for k, v in g.items()}}
            rep["ok"] = True
        except Exception:  # noqa: BLE001 - reported to the caller, which computes the chunk itself
            rep = {"ok": False, "error": traceback.format_exc()}
        try:
            _send(out, rep)
        except (BrokenPipeError, OSError):
            return 0


class _Helper:
    def __init__(self, topology: str, sample_rate: float, oversample: int):
        root = str(Path(__file__).resolve().parents[1])  # the caller's own dsp package
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
                   OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dsp.parallel", topology, repr(float(sample_rate)), str(int(oversample))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, start_new_session=True)

    def submit(self, req) -> None:
        _send(self.proc.stdin, req)

    def result(self):
        rep = _recv(self.proc.stdout)
        if not rep.get("ok"):
            raise RuntimeError(rep.get("error", "unknown error"))
        return rep

    def close(self) -> None:
        if self.proc.poll() is None:
            peak = _peak_rss_mb(self.proc.pid)
            if peak is not None:
                _CLOSED_PEAKS_MB.append(peak)
        try:
            if self.proc.poll() is None:
                _send(self.proc.stdin, None)
        except (BrokenPipeError, OSError, ValueError):
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _Rows(torch.autograd.Function):
    """Per-row losses computed elsewhere, with their gradients: the backward pass scales
    each row's control gradient by that row's incoming gradient, and each chunk's
    summed parameter gradient by its rows' (uniform within a chunk: a mean or a sum)."""

    @staticmethod
    def forward(ctx, payload, raw, *params):
        l, g_raw, chunks, g_params = payload
        ctx.g_raw, ctx.chunks, ctx.g_params = g_raw, chunks, g_params
        return l.clone()

    @staticmethod
    def backward(ctx, grad_l):
        grad_raw = grad_l[:, None] * ctx.g_raw
        grads = None
        for (a, b), g in zip(ctx.chunks, ctx.g_params):
            w = grad_l[a:b]
            if float((w - w[0]).abs().max()) > 1e-6 * float(w.abs().max()) + 1e-30:
                raise RuntimeError("rows computed in parallel need one weight per chunk "
                                   "(a mean or a sum of their losses)")
            part = [w[0] * t for t in g]
            grads = part if grads is None else [x + y for x, y in zip(grads, part)]
        return (None, grad_raw, *grads)


class RowPool:
    """``processes`` processes computing a batch's rows: this one and ``processes - 1``
    helpers, started here (each imports torch, about a second, while this process goes
    on). Use as a context manager or call :meth:`close`."""

    def __init__(self, topology: str, sample_rate: float, oversample: int, processes: int):
        self.helpers: list[_Helper] = []
        self.failures: list[str] = []
        for _ in range(max(0, int(processes) - 1)):
            try:
                self.helpers.append(_Helper(topology, sample_rate, oversample))
            except OSError as e:  # no process to be had: this one computes every row
                self.failures.append(f"{type(e).__name__}: {e}")

    @property
    def processes(self) -> int:
        return 1 + len(self.helpers)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        for h in self.helpers:
            h.close()
        self.helpers = []

    def _chunks(self, n: int) -> list[tuple[int, int]]:
        k = min(self.processes, n)
        edges = np.linspace(0, n, k + 1).round().astype(int)
        return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]

    def _drop(self, h: _Helper, err: Exception) -> None:
        self.failures.append(f"{type(err).__name__}: {err}")
        if h in self.helpers:
            self.helpers.remove(h)
        h.close()

    def _run(self, chunks, make_req, local, from_reply):
        """Send chunks 1.. to the helpers, compute chunk 0 here, collect; a helper that
        fails is dropped and its chunk computed here."""
        sent = []
        for (a, b), h in zip(chunks[1:], list(self.helpers)):
            try:
                h.submit(make_req(a, b))
                sent.append((a, b, h))
            except (BrokenPipeError, OSError, ValueError) as e:
                self._drop(h, e)
                sent.append((a, b, None))
        results = [local(*chunks[0])]
        for a, b, h in sent:
            if h is not None:
                try:
                    results.append(from_reply(h.result()))
                    continue
                except (EOFError, OSError, RuntimeError, ValueError, pickle.UnpicklingError) as e:
                    self._drop(h, e)
            results.append(local(a, b))
        return results

    def render(self, topo, X: torch.Tensor, raw: torch.Tensor, exact: bool = False) -> torch.Tensor:
        """``topo(X, raw, exact=exact)`` without gradients, the rows split over the processes."""
        chunks = self._chunks(X.shape[0])
        if len(chunks) < 2:
            with torch.no_grad():
                return topo(X, raw, exact=exact)
        state = _state_numpy(topo)
        Xn, rn = X.detach().numpy(), raw.detach().numpy()

        def local(a, b):
            with torch.no_grad():
                return topo(X[a:b], raw[a:b], exact=exact)

        parts = self._run(chunks, lambda a, b: {"op": "render", "state": state, "oversample": topo.oversample,
                                                "X": Xn[a:b], "raw": rn[a:b], "exact": exact},
                          local, lambda rep: torch.from_numpy(rep["y"]))
        return torch.cat(parts, 0)

    def loss_rows(self, topo, X: torch.Tensor, raw: torch.Tensor, Y: torch.Tensor, P: torch.Tensor | None,
                  warm: int, stft_weight: float = 0.0) -> torch.Tensor:
        """Per-row training losses (:func:`dsp.fit.loss_rows`) of ``topo(X, raw)``, the
        rows split over the processes; differentiable with respect to ``raw`` and the
        topology's trainable parameters when gradients are on."""
        from dsp.fit import loss_rows

        n = X.shape[0]
        P = torch.zeros(n) if P is None else torch.as_tensor(P, dtype=Y.dtype).expand(n)
        chunks = self._chunks(n)
        if not torch.is_grad_enabled():  # scoring: the rows' renders, then their losses here
            return loss_rows(self.render(topo, X, raw), Y, warm, P, stft_weight)
        if len(chunks) < 2:
            return loss_rows(topo(X, raw), Y, warm, P, stft_weight)
        named = _trainable(topo)
        state = _state_numpy(topo)
        Xn, rn, Yn, Pn = X.detach().numpy(), raw.detach().numpy(), Y.detach().numpy(), P.detach().numpy()

        def local(a, b):
            return _chunk_loss_grad(topo, X[a:b], raw[a:b], Y[a:b], P[a:b], warm, stft_weight,
                                    [nm for nm, _ in named])

        def from_reply(rep):
            return (torch.from_numpy(rep["l"]), torch.from_numpy(rep["g_raw"]),
                    {k: torch.from_numpy(v) for k, v in rep["g"].items()})

        res = self._run(chunks, lambda a, b: {"op": "loss_grad", "state": state, "oversample": topo.oversample,
                                              "X": Xn[a:b], "raw": rn[a:b], "Y": Yn[a:b], "P": Pn[a:b],
                                              "warm": warm, "stft_weight": stft_weight,
                                              "names": [nm for nm, _ in named]},
                        local, from_reply)
        l = torch.cat([r[0] for r in res])
        g_raw = torch.cat([r[1] for r in res]).to(raw.dtype)
        g_params = [[r[2][nm].to(p.dtype) for nm, p in named] for r in res]
        return _Rows.apply((l, g_raw, chunks, g_params), raw, *[p for _, p in named])


if __name__ == "__main__":
    sys.exit(_serve())
