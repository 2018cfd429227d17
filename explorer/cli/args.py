"""The command line's arguments: one builder per group, so later commands reuse them.

``build_parser()`` makes ``python -m explorer {solve,hessian,runs,samples}``. The groups
(``add_problem_arguments``, ``add_solver_arguments``, ``add_store_arguments``,
``add_output_arguments``) are separate functions so that a later command (a distributed
``solve``, ``hessian MODEL.pt2``) adds the same options with the same names and help.
Parsing only turns text into values; checking them against the solver registry is
``explorer.cli.solving.solve_config`` (the messages of the core).
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

__all__ = ["build_parser", "add_problem_arguments", "add_solver_arguments", "add_store_arguments",
           "add_output_arguments", "add_distributed_arguments", "add_hessian_arguments", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_NOT_CONVERGED", "EXIT_INTERRUPTED"]

EXIT_OK = 0  # converged (solve), or the command did its work
EXIT_FAILED = 1  # the solve raised an unexpected error
EXIT_USAGE = 2  # bad input: arguments, SOURCE, parameters (argparse's own code for usage errors)
EXIT_NOT_CONVERGED = 3  # the solve ended without converging (max_iter reached, breakdown)
EXIT_INTERRUPTED = 130  # stopped with Ctrl-C (the partial run is kept), as shells report SIGINT

_EPILOG = f"""exit status: {EXIT_OK} converged, {EXIT_NOT_CONVERGED} ended without converging (max_iter reached,
breakdown), {EXIT_USAGE} bad input (arguments, SOURCE, parameters), {EXIT_FAILED} the solve failed,
{EXIT_INTERRUPTED} stopped with Ctrl-C (the partial run is kept in the store).

The run store is --store, else $EXPLORER_STORE, else the per-user data directory
(e.g. ~/.local/share/eigensolver-explorer/runs.sqlite). The app's History page lists its runs,
live while they run."""


def add_problem_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SOURCE",
                        help="a matrix file (.npy .npz .mtx .mtx.gz .csv .pt .safetensors), a generator such as "
                             "laplacian_2d:300 or prescribed_spectrum:n=500,spectrum=cluster, or a sample name")
    parser.add_argument("--B", dest="b", metavar="FILE", default=None,
                        help="B of a generalized problem A x = lambda B x (a matrix file)")
    parser.add_argument("--symmetrize", action="store_true",
                        help="use (A + A^T)/2 for a matrix file that is not exactly symmetric")


def _param(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def add_solver_arguments(parser: argparse.ArgumentParser) -> None:
    from explorer.runs.config import default_solver
    from explorer.solvers import SOLVERS

    parser.add_argument("--solver", default=None, choices=sorted(SOLVERS),
                        help=f"registered solver (default: {default_solver()}; {default_solver('svd')} for a "
                             "rectangular matrix, whose singular values it computes)")
    parser.add_argument("-k", type=int, default=None,
                        help="how many eigenpairs (default: 4); with --lower/--upper the most accepted (default: "
                             "500), since the interval decides the count")
    parser.add_argument("--which", default=None, type=str.upper,
                        help="LA largest, SA smallest algebraic, LM largest magnitude, BE both ends "
                             "(default: LA, or the solver's only choice); with --sigma LM the nearest sigma "
                             "(default), LA the nearest above, SA the nearest below")
    spectral = parser.add_argument_group("interior eigenvalues (lanczos, lobpcg)")
    spectral.add_argument("--sigma", type=float, default=None,
                          help="shift-invert: the k eigenvalues nearest SIGMA, through a factorization of "
                               "A - sigma B (a generalized problem works with lanczos too)")
    spectral.add_argument("--lower", type=float, default=None,
                          help="spectrum slicing, with --upper: every eigenvalue in [LOWER, UPPER), counted by "
                               "Sylvester's law of inertia so that none is missed")
    spectral.add_argument("--upper", type=float, default=None, help="the upper end of the --lower interval")
    spectral.add_argument("--factorization", default=None, choices=("auto", "ldl", "lu", "cholesky", "minres", "cg"),
                          help="how (A - sigma B)^-1 is applied (default: auto: sparse LDL^T, dense Cholesky or "
                               "LDL^T, MINRES for matrix-free operators)")
    parser.add_argument("--tol", type=float, default=None,
                        help="relative residual tolerance (default: the solver's, usually 1e-6)")
    parser.add_argument("--max-iter", dest="max_iter", type=int, default=None,
                        help="iteration limit (default: the solver's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random start (default: %(default)s)")
    parser.add_argument("--param", dest="params", action="append", type=_param, default=[], metavar="NAME=VALUE",
                        help="a solver-specific parameter, e.g. --param reorthogonalization=full (repeatable)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (default: %(default)s)")
    parser.add_argument("--dtype", default="float64", help="float64 or float32 (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice)")


def add_store_arguments(parser: argparse.ArgumentParser, *, writes: bool = True) -> None:
    """``--store PATH``; with ``writes`` also ``--no-store`` (run without keeping the run)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--store", metavar="PATH", default=None,
                       help="the run store file (default: $EXPLORER_STORE or the per-user data directory)")
    if writes:
        group.add_argument("--no-store", action="store_true", help="do not write the run to any store")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help='print {"run_id", "status", "eigenvalues", "residual_norms", "n_matvec", "elapsed"} '
                             'on stdout ("singular_values" instead of "eigenvalues" for an SVD solver; with '
                             '--sigma also "sigma", with an interval "interval": {"lower", "upper", "count"})')
    parser.add_argument("--name", default=None, help="a name for the run in the store")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress line on stderr")


