/* Placement controller: optimum, infeasibility, consolidation, juggling,
 * balancing, hysteresis, plan safety, heuristic quality. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "helpers.h"

static struct placement_decision *solve_ok(struct placement_problem *p)
{
    struct placement_decision *d = NULL;
    struct wlm_error err = {0};
    int rc = placement_solve(p, &d, &err);
    if (rc)
        fail_msg("placement_solve: %s", err.msg);
    assert_non_null(d);
    /* Every decision must have a safe plan. */
    rc = placement_plan_verify(p, d, &err);
    if (rc)
        fail_msg("plan: %s", err.msg);
    assert_true(d->upper_bound >= d->min_utility_placeable - 1e-6);
    return d;
}

static size_t count_actions(const struct placement_decision *d, enum placement_action_kind k)
{
    size_t n = 0;
    for (size_t i = 0; i < d->nactions; i++)
        n += d->actions[i].kind == k;
    return n;
}

/* Two apps share one 4-GHz node: max-min splits it evenly (u = 0 each). */
static void test_known_optimum_split(void **state)
{
    (void)state;
    for (int solver = PLACEMENT_SOLVER_EXACT; solver <= PLACEMENT_SOLVER_HEURISTIC; solver++) {
        struct placement_problem *p = tp_new(1, 2);
        tp_node(p, 0, 4, 1000, 8192, 1);
        tp_app(p, 0, 1024, 4000, 1, 1, 4000);
        tp_app(p, 1, 1024, 4000, 1, 1, 4000);
        p->opts.solver = solver;
        p->opts.power_saving = 0;
        struct placement_decision *d = solve_ok(p);
        assert_true(fabs(d->min_utility) < 1e-3);
        assert_true(fabs(d->utility[0] - d->utility[1]) < 1e-3);
        assert_true(d->gap < 1e-3);
        assert_int_equal(d->solver, solver);
        assert_int_equal(d->status, PLACEMENT_OK);
        assert_int_equal(count_actions(d, PLACEMENT_ACT_START_INSTANCE), 2);
        placement_decision_free(d);
        placement_problem_free(p);
    }
}

/* Three single-node jobs on two 2-GHz nodes: two must share, so the best
 * minimum is 0 (1 GHz each) although the LP relaxation says 1/3. */
static void test_known_optimum_jobs(void **state)
{
    (void)state;
    struct placement_problem *p = tp_new(2, 3);
    tp_node(p, 0, 2, 1000, 8192, 1);
    tp_node(p, 1, 2, 1000, 8192, 1);
    for (size_t i = 0; i < 3; i++)
        tp_job(p, i, 1024, 2000, 2000);
    p->opts.solver = PLACEMENT_SOLVER_EXACT;
    p->opts.power_saving = 0;
    struct placement_decision *d = solve_ok(p);
    assert_int_equal(d->solver, PLACEMENT_SOLVER_EXACT);
    assert_true(d->exact_optimal);
    assert_true(fabs(d->min_utility) < 1e-3);
    assert_true(d->upper_bound <= 1.0 / 3 + 1e-3);
    assert_true(d->upper_bound >= -1e-6);
    /* Stage 2 gives the lone job the whole node. */
    double best = fmax(d->utility[0], fmax(d->utility[1], d->utility[2]));
    assert_true(fabs(best - 1) < 1e-3);
    assert_int_equal(count_actions(d, PLACEMENT_ACT_START_JOB), 3);
    placement_decision_free(d);
    placement_problem_free(p);
}

/* Memory-infeasible: two 3-GB apps, one 4-GB node. One runs, the other is
 * reported unplaced at its lowest utility. */
