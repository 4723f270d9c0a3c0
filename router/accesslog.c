/* accesslog.c - --access-log: one JSON line per request, written by a
 * thread of its own so the event loops never wait for the disk.
 *
 * Workers append formatted lines to a shared buffer under a mutex (a memcpy);
 * the writer thread swaps it for an empty one and writes it out. When the
 * disk falls behind by more than RT_ALOG_MAX bytes, lines are dropped and
 * counted (reported in the log and /admin/stats) rather than blocking. */
#include <errno.h>
#include <stdio.h>
#include <time.h>

#include "gw.h"

#define RT_ALOG_MAX (8u << 20)

struct rt_alog {
    FILE *f;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *buf;
    size_t len, cap;
    int stop;
    atomic_ullong dropped, written;
};

static void *alog_main(void *arg)
{
    struct rt_alog *al = arg;
    char *mine = NULL;
    size_t mcap = 0;
    pthread_mutex_lock(&al->mu);
    for (;;) {
        while (al->len == 0 && !al->stop)
            pthread_cond_wait(&al->cv, &al->mu);
        if (al->len == 0 && al->stop)
            break;
        /* Take the filled buffer, leave an empty one. */
        char *b = al->buf;
        size_t n = al->len, c = al->cap;
        al->buf = mine;
        al->cap = mcap;
        al->len = 0;
        pthread_mutex_unlock(&al->mu);
        if (fwrite(b, 1, n, al->f) != n || fflush(al->f))
            atomic_fetch_add(&al->dropped, 1);
        mine = b;
        mcap = c;
        pthread_mutex_lock(&al->mu);
    }
    pthread_mutex_unlock(&al->mu);
    free(mine);
    return NULL;
}

struct rt_alog *rt_alog_open(const char *path, struct wlm_error *err)
{
    struct rt_alog *al = calloc(1, sizeof *al);
    if (!al) {
        rt_err(err, ENOMEM, "--access-log", "out of memory");
        return NULL;
    }
    al->f = fopen(path, "a");
    if (!al->f) {
        rt_err(err, WLM_EIO, "--access-log", "--access-log: cannot open '%s': %s", path,
               strerror(errno));
        free(al);
        return NULL;
    }
    pthread_mutex_init(&al->mu, NULL);
    pthread_cond_init(&al->cv, NULL);
    if (pthread_create(&al->th, NULL, alog_main, al)) {
        rt_err(err, WLM_EIO, "--access-log", "--access-log: cannot start the writer thread");
        fclose(al->f);
        free(al);
        return NULL;
    }
    return al;
}

void rt_alog_close(struct rt_alog *al)
{
    if (!al)
        return;
    pthread_mutex_lock(&al->mu);
    al->stop = 1;
    pthread_cond_signal(&al->cv);
    pthread_mutex_unlock(&al->mu);
    pthread_join(al->th, NULL);
    if (atomic_load(&al->dropped))
        wlm_warn("router", "access log lines dropped", "count=%llu",
                 (unsigned long long)atomic_load(&al->dropped));
    fclose(al->f);
    free(al->buf);
    pthread_mutex_destroy(&al->mu);
    pthread_cond_destroy(&al->cv);
    free(al);
}

unsigned long long rt_alog_dropped(const struct rt_alog *al)
{
    return al ? atomic_load(&al->dropped) : 0;
}

static void alog_put(struct rt_alog *al, const char *line, size_t n)
{
    pthread_mutex_lock(&al->mu);
    if (al->len + n > RT_ALOG_MAX) {
        pthread_mutex_unlock(&al->mu);
        atomic_fetch_add(&al->dropped, 1);
        return;
    }
    int wake = al->len == 0;
    if (rt_buf_add(&al->buf, &al->len, &al->cap, line, n) == 0)
        atomic_fetch_add(&al->written, 1);
    if (wake)
        pthread_cond_signal(&al->cv);
    pthread_mutex_unlock(&al->mu);
}

/* JSON string body of s (quotes, backslashes and control bytes escaped). */
static size_t esc(char *o, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            o[n++] = '\\';
            o[n++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            n += (size_t)snprintf(o + n, cap - n, "\\u%04x", ch);
        } else {
            o[n++] = (char)ch;
        }
    }
    o[n] = 0;
    return n;
}

void rt_alog_request(struct rt_alog *al, const struct rt_req *q)
{
    char t[40], path[1600], line[2400];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t tl = strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(t + tl, sizeof t - tl, ".%03ldZ", ts.tv_nsec / 1000000);
    esc(path, sizeof path, q->log_path);
    double now = rt_mono();
    double qwait = q->t_dispatch > 0 ? q->t_dispatch - q->t_arrive : now - q->t_arrive;
    double up = q->t_dispatch > 0 ? (q->t_done > 0 ? q->t_done : now) - q->t_dispatch : 0;
    int n = snprintf(line, sizeof line,
                     "{\"time\":\"%s\",\"request_id\":\"%s\",\"flow\":\"%s\",\"method\":\"%s\","
                     "\"path\":\"%s\",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu,"
                     "\"queue_wait_ms\":%.3f,\"upstream_ms\":%.3f,\"tls\":\"%s\",\"alpn\":\"%s\","
                     "\"tunnel\":%s}\n",
                     t, q->reqid, q->st ? q->st->name : "", q->log_method, path,
                     q->aborted ? 0 : q->resp.status, (unsigned long long)q->body_bytes,
                     (unsigned long long)q->bytes_out, qwait * 1e3, up * 1e3, q->log_tls,
                     q->log_alpn, q->tunnel ? "true" : "false");
    if (n > 0)
        alog_put(al, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}
