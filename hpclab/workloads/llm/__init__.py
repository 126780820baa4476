"""LLM pretraining: 3D-parallel step time, memory, stragglers, failures, checkpoints and goodput.

>>> from hpclab.workloads import llm
>>> round(llm.transformer("gpt3-175b").params / 1e9, 1)
174.6
"""

from hpclab.workloads.llm.cluster import DEFAULT_TOPOLOGY, Cluster, cluster
from hpclab.workloads.llm.model import Transformer, model_names, transformer
from hpclab.workloads.llm.parallel import (RECOMPUTE, ZERO_STAGES, check_layout, default_efficiency,
                                           layouts, memory, search, step_time)
from hpclab.workloads.llm.plan import (BREAKDOWN, compare_fabrics, default_global_batch,
                                       goodput_requirements, plan)
from hpclab.workloads.llm.networks import fair_share, network_separation, network_setups
from hpclab.workloads.llm.reliability import (checkpoint_bytes, checkpoint_time, goodput,
                                              goodput_at_optimum, goodput_curve, interruptions, mtbf,
                                              simulate_goodput, young_daly)
from hpclab.workloads.llm.stragglers import straggler_step_time
from hpclab.workloads.llm.validation import calibrate, interruption_reference, reference, validate

__all__ = ["Transformer", "transformer", "model_names", "Cluster", "cluster", "DEFAULT_TOPOLOGY",
           "RECOMPUTE", "ZERO_STAGES", "check_layout", "layouts", "memory", "search", "step_time",
           "default_efficiency", "calibrate", "validate", "reference", "interruption_reference",
           "straggler_step_time", "checkpoint_bytes", "checkpoint_time", "mtbf", "young_daly",
           "goodput", "goodput_at_optimum", "simulate_goodput", "goodput_curve", "interruptions",
           "BREAKDOWN", "compare_fabrics", "default_global_batch", "goodput_requirements", "plan",
           "network_separation", "network_setups", "fair_share"]
