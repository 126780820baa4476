#!/usr/bin/env bash
# Regenerate data/reference/simgrid_collectives.csv: MPI collectives simulated by SimGrid's SMPI
# on a plain latency-bandwidth crossbar, the reference tests/test_simgrid.py checks hpclab's MPI
# formulas against (the test reads the shipped table; it never needs SimGrid).
#
# Needs SimGrid's smpicc and smpirun: on Debian 12, `apt-get install simgrid` installs
# libsimgrid-dev 3.32 (it provides "simgrid" and ships both). About 20 minutes on 2 cores.
# SMPI runs every rank in one process and SimGrid's algorithms allocate their temporary buffers
# per rank, so a run is capped at MAX_TOTAL bytes of ranks x size (2 GiB: 64 MiB up to 32 ranks,
# 16 MiB at 48 and 64; the largest then take about 4 GB of memory).
#
#   scripts/simgrid_table.sh [OUT.csv]      (RANKS="..." SIZES="..." MAX_TOTAL=... PAIRS=... to change)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/data/reference/simgrid_collectives.csv}
RANKS=${RANKS:-"4 8 12 16 20 24 28 32 48 64"}
SIZES=${SIZES:-"8 64 512 4096 32768 65536 262144 2097152 16777216 67108864"}
MAX_TOTAL=${MAX_TOTAL:-2147483648}
# The crossbar: every host has one full-duplex private link; a message crosses two (its
# sender's up, its receiver's down), so alpha = 2 x LINK_LAT and beta = 1 / LINK_BW.
LINK_LAT_US=1
LINK_BW_GBPS=12.5   # GB/s (1e9 B/s), a 100 Gbit/s link
# op:simgrid_algorithm:hpclab_algorithm (SimGrid's src/smpi/colls/<op>/<op>-<algorithm>.cpp;
# pairwise alltoall is SimGrid's "ring", rank +- i at step i: its "pair" needs a power of two)
PAIRS=${PAIRS:-"allgather:rdb:recursive_doubling allgather:ring:ring allgather:bruck:bruck
bcast:binomial_tree:binomial bcast:scatter_LR_allgather:scatter_allgather
allreduce:rdb:recursive_doubling allreduce:lr:ring allreduce:rab_rdb:rabenseifner
reduce_scatter:ompi_ring:ring reduce_scatter:mpich_pair:pairwise
reduce_scatter:ompi_basic_recursivehalving:recursive_halving reduce_scatter:mpich_rdb:recursive_doubling
reduce:binomial:binomial alltoall:ring:pairwise alltoall:bruck:bruck"}

command -v smpicc >/dev/null && command -v smpirun >/dev/null || {
  echo "simgrid_table.sh: needs smpicc and smpirun (Debian: apt-get install simgrid)" >&2; exit 2; }
version=$(smpirun -version 2>&1 | head -1)
package=$(dpkg-query -W -f='${Package} ${Version}' libsimgrid-dev 2>/dev/null || echo "not a Debian package")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
smpicc -O2 -o "$work/coll_bench" "$here/benchmarks/simgrid/coll_bench.c"
maxp=$(echo $RANKS | tr ' ' '\n' | sort -n | tail -1)
cat > "$work/crossbar.xml" <<XML
<?xml version='1.0'?>
<!DOCTYPE platform SYSTEM "https://simgrid.org/simgrid.dtd">
<platform version="4.1">
  <zone id="world" routing="Full">
    <cluster id="crossbar" prefix="node-" radical="0-$((maxp - 1))" suffix="" speed="1Gf"
             bw="${LINK_BW_GBPS}GBps" lat="${LINK_LAT_US}us" sharing_policy="SPLITDUPLEX"
             loopback_bw="1000GBps" loopback_lat="0us"/>
  </zone>
</platform>
XML
seq -f "node-%g" 0 $((maxp - 1)) > "$work/hosts"
CFG="--cfg=network/model:CM02 --cfg=smpi/bw-factor:1 --cfg=smpi/lat-factor:1 --cfg=network/crosstraffic:0
--cfg=smpi/simulate-computation:no --cfg=smpi/host-speed:1Gf --cfg=smpi/cpu-threshold:-1 --cfg=smpi/wtime:0"
CFG=$(echo $CFG)
alpha=$(awk -v l="$LINK_LAT_US" 'BEGIN { printf "%g", 2 * l * 1e-6 }')
beta=$(awk -v b="$LINK_BW_GBPS" 'BEGIN { printf "%g", 1 / (b * 1e9) }')

{
  echo "# MPI collectives simulated by SimGrid's SMPI: the reference of tests/test_simgrid.py."
  echo "# Regenerate with scripts/simgrid_table.sh (benchmark: benchmarks/simgrid/coll_bench.c)."
  echo "# simgrid_version: $version"
  echo "# package: $package"
  echo "# platform: a crossbar (SimGrid <cluster>, no backbone), one SPLITDUPLEX private link per host,"
  echo "#   lat ${LINK_LAT_US} us, bw ${LINK_BW_GBPS} GB/s; loopback 1000 GB/s, 0 us. A message crosses two links:"
  echo "# alpha_s: $alpha"
  echo "# beta_s_per_B: $beta"
  echo "# gamma_s_per_B: 0"
  echo "#   (smpi/simulate-computation:no: SMPI charges no time for reductions)"
  echo "# eager_threshold_B: 65536"
  echo "#   (smpi/send-is-detached-thresh left at its default: a send below it returns at once)"
  echo "# config: $CFG --cfg=smpi/<op>:<simgrid_algorithm>"
  echo "# command: smpirun -np RANKS -platform crossbar.xml -hostfile hosts CONFIG coll_bench OP SIZES"
  echo "#   SIZES: those of $SIZES with RANKS x SIZE <= $MAX_TOTAL B"
  echo "# columns: op (hpclab's name), simgrid_algorithm, algorithm (hpclab's), ranks, nbytes (B, hpclab's"
  echo "#   nccl-tests convention, as run: whole elements), seconds (s, latest finish minus the common start)"
  echo "op,simgrid_algorithm,algorithm,ranks,nbytes,seconds"
  for pair in $PAIRS; do
    IFS=: read -r op sg alg <<< "$pair"
    for p in $RANKS; do
      sizes=$(for n in $SIZES; do if [ $((p * n)) -le "$MAX_TOTAL" ]; then echo "$n"; fi; done)
      smpirun -np "$p" -platform "$work/crossbar.xml" -hostfile "$work/hosts" $CFG \
        "--cfg=smpi/$op:$sg" "$work/coll_bench" "$op" $sizes 2>"$work/log" |
        awk -F, -v sg="$sg" -v alg="$alg" '{op = ($1 == "bcast") ? "broadcast" : $1;
              print op "," sg "," alg "," $2 "," $3 "," $4}' || { cat "$work/log" >&2; exit 1; }
      grep -q "Switch to algorithm $sg for collective $op" "$work/log" || {
        echo "simgrid_table.sh: SimGrid did not switch $op to $sg (ranks $p)" >&2; cat "$work/log" >&2; exit 1; }
    done
  done
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out ($(grep -vc '^#' "$out") lines)"
