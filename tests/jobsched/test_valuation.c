/* The placement curve of a job (jobsched_placement_curve): what waiting a
 * decision horizon costs it, the delay of the action that starts it, and no
 * flat curve for a job that is already late. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "jobsched.h"

#define NEAR(a, b) assert_true(fabs((a) - (b)) < 1e-6)

/* 1000 s of work at 1000 MHz (1 thread), submitted at 0, goal at 3000. */
static struct jobsched_job job(enum jobsched_state st)
{
    struct jobsched_job j;
    memset(&j, 0, sizeof(j));
    j.submit_time = 0;
    j.goal_time = 3000;
    j.work_mcycles = 1000 * 1000;
    j.threads = 1;
    j.max_speed_mhz = 1000;
    j.state = st;
    return j;
}

static double at(const struct jobsched_point *p, size_t n, double x)
{
    for (size_t i = 1; i < n; i++)
        if (x <= p[i].x)
            return p[i - 1].y + (p[i].y - p[i - 1].y) * (x - p[i - 1].x) / (p[i].x - p[i - 1].x);
    return p[n - 1].y;
}

static void test_horizon_and_delays(void **state)
{
    (void)state;
    struct jobsched_valuation v;
    jobsched_valuation_init(&v, 60, 30, 20); /* horizon 5 x 60 = 300 s */
    NEAR(v.horizon_s, 300);
    struct jobsched_point p[32];
    struct jobsched_job r = job(JOBSCHED_RUNNING);
    size_t n = jobsched_placement_curve(&r, 0, &v, p, 32);
    assert_true(n >= 2);
    NEAR(p[0].x, 0);
    NEAR(p[n - 1].x, 1000);
    /* full speed: done at 1000, (3000 - 1000) / 3000 */
    NEAR(at(p, n, 1000), 2000.0 / 3000);
    /* waiting one horizon: done at 1300 */
    NEAR(at(p, n, 0), 1700.0 / 3000);
    /* concave, non-decreasing */
    for (size_t i = 2; i < n; i++) {
        double s1 = (p[i - 1].y - p[i - 2].y) / (p[i - 1].x - p[i - 2].x);
        double s2 = (p[i].y - p[i - 1].y) / (p[i].x - p[i - 1].x);
        assert_true(s2 <= s1 + 1e-12 && s2 >= -1e-12);
    }
    /* a queued job pays its start, a suspended one its restore */
    struct jobsched_job q = job(JOBSCHED_ELIGIBLE), s = job(JOBSCHED_SUSPENDED);
    n = jobsched_placement_curve(&q, 0, &v, p, 32);
    NEAR(at(p, n, 1000), 1970.0 / 3000);
    n = jobsched_placement_curve(&s, 0, &v, p, 32);
    NEAR(at(p, n, 1000), 1980.0 / 3000);
    NEAR(jobsched_stall_cost(&r), 1.0 / 3000);
    /* a minute at least, for short periods */
    jobsched_valuation_init(&v, 2, 0, 0);
    NEAR(v.horizon_s, 60);
}

/* Far past its goal the job keeps a slope (it must not starve), and the
 * valuation is not clamped at the display's -1. */
static void test_late_job_keeps_a_slope(void **state)
{
    (void)state;
    struct jobsched_valuation v;
    jobsched_valuation_init(&v, 60, 0, 0);
    struct jobsched_job r = job(JOBSCHED_RUNNING);
    struct jobsched_point p[32];
    size_t n = jobsched_placement_curve(&r, 10000, &v, p, 32); /* 7000 s late */
    double u0 = at(p, n, 0), u1 = at(p, n, 1000);
    assert_true(u1 < -2);
    NEAR(u1 - u0, 300.0 / 3000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_horizon_and_delays),
        cmocka_unit_test(test_late_job_keeps_a_slope),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
