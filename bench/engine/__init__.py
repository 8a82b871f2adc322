"""The engine: expand the matrix, build and measure each cell, store typed records."""
