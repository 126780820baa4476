"""Views: bokeh figure factories that take Datasets, and ipywidgets panels.

The only layer that imports bokeh or ipywidgets. Plots use inline resources (no CDN).
"""

from hpclab.viz._common import as_widget, setup_notebook

__all__ = ["setup_notebook", "as_widget"]
