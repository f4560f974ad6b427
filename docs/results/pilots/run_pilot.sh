#!/bin/bash
# Run one pilot in the background at the lowest priority, one CPU thread, logging to logs/NAME.log
# Usage: bash run_pilot.sh NAME   (trials/NAME.yaml)
set -e
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
name=$1
mkdir -p "$here/logs" /tmp/pilots-work
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 DIVSWEEP_CACHE=/tmp/pilots-cache
cd "$root"
{ echo "start $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)";
  /usr/bin/time -f "elapsed %e s user %U s sys %S s" nice -n 19 "$root/.venv/bin/python" "$here/pilot.py" \
    "$here/trials/$name.yaml" "/tmp/pilots-work/$name" 2>&1;
  echo "end $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"; } > "$here/logs/$name.log" 2>&1
