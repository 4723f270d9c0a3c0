/* gw.h - private types and functions of the gateway files (gateway.c,
 * h1conn.c, h2session.c, request.c, dispatch.c, upstream.c, admin.c, gw_util.c). */
#ifndef WLM_ROUTER_GW_H
#define WLM_ROUTER_GW_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <http_parser.h>
#include <jansson.h>
#include <nghttp2/nghttp2.h>
#include <uv.h>

#include "internal.h"

#define RT_NB 16
static const double rt_hist_ms[RT_NB] = {0.1, 0.25, 0.5, 1,   2.5,  5,    10,   25,
                                      50,  100,  250, 500, 1000, 2500, 5000, 10000};
#define RT_MAX_PIPELINE 64
/* Streaming: each request buffers at most about RT_WINDOW bytes per direction
 * (its own queue plus the socket's write queue) before the fast side stops
 * being read; reading resumes below half of it. Request bodies up to RT_KEEP
 * bytes are kept whole so an idempotent request can be retried. */
#define RT_WINDOW (256u << 10)
#define RT_KEEP (64u << 10)
#define RT_H2_CONN_WINDOW (16 << 20)
/* A connection closed after an error answer keeps reading (and dropping)
 * what the client still sends for up to this long, so the client reads the
 * answer instead of a reset (lingering close). */
#define RT_LINGER_MS 2000u

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
    long tunnels; /* open Upgrade tunnels (and handshakes under way) */
    uint64_t tunnels_total, tunnel_bytes_in, tunnel_bytes_out;
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

/* Q_STREAM: the upstream response head is in, its body is still coming. */
enum rt_qstate { Q_NEW, Q_QUEUED, Q_READY, Q_UPSTREAM, Q_STREAM, Q_DONE, Q_TUNNEL };

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
    /* Upstream request bytes (head, then the body as it arrives, framed):
     * upbytes[upsent..uplen) is not yet handed to the upstream socket. Once
     * the request grows past RT_KEEP, sent bytes are dropped (updropped
     * counts them) and the request can no longer be retried. */
    char *upbytes;
    size_t uplen, upcap, upsent;
    unsigned long long updropped;
    int body_pending; /* the client is still sending the body */
    int body_chunked; /* the body goes upstream chunk-encoded */
    unsigned long long body_bytes; /* body bytes received from the client */
    size_t h2_unconsumed; /* h2 DATA bytes not yet given back to the client's window */
    char reqid[48];
    double t_arrive, t_dispatch;
    struct rt_resp resp; /* body: a queue, resp.body[boff..blen) not yet passed on */
    size_t boff;
    long long resp_clen; /* upstream Content-Length, -1 when none */
    int streaming;   /* the response head went to the client before the body ended */
    int aborted;     /* the upstream failed after the head: cut the client's stream */
    int chunked_out; /* h1: the body goes to the client chunk-encoded */
    int http10;      /* the client spoke HTTP/1.0 */
    int h2_submitted, h2_deferred;
    uint64_t bytes_out; /* response body bytes passed to the client */
    /* access log */
    int log;
    char log_method[16], log_path[257], log_tls[16], log_alpn[12];
    double t_done;
    int refuse; /* the body broke a limit while q was on the ready list: answer this */
    const char *refuse_why;
    int tunnel; /* an Upgrade tunnel (WebSocket...) */
    int tunnel_counted; /* counted in st->tunnels */
    unsigned tunnel_idle_ms;
    char upgrade[64]; /* the client's Upgrade value */
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
    int hdone;   /* response head parsed */
    int fed;     /* http-parser has seen bytes of this response */
    int fast_ka; /* the response was read by up_fast: keep-alive (1/0); -1 otherwise */
    int rpaused; /* not reading: the client side has RT_WINDOW pending */
    uint64_t deadline; /* loop ms when the upstream timeout expires; 0 = none (see up_arm) */
    int sending; /* the request is being written (connected) */
    int tunnel;  /* carrying an Upgrade tunnel */
    char upgrade[64]; /* Upgrade value of a 101 response */
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
    uint64_t deadline; /* loop ms when timer_mode's timeout expires (see conn_arm) */
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
    int h2_blocked; /* h2 output stopped at RT_WINDOW queued on the socket */
    int bpaused;    /* not reading: a request body has RT_WINDOW pending upstream */
    int ending;     /* closing once the queued writes have left */
    int linger;     /* when ending, read and drop what the client still sends */
    struct ssl_st *ssl; /* TLS connections: the OpenSSL session (memory BIOs) */
    struct rt_tls_store *tls_store;
    int tls_up;         /* handshake finished */
    int counted;        /* counted in router.nconns */
    uv_shutdown_t sreq;
    struct rt_req *body_q; /* h1: the request whose body is arriving */
    struct rt_req *tunnel_q; /* the Upgrade tunnel this connection carries */
    int upgrading;           /* an Upgrade request is upstream: not reading */
    char peer[64];
};

