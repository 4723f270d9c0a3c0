/* gateway.c - wlm-router's data path: listeners, HTTP/1.1 and h2c front end,
 * the shared dispatcher, upstream keep-alive pools, admin endpoints.
 *
 * Threads and fairness. N workers each run a libuv loop and accept on their
 * own SO_REUSEPORT socket; connections, requests and upstream connections
 * belong to one worker for their whole life. Scheduling state is ONE shared
 * dispatcher (config, SFQ queues, concurrency counters, per-instance
 * outstanding counts, stats) behind one mutex: a worker classifies and
 * enqueues under the lock, and whoever frees a slot (request completion,
 * config swap) picks the next requests in global SFQ order and hands each to
 * its owning worker (a list under the same lock plus uv_async_send). This
 * keeps WFQ order and the limit exact across workers; the critical sections
 * are a few hundred nanoseconds, and with one worker the lock is uncontended.
 *
 * Requests and responses are buffered whole (bounded by max_body_bytes and
 * max_response_bytes): that is what makes retry on another instance
 * possible, and small web responses dominate. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <http_parser.h>
#include <jansson.h>
#include <nghttp2/nghttp2.h>
#include <uv.h>

#include "internal.h"

#define RT_NB 16
static const double hist_ms[RT_NB] = {0.1, 0.25, 0.5, 1,   2.5,  5,    10,   25,
                                      50,  100,  250, 500, 1000, 2500, 5000, 10000};
#define RT_MAX_PIPELINE 64

struct rt_hist {
    uint64_t c[RT_NB + 1];
    double sum;
    uint64_t n;
};

struct rt_flowstat {
    char name[256];
    double weight, cost;
    unsigned max_queue, max_wait_ms;
    uint64_t arrivals, admitted, rejected, expired, completed, errors, cancelled;
    long inflight;
    size_t qlen;
    struct rt_hist qwait, resp;
    double svc_sum;
    uint64_t svc_n;
};

struct rt_upconn;

struct rt_inst {
    char id[128];
    char url[300];
    char host[256];
    int port;
    struct sockaddr_storage sa;
    double cpu_mhz;
    unsigned max_conc;
    unsigned outstanding;
    unsigned fails;
    double ejected_until;
    uint64_t requests, failures;
    int active;
    struct rt_upconn **idle; /* per worker */
};

struct rt_app {
    struct rt_inst **inst;
    size_t n;
};

struct rt_state {
    struct router_config *cfg;
    char *json;
    struct router_sched *sched;
    struct rt_flowstat **st;
    struct rt_app *apps;
};

struct rt_worker;
struct rt_conn;

struct rt_resp {
    int status;
    char *hb; /* "Name: value\r\n" lines */
    size_t hlen, hcap;
    char *body;
    size_t blen, bcap;
};

enum rt_qstate { Q_NEW, Q_QUEUED, Q_READY, Q_UPSTREAM, Q_DONE };

struct rt_req {
    struct router_sched_item item;
    struct rt_worker *w;
    struct rt_conn *conn; /* NULL once the client is gone */
    struct rt_req *cprev, *cnext; /* conn's list (pipeline order for h1) */
    struct rt_req *rnext;         /* worker's ready list */
    int32_t stream_id;
    enum rt_qstate state;
    int verdict; /* 0 = go upstream, else local status */
    int head;    /* HEAD request: no response body */
    int idempotent;
    int keep_alive;
    int tries;
    struct rt_flowstat *st;
    struct rt_inst *inst;
    struct rt_upconn *up;
    char *upbytes; /* serialised upstream request */
    size_t uplen;
    char reqid[48];
    double t_arrive, t_dispatch;
    struct rt_resp resp;
    size_t h2_off; /* h2 body bytes sent */
};

#define RT_MAGIC_CONN 0x434f4e4eu
#define RT_MAGIC_UP 0x55505354u

struct rt_upconn {
    uv_tcp_t tcp;
    unsigned magic; /* RT_MAGIC_UP: tells handles apart at shutdown */
    uv_timer_t timer;
    uv_connect_t creq;
    struct rt_worker *w;
    struct rt_inst *inst;
    struct rt_upconn *inext;
    http_parser p;
    struct rt_req *req;
    int connected, reused, got_bytes, closing, handles;
    char *hk; /* header pairs "name\0value\0" */
    size_t hklen, hkcap;
    int in_value, complete;
    int noreuse; /* EOF seen or stray bytes after the response */
};

enum rt_proto { P_DETECT, P_H1, P_H2 };

struct h2_stream;

struct rt_conn {
    uv_tcp_t tcp;
    unsigned magic; /* RT_MAGIC_CONN */
    struct h2_stream *streams; /* all h2 streams, freed with the conn */
    uv_timer_t timer;
    struct rt_worker *w;
    int admin, closing, handles, want_close, paused, timer_mode;
    enum rt_proto proto;
    char pre[24];
    size_t prelen;
    struct router_h1req *h1;
    int partial;
    struct rt_req *rhead, *rtail;
    unsigned nreq;
    nghttp2_session *h2;
    struct rt_conn *dnext; /* worker's list of h2 conns with output pending */
    int dirty;
    char peer[64];
};

struct rt_worker {
    struct router *r;
    unsigned idx;
    uv_loop_t loop;
    uv_tcp_t listener, admin;
    int has_admin;
    int lfd, afd;
    uv_async_t async;
    uv_timer_t sweep;
    pthread_t th;
    struct rt_req *ready_head, *ready_tail;
    uint64_t seq;
    int need_drain; /* own ready list got work: drain at the end of the callback */
    struct rt_conn *dirty; /* h2 conns with frames to send, flushed in the check phase */
    uv_check_t flush;
    char rbuf[65536];
};

struct router {
    struct router_opts o;
    char listen_host[256], admin_host[256], token[256];
    unsigned nw;
    struct rt_worker *w;
    pthread_mutex_t mu;
    struct rt_state *cur;
    unsigned inflight;
    struct rt_inst **insts;
    size_t ninsts;
    struct rt_flowstat **stats;
    size_t nstats;
    int port, aport;
    char idprefix[16];
    atomic_int stop;
    atomic_uint up_timeout_ms, retry_after_s; /* copies of cur->cfg readable without the lock */
};

static char *rt_dup(const char *x)
{
    return rt_strndup(x, strlen(x));
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void hist_add(struct rt_hist *h, double ms)
{
    size_t i = 0;
    while (i < RT_NB && ms > hist_ms[i])
        i++;
    h->c[i]++;
    h->sum += ms;
    h->n++;
}

static double hist_q(const struct rt_hist *h, double q)
{
    if (!h->n)
        return 0;
    uint64_t want = (uint64_t)(q * (double)h->n + 0.5), acc = 0;
    if (want == 0)
        want = 1;
    for (size_t i = 0; i <= RT_NB; i++) {
        acc += h->c[i];
        if (acc >= want)
            return i < RT_NB ? hist_ms[i] : hist_ms[RT_NB - 1] * 2;
    }
    return 0;
}

static int buf_add(char **b, size_t *len, size_t *cap, const void *d, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (nc < *len + n + 1)
            nc *= 2;
        char *nb = realloc(*b, nc);
        if (!nb)
            return -1;
        *b = nb;
        *cap = nc;
    }
    memcpy(*b + *len, d, n);
    *len += n;
    (*b)[*len] = 0;
    return 0;
}

/* The hot path avoids printf: these append pieces directly. */
static int buf_str(char **b, size_t *len, size_t *cap, const char *s)
{
    return buf_add(b, len, cap, s, strlen(s));
}

static int buf_u(char **b, size_t *len, size_t *cap, unsigned long long v)
{
    char t[24];
    int i = 24;
    do
        t[--i] = (char)('0' + v % 10);
    while ((v /= 10));
    return buf_add(b, len, cap, t + i, (size_t)(24 - i));
}

/* "name: value\r\n" */
static int buf_hdr(char **b, size_t *len, size_t *cap, const char *n, size_t nl, const char *v,
                   size_t vl)
{
    if (*len + nl + vl + 5 > *cap && buf_add(b, len, cap, "", 0) == 0) {
        size_t nc = *cap;
        while (nc < *len + nl + vl + 5)
            nc *= 2;
        char *nb = realloc(*b, nc);
        if (!nb)
            return -1;
        *b = nb;
        *cap = nc;
    }
    char *p = *b + *len;
    memcpy(p, n, nl);
    p += nl;
    *p++ = ':';
    *p++ = ' ';
    memcpy(p, v, vl);
    p += vl;
    *p++ = '\r';
    *p++ = '\n';
    *p = 0;
    *len += nl + vl + 4;
    return 0;
}

static int buf_printf(char **b, size_t *len, size_t *cap, const char *fmt, ...) WLM_PRINTF(4, 5);
static int buf_printf(char **b, size_t *len, size_t *cap, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n >= sizeof tmp) {
        char *big = malloc((size_t)n + 1);
        if (!big)
            return -1;
        va_start(ap, fmt);
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        int rc = buf_add(b, len, cap, big, (size_t)n);
        free(big);
        return rc;
    }
    return buf_add(b, len, cap, tmp, (size_t)n);
}

