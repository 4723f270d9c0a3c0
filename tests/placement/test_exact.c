/* The GLPK stage of a decision: the bound it reports, the placements it
 * improves, the limits it keeps, and the model it exports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <glpk.h>
#include <math.h>

#include "export.h"
#include "helpers.h"
#include "instances.h"
#include "lpbound.h"

static struct placement_decision *solve(struct placement_problem *p, enum placement_solver s)
{
    struct placement_decision *d = NULL;
    struct wlm_error err = {0};
    p->opts.solver = s;
    assert_int_equal(placement_solve(p, &d, &err), 0);
    assert_non_null(d);
    return d;
}

/* Minimum utility with whole jobs valued all or nothing. */
static double whole_min(const struct placement_problem *p, const struct placement_decision *d)
{
    double m = INFINITY;
    for (size_t a = 0; a < p->nworkloads; a++) {
        const struct placement_workload *w = &p->workloads[a];
        double u = d->utility[a];
        if (w->kind == PLACEMENT_JOB && w->whole && d->cpu_mhz[a] < w->max_cpu_per_instance - 1e-6)
            u = placement_utility_eval(&w->utility, 0);
        m = fmin(m, u);
    }
    return m;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Three whole jobs of 4 GHz and two 4-GHz nodes: one job must wait, so the
 * best minimum is u(0) = -1. A plain LP relaxation (each job two thirds
 * placed) says 1/3; the bound LP knows a whole job over half a node's CPU
 * takes a node of its own and proves -1, and two jobs run at their cap. */
static void test_whole_jobs_exact_where_it_matters(void **state)
{
    (void)state;
    struct placement_problem *p = tp_new(2, 3);
    tp_node(p, 0, 2, 2000, 8192, 1);
    tp_node(p, 1, 2, 2000, 8192, 1);
    for (size_t i = 0; i < 3; i++) {
        tp_job(p, i, 1024, 4000, 4000);
        p->workloads[i].whole = 1;
    }
    p->opts.power_saving = 0;
    struct placement_decision *d = solve(p, PLACEMENT_SOLVER_AUTO);
    assert_true(fabs(whole_min(p, d) - -1) < 1e-6);
    assert_true(d->exact_optimal);
    assert_true(d->upper_bound < -1 + 1e-3);
    assert_true(!strcmp(d->bound_method, "glpk-lp") || !strcmp(d->bound_method, "glpk-milp"));
    /* two jobs run with exactly their cap */
    size_t running = 0;
    for (size_t i = 0; i < d->nassign; i++) {
        assert_true(fabs(d->assign[i].cpu_mhz - 4000) < 1e-6);
        running++;
    }
    assert_int_equal(running, 2);
    placement_decision_free(d);
    placement_problem_free(p);
}

/* Whole jobs of 3, 3 and 2 GHz on two 4-GHz nodes: the CPU adds up, the
 * two big ones take a node each, but the small one fits beside neither, so
 * one job waits. Only the MILP can prove that; the bound then says so. */
static void test_milp_proves_what_the_lp_cannot(void **state)
{
    (void)state;
    struct placement_problem *p = tp_new(2, 3);
    tp_node(p, 0, 2, 2000, 8192, 1);
    tp_node(p, 1, 2, 2000, 8192, 1);
    static const double caps[] = {3000, 3000, 2000};
    for (size_t i = 0; i < 3; i++) {
        tp_job(p, i, 1024, caps[i], caps[i]);
        p->workloads[i].whole = 1;
    }
    p->opts.power_saving = 0;
    p->opts.time_limit_s = 60;
    struct placement_decision *d = solve(p, PLACEMENT_SOLVER_EXACT);
    assert_true(fabs(whole_min(p, d) - -1) < 1e-6);
    assert_true(d->exact_optimal);
    assert_string_equal(d->bound_method, "glpk-milp");
    assert_true(d->upper_bound < -1 + 1e-3);
    placement_decision_free(d);
    placement_problem_free(p);
}

/* On contended instances GLPK's placement is never worse than the
 * heuristic's (lexicographically, whole jobs all or nothing), the bound
 * holds, and small instances are solved to proven optimality. */
static void test_never_worse_and_bound_holds(void **state)
{
    (void)state;
    static const size_t sizes[] = {10, 20, 50};
    for (size_t k = 0; k < 3; k++) {
        for (unsigned long long seed = 1; seed <= 3; seed++) {
            struct placement_problem *p = bi_contended(sizes[k], seed, 0.95);
            p->opts.time_limit_s = 60; /* work limits decide, not the clock */
            struct placement_decision *h = solve(p, PLACEMENT_SOLVER_HEURISTIC);
            struct placement_decision *e = solve(p, PLACEMENT_SOLVER_AUTO);
            double hm = whole_min(p, h), em = whole_min(p, e);
            assert_true(em >= hm - 1e-9);
            assert_true(e->upper_bound >= em - 1e-6);
            assert_true(h->upper_bound >= hm - 1e-6);
            assert_true(e->bound_method[0]);
            if (sizes[k] <= 20)
                assert_true(e->exact_optimal);
            struct wlm_error err = {0};
            assert_int_equal(placement_plan_verify(p, e, &err), 0);
            placement_decision_free(h);
            placement_decision_free(e);
            placement_problem_free(p);
        }
    }
}

/* The same snapshot gives the same placement, byte for byte. */
static void test_repeatable(void **state)
{
    (void)state;
    struct placement_problem *p = bi_contended(50, 7, 0.95);
    p->opts.time_limit_s = 60;
    struct placement_decision *a = solve(p, PLACEMENT_SOLVER_AUTO);
    struct placement_decision *b = solve(p, PLACEMENT_SOLVER_AUTO);
    assert_int_equal(a->nassign, b->nassign);
    assert_memory_equal(a->assign, b->assign, a->nassign * sizeof(*a->assign));
    json_t *ja = placement_decision_to_json(p, a), *jb = placement_decision_to_json(p, b);
    char *sa = json_dumps(ja, JSON_SORT_KEYS), *sb = json_dumps(jb, JSON_SORT_KEYS);
    assert_string_equal(sa, sb);
    assert_non_null(strstr(sa, "\"bound_method\""));
    free(sa);
    free(sb);
    json_decref(ja);
    json_decref(jb);
    placement_decision_free(a);
    placement_decision_free(b);
    placement_problem_free(p);
}

/* One deadline covers the whole GLPK stage (bound, model building, LP,
 * branch and bound): with a work limit far beyond what the clock allows and
 * exact_max_pairs asking for the full model of 270,000 pairs, the stage
 * still returns soon after it. The heuristic before it is not timed here. */
static void test_deadline_holds(void **state)
{
    (void)state;
    struct placement_problem *p = bi_contended(300, 3, 0.95);
    p->opts.time_limit_s = 0.2;
    p->opts.work_limit = 1000000;
    p->opts.exact_max_pairs = 1000000; /* the full model is allowed, and large */
    p->opts.solver = PLACEMENT_SOLVER_EXACT;
    struct pl_ctx c;
    assert_int_equal(pl_ctx_init(&c, p), 0);
    int *usable = calloc(p->nnodes, sizeof(int)), *excluded = calloc(p->nworkloads, sizeof(int));
    for (size_t n = 0; n < p->nnodes; n++)
        usable[n] = 1;
    struct pl_sol s = {0}; /* nothing placed: far below the bound */
    struct placement_decision d;
    memset(&d, 0, sizeof(d));
    char note[256] = "";
    struct pl_exact_args ea = {usable, excluded, 1, 0};
    double t0 = now();
    assert_int_equal(pl_exact_stage(&c, &ea, &s, &d, note, sizeof(note)), 0);
    double secs = now() - t0;
    /* generous for sanitizer builds on a shared machine; without the
     * deadline this runs for minutes */
    assert_true(secs < 2.0);
    assert_true(d.upper_bound > -1);
    free(usable);
    free(excluded);
    pl_sol_fini(&s);
    pl_ctx_fini(&c);
    placement_problem_free(p);
}

/* A restricted model that cannot reach the incumbent's level reports it and
 * leaves the placement alone. */
static void test_infeasible_restricted_model(void **state)
{
    (void)state;
    struct placement_problem *p = bi_contended(20, 5, 0.95);
    struct pl_ctx c;
    assert_int_equal(pl_ctx_init(&c, p), 0);
    struct placement_decision *h = solve(p, PLACEMENT_SOLVER_HEURISTIC);
    struct pl_sol s = {0};
    for (size_t i = 0; i < h->nassign; i++)
        assert_int_equal(pl_sol_push(&s, h->assign[i].workload, h->assign[i].node,
                                     h->assign[i].cpu_mhz),
                         0);
    struct pl_sol before = {0};
    assert_int_equal(pl_sol_copy(&before, &s), 0);
    int *usable = calloc(p->nnodes, sizeof(int)), *excluded = calloc(p->nworkloads, sizeof(int));
    int *free_wl = calloc(p->nworkloads, sizeof(int));
    for (size_t n = 0; n < p->nnodes; n++)
        usable[n] = 1;
    for (size_t a = 0; a < p->nworkloads; a++)
        free_wl[a] = 1;
    /* a level no placement reaches: every utility tops out at 1 */
    struct pl_improve_args ia = {.usable = usable, .excluded = excluded, .free_wl = free_wl,
                                 .full = 1, .t_floor = 1.5, .t_cap = INFINITY,
                                 .work_budget = 100000,
                                 .deadline = glp_time() + 60000, .mip_gap = 1e-4};
    struct pl_improve_result r;
    char note[128];
    assert_int_equal(pl_improve(&c, &ia, &s, &r, note, sizeof(note)), 0);
    assert_int_equal(r.status, 1);
    assert_false(r.improved);
    assert_non_null(strstr(note, "infeasible"));
    assert_int_equal(s.n, before.n);
    assert_memory_equal(s.a, before.a, s.n * sizeof(*s.a));
    glp_free_env();
    free(usable);
    free(excluded);
    free(free_wl);
    pl_sol_fini(&s);
    pl_sol_fini(&before);
    pl_ctx_fini(&c);
    placement_decision_free(h);
    placement_problem_free(p);
}

/* The exported model, read back and solved by GLPK on its own, gives the
 * minimum the decision reports (what `glpsol --lp` does). */
static void test_export_lp_matches(void **state)
{
    (void)state;
    struct placement_problem *p = bi_contended(10, 2, 0.95);
    p->opts.time_limit_s = 60;
    char path[64];
    snprintf(path, sizeof(path), "/tmp/wlm-test-exact-%d.lp", (int)getpid());
    struct wlm_error err = {0};
    assert_int_equal(placement_export_lp(p, path, &err), 0);
    struct placement_decision *d = solve(p, PLACEMENT_SOLVER_EXACT);
    assert_true(d->exact_optimal);
    glp_prob *lp = glp_create_prob();
    glp_term_out(GLP_OFF);
    assert_int_equal(glp_read_lp(lp, NULL, path), 0);
    glp_iocp ip;
    glp_init_iocp(&ip);
    ip.presolve = GLP_ON;
    ip.msg_lev = GLP_MSG_OFF;
    assert_int_equal(glp_intopt(lp, &ip), 0);
    assert_int_equal(glp_mip_status(lp), GLP_OPT);
    double t = glp_mip_obj_val(lp); /* t plus terms below 1e-5 */
    assert_true(fabs(t - whole_min(p, d)) < 1e-4);
    glp_delete_prob(lp);
    glp_free_env();
    remove(path);
    /* a path that cannot be written is an error naming it */
    assert_int_equal(placement_export_lp(p, "/nonexistent-dir/x.lp", &err), -WLM_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent-dir/x.lp"));
    placement_decision_free(d);
    placement_problem_free(p);
}

/* The bound LP aggregates identical nodes: 1,000 nodes of six kinds give six
 * classes, and workloads of one shape one group. */
static void test_bound_classes(void **state)
{
    (void)state;
    struct placement_problem *p = bi_contended(1000, 9, 0.95);
    struct pl_ctx c;
    assert_int_equal(pl_ctx_init(&c, p), 0);
    struct pl_classes cl;
    assert_int_equal(pl_classes_build(&c, &cl), 0);
    assert_int_equal(cl.K, 6);
    size_t total = 0;
    for (size_t k = 0; k < cl.K; k++)
        total += cl.count[k];
    assert_int_equal(total, 1000);
    pl_classes_fini(&cl);
    /* The bound from the LP is certified and at most the fluid bound; the
     * bisection needs only a few dozen small LPs. */
    struct pl_bound_args ba = {.excluded = NULL, .known_feasible = -2, .known_bound = 2,
                               .tol = 1e-6, .deadline = glp_time() + 60000};
    struct pl_bound_result br;
    char note[96] = "";
    assert_int_equal(pl_lp_bound(&c, &ba, &br, note, sizeof(note)), 0);
    glp_free_env();
    assert_true(br.lp_solved);
    assert_int_equal(br.classes, 6);
    assert_true(br.groups < 300); /* 3,000 workloads in a few shapes */
    assert_true(br.lps <= 64);
    assert_true(br.bound <= placement_fluid_bound(p) + 1e-6);
    assert_true(br.bound > -1 && br.bound < 1);
    pl_ctx_fini(&c);
    placement_problem_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_jobs_exact_where_it_matters),
        cmocka_unit_test(test_milp_proves_what_the_lp_cannot),
        cmocka_unit_test(test_never_worse_and_bound_holds),
        cmocka_unit_test(test_repeatable),
        cmocka_unit_test(test_deadline_holds),
        cmocka_unit_test(test_infeasible_restricted_model),
        cmocka_unit_test(test_export_lp_matches),
        cmocka_unit_test(test_bound_classes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