struct rt_worker {
    struct router *r;
    unsigned idx;
    uv_loop_t loop;
    uv_tcp_t listener, admin, tls_listener;
    int has_tls, tfd;
    int lclosed, drain_started;
    uv_timer_t drain_timer;
    char tbuf[16384]; /* decrypted bytes */
    int has_admin;
    int lfd, afd;
    uv_async_t async;
    uv_timer_t sweep;
    pthread_t th;
    struct rt_req *ready_head, *ready_tail;
    struct rt_req *freeq; /* freed requests kept for reuse (linked by rnext) */
    unsigned nfreeq;
    uint64_t seq;
    int need_drain; /* own ready list got work: drain at the end of the callback */
    struct rt_conn *dirty; /* h2 conns with frames to send, flushed in the check phase */
    uv_check_t flush;
    char rbuf[65536];
    char *obuf; /* h2_flush gathers a connection's frames here (kept between flushes) */
    size_t obuf_cap;
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
    /* TLS: the certificate store new connections use (swapped on reload). */
    pthread_mutex_t tls_mu;
    struct rt_tls_store *tls;
    char tls_host[256], tls_cert[1024], tls_key[1024], config_path[1024];
    int tport;
    atomic_int reload; /* SIGHUP seen: worker 0 reloads */
    atomic_int draining; /* SIGTERM: finish in-flight work, then stop */
    atomic_int nconns;   /* open client connections (data ports) */
    double drain_deadline;
    struct rt_alog *alog;
};


/* What h2check.c has seen of a request head. */
struct h2_check {
    unsigned flags;
    int hosts;
    long long clen; /* content-length, -1 when none */
};

struct h2_stream {
    struct h2_stream *prev, *next; /* conn's list */
    struct rt_req *q;
    char *hb; /* "name\0value\0" pairs */
    size_t hlen, hcap;
    char *body;
    size_t blen, bcap;
    int too_big;
    struct h2_check chk;
    const char *bad;        /* the head is malformed: why (answered 400) */
    unsigned long long got; /* DATA bytes received */
    int refused; /* answered before its body ended: reset (NO_ERROR) once the answer is out */
};

static inline char *rt_dup(const char *x)
{
    return rt_strndup(x, strlen(x));
}

static inline double rt_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* T_STALL: a response is held back because the client does not read. */
enum { T_NONE, T_HEADER, T_IDLE, T_HANDSHAKE, T_TUNNEL, T_STALL };

/* gw_util.c */
void rt_hist_add(struct rt_hist *h, double ms);
double rt_hist_q(const struct rt_hist *h, double q);
int rt_stream_write(uv_stream_t *s, const char *d, size_t n);
int rt_stream_writev(uv_stream_t *s, const uv_buf_t *bufs, unsigned nb);
const char *rt_reason(int s);

/* dispatch.c */
void rt_state_free(struct rt_state *s);
struct rt_inst *rt_select_inst(struct rt_app *app, double now, const struct rt_inst *avoid);
void rt_ready_push(struct rt_req *q);
void rt_dispatch_locked(struct router *r, double now, uint64_t *wake);
double rt_max_wait_of(size_t flow, void *ud);
void rt_wake_workers(struct router *r, uint64_t wake, struct rt_worker *self);
void rt_maybe_drain(struct rt_worker *w);
void rt_eject(struct router *r, struct rt_inst *in, double now);
void rt_release_slot(struct rt_req *q, int ok, int failed_inst);
void rt_handle_ready(struct rt_req *q);
void rt_drain_ready(struct rt_worker *w);
struct rt_state *rt_state_build(struct router *r, struct router_config *cfg,
                                    struct wlm_error *err);
struct rt_state *rt_state_install(struct router *r, struct rt_state *s, uint64_t *wake);

/* request.c */
void rt_resp_reset(struct rt_resp *rs);
void rt_resp_local(struct rt_req *q, int status, const char *extra, const char *msg);
void req_free(struct rt_req *q);
void rt_worker_free_reqs(struct rt_worker *w);
void conn_unlink(struct rt_conn *c, struct rt_req *q);
void req_complete(struct rt_req *q);
#define RT_BODY_WHOLE (-2LL)
#define RT_BODY_CHUNKED (-1LL)
int rt_build_upstream(struct rt_req *q, const char *method, const char *target, size_t tlen,
                      const char *authority, size_t alen, const struct router_hdr *h, size_t nh,
                      const char *body, size_t blen, long long slen, const char *peer);
