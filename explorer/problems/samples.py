"""Ready-made sample problems in ``sample_data/``: the app's first screen and test fixtures.

Each sample is a small file written by ``scripts/make_samples.py`` (which calls
:func:`write_samples`) from a generator in :mod:`explorer.problems`, one file per
supported format. ``sample_data/manifest.json`` records, for each file, its size,
format, symmetry, the generator and parameters that made it, and its top and bottom
ten exact eigenvalues. :func:`load_sample` reads the matrix from the file (the path
an uploaded file takes) and takes the exact eigenvalues from the generator, never
from the file.

Example::

    from explorer.problems.samples import list_samples, load_sample
    problem = load_sample(list_samples()[0].name)   # the 30 x 30 Laplacian
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import scipy.sparse as sp
import torch

from explorer.problems.files import load_matrix, load_operator, save_matrix
from explorer.problems import Problem, generate

__all__ = [
    "SAMPLE_DIR",
    "MANIFEST_NAME",
    "SAMPLES",
    "SampleSpec",
    "SampleInfo",
    "list_samples",
    "get_sample",
    "load_sample",
    "write_samples",
]

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_data"
MANIFEST_NAME = "manifest.json"
#: How many eigenvalues of each end the manifest records.
N_RECORDED = 10


@dataclass(frozen=True)
class SampleSpec:
    """How one sample file is made: a registry generator, its parameters, a file name."""

    name: str
    file: str
    title: str
    generator: str
    params: Mapping[str, Any]
    b_file: str | None = None


#: The samples, in menu order; the first is the app's default.
SAMPLES: tuple[SampleSpec, ...] = (
    SampleSpec("laplacian2d_30x30", "laplacian2d_30x30.mtx", "2-D Laplacian, 30 x 30 grid (sparse, n = 900)",
               "laplacian_2d", {"nx": 30, "ny": 30}),
    SampleSpec("geometric_n300", "geometric_n300.npy", "Geometric spectrum 0.8^i (dense, n = 300)",
               "prescribed_spectrum", {"n": 300, "spectrum": "geometric", "decay": 0.8, "seed": 1}),
    SampleSpec("cluster_n150", "cluster_n150.npz", "Tight cluster of 5 at the top (dense, n = 150)",
               "prescribed_spectrum", {"n": 150, "spectrum": "cluster", "cluster_size": 5, "cluster_spread": 1e-4,
                                       "seed": 2}),
    SampleSpec("graph_laplacian_n500", "graph_laplacian_n500.npz",
               "Random graph Laplacian, Erdos-Renyi p = 0.05 (sparse, n = 500)",
               "random_graph_laplacian", {"n": 500, "p": 0.05, "seed": 0}),
    SampleSpec("mikota_n100", "mikota_n100_A.mtx", "Mikota pair K x = lambda M x (generalized, n = 100)",
               "mikota_pair", {"n": 100}, b_file="mikota_n100_B.mtx"),
    SampleSpec("repeated_n120", "repeated_n120.safetensors", "Top eigenvalue repeated 3 times (dense, n = 120)",
               "prescribed_spectrum", {"n": 120, "spectrum": "repeated", "multiplicity": 3, "seed": 3}),
    SampleSpec("wishart_n100", "wishart_n100.pt", "Random Wishart X X^T / m (dense, n = 100, m = 200)",
               "wishart", {"n": 100, "m": 200, "seed": 0}),
    SampleSpec("small_n50", "small_n50.csv", "Small dense matrix with eigenvalues 1, 2, ..., 50 (n = 50)",
               "prescribed_spectrum", {"n": 50, "spectrum": "linear", "low": 1.0, "high": 50.0, "seed": 4}),
)


@dataclass(frozen=True)
class SampleInfo:
    """One entry of ``sample_data/manifest.json``.

    Attributes:
        name: short identifier (``load_sample(name)``).
        file: the matrix file (A), relative to the sample directory.
        b_file: the B file of a generalized pair, else None.
        title: menu label.
        description: one sentence, with the size.
        n: size.
        nnz: stored nonzeros (sparse) or nonzero entries (dense).
        symmetric: the stored matrix is exactly symmetric.
        format: the loader's format name ("mtx", "npy", ...).
        top_eigenvalues: the largest exact eigenvalues, descending.
        bottom_eigenvalues: the smallest exact eigenvalues, ascending.
        source: {"generator": name, "params": {...}} in :mod:`explorer.problems`.
        directory: where the files are.
    """

    name: str
    file: str
    title: str
    description: str
    n: int
    nnz: int
    symmetric: bool
    format: str
    top_eigenvalues: tuple[float, ...]
    bottom_eigenvalues: tuple[float, ...]
    source: Mapping[str, Any]
    b_file: str | None = None
    directory: Path = field(default=SAMPLE_DIR, compare=False)

    @property
    def path(self) -> Path:
        """The matrix file."""
        return self.directory / self.file

    @property
    def b_path(self) -> Path | None:
        """The B file, or None."""
        return None if self.b_file is None else self.directory / self.b_file

    @property
    def generalized(self) -> bool:
        """True for a pair A x = lambda B x."""
        return self.b_file is not None


@lru_cache(maxsize=8)
def _read_manifest(path: Path, mtime_ns: int) -> tuple[SampleInfo, ...]:
    entries = json.loads(path.read_text(encoding="utf-8"))["samples"]
    return tuple(
        SampleInfo(
            name=e["name"], file=e["file"], title=e["title"], description=e["description"], n=int(e["n"]),
            nnz=int(e["nnz"]), symmetric=bool(e["symmetric"]), format=e["format"],
            top_eigenvalues=tuple(float(v) for v in e["top_eigenvalues"]),
            bottom_eigenvalues=tuple(float(v) for v in e["bottom_eigenvalues"]),
            source=e["source"], b_file=e.get("b_file"), directory=path.parent,
        )
        for e in entries
    )


def list_samples(directory: str | Path | None = None) -> list[SampleInfo]:
    """The samples listed in the manifest, in menu order (the first is the default).

    Args:
        directory: where ``manifest.json`` is (default ``SAMPLE_DIR``).

    Raises:
        FileNotFoundError: no manifest; run ``python scripts/make_samples.py``.
    """
    path = Path(directory or SAMPLE_DIR) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no sample manifest at {path}; run `python scripts/make_samples.py` to write it")
    return list(_read_manifest(path.resolve(), path.stat().st_mtime_ns))


def get_sample(name: str, directory: str | Path | None = None) -> SampleInfo:
    """The manifest entry named ``name`` (its ``name`` or its file name).

    Raises:
        ValueError: no such sample (the message lists them).
    """
    samples = list_samples(directory)
    for info in samples:
        if name in (info.name, info.file):
            return info
    raise ValueError(f"unknown sample {name!r}; choose one of {[info.name for info in samples]}")


def load_sample(name: str, *, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu",
                directory: str | Path | None = None) -> Problem:
    """Load a sample as a :class:`~explorer.problems.Problem`.

    The operator (and B) come from the file, through the same loader as uploads; the
    exact eigenvalues come from the generator recorded in the manifest (closed form,
    prescribed, or dense eigh for the random ones), not from the file.

    Args:
        name: a sample name (or file name) from :func:`list_samples`.
        dtype: float32 or float64.
        device: where the operators live.
        directory: the sample directory (default ``SAMPLE_DIR``).

    Returns:
        The problem; ``problem.name`` is the sample name.

    Raises:
        ValueError: unknown sample.
        explorer.problems.files.LoadError: a sample file is missing or damaged.
    """
    info = get_sample(name, directory)
    operator = load_operator(info.path, dtype=dtype, device=device)
    B = None if info.b_path is None else load_operator(info.b_path, dtype=dtype, device=device)
    source = dict(info.source)
    reference = generate(source["generator"], **source["params"])
    return Problem(name=info.name, description=info.description, operator=operator,
                   eigenvalues=reference.eigenvalues, B=B,
                   params={"file": info.file, "generator": source["generator"], **source["params"]})


def _exactly_symmetric(data: torch.Tensor | sp.csr_matrix) -> bool:
    if sp.issparse(data):
        return (data != data.T).nnz == 0
    return bool(torch.equal(data, data.T))


def write_samples(directory: str | Path = SAMPLE_DIR) -> list[dict[str, Any]]:
    """Write every sample file, ``manifest.json`` and ``README.md`` into ``directory``.

    Deterministic: fixed seeds, and every writer avoids timestamps (the bytes of the
    dense random samples may still differ in the last bits between LAPACK builds).

    Args:
        directory: created if missing.

    Returns:
        The manifest entries.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    for spec in SAMPLES:
        problem = generate(spec.generator, **spec.params)
        save_matrix(directory / spec.file, problem.operator)
        if spec.b_file is not None:
            assert problem.B is not None, f"{spec.generator} has no B matrix"
            save_matrix(directory / spec.b_file, problem.B)
        loaded = load_matrix(directory / spec.file)
        eigenvalues = problem.eigenvalues
        assert eigenvalues is not None, f"{spec.name}: the generator must know its eigenvalues"
        k = min(N_RECORDED, problem.n)
        entries.append({
            "name": spec.name,
            "file": spec.file,
            "b_file": spec.b_file,
            "title": spec.title,
            "description": problem.description,
            "n": problem.n,
            "nnz": loaded.nnz,
            "symmetric": _exactly_symmetric(loaded.data),
            "format": loaded.format,
            "top_eigenvalues": [float(v) for v in problem.reference(k, "LA")],  # type: ignore[union-attr]
            "bottom_eigenvalues": [float(v) for v in problem.reference(k, "SA")],  # type: ignore[union-attr]
            "source": {"generator": spec.generator, "params": dict(spec.params)},
        })
    manifest = {
        "about": "Small sample problems written by scripts/make_samples.py (explorer.problems.samples.write_samples). "
                 "Eigenvalues are exact: closed form, prescribed, or float64 dense eigh for random matrices.",
        "samples": entries,
    }
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (directory / "README.md").write_text(_readme(entries, directory), encoding="utf-8")
    return entries


def _readme(entries: list[dict[str, Any]], directory: Path) -> str:
    lines = [
        "# Sample problems",
        "",
        "Written by `python scripts/make_samples.py` (deterministic; do not edit by hand).",
        "`manifest.json` has the full record: generator, parameters, and the top and bottom ten exact",
        "eigenvalues. Load one with `explorer.problems.samples.load_sample(name)` or `explorer.problems.files.load_matrix(path)`.",
        "",
        "| name | file | n | nnz | format | largest eigenvalues | source |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        files = e["file"] + (f" + {e['b_file']}" if e["b_file"] else "")
        top = ", ".join(f"{v:.6g}" for v in e["top_eigenvalues"][:3])
        params = ", ".join(f"{k}={v}" for k, v in e["source"]["params"].items())
        lines.append(f"| {e['name']} | {files} | {e['n']} | {e['nnz']} | {e['format']} | {top}, ... | "
                     f"`{e['source']['generator']}({params})` |")
    total = sum((directory / f).stat().st_size for e in entries for f in (e["file"], e["b_file"]) if f)
    lines += ["", f"Total size of the matrix files: {total / 1e6:.2f} MB.", ""]
    return "\n".join(lines)