static void test_memory_infeasible(void **state)
{
    (void)state;
    for (int solver = PLACEMENT_SOLVER_EXACT; solver <= PLACEMENT_SOLVER_HEURISTIC; solver++) {
        struct placement_problem *p = tp_new(1, 2);
        tp_node(p, 0, 4, 1000, 4096, 1);
        tp_app(p, 0, 3072, 4000, 1, 1, 4000);
        tp_app(p, 1, 3072, 4000, 1, 1, 4000);
        p->opts.solver = solver;
        struct placement_decision *d = solve_ok(p);
        assert_int_equal(d->status, PLACEMENT_PARTIAL);
        assert_int_equal(d->nunplaced, 1);
        assert_int_equal(d->nassign, 1);
        size_t gone = d->unplaced[0], kept = 1 - gone;
        assert_true(fabs(d->utility[gone] - -1) < 1e-9);
        assert_true(fabs(d->min_utility - -1) < 1e-9);
        assert_true(d->utility[kept] > 0.99); /* the one placed gets the whole node */
        placement_decision_free(d);
        placement_problem_free(p);
    }
}

/* A job bigger than every node fits nowhere: lowest utility, reported, and
 * it does not drag the others down. */
static void test_fits_nowhere(void **state)
{
    (void)state;
    struct placement_problem *p = tp_new(2, 3);
    tp_node(p, 0, 4, 1000, 8192, 1);
    tp_node(p, 1, 4, 1000, 8192, 1);
    tp_job(p, 0, 1024, 4000, 4000);
    tp_job(p, 1, 32768, 4000, 4000); /* 32 GB */
    tp_job(p, 2, 1024, 4000, 4000);
    p->opts.power_saving = 0;
    struct placement_decision *d = solve_ok(p);
    assert_int_equal(d->status, PLACEMENT_PARTIAL);
    assert_int_equal(d->nunplaced, 1);
    assert_int_equal(d->unplaced[0], 1);
    assert_true(fabs(d->utility[1] - -1) < 1e-9);
    assert_true(fabs(d->min_utility - -1) < 1e-9);
    assert_true(d->min_utility_placeable > 0.99);
    assert_true(d->utility[0] > 0.99 && d->utility[2] > 0.99);
    assert_true(strstr(d->note, "fit nowhere") != NULL);
    placement_decision_free(d);
    placement_problem_free(p);
}

/* Eight VMs on four lightly used servers: every VM meets its goal with 1.5
 * GHz; with 10 % headroom four fit on an 8-GHz server, so two servers power
 * off after four migrations. */
static struct placement_problem *consolidation_problem(void)
{
    struct placement_problem *p = tp_new(4, 8);
    for (size_t n = 0; n < 4; n++)
        tp_node(p, n, 8, 1000, 16384, 1);
    for (size_t i = 0; i < 8; i++) {
        tp_job(p, i, 2048, 3000, 3000);
        struct placement_utility *u = &p->workloads[i].utility;
        u->npoints = 3;
        u->cpu_mhz[0] = 0, u->util[0] = -1;
        u->cpu_mhz[1] = 1500, u->util[1] = 0;
        u->cpu_mhz[2] = 3000, u->util[2] = 0.5;
        tp_cur(p, i, i / 2, 1500);
    }
    return p;
}

