"""Write docs/benchmarks.md (and the PNG plots in docs/img/) from one pytest-benchmark JSON file.

    python bench/report.py bench/results/latest.json [--out docs/benchmarks.md] [--img docs/img] [--partial]

Every comparison is a ratio of two medians measured in the same run. The work is in bench/reporting/: the catalogue
of benchmarks and goals, the results model, formatting, verdicts, prose, sections, plots and the document.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.reporting.document import main

if __name__ == "__main__":
    sys.exit(main())