static const char *reason(int s)
{
    switch (s) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

/* ------------------------------------------------------------ writes */

struct rt_wreq {
    uv_write_t w;
    size_t len;
    char data[];
};

static void write_done(uv_write_t *w, int status)
{
    free(w);
}

/* Write everything: synchronously when the socket takes it, else queue a
 * copy of the rest. Returns 0 or a libuv error. */
static int stream_write(uv_stream_t *s, const char *d, size_t n)
{
    if (n == 0)
        return 0;
    uv_buf_t b = uv_buf_init((char *)d, (unsigned)n);
    int k = uv_try_write(s, &b, 1);
    if (k == (int)n)
        return 0;
    if (k < 0 && k != UV_EAGAIN)
        return k;
    if (k < 0)
        k = 0;
    struct rt_wreq *w = malloc(sizeof *w + n - (size_t)k);
    if (!w)
        return UV_ENOMEM;
    memcpy(w->data, d + k, n - (size_t)k);
    w->len = n - (size_t)k;
    b = uv_buf_init(w->data, (unsigned)w->len);
    int rc = uv_write(&w->w, s, &b, 1, write_done);
    if (rc)
        free(w);
    return rc;
}

/* ------------------------------------------------------------ state */

static void state_free(struct rt_state *s)
{
    if (!s)
        return;
    if (s->cfg)
        for (size_t a = 0; a < s->cfg->napps; a++)
            free(s->apps[a].inst);
    free(s->apps);
    free(s->st);
    router_sched_free(s->sched);
    router_config_free(s->cfg);
    free(s->json);
    free(s);
}

static struct rt_flowstat *stat_get(struct router *r, const char *name)
{
    for (size_t i = 0; i < r->nstats; i++)
        if (strcmp(r->stats[i]->name, name) == 0)
            return r->stats[i];
    struct rt_flowstat **n = realloc(r->stats, (r->nstats + 1) * sizeof *n);
    if (!n)
        return NULL;
    r->stats = n;
    struct rt_flowstat *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    snprintf(st->name, sizeof st->name, "%s", name);
    r->stats[r->nstats++] = st;
    return st;
}

static int resolve(struct rt_inst *in, struct wlm_error *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", in->port);
    int rc = getaddrinfo(in->host, port, &hints, &res);
    if (rc || !res)
        return rt_err(err, WLM_EINVAL, "url", "instance '%s': cannot resolve '%s': %s", in->id,
                      in->host, gai_strerror(rc));
    memcpy(&in->sa, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

/* Called with the lock held. */
static struct rt_inst *inst_get(struct router *r, const struct router_instance_cfg *c,
                                struct wlm_error *err)
{
    for (size_t i = 0; i < r->ninsts; i++) {
        struct rt_inst *in = r->insts[i];
        if (strcmp(in->id, c->id) == 0 && strcmp(in->url, c->url) == 0)
            return in;
    }
    struct rt_inst *in = calloc(1, sizeof *in);
    struct rt_inst **n = realloc(r->insts, (r->ninsts + 1) * sizeof *n);
    if (!in || !n) {
        free(in);
        if (n)
            r->insts = n;
        rt_err(err, ENOMEM, "", "out of memory");
        return NULL;
    }
    r->insts = n;
    snprintf(in->id, sizeof in->id, "%s", c->id);
    snprintf(in->url, sizeof in->url, "%s", c->url);
    snprintf(in->host, sizeof in->host, "%s", c->host);
    in->port = c->port;
    in->idle = calloc(r->nw, sizeof *in->idle);
    if (!in->idle || resolve(in, err)) {
        free(in->idle);
        free(in);
        return NULL;
    }
    r->insts[r->ninsts++] = in;
    return in;
}

/* ------------------------------------------------------------ dispatcher (lock held) */

struct pick_ctx {
    struct router *r;
    double now;
};

static int inst_usable(const struct rt_inst *in, double now)
{
    return in->ejected_until <= now && (in->max_conc == 0 || in->outstanding < in->max_conc);
}

/* Least outstanding weighted by CPU allocation: the instance with the most
 * CPU per request in service. When every instance is ejected, the one whose
 * ejection ends first is tried (fail fast rather than queue forever). */
static struct rt_inst *select_inst(struct rt_app *app, double now, const struct rt_inst *avoid)
{
    struct rt_inst *best = NULL;
    double bs = 0;
    for (int pass = 0; pass < 2 && !best; pass++)
        for (size_t i = 0; i < app->n; i++) {
            struct rt_inst *in = app->inst[i];
            if (in == avoid && app->n > 1 && pass == 0)
                continue;
            if (!inst_usable(in, now))
                continue;
            double s = (in->outstanding + 1) / (in->cpu_mhz > 0 ? in->cpu_mhz : 1);
            if (!best || s < bs)
                best = in, bs = s;
        }
    if (!best) {
        int all_ejected = 1;
        for (size_t i = 0; i < app->n; i++)
            if (app->inst[i]->ejected_until <= now)
                all_ejected = 0;
        if (all_ejected)
            for (size_t i = 0; i < app->n; i++) {
                struct rt_inst *in = app->inst[i];
                if (in->max_conc && in->outstanding >= in->max_conc)
                    continue;
                if (!best || in->ejected_until < best->ejected_until)
                    best = in;
            }
    }
    return best;
}

static int flow_eligible(size_t flow, void *ud)
{
    struct pick_ctx *c = ud;
    struct rt_state *s = c->r->cur;
    struct rt_app *app = &s->apps[s->cfg->flows[flow].app];
    return app->n == 0 || select_inst(app, c->now, NULL) != NULL;
}

static void ready_push(struct rt_req *q)
{
    struct rt_worker *w = q->w;
    q->rnext = NULL;
    if (w->ready_tail)
        w->ready_tail->rnext = q;
    else
        w->ready_head = q;
    w->ready_tail = q;
    q->state = Q_READY;
}

/* Admit queued requests while slots are free. Each admitted request is
 * pushed to its worker's ready list; *wake gets a bit per worker to wake. */
static void dispatch_locked(struct router *r, double now, uint64_t *wake)
{
    struct rt_state *s = r->cur;
    struct pick_ctx c = {r, now};
    while (r->inflight < s->cfg->limit) {
        struct router_sched_item *it = router_sched_pick(s->sched, flow_eligible, &c);
        if (!it)
            break;
        struct rt_req *q = it->ud;
        struct rt_app *app = &s->apps[s->cfg->flows[it->flow].app];
        q->st->qlen--;
        if (app->n == 0) {
            q->verdict = 503;
            q->st->rejected++;
        } else {
            struct rt_inst *in = select_inst(app, now, NULL);
            in->outstanding++;
            in->requests++;
            q->inst = in;
            q->verdict = 0;
            r->inflight++;
            q->st->admitted++;
            q->st->inflight++;
            q->t_dispatch = now;
            hist_add(&q->st->qwait, (now - q->t_arrive) * 1e3);
        }
        ready_push(q);
        *wake |= 1ull << (q->w->idx % 64);
    }
}

static double max_wait_of(size_t flow, void *ud)
{
    struct rt_state *s = ud;
    const struct router_flow_ref *f = &s->cfg->flows[flow];
    return s->cfg->apps[f->app].classes[f->cls].max_wait_ms / 1e3;
}

static void wake_workers(struct router *r, uint64_t wake, struct rt_worker *self)
{
    for (unsigned i = 0; i < r->nw; i++) {
        if (!(wake & (1ull << (i % 64))))
            continue;
        if (&r->w[i] == self)
            self->need_drain = 1;
        else
            uv_async_send(&r->w[i].async);
    }
}

static void drain_ready(struct rt_worker *w);

static void h2_flush(struct rt_conn *c);

/* End of every libuv callback: admit what this worker was handed. */
static void maybe_drain(struct rt_worker *w)
{
    while (w->need_drain)
        drain_ready(w);
}

/* Check phase (after all I/O callbacks of a loop iteration): send the h2
 * frames produced by every response of the iteration, one write per
 * connection instead of one per response. */
static void flush_dirty(uv_check_t *h)
{
    struct rt_worker *w = h->data;
    while (w->dirty) {
        struct rt_conn *c = w->dirty;
        w->dirty = c->dnext;
        c->dnext = NULL;
        c->dirty = 0;
        h2_flush(c);
    }
    maybe_drain(w);
    if (!w->dirty)
        uv_check_stop(&w->flush);
}

/* ------------------------------------------------------------ responses */

static void resp_reset(struct rt_resp *rs)
{
    free(rs->hb);
    free(rs->body);
    memset(rs, 0, sizeof *rs);
}

static void resp_local(struct rt_req *q, int status, const char *extra, const char *msg)
{
    resp_reset(&q->resp);
    q->resp.status = status;
    buf_printf(&q->resp.hb, &q->resp.hlen, &q->resp.hcap, "Content-Type: application/json\r\n%s",
               extra ? extra : "");
    buf_printf(&q->resp.body, &q->resp.blen, &q->resp.bcap, "{\"error\":\"%s\",\"detail\":\"%s\"}\n",
               reason(status), msg);
}

static void conn_close(struct rt_conn *c);
static void conn_flush(struct rt_conn *c);
static void h2_respond(struct rt_conn *c, struct rt_req *q);
static void h2_flush(struct rt_conn *c);

static void req_free(struct rt_req *q)
{
    resp_reset(&q->resp);
    free(q->upbytes);
    free(q);
}

static void conn_unlink(struct rt_conn *c, struct rt_req *q)
{
    if (q->cprev)
        q->cprev->cnext = q->cnext;
    else
        c->rhead = q->cnext;
    if (q->cnext)
        q->cnext->cprev = q->cprev;
    else
        c->rtail = q->cprev;
    q->cprev = q->cnext = NULL;
    c->nreq--;
}

/* The request has its response (local or upstream): deliver it or, if the
 * client is gone, free it. */
static void req_complete(struct rt_req *q)
{
    q->state = Q_DONE;
    struct rt_conn *c = q->conn;
    if (!c) {
        req_free(q);
        return;
    }
    if (c->proto == P_H2)
        h2_respond(c, q);
    else
        conn_flush(c);
}

/* Passive health check: consecutive failures take an instance out of
 * selection for eject_ms. Lock held. */
static void eject(struct router *r, struct rt_inst *in, double now)
{
    if (in->ejected_until <= now)
        wlm_warn("router", "instance ejected", "id=%s url=%s consecutive_failures=%u for_ms=%u",
                 in->id, in->url, in->fails, r->o.eject_ms);
    in->ejected_until = now + r->o.eject_ms / 1e3;
}

/* Release the slot of an admitted request and admit the next ones. */
static void release_slot(struct rt_req *q, int ok, int failed_inst)
{
    struct router *r = q->w->r;
    double now = mono();
    uint64_t wake = 0;
    pthread_mutex_lock(&r->mu);
    if (q->inst) {
        q->inst->outstanding--;
        if (failed_inst) {
            q->inst->failures++;
            if (++q->inst->fails >= r->o.eject_failures)
                eject(r, q->inst, now);
        } else if (ok) {
            q->inst->fails = 0;
        }
        q->inst = NULL;
        r->inflight--;
        q->st->inflight--;
        q->st->completed++;
        if (!ok)
            q->st->errors++;
        hist_add(&q->st->resp, (now - q->t_arrive) * 1e3);
        q->st->svc_sum += now - q->t_dispatch;
        q->st->svc_n++;
    }
    dispatch_locked(r, now, &wake);
    pthread_mutex_unlock(&r->mu);
    wake_workers(r, wake, q->w);
}

/* ------------------------------------------------------------ upstream */

static void up_start(struct rt_req *q);
static void up_release(struct rt_upconn *u, int reuse);

static void up_closed(uv_handle_t *h)
{
    struct rt_upconn *u = h->data;
    if (--u->handles == 0) {
        free(u->hk);
        free(u);
    }
}

static void idle_remove(struct rt_upconn *u)
{
    struct rt_upconn **pp = &u->inst->idle[u->w->idx];
    while (*pp) {
        if (*pp == u) {
            *pp = u->inext;
            break;
        }
        pp = &(*pp)->inext;
    }
    u->inext = NULL;
}

static void up_close(struct rt_upconn *u)
{
    if (u->closing)
        return;
    u->closing = 1;
    if (!u->req)
        idle_remove(u);
    uv_close((uv_handle_t *)&u->tcp, up_closed);
    uv_close((uv_handle_t *)&u->timer, up_closed);
}

/* Upstream failed for request q. Retry idempotent requests that got no
 * response bytes on another instance; else answer 502/504. */
static void up_fail(struct rt_upconn *u, int timeout)
{
    struct rt_req *q = u->req;
    int got = u->got_bytes, reused = u->reused;
    u->req = NULL;
    up_close(u);
    if (!q)
        return;
    q->up = NULL;
    struct router *r = q->w->r;
    /* Only idempotent requests are retried: a POST on a connection that died
     * may already have been executed. */
    if (!timeout && !got && q->conn && q->tries < 3 && q->idempotent) {
        /* A dead pooled connection is the pool's fault, not the instance's. */
        double now = mono();
        pthread_mutex_lock(&r->mu);
        struct rt_inst *old = q->inst;
        if (!reused) {
            old->failures++;
            if (++old->fails >= r->o.eject_failures)
                eject(r, old, now);
        }
        struct rt_state *s = r->cur;
        struct rt_app *app = NULL;
        for (size_t a = 0; a < s->cfg->napps && !app; a++)
            for (size_t i = 0; i < s->apps[a].n; i++)
                if (s->apps[a].inst[i] == old) {
                    app = &s->apps[a];
                    break;
                }
        struct rt_inst *in = NULL;
        if (app) {
            old->outstanding--;
            in = select_inst(app, now, reused ? NULL : old);
            if (in) {
                in->outstanding++;
                in->requests++;
                q->inst = in;
            } else {
                old->outstanding++;
            }
        }
        pthread_mutex_unlock(&r->mu);
        if (in) {
            q->tries++;
            up_start(q);
            return;
        }
    }
    resp_local(q, timeout ? 504 : 502, NULL,
               timeout ? "upstream timed out" : "upstream connection failed");
    release_slot(q, 0, !reused || timeout);
    req_complete(q);
}

static int up_on_hfield(http_parser *p, const char *at, size_t len)
{
    struct rt_upconn *u = p->data;
    if (u->in_value || u->hklen == 0) {
        if (u->hklen)
            buf_add(&u->hk, &u->hklen, &u->hkcap, "", 1); /* end of value */
        u->in_value = 0;
    }
    return buf_add(&u->hk, &u->hklen, &u->hkcap, at, len);
}

static int up_on_hvalue(http_parser *p, const char *at, size_t len)
{
    struct rt_upconn *u = p->data;
    if (!u->in_value) {
        buf_add(&u->hk, &u->hklen, &u->hkcap, "", 1); /* end of name */
        u->in_value = 1;
    }
    return buf_add(&u->hk, &u->hklen, &u->hkcap, at, len);
}

static int hop_by_hop(const char *n, size_t nl)
{
    static const char *const hop[] = {"connection",        "keep-alive", "proxy-connection",
                                      "transfer-encoding", "upgrade",    "te",
                                      "trailer",           "content-length", "http2-settings",
                                      NULL};
    for (size_t i = 0; hop[i]; i++)
        if (rt_ieq(n, nl, hop[i]))
            return 1;
    return 0;
}

static int up_on_headers_complete(http_parser *p)
{
    struct rt_upconn *u = p->data;
    struct rt_req *q = u->req;
    if (!q)
        return -1;
    if (u->hklen && u->in_value)
        buf_add(&u->hk, &u->hklen, &u->hkcap, "", 1);
    else if (u->hklen)
        buf_add(&u->hk, &u->hklen, &u->hkcap, "\0", 2); /* name without value */
    if (p->status_code / 100 == 1)
        return 0; /* interim response: skipped in on_message_complete */
    resp_reset(&q->resp);
    q->resp.status = p->status_code;
    const char *k = u->hk, *end = u->hk + u->hklen;
    while (k && k < end) {
        size_t nl = strlen(k);
        const char *v = k + nl + 1;
        if (v > end)
            break;
        size_t vl = strlen(v);
        if (!hop_by_hop(k, nl))
            buf_hdr(&q->resp.hb, &q->resp.hlen, &q->resp.hcap, k, nl, v, vl);
        k = v + vl + 1;
    }
    u->hklen = 0;
    u->in_value = 0;
    return q->head ? 1 : 0; /* HEAD: no body follows */
}

static int up_on_body(http_parser *p, const char *at, size_t len)
{
    struct rt_upconn *u = p->data;
    struct rt_req *q = u->req;
    if (!q)
        return -1;
    if (q->resp.blen + len > q->w->r->o.max_response_bytes)
        return -1;
    return buf_add(&q->resp.body, &q->resp.blen, &q->resp.bcap, at, len);
}

static int up_on_message_complete(http_parser *p)
{
    struct rt_upconn *u = p->data;
    if (p->status_code / 100 == 1 && p->status_code != 101) {
        u->hklen = 0;
        u->in_value = 0;
        return 0;
    }
    u->complete = 1;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings up_settings = {
    .on_header_field = up_on_hfield,
    .on_header_value = up_on_hvalue,
    .on_headers_complete = up_on_headers_complete,
    .on_body = up_on_body,
    .on_message_complete = up_on_message_complete,
};

static void up_done(struct rt_upconn *u)
{
    struct rt_req *q = u->req;
    int ka = http_should_keep_alive(&u->p) && !u->noreuse;
    uv_timer_stop(&u->timer);
    u->req = NULL;
    q->up = NULL;
    up_release(u, ka);
    buf_hdr(&q->resp.hb, &q->resp.hlen, &q->resp.hcap, "X-Request-Id", 12, q->reqid,
            strlen(q->reqid));
    release_slot(q, q->resp.status < 500, 0);
    req_complete(q);
}

static void worker_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    struct rt_worker *w = h->loop->data;
    *b = uv_buf_init(w->rbuf, sizeof w->rbuf);
}

static void up_read_(struct rt_upconn *u, ssize_t n, const uv_buf_t *b);

static void up_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct rt_upconn *u = s->data;
    struct rt_worker *w = u->w;
    up_read_(u, n, b);
    maybe_drain(w);
}

static void up_read_(struct rt_upconn *u, ssize_t n, const uv_buf_t *b)
{
    if (n == 0)
        return;
    if (!u->req) { /* idle connection: the upstream closed it or sent garbage */
        up_close(u);
        return;
    }
    if (n < 0) {
        if (n == UV_EOF && u->got_bytes) {
            u->noreuse = 1;
            http_parser_execute(&u->p, &up_settings, NULL, 0);
            if (u->complete) {
                up_done(u);
                return;
            }
        }
        up_fail(u, 0);
        return;
    }
    u->got_bytes = 1;
    size_t k = http_parser_execute(&u->p, &up_settings, b->base, (size_t)n);
    if (u->complete) {
        if (k < (size_t)n) /* bytes after the response: not reusable */
            u->noreuse = 1;
        up_done(u);
        return;
    }
    if (HTTP_PARSER_ERRNO(&u->p) != HPE_OK) {
        u->got_bytes = 1; /* malformed response: do not retry */
        up_fail(u, 0);
    }
}

static void up_timeout(uv_timer_t *t)
{
    struct rt_upconn *u = t->data;
    struct rt_worker *w = u->w;
    if (u->req)
        up_fail(u, 1);
    maybe_drain(w);
}

static void up_send(struct rt_upconn *u)
{
    struct rt_req *q = u->req;
    http_parser_init(&u->p, HTTP_RESPONSE);
    u->p.data = u;
    u->got_bytes = 0;
    u->complete = 0;
    u->hklen = 0;
    u->in_value = 0;
    uv_timer_start(&u->timer, up_timeout, q->w->r->up_timeout_ms, 0);
    if (stream_write((uv_stream_t *)&u->tcp, q->upbytes, q->uplen))
        up_fail(u, 0);
}

static void up_connected(uv_connect_t *cr, int status)
{
    struct rt_upconn *u = cr->data;
    struct rt_worker *w = u->w;
    if (u->closing)
        return;
    if (status) {
        up_fail(u, 0);
        maybe_drain(w);
        return;
    }
    u->connected = 1;
    uv_tcp_nodelay(&u->tcp, 1);
    uv_read_start((uv_stream_t *)&u->tcp, worker_alloc, up_read);
    if (u->req)
        up_send(u);
    maybe_drain(w);
}

static void up_release(struct rt_upconn *u, int reuse)
{
    if (!reuse || !u->inst->active || u->w->r->stop) {
        up_close(u);
        return;
    }
    u->reused = 1;
    u->inext = u->inst->idle[u->w->idx];
    u->inst->idle[u->w->idx] = u;
}

static void up_start(struct rt_req *q)
{
    struct rt_worker *w = q->w;
    struct rt_inst *in = q->inst;
    struct rt_upconn *u = in->idle[w->idx];
    q->state = Q_UPSTREAM;
    if (u) {
        in->idle[w->idx] = u->inext;
        u->inext = NULL;
        u->req = q;
        q->up = u;
        up_send(u);
        return;
    }
    u = calloc(1, sizeof *u);
    if (!u) {
        resp_local(q, 502, NULL, "out of memory");
        release_slot(q, 0, 0);
        req_complete(q);
        return;
    }
    u->magic = RT_MAGIC_UP;
    u->w = w;
    u->inst = in;
    u->req = q;
    q->up = u;
    uv_tcp_init(&w->loop, &u->tcp);
    uv_timer_init(&w->loop, &u->timer);
    u->tcp.data = u->timer.data = u->creq.data = u;
    u->handles = 2;
    /* The connect gets the request's deadline too. */
    uv_timer_start(&u->timer, up_timeout, w->r->up_timeout_ms, 0);
    int rc = uv_tcp_connect(&u->creq, &u->tcp, (const struct sockaddr *)&in->sa, up_connected);
    if (rc)
        up_fail(u, 0);
}

/* ------------------------------------------------------------ ready list */

static void handle_ready(struct rt_req *q)
{
    if (!q->conn) { /* client left while the request was being handed over */
        if (q->verdict == 0) /* counted as completed with error */
            release_slot(q, 0, 0);
        req_free(q);
        return;
    }
    if (q->verdict) {
        char ra[64];
        snprintf(ra, sizeof ra, "Retry-After: %u\r\n", (unsigned)q->w->r->retry_after_s);
        resp_local(q, q->verdict, ra,
                   q->verdict == 503 ? "overloaded or no instance, retry later" : "rejected");
        req_complete(q);
        return;
    }
    q->tries = 1;
    up_start(q);
}

static void drain_ready(struct rt_worker *w)
{
    w->need_drain = 0;
    for (;;) {
        pthread_mutex_lock(&w->r->mu);
        struct rt_req *q = w->ready_head;
        w->ready_head = w->ready_tail = NULL;
        pthread_mutex_unlock(&w->r->mu);
        if (!q)
            return;
        while (q) {
            struct rt_req *n = q->rnext;
            handle_ready(q);
            q = n;
        }
    }
}

/* ------------------------------------------------------------ request intake */

/* "<router prefix>-<worker>-<hex seq>", unique per router run. */
static void gen_reqid(struct rt_worker *w, char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t pl = strlen(w->r->idprefix), o = 0;
    uint64_t v = ++w->seq;
    char t[17];
    int i = 16;
    if (n < pl + 24)
        return;
    memcpy(out, w->r->idprefix, pl);
    o = pl;
    out[o++] = '-';
    o += (size_t)snprintf(out + o, n - o, "%u", w->idx % 100);
    out[o++] = '-';
    t[16] = 0;
    do
        t[--i] = hex[v & 15];
    while ((v >>= 4));
    memcpy(out + o, t + i, (size_t)(17 - i));
}

/* Build the upstream HTTP/1.1 request once (reused on retry). */
static int build_upstream(struct rt_req *q, const char *method, const char *target, size_t tlen,
                          const char *authority, size_t alen, const struct router_hdr *h,
                          size_t nh, const char *body, size_t blen, const char *peer)
{
    size_t len = 0, cap = tlen + alen + blen + 256;
    for (size_t i = 0; i < nh; i++)
        cap += h[i].name_len + h[i].value_len + 4;
    char *b = malloc(cap); /* sized once: no regrowth on the hot path */
    const char *xff = NULL;
    size_t xffl = 0;
    if (!b)
        return -1;
    int rc = buf_str(&b, &len, &cap, method);
    rc |= buf_add(&b, &len, &cap, " ", 1);
    rc |= buf_add(&b, &len, &cap, target, tlen);
    rc |= buf_add(&b, &len, &cap, " HTTP/1.1\r\n", 11);
    if (authority)
        rc |= buf_hdr(&b, &len, &cap, "Host", 4, authority, alen);
    q->reqid[0] = 0;
    for (size_t i = 0; i < nh; i++) {
        if (hop_by_hop(h[i].name, h[i].name_len))
            continue;
        if (authority && rt_ieq(h[i].name, h[i].name_len, "host"))
            continue;
        if (rt_ieq(h[i].name, h[i].name_len, "x-forwarded-for")) {
            xff = h[i].value, xffl = h[i].value_len;
            continue;
        }
        if (rt_ieq(h[i].name, h[i].name_len, "x-request-id") && h[i].value_len > 0 &&
            h[i].value_len < sizeof q->reqid)
            memcpy(q->reqid, h[i].value, h[i].value_len), q->reqid[h[i].value_len] = 0;
        rc |= buf_hdr(&b, &len, &cap, h[i].name, h[i].name_len, h[i].value, h[i].value_len);
    }
    if (!q->reqid[0]) {
        gen_reqid(q->w, q->reqid, sizeof q->reqid);
        rc |= buf_hdr(&b, &len, &cap, "X-Request-Id", 12, q->reqid, strlen(q->reqid));
    }
    rc |= buf_add(&b, &len, &cap, "X-Forwarded-For: ", 17);
    if (xff) {
        rc |= buf_add(&b, &len, &cap, xff, xffl);
        rc |= buf_add(&b, &len, &cap, ", ", 2);
    }
    rc |= buf_str(&b, &len, &cap, peer);
    rc |= buf_add(&b, &len, &cap, "\r\nVia: 1.1 wlm-router\r\n", 23);
    if (blen || !(strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0 ||
                  strcmp(method, "DELETE") == 0 || strcmp(method, "OPTIONS") == 0)) {
        rc |= buf_add(&b, &len, &cap, "Content-Length: ", 16);
        rc |= buf_u(&b, &len, &cap, blen);
        rc |= buf_add(&b, &len, &cap, "\r\n", 2);
    }
    rc |= buf_add(&b, &len, &cap, "\r\n", 2);
    if (blen)
        rc |= buf_add(&b, &len, &cap, body, blen);
    if (rc) {
        free(b);
        return -1;
    }
    q->upbytes = b;
    q->uplen = len;
    q->head = strcmp(method, "HEAD") == 0;
    q->idempotent = q->head || strcmp(method, "GET") == 0 || strcmp(method, "PUT") == 0 ||
                    strcmp(method, "DELETE") == 0 || strcmp(method, "OPTIONS") == 0;
    return 0;
}

static void admin_handle(struct rt_req *q, const char *method, const char *path, size_t plen,
                         const struct router_hdr *h, size_t nh, const char *body, size_t blen);

static struct rt_req *req_new(struct rt_conn *c)
{
    struct rt_req *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->w = c->w;
    q->conn = c;
    q->item.ud = q;
    q->t_arrive = mono();
    q->cprev = c->rtail;
    if (c->rtail)
        c->rtail->cnext = q;
    else
        c->rhead = q;
    c->rtail = q;
    c->nreq++;
    return q;
}

/* Classify, enqueue, and admit what fits. The request is answered locally
 * when no application matches (404) or its flow's queue is full (503). */
static void req_submit(struct rt_req *q, const char *host, size_t hostl, const char *path,
                       size_t plen, const struct router_hdr *h, size_t nh)
{
    struct router *r = q->w->r;
    struct router_reqinfo ri = {host, hostl, path, plen, h, nh};
    uint64_t wake = 0;
    int verdict = 0;
    unsigned retry_after = 1;
    pthread_mutex_lock(&r->mu);
    struct rt_state *s = r->cur;
    retry_after = s->cfg->retry_after_s;
    long flow = router_classify(s->cfg, &ri);
    if (flow < 0) {
        verdict = 404;
    } else {
        q->st = s->st[flow];
        q->st->arrivals++;
        if (router_sched_enqueue(s->sched, &q->item, (size_t)flow, q->t_arrive)) {
            q->st->rejected++;
            verdict = 503;
        } else {
            q->st->qlen++;
            q->state = Q_QUEUED;
            dispatch_locked(r, q->t_arrive, &wake);
        }
    }
    pthread_mutex_unlock(&r->mu);
    wake_workers(r, wake, q->w);
    if (verdict == 404) {
        resp_local(q, 404, NULL, "no application matches this host and path");
        req_complete(q);
    } else if (verdict == 503) {
        char ra[64];
        snprintf(ra, sizeof ra, "Retry-After: %u\r\n", retry_after);
        resp_local(q, 503, ra, "flow queue full, retry later");
        req_complete(q);
    }
}

/* The client is gone: queued requests leave the queue, requests upstream
 * finish and are then dropped. */
static void req_abandon(struct rt_req *q)
{
    q->conn = NULL;
    if (q->state == Q_QUEUED) {
        struct router *r = q->w->r;
        int was = 0;
        pthread_mutex_lock(&r->mu);
        if (q->item.queued) {
            router_sched_remove(r->cur->sched, &q->item);
            q->st->qlen--;
            q->st->cancelled++;
            was = 1;
        }
        pthread_mutex_unlock(&r->mu);
        if (was)
            req_free(q);
        /* else: it is on this worker's ready list; handle_ready frees it. */
    } else if (q->state == Q_DONE || q->state == Q_NEW) {
        req_free(q);
    }
    /* Q_READY / Q_UPSTREAM: freed when that finishes. */
}

/* ------------------------------------------------------------ HTTP/1 front end */

static void h2_stream_free(struct rt_conn *c, struct h2_stream *st);

static void conn_closed(uv_handle_t *h)
{
    struct rt_conn *c = h->data;
    if (--c->handles == 0) {
        if (c->dirty) { /* normally flushed long before; never leave a dangling entry */
            struct rt_conn **pp = &c->w->dirty;
            while (*pp && *pp != c)
                pp = &(*pp)->dnext;
            if (*pp)
                *pp = c->dnext;
        }
        router_h1req_free(c->h1);
        if (c->h2)
            nghttp2_session_del(c->h2);
        while (c->streams)
            h2_stream_free(c, c->streams);
        free(c);
    }
}

static void conn_close(struct rt_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    struct rt_req *q = c->rhead;
    while (q) {
        struct rt_req *n = q->cnext;
        q->cprev = q->cnext = NULL;
        req_abandon(q);
        q = n;
    }
    c->rhead = c->rtail = NULL;
    c->nreq = 0;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
    uv_close((uv_handle_t *)&c->timer, conn_closed);
}

static void conn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

enum { T_NONE, T_HEADER, T_IDLE };

static void conn_timeout(uv_timer_t *t)
{
    struct rt_conn *c = t->data;
    if (c->timer_mode == T_HEADER && c->nreq == 0 && c->proto != P_H2) {
        static const char msg[] = "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n"
                                  "Connection: close\r\n\r\n";
        stream_write((uv_stream_t *)&c->tcp, msg, sizeof msg - 1);
    }
    conn_close(c);
}

static void conn_timers(struct rt_conn *c)
{
    struct router *r = c->w->r;
    if (c->closing)
        return;
    /* A new connection must send its first request head within the header
     * timeout too, so silent connections cannot pin memory for the idle time. */
    if (c->partial || c->proto == P_DETECT) {
        if (c->timer_mode != T_HEADER) { /* not extended by trickling bytes */
            c->timer_mode = T_HEADER;
            uv_timer_start(&c->timer, conn_timeout, r->o.header_timeout_ms, 0);
        }
    } else if (c->nreq == 0) {
        c->timer_mode = T_IDLE;
        uv_timer_start(&c->timer, conn_timeout, r->o.idle_timeout_ms, 0);
    } else if (c->timer_mode != T_NONE) {
        c->timer_mode = T_NONE;
        uv_timer_stop(&c->timer);
    }
}

/* Send finished responses in request order (pipelining). */
static void conn_flush(struct rt_conn *c)
{
    while (c->rhead && c->rhead->state == Q_DONE && !c->closing) {
        struct rt_req *q = c->rhead;
        char *b = NULL;
        size_t len = 0, cap = 0;
        int close = !q->keep_alive || c->want_close;
        const struct rt_resp *rs = &q->resp;
        cap = rs->hlen + rs->blen + 128;
        b = malloc(cap);
        if (!b) {
            conn_close(c);
            return;
        }
        buf_add(&b, &len, &cap, "HTTP/1.1 ", 9);
        buf_u(&b, &len, &cap, (unsigned)rs->status);
        buf_add(&b, &len, &cap, " ", 1);
        buf_str(&b, &len, &cap, reason(rs->status));
        buf_add(&b, &len, &cap, "\r\n", 2);
        buf_add(&b, &len, &cap, rs->hb ? rs->hb : "", rs->hlen);
        if (!(rs->status == 204 || rs->status == 304 || rs->status / 100 == 1)) {
            buf_add(&b, &len, &cap, "Content-Length: ", 16);
            buf_u(&b, &len, &cap, rs->blen);
            buf_add(&b, &len, &cap, "\r\n", 2);
        }
        if (close)
            buf_add(&b, &len, &cap, "Connection: close\r\n", 19);
        buf_add(&b, &len, &cap, "\r\n", 2);
        if (!q->head && rs->blen)
            buf_add(&b, &len, &cap, rs->body, rs->blen);
        int rc = stream_write((uv_stream_t *)&c->tcp, b, len);
        free(b);
        conn_unlink(c, q);
        req_free(q);
        if (rc || close) {
            conn_close(c);
            return;
        }
    }
    if (c->paused && c->nreq < RT_MAX_PIPELINE / 2) {
        c->paused = 0;
        uv_read_start((uv_stream_t *)&c->tcp, worker_alloc, conn_read);
    }
    conn_timers(c);
}

static void h1_error(struct rt_conn *c, int status, const char *why)
{
    /* Answer after the responses already owed, then close. */
    struct rt_req *q = req_new(c);
    if (!q) {
        conn_close(c);
        return;
    }
    c->want_close = 1;
    resp_local(q, status, NULL, why);
    q->state = Q_DONE;
    conn_flush(c);
}

static int h2_start(struct rt_conn *c, const char *settings, size_t slen, struct rt_req *up_req,
                    int head);
static int h2_feed(struct rt_conn *c, const char *d, size_t n);

static void h1_request(struct rt_conn *c, const struct router_h1view *v)
{
    struct rt_req *q = req_new(c);
    if (!q) {
        conn_close(c);
        return;
    }
    q->keep_alive = v->keep_alive && !c->want_close;
    const struct router_hdr *hh = router_hdr_find(v->headers, v->nheaders, "host");
    if (c->admin) {
        const char *qm = memchr(v->url, '?', v->url_len);
        size_t pl = qm ? (size_t)(qm - v->url) : v->url_len;
        admin_handle(q, v->method, v->url, pl, v->headers, v->nheaders, v->body, v->body_len);
        return;
    }
    /* Absolute-form target (RFC 9112 3.2.2): its authority replaces Host and
     * the upstream gets the origin-form path. */
    const char *target = v->url, *auth = NULL;
    size_t tlen = v->url_len, alen = 0;
    if (tlen > 7 && strncasecmp(target, "http://", 7) == 0) {
        const char *a = target + 7, *end = target + tlen;
        const char *slash = memchr(a, '/', (size_t)(end - a));
        auth = a;
        alen = (size_t)((slash ? slash : end) - a);
        target = slash ? slash : "/";
        tlen = slash ? (size_t)(end - slash) : 1;
    }
    if (build_upstream(q, v->method, target, tlen, auth, alen, v->headers, v->nheaders, v->body,
                       v->body_len, c->peer)) {
        resp_local(q, 500, NULL, "out of memory");
        q->state = Q_DONE;
        conn_flush(c);
        return;
    }
    if (auth)
        req_submit(q, auth, alen, target, tlen, v->headers, v->nheaders);
    else
        req_submit(q, hh ? hh->value : NULL, hh ? hh->value_len : 0, target, tlen, v->headers,
                   v->nheaders);
}

static int b64url_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)in[i], v;
        if (c >= 'A' && c <= 'Z') v = c - 'A';
        else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
        else if (c >= '0' && c <= '9') v = c - '0' + 52;
        else if (c == '-' || c == '+') v = 62;
        else if (c == '_' || c == '/') v = 63;
        else if (c == '=') break;
        else return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return (int)o;
}

