/*
 * glpk_util.h - private: what every GLPK caller in libwlm_placement shares.
 *
 * GLPK aborts the process on internal errors unless an error hook is
 * installed. pl_glpk_guard_on() installs one that longjmps back to the
 * caller's setjmp, silences GLPK's terminal output, and the caller then frees
 * GLPK's per-thread environment (glp_free_env), so a bad model degrades to
 * the heuristic's answer instead of killing the controller.
 *
 * Budgets: GLPK's work is bounded by deterministic counts (simplex
 * iterations, branch-and-bound nodes) derived from the model size, so the
 * same snapshot gives the same decision on any machine and under any load.
 * The wall clock (read through GLPK's glp_time, as GLPK's own tm_lim does)
 * is only a safety net against a pathological case.
 */
#ifndef WLM_PLACEMENT_GLPK_UTIL_H
#define WLM_PLACEMENT_GLPK_UTIL_H

#include <setjmp.h>

#include <glpk.h>

#include "internal.h"

/* The model works in GHz and GB: MHz, MB and utility slopes per MHz span
 * seven orders of magnitude, which is what makes GLPK's simplex crawl. */
#define PL_CPU_U 1000.0
#define PL_MEM_U 1024.0

struct pl_glpk_guard {
    jmp_buf jb;
};

static inline void pl_glpk_hook_(void *info)
{
    longjmp(((struct pl_glpk_guard *)info)->jb, 1);
}

static inline int pl_glpk_quiet_(void *info, const char *s)
{
    (void)info;
    (void)s;
    return 1; /* swallow GLPK's terminal output */
}

/* Install the hooks; the caller does `if (setjmp(g->jb)) { glp_free_env(); ... }`
 * right after, and pl_glpk_guard_off() on every exit path. */
static inline void pl_glpk_guard_on(struct pl_glpk_guard *g)
{
    glp_error_hook(pl_glpk_hook_, g);
    glp_term_hook(pl_glpk_quiet_, NULL);
}

static inline void pl_glpk_guard_off(void)
{
    glp_error_hook(NULL, NULL);
    glp_term_hook(NULL, NULL);
}

/* The wall-clock safety net: an absolute deadline in glp_time() milliseconds. */
static inline double pl_deadline_in(double seconds)
{
    return glp_time() + seconds * 1000.0;
}

/* Milliseconds left before `deadline` for a GLPK tm_lim (at least 1). */
static inline int pl_ms_left(double deadline)
{
    double left = deadline - glp_time();
    if (left < 1)
        return 1;
    if (left > 1e9)
        return 1000000000;
    return (int)left;
}

static inline int pl_past(double deadline)
{
    return glp_time() >= deadline;
}

#endif
