"""Cluster pool samples by their router features: k-means (k by the elbow method) or HDBSCAN.

The select stage spreads its picks across clusters, so the clusters only have to group samples that the
router treats alike; they are found in cosine geometry (`prepare_features` L2-normalises the rows, and
euclidean k-means on unit vectors is spherical k-means up to the centroid norm).

Speed, for 270k x 1024 features on a CPU:
- the elbow is measured on a seeded subsample (`elbow_sample` rows), and only the chosen k is fitted on all rows,
  warm-started from the subsample's solution at that k, so the full data needs a few Lloyd iterations, not a
  k-means++ seeding plus a cold start;
- k-means++ seeding is ours (greedy, like scikit-learn's, in float32 BLAS): scikit-learn's computes each
  candidate's distances in chunks upcast to float64, 4-10x slower on float32 features of this width;
- the Lloyd iterations are the backend's: scikit-learn's fused chunked loop is the fastest measured on CPU
  (faster than faiss and torch there, see benchmarks/README.md), hence "auto" picks it on CPU; on a GPU "auto"
  picks cuML when importable, else a batched Lloyd loop in torch.

Every backend runs the same seeding and the same subsample-then-all schedule, so they differ only in how the
iterations are computed. Results are deterministic for a seed on CPU (a GPU's atomic sums are not).
"""

from mygo.analysis.clustering.centroids import choose_elbow, elbow_ks, fit_k_range, kmeans, kmeans_plusplus
from mygo.analysis.clustering.core import (
    CLUSTERING_METHODS,
    HDBSCAN_BACKENDS,
    KMEANS_BACKENDS,
    Clustering,
    available_backends,
    prepare_features,
    silhouette,
)
from mygo.analysis.clustering.density import (
    HDBSCAN_FIT_SAMPLE,
    HDBSCAN_PCA_COMPONENTS,
    assign_to_clusters,
    available_hdbscan_backends,
    hdbscan,
    tune_hdbscan,
)

__all__ = [
    "CLUSTERING_METHODS",
    "HDBSCAN_BACKENDS",
    "HDBSCAN_FIT_SAMPLE",
    "HDBSCAN_PCA_COMPONENTS",
    "KMEANS_BACKENDS",
    "Clustering",
    "tune_hdbscan",
    "assign_to_clusters",
    "available_backends",
    "available_hdbscan_backends",
    "choose_elbow",
    "elbow_ks",
    "fit_k_range",
    "hdbscan",
    "kmeans",
    "kmeans_plusplus",
    "prepare_features",
    "silhouette",
]
