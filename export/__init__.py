"""Data package ``unit_export``: the C++ engine (``cpp/``) and the JUCE plugin project
(``juce/``) that ``unit-trainer export`` copies next to model.json. Installed as package
data so that ``export`` works from a wheel, not only from this repository (see
``dsp.export.CPP_DIR``). No Python code lives here."""
