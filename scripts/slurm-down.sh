#!/usr/bin/env bash
# Stop the daemons scripts/slurm-up.sh started (by the pid files in HPCLAB_SLURM_DIR), nothing else.
set -uo pipefail
DIR=${HPCLAB_SLURM_DIR:-/tmp/hpclab-slurm}
for d in slurmd slurmctld munged; do
    f=$DIR/$d.pid
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$f"
done
