"""hpclab: a Jupyter-centric research workbench for cloud high-performance computing.

Layers (imports point down only): ``catalog`` (facts) -> ``network`` (fabrics, collectives) ->
``elastic`` (pools, policies, virtual clock) -> ``workloads`` (screening, CAE, LLM) ->
``platform`` (HPC + AI queues) -> ``viz`` (bokeh, ipywidgets) -> ``cli``.
"""

from hpclab._validate import HpclabError

__version__ = "0.1.0"
__all__ = ["HpclabError", "__version__"]
