"""The staged per-molecule pipeline of a virtual screen, with each stage's time recorded.

Stages, in order (as a real ligand-based screen runs):

1. ``prepare`` - parse the SMILES and standardise it (``rdMolStandardize``: cleanup, keep the
   largest fragment, neutralise charges). An unparsable SMILES is counted (status
   ``invalid_smiles``), never fatal.
2. ``filter`` - Lipinski's rule of five (Lipinski et al., Adv. Drug Deliv. Rev. 23, 3-25, 1997:
   MW <= 500, logP <= 5, NH+OH <= 5, N+O <= 10; at most one violation passes) with Wildman-Crippen
   logP standing in for CLogP; PAINS substructure alerts (Baell & Holloway, J. Med. Chem. 53, 2719,
   2010) from RDKit's ``FilterCatalog``. TPSA (Ertl et al. 2000) is recorded.
3. ``2d`` - Morgan fingerprints (radius 2, 2048 bits, ``rdFingerprintGenerator``) and the maximum
   Tanimoto similarity to the reference actives: ``T(a, b) = |a & b| / |a | b|``.
4. ``3d`` - only for survivors (filters passed and 2D similarity >= ``threshold_3d``): ETKDGv3
   conformers (Riniker & Landrum 2015), MMFF94 minimisation, Open3DAlign (Tosco et al. 2011,
   ``rdMolAlign.GetO3A``, MMFF94 atom types) onto the reference ligand's shipped 3D pose. The
   score is the O3A alignment score of the best conformer (unitless, higher is better); the
   shape Tanimoto similarity ``1 - ShapeTanimotoDist`` of that overlay is recorded beside it.

:func:`screen_batch` runs them on a list of molecules and returns one row per molecule.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from hpclab._validate import HpclabError, check_choice, check_nonnegative, check_positive, check_range
from hpclab.workloads.screening.library import TARGETS, load_target

__all__ = ["ScreenParams", "STAGES", "screen_batch", "prepare", "properties", "similarity_2d",
           "overlay_3d", "RESULT_COLUMNS"]

#: the stages whose per-molecule time is recorded (column ``t_<stage>``, seconds)
STAGES = ("prepare", "filter", "2d", "3d")

RESULT_COLUMNS = ["id", "is_active", "status", "smiles_std", "standardised", "heavy_atoms", "mw",
                  "logp", "hbd", "hba", "tpsa", "ro5_violations", "pass_ro5", "pains",
                  "score_2d", "to_3d", "score_3d", "shape_3d", "n_conformers",
                  "t_prepare", "t_filter", "t_2d", "t_3d", "finished_at", "worker"]


@dataclass(frozen=True)
class ScreenParams:
    """Everything that decides a screen's result (a resumed screen must use the same).

    Parameters
    ----------
    target : {'cdk2', 'egfr'}
    n_queries : int
        Reference ligands (the first ones in the target's file).
    fp_radius, fp_size : int
        Morgan fingerprint radius (1 to 16) and length (1 to 2^20 bits); 2 and 2048: ECFP4-like.
    filters : bool
        Run the property-filter stage (rule of five, PAINS, TPSA). Without it every parsed
        molecule may reach the 3D stage on its 2D score alone.
    max_ro5_violations : int
        Rule-of-five violations allowed (Lipinski: more than one flags poor absorption).
    reject_pains : bool
        Whether a PAINS alert stops a molecule before the 3D stage.
    threshold_3d : float
        Minimum max-Tanimoto for a molecule to go on to the 3D stage (above 1: no 3D stage).
    n_conformers : int
        ETKDG conformers per molecule in the 3D stage, 1 to 1,000.
    mmff_iterations : int
        MMFF minimisation steps per conformer, 1 to 10^5.
    seed : int
        ETKDG random seed, 0 to 2^31 - 1 (the 3D stage is reproducible).
    """

    target: str = "cdk2"
    n_queries: int = 1
    fp_radius: int = 2
    fp_size: int = 2048
    filters: bool = True
    max_ro5_violations: int = 1
    reject_pains: bool = True
    threshold_3d: float = 0.15
    n_conformers: int = 3
    mmff_iterations: int = 200
    seed: int = 42

    def __post_init__(self):
        check_choice("target", self.target, TARGETS)
        check_positive("n_queries", self.n_queries, integer=True)
        check_range("fp_radius", self.fp_radius, 1, 16, integer=True)
        check_range("fp_size", self.fp_size, 1, 2**20, integer=True)
        check_nonnegative("max_ro5_violations", self.max_ro5_violations, integer=True)
        if not isinstance(self.filters, bool):
            raise HpclabError(f"filters must be true or false, got {self.filters!r}")
        if not isinstance(self.reject_pains, bool):
            raise HpclabError(f"reject_pains must be true or false, got {self.reject_pains!r}")
        check_nonnegative("threshold_3d", self.threshold_3d)
        check_range("n_conformers", self.n_conformers, 1, 1000, integer=True)
        check_range("mmff_iterations", self.mmff_iterations, 1, 10**5, integer=True)
        check_range("seed", self.seed, 0, 2**31 - 1, integer=True)  # RDKit seeds are 32-bit ints

    def as_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- per-process tools (cached)

@lru_cache(maxsize=1)
def _tools():
    from rdkit import RDLogger, rdBase
    from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams
    from rdkit.Chem.MolStandardize import rdMolStandardize

    RDLogger.DisableLog("rdApp.*")
    # those switches are one state for the whole process, and RDKit's 3D code (the conformer
    # embedder) turns them back on now and then when it runs in another thread (pool instances
    # as threads in one process); the standardiser then prints its INFO lines. So RDKit's
    # messages also go through the "rdkit" Python logger, which passes errors only.
    rdBase.LogToPythonLogger()
    logging.getLogger("rdkit").setLevel(logging.ERROR)
    fparams = FilterCatalogParams()
    fparams.AddCatalog(FilterCatalogParams.FilterCatalogs.PAINS)
    return {"pains": FilterCatalog(fparams),
            "largest": rdMolStandardize.LargestFragmentChooser(preferOrganic=True),
            "uncharger": rdMolStandardize.Uncharger()}


@lru_cache(maxsize=8)
def _reference(params: ScreenParams):
    """The reference actives, prepared once per process: fingerprints and a 3D pose."""
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator
    from rdkit.Chem import rdForceFieldHelpers as ff

    tgt = load_target(params.target, params.n_queries)
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=params.fp_radius, fpSize=params.fp_size)
    fps = [gen.GetFingerprint(prepare(smi)[0]) for _, smi in tgt.queries]
    pose = Chem.MolFromMolBlock(tgt.query_molblocks[0], removeHs=False)
    pose_props = ff.MMFFGetMoleculeProperties(pose)
    return {"generator": gen, "fps": fps, "pose": pose, "pose_props": pose_props,
            "query_ids": [i for i, _ in tgt.queries]}


# ---------------------------------------------------------------- the stages

def prepare(smiles: str):
    """Parse and standardise; return ``(mol or None, changed)``.

    ``changed`` says whether standardisation altered the canonical SMILES.
    """
    from rdkit import Chem
    from rdkit.Chem.MolStandardize import rdMolStandardize

    mol = Chem.MolFromSmiles(smiles) if isinstance(smiles, str) and smiles.strip() else None
    if mol is None:
        return None, False
    tools = _tools()
    before = Chem.MolToSmiles(mol)
    try:
        std = rdMolStandardize.Cleanup(mol)
        std = tools["largest"].choose(std)
        std = tools["uncharger"].uncharge(std)
        Chem.SanitizeMol(std)
    except Exception:  # noqa: BLE001 - RDKit raises several types; keep the parsed molecule
        return mol, False
    return std, Chem.MolToSmiles(std) != before


def properties(mol, max_violations: int = 1) -> dict:
    """Rule-of-five descriptors, the verdict, PAINS alert and TPSA of one molecule.

    ``pass_ro5`` is true when at most ``max_violations`` of MW <= 500 Da, logP <= 5,
    NH+OH <= 5, N+O <= 10 are broken (Lipinski et al. 1997).
    """
    from rdkit.Chem import Crippen, Descriptors, Lipinski, rdMolDescriptors

    mw = Descriptors.MolWt(mol)
    logp = Crippen.MolLogP(mol)
    hbd = Lipinski.NHOHCount(mol)
    hba = Lipinski.NOCount(mol)
    violations = int(mw > 500) + int(logp > 5) + int(hbd > 5) + int(hba > 10)
    return {"heavy_atoms": mol.GetNumHeavyAtoms(), "mw": mw, "logp": logp, "hbd": hbd, "hba": hba,
            "tpsa": rdMolDescriptors.CalcTPSA(mol), "ro5_violations": violations,
            "pass_ro5": violations <= max_violations, "pains": _tools()["pains"].HasMatch(mol)}


def similarity_2d(mol, params: ScreenParams) -> float:
    """Maximum Tanimoto similarity of ``mol``'s Morgan fingerprint to the reference actives."""
    from rdkit import DataStructs

    ref = _reference(params)
    fp = ref["generator"].GetFingerprint(mol)
    return float(max(DataStructs.BulkTanimotoSimilarity(fp, ref["fps"])))


def overlay_3d(mol, params: ScreenParams) -> tuple[float, float, int]:
    """Best O3A score (and that overlay's shape Tanimoto) of ``mol``'s conformers on the reference pose.

    Returns ``(nan, nan, 0)`` when no conformer can be embedded.
    """
    from rdkit import Chem
    from rdkit.Chem import rdDistGeom, rdMolAlign, rdShapeHelpers
    from rdkit.Chem import rdForceFieldHelpers as ff

    ref = _reference(params)
    molh = Chem.AddHs(mol)
    etkdg = rdDistGeom.ETKDGv3()
    etkdg.randomSeed = params.seed
    cids = list(rdDistGeom.EmbedMultipleConfs(molh, params.n_conformers, etkdg))
    if not cids:
        return float("nan"), float("nan"), 0
    props = ff.MMFFGetMoleculeProperties(molh)
    if props is not None:
        ff.MMFFOptimizeMoleculeConfs(molh, maxIters=params.mmff_iterations)
    best, best_shape = -np.inf, float("nan")
    for cid in cids:
        if props is not None:
            o3a = rdMolAlign.GetO3A(molh, ref["pose"], props, ref["pose_props"], prbCid=cid)
        else:  # no MMFF types (rare elements): Crippen contributions instead
            o3a = rdMolAlign.GetCrippenO3A(molh, ref["pose"], prbCid=cid)
        o3a.Align()
        score = o3a.Score()
        if score > best:
            best = score
            best_shape = 1.0 - rdShapeHelpers.ShapeTanimotoDist(molh, ref["pose"], confId1=cid)
    return float(best), float(best_shape), len(cids)


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return f"local@{socket.gethostname()}"


@lru_cache(maxsize=8)
def _warm_up(params: ScreenParams) -> None:
    from rdkit import Chem

    _reference(params)
    mol = Chem.MolFromSmiles("c1ccccc1O")
    properties(mol)
    similarity_2d(mol, params)


def screen_batch(ids, smiles, is_active, params: ScreenParams) -> pd.DataFrame:
    """Run every stage on a batch of molecules; one row per molecule (columns ``RESULT_COLUMNS``).

    Per-stage wall times ``t_<stage>`` are in seconds (NaN when the stage did not run);
    ``finished_at`` is the Unix time the molecule finished.
    """
    from rdkit import Chem

    pc = time.perf_counter
    worker = _worker_name()
    _warm_up(params)  # build caches outside the timed region
    rows = []
    for ident, smi, active in zip(ids, smiles, is_active):
        row = dict.fromkeys(RESULT_COLUMNS, np.nan)
        row.update(id=ident, is_active=bool(active), worker=worker, to_3d=False, pains=False,
                   pass_ro5=False, standardised=False, smiles_std="", n_conformers=0)
        t0 = pc()
        mol, changed = prepare(smi)
        row["t_prepare"] = pc() - t0
        if mol is None:
            row["status"] = "invalid_smiles"
        else:
            row["standardised"] = changed
            row["smiles_std"] = Chem.MolToSmiles(mol)
            if params.filters:
                t0 = pc()
                row.update(properties(mol, params.max_ro5_violations))
                row["t_filter"] = pc() - t0
            else:
                row.update(pass_ro5=True, pains=False, heavy_atoms=mol.GetNumHeavyAtoms())
            t0 = pc()
            row["score_2d"] = similarity_2d(mol, params)
            row["t_2d"] = pc() - t0
            passed = row["pass_ro5"] and not (params.reject_pains and row["pains"])
            row["to_3d"] = bool(passed and row["score_2d"] >= params.threshold_3d)
            row["status"] = "ok"
            if row["to_3d"]:
                t0 = pc()
                try:
                    row["score_3d"], row["shape_3d"], row["n_conformers"] = overlay_3d(mol, params)
                except Exception:  # noqa: BLE001 - a molecule RDKit cannot handle in 3D is counted
                    row["score_3d"] = np.nan
                row["t_3d"] = pc() - t0
                if not np.isfinite(row["score_3d"]):
                    row["status"] = "embed_failed"
        row["finished_at"] = time.time()
        rows.append(row)
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    for col in ("heavy_atoms", "hbd", "hba", "ro5_violations", "n_conformers"):
        df[col] = df[col].fillna(-1).astype("int64")
    for col in ("is_active", "standardised", "pass_ro5", "pains", "to_3d"):
        df[col] = df[col].astype(bool)
    return df