def add_distributed_arguments(parser: argparse.ArgumentParser, *, vectors: bool = False) -> None:
    """``--distributed`` (split the work across the ranks torchrun started), ``--backend``, ``--timeout``;
    with ``vectors`` (the row-sharded ``solve``) also ``--vectors``."""
    group = parser.add_argument_group("across processes (under torchrun --nproc-per-node N -m explorer ...)")
    group.add_argument("--distributed", action="store_true",
                       help="split the work across torchrun's ranks (rank 0 writes the run to the store)")
    group.add_argument("--backend", choices=("auto", "gloo", "nccl"), default="auto",
                       help="gloo (CPUs), nccl (GPUs, one per rank), auto: nccl when every rank has a GPU "
                            "(default: %(default)s)")
    group.add_argument("--timeout", type=float, default=120.0,
                       help="seconds a rank waits for the others in one exchange before it ends with a message "
                            "(default: %(default)s)")
    if vectors:
        group.add_argument("--vectors", choices=("auto", "sharded", "replicated"), default="auto",
                           help="sharded: each rank keeps only its rows of the solver's vectors (memory per rank "
                                "falls with the ranks; inner products are summed across them; Lanczos only); "
                                "replicated: every rank holds the whole vectors (any solver); auto: sharded for "
                                "lanczos, else replicated (default: %(default)s)")


def add_hessian_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL.pt2", help="an exported model (torch.export.save)")
    parser.add_argument("--data", required=True, metavar="DATA",
                        help="inputs and targets (.pt, .safetensors or .npz with `inputs` and `targets`)")
    parser.add_argument("--curvature", choices=("hessian", "ggn"), default="hessian",
                        help="the loss Hessian or the Gauss-Newton matrix (default: %(default)s)")
    parser.add_argument("--loss", default=None,
                        help="cross_entropy or mse (default: the sample model's, else cross_entropy)")
    parser.add_argument("--parameters", default=None, metavar="GLOB",
                        help="which parameters: a glob such as 'layers.0.*' or a module name (default: all)")
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=None,
                        help="samples per chunk of the data (memory; the sum over chunks is exact)")
    parser.add_argument("--minibatch", type=int, default=None,
                        help="a random subset of this many samples (drawn with --seed)")


def build_parser(handlers: dict[str, Callable[[argparse.Namespace], int]] | None = None) -> argparse.ArgumentParser:
    """The ``python -m explorer`` parser; ``handlers[command]`` becomes ``args.handler``."""
    handlers = handlers or {}
    parser = argparse.ArgumentParser(prog="python -m explorer", description="Solve eigenproblems and keep every run "
                                     "in the run store that the Eigensolver Explorer app shows.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    solve = commands.add_parser("solve", help="solve one problem, live progress on stderr, the run into the store",
                                description="Solve SOURCE with a registered solver. A progress line (iteration, "
                                "converged/k, best residual, matvecs) goes to stderr; the run goes to the store.",
                                epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_problem_arguments(solve)
    add_solver_arguments(solve)
    add_store_arguments(solve)
    add_output_arguments(solve)
    add_distributed_arguments(solve, vectors=True)

    hessian = commands.add_parser("hessian", help="eigenvalues of a model's loss Hessian; --distributed splits "
                                  "the data across torchrun's ranks",
                                  description="The top (or bottom) eigenvalues of the loss Hessian or Gauss-Newton "
                                  "matrix of MODEL.pt2 over DATA, matrix-free (Hessian-vector products). Under "
                                  "torchrun with --distributed each rank takes a shard of the data and the "
                                  "products are summed: the same Hessian as one process over all of it.",
                                  epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_hessian_arguments(hessian)
    add_solver_arguments(hessian)
    hessian.set_defaults(dtype="float32", tol=1e-4)  # float32 as the app's Model page; a tol it can reach
    add_store_arguments(hessian)
    add_output_arguments(hessian)
    add_distributed_arguments(hessian)

    runs = commands.add_parser("runs", help="list the stored runs", epilog=_EPILOG,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    add_store_arguments(runs, writes=False)
    runs.add_argument("--json", action="store_true", help="print the runs as a JSON list")
    runs.add_argument("--status", default=None, help="only runs with this status (running, converged, failed, ...)")
    runs.add_argument("--limit", type=int, default=None, help="only the newest LIMIT runs")

    samples = commands.add_parser("samples", help="list the sample problems SOURCE may name")
    samples.add_argument("--json", action="store_true")

    for name, sub in (("solve", solve), ("hessian", hessian), ("runs", runs), ("samples", samples)):
        handler: Any = handlers.get(name)
        if handler is not None:
            sub.set_defaults(handler=handler)
    return parser
