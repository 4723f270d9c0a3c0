/* Unit tests of the pure parts of power budgets: the controller's split of a
 * cluster budget, the agent's choice of caps, the frequency-aware model and
 * cpufreq writes (on a directory laid out like sysfs). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../sim/internal.h"
#include "nodeagent.h"
#include "power.h"

static void split_by_planned_cpu(void **state)
{
    (void)state;
    double idle[3] = {100, 100, 100}, max[3] = {250, 250, 250};
    double w[3] = {90, 30, 0}, fixed[3] = {-1, -1, -1}, out[3];
    /* 600 W: idle 300, planned 120 W, the 180 W left round the nodes,
     * busiest first, 75 W (half the dynamic range) at a time. */
    assert_int_equal(ctl_power_split_pure(600, 3, idle, max, w, fixed, out), 0);
    assert_float_equal(out[0], 250, 1e-6); /* 190 + 60 to its max */
    assert_float_equal(out[1], 205, 1e-6); /* 130 + 75 */
    assert_float_equal(out[2], 145, 1e-6); /* 100 + the 45 left */
    /* 360 W: 60 over idle for 120 W planned: each gets half of its plan. */
    assert_int_equal(ctl_power_split_pure(360, 3, idle, max, w, fixed, out), 0);
    assert_float_equal(out[0], 145, 1e-6);
    assert_float_equal(out[1], 115, 1e-6);
    assert_float_equal(out[2], 100, 1e-6);
    /* Nothing planned: pieces of half a node, not smeared over three (each
     * of the first two can run 1000 of its 2000 MHz). */
    double none[3] = {0, 0, 0};
    assert_int_equal(ctl_power_split_pure(500, 3, idle, max, none, fixed, out), 0);
    assert_float_equal(out[0], 175, 1e-6);
    assert_float_equal(out[1], 175, 1e-6);
    assert_float_equal(out[2], 150, 1e-6);
}

static void split_overrides_and_low_budget(void **state)
{
    (void)state;
    double idle[2] = {100, 80}, max[2] = {250, 200}, w[2] = {50, 50}, out[2];
    double fixed[2] = {120, -1};
    /* The override is taken as is; the other gets the rest within its max. */
    assert_int_equal(ctl_power_split_pure(400, 2, idle, max, w, fixed, out), 0);
    assert_float_equal(out[0], 120, 1e-6);
    assert_float_equal(out[1], 200, 1e-6);
    /* Below the idle power: shares of the total by idle power, and said so. */
    double fixed2[2] = {-1, -1};
    assert_int_equal(ctl_power_split_pure(90, 2, idle, max, w, fixed2, out), 1);
    assert_float_equal(out[0], 50, 1e-6);
    assert_float_equal(out[1], 40, 1e-6);
}

static void plan_caps_cheapest_first(void **state)
{
    (void)state;
    /* 2000 MHz used at 250 W (idle 100): 0.075 W/MHz. Budget 205 W: cut
     * 45 W = 600 MHz (x1.05 margin = 630). */
    struct nodeagent_budget_wl wl[3] = {{"cheap", 400, 0}, {"vm", 600, 1}, {"dear", 1000, 0}};
    double caps[3];
    size_t n = nodeagent_budget_plan(205, 250, 100, wl, 3, caps);
    assert_int_equal(n, 2);
    assert_float_equal(caps[0], 100, 1e-6); /* first down to a quarter */
    assert_float_equal(caps[1], 0, 1e-6);   /* cannot be capped: untouched */
    assert_float_equal(caps[2], 1000 - (630 - 300), 1e-6);
    /* Under budget: nothing. */
    assert_int_equal(nodeagent_budget_plan(260, 250, 100, wl, 3, caps), 0);
    /* Never below the minimum, even when the budget cannot be kept. */
    n = nodeagent_budget_plan(100, 250, 100, wl, 3, caps);
    assert_int_equal(n, 2);
    assert_float_equal(caps[0], NODEAGENT_BUDGET_MIN_MHZ, 1e-6);
    assert_float_equal(caps[2], NODEAGENT_BUDGET_MIN_MHZ, 1e-6);
}

