#!/usr/bin/env bash
# Runs the synthetic variant of paper presets and writes what results/paper-synthetic/ holds for
# each: the tables (Markdown and CSV), the figures and a PROVENANCE.md with the commands, the git
# revision, the date, the machine and the wall time.
#
#   scripts/paper_synthetic.sh table6 table3 ...      # preset names without the "paper-" prefix
#
# A preset that was run before is resumed: finished runs are kept, so the wall time then covers
# only the missing runs (the provenance says how many ran). With REPORT_ONLY=1 it only rewrites
# the tables and figures from the runs already there, and leaves PROVENANCE.md as it is.
set -euo pipefail

out_root="${OUT_ROOT:-results/paper-synthetic}"

write_reports() {  # item, folder
    local item=$1 dir=$2
    cascbench report --results-dir "$dir" --format markdown --output "$dir/table.md"
    cascbench report --results-dir "$dir" --format csv --output "$dir/table.csv"
    cascbench plot --results-dir "$dir" --out-dir "$dir/figures" >/dev/null
    # Beside the paper's numbers, where the paper has a table for these runs (Figure 2 has none).
    cascbench report --results-dir "$dir" --format markdown --compare-paper --output "$dir/paper.md"
    grep -q "reproduced vs published" "$dir/paper.md" || rm "$dir/paper.md"
    if [[ $item == appendix-d ]]; then  # the appendix is about time and memory per epoch
        python benchmarks/throughput.py "$dir" > "$dir/time_memory.txt"
    fi
}

for item in "$@"; do
    dir="$out_root/$item"
    mkdir -p "$dir"
    if [[ ${REPORT_ONLY:-0} == 1 ]]; then
        write_reports "$item" "$dir"
        continue
    fi
    revision="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- cascbench || echo ' (uncommitted changes in cascbench/)')"
    started=$(date +%s)
    cascbench run --preset "paper-$item" --results-dir "$dir" --quiet
    finished=$(date +%s)
    write_reports "$item" "$dir"
    run_seconds=$(python - "$dir" <<'EOF'
import json, pathlib, sys
stats = [json.loads(p.read_text())["stats"] for p in pathlib.Path(sys.argv[1]).glob("runs/*/metrics.json")]
print(f"{len(stats)} runs, {sum(s['train_seconds'] + s['eval_seconds'] for s in stats):,.0f} s of training and evaluation in all")
EOF
)
    cat > "$dir/PROVENANCE.md" <<EOF
# Provenance: paper-$item, synthetic variant

- Commands:
  - \`cascbench run --preset paper-$item --results-dir $dir\`
  - \`cascbench report --results-dir $dir --format markdown --output $dir/table.md\`
  - \`cascbench report --results-dir $dir --format csv --output $dir/table.csv\`
  - \`cascbench plot --results-dir $dir --out-dir $dir/figures\`
  - \`cascbench report --results-dir $dir --format markdown --compare-paper --output $dir/paper.md\`
  - (all of them in one: \`scripts/paper_synthetic.sh $item\`, which for appendix-d also writes
    \`time_memory.txt\` with \`python benchmarks/throughput.py $dir\`)
- Git revision: $revision.
- Date: $(date -u +%Y-%m-%d).
- Machine: $(nproc) CPU cores, $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo), Python $(python -c 'import platform; print(platform.python_version())'), torch $(python -c 'import torch; print(torch.__version__)').
- Wall time of \`cascbench run\`: $((finished - started)) s; $run_seconds.
- Run folders are not committed (\`.gitignore\`); the first command recreates them.
EOF
done
