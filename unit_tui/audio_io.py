"""Reading captures, checking WAV headers, and writing files atomically.

* :func:`read_capture` reads any audio file soundfile can read into float32 mono
  (stereo accepted: see :func:`read_capture`), or raises :class:`CaptureReadError`
  with a sentence the user can act on.
* :func:`riff_header_state` / :func:`read_riff_info` read only a WAV file's chunk
  headers and say whether the sizes in the header agree with the file's length. A
  WAV that is still being bounced (or whose bounce was interrupted) usually does not:
  the RIFF and data sizes are written last. soundfile happily opens such a file, so
  this check must come first.
* :func:`atomic_write_bytes` / :func:`write_wav_atomic` write to a temporary file in
  the same folder and ``os.replace`` it into place: a reader never sees a partial file
  under the final name.

numpy + soundfile only.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "CaptureReadError",
    "Loaded",
    "RiffInfo",
    "read_capture",
    "read_riff_info",
    "riff_header_state",
    "atomic_write_bytes",
    "write_wav_atomic",
]


class CaptureReadError(Exception):
    """A file that cannot be read as audio; the message says what is wrong and what to do."""


@dataclass
class Loaded:
    """An audio file read for checking: float32 mono plus what the file was."""

    audio: np.ndarray  # float32, mono
    sample_rate: int
    channels: int
    subtype: str  # soundfile subtype: PCM_16, PCM_24, FLOAT, ...
    frames: int
    note: str | None = None  # how several channels were turned into one
    format: str = "WAV"  # soundfile major format: WAV, WAVEX, RF64, AIFF, FLAC, ...


# ---------------------------------------------------------------------------- sizes


def fmt_size(n: int) -> str:
    """1234567 -> '1.2 MB' (decimal units, as Finder shows them)."""
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} MB"
    if n >= 1_000:
        return f"{n / 1e3:.1f} kB"
    return f"{n} bytes"


def _two_sizes(a: int, b: int) -> tuple[str, str]:
    big = max(a, b)
    if big >= 1_000_000:
        sa, sb = f"{a / 1e6:.1f} MB", f"{b / 1e6:.1f} MB"
    elif big >= 1_000:
        sa, sb = f"{a / 1e3:.1f} kB", f"{b / 1e3:.1f} kB"
    else:
        sa, sb = f"{a} bytes", f"{b} bytes"
    if sa == sb:
        sa, sb = f"{a} bytes", f"{b} bytes"
    return sa, sb


# ---------------------------------------------------------------------------- RIFF headers


@dataclass
class RiffInfo:
    """What a WAV file's chunk headers say.

    ``state`` is "ok" (sizes agree with the file), "incomplete" (the header promises
    more or less than the file holds: still being written, or interrupted) or
    "not_wav" (not a RIFF/RF64 WAVE file at all).
    """

    state: str
    reason: str
    file_size: int = 0
    declared_size: int | None = None  # RIFF size + 8
    data_offset: int | None = None
    data_size: int | None = None
    block_align: int | None = None

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    @property
    def frames(self) -> int | None:
        if self.data_size is None or not self.block_align:
            return None
        return self.data_size // self.block_align


_RIFF_TAGS = (b"RIFF", b"RIFX", b"RF64", b"BW64")
_MAX_HEADER_CHUNKS = 64


def read_riff_info(path) -> RiffInfo:
    """Read a WAV file's chunk headers (a few hundred bytes at most) and judge its sizes."""
    path = Path(path)
    try:
        file_size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(12)
            if file_size == 0:
                return RiffInfo("incomplete", "empty file (0 bytes): nothing written yet", 0)
            if len(head) < 12:
                if any(t.startswith(head[:4]) for t in _RIFF_TAGS):
                    return RiffInfo("incomplete", f"only {len(head)} bytes: the header is not written yet", file_size)
                return RiffInfo("not_wav", "not a WAV file", file_size)
            tag = head[:4]
            if tag not in _RIFF_TAGS or head[8:12] not in (b"WAVE", b"wave"):
                return RiffInfo("not_wav", "not a WAV file", file_size)
            endian = ">" if tag == b"RIFX" else "<"
            riff_size = struct.unpack(endian + "I", head[4:8])[0]
            rf64 = tag in (b"RF64", b"BW64")
            riff64 = data64 = None
            block_align = None
            data_offset = data_size = None
            pos = 12
            for _ in range(_MAX_HEADER_CHUNKS):
                f.seek(pos)
                ch = f.read(8)
                if len(ch) < 8:
                    break
                cid = ch[:4]
                csize = struct.unpack(endian + "I", ch[4:8])[0]
                if cid == b"ds64" and rf64:
                    body = f.read(min(csize, 28))
                    if len(body) >= 16:
                        riff64, data64 = struct.unpack("<QQ", body[:16])
                elif cid == b"fmt ":
                    body = f.read(min(csize, 16))
                    if len(body) >= 14:
                        block_align = struct.unpack(endian + "H", body[12:14])[0]
                elif cid == b"data":
                    data_offset = pos + 8
                    data_size = data64 if (rf64 and csize == 0xFFFFFFFF and data64 is not None) else csize
                    break
                pos += 8 + csize + (csize & 1)
    except OSError as exc:
        return RiffInfo("not_wav", f"cannot be opened ({exc.strerror or exc})", 0)

    if rf64 and riff_size == 0xFFFFFFFF:
        declared = None if riff64 is None else riff64 + 8
    else:
        declared = riff_size + 8
    info = RiffInfo("ok", "header consistent with the file length", file_size, declared, data_offset,
                    data_size, block_align)
    if data_offset is None:
        if pos + 8 > file_size or (declared is not None and declared > file_size):
            shown = declared if declared is not None else pos + 8
            a, b = _two_sizes(shown, file_size)
            info.state, info.reason = "incomplete", (
                f"header says {a}, file has {b}: still being written or the bounce was interrupted")
        else:
            info.state, info.reason = "not_wav", "a WAV file without a data chunk (no audio)"
        return info
    if declared is None:
        info.state, info.reason = "incomplete", "RF64 header without its size table (ds64): still being written?"
        return info
    odd_pad = 1 if (data_size or 0) & 1 else 0
    data_end = data_offset + data_size
    if declared > file_size + odd_pad or data_end > file_size:
        shown = max(declared, data_end)
        a, b = _two_sizes(shown, file_size)
        info.state, info.reason = "incomplete", (
            f"header says {a}, file has {b}: still being written or the bounce was interrupted")
    elif declared < file_size - odd_pad:
        a, b = _two_sizes(declared, file_size)
        info.state, info.reason = "incomplete", (
            f"header says {a}, file has {b}: the header was never finalised (still being written, "
            "or the program writing it stopped)")
    return info


