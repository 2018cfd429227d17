"""Diagnosis: name what went wrong in a solve, from its result and records alone.

``diagnose(result, records, reference, dtype, tol)`` runs every rule in :data:`RULES`
and returns the :class:`Finding` s that fire, worst first. Each rule is a pure function
of the :class:`~explorer.tracking.results.EigenResult`, the per-iteration
:class:`~explorer.tracking.IterationRecord` s, the exact eigenvalues when they are
known, the working dtype and the tolerance. No rule re-runs the solver or applies the
operator; the only linear algebra is a k x k Gram matrix of the returned eigenvectors.

Rules (what they look at, and the suggestion they make):

* ``ghost_eigenvalues``: the solver flagged ghost copies (``record.ghost_mask``), or the
  result holds two copies of one eigenvalue with nearly parallel eigenvectors, or more
  copies than the exact spectrum has. Paige (1976) showed that plain Lanczos loses
  orthogonality exactly along converged Ritz vectors, which then converge again.
  Suggest re-orthogonalization.
* ``orthogonality_lost``: ``orthogonality_loss`` stayed above ``sqrt(eps)`` for at least two
  iterations (no ghosts yet).
* ``stagnation``: the worst unconverged relative residual improved by less than a
  factor ``STAGNATION_FACTOR`` over the last quarter of the run (at least
  ``STAGNATION_MIN_WINDOW`` iterations).
* ``max_iter``: status MAX_ITER; estimates how many more iterations the current rate needs.
* ``breakdown``: status BREAKDOWN, with the solver's own message.
* ``stopped``: status STOPPED (a matvec budget or the user), for the record.
* ``tolerance_below_dtype``: the requested residual ``tol * max(|theta|, sqrt(eps) ||A||)``
  is below what rounding allows, ``ATTAINABLE_FACTOR * eps * ||A||`` (Higham, Accuracy and
  Stability of Numerical Algorithms, 2nd ed., 3.5: a computed product ``A x`` carries an
  error of order ``eps ||A|| ||x||``).
* ``missed_eigenvalue`` (needs the exact eigenvalues): a wanted eigenvalue, counted with
  multiplicity, has no converged Ritz value while a less wanted one was returned, e.g. a
  double eigenvalue returned once by a single-vector Krylov method (in exact arithmetic
  every vector of ``K_m(A, v) = {p(A) v}`` meets an eigenspace only along the projection
  of ``v`` on it, so one vector per eigenspace; ../shared/PEERS.md "Multiplicity").

A Ritz value ``theta`` with unit Ritz vector ``x`` and residual ``r = ||A x - theta x||``
lies within ``r`` of an eigenvalue of a symmetric ``A`` (Parlett, The Symmetric Eigenvalue
Problem, Thm 4.5.1), which is how converged values are matched to the reference
without guessing a tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from explorer.tracking.results import EigenResult, SolveStatus
from explorer.tracking.records import IterationRecord

__all__ = [
    "Finding",
    "RuleSpec",
    "RULES",
    "SEVERITIES",
    "diagnose",
    "ATTAINABLE_FACTOR",
    "STAGNATION_FACTOR",
    "STAGNATION_MIN_WINDOW",
    "relative_residual_series",
]

SEVERITIES = ("error", "warning", "info")
#: Residual floor ``ATTAINABLE_FACTOR * eps * ||A||``: about the smallest residual a solver
#: can certify. LOBPCG runs with an unreachable tol on the 2-D Laplacian and a Wishart
#: matrix stall at 6-15 eps ||A|| in float32 and float64 (measured while writing this
#: module; tests/test_diagnosis.py checks a float32 run stalls above the floor), so a
#: tolerance asking for less than 10 eps ||A|| is flagged.
ATTAINABLE_FACTOR = 10.0
#: Stagnation: improvement by less than this factor over the window.
STAGNATION_FACTOR = 2.0
#: Stagnation: the window is max(this, a quarter of the iterations).
STAGNATION_MIN_WINDOW = 20


@dataclass(frozen=True)
class Finding:
    """One diagnosis.

    Attributes:
        rule: the rule's key in :data:`RULES`.
        severity: "error" (the result is wrong or incomplete), "warning" (it may be) or
            "info".
        message: what happened, with the numbers.
        suggestion: what to try.
        evidence: the numbers behind the message (for a table or a test).
    """

    rule: str
    severity: str
    message: str
    suggestion: str
    evidence: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleSpec:
    """A rule: its key, a title for people, what it checks, and the function."""

    name: str
    title: str
    description: str
    fn: Callable[["_Context"], Finding | None]


# --------------------------------------------------------------------------------------
# Shared context
# --------------------------------------------------------------------------------------
def _numpy(values: Any) -> np.ndarray:
    if values is None:
        return np.zeros(0)
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().double().numpy().ravel()
    return np.asarray(values, dtype=np.float64).ravel()


def _which_key(values: np.ndarray, which: str) -> np.ndarray:
    """Sort key: smaller = more wanted (LA: largest first, SA: smallest, LM: largest |.|)."""
    if which == "SA":
        return values
    if which == "LM":
        return -np.abs(values)
    return -values  # LA, and BE is handled by position in _which_order


def _which_order(values: np.ndarray, which: str) -> np.ndarray:
    """``values`` sorted most wanted first (the order of ``select_order``)."""
    if which == "BE":
        ascending = np.sort(values)
        picked, lo, hi = [], 0, ascending.size - 1
        while lo <= hi:
            picked.append(ascending[hi]); hi -= 1
            if lo <= hi:
                picked.append(ascending[lo]); lo += 1
        return np.asarray(picked)
    return values[np.argsort(_which_key(values, which), kind="stable")]


@dataclass
class _Context:
    result: EigenResult
    records: Sequence[IterationRecord]
    reference: np.ndarray | None  # every exact eigenvalue we know (any order), float64
    dtype: torch.dtype
    tol: float
    eps: float
    norm_a: float
    k: int
    which: str
    values: np.ndarray  # returned eigenvalues (which order)
    residuals: np.ndarray  # returned true residual norms
    converged: np.ndarray  # bool
    sigma: float | None = None  # shift-invert: the wanted ones are the nearest sigma (``which`` its side)
    interval: tuple[float, float] | None = None  # spectrum slicing: the wanted ones lie in [lower, upper)

    def wanted_text(self) -> str:
        if self.interval is not None:
            return f"[{self.interval[0]:g}, {self.interval[1]:g}), ascending"
        if self.sigma is not None:
            return f"order of nearness to sigma = {self.sigma:g}"
        return f"{self.which} order"

    def order(self, values: np.ndarray) -> np.ndarray:
        """``values`` most wanted first: ``which`` order, or nearest sigma, or the interval's (ascending) first."""
        if self.interval is not None:
            lo, hi = self.interval
            inside = (values >= lo) & (values < hi)
            outside = values[~inside]
            distance = np.maximum(lo - outside, outside - hi)
            return np.concatenate([np.sort(values[inside]), outside[np.argsort(distance, kind="stable")]])
        if self.sigma is not None:
            from explorer.solvers.shift_invert import SIGMA_WHICH, nearest_order

            side = self.which if self.which in SIGMA_WHICH else "LM"
            return values[nearest_order(torch.from_numpy(np.ascontiguousarray(values)), self.sigma, side).numpy()]
        return _which_order(values, self.which)

    def relative(self, residuals: np.ndarray, values: np.ndarray) -> np.ndarray:
        """``r / max(|theta|, sqrt(eps) ||A||)``: what the solvers compare with ``tol``."""
        floor = math.sqrt(self.eps) * max(self.norm_a, np.finfo(np.float64).tiny)
        return residuals / np.maximum(np.abs(values), floor)


