#!/usr/bin/env bash
# The tuned protocol of issue 14 on a paper preset: `cascbench tune` (the same seeded-TPE budget
# for every method, chosen on the validation day), then the final runs (each method at its best
# configuration × training seeds × world seeds, tested on the last day), then the reports and a
# PROVENANCE.md with the commands, the git revision, the machine and the wall times.
#
#   scripts/tuned_tables.sh table2 table6          # preset names without the "paper-" prefix
#   PRESET_PREFIX= OUT_ROOT=results scripts/tuned_tables.sh operators   # any other preset
#
# Resumable: the same command again keeps finished trials and runs. TRIALS, SEEDS, WORLD_SEEDS
# and JOBS change the budget (defaults 20, 0-9, 0-2, 2); EXTRA passes more options to tune
# (e.g. EXTRA="--world recflow-like-3stage").
set -euo pipefail

trials="${TRIALS:-20}"
seeds="${SEEDS:-0-9}"
world_seeds="${WORLD_SEEDS:-0-2}"
jobs="${JOBS:-2}"
out_root="${OUT_ROOT:-results/tuned}"
prefix="${PRESET_PREFIX-paper-}"
export OMP_NUM_THREADS=1  # one torch thread per worker: oversubscribed threads spin

for item in "$@"; do
    dir="$out_root/$item"
    preset="$prefix$item"
    mkdir -p "$dir"
    revision="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- cascbench methods datasets || echo ' (uncommitted changes)')"
    tune_command="cascbench tune --preset $preset --trials $trials --seeds $seeds --world-seeds $world_seeds --jobs $jobs ${EXTRA:-} --results-dir $dir"
    run_command="cascbench run --config $dir/tuning/final.yaml --results-dir $dir --jobs $jobs"
    started=$(date +%s)
    $tune_command
    tuned=$(date +%s)
    $run_command --quiet
    finished=$(date +%s)
    cascbench report --results-dir "$dir" --format markdown --output "$dir/table.md"
    cascbench report --results-dir "$dir" --format csv --output "$dir/table.csv"
    cascbench report --results-dir "$dir" --tuning --format markdown --output "$dir/tuning.md"
    cascbench report --results-dir "$dir" --findings --format markdown --output "$dir/findings.md"
    cascbench power --results-dir "$dir" --format markdown > "$dir/power.md"
    cat > "$dir/PROVENANCE.md" <<PROV
# Provenance: $preset, tuned protocol (issue 14)

- Commands (all of them in one: \`scripts/tuned_tables.sh $item\`, with PRESET_PREFIX='$prefix' OUT_ROOT=$out_root TRIALS=$trials SEEDS=$seeds WORLD_SEEDS=$world_seeds JOBS=$jobs${EXTRA:+ EXTRA="$EXTRA"}):
  - \`$tune_command\`
  - \`$run_command\`
  - \`cascbench report --results-dir $dir --format markdown --output $dir/table.md\` (and \`--format csv\`)
  - \`cascbench report --results-dir $dir --tuning --format markdown --output $dir/tuning.md\`
- Budget: $trials trials per method (seeded TPE, one training seed per trial on world seed 0,
  validation day = the day before the last, test day never evaluated), then final runs with
  training seeds $seeds × world seeds $world_seeds.
- Git revision: $revision.
- Date: $(date -u +%Y-%m-%d).
- Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc --all) CPU cores, $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo), Python $(python -c 'import platform; print(platform.python_version())'), torch $(python -c 'import torch; print(torch.__version__)'); other work shared the machine.
- Wall time: tuning $((tuned - started)) s, final runs $((finished - tuned)) s.
- Run folders are not committed (\`.gitignore\`); the commands recreate them. The study database
  (\`tuning/studies.db\`, every trial with its parameters and value) and \`tuning/final.yaml\` are.
PROV
done
