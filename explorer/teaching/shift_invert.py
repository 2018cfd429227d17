"""Lesson: shift-invert: the eigenvalue nearest sigma, at the speed of the transformed gaps.

The explanation is ``SHIFT_INVERT.text``; ``SHIFT_INVERT.build(values)`` returns the problem (a 1-D
Laplacian, whose eigenvalues and eigenvectors are known in closed form), two runs (Lanczos on A for
its lowest eigenvalue, and Lanczos with ``sigma``: the same Lanczos on ``(A - sigma I)^-1``) and the
charts: the spectrum and its transform ``1 / (lambda - sigma)``, and each run's measured error with
the Kaniel-Paige-Saad bound of its own spectrum (``explorer.analysis.theory``) drawn over it.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from explorer import problems
from explorer.analysis import theory
from explorer.analysis.compare import CompareSettings, RunConfig, RunOutcome
from explorer.solvers.registry import ParamSpec
from explorer.teaching.lesson import Chart, Lesson, LessonSetup, Series, positive, start_vector

__all__ = ["SHIFT_INVERT", "laplacian_1d_eigenvector", "extreme_ritz_errors"]


_SHIFT_INVERT_TEXT = r"""
Lanczos converges to the **extreme** eigenvalues, at a rate set by their *relative gap*: for the
lowest, $g = (\lambda_2 - \lambda_1)/(\lambda_n - \lambda_2)$, and the Kaniel-Paige-Saad bound shrinks
by $\rho^2$ per step with $\rho = 1/(\gamma + \sqrt{\gamma^2 - 1})$, $\gamma = 1 + 2g$, about
$1 - 2\sqrt{g}$ for small $g$. The lowest eigenvalues of a Laplacian are bunched together next to a
wide spectrum ($g \approx 3\pi^2/(4n^2)$ in 1-D): hundreds of steps.

**Shift-invert** runs the same Lanczos on $(A - \sigma I)^{-1}$, which has the same eigenvectors and
the eigenvalues

$$\theta_j = \frac{1}{\lambda_j - \sigma}.$$

The eigenvalue nearest $\sigma$ becomes the extreme one, and the gaps around it are stretched: the
transformed relative gap $(\theta_1 - \theta_2)/(\theta_2 - \theta_n)$ is of order one where the
original was $10^{-4}$, and the same theorem now promises a few steps. The ratio
$|\theta_2/\theta_1| = |\lambda_1 - \sigma| / |\lambda_2 - \sigma|$ is what plain inverse iteration
would get per step; Lanczos does better still. A shift far from the wanted eigenvalue stretches little
(try $\sigma = -0.5$: $|	heta_2/	heta_1|$ is then close to 1 again). Each step costs a **solve** with
$A - \sigma I$ instead of a product, paid for once by a sparse factorization (here a tridiagonal
one: nearly free); a $\sigma$ *inside* the spectrum reaches interior eigenvalues that plain Lanczos
would find only after every eigenvalue below them.

