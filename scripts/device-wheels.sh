#!/usr/bin/env bash
# Run here, before scripts/device-check.sh: puts into .whl/ what the GPU machine's image lacks
# (its Python 3.12 has torch, Lightning, pyarrow, numpy, typer, rich, pyyaml, filelock, psutil;
# not pydantic, nor divsweep itself). Versions are those of this checkout's .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
rm -rf .whl && mkdir .whl
$PY -m pip wheel -q --no-deps -w .whl .
pins=$($PY - <<'PY'
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in ("pydantic", "pydantic_core", "annotated_types", "typing_inspection")))
PY
)
# shellcheck disable=SC2086
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $pins
ls -l .whl
