/* The flow controller's queueing model against closed-form results. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "flowctl.h"

#define NEAR(a, b, rel) assert_true(fabs((double)(a) - (double)(b)) <= (rel) * fabs((double)(b)) + 1e-12)

static struct flowctl_flow_model flow(double lambda, double cost, double d0, double goal)
{
    struct flowctl_flow_model f = {lambda, cost, d0, goal, 0};
    return f;
}

/* Without a limit the model is open processor sharing:
 * RT = d0 + (c/ω)/(1 − λc/ω), at every load level. */
static void test_ps_closed_form(void **st)
{
    (void)st;
    for (double rho = 0.1; rho < 0.96; rho += 0.1) {
        double omega = 2000, c = 20; /* 10 ms of service */
        double lam = rho * omega / c;
        struct flowctl_flow_model f = flow(lam, c, 0.05, 1);
        struct flowctl_prediction p;
        assert_int_equal(flowctl_predict(&f, 1, omega, NULL, -1, &p, NULL), 0);
        double want = 0.05 + (c / omega) / (1 - rho);
        NEAR(p.rt, want, 1e-6);
        NEAR(flowctl_ps_rt(omega, lam, c, 0.05), want, 1e-12);
        NEAR(p.throughput, lam, 1e-9);
        assert_true(p.wait < 1e-9);
    }
    assert_true(isinf(flowctl_ps_rt(1000, 100, 10, 0)));
}

/* Multi-class PS: every class sees the same stretch 1/(1 − ρ_total). */
static void test_ps_multiclass(void **st)
{
    (void)st;
    struct flowctl_flow_model f[2] = {flow(30, 10, 0.02, 1), flow(20, 25, 0.1, 1)};
    double omega = 1500, rho = (30 * 10 + 20 * 25) / omega;
    struct flowctl_prediction p[2];
    assert_int_equal(flowctl_predict(f, 2, omega, NULL, -1, p, NULL), 0);
    NEAR(p[0].rt, 0.02 + (10 / omega) / (1 - rho), 1e-6);
    NEAR(p[1].rt, 0.1 + (25 / omega) / (1 - rho), 1e-6);
}

/* One slot and no delay: the router queue in front of a single request in
 * service is M/M/1, RT = S/(1 − ρ). */
static void test_mm1(void **st)
{
    (void)st;
    double one = 1;
    for (double rho = 0.1; rho < 0.95; rho += 0.2) {
        double omega = 1000, c = 5, S = c / omega;
        struct flowctl_flow_model f = flow(rho / S, c, 0, 1);
        struct flowctl_prediction p;
        assert_int_equal(flowctl_predict(&f, 1, omega, &one, -1, &p, NULL), 0);
        NEAR(p.rt, S / (1 - rho), 1e-6);
        NEAR(p.in_app, S, 1e-9);
        NEAR(p.wait, rho * S / (1 - rho), 1e-6);
    }
    /* Past saturation the unbounded queue is unstable. */
    struct flowctl_flow_model f = flow(300, 5, 0, 1);
    struct flowctl_prediction p;
    assert_int_equal(flowctl_predict(&f, 1, 1000, &one, -1, &p, NULL), 0);
    assert_true(isinf(p.rt));
    assert_true(p.utility == -1);
}

/* One slot and a router queue of K−1: M/M/1/K blocking and mean RT. */
static void test_mm1k(void **st)
{
    (void)st;
    double one = 1, omega = 1000, c = 10, S = c / omega;
    int K = 5;
    for (double rho = 0.5; rho < 2; rho += 0.5) {
        struct flowctl_flow_model f = flow(rho / S, c, 0, 1);
        f.queue_cap = K - 1;
        struct flowctl_prediction p;
        assert_int_equal(flowctl_predict(&f, 1, omega, &one, -1, &p, NULL), 0);
        double pk, en;
        if (fabs(rho - 1) < 1e-9) {
            pk = 1.0 / (K + 1);
            en = K / 2.0;
        } else {
            pk = (1 - rho) * pow(rho, K) / (1 - pow(rho, K + 1));
            en = rho / (1 - rho) - (K + 1) * pow(rho, K + 1) / (1 - pow(rho, K + 1));
        }
        NEAR(p.drop_frac, pk, 1e-9);
        NEAR(p.rt, en / (f.lambda * (1 - pk)), 1e-9);
    }
}

