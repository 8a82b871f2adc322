"""Reports from stored runs: the tidy frame, the charts and the Markdown/HTML writer."""

# Here rather than in frame.py so that the command line can offer them without loading
# pandas and matplotlib.
EXPORT_FORMATS = ("csv", "parquet", "json")
