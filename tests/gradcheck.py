"""Central finite differences in float64, the way the gradient-check suite uses them.

For each named array, sample coordinates (all of them when the array is small), perturb each by
±h in place, and compare (f(x+h) − f(x−h)) / 2h with the analytic gradient through the relative
error |a − n| / max(|a|, |n|, floor), with floor a small fraction of the array's largest
analytic gradient, so that near-zero entries are judged against the array's scale. A difference
within the quotient's own rounding error (ROUNDING_ULPS of f, divided by h) passes whatever its
relative size: an entry whose gradient is tiny next to f cannot be resolved more finely.

Kinks (ReLU at 0, a pooling tie) make the difference quotient meaningless where x ± h straddles
one. Such a coordinate, whose quotient at step h disagrees with the analytic gradient, shows
itself by disagreeing with the quotient at step h/10 too. The step then shrinks tenfold, down to
h/100, until two successive quotients agree, and the coarser of them is compared: a weight of an
early layer moves thousands of units downstream, so ±h often straddles some unit's kink while
±h/10 does not. A coordinate whose quotients never agree is stepped around (skipped), and the
caller bounds how many may be. Before the finer steps, the quotient at 10·h is asked: the
rounding error of a quotient, taken as ROUNDING_ULPS of f's value, is an underestimate where f is
a small difference of larger terms (a log-loss), and at h such noise alone can disagree (an
input pixel of the scaled-down network: 2.4e-5 off at h, 4e-7 at 10·h). A quotient that agrees
is not second-guessed by finer ones.
"""
from dataclasses import dataclass, field

import numpy as np


@dataclass
class GradcheckReport:
    checked: int = 0
    kinks: int = 0
    failures: list = field(default_factory=list)

    def assert_ok(self, max_kink_fraction=0.0):
        assert self.checked > 0, "no coordinate was checked"
        assert not self.failures, "gradient mismatch at " + "; ".join(self.failures[:8])
        assert self.kinks <= max_kink_fraction * (self.checked + self.kinks), \
            f"{self.kinks} of {self.checked + self.kinks} coordinates straddled a kink"


def sample_coordinates(shape, rng, samples):
    size = int(np.prod(shape))
    flat = np.arange(size) if size <= samples else rng.choice(size, samples, replace=False)
    return [np.unravel_index(i, shape) for i in flat]


ROUNDING_ULPS = 16   # how far, in units of f's last place, each evaluation of f may be off
KINK_STEPS = 2       # how many times the step may shrink tenfold around a kink


def _quotient(f, array, index, h):
    """(the central difference quotient, its rounding error bound)."""
    original = array[index]
    array[index] = original + h
    plus = f()
    array[index] = original - h
    minus = f()
    array[index] = original
    rounding = ROUNDING_ULPS * np.finfo(np.float64).eps * max(abs(plus), abs(minus)) / h
    return (plus - minus) / (2 * h), rounding


def check_gradients(f, arrays, analytic, rng, *, samples=24, h=1e-5, tolerance=1e-5,
                    step_around_kinks=False, report=None):
    """f() → float reads `arrays` (name → float64 array, perturbed in place); analytic: name →
    gradient of f. Returns a GradcheckReport (pass one in to accumulate)."""
    report = report or GradcheckReport()
    for name, array in arrays.items():
        assert array.dtype == np.float64, f"{name}: finite differences need float64"
        grad = analytic[name]
        assert grad.shape == array.shape, f"{name}: gradient shape {grad.shape} != {array.shape}"
        floor = 1e-3 * max(float(np.abs(grad).max()), 1e-12)
        for index in sample_coordinates(array.shape, rng, samples):
            numeric, rounding = _quotient(f, array, index, h)
            if step_around_kinks and not _agrees(grad[index], numeric, rounding, floor,
                                                 tolerance):
                coarser = _quotient(f, array, index, 10 * h)
                if _agrees(grad[index], *coarser, floor, tolerance):
                    numeric, rounding = coarser
                else:
                    stepped = _around_kink(f, array, index, h, numeric, rounding, floor,
                                           tolerance)
                    if stepped is None:
                        report.kinks += 1
                        continue
                    numeric, rounding = stepped
            report.checked += 1
            if not _agrees(grad[index], numeric, rounding, floor, tolerance):
                error = abs(grad[index] - numeric) / max(abs(grad[index]), abs(numeric), floor)
                report.failures.append(f"{name}{list(map(int, index))}: analytic "
                                       f"{grad[index]:.6e}, numeric {numeric:.6e}, "
                                       f"relative error {error:.1e}")
    return report


def _around_kink(f, array, index, h, numeric, rounding, floor, tolerance):
    """The quotient of the coarser of the first two successive steps (h, h/10, h/100) whose
    quotients agree, with its rounding error; None where none do."""
    step = h
    for _ in range(KINK_STEPS):
        finer, finer_rounding = _quotient(f, array, index, step / 10)
        if _agrees(numeric, finer, finer_rounding, floor, tolerance):
            return numeric, rounding
        step, numeric, rounding = step / 10, finer, finer_rounding
    return None


def _agrees(analytic, numeric, rounding, floor, tolerance):
    """Within the tolerance, relative to the larger of the two and the floor, or within the
    quotient's rounding error (also two quotients: the first in place of `analytic`)."""
    difference = abs(analytic - numeric)
    return difference <= max(tolerance * max(abs(analytic), abs(numeric), floor), rounding)


def projection_loss(forward, projection):
    """f = Σ forward() · projection: a scalar whose gradient w.r.t. the output is `projection`."""
    return lambda: float(np.sum(forward() * projection))