static void test_consolidation(void **state)
{
    (void)state;
    struct placement_problem *p = consolidation_problem();
    struct placement_decision *d = solve_ok(p);
    assert_true(d->consolidated);
    int on = 0;
    for (size_t n = 0; n < 4; n++)
        on += d->node_on[n];
    assert_int_equal(on, 2);
    assert_int_equal(count_actions(d, PLACEMENT_ACT_POWER_OFF), 2);
    assert_int_equal(count_actions(d, PLACEMENT_ACT_MIGRATE_JOB), 4);
    for (size_t i = 0; i < 8; i++)
        assert_true(d->utility[i] >= -1e-9);
    /* Every power-off comes after the migrations that emptied its node. */
    for (size_t i = 0; i < d->nactions; i++) {
        if (d->actions[i].kind != PLACEMENT_ACT_POWER_OFF)
            continue;
        assert_int_equal(d->actions[i].ndeps, 2);
    }
    placement_decision_free(d);

    /* Next cycle from the consolidated state: nothing to do (no thrash). */
    placement_problem_free(p);
    p = consolidation_problem();
    p->ncurrent = 0;
    for (size_t i = 0; i < 8; i++)
        tp_cur(p, i, i / 4, 1500);
    p->nodes[2].powered_on = p->nodes[3].powered_on = 0;
    d = solve_ok(p);
    assert_int_equal(count_actions(d, PLACEMENT_ACT_MIGRATE_JOB), 0);
    assert_int_equal(count_actions(d, PLACEMENT_ACT_POWER_ON), 0);
    assert_int_equal(count_actions(d, PLACEMENT_ACT_POWER_OFF), 0);
    placement_decision_free(d);

    /* Anti-flap band: 4 x 1750 MHz fits two nodes within the 10 % headroom
     * (7200) but not with the extra 5 % power-off margin (6800). Two running
     * nodes stay two; four running nodes only go down to three. */
    for (size_t i = 0; i < 8; i++)
        p->workloads[i].utility.cpu_mhz[1] = 1750;
    d = solve_ok(p);
    assert_int_equal(count_actions(d, PLACEMENT_ACT_POWER_ON), 0);
    assert_int_equal(count_actions(d, PLACEMENT_ACT_MIGRATE_JOB), 0);
    placement_decision_free(d);
    {
        struct placement_problem *q = consolidation_problem();
        for (size_t i = 0; i < 8; i++)
            q->workloads[i].utility.cpu_mhz[1] = 1750;
        d = solve_ok(q);
        assert_int_equal(count_actions(d, PLACEMENT_ACT_POWER_OFF), 1);
        placement_decision_free(d);
        placement_problem_free(q);
    }

    /* Demand grows past the headroom: a node is powered on before the two
     * running ones run out, and the plan boots it before moving work there. */
    for (size_t i = 0; i < 8; i++)
        p->workloads[i].utility.cpu_mhz[1] = 1900; /* 4 x 1900 > 7200 */
    d = solve_ok(p);
    assert_true(count_actions(d, PLACEMENT_ACT_POWER_ON) >= 1);
    for (size_t i = 0; i < 8; i++)
        assert_true(d->utility[i] >= -1e-9);
    for (size_t i = 0; i < d->nactions; i++) {
        const struct placement_action *a = &d->actions[i];
        if (a->kind != PLACEMENT_ACT_MIGRATE_JOB || p->nodes[a->node].powered_on)
            continue;
        int after_boot = 0;
        for (size_t k = 0; k < a->ndeps; k++)
            after_boot |= d->actions[a->deps[k]].kind == PLACEMENT_ACT_POWER_ON;
        assert_true(after_boot);
    }
    placement_decision_free(d);
    placement_problem_free(p);
}

/* Make before break: an app moved to another node stops its old instance
 * only after the new one has started, and the emptied node powers off
 * after that. */
static void test_app_move_starts_first(void **state)
{
    (void)state;
    struct placement_problem *p = tp_new(2, 1);
    for (size_t n = 0; n < 2; n++)
        tp_node(p, n, 4, 1000, 4096, 1);
    tp_app(p, 0, 512, 2000, 1, 2, 1000);
    tp_cur(p, 0, 0, 1000);
    struct placement_assign target[] = {{0, 1, 1000}};
    int node_on[] = {0, 1};
    struct placement_decision *d = NULL;
    struct wlm_error err = {0};
    assert_int_equal(placement_plan_target(p, target, 1, node_on, &d, &err), 0);
    assert_int_equal(placement_plan_verify(p, d, &err), 0);
    size_t start = SIZE_MAX, stop = SIZE_MAX, off = SIZE_MAX;
    for (size_t i = 0; i < d->nactions; i++) {
        if (d->actions[i].kind == PLACEMENT_ACT_START_INSTANCE)
            start = i;
        if (d->actions[i].kind == PLACEMENT_ACT_STOP_INSTANCE)
            stop = i;
        if (d->actions[i].kind == PLACEMENT_ACT_POWER_OFF)
            off = i;
    }
    assert_true(start < stop && stop < off);
    int after_start = 0, after_stop = 0;
    for (size_t k = 0; k < d->actions[stop].ndeps; k++)
        after_start |= d->actions[stop].deps[k] == start;
    for (size_t k = 0; k < d->actions[off].ndeps; k++)
        after_stop |= d->actions[off].deps[k] == stop;
    assert_true(after_start);
    assert_true(after_stop);
    placement_decision_free(d);
    placement_problem_free(p);
}