def _norm_estimate(result: EigenResult, records: Sequence[IterationRecord], reference: np.ndarray | None) -> float:
    """``||A||_2`` for a symmetric A: max |lambda| of the reference, else max |Ritz value| seen."""
    if reference is not None and reference.size:
        return float(np.max(np.abs(reference)))
    best = float(np.max(np.abs(_numpy(result.eigenvalues)), initial=0.0))
    for record in records:
        for values in (record.all_ritz_values, record.ritz_values):
            if values is not None and values.numel():
                finite = _numpy(values)
                finite = finite[np.isfinite(finite)]
                if finite.size:
                    best = max(best, float(np.max(np.abs(finite))))
    return best if best > 0 else 1.0


def relative_residual_series(records: Sequence[IterationRecord], norm_a: float, eps: float,
                             columns: Sequence[int] | None = None) -> np.ndarray:
    """(T,) worst relative residual per record over ``columns`` (default: all wanted pairs)."""
    floor = math.sqrt(eps) * max(norm_a, np.finfo(np.float64).tiny)
    out = np.full(len(records), np.nan)
    for t, record in enumerate(records):
        res = _numpy(record.residual_norms)
        val = _numpy(record.ritz_values)
        m = min(res.size, val.size)
        if m == 0:
            continue
        rel = res[:m] / np.maximum(np.abs(val[:m]), floor)
        if columns is not None:
            picked = [c for c in columns if c < m]
            if not picked:
                continue
            rel = rel[picked]
        finite = rel[np.isfinite(rel)]
        out[t] = float(np.max(finite)) if finite.size else np.nan
    return out


