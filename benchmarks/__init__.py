"""Side-by-side benchmarks of dualcorn and its peers; run ``python -m benchmarks``."""
