#!/usr/bin/env bash
# Start a single-host Slurm on 127.0.0.1 for hpclab's tests: munged, slurmctld and slurmd as root,
# one node ("localhost") that advertises HPCLAB_SLURM_CPUS (default 64) CPUs whatever the machine
# has (SlurmdParameters=config_overrides), sched/backfill with a 1 s bf_interval and
# jobcomp/filetxt (Slurm's own record of every job's start and end, no database).
#
#   scripts/slurm-up.sh            # prints: export SLURM_CONF=/tmp/hpclab-slurm/slurm.conf
#   eval "$(scripts/slurm-up.sh)"  # then sinfo, sbatch, squeue ... talk to it
#   scripts/slurm-down.sh          # stops only the daemons this script started
#
# Needs Debian's packages: apt-get install -y slurm-wlm munge. Everything it writes (config,
# munge key and socket, state, spool, logs, pid files, the job-completion file) lives in
# HPCLAB_SLURM_DIR (default /tmp/hpclab-slurm); nothing under /etc is changed. HPCLAB_SLURM_UNSHARE=1
# runs the daemons in their own UTS namespace even where the host name resolves to 127.0.0.1.
#
# Binding: CommunicationParameters=NoInAddrAny,NoCtldInAddrAny makes slurmd, the clients and
# slurmctld bind the address the host's own name resolves to instead of 0.0.0.0 (Slurm 22.05
# src/common/slurm_protocol_api.c slurm_setup_addr: gethostname() then resolve). Where the host
# name does not resolve to 127.0.0.1, the daemons run in their own UTS namespace whose host name
# is "localhost" (unshare --uts), so they bind 127.0.0.1; where that is not allowed they bind the
# host name's address (still not every interface) and the script says so on stderr.
set -euo pipefail

DIR=${HPCLAB_SLURM_DIR:-/tmp/hpclab-slurm}
PORT=${HPCLAB_SLURM_PORT:-6817}           # slurmctld; slurmd uses PORT+1
CPUS=${HPCLAB_SLURM_CPUS:-64}
MEM_MB=${HPCLAB_SLURM_MEM_MB:-65536}      # advertised, as the CPUs
CONF=$DIR/slurm.conf

die() { echo "slurm-up: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (slurmd starts jobs as their users)"
for exe in munged slurmctld slurmd sinfo; do
    command -v "$exe" >/dev/null || die "$exe not found; install with: apt-get install -y slurm-wlm munge"
done

export SLURM_CONF=$CONF
if [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null \
        && timeout 5 sinfo -h >/dev/null 2>&1; then
    echo "export SLURM_CONF=$CONF"   # already up (started by an earlier call)
    exit 0
fi

mkdir -p "$DIR"/{state,spool,munge,log}
chmod 0755 "$DIR" "$DIR/munge" "$DIR/log"
chmod 0700 "$DIR/state" "$DIR/spool"

# -- munge: a private key and socket ---------------------------------------------------------
KEY=$DIR/munge/munge.key
SOCK=$DIR/munge/munge.socket
if [ ! -s "$KEY" ]; then
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile="$KEY" >/dev/null
    else
        dd if=/dev/urandom of="$KEY" bs=1 count=1024 2>/dev/null
    fi
fi
chmod 0400 "$KEY"
if ! { [ -f "$DIR/munged.pid" ] && kill -0 "$(cat "$DIR/munged.pid")" 2>/dev/null; }; then
    munged --force --socket="$SOCK" --key-file="$KEY" --pid-file="$DIR/munged.pid" \
        --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"
fi

# -- where the daemons bind ------------------------------------------------------------------
HOST=$(hostname -s)
ADDR=$(getent ahostsv4 "$(hostname)" 2>/dev/null | awk 'NR==1{print $1}')
WRAP=()
NODE=$HOST
if [[ "$ADDR" != 127.* || "${HPCLAB_SLURM_UNSHARE:-0}" = 1 ]]; then
    if unshare --uts true 2>/dev/null; then
        WRAP=(unshare --uts sh -c 'hostname localhost && exec "$0" "$@"')
        NODE=localhost
    elif [ -z "$ADDR" ]; then
        die "the host name $(hostname) does not resolve and unshare --uts is not allowed, so the" \
            "daemons cannot bind 127.0.0.1; add '127.0.1.1 $(hostname)' to /etc/hosts"
    else
        echo "slurm-up: $(hostname) resolves to $ADDR and unshare --uts is not allowed;" \
             "slurmctld and slurmd bind $ADDR, not 127.0.0.1" >&2
    fi
fi

cat > "$CONF" <<CONF
# written by hpclab scripts/slurm-up.sh: one host, $CPUS emulated CPUs, 127.0.0.1
ClusterName=hpclab
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups in containers: processes are tracked by their parent, tasks are not bound
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# Slurm's own record of each job: id, user, state, start, end, nodes ... one line per job
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.txt
MpiDefault=none
ReturnToService=2
# completed jobs stay in slurmctld's memory (scontrol show job) for 10 minutes
MinJobAge=600
KillWait=5
InactiveLimit=0
SlurmdTimeout=300
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,bf_resolution=1,bf_continue
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
DefMemPerCPU=1024
SlurmdParameters=config_overrides
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF

if ! { [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null; }; then
    # a fresh controller: no jobs or node states from an earlier run, and job ids start at 1
    # again, so the job-completion file starts empty too
    rm -rf "${DIR:?}"/state/* "$DIR/jobcomp.txt"
    "${WRAP[@]}" slurmctld -f "$CONF" -i
fi
if ! { [ -f "$DIR/slurmd.pid" ] && kill -0 "$(cat "$DIR/slurmd.pid")" 2>/dev/null; }; then
    "${WRAP[@]}" slurmd -f "$CONF" -N "$NODE"
fi

# -- wait until the node is idle -------------------------------------------------------------
for _ in $(seq 1 60); do
    state=$(timeout 5 sinfo -h -N -o '%T' 2>/dev/null | head -1 || true)
    case "$state" in
        idle|mixed|allocated) echo "export SLURM_CONF=$CONF"; exit 0 ;;
    esac
    sleep 0.5
done
die "Slurm did not come up within 30 s (node state: ${state:-no answer}); see $DIR/log/"
