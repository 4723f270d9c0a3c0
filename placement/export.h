/*
 * export.h - the placement model for anyone to check with GLPK's glpsol.
 */
#ifndef WLM_PLACEMENT_EXPORT_H
#define WLM_PLACEMENT_EXPORT_H

#include "placement.h"

/* Write the full max-min MILP of `p` (every eligible node x workload pair,
 * whole jobs all-or-nothing, symmetry rows for identical empty nodes, the
 * same model the exact stage solves on small problems) to `path` in CPLEX LP
 * format (glp_write_lp). The objective is the minimum utility t plus 1e-7 per
 * instance kept where it runs today, minus 1e-8 per new one (the constant 2
 * the solver adds for its relative gap is only a comment in the file), so
 * `glpsol --lp path` reports the best minimum utility. This is the one place in the library that
 * writes a file; only `wlm plan --export-lp` calls it. 0 or -WLM_E* with err. */
int placement_export_lp(const struct placement_problem *p, const char *path, struct wlm_error *err);

#endif
