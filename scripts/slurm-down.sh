#!/usr/bin/env bash
# Stop the daemons scripts/slurm-up.sh started (by the pid files in HPCLAB_SLURM_DIR), nothing else.
set -uo pipefail
DIR=${HPCLAB_SLURM_DIR:-/tmp/hpclab-slurm}
# cancel this Slurm's jobs first, so that no job step outlives its slurmd
if [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null; then
    export SLURM_CONF=$DIR/slurm.conf
    jobs=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
    if [ -n "$jobs" ]; then
        # shellcheck disable=SC2086
        timeout 10 scancel $jobs 2>/dev/null || true
        for _ in $(seq 1 100); do
            [ -z "$(timeout 5 squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.1
        done
    fi
fi
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
