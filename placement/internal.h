/*
 * internal.h - private to libwlm_placement.
 */
#ifndef WLM_PLACEMENT_INTERNAL_H
#define WLM_PLACEMENT_INTERNAL_H

#include "placement.h"

#define PL_NONE ((size_t)-1)
#define PL_EPS 1e-9

/* Working view of a problem, shared by the solvers and the planner. */
struct pl_ctx {
    const struct placement_problem *p;
    const struct placement_options *o;
    size_t N, W;
    double *cap;      /* effective CPU capacity per node (power budget applied) */
    double *mem;      /* memory per node */
    double *capi;     /* per workload: CPU cap of one instance (<= largest node) */
    int *maxinst;     /* per workload */
    int *mininst;     /* per workload */
    int *placeable;   /* per workload: some node could host an instance */
    int *hasreq;      /* per workload: label requirements present */
    double *umax;     /* per workload: best utility reachable */
    double *u0;       /* per workload: utility at zero CPU (left waiting) */
    unsigned char *whole; /* per workload: a whole job (CPU all or nothing at capi) */
    unsigned char *onnode; /* per workload: a job that holds a node now (running or paused) */
    unsigned char *busy;   /* per workload: a job with an action in flight (stays as it is) */
    double *busycpu;       /* per workload: the CPU a busy job holds */
};

int pl_ctx_init(struct pl_ctx *c, const struct placement_problem *p);
void pl_ctx_fini(struct pl_ctx *c);
/* Workload a may run on node n (labels and memory; capacity aside). */
int pl_eligible(const struct pl_ctx *c, size_t a, size_t n);

/* A placement: instances with CPU. */
struct pl_sol {
    struct placement_assign *a;
    size_t n, cap;
};
int pl_sol_push(struct pl_sol *s, size_t w, size_t n, double cpu);
void pl_sol_fini(struct pl_sol *s);
int pl_sol_copy(struct pl_sol *dst, const struct pl_sol *src);

/* Per-workload total CPU and utilities of a solution; min over placeable workloads
 * (and over everything, unplaced at u(0)). */
void pl_sol_eval(const struct pl_ctx *c, const struct pl_sol *s, double *cpu, double *util,
                 double *min_placeable, double *min_all);

/* Raise utilities with free CPU on the nodes already used (lexicographic
 * progressive filling, approximate). `usable` marks nodes whose CPU counts (NULL = all). */
int pl_refine(const struct pl_ctx *c, const int *usable, struct pl_sol *s);
/* Move instances from heavy to light nodes (band balancer); returns moves made. */
int pl_balance(const struct pl_ctx *c, struct pl_sol *s, const int *node_on);
/* The current placement as a pl_sol (CPU set from the problem). */
int pl_current(const struct pl_ctx *c, struct pl_sol *s);

/* The GLPK stage of a decision (exact.c): sets d->upper_bound (and, when the
 * exact solver ran, d->solver / d->exact_optimal), may replace *sol by a
 * better placement (never a worse one), appends to `note` what the reader
 * should know. Returns 0 or a negative errno. */
struct pl_exact_args {
    const int *usable;   /* nodes the placement may use */
    const int *excluded; /* workloads left out of the optimisation */
    int all_nodes;       /* usable covers every node (the bound is then valid) */
    int consolidated;    /* consolidation mode: the exact solver does not run */
};
int pl_exact_stage(const struct pl_ctx *c, const struct pl_exact_args *ea, struct pl_sol *sol,
                   struct placement_decision *d, char *note, size_t notesz);

/* Action planning (plan.c). */
int pl_plan(const struct pl_ctx *c, const struct pl_sol *target, const int *node_on,
            struct placement_decision *d);

#endif