/* Returns the number of bytes consumed; stops when the connection switched
 * to h2 (the caller feeds the rest to nghttp2) or closed. */
static size_t h1_feed(struct rt_conn *c, const char *d, size_t n)
{
    size_t off = 0;
    while (off < n && !c->closing && c->proto == P_H1 && !c->want_close) {
        size_t used;
        enum router_h1_event ev = router_h1req_feed(c->h1, d + off, n - off, &used);
        off += used;
        if (ev == ROUTER_H1_NEED_MORE) {
            c->partial = 1;
            break;
        }
        if (ev == ROUTER_H1_ERROR) {
            h1_error(c, router_h1req_status(c->h1), router_h1req_reason(c->h1));
            return n;
        }
        c->partial = 0;
        struct router_h1view v;
        router_h1req_view(c->h1, &v);
        if (v.upgrade_h2c && c->nreq == 0 && v.body_len == 0 && !c->admin) {
            const struct router_hdr *sh = router_hdr_find(v.headers, v.nheaders, "http2-settings");
            unsigned char settings[512];
            int sl = b64url_decode(sh->value, sh->value_len, settings, sizeof settings);
            if (sl >= 0) {
                static const char sw[] = "HTTP/1.1 101 Switching Protocols\r\n"
                                         "Connection: Upgrade\r\nUpgrade: h2c\r\n\r\n";
                stream_write((uv_stream_t *)&c->tcp, sw, sizeof sw - 1);
                struct rt_req *q = req_new(c);
                if (!q || h2_start(c, (const char *)settings, (size_t)sl, q,
                                   strcmp(v.method, "HEAD") == 0)) {
                    conn_close(c);
                    return n;
                }
                q->stream_id = 1;
                q->keep_alive = 1;
                const struct router_hdr *hh = router_hdr_find(v.headers, v.nheaders, "host");
                if (build_upstream(q, v.method, v.url, v.url_len, NULL, 0, v.headers,
                                   v.nheaders, v.body, v.body_len, c->peer)) {
                    conn_close(c);
                    return n;
                }
                req_submit(q, hh ? hh->value : NULL, hh ? hh->value_len : 0, v.url, v.url_len,
                           v.headers, v.nheaders);
                router_h1req_reset(c->h1);
                return off;
            }
        }
        h1_request(c, &v);
        if (!c->closing)
            router_h1req_reset(c->h1);
        if (c->nreq >= RT_MAX_PIPELINE && !c->closing) {
            /* Back-pressure: stop reading until responses drain. The rest
             * of this buffer is still processed (it is already here). */
            if (!c->paused) {
                c->paused = 1;
                uv_read_stop((uv_stream_t *)&c->tcp);
            }
        }
    }
    return off;
}

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static void conn_read_(struct rt_conn *c, ssize_t n, const uv_buf_t *b);

