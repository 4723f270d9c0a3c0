/*
 * heuristic.h - private: the packer behind the heuristic and the solve pipeline.
 */
#ifndef WLM_PLACEMENT_HEURISTIC_H
#define WLM_PLACEMENT_HEURISTIC_H

#include "internal.h"

/* Reusable packing state for one problem and one node preference order. */
struct pl_packer {
    const struct pl_ctx *c;
    size_t *order;       /* position -> node */
    size_t *pos;         /* node -> position */
    double *fc, *fm;     /* free CPU / memory per node */
    size_t size;         /* segment tree leaves */
    double *tc, *tm;     /* segment tree maxima */
    double *tb;          /* max over leaves of min(fc / cs, fm / ms): a joint 2-D prune */
    double cs, ms;       /* scales: mean node CPU and memory */
    size_t *head, *next; /* per-workload instance lists in the output */
    size_t next_cap;
    void *pieces;
    size_t npieces_cap;
    int *left;
    double *dem;
    int fresh_used; /* the last successful pl_pack ignored today's placement */
};

/* How a packing treats what runs today. */
enum pl_pack_mode {
    PL_PACK_STICKY = 0, /* work returns to its node when it fits; else (MOVE) repacked fresh */
    PL_PACK_KEEP,       /* running jobs stay where they are and stay running: no knobs */
    PL_PACK_STICKY_ONLY /* sticky, never a fresh repack (consolidation probes) */
};

struct pl_pack_args {
    size_t K;            /* use nodes at positions [0, K) */
    double capfactor;    /* CPU fraction usable (1 - headroom when consolidating) */
    const int *excluded; /* workloads left out */
    int *failed_mark;    /* best effort: mark workloads that could not be packed (NULL = strict) */
    int ff_only;         /* no worst-fit retry (consolidation probes want tight packing) */
    /* Progressive filling: a workload's level is min(t, lvcap[a]) (NULL: no
     * caps). Whole jobs with admit[a] set are placed at any level. */
    const double *lvcap;
    const unsigned char *admit;
    int mode; /* enum pl_pack_mode */
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
/* The same, also giving the lowest level known not to pack (INFINITY when
 * the level stopped at a workload's ceiling rather than at capacity). */
int pl_best_level_fail(struct pl_packer *k, const struct pl_pack_args *pa, struct pl_sol *out,
                       double *level, double *fail);
/* Start idle-but-useful work on spare capacity after the last pl_pack. */
int pl_place_idle(struct pl_packer *k, size_t K, const int *excluded, struct pl_sol *s);
/* Smallest prefix of the node order whose CPU (x capfactor) and memory could
 * hold every workload at level t, counting aggregates only: a lower bound on
 * the nodes a packing needs. */
size_t pl_min_prefix(const struct pl_packer *k, const int *excluded, double t, double capfactor);
double pl_fluid_bound(const struct pl_ctx *c, const int *excluded);
/* After a successful pl_pack at level t: place the whole jobs listed in
 * cand (in that order, most urgent first) that the packing left out, on the
 * capacity still free, a running job on its own node when there is room.
 * Sets admit[a] for each one placed. Returns 0 or -ENOMEM. */
int pl_admit_extras(struct pl_packer *k, size_t K, const size_t *cand, size_t ncand,
                    unsigned char *admit, struct pl_sol *s);
/* Make the packer describe solution s on the first K nodes of its order
 * (free CPU and memory, instance lists), e.g. after a failed try. */
int pl_packer_load(struct pl_packer *k, size_t K, const struct pl_sol *s);
/* Give every non-whole instance the free CPU of its node up to its cap
 * (work conservation after refinement). */
void pl_fill_idle(const struct pl_ctx *c, const int *usable, struct pl_sol *s);
/* After a fresh packing: rename bins among identical nodes so work stays
 * where it runs today (fewer moves, same plan). */
int pl_relabel(const struct pl_ctx *c, const int *usable, struct pl_sol *s);
/* Max-min with whole jobs by progressive filling (leximin.c): packs at the
 * highest levels, admits waiting whole jobs most urgent first, relabels a
 * fresh packing, refines CPU shares. *level is the bottleneck level
 * (-INFINITY when nothing packs). mode is an enum pl_pack_mode. */
int pl_leximin(struct pl_packer *k, size_t K, const int *excluded, int mode, const int *usable,
               struct pl_sol *out, double *level);
/* Utility a job loses in solution s through the actions that take it there:
 * migration, or suspend + restore (inst = its instance in s, PL_NONE when it
 * waits). 0 for work that stays put or waits anyway. */
double pl_stall_penalty(const struct pl_ctx *c, size_t a, const struct pl_sol *s, size_t inst);

/* ---- compare.c: judging placements against each other ---- */

/* What the comparisons work with: the packer (and its ctx), the workloads
 * left out, the usable nodes, and scratch per workload. */
struct pl_choice {
    struct pl_packer *k;
    const int *excluded;
    const int *usable;
    double *cpu, *util; /* W entries each */
};
/* Utility cost of the disruptive actions that turn `cur` into `tgt`; a job
 * with a stall cost pays in its utility instead. *nchanges counts them. */
double pl_change_cost(const struct pl_ctx *c, const struct pl_sol *cur, const struct pl_sol *tgt,
                      int *nchanges);
/* Utilities of the workloads in the optimisation, ascending; returns how many. */
size_t pl_sorted_utils(const struct pl_ctx *c, const int *excluded, const double *util,
                       double *out);
/* Sorted stall-adjusted utilities of the best plan on K nodes that keeps
 * running jobs in place (r->usable must mark those K nodes), and the CPU
 * it gives waiting jobs to start them. */
int pl_plan_vector(const struct pl_choice *r, size_t K, double *out, size_t *n, double *started);
/* Difference at the first rank where two sorted vectors differ (0 if none). */
double pl_lex_gain(const double *a, const double *b, size_t n);
/* The current placement with its CPU re-divided (whole jobs kept whole). */
int pl_current_redivided(const struct pl_ctx *c, const int *on, struct pl_sol *s);
/* Contention: KEEP vs MOVE vs the current placement; the chosen plan
 * replaces *sol, d->kept_current and `note` say why. */
int pl_choose_contention(const struct pl_choice *r, size_t K, struct pl_sol *sol,
                         struct placement_decision *d, char *note, size_t notesz);
/* *better: the exact solver's `ex` pays against the heuristic's `hs`. */
int pl_exact_pays(const struct pl_choice *r, const struct pl_sol *hs, const struct pl_sol *ex,
                  int *better);

#endif
