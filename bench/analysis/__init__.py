"""Analysis of stored runs: compare two runs, follow history, recommend a strategy, show a run."""
