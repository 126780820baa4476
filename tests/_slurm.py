"""A real single-host Slurm for the tests (``scripts/slurm-up.sh``).

:func:`slurm_session` answers with a :class:`SlurmHost` when a Slurm answers ``sinfo`` (the one in
``SLURM_CONF``, or the one ``scripts/slurm-up.sh`` started earlier in its default directory); else
it starts one when Debian's ``slurm-wlm`` and ``munge`` are installed and the tests run as root,
and stops it (only the daemons it started) at the end of the session. Otherwise it gives the
reason to skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UP = ROOT / "scripts" / "slurm-up.sh"
DOWN = ROOT / "scripts" / "slurm-down.sh"
DEFAULT_DIR = Path(os.environ.get("HPCLAB_SLURM_DIR", "/tmp/hpclab-slurm"))
INSTALL = "apt-get install -y slurm-wlm munge"


@dataclass
class SlurmHost:
    conf: str | None  # SLURM_CONF for the clients (None: their default)
    jobcomp: Path | None  # the jobcomp/filetxt file, if this Slurm writes one
    cpus: int
    started: bool  # by this session (and stopped by it)

    def env(self) -> dict:
        return dict(os.environ, **({"SLURM_CONF": self.conf} if self.conf else {}))

    def run(self, *args: str, timeout: float = 30) -> str:
        return subprocess.run(args, check=True, capture_output=True, text=True, env=self.env(),
                              timeout=timeout).stdout

    def job_records(self) -> dict[str, dict]:
        """Slurm's record of each finished job: ``JobId -> {field: value}`` from the
        job-completion file (``JobState``, ``StartTime``, ``EndTime``, ``ProcCnt`` ...)."""
        out = {}
        if self.jobcomp is None or not self.jobcomp.exists():
            return out
        for line in self.jobcomp.read_text().splitlines():
            rec = dict(re.findall(r"(\w+)=(\S*)", line))
            if "JobId" in rec:
                out[rec["JobId"]] = rec
        return out


def _answers(env: dict) -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=env,
                           timeout=10)
    except (subprocess.TimeoutExpired, OSError):
        return False
    return r.returncode == 0 and bool(r.stdout.strip())


def _cpus(env: dict) -> int:
    r = subprocess.run(["sinfo", "-h", "-N", "-o", "%c"], capture_output=True, text=True, env=env,
                       timeout=10)
    return max((int(x) for x in r.stdout.split() if x.isdigit()), default=0)


def _jobcomp(env: dict) -> Path | None:
    r = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, env=env,
                       timeout=10)
    conf = dict(re.findall(r"^(\w+)\s*=\s*(.*?)\s*$", r.stdout, flags=re.M))
    if conf.get("JobCompType") == "jobcomp/filetxt" and conf.get("JobCompLoc"):
        return Path(conf["JobCompLoc"])
    return None


def slurm_session():
    """``(SlurmHost, None)`` or ``(None, reason to skip)``; a generator's first yield (the
    fixture resumes it to stop what it started)."""
    env = dict(os.environ)
    ours = str(DEFAULT_DIR / "slurm.conf")
    for conf in ([env["SLURM_CONF"]] if env.get("SLURM_CONF") else []) + [None, ours]:
        e = dict(env, **({"SLURM_CONF": conf} if conf else {}))
        if (conf is None or Path(conf).exists()) and _answers(e):
            yield SlurmHost(conf, _jobcomp(e), _cpus(e), started=False), None
            return
    missing = [x for x in ("munged", "slurmctld", "slurmd", "sbatch") if shutil.which(x) is None]
    if missing:
        yield None, f"no Slurm answers and {', '.join(missing)} not installed ({INSTALL})"
        return
    if os.geteuid() != 0:
        yield None, "no Slurm answers; starting one (scripts/slurm-up.sh) needs root"
        return
    r = subprocess.run([str(UP)], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        yield None, f"scripts/slurm-up.sh failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
        return
    e = dict(env, SLURM_CONF=ours)
    try:
        yield SlurmHost(ours, _jobcomp(e), _cpus(e), started=True), None
    finally:
        subprocess.run([str(DOWN)], capture_output=True, timeout=60)
