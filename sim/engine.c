/*
 * engine.c - the pieces of the simulator that know nothing about policies:
 * random numbers, the event queue, node power accounting, statistics and the
 * SVG plot.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/* ---------------------------------------------------------------- random */

void sim_rng_seed(struct sim_rng *r, uint64_t seed)
{
    r->s = seed;
}

uint64_t sim_rng_u64(struct sim_rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double sim_rng_uniform(struct sim_rng *r)
{
    /* 53 random bits: exactly representable, never 1.0. */
    return (double)(sim_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

double sim_rng_exp(struct sim_rng *r, double mean)
{
    return -mean * log1p(-sim_rng_uniform(r));
}

/* ---------------------------------------------------------------- events */

struct sim_evq {
    struct sim_event *h;
    size_t n, cap;
    uint64_t next_seq;
};

struct sim_evq *sim_evq_new(void)
{
    return calloc(1, sizeof(struct sim_evq));
}

void sim_evq_free(struct sim_evq *q)
{
    if (!q)
        return;
    free(q->h);
    free(q);
}

static int ev_before(const struct sim_event *a, const struct sim_event *b)
{
    if (a->t != b->t)
        return a->t < b->t;
    if (a->kind != b->kind)
        return a->kind < b->kind;
    return a->seq < b->seq;
}

int sim_evq_push(struct sim_evq *q, const struct sim_event *ev)
{
    if (q->n == q->cap) {
        size_t nc = q->cap ? q->cap * 2 : 64;
        struct sim_event *nh = realloc(q->h, nc * sizeof(*nh));
        if (!nh)
            return -ENOMEM;
        q->h = nh;
        q->cap = nc;
    }
    size_t i = q->n++;
    q->h[i] = *ev;
    q->h[i].seq = q->next_seq++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ev_before(&q->h[i], &q->h[p]))
            break;
        struct sim_event tmp = q->h[i];
        q->h[i] = q->h[p];
        q->h[p] = tmp;
        i = p;
    }
    return 0;
}

int sim_evq_pop(struct sim_evq *q, struct sim_event *out)
{
    if (q->n == 0)
        return -WLM_ENOTFOUND;
    *out = q->h[0];
    q->h[0] = q->h[--q->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < q->n && ev_before(&q->h[l], &q->h[m]))
            m = l;
        if (r < q->n && ev_before(&q->h[r], &q->h[m]))
            m = r;
        if (m == i)
            break;
        struct sim_event tmp = q->h[i];
        q->h[i] = q->h[m];
        q->h[m] = tmp;
        i = m;
    }
    return 0;
}

size_t sim_evq_len(const struct sim_evq *q)
{
    return q->n;
}

/* ---------------------------------------------------------------- nodes */

double sim_node_capacity(const struct sim_node *n)
{
    return n->cores * n->mhz;
}

double sim_node_power(const struct sim_node *n)
{
    if (!n->on)
        return n->off_w;
    double cap = sim_node_capacity(n);
    double u = cap > 0 ? n->used_mhz / cap : 0;
    if (u < 0)
        u = 0;
    if (u > 1)
        u = 1;
    return n->idle_w + (n->max_w - n->idle_w) * u;
}

void sim_node_account(struct sim_node *n, double dt)
{
    if (dt > 0)
        n->energy_j += sim_node_power(n) * dt;
}

/* ---------------------------------------------------------------- stats */

/* Two-sided 97.5 % Student t quantiles for 1..30 degrees of freedom. */
static const double t975[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306,
                              2.262,  2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
                              2.110,  2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
                              2.060,  2.056, 2.052, 2.048, 2.045, 2.042};

void sim_ci95(const double *x, size_t n, double *mean, double *half)
{
    double m = 0, ss = 0;
    for (size_t i = 0; i < n; i++)
        m += x[i];
    m = n ? m / (double)n : 0;
    for (size_t i = 0; i < n; i++)
        ss += (x[i] - m) * (x[i] - m);
    *mean = m;
    if (n < 2) {
        *half = 0;
        return;
    }
    size_t df = n - 1;
    double t = df <= 30 ? t975[df - 1] : 1.96;
    *half = t * sqrt(ss / (double)df) / sqrt((double)n);
}