/* Juggling: the large VM L can only go to n1 once the small VM S has moved
 * from n1 to n2; the plan orders S first and makes L depend on it. */
static void test_juggling(void **state)
{
    (void)state;
    struct placement_problem *p = tp_new(3, 3);
    for (size_t n = 0; n < 3; n++)
        tp_node(p, n, 4, 1000, 4096, 1);
    tp_job(p, 0, 3072, 2000, 2000); /* L on n0 */
    tp_job(p, 1, 2048, 2000, 2000); /* S on n1 */
    tp_job(p, 2, 2048, 2000, 2000); /* X on n2 */
    tp_cur(p, 0, 0, 1000);
    tp_cur(p, 1, 1, 1000);
    tp_cur(p, 2, 2, 1000);
    struct placement_assign target[] = {{0, 1, 1000}, {1, 2, 1000}, {2, 2, 1000}};
    int node_on[] = {0, 1, 1};
    struct placement_decision *d = NULL;
    struct wlm_error err = {0};
    assert_int_equal(placement_plan_target(p, target, 3, node_on, &d, &err), 0);
    assert_int_equal(placement_plan_verify(p, d, &err), 0);
    size_t is = SIZE_MAX, il = SIZE_MAX, ioff = SIZE_MAX;
    for (size_t i = 0; i < d->nactions; i++) {
        if (d->actions[i].kind == PLACEMENT_ACT_MIGRATE_JOB && d->actions[i].workload == 1)
            is = i;
        if (d->actions[i].kind == PLACEMENT_ACT_MIGRATE_JOB && d->actions[i].workload == 0)
            il = i;
        if (d->actions[i].kind == PLACEMENT_ACT_POWER_OFF)
            ioff = i;
    }
    assert_true(is < il && il < ioff);
    int dep = 0;
    for (size_t k = 0; k < d->actions[il].ndeps; k++)
        dep |= d->actions[il].deps[k] == is;
    assert_true(dep);
    placement_decision_free(d);

    /* A swap (L<->S with no spare room) is a cycle: one goes through storage. */
    struct placement_assign swap[] = {{0, 1, 1000}, {1, 0, 1000}, {2, 2, 1000}};
    p->nodes[1].memory_mb = 3072;
    p->nodes[0].memory_mb = 3072;
    assert_int_equal(placement_plan_target(p, swap, 3, NULL, &d, &err), 0);
    assert_int_equal(placement_plan_verify(p, d, &err), 0);
    size_t susp = 0;
    for (size_t i = 0; i < d->nactions; i++)
        susp += d->actions[i].kind == PLACEMENT_ACT_SUSPEND_JOB;
    assert_int_equal(susp, 1);
    placement_decision_free(d);

    /* A target that over-commits memory has no plan: an error, not a crash. */
    struct placement_assign bad[] = {{0, 1, 1000}, {1, 1, 1000}, {2, 2, 1000}};
    assert_int_not_equal(placement_plan_target(p, bad, 3, NULL, &d, &err), 0);
    assert_null(d);
    placement_problem_free(p);
}

/* Balancing: three saturated jobs all on n0 (75 %), n1 idle. Nothing gains
 * utility by moving, but the band balancer moves one job. */
static void test_balancing(void **state)
{
    (void)state;
    struct placement_problem *p = tp_new(2, 3);
    tp_node(p, 0, 4, 1000, 8192, 1);
    tp_node(p, 1, 4, 1000, 8192, 1);
    for (size_t i = 0; i < 3; i++) {
        tp_job(p, i, 1024, 1000, 1000);
        tp_cur(p, i, 0, 1000);
    }
    p->opts.power_saving = 0;
    struct placement_decision *d = solve_ok(p);
    assert_int_equal(count_actions(d, PLACEMENT_ACT_MIGRATE_JOB), 1);
    for (size_t i = 0; i < 3; i++)
        assert_true(fabs(d->utility[i] - 1) < 1e-9);
    placement_decision_free(d);

    /* Balanced within the band: no moves. */
    p->ncurrent = 0;
    tp_cur(p, 0, 0, 1000);
    tp_cur(p, 1, 0, 1000);
    tp_cur(p, 2, 1, 1000);
    d = solve_ok(p);
    assert_int_equal(count_actions(d, PLACEMENT_ACT_MIGRATE_JOB), 0);
    placement_decision_free(d);
    placement_problem_free(p);
}

