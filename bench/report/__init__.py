"""Reports from stored runs: the tidy frame, the charts and the Markdown/HTML writer."""
