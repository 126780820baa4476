"""The screening library and the targets, read from files that RDKit's wheel ships.

Nothing is downloaded: the NCI set (``RDConfig.RDDataDir/NCI/first_5K.smi``, 4,999 molecules) is
the library, and the known actives of a target are hidden among it:

* ``cdk2``: 47 CDK2 ligands, ``RDConfig.RDContribDir/Fastcluster/testdata/cdk2.sdf``;
* ``egfr``: 365 EGFR ligands, ``RDConfig.RDContribDir/PBF/testData/egfr.sdf``.

The first ``n_queries`` ligands of a target (file order) are the *reference actives* the screen
compares against; the others are added to the library as the *hidden actives* the screen should
find.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from hpclab._validate import HpclabError, check_choice, check_nonnegative, check_positive

__all__ = ["LIBRARIES", "TARGETS", "Target", "data_file", "load_target", "load_library",
           "library_fingerprint"]

#: library name -> (RDConfig directory attribute, path inside it)
LIBRARIES = {"nci5k": ("RDDataDir", ("NCI", "first_5K.smi"))}
#: target name -> (RDConfig directory attribute, path inside it)
TARGETS = {
    "cdk2": ("RDContribDir", ("Fastcluster", "testdata", "cdk2.sdf")),
    "egfr": ("RDContribDir", ("PBF", "testData", "egfr.sdf")),
}
#: reference values shipped beside the library (Daylight TPSA, Ertl's tpsa.c)
TPSA_REFERENCE = ("RDDataDir", ("NCI", "first_5k.tpsa.csv"))


def data_file(where: tuple[str, tuple[str, ...]]) -> Path:
    """Locate a file shipped with RDKit through ``rdkit.RDConfig`` (never a hard-coded path).

    Raises
    ------
    FileNotFoundError
        One line naming the file and the RDConfig directory searched.
    """
    from rdkit import RDConfig

    attr, parts = where
    base = getattr(RDConfig, attr, None)
    if not base:
        raise FileNotFoundError(f"rdkit.RDConfig.{attr} is not set; this RDKit build does not ship "
                                f"{'/'.join(parts)} (install the 'rdkit' wheel from PyPI)")
    path = Path(base).joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"{'/'.join(parts)} not found under RDConfig.{attr} ({base}); the "
                                "screening data ship with the 'rdkit' wheel from PyPI")
    return path


@dataclass(frozen=True)
class Target:
    """A target's known actives: ``queries`` (reference) and ``hidden`` (added to the library).

    Each is a tuple of ``(id, smiles)``; ``query_molblocks`` keeps the reference ligands' shipped
    3D coordinates (with hydrogens) for the overlay stage.
    """

    name: str
    queries: tuple[tuple[str, str], ...]
    hidden: tuple[tuple[str, str], ...]
    query_molblocks: tuple[str, ...]


@lru_cache(maxsize=8)
def load_target(name: str = "cdk2", n_queries: int = 1) -> Target:
    """Read a target's ligands; the first ``n_queries`` become the reference actives.

    Parameters
    ----------
    name : {'cdk2', 'egfr'}
    n_queries : int
        How many ligands (in file order) the screen uses as its reference; the rest are hidden.
    """
    from rdkit import Chem, RDLogger

    check_choice("target", name, TARGETS)
    n_queries = check_positive("n_queries", n_queries, integer=True)
    RDLogger.DisableLog("rdApp.*")
    path = data_file(TARGETS[name])
    mols = [m for m in Chem.SDMolSupplier(str(path), removeHs=False) if m is not None]
    if n_queries >= len(mols):
        raise HpclabError(f"n_queries must be < {len(mols)} (the ligands of {name}), got {n_queries}")
    ids = [f"{name}:{m.GetProp('_Name') or i}" for i, m in enumerate(mols)]
    smiles = [Chem.MolToSmiles(Chem.RemoveHs(m)) for m in mols]
    pairs = tuple(zip(ids, smiles))
    return Target(name=name, queries=pairs[:n_queries], hidden=pairs[n_queries:],
                  query_molblocks=tuple(Chem.MolToMolBlock(m) for m in mols[:n_queries]))


@lru_cache(maxsize=4)
def _read_library(name: str) -> pd.DataFrame:
    path = data_file(LIBRARIES[name])
    rows = []
    with open(path) as fh:
        for number, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields:
                continue
            ident = fields[1] if len(fields) > 1 else str(number)
            rows.append((f"{name}:{ident}", fields[0]))
    return pd.DataFrame(rows, columns=["id", "smiles"])


def load_library(library: str = "nci5k", target: str | None = "cdk2", *, size: int | None = None,
                 n_queries: int = 1, seed: int = 0, extra_smiles: list[str] | None = None) -> pd.DataFrame:
    """The molecules to screen: library decoys with the target's hidden actives mixed in.

    Parameters
    ----------
    library : {'nci5k'}
    target : {'cdk2', 'egfr'} or None
        Whose hidden actives to add (None: the library only).
    size : int, optional
        Keep a random subset of ``size`` library molecules (seeded), 1 to the library's size (nci5k:
        4,999); all hidden actives are kept.
    n_queries : int
        Reference ligands held out of the library (see :func:`load_target`).
    seed : int
        Seed of the subset draw and of the shuffle that hides the actives.
    extra_smiles : list of str, optional
        More SMILES to append (e.g. deliberately invalid ones), ids ``extra:<n>``.

    Returns
    -------
    pandas.DataFrame
        Columns ``id``, ``smiles``, ``is_active`` (bool), in a seeded shuffled order.
    """
    check_choice("library", library, LIBRARIES)
    seed = check_nonnegative("seed", seed, integer=True)
    decoys = _read_library(library)
    if size is not None:
        size = check_positive("size", size, integer=True)
        if size > len(decoys):
            raise HpclabError(f"size must be at most {len(decoys):,} (the molecules of library "
                              f"{library!r}), got {size:,}")
        if size < len(decoys):
            pick = np.sort(np.random.default_rng(seed).choice(len(decoys), size, replace=False))
            decoys = decoys.iloc[pick]
    decoys = decoys.assign(is_active=False)
    parts = [decoys]
    if target is not None:
        tgt = load_target(target, n_queries)
        parts.append(pd.DataFrame(list(tgt.hidden), columns=["id", "smiles"]).assign(is_active=True))
    if extra_smiles:
        parts.append(pd.DataFrame({"id": [f"extra:{i}" for i in range(len(extra_smiles))],
                                   "smiles": list(extra_smiles), "is_active": False}))
    lib = pd.concat(parts, ignore_index=True)
    order = np.random.default_rng(seed + 1).permutation(len(lib))
    return lib.iloc[order].reset_index(drop=True)


def library_fingerprint(lib: pd.DataFrame) -> str:
    """A short hash of the molecules and their order (a resumed screen must see the same list)."""
    h = hashlib.sha256()
    for ident, smi in zip(lib["id"], lib["smiles"]):
        h.update(f"{ident}\t{smi}\n".encode())
    return h.hexdigest()[:16]


def tpsa_reference() -> pd.DataFrame:
    """Daylight TPSA values RDKit ships for its NCI set (``smiles``, ``tpsa`` in Å²)."""
    path = data_file(TPSA_REFERENCE)
    rows = []
    with open(path) as fh:
        for line in fh:
            if line.startswith("#") or not line.strip():  # header comment ('#' is also a bond)
                continue
            smiles, value = line.rsplit(",", 1)
            rows.append((smiles.strip(), float(value)))
    return pd.DataFrame(rows, columns=["smiles", "tpsa"])

