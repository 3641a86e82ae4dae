"""Hosting a VST3 (or, on macOS, an Audio Unit) plugin for ``capture --plugin``.

pedalboard (Spotify's JUCE-based host) loads the plugin; it is imported only when a
plugin is loaded, so nothing else in the app pays for it. The rig file says which
plugin parameter each knob turns (see README "Capture straight from a plugin"):

* knob ``plugin_param``: the parameter's name, as the plugin shows it ("Drive") or as
  pedalboard spells it ("drive"; ``capture --plugin PATH --list-params`` lists both);
* knob ``plugin_range = [at minimum, at maximum]``: the plugin's values at the knob's
  ends, linear in between (default: the knob's own values); switches may list
  ``plugin_values``, one per position (numbers or the text of a choice);
* block ``plugin_params``: parameters held at one value for every capture of the block.

Values are set through the plugin's own value <-> text mapping (pedalboard asks the
plugin to parse the value's text, as a host's parameter field does), then read back:
a value the plugin did not take is an error, never a silently wrong capture.

Rendering: the project's test signal (mono) at the project's sample rate, followed by
``plugin_tail`` seconds of silence, from a cleared state (``reset=True``) for every
capture. A plugin that takes no mono input gets the signal on both inputs; a stereo
output is made mono by the rule the checks use for stereo bounces (identical channels
or one silent: that channel; otherwise the mean). pedalboard removes the latency the
plugin reports (as a DAW's bounce does); UNIT Trainer adds no compensation of its own
and measures what is left from the test signal's blips.
"""
from __future__ import annotations

import difflib
import math
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from .rig import Block, Knob

#: host block size (a DAW's bounce uses 128-1024; the result does not depend on it for a
#: well-behaved plugin)
BUFFER_SIZE = 1024
_TRUE = {"true", "on", "yes", "1", "enabled"}
_FALSE = {"false", "off", "no", "0", "disabled"}


class PluginError(ValueError):
    """The plugin cannot be used as the rig file asks (not found, not a plugin, an
    unknown parameter, a value it does not take): says what is wrong and how to fix it.
    ``param``: the rig's name of the parameter concerned, when there is one."""

    param: str | None = None


# ------------------------------------------------------------------------- value mapping


def plugin_value(knob: Knob, value: float) -> float | str | bool:
    """The plugin value for ``knob`` at ``value`` (knob units).

    ``plugin_values`` (switches): the entry of the position. ``plugin_range = [a, b]``:
    ``a`` at the knob's minimum, ``b`` at its maximum, linear in between. Neither: the
    knob's value itself (the plugin shows the knob's own numbers).
    """
    value = float(value)
    if knob.plugin_values is not None:
        pos = int(round(value))
        if pos not in knob.positions:
            raise PluginError(f"knob {knob.name!r}: {value:g} is not one of its positions {list(knob.positions)}.")
        return knob.plugin_values[knob.positions.index(pos)]
    if knob.plugin_range is None:
        return _clean(value)
    lo, hi = knob.plugin_range
    frac = (value - knob.minimum) / (knob.maximum - knob.minimum)
    return _clean(lo + frac * (hi - lo))


def _clean(x: float) -> float:
    """2.5000000000000004 -> 2.5 (values are written as text for the plugin to parse)."""
    return float(f"{x:.10g}")


@dataclass(frozen=True)
class Assignment:
    """One plugin parameter to set for a capture: the rig's name for it, the value, and
    where the rig asks for it (for messages)."""

    param: str
    value: float | str | bool
    where: str


def block_assignments(block: Block, setting: dict[str, float]) -> list[Assignment]:
    """Everything to set in the plugin for one capture of ``block``: the block's
    ``plugin_params`` first (they may choose a model or switch a section on), then every
    knob that has a ``plugin_param`` at its value in ``setting``."""
    out = [Assignment(name, value, f"block {block.id}: plugin_params {name!r}")
           for name, value in block.plugin_params]
    for knob in block.knobs:
        if knob.plugin_param is None:
            continue
        v = setting.get(knob.name, knob.held_value)
        out.append(Assignment(knob.plugin_param, plugin_value(knob, v),
                              f"knob {knob.name!r} of block {block.id} at {v:g} (plugin_param {knob.plugin_param!r})"))
    return out


def unmapped_knobs(block: Block) -> tuple[list[str], list[str]]:
    """(modelled knobs without plugin_param, fixed knobs without plugin_param)."""
    modelled = [k.name for k in block.knobs if k.modelled and k.plugin_param is None]
    fixed = [k.name for k in block.knobs if not k.modelled and k.plugin_param is None]
    return modelled, fixed


