#!/bin/bash
# Seconds per epoch: `as_released` vs the authors' released code (Neon-Jing/Guider), in one run.
#
# The released code is not part of this project: RELEASED is a scratch copy of its repository
# (outside the project) whose src/configs/dataset/NAME.yaml points at NAME.inter, and whose
# data/NAME holds `guider data export DATA --out RELEASED/data/NAME`; PYDEPS is a folder with
# what it imports beyond this venv (geomloss, lmdb). Both sides train the FREEDOM student with
# seed 999 for EPOCHS epochs, released then ours, ROUNDS times; the first epoch of each run is
# warm-up. Prints each side's mean seconds per epoch over the other epochs and their ratio.
#
#   benchmarks/bench_vs_released.sh RELEASED PYDEPS DATA NAME [EPOCHS=4] [ROUNDS=2]
set -euo pipefail
released=$(realpath "$1"); deps=$(realpath "$2"); data=$(realpath "$3"); name=$4
epochs=${5:-4}; rounds=${6:-2}
python="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python"  # not resolved: the venv symlink
work=$(mktemp -d)
overall="$released/src/configs/overall.yaml"
cp "$overall" "$work/overall.yaml.orig"
trap 'cp "$work/overall.yaml.orig" "$overall"' EXIT
sed -i "s/^epochs: .*/epochs: $epochs/; s/^seed: .*/seed: [999]/" "$overall"
for round in $(seq "$rounds"); do
  (cd "$released/src" && PYTHONPATH="$deps" "$python" main.py -sm FREEDOM -tm GUIDER -d "$name" > "$work/released_$round.log" 2>&1)
  "$python" -m guider.cli train --data "$data" --backbone freedom --method as_released --seed 999 \
    --epochs "$epochs" --out "$work/ours_$round" --no-progress > "$work/ours_$round.log" 2>&1
done
"$python" - "$work" "$rounds" <<'PY'
import re, statistics, sys
from pathlib import Path
import pandas as pd
work, rounds = Path(sys.argv[1]), int(sys.argv[2])
released, ours = [], []
for r in range(1, rounds + 1):
    times = [float(t) for t in re.findall(r"epoch \d+ training \[time: ([\d.]+)s", (work / f"released_{r}.log").read_text())]
    released += times[::2][1:]  # the student and teacher lines repeat one time; epoch 1 is warm-up
    ours += pd.read_csv(work / f"ours_{r}" / "log.csv")["train_seconds"].tolist()[1:]
rel, our = statistics.mean(released), statistics.mean(ours)
print(f"released code: {rel:.2f} s/epoch over {len(released)} epochs; as_released: {our:.2f} s/epoch over {len(ours)}")
print(f"ratio released / ours: {rel / our:.2f}")
PY