The first chart draws the spectrum and its transform (the eigenvalue nearest $\sigma$ in color); the
second, each run's measured error of the Ritz value at its end against its bound (dashed), step by
step: for the shift-invert run, the bound of the *transformed* spectrum mapped back to
$\lambda = \sigma + 1/\theta$. One start vector, no restart and full re-orthogonalization keep both
runs close to exact arithmetic, where the theorem holds.
"""


def laplacian_1d_eigenvector(n: int, j: int) -> np.ndarray:
    """The unit eigenvector of the 1-D Dirichlet Laplacian of size n for ``lambda_j = 4 sin^2(j pi / (2 (n + 1)))``
    (j = 1 the lowest): ``u_j(i) = sqrt(2 / (n + 1)) sin(i j pi / (n + 1))``, i = 1..n."""
    i = np.arange(1, n + 1, dtype=float)
    return math.sqrt(2.0 / (n + 1)) * np.sin(i * j * math.pi / (n + 1))


def _all_ritz(record: Any) -> np.ndarray:
    values = record.all_ritz_values if record.all_ritz_values is not None else record.ritz_values
    return values.detach().cpu().double().numpy().ravel()


def extreme_ritz_errors(records: Sequence[Any], target: float, *, sigma: float | None = None,
                        end: str = "SA") -> tuple[np.ndarray, np.ndarray]:
    """(m, error) per record: the Krylov dimension (the number of Ritz values, one start vector, no restart)
    and ``|lambda~ - target|`` of the Ritz value at the ``end`` ("SA" lowest, "LA" highest) of the spectrum
    Lanczos ran on: A itself, or with ``sigma`` its transform, whose Ritz values the records carry in the
    original units ``sigma + 1 / theta`` (the end is then that of theta)."""
    ms, errors = np.zeros(len(records)), np.full(len(records), np.nan)
    for t, record in enumerate(records):
        values = _all_ritz(record)
        values = values[np.isfinite(values)]
        ms[t] = values.size
        if not values.size:
            continue
        if sigma is None:
            picked = values.min() if end == "SA" else values.max()
        else:
            theta = 1.0 / (values - sigma)
            picked = sigma + 1.0 / (theta.max() if end == "LA" else theta.min())
        errors[t] = abs(float(picked) - target)
    return ms, errors


def _build(values: Mapping[str, Any]) -> LessonSetup:
    n, sigma, steps, seed = int(values["n"]), float(values["sigma"]), int(values["steps"]), int(values["seed"])
    problem = problems.laplacian_1d(n)
    exact = problem.eigenvalues.double().numpy()  # ascending, closed form
    gaps = np.abs(exact - sigma)
    j_star = int(np.argmin(gaps))
    scale = float(exact[-1])
    if gaps[j_star] <= 1e3 * np.finfo(float).eps * scale:
        raise ValueError(f"sigma = {sigma:g} is an eigenvalue of this Laplacian (lambda_{j_star + 1} = "
                         f"{exact[j_star]:.12g}): A - sigma I is singular; move sigma a little")
    lam_star, end = theory.shift_invert_target(exact, sigma)
    theta = theory.shift_invert_spectrum(exact, sigma)
    x0 = start_vector(n, seed)
    tan_low = theory.tan_angle(x0.numpy(), laplacian_1d_eigenvector(n, 1))
    tan_star = theory.tan_angle(x0.numpy(), laplacian_1d_eigenvector(n, j_star + 1))
    # one start vector, no restart, full re-orthogonalization: the theorem's setting; ritz_every=1: a Ritz value
    # per step for the per-step bound (the inner run on the transform gets it too)
    lanczos_opts = {"reorthogonalization": "full", "max_basis": max(steps + 5, 20), "block_size": 1, "X0": x0,
                    "ritz_every": 1}
    configs = (RunConfig("lanczos", {**lanczos_opts, "which": "SA"}, label="Lanczos on A (lowest eigenvalue)"),
               RunConfig("lanczos", {**lanczos_opts, "sigma": sigma, "which": "LM"},
                         label=f"Lanczos with sigma = {sigma:g} (shift-invert)"))
    settings = CompareSettings(k=1, which="SA", tol=1e-10, max_iter=steps, budget=None, seed=seed)
    # the rates the theorem promises: KPS on A at its lowest end, and on the transform at the end holding lambda_*
    rate_plain = theory.kps_rate(np.sort(-exact)[::-1], 1)
    transformed = np.sort(theta)[::-1] if end == "LA" else np.sort(-theta)[::-1]
    rate_si = theory.kps_rate(transformed, 1)
    others = np.delete(gaps, j_star)
    inverse_ratio = float(gaps[j_star] / others.min())
    transformed_gap = float((transformed[0] - transformed[1]) / (transformed[1] - transformed[-1]))
    plain_gap = float((exact[1] - exact[0]) / (exact[-1] - exact[1]))

    def outcome(outcomes: Sequence[RunOutcome], index: int) -> RunOutcome | None:
        return next((o for o in outcomes if o.index == index and o.records), None)

    def curves(outcomes: Sequence[RunOutcome]) -> list[tuple[RunOutcome, np.ndarray, np.ndarray, np.ndarray]]:
        """(outcome, m, measured error, bound) of each run that has records."""
        out = []
        plain, shifted = outcome(outcomes, 0), outcome(outcomes, 1)
        if plain is not None:
            ms, err = extreme_ritz_errors(plain.records, float(exact[0]), end="SA")
            out.append((plain, ms, err, theory.lanczos_bound_curve(exact, tan_low, ms, i=1, which="SA")))
        if shifted is not None:
            ms, err = extreme_ritz_errors(shifted.records, lam_star, sigma=sigma, end=end)
            out.append((shifted, ms, err, theory.shift_invert_bound_curve(exact, sigma, tan_star, ms)))
        return out

    def charts(outcomes: Sequence[RunOutcome]) -> list[Chart]:
        wanted = np.asarray([j_star])
        rest = np.delete(np.arange(n), wanted)
        spectrum = [
            Series("|theta_j| = 1 / |lambda_j - sigma|", exact[rest], np.abs(theta[rest]), role="reference",
                   mode="markers"),
            Series(f"the eigenvalue nearest sigma, lambda_{j_star + 1} = {lam_star:.6g}", exact[wanted],
                   np.abs(theta[wanted]), mode="markers", color=1),
            Series(f"sigma = {sigma:g}", np.full(2, sigma), np.asarray([float(np.abs(theta).min()),
                                                                        float(np.abs(theta).max())]),
                   role="theory", color=2),
        ]
        errors: list[Series] = []
        spread = float(exact[-1] - exact[0])
        for run, ms, err, bound in curves(outcomes):
            informative = np.where(bound < spread, bound, np.nan)  # above the spread the bound says nothing
            errors.append(Series(f"{run.label}: measured", ms, positive(err), color=run.index))
            errors.append(Series(f"{run.label}: KPS bound", ms, informative, role="theory", color=run.index))
        return [
            Chart("shift_invert_spectrum", "The spectrum and its transform theta = 1 / (lambda - sigma)", "eigenvalue lambda",
                  "|theta| (log)", tuple(spectrum), log_y=True),
            Chart("shift_invert_rate", "Error of the extreme Ritz value against the theorem, per step",
                  "Lanczos step m (a product with A, or a solve with A - sigma I)", "|lambda~ - lambda|",
                  tuple(errors)),
        ]

    def notes(outcomes: Sequence[RunOutcome]) -> list[str]:
        out = []
        eps_floor = 1e3 * np.finfo(float).eps * scale
        for run, ms, err, bound in curves(outcomes):
            if run.result is None:
                continue
            result = run.result
            over = int(np.sum(err > bound + eps_floor))
            reached = np.flatnonzero(err <= 1e-10 * scale)
            when = f"error below 1e-10 ||A|| at step {int(ms[reached[0]])}" if reached.size else \
                "error never below 1e-10 ||A||"
            out.append(f"{run.label}: {result.status.value} after {result.n_iter} steps and {result.n_matvec} "
                       f"{'solves and products' if run.index == 1 else 'matvecs'}; {when}; the measured error "
                       f"exceeded the bound at {over} step(s) (rounding level excepted).")
        out.append(f"Per step the bound shrinks by rho^2 = {rate_plain ** 2:.4f} on A (relative gap {plain_gap:.2e}) and "
                   f"by {rate_si ** 2:.2e} on the transform (relative gap {transformed_gap:.3g}); inverse iteration "
                   f"would shrink the error by {inverse_ratio ** 2:.2e} per step.")
        return out

    facts = {
        "n": f"{n:,}",
        "lambda_1, lambda_2, lambda_n": f"{exact[0]:.5g}, {exact[1]:.5g}, {exact[-1]:.6g}",
        "nearest sigma": f"lambda_{j_star + 1} = {lam_star:.6g} ({'above' if end == 'LA' else 'below'} sigma)",
        "relative gap on A (lowest)": f"{plain_gap:.2e}",
        "rho^2 per step on A": f"{rate_plain ** 2:.4f}",
        "relative gap of the transform": f"{transformed_gap:.3g}",
        "rho^2 per step with sigma": f"{rate_si ** 2:.2e}",
        "|lambda_* - sigma| / |lambda_next - sigma|": f"{inverse_ratio:.3g}",
    }
    return LessonSetup(problem, configs, settings, charts, notes, facts)


SHIFT_INVERT = Lesson(
    key="shift_invert",
    title="Shift-invert: interior eigenvalues at the speed of the transformed gaps",
    text=_SHIFT_INVERT_TEXT,
    params=(
        ParamSpec("sigma", "float", 0.0, "The shift: the eigenvalue nearest it is found (0 lies below the spectrum "
                  "(0, 4): the lowest; try 1.1 or 2.5 for interior ones).", minimum=-1.0, maximum=5.0),
        ParamSpec("n", "int", 200, "Size of the 1-D Laplacian (eigenvalues 4 sin^2(j pi / (2 (n + 1))).",
                  minimum=20, maximum=2000),
        ParamSpec("steps", "int", 250, "Most Lanczos steps of each run (the Krylov dimension m).", minimum=5,
                  maximum=2000),
        ParamSpec("seed", "int", 0, "Seed of the random start vector.", minimum=0),
    ),
    build=_build,
    references=("T. Ericsson and A. Ruhe, Math. Comp. 35 (1980) 1251-1268 (the spectral transformation Lanczos "
                "method)", "Saad, Numerical Methods for Large Eigenvalue Problems, 2nd ed., SIAM 2011, Thm 6.4",
                "Lehoucq, Sorensen & Yang, ARPACK Users' Guide, SIAM 1998, 3.2 (mode 3)"),
    solvers=("lanczos",),
)
