/* The placement curve of an application (flowctl_placement_curve): steep
 * below its CPU demand, concave, and a fallback that values its demand when
 * the model is flat. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "flowctl.h"

static void test_cliff_below_demand(void **state)
{
    (void)state;
    /* 100 req/s x 10 Mc = 1000 MHz of demand, 5 ms of I/O, 50 ms goal */
    struct flowctl_flow_model m = {.lambda = 100, .cost = 10, .d0 = 0.005, .goal = 0.05};
    double imp = 1;
    struct flowctl_utility u;
    assert_int_equal(flowctl_placement_curve(&m, &imp, 1, 8000, 16, -1, &u, NULL), 0);
    assert_true(u.n >= 3);
    assert_true(u.pts[0].x == 0);
    /* at (or below) the demand the app is at the floor or lower */
    assert_true(flowctl_utility_eval(&u, 1000) <= -1 + 1e-6);
    /* well above it, it meets its goal */
    assert_true(flowctl_utility_eval(&u, 4000) > 0);
    for (size_t i = 2; i < u.n; i++) {
        double s1 = (u.pts[i - 1].y - u.pts[i - 2].y) / (u.pts[i - 1].x - u.pts[i - 2].x);
        double s2 = (u.pts[i].y - u.pts[i - 1].y) / (u.pts[i].x - u.pts[i - 1].x);
        assert_true(s2 <= s1 + 1e-9);
    }
}

static void test_flat_model_falls_back_to_demand(void **state)
{
    (void)state;
    /* all delay is non-CPU and above the goal: the model says CPU is useless */
    struct flowctl_flow_model m = {.lambda = 50, .cost = 4, .d0 = 0.5, .goal = 0.1};
    double imp = 1;
    struct flowctl_utility u;
    assert_int_equal(flowctl_placement_curve(&m, &imp, 1, 8000, 16, -1, &u, NULL), 0);
    /* demand 200 MHz: utility 0 at 250 (80 % busy), -1 at 0 */
    assert_true(fabs(flowctl_utility_eval(&u, 0) + 1) < 1e-9);
    assert_true(fabs(flowctl_utility_eval(&u, 250)) < 1e-9);
    struct flowctl_utility ind;
    flowctl_indifferent_curve(&ind);
    assert_true(flowctl_utility_eval(&ind, 0) == 0.5 && flowctl_utility_eval(&ind, 100) == 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cliff_below_demand),
        cmocka_unit_test(test_flat_model_falls_back_to_demand),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