# --------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------
def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _duplicate_pairs(ctx: _Context) -> list[tuple[int, int, float, float | None]]:
    """Pairs (i, j) of returned values closer than their residuals allow for distinct eigenvalues.

    Returns (i, j, |theta_i - theta_j|, |cos angle(x_i, x_j)| or None).
    """
    values = ctx.values
    k = values.size
    if k < 2:
        return []
    floor = ATTAINABLE_FACTOR * ctx.eps * ctx.norm_a
    vectors = ctx.result.eigenvectors
    cosines = None
    if isinstance(vectors, torch.Tensor) and vectors.ndim == 2 and vectors.shape[1] == k and vectors.shape[0] > 0:
        V = vectors.detach().cpu().double()
        norms = torch.linalg.vector_norm(V, dim=0).clamp_min(np.finfo(np.float64).tiny)
        cosines = ((V.T @ V) / (norms.unsqueeze(0) * norms.unsqueeze(1))).abs().numpy()
    out = []
    for i in range(k):
        for j in range(i + 1, k):
            close = abs(values[i] - values[j]) <= max(ctx.residuals[i] + ctx.residuals[j], floor) * 2.0 + floor
            if close:
                out.append((i, j, float(abs(values[i] - values[j])), None if cosines is None else float(cosines[i, j])))
    return out


def _reference_multiplicity(ctx: _Context, value: float, radius: float) -> int:
    assert ctx.reference is not None
    return int(np.sum(np.abs(ctx.reference - value) <= radius))


