"""`cascbench plot`: figures (PNG, PDF and the data as CSV) from a results folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cascbench.cli._common import app, console, err_console, split_names, user_errors
from cascbench.errors import CascbenchError, unknown_name_error

ERRORS = ("std", "ci")


@app.command(
    epilog="Examples:\n\n"
    "  cascbench plot\n\n"
    "  cascbench plot --results-dir results/local --out-dir figures --error ci\n\n"
    "  cascbench plot --kinds bars,funnel --metrics joint_recall,recall/ranking\n\n"
    "  cascbench plot --kinds sensitivity --setting recflow-2stage"
)
def plot(
    results_dir: Annotated[Path, typer.Option(help="The folder `cascbench run` wrote to.")] = Path(
        "results/local"
    ),
    out_dir: Annotated[
        Path | None, typer.Option(help="Where the figures go; default: <results-dir>/figures.")
    ] = None,
    setting: Annotated[
        str | None,
        typer.Option(help="Plot this setting (required when the results mix settings)."),
    ] = None,
    kinds: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: bars, sensitivity, per-day, funnel, loss; default: every "
            "kind the runs can give."
        ),
    ] = None,
    metrics: Annotated[
        str | None,
        typer.Option(help="Comma-separated metric panels, or 'all'; default: the paper's."),
    ] = None,
    error: Annotated[
        str,
        typer.Option(help="Error bars: std (over seeds) or ci (95% t interval of the mean)."),
    ] = "std",
) -> None:
    """Grouped bars per metric, sensitivity curves over a swept parameter, per-day lines of the
    streaming split, the survival funnel and the training-loss curves.

    Each figure is written as PNG and PDF with its data as CSV beside it; a method has the same
    colour in every figure."""
    from cascbench.experiment.store import ResultStore
    from cascbench.report.loading import RunFiles
    from cascbench.report.plots import draw_figures
    from cascbench.report.tables import runs_frame, select_setting

    with user_errors():
        if error not in ERRORS:
            raise unknown_name_error("error bar kind", error, ERRORS)
        store = ResultStore(results_dir)
        frame = select_setting(runs_frame(store.finished_runs()), setting)
        folder = out_dir if out_dir is not None else results_dir / "figures"
        try:
            result = draw_figures(
                frame,
                RunFiles(store),
                folder,
                kinds=None if kinds is None else split_names(kinds),
                metrics=None if metrics is None else split_names(metrics),
                error=error,
            )
        except OSError as exc:  # a read-only results folder, a full disk
            raise CascbenchError(
                f"cannot write the figures to {folder}: {exc.strerror or exc}. Give a writable "
                f"--out-dir."
            ) from None
    for kind, needs in result.skipped.items():
        err_console.print(
            f"[yellow]Note:[/] no {kind} figure: it needs {escape(needs)}.",
            highlight=False,
            soft_wrap=True,
        )
    figures = sorted({p.with_suffix("") for p in result.paths})
    console.print(f"Wrote {len(figures)} figures (PNG, PDF and CSV each) to {escape(str(folder))}:")
    for path in figures:
        console.print(f"  {escape(path.name)}", highlight=False)