static void conn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct rt_conn *c = s->data;
    struct rt_worker *w = c->w;
    conn_read_(c, n, b);
    maybe_drain(w);
}

static void conn_read_(struct rt_conn *c, ssize_t n, const uv_buf_t *b)
{
    if (n == 0 || c->closing)
        return;
    if (n < 0) {
        conn_close(c);
        return;
    }
    const char *d = b->base;
    size_t len = (size_t)n;
    if (c->proto == P_DETECT) {
        size_t take = 24 - c->prelen < len ? 24 - c->prelen : len;
        memcpy(c->pre + c->prelen, d, take);
        c->prelen += take;
        if (memcmp(c->pre, h2_preface, c->prelen) != 0 || c->admin) {
            c->proto = P_H1;
            size_t pl = c->prelen;
            c->prelen = 0;
            size_t used = h1_feed(c, c->pre, pl);
            (void)used; /* < pl only if it switched to h2: impossible in 24 bytes */
            d += take;
            len -= take;
        } else if (c->prelen == 24) {
            c->proto = P_H2;
            if (h2_start(c, NULL, 0, NULL, 0) || h2_feed(c, c->pre, 24)) {
                conn_close(c);
                return;
            }
            d += take;
            len -= take;
        } else {
            conn_timers(c);
            return;
        }
    }
    if (c->proto == P_H1 && len) {
        size_t used = h1_feed(c, d, len);
        d += used;
        len -= used;
    }
    if (c->proto == P_H2 && len && !c->closing) {
        if (h2_feed(c, d, len)) {
            conn_close(c);
            return;
        }
    }
    if (c->proto == P_H2 && !c->closing)
        h2_flush(c);
    conn_timers(c);
}