static void model_with_frequency(void **state)
{
    (void)state;
    assert_float_equal(nodeagent_power_model(100, 250, 0.5, 1), 175, 1e-9);
    assert_float_equal(nodeagent_power_model(100, 250, 0.5, 0.6), 145, 1e-9);
    assert_float_equal(nodeagent_power_model(100, 250, 1, 0), 250, 1e-9); /* 0 = no limit */
}

static void cpufreq_writes(void **state)
{
    (void)state;
    char dir[] = "/tmp/wlm-cpufreq-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char p[512];
    for (int c = 0; c < 2; c++) {
        snprintf(p, sizeof(p), "%s/cpu%d", dir, c);
        mkdir(p, 0755);
        snprintf(p, sizeof(p), "%s/cpu%d/cpufreq", dir, c);
        mkdir(p, 0755);
        const char *files[3] = {"cpuinfo_max_freq", "cpuinfo_min_freq", "scaling_max_freq"};
        const char *vals[3] = {"3000000", "800000", "3000000"};
        for (int f = 0; f < 3; f++) {
            snprintf(p, sizeof(p), "%s/cpu%d/cpufreq/%s", dir, c, files[f]);
            FILE *fp = fopen(p, "w");
            fprintf(fp, "%s\n", vals[f]);
            fclose(fp);
        }
    }
    snprintf(p, sizeof(p), "%s/cpufreq", dir); /* not a CPU */
    mkdir(p, 0755);
    double minf = 0;
    assert_int_equal(nodeagent_cpufreq_set(dir, 0.5, &minf), 2);
    assert_float_equal(minf, 800000.0 / 3000000.0, 1e-9);
    long long v = 0;
    snprintf(p, sizeof(p), "%s/cpu1/cpufreq/scaling_max_freq", dir);
    FILE *fp = fopen(p, "r");
    assert_int_equal(fscanf(fp, "%lld", &v), 1);
    fclose(fp);
    assert_int_equal(v, 1500000);
    /* Not below the hardware's minimum. */
    assert_int_equal(nodeagent_cpufreq_set(dir, 0.1, NULL), 2);
    fp = fopen(p, "r");
    assert_int_equal(fscanf(fp, "%lld", &v), 1);
    fclose(fp);
    assert_int_equal(v, 800000);
    assert_true(nodeagent_cpufreq_set("/nonexistent-wlm", 0.5, NULL) < 0);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void sim_cap_budgets(void **state)
{
    (void)state;
    struct sim_config c;
    sim_config_defaults(&c); /* 150 W idle, 250 W max */
    c.nodes = 4;
    c.power_cap_w = 700;
    struct sim_apc_node nd[4];
    memset(nd, 0, sizeof(nd));
    for (int k = 0; k < 4; k++)
        nd[k].cap_mhz = 6000;
    double planned[4] = {3000, 600, 0, 1200};
    /* Equal: 175 W each, whatever runs. */
    c.power_cap_equal = 1;
    sim_powercap_budgets(&c, nd, 4, planned);
    for (int k = 0; k < 4; k++)
        assert_float_equal(nd[k].budget_w, 175, 1e-9);
    /* wlm: a node needs 150 + 50 W to be worth keeping on: 700 W keep the
     * two busiest (the others get no CPU, their idle power reserved until
     * they are off), which share 400 W: planned first, the rest busiest
     * first. */
    c.power_cap_equal = 0;
    sim_powercap_budgets(&c, nd, 4, planned);
    assert_true(nd[1].budget_w < c.idle_w);
    assert_true(nd[2].budget_w < c.idle_w);
    assert_float_equal(nd[0].budget_w, 230, 1e-6);
    assert_float_equal(nd[3].budget_w, 170, 1e-6);
    int on[4] = {1, 1, 1, 1};
    sim_powercap_power_off(&c, nd, 4, on);
    assert_int_equal(on[0], 1);
    assert_int_equal(on[1], 0);
    assert_int_equal(on[2], 0);
    assert_int_equal(on[3], 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(split_by_planned_cpu),
        cmocka_unit_test(split_overrides_and_low_budget),
        cmocka_unit_test(plan_caps_cheapest_first),
        cmocka_unit_test(model_with_frequency),
        cmocka_unit_test(cpufreq_writes),
        cmocka_unit_test(sim_cap_budgets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
