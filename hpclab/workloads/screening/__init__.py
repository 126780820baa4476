"""A real RDKit virtual screen, run in batches on any Dask cluster, and its campaign model.

>>> from hpclab.workloads import screening
>>> ds = screening.screen("nci5k", "cdk2", size=300, workers=2)       # doctest: +SKIP
>>> screening.quality(ds).roc_auc.sel(stage="2d").item() > 0.5        # doctest: +SKIP
True

Modules: :mod:`.library` (data shipped with RDKit), :mod:`.pipeline` (the per-molecule stages),
:mod:`.runner` (batches, Parquet, resume, preemption), :mod:`.metrics` (ROC AUC, enrichment),
:mod:`.analysis` (quality, cost and throughput Datasets), :mod:`.campaign` (the scaled-up
campaign: cores, makespan and cost by a deadline, spot versus on-demand, one zone or global,
estimated by :func:`estimate_campaign` and run on the virtual clock by :func:`simulate_campaign`).
"""

from hpclab.workloads.screening.analysis import (SCORING_STAGES, quality, stage_costs, stage_scores,
                                                 throughput)
from hpclab.workloads.screening.campaign import (ZONE_SCOPES, allocation, article_scenario,
                                                 campaign_inputs, cost_map, cpu_types,
                                                 estimate_campaign, pareto_front, simulate_campaign)
from hpclab.workloads.screening.campaign import campaign  # noqa: F401  deprecated alias (the submodule's name too)
from hpclab.workloads.screening.library import (LIBRARIES, TARGETS, Target, data_file, load_library,
                                                load_target, tpsa_reference)
from hpclab.workloads.screening.metrics import (enrichment_curve, enrichment_factor, roc_auc,
                                                roc_curve)
from hpclab.workloads.screening.pipeline import (STAGES, ScreenParams, overlay_3d, prepare,
                                                 properties, screen_batch, similarity_2d)
from hpclab.workloads.screening.runner import RunStats, local_client, run_screen, screen, to_dataset

__all__ = ["LIBRARIES", "TARGETS", "Target", "data_file", "load_library", "load_target",
           "tpsa_reference", "STAGES", "ScreenParams", "prepare", "properties", "similarity_2d",
           "overlay_3d", "screen_batch", "run_screen", "screen", "RunStats", "to_dataset",
           "local_client", "roc_auc", "enrichment_factor", "enrichment_curve", "roc_curve",
           "SCORING_STAGES", "stage_scores", "quality", "stage_costs", "throughput",
           "campaign_inputs", "estimate_campaign", "simulate_campaign", "cost_map", "allocation", "pareto_front", "article_scenario",
           "cpu_types", "ZONE_SCOPES"]