static void on_accept(uv_stream_t *ls, int status)
{
    struct rt_worker *w = ls->loop->data;
    if (status < 0)
        return;
    struct rt_conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->magic = RT_MAGIC_CONN;
    c->w = w;
    c->admin = ls == (uv_stream_t *)&w->admin;
    c->h1 = router_h1req_new(w->r->o.max_header_bytes, w->r->o.max_body_bytes);
    uv_tcp_init(&w->loop, &c->tcp);
    uv_timer_init(&w->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    if (!c->h1 || uv_accept(ls, (uv_stream_t *)&c->tcp)) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    snprintf(c->peer, sizeof c->peer, "unknown");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof c->peer);
        else if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof c->peer);
    }
    c->proto = P_DETECT;
    uv_read_start((uv_stream_t *)&c->tcp, worker_alloc, conn_read);
    conn_timers(c);
}

/* ------------------------------------------------------------ HTTP/2 front end */

struct h2_stream {
    struct h2_stream *prev, *next; /* conn's list */
    struct rt_req *q;
    char *hb; /* "name\0value\0" pairs */
    size_t hlen, hcap;
    char *body;
    size_t blen, bcap;
    int too_big;
};

static struct h2_stream *h2_stream_new(struct rt_conn *c)
{
    struct h2_stream *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->next = c->streams;
    if (c->streams)
        c->streams->prev = st;
    c->streams = st;
    return st;
}

static void h2_stream_free(struct rt_conn *c, struct h2_stream *st)
{
    if (st->prev)
        st->prev->next = st->next;
    else
        c->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    free(st->hb);
    free(st->body);
    free(st);
}

static ssize_t h2_send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags,
                          void *ud)
{
    struct rt_conn *c = ud;
    if (c->closing)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (stream_write((uv_stream_t *)&c->tcp, (const char *)data, len))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return (ssize_t)len;
}

static int h2_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct h2_stream *st = h2_stream_new(ud);
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, st);
    return 0;
}

static int h2_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                        size_t nl, const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    struct rt_conn *c = ud;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!st)
        return 0;
    if (st->hlen + nl + vl + 2 > c->w->r->o.max_header_bytes) {
        st->too_big = 431;
        return 0;
    }
    buf_add(&st->hb, &st->hlen, &st->hcap, name, nl);
    buf_add(&st->hb, &st->hlen, &st->hcap, "", 1);
    buf_add(&st->hb, &st->hlen, &st->hcap, value, vl);
    buf_add(&st->hb, &st->hlen, &st->hcap, "", 1);
    return 0;
}

static int h2_on_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *d, size_t n,
                      void *ud)
{
    struct rt_conn *c = ud;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(s, sid);
    if (!st || st->q)
        return 0;
    if (st->blen + n > c->w->r->o.max_body_bytes) {
        st->too_big = 413;
        return 0;
    }
    buf_add(&st->body, &st->blen, &st->bcap, d, n);
    return 0;
}

/* A complete h2 request: turn pseudo-headers into the HTTP/1.1 upstream
 * request and submit it like any other. */
