"""Views: bokeh figure factories that take Datasets, and ipywidgets panels.

The only layer that imports bokeh or ipywidgets. Plots use inline resources (no CDN).
"""

from hpclab.viz._common import COLORS, as_widget, color, readable, setup_notebook

__all__ = ["setup_notebook", "as_widget", "readable", "COLORS", "color"]
