#!/usr/bin/env bash
# The tuned protocol of issue 14 on a paper preset: `cascbench tune` (the same seeded-TPE budget
# for every method, chosen on the validation day), then the final runs (each method at its best
# configuration × training seeds × world seeds, tested on the last day), then the reports and a
# PROVENANCE.md with the commands, the git revision, the machine and the wall times.
#
#   scripts/tuned_tables.sh table2 table6          # preset names without the "paper-" prefix
#   PRESET_PREFIX= OUT_ROOT=results scripts/tuned_tables.sh operators   # any other preset
#
# Resumable, also on another machine: the same command again keeps finished trials and runs. What
# a machine needs to carry on is the study database (<out>/tuning/studies.db) and the run records
# (<out>/runs.jsonl, imported when it starts and written whenever it stops, on Ctrl-C and SIGTERM
# too, which it passes on to the command running); both are committed. TRIALS, SEEDS,
# WORLD_SEEDS and JOBS change the budget (defaults 20, 0-9, 0-2, 2); EXTRA passes more options to
# tune (e.g. EXTRA="--world recflow-like-3stage"); TAKE_OVER names machines that left trials
# running and are gone.
# Every call appends its wall times to <out>/wall_times.tsv, which PROVENANCE.md sums.
set -euo pipefail

trials="${TRIALS:-20}"
seeds="${SEEDS:-0-9}"
world_seeds="${WORLD_SEEDS:-0-2}"
jobs="${JOBS:-2}"
out_root="${OUT_ROOT:-results/tuned}"
prefix="${PRESET_PREFIX-paper-}"
export OMP_NUM_THREADS=1  # one torch thread per worker: oversubscribed threads spin
machine="$(lscpu | sed -n 's/^Model name: *//p'), $(nproc --all) CPU cores"

# On any exit: the time this call spent in its phase, then the records of the final runs
# finished so far (only once this call's import succeeded: an export before it would overwrite
# the records of another machine with this store's fewer runs). Keeps the exit status.
finish() {
    local status=$?
    if [[ -n "${phase:-}" ]]; then
        printf '%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$(git rev-parse --short HEAD)" \
            "$phase" "$(($(date +%s) - phase_started))" "$machine" >> "$dir/wall_times.tsv"
        phase=""
    fi
    if [[ -n "${imported:-}" && -d "$dir/runs" ]]; then
        cascbench runs --results-dir "$dir" --export "$dir/runs.jsonl" > /dev/null \
            || echo "could not export the run records of $dir" >&2
    fi
    return $status
}
trap finish EXIT

# Runs a command in a session of its own and waits for it, so that a stop reaches it exactly once,
# from here: bash holds a trap until its foreground command returns, and a Ctrl-C or a signal to
# this script's process group would otherwise reach the command too, and a second stop signal
# aborts a grid instead of stopping it cleanly. SIGTERM either way: a background command of a
# script starts with SIGINT ignored.
child=""
forward() {
    if [[ -n "$child" ]]; then
        kill -TERM "$child" 2> /dev/null || true
        wait "$child" || true
    fi
    exit "$1"
}
trap 'forward 130' INT
trap 'forward 143' TERM
run() {
    setsid "$@" &
    child=$!
    wait "$child"
    child=""
}

# Seconds of a phase ("tune" or "final runs") over every call so far.
spent() {
    awk -F '\t' -v phase="$1" '$3 == phase { s += $4 } END { print s + 0 }' "$dir/wall_times.tsv"
}

for item in "$@"; do
    dir="$out_root/$item"
    preset="$prefix$item"
    mkdir -p "$dir"
    revision="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- cascbench methods datasets || echo ' (uncommitted changes)')"
    take_over="${TAKE_OVER:+--take-over $TAKE_OVER}"
    tune_command="cascbench tune --preset $preset --trials $trials --seeds $seeds --world-seeds $world_seeds --jobs $jobs ${EXTRA:-} --results-dir $dir"
    run_command="cascbench run --config $dir/tuning/final.yaml --results-dir $dir --jobs $jobs"
    imported=""
    if [[ -f "$dir/runs.jsonl" ]]; then
        run cascbench runs --results-dir "$dir" --import "$dir/runs.jsonl"
    fi
    imported=1
    phase="tune" phase_started=$(date +%s)
    run $tune_command $take_over
    finish
    if [[ ! -f "$dir/tuning/final.yaml" ]]; then
        echo "no $dir/tuning/final.yaml: trials are still running elsewhere (see above)." >&2
        exit 75
    fi
    phase="final runs" phase_started=$(date +%s)
    run $run_command --quiet
    finish
    cascbench report --results-dir "$dir" --format markdown --output "$dir/table.md"
    cascbench report --results-dir "$dir" --format csv --output "$dir/table.csv"
    cascbench report --results-dir "$dir" --tuning --format markdown --output "$dir/tuning.md"
    cascbench report --results-dir "$dir" --findings --format markdown --output "$dir/findings.md"
    cascbench power --results-dir "$dir" --format markdown > "$dir/power.md"
    calls=$(wc -l < "$dir/wall_times.tsv")
    machines=$(cut -f 5 "$dir/wall_times.tsv" | sort -u | paste -sd ';' | sed 's/;/; /g')
    cat > "$dir/PROVENANCE.md" <<PROV
# Provenance: $preset, tuned protocol (issue 14)

- Commands (all of them in one: \`scripts/tuned_tables.sh $item\`, with PRESET_PREFIX='$prefix' OUT_ROOT=$out_root TRIALS=$trials SEEDS=$seeds WORLD_SEEDS=$world_seeds JOBS=$jobs${EXTRA:+ EXTRA="$EXTRA"}):
  - \`$tune_command\`
  - \`$run_command\`
  - \`cascbench report --results-dir $dir --format markdown --output $dir/table.md\` (and \`--format csv\`)
  - \`cascbench report --results-dir $dir --tuning --format markdown --output $dir/tuning.md\`
  - \`cascbench report --results-dir $dir --findings --format markdown --output $dir/findings.md\`
  - \`cascbench power --results-dir $dir --format markdown > $dir/power.md\`
- Budget: $trials trials per method (seeded TPE, one training seed per trial on world seed 0,
  validation day = the day before the last, test day never evaluated), then final runs with
  training seeds $seeds × world seeds $world_seeds.
- Git revision: $revision (of the last call; \`wall_times.tsv\` has each call's).
- Date: $(date -u +%Y-%m-%d).
- Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc --all) CPU cores, $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo), Python $(python -c 'import platform; print(platform.python_version())'), torch $(python -c 'import torch; print(torch.__version__)'); other work may have shared the machine.
  Every machine that worked on it: $machines.
- Wall time: tuning $(spent tune) s, final runs $(spent "final runs") s, over $calls timed phases
  (\`wall_times.tsv\`: one line per phase of each call, an interrupted one included).
- Run folders are not committed (\`.gitignore\`). The study database (\`tuning/studies.db\`, every
  trial with its parameters and value), \`tuning/final.yaml\` and the run records
  (\`runs.jsonl\`: each final run's config, metrics and environment, without its per-request
  results; \`cascbench runs --import\` reads them) are: \`cascbench report\` on an imported store
  gives these tables' seed-level statistics again.
PROV
done