static void h2_request(struct rt_conn *c, int32_t sid, struct h2_stream *st)
{
    struct router_hdr hs[256];
    size_t nh = 0;
    const char *method = NULL, *path = NULL, *auth = NULL;
    size_t pathl = 0, authl = 0;
    const char *k = st->hb, *end = st->hb + st->hlen;
    while (k && k < end) {
        size_t kl = strlen(k);
        const char *v = k + kl + 1;
        size_t vl = strlen(v);
        if (kl == 7 && memcmp(k, ":method", 7) == 0)
            method = v;
        else if (kl == 5 && memcmp(k, ":path", 5) == 0)
            path = v, pathl = vl;
        else if (kl == 10 && memcmp(k, ":authority", 10) == 0)
            auth = v, authl = vl;
        else if (k[0] != ':' && nh < WLM_ARRAY_LEN(hs))
            hs[nh++] = (struct router_hdr){k, kl, v, vl};
        k = v + vl + 1;
    }
    struct rt_req *q = req_new(c);
    if (!q)
        return;
    q->stream_id = sid;
    q->keep_alive = 1;
    st->q = q;
    /* RFC 9113 8.3.1: Host and :authority must name the same thing; one
     * Host at most; both must be valid authorities. */
    const struct router_hdr *hh = NULL;
    int bad_host = 0;
    for (size_t i = 0; i < nh; i++)
        if (rt_ieq(hs[i].name, hs[i].name_len, "host")) {
            bad_host |= hh != NULL || !router_host_valid(hs[i].value, hs[i].value_len);
            hh = &hs[i];
        }
    if (auth && !router_host_valid(auth, authl))
        bad_host = 1;
    if (auth && hh && (hh->value_len != authl || strncasecmp(hh->value, auth, authl) != 0))
        bad_host = 1;
    if (!auth && hh)
        auth = hh->value, authl = hh->value_len;
    if (st->too_big || !method || !path || bad_host) {
        resp_local(q, st->too_big ? st->too_big : 400, NULL,
                   bad_host ? "Host and :authority disagree or are invalid" : "bad request");
        req_complete(q);
        return;
    }
    if (build_upstream(q, method, path, pathl, auth, authl, hs, nh, st->body, st->blen,
                       c->peer)) {
        resp_local(q, 500, NULL, "out of memory");
        req_complete(q);
        return;
    }
    req_submit(q, auth, authl, path, pathl, hs, nh);
}

static int h2_on_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    struct rt_conn *c = ud;
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        struct h2_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
        if (st && !st->q)
            h2_request(c, f->hd.stream_id, st);
    }
    return 0;
}

static int h2_on_close(nghttp2_session *s, int32_t sid, uint32_t code, void *ud)
{
    struct rt_conn *c = ud;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(s, sid);
    if (!st)
        return 0;
    nghttp2_session_set_stream_user_data(s, sid, NULL);
    if (st->q && st->q->conn) {
        conn_unlink(c, st->q);
        req_abandon(st->q);
    }
    h2_stream_free(c, st);
    return 0;
}

static ssize_t h2_read_body(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    struct rt_req *q = src->ptr;
    size_t left = q->resp.blen - q->h2_off;
    size_t n = left < len ? left : len;
    if (n)
        memcpy(buf, q->resp.body + q->h2_off, n);
    q->h2_off += n;
    if (q->h2_off >= q->resp.blen)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static void h2_respond(struct rt_conn *c, struct rt_req *q)
{
    nghttp2_nv nv[128];
    size_t n = 0;
    char status[8], clen[24];
    snprintf(status, sizeof status, "%d", q->resp.status);
    nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, strlen(status),
                           NGHTTP2_NV_FLAG_NONE};
    /* Header names are lower-cased in place: h2 requires it. */
    char *p = q->resp.hb, *end = q->resp.hb ? q->resp.hb + q->resp.hlen : NULL;
    while (p && p < end && n < WLM_ARRAY_LEN(nv) - 1) {
        char *colon = memchr(p, ':', (size_t)(end - p));
        char *eol = colon ? strstr(colon, "\r\n") : NULL;
        if (!colon || !eol)
            break;
        for (char *x = p; x < colon; x++)
            if (*x >= 'A' && *x <= 'Z')
                *x = (char)(*x + 32);
        char *v = colon + 1;
        while (v < eol && *v == ' ')
            v++;
        nv[n++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)v, (size_t)(colon - p),
                               (size_t)(eol - v), NGHTTP2_NV_FLAG_NONE};
        p = eol + 2;
    }
    snprintf(clen, sizeof clen, "%zu", q->resp.blen);
    nv[n++] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)clen, 14, strlen(clen),
                           NGHTTP2_NV_FLAG_NONE};
    nghttp2_data_provider dp = {.source.ptr = q, .read_callback = h2_read_body};
    struct h2_stream *st = nghttp2_session_get_stream_user_data(c->h2, q->stream_id);
    if (!st) { /* stream already closed */
        conn_unlink(c, q);
        req_free(q);
        return;
    }
    int rc = nghttp2_submit_response(c->h2, q->stream_id, nv, n,
                                     (q->head || q->resp.blen == 0) ? NULL : &dp);
    if (rc) {
        conn_unlink(c, q);
        st->q = NULL;
        req_free(q);
        return;
    }
    /* The request stays linked to the conn until the stream closes (the
     * body provider reads from it). Frames go out at the end of the callback. */
    if (!c->dirty) {
        c->dirty = 1;
        c->dnext = c->w->dirty;
        c->w->dirty = c;
        uv_check_start(&c->w->flush, flush_dirty);
    }
}

static void h2_flush(struct rt_conn *c)
{
    if (c->closing || !c->h2)
        return;
    /* Gather all pending frames into one write. */
    char *b = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        const uint8_t *d;
        ssize_t n = nghttp2_session_mem_send(c->h2, &d);
        if (n < 0) {
            free(b);
            conn_close(c);
            return;
        }
        if (n == 0)
            break;
        buf_add(&b, &len, &cap, d, (size_t)n);
    }
    int rc = stream_write((uv_stream_t *)&c->tcp, b, len);
    free(b);
    if (rc) {
        conn_close(c);
        return;
    }
    if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2))
        conn_close(c);
}

static int h2_start(struct rt_conn *c, const char *settings, size_t slen, struct rt_req *up_req,
                    int head)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb))
        return -1;
    nghttp2_session_callbacks_set_send_callback(cb, h2_send_cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, h2_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, h2_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2_on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h2_on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2_on_close);
    int rc = nghttp2_session_server_new(&c->h2, cb, c);
    nghttp2_session_callbacks_del(cb);
    if (rc)
        return -1;
    c->proto = P_H2;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 256}};
    nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 1);
    if (up_req) {
        struct h2_stream *st = h2_stream_new(c);
        if (!st)
            return -1;
        st->q = up_req;
        /* A server session ignores upgrade2's user data: set it after. */
        if (nghttp2_session_upgrade2(c->h2, (const uint8_t *)settings, slen, head, NULL) ||
            nghttp2_session_set_stream_user_data(c->h2, 1, st))
            return -1;
    }
    return 0;
}

static int h2_feed(struct rt_conn *c, const char *d, size_t n)
{
    ssize_t rc = nghttp2_session_mem_recv(c->h2, (const uint8_t *)d, n);
    return rc < 0 ? -1 : 0;
}

/* ------------------------------------------------------------ config swap */

static void swap_reject(struct router_sched_item *it, void *ud)
{
    struct rt_req *q = it->ud;
    uint64_t *wake = ud;
    q->st->qlen--;
    q->st->rejected++;
    q->verdict = 503;
    ready_push(q);
    *wake |= 1ull << (q->w->idx % 64);
}

/* Build the dispatcher state for cfg. Lock held (instances registry). */
static struct rt_state *state_build(struct router *r, struct router_config *cfg,
                                    struct wlm_error *err)
{
    struct rt_state *s = calloc(1, sizeof *s);
    int oom = 1;
    if (!s)
        goto fail;
    s->sched = router_sched_new(cfg->nflows);
    s->st = calloc(cfg->nflows + 1, sizeof *s->st);
    s->apps = calloc(cfg->napps + 1, sizeof *s->apps);
    if (!s->sched || !s->st || !s->apps)
        goto fail;
    for (size_t f = 0; f < cfg->nflows; f++) {
        char name[256];
        const struct router_class *cl = &cfg->apps[cfg->flows[f].app].classes[cfg->flows[f].cls];
        router_sched_set_flow(s->sched, f, cl->weight, cl->cost, cl->max_queue);
        s->st[f] = stat_get(r, router_flow_name(cfg, f, name, sizeof name));
        if (!s->st[f])
            goto fail;
    }
    for (size_t a = 0; a < cfg->napps; a++) {
        struct router_app *app = &cfg->apps[a];
        s->apps[a].inst = calloc(app->ninstances + 1, sizeof *s->apps[a].inst);
        if (!s->apps[a].inst)
            goto fail;
        for (size_t i = 0; i < app->ninstances; i++) {
            struct rt_inst *in = inst_get(r, &app->instances[i], err);
            if (!in) {
                oom = 0; /* inst_get described the error */
                goto fail;
            }
            s->apps[a].inst[s->apps[a].n++] = in;
        }
    }
    s->cfg = cfg;
    return s;
fail:
    if (oom)
        rt_err(err, ENOMEM, "", "out of memory");
    if (s) {
        if (s->apps)
            for (size_t k = 0; k < cfg->napps; k++)
                free(s->apps[k].inst);
        free(s->apps);
        free(s->st);
        router_sched_free(s->sched);
        free(s);
    }
    return NULL;
}

/* Install s (lock held): instance parameters, stats, and queued requests
 * move over; returns the old state for the caller to free. */
static struct rt_state *state_install(struct router *r, struct rt_state *s, uint64_t *wake)
{
    struct rt_state *old = r->cur;
    struct router_config *cfg = s->cfg;
    for (size_t i = 0; i < r->ninsts; i++)
        r->insts[i]->active = 0;
    for (size_t a = 0; a < cfg->napps; a++)
        for (size_t i = 0; i < cfg->apps[a].ninstances; i++) {
            struct rt_inst *in = s->apps[a].inst[i];
            in->active = 1;
            in->cpu_mhz = cfg->apps[a].instances[i].cpu_mhz;
            in->max_conc = cfg->apps[a].instances[i].max_concurrency;
        }
    for (size_t f = 0; f < cfg->nflows; f++) {
        const struct router_class *cl = &cfg->apps[cfg->flows[f].app].classes[cfg->flows[f].cls];
        s->st[f]->weight = cl->weight;
        s->st[f]->cost = cl->cost;
        s->st[f]->max_queue = cl->max_queue;
        s->st[f]->max_wait_ms = cl->max_wait_ms;
    }
    if (old) {
        long *map = calloc(old->cfg->nflows + 1, sizeof *map);
        for (size_t f = 0; f < old->cfg->nflows; f++) {
            char name[256];
            map[f] = router_config_find_flow(cfg, router_flow_name(old->cfg, f, name, sizeof name));
        }
        /* Stats objects are shared by name; queue lengths move with items. */
        router_sched_migrate(old->sched, s->sched, map, swap_reject, wake);
        free(map);
    }
    r->cur = s;
    r->up_timeout_ms = cfg->upstream_timeout_ms;
    r->retry_after_s = cfg->retry_after_s;
    return old;
}

