"""Experimental structures tried by the benchmarks, not part of the product (``dsp/``
knows nothing of them; the exported engine cannot run them)."""
