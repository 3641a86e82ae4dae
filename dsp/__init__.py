"""Differentiable grey-box DSP for UNIT Trainer.

This package knows nothing of the UI or the project folders: it takes audio arrays
and knob settings. Sub-modules are imported explicitly (``from dsp import filters``)
so that importing ``dsp`` itself stays cheap and never imports torch.
"""