int router_set_config(struct router *r, struct router_config *cfg, struct wlm_error *err)
{
    uint64_t wake = 0;
    pthread_mutex_lock(&r->mu);
    struct rt_state *s = state_build(r, cfg, err);
    if (!s) {
        pthread_mutex_unlock(&r->mu);
        return err ? err->code : -WLM_EINVAL;
    }
    struct rt_state *old = state_install(r, s, &wake);
    dispatch_locked(r, mono(), &wake);
    pthread_mutex_unlock(&r->mu);
    wlm_info("router", "config installed", "limit=%u apps=%zu flows=%zu", cfg->limit, cfg->napps,
             cfg->nflows);
    state_free(old);
    wake_workers(r, wake, NULL);
    return 0;
}

/* ------------------------------------------------------------ stats */

static json_t *hist_json(const struct rt_hist *h)
{
    json_t *b = json_array(), *c = json_array();
    for (size_t i = 0; i < RT_NB; i++)
        json_array_append_new(b, json_real(hist_ms[i]));
    for (size_t i = 0; i <= RT_NB; i++)
        json_array_append_new(c, json_integer((json_int_t)h->c[i]));
    return json_pack("{s:o,s:o,s:I,s:f,s:f,s:f,s:f}", "le_ms", b, "counts", c, "count",
                     (json_int_t)h->n, "sum_ms", h->sum, "mean_ms", h->n ? h->sum / h->n : 0.0,
                     "p50_ms", hist_q(h, 0.5), "p99_ms", hist_q(h, 0.99));
}

char *router_stats_json(struct router *r)
{
    json_t *flows = json_array(), *insts = json_array();
    pthread_mutex_lock(&r->mu);
    struct rt_state *s = r->cur;
    for (size_t f = 0; f < s->cfg->nflows; f++) {
        const struct rt_flowstat *st = s->st[f];
        const struct router_flow_ref *fr = &s->cfg->flows[f];
        json_t *o = json_pack(
            "{s:s,s:s,s:s,s:f,s:f,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:o,s:f,s:I}", "flow",
            st->name, "app", s->cfg->apps[fr->app].name, "class",
            s->cfg->apps[fr->app].classes[fr->cls].name, "weight", st->weight, "cost", st->cost,
            "arrivals", (json_int_t)st->arrivals, "admitted", (json_int_t)st->admitted,
            "rejected", (json_int_t)st->rejected, "expired", (json_int_t)st->expired,
            "completed", (json_int_t)st->completed, "errors", (json_int_t)st->errors,
            "cancelled", (json_int_t)st->cancelled, "in_flight", (json_int_t)st->inflight,
            "queue_len", (json_int_t)st->qlen, "queue_wait", hist_json(&st->qwait), "response",
            hist_json(&st->resp), "service_time_ms_mean",
            st->svc_n ? st->svc_sum * 1e3 / st->svc_n : 0.0, "service_count",
            (json_int_t)st->svc_n);
        json_array_append_new(flows, o);
    }
    double now = mono();
    for (size_t i = 0; i < r->ninsts; i++) {
        const struct rt_inst *in = r->insts[i];
        if (!in->active)
            continue;
        json_array_append_new(
            insts, json_pack("{s:s,s:s,s:f,s:I,s:I,s:I,s:I,s:b}", "id", in->id, "url", in->url,
                             "cpu_mhz", in->cpu_mhz, "max_concurrency", (json_int_t)in->max_conc,
                             "outstanding", (json_int_t)in->outstanding, "requests",
                             (json_int_t)in->requests, "failures", (json_int_t)in->failures,
                             "ejected", in->ejected_until > now));
    }
    json_t *root = json_pack("{s:I,s:I,s:I,s:o,s:o}", "limit", (json_int_t)s->cfg->limit,
                             "in_flight", (json_int_t)r->inflight, "workers", (json_int_t)r->nw,
                             "flows", flows, "instances", insts);
    pthread_mutex_unlock(&r->mu);
    char *out = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return out;
}

static void prom_hist(char **b, size_t *l, size_t *c, const char *name, const char *flow,
                      const struct rt_hist *h)
{
    uint64_t acc = 0;
    for (size_t i = 0; i < RT_NB; i++) {
        acc += h->c[i];
        buf_printf(b, l, c, "%s_bucket{flow=\"%s\",le=\"%g\"} %llu\n", name, flow,
                   hist_ms[i] / 1e3, (unsigned long long)acc);
    }
    acc += h->c[RT_NB];
    buf_printf(b, l, c, "%s_bucket{flow=\"%s\",le=\"+Inf\"} %llu\n", name, flow,
               (unsigned long long)acc);
    buf_printf(b, l, c, "%s_sum{flow=\"%s\"} %g\n%s_count{flow=\"%s\"} %llu\n", name, flow,
               h->sum / 1e3, name, flow, (unsigned long long)h->n);
}

char *router_metrics_text(struct router *r)
{
    char *b = NULL;
    size_t l = 0, c = 0;
    static const char *const counters[] = {"arrivals", "admitted", "rejected", "expired",
                                           "completed", "errors", "cancelled"};
    pthread_mutex_lock(&r->mu);
    struct rt_state *s = r->cur;
    buf_printf(&b, &l, &c,
               "# HELP wlm_router_limit System-wide concurrency limit.\n"
               "# TYPE wlm_router_limit gauge\nwlm_router_limit %u\n"
               "# HELP wlm_router_in_flight Requests being served upstream.\n"
               "# TYPE wlm_router_in_flight gauge\nwlm_router_in_flight %u\n",
               s->cfg->limit, r->inflight);
    for (size_t k = 0; k < WLM_ARRAY_LEN(counters); k++) {
        buf_printf(&b, &l, &c, "# HELP wlm_router_flow_%s_total Requests %s per flow.\n",
                   counters[k], counters[k]);
        buf_printf(&b, &l, &c, "# TYPE wlm_router_flow_%s_total counter\n", counters[k]);
        for (size_t f = 0; f < s->cfg->nflows; f++) {
            const struct rt_flowstat *st = s->st[f];
            const uint64_t v[] = {st->arrivals,  st->admitted, st->rejected, st->expired,
                                  st->completed, st->errors,   st->cancelled};
            buf_printf(&b, &l, &c, "wlm_router_flow_%s_total{flow=\"%s\"} %llu\n", counters[k],
                       st->name, (unsigned long long)v[k]);
        }
    }
    buf_printf(&b, &l, &c, "# HELP wlm_router_flow_in_flight Requests upstream per flow.\n"
                           "# TYPE wlm_router_flow_in_flight gauge\n");
    for (size_t f = 0; f < s->cfg->nflows; f++)
        buf_printf(&b, &l, &c, "wlm_router_flow_in_flight{flow=\"%s\"} %ld\n", s->st[f]->name,
                   s->st[f]->inflight);
    buf_printf(&b, &l, &c, "# HELP wlm_router_flow_queue_length Queued requests per flow.\n"
                           "# TYPE wlm_router_flow_queue_length gauge\n");
    for (size_t f = 0; f < s->cfg->nflows; f++)
        buf_printf(&b, &l, &c, "wlm_router_flow_queue_length{flow=\"%s\"} %zu\n",
                   s->st[f]->name, s->st[f]->qlen);
    buf_printf(&b, &l, &c, "# HELP wlm_router_flow_service_seconds Upstream service time.\n"
                           "# TYPE wlm_router_flow_service_seconds summary\n");
    for (size_t f = 0; f < s->cfg->nflows; f++)
        buf_printf(&b, &l, &c,
                   "wlm_router_flow_service_seconds_sum{flow=\"%s\"} %g\n"
                   "wlm_router_flow_service_seconds_count{flow=\"%s\"} %llu\n",
                   s->st[f]->name, s->st[f]->svc_sum, s->st[f]->name,
                   (unsigned long long)s->st[f]->svc_n);
    buf_printf(&b, &l, &c, "# HELP wlm_router_flow_queue_wait_seconds Time queued.\n"
                           "# TYPE wlm_router_flow_queue_wait_seconds histogram\n");
    for (size_t f = 0; f < s->cfg->nflows; f++)
        prom_hist(&b, &l, &c, "wlm_router_flow_queue_wait_seconds", s->st[f]->name,
                  &s->st[f]->qwait);
    buf_printf(&b, &l, &c, "# HELP wlm_router_flow_response_seconds Time to response.\n"
                           "# TYPE wlm_router_flow_response_seconds histogram\n");
    for (size_t f = 0; f < s->cfg->nflows; f++)
        prom_hist(&b, &l, &c, "wlm_router_flow_response_seconds", s->st[f]->name,
                  &s->st[f]->resp);
    pthread_mutex_unlock(&r->mu);
    return b;
}

/* ------------------------------------------------------------ admin */

static int token_ok(struct router *r, const struct router_hdr *h, size_t nh)
{
    if (!r->token[0])
        return 1;
    const struct router_hdr *a = router_hdr_find(h, nh, "authorization");
    if (!a || a->value_len < 7 || strncasecmp(a->value, "Bearer ", 7) != 0)
        return 0;
    /* Constant time in the secret's length. */
    const char *v = a->value + 7;
    size_t vl = a->value_len - 7, tl = strlen(r->token);
    unsigned char diff = (unsigned char)(vl != tl);
    for (size_t i = 0; i < tl; i++)
        diff |= (unsigned char)(r->token[i] ^ (i < vl ? v[i] : 0));
    return diff == 0;
}

static void admin_reply(struct rt_req *q, int status, const char *ctype, char *body)
{
    resp_reset(&q->resp);
    q->resp.status = status;
    buf_printf(&q->resp.hb, &q->resp.hlen, &q->resp.hcap, "Content-Type: %s\r\n", ctype);
    q->resp.body = body;
    q->resp.blen = body ? strlen(body) : 0;
    q->resp.bcap = q->resp.blen + 1;
    req_complete(q);
}

static int path_is(const char *p, size_t pl, const char *want)
{
    return pl == strlen(want) && memcmp(p, want, pl) == 0;
}

