"""Objective speech-quality metrics for checking that noise really went down."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

_EPS = 1e-12


def si_sdr(reference: npt.ArrayLike, estimate: npt.ArrayLike) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al., 2019), higher is better.

    Both signals are cut to the shorter length (along the first axis: samples, or samples x channels), flattened and
    made zero-mean; the estimate is projected on the reference, and the ratio of the projection's energy to the
    residual's is returned. Works on any scale of either input; the signals must already be time-aligned.
    """
    ref = np.asarray(reference, dtype=np.float64)
    est = np.asarray(estimate, dtype=np.float64)
    if ref.ndim != est.ndim:
        raise ValueError(f"reference has {ref.ndim} dimensions, estimate {est.ndim}")
    n = min(ref.shape[0], est.shape[0])
    if n == 0:
        raise ValueError("empty signal")
    ref = ref[:n].ravel()
    est = est[:n].ravel()
    ref = ref - ref.mean()
    est = est - est.mean()
    ref_energy = float(np.dot(ref, ref))
    if ref_energy <= _EPS:
        raise ValueError("reference is silent")
    target = (float(np.dot(est, ref)) / ref_energy) * ref
    residual = est - target
    return 10.0 * math.log10((float(np.dot(target, target)) + _EPS) / (float(np.dot(residual, residual)) + _EPS))


def snr_db(signal: npt.ArrayLike, noise: npt.ArrayLike) -> float:
    """Plain power ratio of two signals in dB."""
    s = np.asarray(signal, dtype=np.float64)
    v = np.asarray(noise, dtype=np.float64)
    return 10.0 * math.log10((float(np.mean(s * s)) + _EPS) / (float(np.mean(v * v)) + _EPS))
