"""`guider` command line: one entry point, one module per command.

Each command module exposes `add_arguments(parser)` and `run(args) -> int`. Modules are
imported only when their command runs, so `guider --help` stays fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys

from guider.runs.plugins import PluginError, load_plugins, split_plugin_options

# (group, command) -> (module, one-line help). A group of None means a top-level command.
COMMANDS: dict[tuple[str | None, str], tuple[str, str]] = {
    ("data", "synthetic"): ("guider.data.synthetic.cli", "generate the embedded synthetic dataset"),
    ("data", "import"): ("guider.data.sources.import_cli", "import a dataset from another format (lattice, mmrec)"),
    ("data", "download"): ("guider.data.download.cli", "download a real dataset (baby, sports, clothing, microlens)"),
    ("data", "prepare"): ("guider.data.sources.prepare_cli", "turn downloaded files into a dataset folder (protocol)"),
    ("data", "noise"): ("guider.data.noise.cli", "copy a dataset with injected train noise (noise study)"),
    ("data", "export"): ("guider.data.sources.export_cli", "export a dataset folder to MMRec's layout"),
    ("features", "text"): ("guider.features.text_cli", "extract text features of a dataset's items"),
    ("features", "image"): ("guider.features.image_cli", "extract image features of a dataset's items"),
    (None, "train"): ("guider.engine.train_cli", "train a backbone (optionally with GUIDER) and evaluate it"),
    (None, "plan"): ("guider.plan.cli", "count a config's trainings and project their GPU-hours and wall time"),
    ("tune", "points"): ("guider.tuning.cli", "list a grid's points as --set pairs (what the workflow trains)"),
    ("tune", "select"): (
        "guider.tuning.cli",
        "choose a grid point on valid Recall@20; record the test-selection optimism",
    ),
    ("report", "collect"): ("guider.report.collect_cli", "collect finished runs into runs.csv and training curves"),
    ("report", "table"): ("guider.report.table_cli", "Markdown + LaTeX tables (main with significance, ablation)"),
    ("report", "figure"): ("guider.report.figure_cli", "draw one report figure as PDF + PNG"),
    ("report", "summary"): ("guider.report.summary_cli", "metrics.json and noise-curve CSV for DVC"),
    ("report", "tuning"): ("guider.report.tuning_cli", "the valid-vs-test model selection table of the tuning records"),
    ("report", "headline"): ("guider.report.headline_cli", "the report's first page: GUIDER vs plain, with direction"),
}


PLUGIN_HELP = (
    "--plugin MODULE (any command, repeatable) imports a module that registers backbones, methods or noise "
    "kinds; so do $GUIDER_PLUGINS and the 'guider.runs.plugins' entry points (docs/extending.md)"
)


def _groups() -> dict[str | None, dict[str, tuple[str, str]]]:
    groups: dict[str | None, dict[str, tuple[str, str]]] = {}
    for (group, name), spec in COMMANDS.items():
        groups.setdefault(group, {})[name] = spec
    return groups


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """Parser whose sub-parsers are filled in only for the command named in `argv`."""
    parser = argparse.ArgumentParser(prog="guider", description=__doc__.splitlines()[0], epilog=PLUGIN_HELP)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=_version(), help="the version, commit and torch")
    top = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    wanted = [a for a in argv if not a.startswith("-")][:2]
    for group, commands in _groups().items():
        if group is None:
            for name, (module, help_) in commands.items():
                sub = top.add_parser(name, help=help_)
                if wanted[:1] == [name]:
                    _attach(sub, module)
            continue
        sub = top.add_parser(group, help=f"{group} commands: {', '.join(commands)}")
        inner = sub.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
        for name, (module, help_) in commands.items():
            leaf = inner.add_parser(name, help=help_)
            if wanted == [group, name]:
                _attach(leaf, module)
    return parser


def _version() -> str:
    from guider.runs.provenance import version_line

    return version_line()


def _attach(parser: argparse.ArgumentParser, module_name: str) -> None:
    module = importlib.import_module(module_name)
    module.add_arguments(parser)
    parser.set_defaults(_run=module.run)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    log = logging.getLogger("guider")
    try:
        plugins, argv = split_plugin_options(argv)
        load_plugins(plugins)  # before the parsers: their help lists the registered names
    except PluginError as err:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        log.error("%s", err)
        return 2
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except (ValueError, RuntimeError, ArithmeticError, OSError) as err:
        log.error("%s", describe_error(err))
        log.debug("traceback of the error above", exc_info=True)  # shown with guider -v
        return 2


def describe_error(err: BaseException) -> str:
    """One line naming the file or key and the problem."""
    if isinstance(err, OSError) and err.strerror:
        where = err.filename if err.filename is not None else "a file"
        full = " (the disk is full)" if err.errno == errno.ENOSPC else ""
        return f"{where}: {err.strerror}{full}"
    text = str(err).strip() or type(err).__name__
    return text if "\n" not in text else text.splitlines()[0]


if __name__ == "__main__":
    sys.exit(main())