/* With a large limit the limited model converges to unlimited PS, and with
 * only delay (no CPU) it is an M/M/N queue (Erlang C). */
static void test_limit_limits(void **st)
{
    (void)st;
    struct flowctl_flow_model f = flow(40, 10, 0.05, 1);
    struct flowctl_prediction a, b;
    double big = 5000;
    assert_int_equal(flowctl_predict(&f, 1, 1000, &big, -1, &a, NULL), 0);
    assert_int_equal(flowctl_predict(&f, 1, 1000, NULL, -1, &b, NULL), 0);
    NEAR(a.rt, b.rt, 1e-3);

    /* Erlang C: N = 4 servers, service 0.1 s, λ = 30/s (a = 3). */
    struct flowctl_flow_model g = flow(30, 0, 0.1, 1);
    double N = 4, A = 3;
    double sum = 0, term = 1;
    for (int k = 0; k < 4; k++) {
        if (k)
            term *= A / k;
        sum += term;
    }
    double last = term * A / 4; /* A^N/N! */
    double pw = last * N / (N - A) / (sum + last * N / (N - A));
    double want = 0.1 + pw * 0.1 / (N - A);
    struct flowctl_prediction p;
    assert_int_equal(flowctl_predict(&g, 1, 1000, &N, -1, &p, NULL), 0);
    NEAR(p.rt, want, 1e-9);
}

/* d0 = 0 and M slots saturated: all M requests share the CPU, σ = M. */
static void test_saturated_limit(void **st)
{
    (void)st;
    struct flowctl_flow_model f = flow(1000, 10, 0, 1); /* ρ = 10 */
    f.queue_cap = 10;
    double M = 4;
    struct flowctl_prediction p;
    assert_int_equal(flowctl_predict(&f, 1, 1000, &M, -1, &p, NULL), 0);
    NEAR(p.in_app, 4 * 0.01, 1e-3);
    NEAR(p.throughput, 100, 1e-2); /* the CPU's capacity */
    assert_true(p.drop_frac > 0.85);
}

static void test_bad_input(void **st)
{
    (void)st;
    struct flowctl_flow_model f = flow(1, 1, 0, 0);
    struct flowctl_prediction p;
    struct wlm_error e = {0};
    assert_int_equal(flowctl_predict(&f, 1, 1000, NULL, -1, &p, &e), -WLM_EINVAL);
    assert_string_equal(e.field, "goal");
    f.goal = 1;
    assert_int_equal(flowctl_predict(&f, 1, 0, NULL, -1, &p, &e), -WLM_EINVAL);
    assert_string_equal(e.field, "omega");
    f.lambda = -1;
    assert_int_equal(flowctl_predict(&f, 1, 100, NULL, -1, &p, &e), -WLM_EINVAL);
    assert_string_equal(e.field, "lambda");
}

/* Optimiser: a strict gold flow and a lax bronze flow at 90 % CPU. Without a
 * limit processor sharing makes gold miss its goal; with the chosen slots
 * bronze waits in the router and gold meets it. */
static void test_optimize_differentiates(void **st)
{
    (void)st;
    double omega = 1000;
    struct flowctl_flow_model f[2] = {flow(30, 10, 0.02, 0.09), flow(60, 10, 0.02, 5)};
    unsigned slots[2];
    struct flowctl_prediction p[2], q[2];
    assert_int_equal(flowctl_optimize_slots(f, 2, omega, 1000, -1, slots, p, NULL), 0);
    print_message("slots %u %u rt %.3f %.3f\n", slots[0], slots[1], p[0].rt, p[1].rt);
    assert_true(p[0].rt < 0.09);
    assert_true(p[1].rt < 5);
    assert_int_equal(flowctl_predict(f, 2, omega, NULL, -1, q, NULL), 0);
    assert_true(q[0].rt > 0.1); /* unlimited: gold misses */
}

