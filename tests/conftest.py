"""Shared fixtures. Dask clusters bind to 127.0.0.1 and are closed after each test module."""

import os

os.environ.setdefault("BOKEH_RESOURCES", "inline")