/* Hysteresis: a migration that gains 0.02 in minimum utility does not pay
 * for itself (0.02 + 0.005); one that gains 0.05 does. */
static void test_hysteresis(void **state)
{
    (void)state;
    for (int big = 0; big < 2; big++) {
        struct placement_problem *p = tp_new(2, 3);
        tp_node(p, 0, 2, 1000, 8192, 1);
        tp_node(p, 1, 1, big ? 2100 : 2040, 8192, 1);
        for (size_t i = 0; i < 3; i++)
            tp_job(p, i, 1024, 2000, 2000);
        tp_cur(p, 0, 0, 1000);
        tp_cur(p, 1, 0, 1000);
        tp_cur(p, 2, 1, 2000);
        p->opts.power_saving = 0;
        p->opts.max_balance_moves = 0;
        for (int solver = PLACEMENT_SOLVER_EXACT; solver <= PLACEMENT_SOLVER_HEURISTIC; solver++) {
            p->opts.solver = solver;
            struct placement_decision *d = solve_ok(p);
            assert_int_equal(d->kept_current, !big);
            assert_int_equal(count_actions(d, PLACEMENT_ACT_MIGRATE_JOB), big ? 1 : 0);
            if (big)
                assert_true(d->min_utility > 0.04);
            placement_decision_free(d);
        }
        placement_problem_free(p);
    }
}

/* Random instances with random current placements: every plan is safe. */
static void test_plan_never_overcommits(void **state)
{
    (void)state;
    for (unsigned long long seed = 1; seed <= 30; seed++) {
        size_t nn = 3 + seed % 6, nw = 3 * nn;
        struct placement_problem *p = tp_random(nn, nw, seed, seed % 2 ? 0.6 : 1.4);
        unsigned long long s = seed * 77;
        /* current: place each workload on a random node if memory allows */
        double *fm = calloc(nn, sizeof(double));
        for (size_t n = 0; n < nn; n++)
            fm[n] = p->nodes[n].memory_mb;
        for (size_t i = 0; i < nw; i++) {
            size_t n = (size_t)(tp_rand(&s) * nn);
            if (tp_rand(&s) < 0.7 && fm[n] >= p->workloads[i].memory_mb) {
                fm[n] -= p->workloads[i].memory_mb;
                tp_cur(p, i, n, 500);
            }
        }
        free(fm);
        p->opts.solver = seed % 3 == 0 ? PLACEMENT_SOLVER_EXACT : PLACEMENT_SOLVER_HEURISTIC;
        p->opts.time_limit_s = 0.5;
        p->opts.power_saving = (int)(seed % 2);
        struct placement_decision *d = solve_ok(p); /* verifies the plan */
        placement_decision_free(d);
        placement_problem_free(p);
    }
}

/* The heuristic is within 0.02 utility of the exact MILP on small instances. */
static void test_heuristic_vs_exact(void **state)
{
    (void)state;
    double worst = 0;
    for (unsigned long long seed = 100; seed < 112; seed++) {
        struct placement_problem *p = tp_random(4, 12, seed, 1.3);
        p->opts.power_saving = 0;
        p->opts.max_balance_moves = 0;
        p->opts.time_limit_s = 1.0;
        p->opts.solver = PLACEMENT_SOLVER_EXACT;
        struct placement_decision *de = solve_ok(p);
        p->opts.solver = PLACEMENT_SOLVER_HEURISTIC;
        struct placement_decision *dh = solve_ok(p);
        double diff = de->min_utility - dh->min_utility;
        if (diff > worst)
            worst = diff;
        if (diff > 0.02)
            fail_msg("seed %llu: exact %.4f heuristic %.4f", seed, de->min_utility,
                     dh->min_utility);
        assert_true(de->min_utility <= de->upper_bound + 1e-6);
        placement_decision_free(de);
        placement_decision_free(dh);
        placement_problem_free(p);
    }
    print_message("worst heuristic shortfall vs exact: %.4f\n", worst);
}

