/*
 * loadgen.h - open-loop HTTP/1.1 load generator on libuv for the flowctl
 * benchmark and the closed-loop test: Poisson arrivals per stream over a pool
 * of keep-alive connections (a new connection whenever all are busy, so the
 * offered load never depends on the response time), plus one-off requests
 * (admin API calls) on the same loop.
 */
#ifndef WLM_BENCH_LOADGEN_H
#define WLM_BENCH_LOADGEN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct lg;
struct lg_stream;

struct lg_stats {
    uint64_t sent, ok, s503, other, errors; /* responses by status; errors = transport */
    double sum_rt, max_rt;                  /* seconds, over ok responses */
    double rts[8192];                       /* sample of ok response times (first 8192) */
    size_t nrts;
};

struct lg *lg_new(uv_loop_t *loop, const char *host, int port);
/* Close every connection; run the loop afterwards to let handles close. */
void lg_free(struct lg *g);
/* A Poisson stream of GET `path` with extra header lines ("Name: v\r\n", may be
 * NULL) at `rate` requests/s (0 = paused). */
struct lg_stream *lg_stream_add(struct lg *g, const char *path, const char *headers, double rate);
void lg_stream_set_rate(struct lg_stream *s, double rate);
/* Copy the statistics since the last take and reset them. */
void lg_stream_take(struct lg_stream *s, struct lg_stats *out);
double lg_stats_mean(const struct lg_stats *st);
double lg_stats_pct(struct lg_stats *st, double p); /* sorts st->rts */

typedef void (*lg_done_cb)(int status, const char *body, size_t len, void *ud);
/* One request on a fresh connection; status 0 on transport error. */
int lg_request(struct lg *g, const char *method, const char *path, const char *body, lg_done_cb cb,
               void *ud);
/* Blocking convenience: run the loop until the request completes. Returns
 * the status; *body (caller frees) may be NULL. */
int lg_request_sync(struct lg *g, const char *method, const char *path, const char *body,
                    char **body_out);

/* Seconds on the monotonic clock. */
double lg_now(void);
/* Start `argv` with stdout/stderr to `log` (NULL = inherit); returns the pid or -1. */
int lg_spawn(char *const argv[], const char *log);
/* Read a port number written by a child into `path`, waiting up to timeout_s. */
int lg_wait_port(const char *path, double timeout_s);
#endif
