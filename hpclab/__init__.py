"""hpclab: a Jupyter-centric research workbench for cloud high-performance computing.

Layers (imports point down only): ``catalog`` (facts) -> ``network`` (fabrics, collectives) ->
``elastic`` (pools, policies, virtual clock) -> ``workloads`` (screening, CAE, LLM) ->
``platform`` (HPC + AI queues) -> ``viz`` (bokeh, ipywidgets) -> ``cli``.
"""

from hpclab._validate import HpclabError

__version__ = "0.1.0"
__all__ = ["HpclabError", "Scenario", "Result", "__version__"]


def __getattr__(name):  # Scenario and Result on first use, so `import hpclab` stays light
    if name == "Scenario":
        from hpclab.scenario import Scenario

        return Scenario
    if name == "Result":
        from hpclab.result import Result

        return Result
    raise AttributeError(f"module 'hpclab' has no attribute {name!r}")