/* A queued job whose utility at zero CPU is above the minimum still gets the
 * spare CPU the minimum-holder cannot use. */
static void test_spare_capacity_used(void **state)
{
    (void)state;
    struct placement_problem *p = tp_new(1, 2);
    tp_node(p, 0, 2, 1000, 8192, 1);
    tp_app(p, 0, 1024, 1500, 1, 1, 4000);
    tp_job(p, 1, 1024, 1000, 1000);
    p->workloads[1].utility.util[0] = 0.5;
    p->opts.power_saving = 0;
    for (int solver = PLACEMENT_SOLVER_EXACT; solver <= PLACEMENT_SOLVER_HEURISTIC; solver++) {
        p->opts.solver = solver;
        struct placement_decision *d = solve_ok(p);
        assert_true(fabs(d->utility[0] - -0.25) < 1e-3);
        assert_true(fabs(d->utility[1] - 0.75) < 1e-3);
        assert_int_equal(count_actions(d, PLACEMENT_ACT_START_JOB), 1);
        placement_decision_free(d);
    }
    placement_problem_free(p);
}

/* The minimum belongs to an app that cannot do better (0.3); starting a
 * queued job needs one migration. Comparing minimums alone would keep the
 * current placement forever; the lexicographic comparison starts the job. */
static void test_hysteresis_lexicographic(void **state)
{
    (void)state;
    struct placement_problem *p = tp_new(3, 4);
    tp_node(p, 0, 2, 1000, 4096, 1);
    tp_node(p, 1, 2, 1000, 4096, 1);
    tp_node(p, 2, 2, 1000, 2048, 1);
    tp_job(p, 0, 2048, 1000, 1000); /* A on n0 */
    tp_job(p, 1, 2048, 1000, 1000); /* B on n1 */
    tp_app(p, 2, 512, 500, 1, 1, 500);
    p->workloads[2].utility.util[1] = 0.3; /* X on n2, best 0.3 */
    tp_job(p, 3, 3072, 1000, 1000);        /* J queued, 0.5 at zero CPU */
    p->workloads[3].utility.util[0] = 0.5;
    tp_cur(p, 0, 0, 1000);
    tp_cur(p, 1, 1, 1000);
    tp_cur(p, 2, 2, 500);
    p->opts.power_saving = 0;
    p->opts.max_balance_moves = 0;
    p->opts.solver = PLACEMENT_SOLVER_EXACT;
    struct placement_decision *d = solve_ok(p);
    assert_int_equal(d->kept_current, 0);
    assert_int_equal(count_actions(d, PLACEMENT_ACT_MIGRATE_JOB), 1);
    assert_int_equal(count_actions(d, PLACEMENT_ACT_START_JOB), 1);
    assert_true(d->utility[3] > 0.99);
    assert_true(fabs(d->min_utility - 0.3) < 1e-6);
    placement_decision_free(d);
    placement_problem_free(p);
}

/* Job states map to the right actions: queued -> start, suspended ->
 * restore, paused -> resume; a job that cannot live-migrate moves through
 * storage (suspend, then restore after it). */