# ------------------------------------------------------------------------------ loading


def resolve_plugin_path(spec: str, base: Path) -> Path:
    """``~`` expanded; a relative path is relative to ``base`` (the project folder)."""
    p = Path(spec).expanduser()
    return p if p.is_absolute() else (Path(base) / p)


def _default_loader(path: str, plugin_name: str | None):
    try:
        import pedalboard  # noqa: PLC0415 - only the plugin path needs it
    except ImportError:
        raise PluginError("capture --plugin needs the pedalboard package (it hosts VST3 and AU plugins): "
                          "pip install pedalboard") from None
    return pedalboard.load_plugin(path, plugin_name=plugin_name)


def _norm(name: str) -> str:
    """pedalboard's Python spelling of a parameter name: 'Gate Range (dB)' -> 'gate_range_db'."""
    s = name.lower().strip().replace("#", "_sharp").replace("♯", "_sharp").replace("♭", "_flat")
    s = re.sub(r"[^a-z0-9]+", "_", s)
    return s.strip("_")


class HostedPlugin:
    """A loaded plugin: find parameters by the rig's names, set and verify values, render."""

    def __init__(self, path: Path, plugin_name: str | None = None,
                 loader: Callable[[str, str | None], Any] | None = None):
        self.path = Path(path)
        if not self.path.exists():
            raise PluginError(
                f"{self.path}: no such plugin. Give the path of the plugin's .vst3 bundle (or, on macOS, its "
                ".component), e.g. \"/Library/Audio/Plug-Ins/VST3/Helix Native.vst3\" or ~/.vst3/Name.vst3.")
        try:
            self.plugin = (loader or _default_loader)(str(self.path), plugin_name)
        except PluginError:
            raise
        except Exception as exc:  # noqa: BLE001 - pedalboard raises ImportError/RuntimeError/ValueError
            raise PluginError(self._load_failure(exc, plugin_name)) from None
        if getattr(self.plugin, "is_instrument", False) and not getattr(self.plugin, "is_effect", True):
            raise PluginError(f"{self.path} is an instrument, not an effect: it has no audio input to capture.")
        self.name = str(getattr(self.plugin, "name", "") or self.path.stem)
        self._params: dict[str, Any] | None = None
        self._channels: int | None = None  # input channels the plugin accepted

    def _load_failure(self, exc: Exception, plugin_name: str | None) -> str:
        text = " ".join(str(exc).split())
        text = re.sub(r"Failed to load plugin as [^.]*\. Errors were: ", "", text)
        text = re.sub(r"\b(VST3Plugin|AudioUnitPlugin): ", "", text).rstrip(".")
        if "plugin_name" in text or "contains" in text and "plugins" in text:
            names = self._names_in_file()
            which = f" Its plugins: {', '.join(repr(n) for n in names)}." if names else ""
            return (f"{self.path} holds several plugins: add plugin_name = \"...\" to the block in rig.toml to "
                    f"choose one.{which}")
        if plugin_name and "name" in text.lower():
            names = self._names_in_file()
            which = f" Its plugins: {', '.join(repr(n) for n in names)}." if names else ""
            return f"{self.path} has no plugin named {plugin_name!r} (plugin_name).{which}"
        kinds = "a VST3 bundle (.vst3)" + (" or an Audio Unit (.component)" if platform.system() == "Darwin" else "")
        if len(text) > 300:
            text = text[:300] + "..."
        return (f"{self.path} could not be loaded as a plugin ({text}). Give {kinds} built for this machine "
                f"({platform.system()} {platform.machine()}); a plugin that needs an activation or a licence "
                "must be set up in a DAW first.")

    def _names_in_file(self) -> list[str]:
        try:
            import pedalboard  # noqa: PLC0415

            for cls in (getattr(pedalboard, "VST3Plugin", None), getattr(pedalboard, "AudioUnitPlugin", None)):
                if cls is None:
                    continue
                try:
                    return list(cls.get_plugin_names_for_file(str(self.path)))
                except Exception:  # noqa: BLE001
                    continue
        except ImportError:
            pass
        return []

    # -------------------------------------------------------------------- parameters
    @property
    def params(self) -> dict[str, Any]:
        if self._params is None:
            self._params = dict(self.plugin.parameters)
        return self._params

    def _display(self, key: str) -> str:
        return str(getattr(self.params[key], "name", key))

    def find(self, name: str, where: str) -> str:
        """pedalboard's key of the parameter the rig calls ``name``: the key itself, the
        plugin's own name (exact, then ignoring case), or the same after pedalboard's
        spelling rules. Unknown or ambiguous: a PluginError listing the names."""
        params = self.params
        if name in params:
            return name
        for test in (lambda k: self._display(k) == name,
                     lambda k: self._display(k).casefold() == name.casefold(),
                     lambda k: _norm(self._display(k)) == _norm(name) or k == _norm(name)):
            hits = [k for k in params if test(k)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                listed = ", ".join(f"{k} (\"{self._display(k)}\")" for k in hits)
                raise PluginError(f"{where}: {name!r} matches several parameters of {self.name}: {listed}; "
                                  "write the first name of the one you mean.")
        close = difflib.get_close_matches(_norm(name), list(params), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise PluginError(
            f"{where}: {self.name} has no parameter {name!r}.{hint} Its parameters: {self.parameter_list()}. "
            "Write one of these names (or the plugin's own name for it) in rig.toml; "
            "`unit-trainer capture DIR --plugin PATH --list-params` shows them with their ranges.")

    def parameter_list(self, limit: int = 80) -> str:
        keys = list(self.params)
        shown = [k if _norm(self._display(k)) == k else f"{k} (\"{self._display(k)}\")" for k in keys[:limit]]
        more = f", ... and {len(keys) - limit} more" if len(keys) > limit else ""
        return ", ".join(shown) + more if shown else "(none)"

    def describe(self) -> list[str]:
        """One line per parameter: pedalboard's name, the plugin's name, type and range, value now."""
        lines = []
        for key, p in self.params.items():
            kind = getattr(p, "type", float)
            try:
                now = getattr(self.plugin, key)
            except Exception:  # noqa: BLE001
                now = "?"
            if kind is float:
                step = getattr(p, "step_size", None)
                rng = f"{_g(p.min_value)} to {_g(p.max_value)}" + (f", step {_g(step)}" if step else "")
                label = getattr(p, "label", None)
                rng += f" {label}" if label else ""
                shown = _g(float(now)) if now != "?" else now
            elif kind is bool:
                rng, shown = "on/off", ("on" if bool(now) else "off") if now != "?" else now
            else:
                vals = list(getattr(p, "valid_values", []))
                rng = "one of " + ", ".join(f"\"{v}\"" for v in vals[:12]) + (", ..." if len(vals) > 12 else "")
                shown = f"\"{now}\""
            lines.append(f"{key:<28} \"{self._display(key)}\"  {rng}  (now {shown})")
        return lines

    def _coerce(self, key: str, value, where: str):
        """The value in the parameter's type, checked against its range / choices."""
        p = self.params[key]
        kind = getattr(p, "type", float)
        disp = self._display(key)
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, (int, float)) and float(value) in (0.0, 1.0):
                return bool(value)
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            raise PluginError(f"{where}: \"{disp}\" is an on/off parameter; give true or false, not {value!r}.")
        if kind is float:
            if isinstance(value, bool):
                raise PluginError(f"{where}: \"{disp}\" takes numbers ({_g(p.min_value)} to {_g(p.max_value)}), "
                                  f"not {value!r}.")
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise PluginError(f"{where}: \"{disp}\" takes numbers ({_g(p.min_value)} to {_g(p.max_value)}), "
                                  f"not the text {value!r}.") from None
            lo, hi = p.min_value, p.max_value
            eps = 1e-9 * max(1.0, abs(hi - lo)) if lo is not None and hi is not None else 0.0
            if lo is not None and hi is not None and not (lo - eps <= v <= hi + eps):
                raise PluginError(
                    f"{where}: {v:g} is outside the range of \"{disp}\" ({_g(lo)} to {_g(hi)}"
                    f"{(' ' + p.label) if getattr(p, 'label', None) else ''}); set plugin_range (or the "
                    "plugin_params value) in the plugin's units.")
            return min(max(v, lo), hi) if lo is not None and hi is not None else v
        # a choice: its text
        valid = [str(v) for v in getattr(p, "valid_values", [])]
        candidates = [str(value)]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            candidates += [f"{float(value):g}", str(int(value)) if float(value).is_integer() else str(value)]
        for c in candidates:
            if c in valid:
                return c
        folded = {v.casefold(): v for v in valid}
        if str(value).casefold() in folded:
            return folded[str(value).casefold()]
        shown = ", ".join(f"\"{v}\"" for v in valid[:30]) + (", ..." if len(valid) > 30 else "")
        raise PluginError(f"{where}: {value!r} is not a value of \"{disp}\"; it takes one of: {shown}.")

    def check(self, assignments: Iterable[Assignment]) -> list[tuple[str, Any, str]]:
        """Resolve names and check values without touching the plugin: [(key, value, where)]."""
        out = []
        for a in assignments:
            try:
                key = self.find(a.param, a.where)
                out.append((key, self._coerce(key, a.value, a.where), a.where))
            except PluginError as exc:
                exc.param = a.param
                raise
        return out

    def apply(self, assignments: Iterable[Assignment]) -> None:
        """Set every value, then read each back: a value the plugin did not take (or one a
        later parameter changed) is a PluginError."""
        resolved = self.check(assignments)
        for key, value, where in resolved:
            try:
                setattr(self.plugin, key, value)
            except Exception as exc:  # noqa: BLE001 - pedalboard's ValueError says why
                raise PluginError(f"{where}: {self.name} did not accept {value!r} for \"{self._display(key)}\" "
                                  f"({' '.join(str(exc).split())[:300]}).") from None
        for key, value, where in resolved:
            self._verify(key, value, where)

    def _verify(self, key: str, value, where: str) -> None:
        p = self.params[key]
        got = getattr(self.plugin, key)
        kind = getattr(p, "type", float)
        disp = self._display(key)
        if kind is float:
            got_f = float(got)
            step = getattr(p, "step_size", None) or getattr(p, "approximate_step_size", None) or 0.0
            span = abs((p.max_value or 0.0) - (p.min_value or 0.0))
            tol = max(0.5 * float(step), 1e-3 * span) + 1e-9
            if not math.isfinite(got_f) or abs(got_f - float(value)) > tol:
                raise PluginError(
                    f"{where}: set \"{disp}\" to {float(value):g} but the plugin reports {got_f:g} (more than "
                    f"{tol:.3g} off): it did not take the value. Check the value against the range the plugin "
                    "shows (--list-params) and that no other parameter locks this one.")
        elif kind is bool:
            if bool(got) != bool(value):
                raise PluginError(f"{where}: set \"{disp}\" {'on' if value else 'off'} but the plugin reports "
                                  f"{'on' if bool(got) else 'off'}: it did not take the value.")
        elif str(got) != str(value):
            raise PluginError(f"{where}: set \"{disp}\" to \"{value}\" but the plugin reports \"{got}\": it did "
                              "not take the value.")

    # ------------------------------------------------------------------------ audio
    @property
    def input_channels(self) -> int | None:
        """1 or 2 once the plugin has processed audio (see :meth:`probe`)."""
        return self._channels

    def probe(self, sample_rate: int) -> int:
        """Find the input layout the plugin takes (mono first, then stereo) on a short
        silence; returns the number of input channels."""
        self.render(np.zeros(256, np.float32), sample_rate, 0.0)
        return int(self._channels or 1)

    def render(self, x: np.ndarray, sample_rate: int, tail_s: float) -> tuple[np.ndarray, str | None]:
        """The plugin's output for the mono signal ``x`` plus ``tail_s`` seconds of silence,
        from a cleared state; mono float32 and a note on how channels were handled."""
        from .audio_io import _to_mono

        xin = np.concatenate([np.asarray(x, np.float32), np.zeros(int(round(tail_s * sample_rate)), np.float32)])
        tries = [self._channels] if self._channels else [1, 2]
        first_error = None
        y = None
        for ch in tries:
            try:
                y = self.plugin.process(np.tile(xin, (ch, 1)), float(sample_rate), buffer_size=BUFFER_SIZE,
                                        reset=True)
            except Exception as exc:  # noqa: BLE001 - a layout the plugin refuses: try the next
                first_error = first_error or exc
                continue
            self._channels = ch
            break
        if y is None:
            raise PluginError(f"{self.name} could not process the test signal at {sample_rate} Hz, mono or stereo "
                              f"({' '.join(str(first_error).split())[:300]}).")
        y = np.asarray(y, dtype=np.float32)
        if y.ndim == 1:
            y = y[None, :]
        if not np.all(np.isfinite(y)):
            raise PluginError(f"{self.name} produced invalid samples (NaN or infinity) at this setting.")
        mono, note = _to_mono(np.ascontiguousarray(y.T))
        if note:
            note = note.replace("stereo file", "stereo output").replace("-channel file", "-channel output")
        return mono, note


def _g(v) -> str:
    return "?" if v is None else f"{float(v):g}"


__all__ = ["Assignment", "HostedPlugin", "PluginError", "block_assignments", "plugin_value",
           "resolve_plugin_path", "unmapped_knobs"]
