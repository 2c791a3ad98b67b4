"""``attnmel report``."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="EVAL_OR_RUN",
                        help="folders written by `attnmel evaluate` (or their metrics.json), or run folders "
                             "(every eval-*/ inside is used)")
    parser.add_argument("--output", default="attnmel-report.html",
                        help="HTML report to write (default: %(default)s); the figure goes beside it as .png. A file there that no "
                             "earlier attnmel report wrote is moved aside to stale-*/ first")
    parser.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from attnmel.errors import ConfigError
    from attnmel.evaluation.external import is_external_validation
    from attnmel.evaluation.paper_comparison import compare_with_paper, find_evaluations
    from attnmel.outputs import OutputSet, check_output_file

    if any(is_external_validation(path) for path in args.paths):
        return _external(args)

    output = check_output_file(args.output)
    evaluations = find_evaluations(args.paths)
    written = {output.resolve(), output.with_suffix(".png").resolve()}
    read = next((ev.path for ev in evaluations if ev.path.resolve() in written), None)
    if read is not None:
        raise ConfigError(f"--output {output}: the report (or its .png figure) would overwrite {read}, which it "
                          "reads; name another file.")
    comparison = compare_with_paper(evaluations)
    print(comparison.to_markdown())
    outputs = OutputSet.for_file(output, "report", companions=(output.with_suffix(".png").name,))
    figure = comparison.figure(outputs.path(output.with_suffix(".png").name))
    path = comparison.to_html(figure=figure).write(outputs.path(output.name))
    outputs.commit()
    print(f"\nwrote {path} and {figure}")
    return 0


def _external(args: argparse.Namespace) -> int:
    """Several models' external-validation tables side by side (rows: datasets)."""
    from attnmel.errors import ConfigError
    from attnmel.evaluation.external import auc_figure, is_external_validation, read_table, side_by_side
    from attnmel.outputs import OutputSet, check_output_file, read_manifest

    if not all(is_external_validation(path) for path in args.paths):
        raise ConfigError("give either external-validation folders (evaluate with several --data) or evaluation "
                          "folders, not both.")
    output = check_output_file(args.output)
    tables = [read_table(path) for path in args.paths]
    written = {output.resolve(), output.with_suffix(".png").resolve()}
    for table in tables:  # the report (or its figure) must not replace a file of a folder it reads
        folder = table.files["json"].parent
        ours = {(folder / name).resolve() for name in read_manifest(folder, ("evaluate",)).files}
        hit = next(iter(written & (ours | {table.files["json"].resolve()})), None)
        if hit is not None:
            raise ConfigError(f"--output {output}: the report (or its .png figure) would overwrite {hit}, which it "
                              "reads; name another file.")
    markdown, report = side_by_side(tables)
    print(markdown)
    outputs = OutputSet.for_file(output, "report", companions=(output.with_suffix(".png").name,))
    figure = auc_figure(tables, outputs.path(output.with_suffix(".png").name))
    path = report.figures([(figure, "ROC AUC per dataset and model, with 95% intervals")], layout="stack").write(
        outputs.path(output.name))
    outputs.commit()
    print(f"\nwrote {path} and {figure}")
    return 0