static void test_job_state_actions(void **state)
{
    (void)state;
    struct placement_problem *p = tp_new(2, 4);
    tp_node(p, 0, 4, 1000, 8192, 1);
    tp_node(p, 1, 4, 1000, 8192, 1);
    for (size_t i = 0; i < 4; i++)
        tp_job(p, i, 1024, 1000, 1000);
    p->workloads[1].state = PLACEMENT_JOB_SUSPENDED;
    tp_cur(p, 2, 0, 0);
    p->workloads[2].state = PLACEMENT_JOB_PAUSED;
    tp_cur(p, 3, 0, 1000);
    p->workloads[3].migratable = 0;
    struct placement_assign target[] = {{0, 1, 1000}, {1, 1, 1000}, {2, 0, 1000}, {3, 1, 1000}};
    struct placement_decision *d = NULL;
    struct wlm_error err = {0};
    assert_int_equal(placement_plan_target(p, target, 4, NULL, &d, &err), 0);
    assert_int_equal(placement_plan_verify(p, d, &err), 0);
    assert_int_equal(count_actions(d, PLACEMENT_ACT_START_JOB), 1);
    assert_int_equal(count_actions(d, PLACEMENT_ACT_RESUME_JOB), 1);
    assert_int_equal(count_actions(d, PLACEMENT_ACT_MIGRATE_JOB), 0);
    assert_int_equal(count_actions(d, PLACEMENT_ACT_SUSPEND_JOB), 1);
    assert_int_equal(count_actions(d, PLACEMENT_ACT_RESTORE_JOB), 2);
    size_t susp = SIZE_MAX;
    for (size_t i = 0; i < d->nactions; i++)
        if (d->actions[i].kind == PLACEMENT_ACT_SUSPEND_JOB)
            susp = i;
    for (size_t i = 0; i < d->nactions; i++) {
        const struct placement_action *a = &d->actions[i];
        if (a->kind != PLACEMENT_ACT_RESTORE_JOB || a->workload != 3)
            continue;
        assert_true(i > susp);
        int dep = 0;
        for (size_t k = 0; k < a->ndeps; k++)
            dep |= a->deps[k] == susp;
        assert_true(dep);
    }
    placement_decision_free(d);
    placement_problem_free(p);
}

/* A power budget caps what a node may allocate: 150 W of a 100-200 W node
 * is half its CPU. */
static void test_power_budget(void **state)
{
    (void)state;
    struct placement_problem *p = tp_new(1, 1);
    tp_node(p, 0, 4, 1000, 8192, 1);
    p->nodes[0].power_idle_w = 100;
    p->nodes[0].power_max_w = 200;
    p->nodes[0].power_budget_w = 150;
    tp_job(p, 0, 1024, 4000, 4000);
    p->opts.power_saving = 0;
    for (int solver = PLACEMENT_SOLVER_EXACT; solver <= PLACEMENT_SOLVER_HEURISTIC; solver++) {
        p->opts.solver = solver;
        struct placement_decision *d = solve_ok(p);
        assert_true(fabs(d->cpu_mhz[0] - 2000) < 1);
        assert_true(fabs(d->utility[0]) < 1e-3);
        assert_true(d->power_w <= 150 + 1e-6);
        placement_decision_free(d);
    }
    placement_problem_free(p);
}

static void test_utility_functions(void **state)
{
    (void)state;
    struct placement_utility u;
    tp_lin(&u, 2000, -1, 1);
    assert_true(fabs(placement_utility_eval(&u, 1000)) < 1e-12);
    assert_true(fabs(placement_utility_eval(&u, 5000) - 1) < 1e-12);
    assert_true(fabs(placement_utility_inverse(&u, 0) - 1000) < 1e-9);
    assert_true(isinf(placement_utility_inverse(&u, 1.5)));
    struct wlm_error err = {0};
    assert_int_equal(placement_utility_check(&u, "u", &err), 0);
    /* convex knee: rejected, then fixed by the concave envelope */
    struct placement_utility k = {3, {0, 1000, 2000}, {-1, -1, 1}};
    assert_int_not_equal(placement_utility_check(&k, "apps[0].utility", &err), 0);
    assert_non_null(strstr(err.msg, "apps[0].utility[2]"));
    placement_utility_make_concave(&k);
    assert_int_equal(placement_utility_check(&k, "k", &err), 0);
    assert_int_equal(k.npoints, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utility_functions),
        cmocka_unit_test(test_known_optimum_split),
        cmocka_unit_test(test_known_optimum_jobs),
        cmocka_unit_test(test_memory_infeasible),
        cmocka_unit_test(test_fits_nowhere),
        cmocka_unit_test(test_consolidation),
        cmocka_unit_test(test_app_move_starts_first),
        cmocka_unit_test(test_juggling),
        cmocka_unit_test(test_balancing),
        cmocka_unit_test(test_hysteresis),
        cmocka_unit_test(test_spare_capacity_used),
        cmocka_unit_test(test_hysteresis_lexicographic),
        cmocka_unit_test(test_job_state_actions),
        cmocka_unit_test(test_power_budget),
        cmocka_unit_test(test_plan_never_overcommits),
        cmocka_unit_test(test_heuristic_vs_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
