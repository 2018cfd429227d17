"""A short Python script that reproduces a solve from the app with the core alone.

``solve_snippet(source, solver, params)`` returns the text; the app shows it under
each result, and the tests ``exec`` it to check that it reproduces the eigenvalues.
Pure: no Streamlit.
"""

from __future__ import annotations

from typing import Any, Mapping

from explorer.problems.sources import ProblemSource

__all__ = ["solve_snippet", "COMMON_KEYS"]

COMMON_KEYS = ("k", "which", "tol", "max_iter", "seed")


def _py(value: Any) -> str:
    """A Python literal for value (floats written so they round-trip)."""
    if isinstance(value, float):
        return repr(value)
    return repr(value)


def _problem_lines(source: ProblemSource) -> list[str]:
    if source.kind == "sample":
        return ["from explorer.problems.samples import load_sample", "",
                f"problem = load_sample({_py(source.name)})"]
    if source.kind == "generate":
        args = "".join(f", {key}={_py(value)}" for key, value in source.params)
        return ["from explorer.problems import generate", "",
                f"problem = generate({_py(source.name)}{args})"]
    if source.kind == "upload":
        lines = ["from pathlib import Path", "from explorer.problems.sources import ProblemSource, load_problem", "",
                 f"# The file(s) you uploaded, next to this script.",
                 f"data = Path({_py(source.name)}).read_bytes()"]
        b_args = ""
        if source.b_name:
            lines.append(f"b_data = Path({_py(source.b_name)}).read_bytes()")
            b_args = f", b_filename={_py(source.b_name)}, b_data=b_data"
        sym = ", symmetrize=True" if source.symmetrize else ""
        lines.append(f"source = ProblemSource.upload({_py(source.name)}, data{b_args}{sym})")
        lines.append("problem = load_problem(source, data" + (", b_data" if source.b_name else "") + ")")
        return lines
    raise ValueError(f"unknown problem source kind {source.kind!r}")


def solve_snippet(source: ProblemSource, solver: str, params: Mapping[str, Any], *, device: str = "cpu",
                  dtype: str = "float64", generalized: bool = False) -> str:
    """Python code that loads the same problem and runs the same solver with the same parameters.

    ``params``: k, which, tol, max_iter, seed and the solver's extra parameters
    (``device``/``dtype`` entries in it are ignored in favour of the keyword arguments).
    ``generalized``: the problem has a B matrix (then ``B=`` is passed to the solver).
    """
    params = dict(params)
    params.pop("device", None)
    params.pop("dtype", None)
    spectral = {name: params.get(name) for name in ("sigma", "lower", "upper") if params.get(name) is not None}
    k = int(params.pop("k"))
    which = str(params.pop("which", "LA"))
    call = [f"k={k}", f"which={_py(which)}"]
    for key in ("tol", "max_iter", "seed"):
        if key in params:
            call.append(f"{key}={_py(params.pop(key))}")
    call += [f"{key}={_py(value)}" for key, value in params.items()]
    lines = ["import torch", "from explorer import solve"]
    lines += _problem_lines(source)
    lines += [
        "",
        f"A = problem.operator.to(device={_py(device)}, dtype=torch.{dtype})",
    ]
    if generalized:
        lines.append(f"B = problem.B.to(device={_py(device)}, dtype=torch.{dtype})")
        call.append("B=B")
    lines.append(f"result = solve({_py(solver)}, A, " + ", ".join(call) + ")")
    lines.append("print(result.status_message)")
    if spectral:  # compare with the eigenvalues nearest sigma / inside the interval, in the result's order
        args = "".join(f", {key}={_py(value)}" for key, value in spectral.items())
        lines.insert(1, "from explorer.solvers.shift_invert import spectral_reference")
        lines.append(f"exact = spectral_reference(problem.spectrum, {k}, which={_py(which)}{args})")
        lines.append("print(result.to_frame(None if exact is None else torch.as_tensor(exact)))")
    else:
        lines.append(f"print(result.to_frame(problem.reference({k}, {_py(which)})))")
    return "\n".join(lines) + "\n"
