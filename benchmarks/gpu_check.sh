#!/usr/bin/env bash
# The GPU check of issue 17 (README "GPU check"): a thin wrapper around benchmarks/gpu_check.py.
#   benchmarks/gpu_check.sh                      # on a GPU: tiny and large at 1024 px
#   benchmarks/gpu_check.sh --smoke              # the same checks on the CPU at 256 px
#   benchmarks/gpu_check.sh --deps DIR           # packages from a folder made by --make-deps DIR
# Python: $PYTHON, else the clone's .venv/bin/python, else python3. Exit 0 only if every check passed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${PYTHON:-}
if [[ -z $py ]]; then
  if [[ -x $root/.venv/bin/python ]]; then py=$root/.venv/bin/python; else py=python3; fi
fi
deps=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --deps) deps=${args[i + 1]:-} ;;
    --deps=*) deps=${args[i]#--deps=} ;;
  esac
done
if [[ -n $deps && -d $deps ]]; then deps=$(cd "$deps" && pwd); fi
export PYTHONPATH="${deps:+$deps:}$root${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "$py" "$root/benchmarks/gpu_check.py" "$@"