def riff_header_state(path) -> tuple[bool, str]:
    """(True, ...) when a WAV's RIFF/RF64 size (and data size) agree with the file's length.

    Reads only the chunk headers. False with a reason otherwise, e.g.
    "header says 1.2 MB, file has 0.6 MB: still being written or the bounce was
    interrupted"; a file that is not RIFF/RF64 WAVE gives (False, "not a WAV file").
    An odd-sized data chunk may or may not carry its pad byte: both are accepted.
    """
    info = read_riff_info(path)
    return info.ok, info.reason


# ---------------------------------------------------------------------------- reading


def _to_mono(data: np.ndarray) -> tuple[np.ndarray, str | None]:
    ch = data.shape[1]
    if ch == 1:
        return np.ascontiguousarray(data[:, 0]), None
    peaks = np.max(np.abs(data), axis=0) if data.shape[0] else np.zeros(ch)
    if ch == 2:
        left, right = data[:, 0], data[:, 1]
        pl, pr = float(peaks[0]), float(peaks[1])
        silent = 1e-5  # -100 dBFS
        if pl < silent and pr < silent:
            return np.ascontiguousarray(left), "stereo file, both channels silent: using the left channel"
        if pr < silent:
            return np.ascontiguousarray(left), "stereo file with a silent right channel: using the left channel"
        if pl < silent:
            return np.ascontiguousarray(right), "stereo file with a silent left channel: using the right channel"
        if float(np.max(np.abs(left - right))) <= 1e-4 * max(pl, pr):
            return np.ascontiguousarray(left), "stereo file with identical channels: using the left channel"
        mono = (0.5 * (left.astype(np.float64) + right)).astype(np.float32)
        return mono, "stereo file: using the mean of both channels"
    mono = data.astype(np.float64).mean(axis=1).astype(np.float32)
    return mono, f"{ch}-channel file: using the mean of all channels"


def read_capture(path) -> Loaded:
    """Read an audio file as float32 mono.

    Stereo is accepted: identical channels, or one silent channel, give the left (or
    the non-silent) channel; otherwise the mean of both. ``note`` says which.
    Raises :class:`CaptureReadError` for missing, empty, non-audio or corrupt files.
    """
    import soundfile as sf

    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CaptureReadError(f"{path.name} does not exist.") from None
    except OSError as exc:
        raise CaptureReadError(f"{path.name} cannot be opened ({exc.strerror or exc}).") from None
    if path.is_dir():
        raise CaptureReadError(f"{path.name} is a folder, not an audio file: remove it or rename it.")
    if size == 0:
        raise CaptureReadError("the file is empty (0 bytes): export the bounce again under this name.")
    try:
        with sf.SoundFile(str(path)) as f:
            sr = int(f.samplerate)
            channels = int(f.channels)
            subtype = str(f.subtype)
            fmt = str(f.format)
            data = f.read(dtype="float32", always_2d=True)
    except (RuntimeError, sf.SoundFileError, ValueError, TypeError, struct.error) as exc:
        msg = str(exc).split(":", 1)[-1].strip() or type(exc).__name__
        raise CaptureReadError(
            f"not a readable audio file ({msg}): export the bounce again as a WAV file under this name."
        ) from None
    except OSError as exc:
        raise CaptureReadError(f"{path.name} cannot be read ({exc.strerror or exc}).") from None
    if not np.all(np.isfinite(data)):
        raise CaptureReadError(
            "the file contains invalid samples (NaN or infinity): bounce it again as 24-bit PCM.")
    mono, note = _to_mono(data)
    return Loaded(audio=mono, sample_rate=sr, channels=channels, subtype=subtype, frames=int(data.shape[0]),
                  note=note, format=fmt)


from .fsutil import atomic_copy, atomic_file, atomic_write_bytes  # noqa: E402,F401  (re-exported)


def write_wav_atomic(path, audio, sample_rate: int, subtype: str = "PCM_24") -> None:
    """Write a WAV file atomically (see :func:`atomic_file`).

    ``audio`` is (frames,) or (frames, channels). PCM subtypes are clipped to [-1, 1].
    """
    import soundfile as sf

    a = np.asarray(audio)
    if subtype.upper().startswith("PCM"):
        a = np.clip(a, -1.0, 1.0)
    with atomic_file(path) as f:
        sf.write(f, a, int(sample_rate), subtype=subtype, format="WAV")
