#!/usr/bin/env python
"""
Aggregate a study folder's results.json files into tables (Markdown, CSV) and plots:
<study>/report/report.md, tables.md, results.csv and PNG plots (tools/run_study.py runs this at
the end of a study).

    tools/report.py output/studies/islam_toy
"""

import argparse
import sys

from contrastive_det.studies.report import write_report


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("study_dir", help="the study folder (it holds plan.json)")
    parser.add_argument(
        "--no-pictures", action="store_true", help="tables and plots only (no models rebuilt)"
    )
    args = parser.parse_args(argv)
    try:
        path = write_report(args.study_dir, pictures=not args.no_pictures)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    with open(path.replace("report.md", "tables.md")) as f:
        print(f.read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
