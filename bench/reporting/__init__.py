"""docs/benchmarks.md from one pytest-benchmark JSON: the catalogue of benchmarks and goals, the results model,
formatting, the goal verdicts, the prose, the sections, the plots and the document. `bench/report.py` runs it."""
