"""Reports from stored runs: the tidy frame, the charts and the Markdown/HTML writer."""

# Here rather than in frame.py so that the command line can offer them without loading
# pandas and matplotlib.
EXPORT_FORMATS = ("csv", "parquet", "json", "github-action-benchmark", "bencher")
# The formats of CI dashboards (report/ci_export.py): one benchmark per cell.
CI_FORMATS = ("github-action-benchmark", "bencher")