/* Optimiser against brute force on an overloaded pair (zero-sum: someone
 * loses throughput): the greedy's minimum utility is within 0.05 of the best
 * over a grid of slot choices. */
static void test_optimize_vs_grid(void **st)
{
    (void)st;
    double omega = 1000;
    struct flowctl_flow_model f[2] = {flow(40, 10, 0.02, 0.1), flow(70, 10, 0.02, 2)};
    f[0].queue_cap = f[1].queue_cap = 200;
    unsigned slots[2];
    struct flowctl_prediction p[2];
    assert_int_equal(flowctl_optimize_slots(f, 2, omega, 1000, -1, slots, p, NULL), 0);
    double got = fmin(p[0].utility, p[1].utility), best = -INFINITY;
    for (int a = 1; a <= 30; a++)
        for (int b = 1; b <= 30; b++) {
            double s[2] = {a, b};
            struct flowctl_prediction q[2];
            assert_int_equal(flowctl_predict(f, 2, omega, s, -1, q, NULL), 0);
            best = fmax(best, fmin(q[0].utility, q[1].utility));
        }
    print_message("slots %u %u min utility %.3f grid best %.3f\n", slots[0], slots[1], got, best);
    assert_true(got >= best - 0.05);
}

/* Light load: the optimum admits enough concurrency that the router queue
 * costs almost nothing. */
static void test_optimize_light(void **st)
{
    (void)st;
    struct flowctl_flow_model f = flow(20, 10, 0.1, 0.5);
    unsigned s;
    struct flowctl_prediction p;
    assert_int_equal(flowctl_optimize_slots(&f, 1, 1000, 1000, -1, &s, &p, NULL), 0);
    double ps = flowctl_ps_rt(1000, 20, 10, 0.1);
    assert_true(p.rt < ps * 1.05);
    assert_true(s >= 3 && s < 100);
}

static void test_utility_concave(void **st)
{
    (void)st;
    struct flowctl_flow_model f[2] = {flow(50, 10, 0.05, 0.2), flow(20, 20, 0.1, 1)};
    double imp[2] = {2, 1};
    struct flowctl_utility u;
    assert_int_equal(flowctl_app_utility(f, imp, 2, 0, 12, -1, &u, NULL), 0);
    assert_true(u.n >= 3 && u.n <= 12);
    assert_true(u.pts[0].x == 0);
    assert_true(u.pts[0].y == -1);
    double prev_slope = INFINITY;
    for (size_t i = 1; i < u.n; i++) {
        double slope = (u.pts[i].y - u.pts[i - 1].y) / (u.pts[i].x - u.pts[i - 1].x);
        assert_true(slope >= -1e-12);
        assert_true(slope <= prev_slope + 1e-9);
        prev_slope = slope;
    }
    /* Lies on or above the clamped true utility and close to it at the top. */
    double Lc = 50 * 10 + 20 * 20;
    double w0 = 2 * 50, w1 = 20;
    for (double x = Lc + 10; x < u.pts[u.n - 1].x; x += 50) {
        double u0 = fmax(-1, (0.2 - flowctl_ps_rt(x, Lc / 10, 10, 0.05)) / 0.2);
        double u1 = fmax(-1, (1 - flowctl_ps_rt(x, Lc / 20, 20, 0.1)) / 1);
        double truth = (w0 * u0 + w1 * u1) / (w0 + w1);
        double got = flowctl_utility_eval(&u, x);
        assert_true(got >= truth - 0.05);
        assert_true(got <= 1);
    }
    double top = flowctl_utility_eval(&u, 1e9);
    double sup = (w0 * (0.2 - 0.05) / 0.2 + w1 * (1 - 0.1)) / (w0 + w1);
    assert_true(top <= sup + 1e-9 && top > sup - 0.02);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ps_closed_form),
        cmocka_unit_test(test_ps_multiclass),
        cmocka_unit_test(test_mm1),
        cmocka_unit_test(test_mm1k),
        cmocka_unit_test(test_limit_limits),
        cmocka_unit_test(test_saturated_limit),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_optimize_differentiates),
        cmocka_unit_test(test_optimize_vs_grid),
        cmocka_unit_test(test_optimize_light),
        cmocka_unit_test(test_utility_concave),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
