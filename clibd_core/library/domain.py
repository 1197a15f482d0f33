"""The domain of a library: where its references' embeddings lie, so a query from elsewhere is told so.

A model trained on one kind of data (a synthetic world, barcodes) still maps anything it is given to
some vector, and the nearest reference of a real photo in a synthetic library can look close enough to
win confident votes. The library's own vectors are summarised by their mean, their main principal axes
with the variance along each, and the variance left off those axes. A query's distance is the squared
Mahalanobis distance along the axes plus the residual scaled by its variance (:func:`distances`, which
library/naming.py applies to each query). The threshold is a high quantile of the distances of
references held out of the fit, so it is measured, not assumed.
"""

from __future__ import annotations

import numpy as np

AXES = 32  # principal axes kept (fewer for small libraries)
QUANTILE = 0.999  # held-out references beyond the threshold: about 1 in 1,000
MIN_VECTORS = 40  # fewer references than this: no domain (the calibration falls back anyway)
MAX_FIT = 50_000  # vectors used to fit at most (a random subset of large libraries)


def fit_domain(vectors: np.ndarray, seed: int = 0) -> dict | None:
    """The mean, axes, variances, residual variance and threshold of a library's vectors of one modality;
    plain lists for library.json. None when the library is too small to say what is typical."""
    if len(vectors) < MIN_VECTORS:
        return None
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(vectors))[: 2 * MAX_FIT]
    fit, held = vectors[order[: len(order) // 2]].astype(np.float64), vectors[order[len(order) // 2 :]]
    axes = min(AXES, len(fit) // 4)
    mean = fit.mean(axis=0)
    _, singular, components = np.linalg.svd(fit - mean, full_matrices=False)
    variances = np.maximum(singular**2 / len(fit), 1e-9)
    domain = {
        "mean": mean.tolist(),
        "axes": components[:axes].tolist(),
        "variances": variances[:axes].tolist(),
        "residual_variance": float(max(variances[axes:].mean() if len(variances) > axes else 1e-9, 1e-9)),
        "fitted_on": len(fit),
        "quantile": QUANTILE,
    }
    domain["threshold"] = float(np.quantile(distances(domain, held), QUANTILE))
    return domain


def with_arrays(domain: dict) -> dict:
    """The domain with its lists as arrays: converting them took 0.3 ms of every query (keep this form)."""
    return {key: np.asarray(value) if isinstance(value, list) else value for key, value in domain.items()}


def distances(domain: dict, vectors: np.ndarray) -> np.ndarray:
    """The domain distance of each row of ``vectors`` (library/naming.py uses it per query)."""
    centred = np.atleast_2d(np.asarray(vectors, dtype=np.float64)) - np.asarray(domain["mean"])
    along = centred @ np.asarray(domain["axes"]).T
    residual = (centred**2).sum(axis=1) - (along**2).sum(axis=1)
    return (along**2 / np.asarray(domain["variances"])).sum(axis=1) + residual / domain["residual_variance"]