def _rule_ghosts(ctx: _Context) -> Finding | None:
    flagged_iterations = [r.iteration for r in ctx.records if r.ghost_mask is not None and bool(r.ghost_mask.any())]
    max_flagged = max((int(r.ghost_mask.sum()) for r in ctx.records if r.ghost_mask is not None), default=0)
    final_mask = ctx.records[-1].ghost_mask if ctx.records else None
    final_flagged = int(final_mask.sum()) if final_mask is not None else 0
    ghosts_in_result: list[dict[str, Any]] = []
    floor = ATTAINABLE_FACTOR * ctx.eps * ctx.norm_a
    for i, j, gap, cosine in _duplicate_pairs(ctx):
        radius = max(ctx.residuals[i], ctx.residuals[j], floor) * 2.0 + floor
        parallel = cosine is not None and cosine > 0.5
        too_many = False
        if ctx.reference is not None:
            copies_returned = int(np.sum(np.abs(ctx.values - ctx.values[i]) <= radius))
            too_many = copies_returned > _reference_multiplicity(ctx, ctx.values[i], radius)
        if parallel or too_many:
            ghosts_in_result.append({"value": float(ctx.values[i]), "indices": (i, j), "gap": gap,
                                     "cosine": cosine, "more_copies_than_exact": too_many})
    if not flagged_iterations and not ghosts_in_result:
        return None
    losses = [r.orthogonality_loss for r in ctx.records if r.orthogonality_loss is not None]
    evidence: dict[str, Any] = {
        "ghosts_in_result": ghosts_in_result,
        "first_flagged_iteration": flagged_iterations[0] if flagged_iterations else None,
        "iterations_with_ghosts": len(flagged_iterations),
        "max_ghosts_at_once": max_flagged,
        "final_ghosts_flagged": final_flagged,
        "max_orthogonality_loss": max(losses) if losses else None,
    }
    in_result = bool(ghosts_in_result) or final_flagged > 0
    if ghosts_in_result:
        g = ghosts_in_result[0]
        detail = (f"the result holds {len(ghosts_in_result)} duplicated eigenvalue(s), e.g. {g['value']:.10g} at "
                  f"positions {g['indices'][0]} and {g['indices'][1]}")
        if g["cosine"] is not None:
            detail += f" with eigenvectors at |cos| = {g['cosine']:.3f} (copies of one vector, not two)"
        if g["more_copies_than_exact"]:
            detail += "; the exact spectrum has fewer copies"
    else:
        detail = (f"the solver flagged ghost Ritz values in {len(flagged_iterations)} iteration(s), first at "
                  f"iteration {flagged_iterations[0]}")
        if not in_result:
            detail += " (none remain in the final result)"
    loss_text = "" if not losses else f"; orthogonality loss reached {_fmt(max(losses))}"
    message = f"Ghost eigenvalues: {detail}{loss_text}. " \
              "Without re-orthogonalization the Lanczos vectors lose orthogonality along converged Ritz " \
              "vectors (Paige 1976), and those eigenvalues converge a second time."
    suggestion = ("Turn on re-orthogonalization (reorthogonalization='full', or 'partial' for most of the "
                  "benefit at lower cost); with restarts, a larger max_basis also delays the loss.")
    return Finding("ghost_eigenvalues", "error" if in_result else "warning", message, suggestion, evidence)


def _rule_orthogonality(ctx: _Context) -> Finding | None:
    losses = [(r.iteration, r.orthogonality_loss) for r in ctx.records if r.orthogonality_loss is not None]
    threshold = math.sqrt(ctx.eps)
    if not losses:
        return None
    worst_iteration, worst = max(losses, key=lambda item: item[1])
    above = sum(1 for _, loss in losses if loss > threshold)
    # One spike is not a lost basis: some solvers report the overlap *before* their
    # re-orthogonalization pass (an upper bound), which jumps at a breakdown.
    if above < 2:
        return None
    if any(r.ghost_mask is not None and bool(r.ghost_mask.any()) for r in ctx.records):
        return None  # the ghost rule tells the fuller story
    if _rule_ghosts(ctx) is not None:
        return None
    first = next(iteration for iteration, loss in losses if loss > threshold)
    return Finding(
        "orthogonality_lost", "warning",
        f"The basis lost orthogonality: max|V^T V - I| = {_fmt(worst)} at iteration {worst_iteration} (above "
        f"sqrt(eps) = {_fmt(threshold)} from iteration {first} on). No duplicated eigenvalue yet, but further "
        "iterations can produce ghost copies of converged ones.",
        "Use re-orthogonalization (full or partial) or the 'ortho' variant of a block method.",
        {"max_orthogonality_loss": worst, "at_iteration": worst_iteration, "first_above_sqrt_eps": first,
         "sqrt_eps": threshold},
    )


def _rate_per_iteration(series: np.ndarray, iterations: np.ndarray) -> float | None:
    """Least-squares slope of log10(series) against iteration (decades per iteration)."""
    mask = np.isfinite(series) & (series > 0)
    if int(mask.sum()) < 3:
        return None
    slope, _ = np.polyfit(iterations[mask], np.log10(series[mask]), 1)
    return float(slope)


def _unconverged_columns(ctx: _Context) -> list[int]:
    return [i for i in range(ctx.converged.size) if not ctx.converged[i]]