struct rt_req *req_new(struct rt_conn *c);
void req_submit(struct rt_req *q, const char *host, size_t hostl, const char *path,
                       size_t plen, const struct router_hdr *h, size_t nh);
void req_abandon(struct rt_req *q);
int req_refuse(struct rt_req *q, int status, const char *why);
int rt_body_append(struct rt_req *q, const char *d, size_t n); /* -1: q may be gone */
void rt_body_end(struct rt_req *q);
void rt_body_check_pause(struct rt_req *q);
void rt_body_resume(struct rt_req *q);
void rt_resp_progress(struct rt_req *q);

/* upstream.c */
void up_close(struct rt_upconn *u);
void up_fail(struct rt_upconn *u, int timeout);
void rt_worker_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b);
void up_start(struct rt_req *q);
int up_abandon(struct rt_req *q);
void rt_up_resume(struct rt_req *q);
void up_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);
int up_pump(struct rt_req *q); /* -1: the upstream failed, q may be gone */
size_t up_pending(const struct rt_req *q);
void up_drained(struct rt_upconn *u);
void up_arm(struct rt_upconn *u, unsigned ms);

/* h1conn.c */
void conn_close(struct rt_conn *c);
void conn_flush(struct rt_conn *c);
void conn_end(struct rt_conn *c);
void conn_stall(struct rt_conn *c, int stalled);
void conn_arm(struct rt_conn *c, int mode, unsigned ms);
void rt_on_accept(uv_stream_t *ls, int status);
void conn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);
void rt_stream_drained(uv_stream_t *s);
int conn_process(struct rt_conn *c, const char *d, size_t len);
int conn_write(struct rt_conn *c, const char *d, size_t n);
int conn_writev(struct rt_conn *c, const uv_buf_t *bufs, unsigned nb);
void conn_handshake_done(struct rt_conn *c);

/* tunnel.c */
void rt_tunnel_start(struct rt_upconn *u, const char *rest, size_t n);
void rt_tunnel_from_client(struct rt_req *q, const char *d, size_t n);
void rt_tunnel_from_upstream(struct rt_upconn *u, ssize_t n, const char *d);
void rt_tunnel_end(struct rt_req *q);
void rt_tunnel_client_drained(struct rt_conn *c);
void rt_tunnel_upstream_drained(struct rt_upconn *u);

/* accesslog.c */
struct rt_alog;
struct rt_alog *rt_alog_open(const char *path, struct wlm_error *err);
void rt_alog_close(struct rt_alog *al);
void rt_alog_request(struct rt_alog *al, const struct rt_req *q);
unsigned long long rt_alog_dropped(const struct rt_alog *al);

/* tls.c */
struct rt_tls_store;
struct rt_tls_store *rt_tls_store_new(const char *cert, const char *key,
                                      const struct router_config *cfg, struct wlm_error *err);
struct rt_tls_store *rt_tls_store_ref(struct rt_tls_store *st);
void rt_tls_store_unref(struct rt_tls_store *st);
char *rt_tls_signature(const char *cert, const char *key, const struct router_config *cfg);
int rt_tls_store_same(const struct rt_tls_store *st, const char *sig);
int rt_tls_conn_start(struct rt_conn *c, struct rt_tls_store *st);
void rt_tls_conn_free(struct rt_conn *c);
int rt_tls_input(struct rt_conn *c, const char *d, size_t n);
int rt_tls_write(struct rt_conn *c, const char *d, size_t n);
void rt_tls_close_notify(struct rt_conn *c);
const char *rt_tls_version(const struct rt_conn *c);
const char *rt_tls_alpn(const struct rt_conn *c);

/* h2session.c */
void h2_stream_free(struct rt_conn *c, struct h2_stream *st);
void h2_respond(struct rt_conn *c, struct rt_req *q);
void h2_flush(struct rt_conn *c);
int h2_start(struct rt_conn *c, const char *settings, size_t slen, struct rt_req *up_req,
                    int head);
int h2_feed(struct rt_conn *c, const char *d, size_t n);
void h2_consume(struct rt_conn *c, struct rt_req *q);

/* h2check.c */
const char *h2_check_field(struct h2_check *k, const uint8_t *n, size_t nl, const uint8_t *v,
                           size_t vl);
const char *h2_check_head(const struct h2_check *k);

/* admin.c */
void admin_handle(struct rt_req *q, const char *method, const char *path, size_t pl,
                         const struct router_hdr *h, size_t nh, const char *body, size_t blen);

#endif
