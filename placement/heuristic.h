/*
 * heuristic.h - private: the packer behind the heuristic and the solve pipeline.
 */
#ifndef WLM_PLACEMENT_HEURISTIC_H
#define WLM_PLACEMENT_HEURISTIC_H

#include "internal.h"

/* Reusable packing state for one problem and one node preference order. */
struct pl_packer {
    const struct pl_ctx *c;
    size_t *order; /* position -> node */
    size_t *pos;   /* node -> position */
    double *fc, *fm; /* free CPU / memory per node */
    size_t size;     /* segment tree leaves */
    double *tc, *tm; /* segment tree maxima */
    double *tb;      /* max over leaves of min(fc / cs, fm / ms): a joint 2-D prune */
    double cs, ms;   /* scales: mean node CPU and memory */
    size_t *head, *next; /* per-workload instance lists in the output */
    size_t next_cap;
    void *pieces;
    size_t npieces_cap;
    int *left;
    double *dem;
};

struct pl_pack_args {
    size_t K;           /* use nodes at positions [0, K) */
    double capfactor;   /* CPU fraction usable (1 - headroom when consolidating) */
    const int *excluded; /* workloads left out */
    int *failed_mark;   /* best effort: mark workloads that could not be packed (NULL = strict) */
    int ff_only;        /* no worst-fit retry (consolidation probes want tight packing) */
};

int pl_packer_init(struct pl_packer *k, const struct pl_ctx *c, const size_t *order);
void pl_packer_fini(struct pl_packer *k);
/* Pack every workload at level t. Strict mode: *failed = 1 as soon as a piece
 * does not fit. Returns 0 or -ENOMEM. */
int pl_pack(struct pl_packer *k, const struct pl_pack_args *pa, double t, struct pl_sol *out,
            int *failed);
/* Highest level that packs (bisection); -INFINITY when not even the minimum
 * instance counts fit. `out` holds the packing at that level. */
int pl_best_level(struct pl_packer *k, const struct pl_pack_args *pa, struct pl_sol *out,
                  double *level);
/* Start idle-but-useful work on spare capacity after the last pl_pack. */
int pl_place_idle(struct pl_packer *k, size_t K, const int *excluded, struct pl_sol *s);
/* Smallest prefix of the node order whose CPU (x capfactor) and memory could
 * hold every workload at level t, counting aggregates only: a lower bound on
 * the nodes a packing needs. */
size_t pl_min_prefix(const struct pl_packer *k, const int *excluded, double t, double capfactor);
double pl_fluid_bound(const struct pl_ctx *c, const int *excluded);

#endif