def _rule_stagnation(ctx: _Context) -> Finding | None:
    if ctx.result.status is SolveStatus.CONVERGED or len(ctx.records) < 2 * STAGNATION_MIN_WINDOW:
        return None
    columns = _unconverged_columns(ctx) or None
    series = relative_residual_series(ctx.records, ctx.norm_a, ctx.eps, columns)
    T = series.size
    window = max(STAGNATION_MIN_WINDOW, T // 4)
    before, recent = series[: T - window], series[T - window:]
    if not np.isfinite(before).any() or not np.isfinite(recent).any():
        return None
    best_before = float(np.nanmin(before))
    best_recent = float(np.nanmin(recent))
    if not best_before > 0 or best_recent * STAGNATION_FACTOR < best_before:
        return None
    improvement = best_before / best_recent if best_recent > 0 else math.inf
    floor_rel = ATTAINABLE_FACTOR * ctx.eps * ctx.norm_a / max(
        float(np.min(np.abs(ctx.values))) if ctx.values.size else ctx.norm_a, math.sqrt(ctx.eps) * ctx.norm_a)
    at_floor = best_recent <= 10 * floor_rel
    iterations = np.asarray([r.iteration for r in ctx.records], dtype=float)
    first_it, last_it = int(iterations[T - window]), int(iterations[-1])
    solver = ctx.result.solver
    if at_floor:
        why = (f"It is flat at {_fmt(best_recent)}, the rounding floor of {str(ctx.dtype).replace('torch.', '')} "
               f"(about {_fmt(floor_rel)} relative).")
        suggestion = "Use float64, or loosen tol to what this dtype can reach."
    else:
        why = "The wanted eigenvalue is poorly separated from the rest of the spectrum for this method."
        suggestion = {
            "power_iteration": "Power iteration converges like |lambda_2/lambda_1|^t: use a shift that makes the "
                               "wanted eigenvalue dominant, momentum, or a Krylov method (lanczos, lobpcg).",
            "lanczos": "Raise max_basis (restarts throw away Krylov information), or use a shift/spectral "
                       "transformation, or LOBPCG with a preconditioner.",
            "lobpcg": "Use a preconditioner (an approximate inverse of A - sigma I), a larger block_size "
                      "(guard vectors widen the gap that governs convergence), or method='ortho'.",
        }.get(solver, "Use a shift, a preconditioner or a method whose convergence depends on a larger gap.")
    return Finding(
        "stagnation", "warning",
        f"Stagnation: the worst unconverged relative residual improved only {improvement:.2f}x over the last "
        f"{window} iterations ({first_it}-{last_it}), from {_fmt(best_before)} to {_fmt(best_recent)}. {why}",
        suggestion,
        {"window": window, "best_before": best_before, "best_recent": best_recent, "improvement": improvement,
         "at_rounding_floor": at_floor, "rounding_floor_relative": floor_rel},
    )


def _rule_max_iter(ctx: _Context) -> Finding | None:
    if ctx.result.status is not SolveStatus.MAX_ITER:
        return None
    columns = _unconverged_columns(ctx) or None
    series = relative_residual_series(ctx.records, ctx.norm_a, ctx.eps, columns)
    evidence: dict[str, Any] = {"n_iter": ctx.result.n_iter, "n_converged": int(ctx.converged.sum()), "k": ctx.k}
    estimate = ""
    suggestion = "Raise max_iter, or see the other findings for why it converges slowly."
    if series.size >= 4 and np.isfinite(series[-1]):
        window = max(3, series.size // 4)
        iterations = np.asarray([r.iteration for r in ctx.records], dtype=float)
        rate = _rate_per_iteration(series[-window:], iterations[-window:])
        current = float(series[-1])
        evidence.update({"rate_decades_per_iteration": rate, "current_relative_residual": current})
        if rate is not None and rate < 0 and current > ctx.tol:
            more = math.ceil(math.log10(ctx.tol / current) / rate)
            evidence["estimated_more_iterations"] = more
            estimate = (f" At the recent rate ({-rate * 100:.2g} decades per 100 iterations) tol needs about "
                        f"{more:,} more iterations.")
            suggestion = f"Raise max_iter to about {ctx.result.n_iter + more:,}, or speed convergence up."
        elif rate is not None and rate >= 0:
            estimate = " The residual is not decreasing, so more iterations alone will not help."
            suggestion = "More iterations will not help: see the stagnation finding (shift, precondition, float64)."
    return Finding(
        "max_iter", "error",
        f"max_iter reached: {ctx.result.n_iter} iterations with {int(ctx.converged.sum())} of {ctx.k} pairs "
        f"converged.{estimate}",
        suggestion, evidence,
    )


def _rule_breakdown(ctx: _Context) -> Finding | None:
    if ctx.result.status is not SolveStatus.BREAKDOWN:
        return None
    solver = ctx.result.solver
    suggestion = {
        "lanczos": "The Krylov space became invariant (beta = 0): the start vector lies in a few eigenvectors' "
                   "span. Use a random start (another seed), or a block method such as LOBPCG.",
        "lobpcg": "The Rayleigh-Ritz Gram matrix lost definiteness: use method='ortho', float64, or a "
                  "smaller block.",
    }.get(solver, "Try another start (seed), float64, or a more robust variant of the method.")
    return Finding("breakdown", "error", f"Breakdown: {ctx.result.status_message}", suggestion,
                   {"solver": solver, "n_iter": ctx.result.n_iter, "message": ctx.result.message})


def _rule_stopped(ctx: _Context) -> Finding | None:
    if ctx.result.status is not SolveStatus.STOPPED:
        return None
    return Finding("stopped", "info",
                   f"Stopped after {ctx.result.n_matvec:,} matvecs with {int(ctx.converged.sum())} of {ctx.k} "
                   f"pairs converged. {ctx.result.message}".strip(),
                   "Raise the matvec budget (or let it run) to see where it ends.",
                   {"n_matvec": ctx.result.n_matvec, "message": ctx.result.message})


def _rule_tolerance(ctx: _Context) -> Finding | None:
    if ctx.values.size == 0:
        return None
    floor = ATTAINABLE_FACTOR * ctx.eps * ctx.norm_a
    sqrt_floor = math.sqrt(ctx.eps) * ctx.norm_a
    required = ctx.tol * np.maximum(np.abs(ctx.values), sqrt_floor)  # residual_threshold's scaling
    worst = int(np.argmin(required))
    if required[worst] >= floor:
        return None
    dtype_name = str(ctx.dtype).replace("torch.", "")
    reachable_tol = floor / max(abs(float(ctx.values[worst])), sqrt_floor)
    eps64 = float(torch.finfo(torch.float64).eps)
    fixes = []
    if ctx.dtype == torch.float32 and ctx.tol * max(abs(float(ctx.values[worst])), math.sqrt(eps64) * ctx.norm_a) \
            >= ATTAINABLE_FACTOR * eps64 * ctx.norm_a:
        fixes.append("use float64")
    fixes.append(f"loosen tol to at least {reachable_tol:.1e}")
    converged = bool(ctx.converged.all())
    return Finding(
        "tolerance_below_dtype", "warning" if converged else "error",
        f"tol = {ctx.tol:.1e} asks pair {worst} (theta = {float(ctx.values[worst]):.6g}) for a residual below "
        f"{required[worst]:.2e}, but {dtype_name} rounding limits residuals to about {ATTAINABLE_FACTOR:g} eps ||A|| = "
        f"{floor:.2e} (eps = {ctx.eps:.1e}, ||A|| ~ {ctx.norm_a:.3g})."
        + (" It converged anyway, but such a claim is at the noise level." if converged else ""),
        "; or ".join(fixes).capitalize() + ".",
        {"tol": ctx.tol, "required_residual": float(required[worst]), "attainable_residual": floor,
         "eps": ctx.eps, "norm_estimate": ctx.norm_a, "reachable_tol": reachable_tol, "dtype": dtype_name},
    )


def _match_converged(ctx: _Context) -> tuple[list[int], list[int]] | None:
    """Greedily match converged returned values to exact eigenvalues (with multiplicity).

    Returns (positions of the matched exact eigenvalues in which-order, indices of the
    converged returned values that matched nothing); None without a reference.
    """
    if ctx.reference is None:
        return None
    ordered = ctx.order(ctx.reference)
    taken = np.zeros(ordered.size, dtype=bool)
    floor = ATTAINABLE_FACTOR * ctx.eps * ctx.norm_a
    # Reference eigenvalues of a float32 operator describe the float64 matrix: allow its rounding.
    floor = max(floor, float(torch.finfo(ctx.dtype).eps) * ctx.norm_a * math.sqrt(max(ordered.size, 1)))
    indices = [i for i in range(ctx.values.size) if ctx.converged[i]]
    indices.sort(key=lambda i: ctx.residuals[i])
    matched_positions: list[int] = []
    unmatched: list[int] = []
    for i in indices:
        radius = 1.5 * ctx.residuals[i] + floor
        distance = np.where(taken, np.inf, np.abs(ordered - ctx.values[i]))
        # the most wanted free eigenvalue within reach (a returned value stands for any of them)
        candidates = np.flatnonzero(distance <= radius)
        if candidates.size == 0:
            unmatched.append(i)
            continue
        position = int(candidates[0])
        taken[position] = True
        matched_positions.append(position)
    return matched_positions, unmatched


def _rule_missed(ctx: _Context) -> Finding | None:
    match = _match_converged(ctx)
    if match is None or not ctx.converged.any():
        return None
    positions, unmatched = match
    ordered = ctx.order(ctx.reference)  # type: ignore[arg-type]
    k = min(ctx.k, ordered.size)
    wanted_free = [p for p in range(k) if p not in set(positions)]
    beyond = [p for p in positions if p >= k]
    # A converged value that matches no exact eigenvalue is a stand-in only when it is not a
    # second copy of a returned one (that is a ghost, reported by its own rule).
    floor = ATTAINABLE_FACTOR * ctx.eps * ctx.norm_a
    strangers = [i for i in unmatched
                 if not any(j != i and abs(ctx.values[j] - ctx.values[i]) <= 2 * (ctx.residuals[i] + ctx.residuals[j])
                            + floor for j in range(ctx.values.size))]
    if not wanted_free or not (beyond or strangers):
        return None
    missed = []
    for p in wanted_free:
        value = float(ordered[p])
        multiplicity = int(np.sum(np.abs(ordered - value) <= max(floor, 1e-12 * max(abs(value), 1.0))))
        returned_copies = int(np.sum(np.abs(ctx.values[ctx.converged] - value) <= 1.5 * np.max(ctx.residuals) + floor))
        missed.append({"position": p, "value": value, "multiplicity": multiplicity, "returned_copies": returned_copies})
    instead = [float(ordered[p]) for p in sorted(beyond)] + [float(ctx.values[i]) for i in strangers]
    first = missed[0]
    if first["multiplicity"] > 1 and first["returned_copies"] >= 1:
        what = (f"the exact eigenvalue {first['value']:.10g} has multiplicity {first['multiplicity']} but was "
                f"returned {first['returned_copies']} time(s)")
        suggestion = ("A single-vector Krylov method sees one vector per eigenspace. Use a block method (LOBPCG "
                      "with block_size >= multiplicity + k), or deflate the found vectors and restart.")
    else:
        what = f"the wanted eigenvalue {first['value']:.10g} (position {first['position'] + 1} in {ctx.wanted_text()}) was skipped"
        suggestion = ("The start had (almost) no component along its eigenvector, or the solver stopped at the "
                      "first k converged values. Ask for a few more pairs than needed (larger k), use another "
                      "seed, or a block method.")
    instead_text = ", ".join(f"{v:.6g}" for v in instead[:4])
    return Finding(
        "missed_eigenvalue", "error",
        f"Missed eigenvalue: {what}; {len(missed)} wanted value(s) missing while converged value(s) "
        f"{instead_text} beyond the wanted set were returned in their place. Residuals cannot see this: every "
        "returned pair is a correct eigenpair, just not the wanted set.",
        suggestion,
        {"missed": missed, "returned_instead": instead},
    )


RULES: dict[str, RuleSpec] = {
    spec.name: spec
    for spec in (
        RuleSpec("ghost_eigenvalues", "Ghost eigenvalues",
                 "Duplicated Ritz values from lost orthogonality (Paige 1976).", _rule_ghosts),
        RuleSpec("missed_eigenvalue", "Missed eigenvalue",
                 "A wanted exact eigenvalue (with multiplicity) is missing from the converged set.", _rule_missed),
        RuleSpec("breakdown", "Breakdown", "The solver reported a breakdown.", _rule_breakdown),
        RuleSpec("tolerance_below_dtype", "Tolerance below the dtype's reach",
                 "tol asks for residuals below ~10 eps ||A||.", _rule_tolerance),
        RuleSpec("max_iter", "max_iter reached", "The iteration limit ended the solve.", _rule_max_iter),
        RuleSpec("stagnation", "Stagnation",
                 "The worst unconverged residual is flat over the last quarter of the run.", _rule_stagnation),
        RuleSpec("orthogonality_lost", "Orthogonality lost",
                 "The basis is no longer orthonormal to sqrt(eps).", _rule_orthogonality),
        RuleSpec("stopped", "Stopped", "The solve was stopped (matvec budget or user).", _rule_stopped),
    )
}


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------
def diagnose(result: EigenResult, records: Iterable[IterationRecord] | None = None, reference: Any = None,
             dtype: torch.dtype | str | None = None, tol: float | None = None,
             *, rules: Iterable[str] | None = None, sigma: float | None = None, lower: float | None = None,
             upper: float | None = None) -> list[Finding]:
    """Run the diagnosis rules on one solve.

    Args:
        result: the solve's result.
        records: its iteration records (default: ``result.history``).
        reference: exact eigenvalues (a tensor or array): the whole spectrum, or at least
            the wanted ones; None when unknown (the rules that need it are skipped).
        dtype: the working dtype (default: the dtype of ``result.eigenvalues``).
        tol: the tolerance the solve used (default: ``result.tol``).
        rules: rule keys to run (default: all of :data:`RULES`).
        sigma, lower, upper: what a shift-invert (``sigma``) or spectrum-slicing (``lower``, ``upper``)
            solve was asked for: the wanted eigenvalues are then the k nearest sigma on ``which``'s side,
            or those in [lower, upper), not an end of the spectrum (the missed-eigenvalue rule).

    Returns:
        The findings, errors first, then warnings, then info; empty for a healthy run.
    """
    record_list = list(result.history if records is None else records)
    if dtype is None:
        dtype = result.eigenvalues.dtype if isinstance(result.eigenvalues, torch.Tensor) else torch.float64
    if isinstance(dtype, str):
        dtype = {"float32": torch.float32, "float64": torch.float64}[dtype.replace("torch.", "")]
    tol = float(result.tol if tol is None else tol)
    ref = None if reference is None else _numpy(reference)
    if ref is not None and ref.size == 0:
        ref = None
    values = _numpy(result.eigenvalues)
    residuals = _numpy(result.residual_norms)
    converged = result.converged.detach().cpu().numpy().astype(bool).ravel() if isinstance(
        result.converged, torch.Tensor) else np.asarray(result.converged, dtype=bool).ravel()
    ctx = _Context(
        result=result, records=record_list, reference=ref, dtype=dtype, tol=tol,
        eps=float(torch.finfo(dtype).eps), norm_a=_norm_estimate(result, record_list, ref),
        k=int(values.size), which=str(result.which).upper(), values=values, residuals=residuals,
        converged=converged, sigma=None if sigma is None else float(sigma),
        interval=None if lower is None or upper is None else (float(lower), float(upper)),
    )
    selected = list(RULES) if rules is None else list(rules)
    findings = []
    for name in selected:
        if name not in RULES:
            raise ValueError(f"unknown rule {name!r}; choose from {sorted(RULES)}")
        finding = RULES[name].fn(ctx)
        if finding is not None:
            findings.append(finding)
    rank = {severity: i for i, severity in enumerate(SEVERITIES)}
    findings.sort(key=lambda f: rank.get(f.severity, len(SEVERITIES)))
    return findings
