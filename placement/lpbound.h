/*
 * lpbound.h - private: the GLPK bound on the max-min level (lpbound.c), the
 * restricted MILP that improves a placement (milp.c) and the LP that divides
 * CPU over a fixed placement (milp.c).
 */
#ifndef WLM_PLACEMENT_LPBOUND_H
#define WLM_PLACEMENT_LPBOUND_H

#include "internal.h"

/* Workload a is in the optimisation (placeable and not left out). */
static inline int pl_in(const struct pl_ctx *c, const int *excluded, size_t a)
{
    return c->placeable[a] && !(excluded && excluded[a]);
}

/* Workload a gets CPU all or nothing (exactly capi[a]). */
static inline int pl_whole(const struct pl_ctx *c, size_t a)
{
    return c->whole[a];
}

/* CPU (MHz, over all instances) that workload a needs for a minimum of t;
 * +INFINITY when t is above what it can reach. A whole job needs its whole
 * cap as soon as t > u(0) (it must run, and runs at its cap). */
double pl_relaxed_demand(const struct pl_ctx *c, size_t a, double t);

/* Identical nodes (same CPU, memory, labels) form classes. */
struct pl_classes {
    size_t K;
    size_t *rep;   /* per class: a representative node */
    size_t *count; /* per class: nodes in it */
    size_t *of;    /* per node: its class */
};
int pl_classes_build(const struct pl_ctx *c, struct pl_classes *cl);
void pl_classes_fini(struct pl_classes *cl);

struct pl_bound_args {
    const int *excluded;
    double known_feasible; /* a level some placement reaches (e.g. the heuristic's) */
    double known_bound;    /* a valid upper bound already known (e.g. the fluid bound) */
    double tol;            /* precision of the bound (utility units) */
    double deadline;       /* glp_time() safety net */
};

struct pl_bound_result {
    double bound;  /* certified: the relaxation is infeasible above it */
    int lp_solved; /* the bound comes from the LP (else known_bound stood) */
    int classes, groups, lps;
    long iterations;
};

/* Upper bound on the max-min level from the aggregated relaxation: per-node x
 * eliminated, identical nodes merged into classes and workloads with the same
 * shape (memory, instance cap, labels, whole) into groups; bisection on the
 * level with a small feasibility LP per step. Deterministic: simplex
 * iterations are capped by the model size. Returns 0 or -ENOMEM; a GLPK
 * failure just leaves known_bound as the bound. */
int pl_lp_bound(const struct pl_ctx *c, const struct pl_bound_args *ba, struct pl_bound_result *r,
                char *note, size_t notesz);

/* ---- milp.c: the restricted MILP that improves a placement ---- */

struct pl_improve_args {
    const int *usable;   /* nodes the placement may use */
    const int *excluded; /* workloads left out of the optimisation */
    const int *free_wl;  /* workloads whose placement may change; the rest keep
                          * their nodes (their CPU stays continuous there) */
    int full;            /* every usable eligible node is a candidate */
    int ncand;           /* otherwise: candidates per free workload beyond its
                          * own nodes (current and incumbent) */
    int nempty;          /* empty nodes per node class offered to every free workload */
    double t_floor;      /* the incumbent's level: t >= t_floor */
    double t_cap;        /* a certified upper bound on t (the LP bound) */
    const double *held;  /* NULL, or per workload: NAN, or a utility it must keep
                          * (lexicographic stage: t is then the next level) */
    double sum_weight;   /* > 0: also maximise this x the sum of the utilities */
    long work_budget;    /* work units (deterministic): a simplex iteration costs
                          * 1 + rows/500, a branch-and-bound node 1 + (rows+cols)/20 */
    double deadline;     /* glp_time() safety net */
    double mip_gap;
    const char *export_path; /* write the model (CPLEX LP) here instead of solving */
};

struct pl_improve_result {
    double t;          /* level of the placement returned */
    int improved;      /* *s was replaced */
    int optimal;       /* the restricted model was solved to optimality (within the gap) */
    int nbin, nrows, ncols;
    long iterations, nodes;
    long work; /* work units spent (see work_budget) */
    int status; /* 0 ok; 1 infeasible model; 2 budget hit before a solution; -1 GLPK trouble */
};

/* Build and solve the restricted MILP. `s` holds the incumbent on input and,
 * when a strictly better placement was found, that placement on output.
 * Returns 0 (see r->status) or -ENOMEM. */
int pl_improve(const struct pl_ctx *c, const struct pl_improve_args *ia, struct pl_sol *s,
               struct pl_improve_result *r, char *note, size_t notesz);

/* Divide CPU over a fixed placement by progressive filling: raise the
 * minimum, freeze the workloads that block it, raise the next level, with an
 * LP per level. Whole workloads keep exactly their cap. Never lowers the
 * sorted utility vector of `s` (it is kept when GLPK fails). */
int pl_fill_levels(const struct pl_ctx *c, const int *excluded, struct pl_sol *s, int max_levels,
                   long it_budget, double deadline);

#endif
