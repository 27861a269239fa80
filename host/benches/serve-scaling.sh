#!/usr/bin/env bash
# `host serve` against `wasmtime serve` (and the native and JSON targets) at 1, 2, 4 and 8 server
# cores: the serve bench, and so the servers it starts, pinned to CPUs 0..N-1 with taskset; wrk on
# the CPUs after them. Core counts the machine cannot give both sides are skipped.
#
#   host/benches/serve-scaling.sh                 # 1 2 4 8 server cores, the bench's defaults
#   CORES="1 2" BENCH_SECS=5 BENCH_CONNS=64 host/benches/serve-scaling.sh host wasmtime
#
# Arguments go to the bench (target names); BENCH_* settings are read by it (see serve.rs).
set -euo pipefail
cd "$(dirname "$0")/../.."
total=$(nproc)
cargo bench -p host --bench serve --no-run
for n in ${CORES:-1 2 4 8}; do
  if (( n >= total )); then
    echo "== $n server core(s): skipped, this machine has $total CPUs (wrk needs its own)"
    continue
  fi
  # wrk gets as many CPUs as the server (at most what is left), one thread each.
  wrk_cpus=$(( n < total - n ? n : total - n ))
  echo "== $n server core(s) (CPUs 0-$((n - 1))), wrk on CPUs $n-$((n + wrk_cpus - 1))"
  BENCH_WRK_CPUS="$n-$((n + wrk_cpus - 1))" BENCH_THREADS="${BENCH_THREADS:-$wrk_cpus}" \
    taskset -c "0-$((n - 1))" cargo bench -q -p host --bench serve -- "$@"
done