/* ---------------------------------------------------------------- SVG */

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                      "#9467bd", "#8c564b", "#e377c2", "#17becf"};

static void svg_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else
            fputc(*s, f);
    }
}

int sim_svg_plot(FILE *f, const char *title, const char *xlabel, const char *ylabel,
                 const struct sim_series *s, size_t ns)
{
    const double W = 720, H = 440, L = 70, R = 170, T = 40, B = 55;
    double x0 = INFINITY, x1 = -INFINITY, y0 = 0, y1 = -INFINITY;
    for (size_t k = 0; k < ns; k++)
        for (size_t i = 0; i < s[k].n; i++) {
            double e = s[k].err ? s[k].err[i] : 0;
            x0 = fmin(x0, s[k].x[i]);
            x1 = fmax(x1, s[k].x[i]);
            y0 = fmin(y0, s[k].y[i] - e);
            y1 = fmax(y1, s[k].y[i] + e);
        }
    if (!isfinite(x0) || x1 <= x0) {
        x0 = 0;
        x1 = 1;
    }
    if (!isfinite(y1) || y1 <= y0)
        y1 = y0 + 1;
    y1 += (y1 - y0) * 0.05;
    double pw = W - L - R, ph = H - T - B;
#define SX(v) (L + ((v)-x0) / (x1 - x0) * pw)
#define SY(v) (T + ph - ((v)-y0) / (y1 - y0) * ph)
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n",
            W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%.0f\" y=\"22\" font-size=\"15\" text-anchor=\"middle\">", W / 2);
    svg_text(f, title);
    fprintf(f, "</text>\n");
    fprintf(f,
            "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
            "stroke=\"#333\"/>\n",
            L, T, pw, ph);
    for (int i = 0; i <= 5; i++) {
        double xv = x0 + (x1 - x0) * i / 5, yv = y0 + (y1 - y0) * i / 5;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n",
                SX(xv), T, SX(xv), T + ph);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L,
                SY(yv), L + pw, SY(yv));
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.3g</text>\n", SX(xv),
                T + ph + 16, xv);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n", L - 6,
                SY(yv) + 4, yv);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", L + pw / 2, H - 12);
    svg_text(f, xlabel);
    fprintf(f,
            "</text>\n<text transform=\"translate(16,%.1f) rotate(-90)\" "
            "text-anchor=\"middle\">",
            T + ph / 2);
    svg_text(f, ylabel);
    fprintf(f, "</text>\n");
    for (size_t k = 0; k < ns; k++) {
        const char *col = palette[k % WLM_ARRAY_LEN(palette)];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", col);
        for (size_t i = 0; i < s[k].n; i++)
            fprintf(f, "%s%.1f,%.1f", i ? " " : "", SX(s[k].x[i]), SY(s[k].y[i]));
        fprintf(f, "\"/>\n");
        for (size_t i = 0; i < s[k].n; i++) {
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", SX(s[k].x[i]),
                    SY(s[k].y[i]), col);
            if (s[k].err && s[k].err[i] > 0)
                fprintf(f,
                        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                        "stroke=\"%s\"/>\n",
                        SX(s[k].x[i]), SY(s[k].y[i] - s[k].err[i]), SX(s[k].x[i]),
                        SY(s[k].y[i] + s[k].err[i]), col);
        }
        double ly = T + 14 + 18 * (double)k;
        fprintf(f,
                "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" "
                "stroke-width=\"2\"/>\n",
                L + pw + 12, ly, L + pw + 32, ly, col);
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">", L + pw + 38, ly + 4);
        svg_text(f, s[k].name);
        fprintf(f, "</text>\n");
    }
#undef SX
#undef SY
    fprintf(f, "</svg>\n");
    return ferror(f) ? -WLM_EIO : 0;
}
