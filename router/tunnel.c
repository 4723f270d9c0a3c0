/* tunnel.c - Upgrade (WebSocket, ...) pass-through on HTTP/1.1.
 *
 * The handshake is an ordinary request: classified, queued, dispatched
 * under the concurrency limit, sent upstream with its Connection/Upgrade
 * headers. When the upstream answers 101, the slot is released (a tunnel is
 * not held against the request limit; apps[].max_tunnels bounds tunnels per
 * application instead), the 101 goes to the client, and from then on bytes
 * are copied both ways. Each direction stops reading when RT_WINDOW bytes
 * wait on the other socket. A tunnel idle for apps[].tunnel_idle_ms in both
 * directions is closed; either side closing closes the other once what was
 * written has left. Per flow: tunnels open, tunnels total, bytes each way. */
#include <strings.h>

#include "gw.h"

static void tunnel_timeout(uv_timer_t *t)
{
    struct rt_conn *c = t->data;
    struct rt_worker *w = c->w;
    wlm_debug("router", "tunnel idle", "peer=%s", c->peer);
    conn_close(c);
    rt_maybe_drain(w);
}

static void tunnel_touch(struct rt_conn *c, const struct rt_req *q)
{
    uv_timer_start(&c->timer, tunnel_timeout, q->tunnel_idle_ms, 0);
}

void rt_tunnel_start(struct rt_upconn *u, const char *rest, size_t n)
{
    struct rt_req *q = u->req;
    struct rt_conn *c = q->conn;
    struct router *r = q->w->r;
    uv_timer_stop(&u->timer);
    u->deadline = 0;
    rt_release_slot(q, 1, 0); /* the handshake is done: the slot goes back */
    pthread_mutex_lock(&r->mu);
    q->st->tunnels_total++;
    pthread_mutex_unlock(&r->mu);
    u->tunnel = 1;
    q->state = Q_TUNNEL;
    /* The 101 with its Connection/Upgrade, then what followed it. */
    char *b = NULL;
    size_t len = 0, cap = 0;
    rt_buf_str(&b, &len, &cap, "HTTP/1.1 101 Switching Protocols\r\n");
    rt_buf_add(&b, &len, &cap, q->resp.hb ? q->resp.hb : "", q->resp.hlen);
    rt_buf_str(&b, &len, &cap, "Connection: Upgrade\r\nUpgrade: ");
    rt_buf_str(&b, &len, &cap, u->upgrade[0] ? u->upgrade : q->upgrade);
    rt_buf_add(&b, &len, &cap, "\r\n\r\n", 4);
    if (n)
        rt_buf_add(&b, &len, &cap, rest, n);
    q->bytes_out += n;
    c->tunnel_q = q;
    c->upgrading = 0;
    int rc = conn_write(c, b, len);
    free(b);
    if (rc) {
        conn_close(c);
        return;
    }
    c->timer_mode = T_TUNNEL;
    tunnel_touch(c, q);
    if (!c->bpaused && !c->paused)
        uv_read_start((uv_stream_t *)&c->tcp, rt_worker_alloc, conn_read);
}

void rt_tunnel_from_client(struct rt_req *q, const char *d, size_t n)
{
    struct rt_conn *c = q->conn;
    struct rt_upconn *u = q->up;
    if (!u || u->closing)
        return;
    if (rt_stream_write((uv_stream_t *)&u->tcp, d, n)) {
        conn_end(c);
        return;
    }
    q->body_bytes += n;
    tunnel_touch(c, q);
    if (uv_stream_get_write_queue_size((uv_stream_t *)&u->tcp) > RT_WINDOW && !c->bpaused) {
        c->bpaused = 1;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

void rt_tunnel_from_upstream(struct rt_upconn *u, ssize_t n, const char *d)
{
    struct rt_req *q = u->req;
    struct rt_conn *c = q ? q->conn : NULL;
    if (!c || c->closing) {
        up_close(u);
        return;
    }
    if (n < 0) { /* the upstream closed: the client gets what was sent, then the close */
        conn_end(c);
        return;
    }
    if (conn_write(c, d, (size_t)n)) {
        conn_close(c);
        return;
    }
    q->bytes_out += (uint64_t)n;
    tunnel_touch(c, q);
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > RT_WINDOW && !u->rpaused) {
        u->rpaused = 1;
        uv_read_stop((uv_stream_t *)&u->tcp);
    }
}

void rt_tunnel_client_drained(struct rt_conn *c)
{
    struct rt_req *q = c->tunnel_q;
    struct rt_upconn *u = q->up;
    if (u && u->rpaused && !u->closing) {
        u->rpaused = 0;
        uv_read_start((uv_stream_t *)&u->tcp, rt_worker_alloc, up_read);
    }
}

void rt_tunnel_upstream_drained(struct rt_upconn *u)
{
    struct rt_req *q = u->req;
    struct rt_conn *c = q ? q->conn : NULL;
    if (c && c->bpaused && !c->closing && !c->ending) {
        c->bpaused = 0;
        uv_read_start((uv_stream_t *)&c->tcp, rt_worker_alloc, conn_read);
    }
}

/* The client side is gone (closed, idle, stopped): close the upstream,
 * account the bytes, log, free. */
void rt_tunnel_end(struct rt_req *q)
{
    struct router *r = q->w->r;
    struct rt_upconn *u = q->up;
    q->up = NULL;
    if (u) {
        u->req = NULL;
        up_close(u);
    }
    pthread_mutex_lock(&r->mu);
    q->st->tunnel_bytes_in += q->body_bytes;
    q->st->tunnel_bytes_out += q->bytes_out;
    pthread_mutex_unlock(&r->mu);
    req_free(q);
}