static void admin_handle(struct rt_req *q, const char *method, const char *path, size_t pl,
                         const struct router_hdr *h, size_t nh, const char *body, size_t blen)
{
    struct router *r = q->w->r;
    q->head = strcmp(method, "HEAD") == 0;
    if (path_is(path, pl, "/healthz")) {
        admin_reply(q, 200, "application/json", rt_dup("{\"status\":\"ok\"}\n"));
        return;
    }
    if (path_is(path, pl, "/metrics")) {
        admin_reply(q, 200, "text/plain; version=0.0.4", router_metrics_text(r));
        return;
    }
    int known = path_is(path, pl, "/admin/stats") || path_is(path, pl, "/admin/config");
    if (!known) {
        resp_local(q, 404, NULL, "no such endpoint");
        req_complete(q);
        return;
    }
    if (!token_ok(r, h, nh)) {
        resp_local(q, 401, "WWW-Authenticate: Bearer\r\n", "missing or wrong bearer token");
        req_complete(q);
        return;
    }
    if (path_is(path, pl, "/admin/stats") && strcmp(method, "GET") == 0) {
        admin_reply(q, 200, "application/json", router_stats_json(r));
        return;
    }
    if (path_is(path, pl, "/admin/config") && strcmp(method, "GET") == 0) {
        pthread_mutex_lock(&r->mu);
        char *j = rt_dup(r->cur->json ? r->cur->json : "{}");
        pthread_mutex_unlock(&r->mu);
        admin_reply(q, 200, "application/json", j);
        return;
    }
    if (path_is(path, pl, "/admin/config") && strcmp(method, "PUT") == 0) {
        struct wlm_error err = {0};
        struct router_config *cfg = NULL;
        if (router_config_parse(body, blen, &cfg, &err) == 0) {
            char *j = rt_strndup(body, blen);
            if (router_set_config(r, cfg, &err) == 0) {
                pthread_mutex_lock(&r->mu);
                free(r->cur->json);
                r->cur->json = j;
                pthread_mutex_unlock(&r->mu);
                admin_reply(q, 200, "application/json", rt_dup("{\"ok\":true}\n"));
                return;
            }
            free(j);
            router_config_free(cfg);
        }
        json_t *e = json_pack("{s:s,s:s,s:s}", "error", "invalid", "field", err.field, "detail",
                              err.msg);
        char *t = json_dumps(e, JSON_COMPACT);
        json_decref(e);
        resp_reset(&q->resp);
        admin_reply(q, 400, "application/json", t);
        return;
    }
    resp_local(q, 405, NULL, "method not allowed");
    req_complete(q);
}

/* ------------------------------------------------------------ workers */

static void expire_tick(uv_timer_t *t)
{
    struct rt_worker *w = t->data;
    struct router *r = w->r;
    uint64_t wake = 0;
    double now = mono();
    pthread_mutex_lock(&r->mu);
    struct rt_state *s = r->cur;
    struct router_sched_item *it;
    while ((it = router_sched_expired(s->sched, now, max_wait_of, s))) {
        struct rt_req *q = it->ud;
        q->st->qlen--;
        q->st->expired++;
        q->st->rejected++;
        q->verdict = 503;
        ready_push(q);
        wake |= 1ull << (q->w->idx % 64);
    }
    /* Ejections end with time, which may make queued flows eligible. */
    dispatch_locked(r, now, &wake);
    pthread_mutex_unlock(&r->mu);
    wake_workers(r, wake, w);
    maybe_drain(w);
}

static void conn_walk_close(uv_handle_t *h, void *arg)
{
    struct rt_worker *w = arg;
    if (uv_is_closing(h) || h->type != UV_TCP || h == (uv_handle_t *)&w->listener ||
        h == (uv_handle_t *)&w->admin)
        return;
    /* Both owners start with their uv_tcp_t followed by a magic word. */
    unsigned magic = *(unsigned *)((char *)h + offsetof(struct rt_conn, magic));
    if (magic == RT_MAGIC_CONN) {
        conn_close((struct rt_conn *)h);
    } else if (magic == RT_MAGIC_UP) {
        struct rt_upconn *u = (struct rt_upconn *)h;
        if (u->req)
            up_fail(u, 1);
        else
            up_close(u);
    }
}

static void on_async(uv_async_t *a)
{
    struct rt_worker *w = a->data;
    if (w->r->stop) {
        drain_ready(w);
        uv_walk(&w->loop, conn_walk_close, w);
        uv_close((uv_handle_t *)&w->listener, NULL);
        if (w->has_admin)
            uv_close((uv_handle_t *)&w->admin, NULL);
        uv_close((uv_handle_t *)&w->sweep, NULL);
        uv_close((uv_handle_t *)&w->flush, NULL);
        uv_close((uv_handle_t *)&w->async, NULL);
        return;
    }
    drain_ready(w);
    maybe_drain(w);
}

static void *worker_main(void *arg)
{
    struct rt_worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    return NULL;
}

static int bind_fd(const char *host, int port, int reuseport, int *out_port, struct wlm_error *err,
                   const char *what)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc || !res)
        return rt_err(err, WLM_EINVAL, what, "%s: cannot resolve '%s': %s", what, host,
                      gai_strerror(rc));
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (fd < 0) {
        freeaddrinfo(res);
        return rt_err(err, WLM_EIO, what, "%s: socket: %s", what, strerror(errno));
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 1024)) {
        int e = errno;
        close(fd);
        freeaddrinfo(res);
        return rt_err(err, WLM_EIO, what, "%s: cannot listen on %s:%d: %s", what, host, port,
                      strerror(e));
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *out_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

int router_new(const struct router_opts *o, struct router_config *cfg, struct router **out,
               struct wlm_error *err)
{
    *out = NULL;
    struct router *r = calloc(1, sizeof *r);
    if (!r)
        return rt_err(err, ENOMEM, "", "out of memory");
    r->o = *o;
    snprintf(r->listen_host, sizeof r->listen_host, "%s", o->listen_host ? o->listen_host : "0.0.0.0");
    snprintf(r->admin_host, sizeof r->admin_host, "%s", o->admin_host ? o->admin_host : "127.0.0.1");
    snprintf(r->token, sizeof r->token, "%s", o->token ? o->token : "");
    r->o.listen_host = r->listen_host;
    r->o.admin_host = r->admin_host;
    r->o.token = r->token;
    if (!r->o.max_header_bytes) r->o.max_header_bytes = 16384;
    if (!r->o.max_body_bytes) r->o.max_body_bytes = 8u << 20;
    if (!r->o.max_response_bytes) r->o.max_response_bytes = 64u << 20;
    if (!r->o.header_timeout_ms) r->o.header_timeout_ms = 10000;
    if (!r->o.idle_timeout_ms) r->o.idle_timeout_ms = 60000;
    if (!r->o.eject_failures) r->o.eject_failures = 3;
    if (!r->o.eject_ms) r->o.eject_ms = 5000;
    r->nw = o->workers ? o->workers : 1;
    if (r->nw > 64)
        r->nw = 64;
    pthread_mutex_init(&r->mu, NULL);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(r->idprefix, sizeof r->idprefix, "%08lx",
             (unsigned long)((ts.tv_nsec ^ (ts.tv_sec << 20) ^ getpid()) & 0xffffffff));
    r->w = calloc(r->nw, sizeof *r->w);
    if (!r->w) {
        free(r);
        return rt_err(err, ENOMEM, "", "out of memory");
    }
    for (unsigned i = 0; i < r->nw; i++)
        r->w[i].lfd = r->w[i].afd = -1;
    struct rt_state *s = state_build(r, cfg, err);
    if (!s)
        goto fail;
    uint64_t wake = 0;
    state_install(r, s, &wake);
    if (o->config_json)
        s->json = rt_dup(o->config_json);
    int port = o->listen_port;
    for (unsigned i = 0; i < r->nw; i++) {
        /* SO_REUSEPORT only to share the port among our own workers: with
         * one worker a port already in use is an error, never a silent split. */
        int fd = bind_fd(r->listen_host, port, r->nw > 1, &port, err, "listen");
        if (fd < 0)
            goto fail;
        r->w[i].lfd = fd;
    }
    r->port = port;
    if (o->admin_port >= 0) {
        int ap = o->admin_port;
        int fd = bind_fd(r->admin_host, ap, 0, &ap, err, "admin");
        if (fd < 0)
            goto fail;
        r->w[0].afd = fd;
        r->aport = ap;
    }
    for (unsigned i = 0; i < r->nw; i++) {
        struct rt_worker *w = &r->w[i];
        w->r = r;
        w->idx = i;
        uv_loop_init(&w->loop);
        w->loop.data = w;
        uv_async_init(&w->loop, &w->async, on_async);
        w->async.data = w;
        uv_check_init(&w->loop, &w->flush);
        w->flush.data = w;
        uv_tcp_init(&w->loop, &w->listener);
        uv_tcp_open(&w->listener, w->lfd);
        w->lfd = -1;
        uv_listen((uv_stream_t *)&w->listener, 1024, on_accept);
        if (i == 0) {
            uv_timer_init(&w->loop, &w->sweep);
            w->sweep.data = w;
            uv_timer_start(&w->sweep, expire_tick, 20, 20);
            if (r->w[0].afd >= 0) {
                uv_tcp_init(&w->loop, &w->admin);
                uv_tcp_open(&w->admin, w->afd);
                w->afd = -1;
                uv_listen((uv_stream_t *)&w->admin, 128, on_accept);
                w->has_admin = 1;
            }
        } else {
            /* Only worker 0 sweeps; keep the handle initialised for close. */
            uv_timer_init(&w->loop, &w->sweep);
            w->sweep.data = w;
        }
    }
    *out = r;
    return 0;
fail:
    for (unsigned i = 0; i < r->nw; i++) {
        if (r->w[i].lfd >= 0)
            close(r->w[i].lfd);
        if (r->w[i].afd >= 0)
            close(r->w[i].afd);
    }
    if (r->cur) {
        r->cur->cfg = NULL; /* the caller still owns cfg on failure */
        router_sched_free(r->cur->sched);
        for (size_t a = 0; a < cfg->napps; a++)
            free(r->cur->apps[a].inst);
        free(r->cur->apps);
        free(r->cur->st);
        free(r->cur);
    }
    for (size_t i = 0; i < r->ninsts; i++) {
        free(r->insts[i]->idle);
        free(r->insts[i]);
    }
    free(r->insts);
    for (size_t i = 0; i < r->nstats; i++)
        free(r->stats[i]);
    free(r->stats);
    free(r->w);
    pthread_mutex_destroy(&r->mu);
    free(r);
    return err ? err->code : -WLM_EINVAL;
}

int router_run(struct router *r)
{
    for (unsigned i = 1; i < r->nw; i++)
        pthread_create(&r->w[i].th, NULL, worker_main, &r->w[i]);
    worker_main(&r->w[0]);
    for (unsigned i = 1; i < r->nw; i++)
        pthread_join(r->w[i].th, NULL);
    return 0;
}

void router_stop(struct router *r)
{
    r->stop = 1;
    for (unsigned i = 0; i < r->nw; i++)
        uv_async_send(&r->w[i].async);
}

void router_free(struct router *r)
{
    if (!r)
        return;
    for (unsigned i = 0; i < r->nw; i++) {
        uv_run(&r->w[i].loop, UV_RUN_NOWAIT);
        uv_loop_close(&r->w[i].loop);
    }
    state_free(r->cur);
    for (size_t i = 0; i < r->ninsts; i++) {
        free(r->insts[i]->idle);
        free(r->insts[i]);
    }
    free(r->insts);
    for (size_t i = 0; i < r->nstats; i++)
        free(r->stats[i]);
    free(r->stats);
    free(r->w);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

int router_listen_port(const struct router *r)
{
    return r->port;
}

int router_admin_port(const struct router *r)
{
    return r->aport;
}
