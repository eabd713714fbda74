"""
Timings only, imported by nothing in the library (``tools/benchmark.py`` runs them): the engine's
step against detectron2's bare ``SimpleTrainer`` and against a bare PyTorch loop (engine_step.py),
the classification probes, extraction and feature cache (classification.py), and our pretraining
loop against lightly's (lightly_compare.py). Figures: docs/benchmarks.md.
"""
