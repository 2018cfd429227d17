"""The command line: ``python -m explorer solve SOURCE ...``, ``python -m explorer runs``, ``... samples``.

Layout (each part reusable by later commands, e.g. a distributed ``solve`` or ``hessian``):

* ``args``: the parser, built from argument groups (problem, solver, store, output) and the
  exit codes;
* ``sources``: SOURCE (a matrix file, ``laplacian_2d:300``, a sample) to a problem, through
  ``explorer.problems.sources`` / ``files`` / ``generators`` and their messages;
* ``solving``: arguments to an ``explorer.runs.config.SolveConfig`` (checked against the
  registry), the run itself, Ctrl-C as Stop;
* ``output``: the live progress line (stderr), the JSON / text result, run tables;
* ``commands``: the commands that tie them together;
* ``distributed``: ``solve --distributed`` and ``hessian`` (``explorer.distributed`` under torchrun).

Nothing here imports streamlit.
"""

from __future__ import annotations

import sys
from typing import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m explorer`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    from explorer.cli.args import build_parser
    from explorer.cli.commands import runs_command, samples_command, solve_command
    from explorer.cli.distributed import hessian_command

    import warnings

    warnings.formatwarning = lambda message, category, *rest, **kw: f"warning: {message}\n"  # one line, no source
    parser = build_parser({"solve": solve_command, "hessian": hessian_command, "runs": runs_command,
                           "samples": samples_command})
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        return int(args.handler(args))
    except BrokenPipeError:  # `python -m explorer runs | head`
        sys.stderr.close()
        return 0
