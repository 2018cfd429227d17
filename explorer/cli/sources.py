"""SOURCE on the command line: a matrix file, a generator spec such as ``laplacian_2d:300``, or a sample name.

Files go through the app's own upload path (``ProblemSource.upload`` + ``load_problem``
of ``explorer.problems.sources``: the same parsers and the same messages for a bad file, a
non-symmetric matrix or a B of the wrong size). A generator spec is ``NAME`` or
``NAME:ARGS`` where ARGS are comma-separated values, positional in the order of the
generator's parameters (``GENERATORS[NAME].params``) and/or ``key=value``; it is the Python
call ``NAME(ARGS)``, so parameters not given take the generator function's own defaults
(``laplacian_2d:300`` is ``laplacian_2d(300)``, the 300 x 300 grid; ``generate(...,
menu_defaults=False)``). A sample is a name of ``sample_data/manifest.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from explorer.problems.files import SUPPORTED_SUFFIXES, LoadError, load_matrix

__all__ = ["LoadedSource", "SourceError", "load_source", "parse_generator_spec", "source_help"]


class SourceError(ValueError):
    """SOURCE could not be understood or loaded; the message says how to fix it."""


@dataclass(frozen=True, eq=False)
class LoadedSource:
    """A problem from SOURCE, with a label for run lists."""

    label: str
    problem: Any  # explorer.problems.Problem
    kind: str  # "file", "generate" or "sample"


def source_help() -> str:
    from explorer.problems import GENERATORS

    return (f"a matrix file ({' '.join(SUPPORTED_SUFFIXES)}), a generator such as laplacian_2d:300 or "
            f"prescribed_spectrum:n=500,spectrum=cluster (generators: {', '.join(GENERATORS)}), or a sample name "
            "(python -m explorer samples lists them)")


def _value(text: str) -> Any:
    """A literal: int, float, true/false, else the string itself (the ParamSpec validates it)."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def parse_generator_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"laplacian_2d:300"`` -> ("laplacian_2d", {"nx": 300}); values validated by ``generate``."""
    from explorer.problems import GENERATORS

    name, _, rest = spec.partition(":")
    name = name.strip()
    if name not in GENERATORS:
        raise SourceError(f"unknown generator {name!r}; choose one of {sorted(GENERATORS)}")
    order = [p.name for p in GENERATORS[name].params]
    params: dict[str, Any] = {}
    positional = 0
    for item in [part for part in rest.split(",") if part.strip()] if rest else []:
        if "=" in item:
            key, _, text = item.partition("=")
            key = key.strip()
            if key in params:
                raise SourceError(f"`{key}` is given twice in {spec!r}")
            params[key] = _value(text)
        else:
            if len(params) > positional:
                raise SourceError(f"in {spec!r} a positional value follows a key=value one; write them all as "
                                  f"key=value ({', '.join(order)})")
            if positional >= len(order):
                raise SourceError(f"{name} takes at most {len(order)} values ({', '.join(order)}); {spec!r} has more")
            params[order[positional]] = _value(item)
            positional += 1
    return name, params


def _is_file_spec(spec: str) -> bool:
    lower = spec.lower()
    return Path(spec).exists() or any(lower.endswith(s) for s in SUPPORTED_SUFFIXES) or "/" in spec or "\\" in spec


def _read(path: Path) -> bytes:
    if not path.is_file():
        load_matrix(path)  # raises LoadError with the app's message (missing file, a directory, bad suffix)
    try:
        return path.read_bytes()
    except OSError as err:
        raise LoadError(f"`{path}` cannot be read ({err.strerror}); check the path and its permissions") from err


def load_source(spec: str, *, b: str | None = None, symmetrize: bool = False,
                max_bytes: int | None = None) -> LoadedSource:
    """The problem SOURCE names (see the module docstring).

    ``b``: a file with B of a generalized problem A x = lambda B x (files only).
    Raises ``SourceError`` / ``LoadError`` / ValueError / TypeError with the app's messages.
    """
    from explorer.problems import GENERATORS, generate
    from explorer.problems.sources import ProblemSource, load_problem

    spec = spec.strip()
    if not spec:
        raise SourceError(f"SOURCE is empty; give {source_help()}")
    name = spec.partition(":")[0].strip()
    if name in GENERATORS and not Path(spec).exists():
        if b is not None or symmetrize:
            raise SourceError("--B and --symmetrize apply to matrix files, not to generated problems")
        gen, params = parse_generator_spec(spec)
        problem = generate(gen, menu_defaults=False, **params)
        shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in problem.params.items())
        return LoadedSource(label=f"{gen}({shown})", problem=problem, kind="generate")
    if not _is_file_spec(spec):
        from explorer.problems.samples import list_samples, load_sample

        try:
            names = [info.name for info in list_samples()]
        except FileNotFoundError:
            names = []
        if spec in names:
            if b is not None or symmetrize:
                raise SourceError("--B and --symmetrize apply to matrix files, not to samples")
            return LoadedSource(label=f"sample {spec}", problem=load_sample(spec), kind="sample")
        raise SourceError(f"`{spec}` is not a file, a generator or a sample; SOURCE is {source_help()}")
    path = Path(spec).expanduser()
    data = _read(path)
    b_data = None
    if b is not None:
        b_path = Path(b).expanduser()
        b_data = _read(b_path)
    source = ProblemSource.upload(path.name, data, b_filename=Path(b).name if b else "", b_data=b_data,
                                  symmetrize=symmetrize)
    problem = load_problem(source, data, b_data, max_bytes=max_bytes)
    label = f"file {path}" + (f" with B = {b}" if b else "") + (" (symmetrized)" if symmetrize else "")
    return LoadedSource(label=label, problem=problem, kind="file")
