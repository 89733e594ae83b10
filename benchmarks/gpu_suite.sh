#!/usr/bin/env bash
# Every GPU check in one command, under 8 minutes (see benchmarks/README.md); extra flags go to the suite.
cd "$(dirname "$0")/.." && exec python -m benchmarks.gpu_suite --device cuda --out-dir benchmarks/results/gpu "$@"
