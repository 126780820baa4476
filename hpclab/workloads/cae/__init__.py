"""CAE workload: a real domain-decomposed stencil solver and its scaling model.

Real, small: :func:`heat` (2-D/3-D explicit heat equation) and :func:`poisson` (red-black SOR or
Jacobi) on an ``xarray.DataArray`` whose dask chunks are the sub-domains, halo exchange by
``dask.array.map_overlap``, compiled per-sub-domain kernels, temporal blocking; checked against
analytical solutions (:func:`heat_analytic`, :func:`manufactured_poisson`). :func:`run_heat`
runs it on any Dask client and times it.

Modelled, large: :func:`step_time` (compute + halo exchange + reductions per step on a fabric),
:func:`scaling` (strong/weak curves per fabric, 1 to 100,000 cores), :func:`time_to_solution`
(provisioning + data staging + solve), calibrated by :func:`measure_cost_per_cell`.
"""

from hpclab.workloads.cae.decomposition import HaloExchange, chunks_for, halo_exchange
from hpclab.workloads.cae.model import (FABRICS, PLACEMENT_HOPS, measure_cost_per_cell, process_grid,
                                        provisioning_time, scaling, smooth_cores, staging_time, step_time,
                                        time_to_solution)
from hpclab.workloads.cae.solver import (default_client, distribute, grid_coords, halo_per_step, heat, heat_analytic,
                                         heat_decay_rate, manufactured_poisson, poisson, run_heat, sine_mode, spacing,
                                         stable_dt)

__all__ = ["distribute", "heat", "heat_analytic", "heat_decay_rate", "stable_dt", "sine_mode", "grid_coords", "spacing",
           "manufactured_poisson", "poisson", "run_heat", "default_client", "halo_exchange", "halo_per_step",
           "HaloExchange",
           "chunks_for", "step_time", "scaling", "time_to_solution", "provisioning_time", "staging_time",
           "measure_cost_per_cell", "process_grid", "smooth_cores", "PLACEMENT_HOPS", "FABRICS"]
