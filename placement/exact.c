/*
 * exact.c - the GLPK side of a decision: the upper bound reported with every
 * decision and, where the options ask for it, the exact MILP that improves the
 * heuristic's placement. The heuristic's answer is the incumbent: whatever
 * GLPK does, the placement handed back is never worse than it.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heuristic.h"

static double min_util(const struct pl_ctx *c, const int *excluded, const struct pl_sol *s)
{
    size_t W = c->W ? c->W : 1;
    double *cpu = calloc(W, sizeof(double)), *util = calloc(W, sizeof(double));
    double m = INFINITY;
    if (cpu && util) {
        pl_sol_eval(c, s, cpu, util, NULL, NULL);
        for (size_t a = 0; a < c->W; a++)
            if (c->placeable[a] && !excluded[a] && util[a] < m)
                m = util[a];
    }
    free(cpu);
    free(util);
    return isfinite(m) ? m : 0;
}

int pl_exact_stage(const struct pl_ctx *c, const struct pl_exact_args *ea, struct pl_sol *sol,
                   struct placement_decision *d, char *note, size_t notesz)
{
    const struct placement_options *o = c->o;
    double bound = pl_fluid_bound(c, ea->excluded);
    int want_exact = o->solver == PLACEMENT_SOLVER_EXACT ||
                     (o->solver == PLACEMENT_SOLVER_AUTO && c->N * c->W <= o->exact_max_pairs);
    if (want_exact && !ea->consolidated) {
        double lpb = INFINITY;
        int optimal = 0;
        char mnote[128] = "";
        struct pl_sol heur = {0};
        if (pl_sol_copy(&heur, sol))
            return -ENOMEM;
        double t_heur = min_util(c, ea->excluded, &heur);
        int mrc = pl_milp(c, ea->usable, ea->excluded, sol, &lpb, &optimal, mnote, sizeof(mnote));
        if (mrc == 0) {
            /* If stage 2 ran out of time, CPU above the minimum may be
             * left on the table: hand it out as the heuristic would. */
            int rc = pl_refine(c, ea->usable, sol);
            if (rc) {
                pl_sol_fini(&heur);
                return rc;
            }
            /* A MILP cut short by its time limit can end below the heuristic
             * it started from (if GLPK rejected the incumbent): keep the best
             * (stage 2 may give up t within the MIP gap: that is no loss). */
            double tol = 1e-6 + 2 * o->mip_gap * fabs(t_heur);
            if (min_util(c, ea->excluded, sol) < t_heur - tol) {
                pl_sol_fini(sol);
                *sol = heur;
                heur = (struct pl_sol){0};
                mrc = 1;
                snprintf(mnote, sizeof(mnote), "stopped below the heuristic, heuristic used");
            }
        }
        pl_sol_fini(&heur);
        if (mrc == 0) {
            d->solver = PLACEMENT_SOLVER_EXACT;
            d->exact_optimal = optimal;
        } else {
            size_t l = strlen(note);
            snprintf(note + l, notesz - l, "%sexact solver: %s", l ? "; " : "",
                     mnote[0] ? mnote : "failed, heuristic used");
        }
        /* The LP relaxation bounds t whichever answer is used, but only for
         * the nodes it was given: with powered-off nodes left out it says
         * nothing about powering them on, so the fluid bound stays. */
        if (lpb < bound && ea->all_nodes)
            bound = lpb;
    }
    d->upper_bound = bound;
    return 0;
}
