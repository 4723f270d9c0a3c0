/*
 * etcd.c - blocking client of etcd's v3 JSON gateway over HTTP/1.1.
 *
 * One keep-alive connection to the endpoint in use; a request that fails in
 * transport is retried once on the same endpoint (a stale keep-alive) and
 * then on the next endpoints of the list. Responses may be sized or chunked.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "etcd.h"

#define ETCD_MAX_EP 16

struct wlm_etcd {
    char hosts[ETCD_MAX_EP][64];
    int ports[ETCD_MAX_EP];
    char names[ETCD_MAX_EP][80];
    size_t nep, cur;
    int fd;
    unsigned timeout_ms;
    char *buf; /* receive buffer */
    size_t blen, bcap;
    /* After no member answered, calls fail at once for a second (the
     * writes of one request do not each wait out the timeouts). */
    double down_until;
    char down_why[400];
};

/* ---------------------------------------------------------------- base64 */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *wlm_base64_encode(const void *data, size_t len)
{
    const unsigned char *p = data;
    char *out = malloc(4 * ((len + 2) / 3) + 1), *o = out;
    if (!out)
        return NULL;
    size_t i = 0;
    for (; i + 2 < len; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        *o++ = b64[v >> 18], *o++ = b64[(v >> 12) & 63], *o++ = b64[(v >> 6) & 63],
        *o++ = b64[v & 63];
    }
    if (i < len) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < len ? (unsigned)p[i + 1] << 8 : 0);
        *o++ = b64[v >> 18], *o++ = b64[(v >> 12) & 63];
        *o++ = i + 1 < len ? b64[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    *o = 0;
    return out;
}

static int b64val(char c)
{
    const char *p = c ? strchr(b64, c) : NULL;
    return p ? (int)(p - b64) : -1;
}

char *wlm_base64_decode(const char *text, size_t *len)
{
    size_t n = strlen(text);
    char *out = malloc(n / 4 * 3 + 4);
    if (!out || n % 4) {
        free(out);
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int a = b64val(text[i]), b = b64val(text[i + 1]);
        int c = text[i + 2] == '=' ? 0 : b64val(text[i + 2]);
        int d = text[i + 3] == '=' ? 0 : b64val(text[i + 3]);
        if (a < 0 || b < 0 || c < 0 || d < 0) {
            free(out);
            return NULL;
        }
        unsigned v = (unsigned)a << 18 | (unsigned)b << 12 | (unsigned)c << 6 | (unsigned)d;
        out[o++] = (char)(v >> 16);
        if (text[i + 2] != '=')
            out[o++] = (char)(v >> 8);
        if (text[i + 3] != '=')
            out[o++] = (char)v;
    }
    out[o] = 0;
    if (len)
        *len = o;
    return out;
}

/* ---------------------------------------------------------------- connection */

int wlm_etcd_open(const char *endpoints, unsigned timeout_ms, struct wlm_etcd **out,
                  struct wlm_error *err)
{
    *out = NULL;
    struct wlm_etcd *e = calloc(1, sizeof(*e));
    if (!e)
        return wlm_error_set(err, ENOMEM, "out of memory");
    e->fd = -1;
    e->timeout_ms = timeout_ms ? timeout_ms : 2000;
    const char *p = endpoints;
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char item[128];
        if (n >= sizeof(item) || e->nep == ETCD_MAX_EP) {
            free(e);
            return wlm_error_setf(err, WLM_EINVAL, "store", "store endpoint list '%s' is too long",
                                  endpoints);
        }
        memcpy(item, p, n);
        item[n] = 0;
        const char *hp = strncmp(item, "http://", 7) == 0 ? item + 7 : item;
        const char *colon = strrchr(hp, ':');
        char *stop = NULL;
        long port = colon ? strtol(colon + 1, &stop, 10) : 0;
        if (!colon || colon == hp || (size_t)(colon - hp) >= sizeof(e->hosts[0]) || !stop ||
            (*stop && *stop != '/') || port <= 0 || port > 65535) {
            free(e);
            return wlm_error_setf(err, WLM_EINVAL, "store",
                                  "store endpoint '%s' is not HOST:PORT", item);
        }
        memcpy(e->hosts[e->nep], hp, (size_t)(colon - hp));
        e->hosts[e->nep][colon - hp] = 0;
        e->ports[e->nep] = (int)port;
        snprintf(e->names[e->nep], sizeof(e->names[0]), "%.*s:%ld", (int)(colon - hp), hp, port);
        e->nep++;
        p = end ? end + 1 : NULL;
    }
    if (e->nep == 0) {
        free(e);
        return wlm_error_setf(err, WLM_EINVAL, "store", "store endpoint list is empty");
    }
    *out = e;
    return 0;
}

static void disconnect(struct wlm_etcd *e)
{
    if (e->fd >= 0)
        close(e->fd);
    e->fd = -1;
    e->blen = 0;
    if (e->buf)
        e->buf[0] = 0; /* the parser looks for text in it: no stale bytes */
}

void wlm_etcd_close(struct wlm_etcd *e)
{
    if (!e)
        return;
    disconnect(e);
    free(e->buf);
    free(e);
}

const char *wlm_etcd_endpoint(const struct wlm_etcd *e) { return e->names[e->cur]; }
size_t wlm_etcd_nendpoints(const struct wlm_etcd *e) { return e->nep; }

const char *wlm_etcd_endpoint_host(const struct wlm_etcd *e, size_t i, int *port)
{
    *port = e->ports[i % e->nep];
    return e->hosts[i % e->nep];
}

static int wait_fd(int fd, short ev, double deadline)
{
    for (;;) {
        int ms = (int)((deadline - wlm_now_mono()) * 1000);
        if (ms <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {fd, ev, 0};
        int r = poll(&p, 1, ms);
        if (r > 0)
            return 0;
        if (r == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

static int connect_to(struct wlm_etcd *e, double deadline)
{
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char port[16];
    snprintf(port, sizeof(port), "%d", e->ports[e->cur]);
    if (getaddrinfo(e->hosts[e->cur], port, &hints, &ai) || !ai)
        return -EHOSTUNREACH;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        freeaddrinfo(ai);
        return -errno;
    }
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (rc && errno != EINPROGRESS) {
        rc = -errno;
        close(fd);
        return rc;
    }
    if (rc) {
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if ((rc = wait_fd(fd, POLLOUT, deadline)) ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) || soerr) {
            close(fd);
            return rc ? rc : -(soerr ? soerr : EIO);
        }
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    e->fd = fd;
    e->blen = 0;
    if (e->buf)
        e->buf[0] = 0;
    return 0;
}

static int send_all(struct wlm_etcd *e, const char *p, size_t n, double deadline)
{
    while (n > 0) {
        ssize_t w = send(e->fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(e->fd, POLLOUT, deadline);
            if (rc)
                return rc;
            continue;
        }
        return w < 0 ? -errno : -EPIPE;
    }
    return 0;
}

/* Read more bytes into the buffer; 0, or <0 (EOF = -ECONNRESET). */
static int fill(struct wlm_etcd *e, double deadline)
{
    if (e->bcap - e->blen < 4096) {
        size_t nc = e->bcap ? e->bcap * 2 : 16384;
        char *nb = realloc(e->buf, nc + 1);
        if (!nb)
            return -ENOMEM;
        e->buf = nb;
        e->bcap = nc;
    }
    for (;;) {
        ssize_t r = recv(e->fd, e->buf + e->blen, e->bcap - e->blen, 0);
        if (r > 0) {
            e->blen += (size_t)r;
            e->buf[e->blen] = 0;
            return 0;
        }
        if (r == 0)
            return -ECONNRESET;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int rc = wait_fd(e->fd, POLLIN, deadline);
            if (rc)
                return rc;
            continue;
        }
        return -errno;
    }
}

static void consume(struct wlm_etcd *e, size_t n)
{
    memmove(e->buf, e->buf + n, e->blen - n);
    e->blen -= n;
    if (e->buf)
        e->buf[e->blen] = 0;
}

/* Read one response: status and body (malloc'd). */
static int read_response(struct wlm_etcd *e, double deadline, int *status, char **body,
                         size_t *blen)
{
    char *hend;
    int rc;
    while (!e->buf || !(hend = strstr(e->buf, "\r\n\r\n")))
        if ((rc = fill(e, deadline)))
            return rc;
    size_t hlen = (size_t)(hend - e->buf) + 4;
    if (sscanf(e->buf, "HTTP/1.%*d %d", status) != 1)
        return -EPROTO;
    long long clen = -1;
    int chunked = 0, close_after = 0;
    for (char *line = strstr(e->buf, "\r\n") + 2; line < hend; line = strstr(line, "\r\n") + 2) {
        if (strncasecmp(line, "Content-Length:", 15) == 0)
            clen = atoll(line + 15);
        else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0 && strstr(line, "chunked") &&
                 strstr(line, "chunked") < strstr(line, "\r\n"))
            chunked = 1;
        else if (strncasecmp(line, "Connection:", 11) == 0 && strstr(line, "close") &&
                 strstr(line, "close") < strstr(line, "\r\n"))
            close_after = 1;
    }
    consume(e, hlen);
    char *out = NULL;
    size_t olen = 0;
    if (!chunked && clen < 0) {
        /* Close-delimited: the body runs to the end of the connection. */
        while ((rc = fill(e, deadline)) == 0)
            ;
        if (rc != -ECONNRESET)
            return rc;
        clen = (long long)e->blen;
        close_after = 1;
    }
    if (!chunked) {
        while (e->blen < (size_t)clen)
            if ((rc = fill(e, deadline)))
                return rc;
        out = malloc((size_t)clen + 1);
        if (!out)
            return -ENOMEM;
        memcpy(out, e->buf, (size_t)clen);
        olen = (size_t)clen;
        consume(e, (size_t)clen);
    } else {
        for (;;) {
            char *le;
            while (!e->buf || !(le = strstr(e->buf, "\r\n")))
                if ((rc = fill(e, deadline))) {
                    free(out);
                    return rc;
                }
            size_t csz = strtoul(e->buf, NULL, 16);
            size_t line = (size_t)(le - e->buf) + 2; /* fill() may move the buffer */
            size_t need = line + csz + 2;
            while (e->blen < need)
                if ((rc = fill(e, deadline))) {
                    free(out);
                    return rc;
                }
            if (csz == 0) {
                /* The last chunk, then trailer lines up to an empty one
                 * (etcd's error answers carry Grpc-Trailer-Content-Type). */
                consume(e, line);
                for (;;) {
                    char *te;
                    while (!(te = strstr(e->buf, "\r\n")))
                        if ((rc = fill(e, deadline))) {
                            free(out);
                            return rc;
                        }
                    size_t tl = (size_t)(te - e->buf) + 2;
                    consume(e, tl);
                    if (tl == 2)
                        break;
                }
                break;
            }
            char *no = realloc(out, olen + csz + 1);
            if (!no) {
                free(out);
                return -ENOMEM;
            }
            out = no;
            memcpy(out + olen, e->buf + line, csz);
            olen += csz;
            consume(e, need);
        }
        if (!out && !(out = malloc(1)))
            return -ENOMEM;
    }
    out[olen] = 0;
    *body = out;
    *blen = olen;
    if (close_after)
        disconnect(e);
    return 0;
}

static int exchange(struct wlm_etcd *e, const char *path, const char *body, size_t len,
                    int *status, char **resp, size_t *rlen)
{
    double deadline = wlm_now_mono() + e->timeout_ms / 1000.0;
    int rc;
    if (e->fd < 0 && (rc = connect_to(e, deadline)))
        return rc;
    char head[512];
    int hn = snprintf(head, sizeof(head),
                      "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      path, e->names[e->cur], len);
    if ((rc = send_all(e, head, (size_t)hn, deadline)) || (rc = send_all(e, body, len, deadline)) ||
        (rc = read_response(e, deadline, status, resp, rlen))) {
        disconnect(e);
        return rc;
    }
    return 0;
}

int wlm_etcd_call(struct wlm_etcd *e, const char *path, json_t *req, json_t **resp,
                  struct wlm_error *err)
{
    *resp = NULL;
    if (wlm_now_mono() < e->down_until) {
        json_decref(req);
        return wlm_error_set(err, WLM_EUNAVAIL, "etcd unavailable (%s)", e->down_why);
    }
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!text)
        return wlm_error_set(err, ENOMEM, "out of memory");
    int status = 0, rc = 0;
    char *body = NULL;
    size_t blen = 0;
    char why[400] = "";
    size_t wl = 0;
    /* Each endpoint once (the one in use twice: its keep-alive may be stale). */
    for (size_t attempt = 0; attempt <= e->nep; attempt++) {
        if (attempt > 0)
            disconnect(e);
        /* The second try stays on the endpoint (a stale keep-alive) unless it
         * timed out: then it is stopped or cut off from its cluster. */
        if (attempt == 1 && rc == -ETIMEDOUT) {
            if (e->nep == 1)
                break;
            attempt++;
        }
        if (attempt > 1)
            e->cur = (e->cur + 1) % e->nep;
        rc = exchange(e, path, text, strlen(text), &status, &body, &blen);
        if (rc) {
            if (wl < sizeof(why))
                wl += (size_t)snprintf(why + wl, sizeof(why) - wl, "%s%s: %s", wl ? "; " : "",
                                       e->names[e->cur],
                                       rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
            continue;
        }
        /* 503 / "no leader": try another member, it may have quorum. */
        if (status == 503 || (status >= 500 && strstr(body, "leader"))) {
            if (wl < sizeof(why))
                wl += (size_t)snprintf(why + wl, sizeof(why) - wl, "%s%s: %.80s", wl ? "; " : "",
                                       e->names[e->cur], body);
            free(body);
            body = NULL;
            disconnect(e);
            rc = -EAGAIN;
            continue;
        }
        break;
    }
    free(text);
    if (rc) {
        e->down_until = wlm_now_mono() + 1.0;
        wlm_strlcpy(e->down_why, why, sizeof(e->down_why));
        return wlm_error_set(err, WLM_EUNAVAIL, "etcd unavailable (%s)", why);
    }
    json_error_t je;
    json_t *v = json_loadb(body, blen, 0, &je);
    if (status != 200 || !v) {
        /* etcd answers errors as {"error": "...", "code": N}. */
        const char *msg = v ? json_string_value(json_object_get(v, "error")) : NULL;
        int unavailable = msg && (strstr(msg, "timed out") || strstr(msg, "leader") ||
                                  strstr(msg, "unavailable"));
        rc = wlm_error_set(err, unavailable ? WLM_EUNAVAIL : WLM_EIO, "etcd %s: HTTP %d: %.200s",
                           path, status, msg ? msg : body);
        json_decref(v);
        free(body);
        return rc;
    }
    free(body);
    *resp = v;
    return 0;
}

/* ---------------------------------------------------------------- kv */

static int64_t jint(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    return json_is_integer(v) ? json_integer_value(v) : 0;
}

static json_t *b64j(const void *data, size_t len)
{
    char *s = wlm_base64_encode(data, len);
    json_t *v = json_string(s ? s : "");
    free(s);
    return v;
}

/* Smallest key greater than every key with this prefix. */
static char *prefix_end(const char *key)
{
    char *end = wlm_strdup(key);
    size_t n = strlen(end);
    while (n > 0) {
        if ((unsigned char)end[n - 1] < 0xff) {
            end[n - 1]++;
            end[n] = 0;
            return end;
        }
        n--;
    }
    end[0] = 0; /* whole key space */
    return end;
}

static int parse_kvs(const json_t *arr, struct wlm_etcd_kv **kvs, size_t *n)
{
    size_t cnt = json_array_size(arr);
    *kvs = calloc(cnt ? cnt : 1, sizeof(**kvs));
    *n = 0;
    if (!*kvs)
        return -ENOMEM;
    for (size_t i = 0; i < cnt; i++) {
        const json_t *kv = json_array_get(arr, i);
        struct wlm_etcd_kv *o = &(*kvs)[*n];
        const char *k = json_string_value(json_object_get(kv, "key"));
        const char *v = json_string_value(json_object_get(kv, "value"));
        o->key = wlm_base64_decode(k ? k : "", NULL);
        o->value = wlm_base64_decode(v ? v : "", &o->vlen);
        if (!o->key || !o->value) {
            free(o->key);
            free(o->value);
            continue;
        }
        o->create_rev = jint(kv, "create_revision");
        o->mod_rev = jint(kv, "mod_revision");
        o->lease = jint(kv, "lease");
        (*n)++;
    }
    return 0;
}

int wlm_etcd_range(struct wlm_etcd *e, const char *key, int prefix, struct wlm_etcd_kv **kvs,
                   size_t *n, int64_t *rev, struct wlm_error *err)
{
    *kvs = NULL;
    *n = 0;
    json_t *req = json_object();
    json_object_set_new(req, "key", b64j(key, strlen(key)));
    if (prefix) {
        char *end = prefix_end(key);
        json_object_set_new(req, "range_end", end[0] ? b64j(end, strlen(end)) : b64j("\0", 1));
        free(end);
    }
    json_t *resp;
    int rc = wlm_etcd_call(e, "/v3/kv/range", req, &resp, err);
    if (rc)
        return rc;
    if (rev)
        *rev = jint(json_object_get(resp, "header"), "revision");
    rc = parse_kvs(json_object_get(resp, "kvs"), kvs, n);
    json_decref(resp);
    return rc ? wlm_error_set(err, ENOMEM, "out of memory") : 0;
}

void wlm_etcd_kvs_free(struct wlm_etcd_kv *kvs, size_t n)
{
    for (size_t i = 0; kvs && i < n; i++) {
        free(kvs[i].key);
        free(kvs[i].value);
    }
    free(kvs);
}

void wlm_etcd_txn_init(struct wlm_etcd_txn *t)
{
    t->compare = json_array();
    t->success = json_array();
    t->nops = 0;
}

void wlm_etcd_txn_fini(struct wlm_etcd_txn *t)
{
    json_decref(t->compare);
    json_decref(t->success);
    t->compare = t->success = NULL;
    t->nops = 0;
}

void wlm_etcd_txn_put(struct wlm_etcd_txn *t, const char *key, const void *value, size_t len,
                      int64_t lease)
{
    json_t *put = json_object();
    json_object_set_new(put, "key", b64j(key, strlen(key)));
    json_object_set_new(put, "value", b64j(value, len));
    if (lease) {
        char l[32];
        snprintf(l, sizeof(l), "%lld", (long long)lease);
        json_object_set_new(put, "lease", json_string(l));
    }
    json_array_append_new(t->success, json_pack("{s:o}", "request_put", put));
    t->nops++;
}

void wlm_etcd_txn_del(struct wlm_etcd_txn *t, const char *key, int prefix)
{
    json_t *del = json_object();
    json_object_set_new(del, "key", b64j(key, strlen(key)));
    if (prefix) {
        char *end = prefix_end(key);
        json_object_set_new(del, "range_end", b64j(end, strlen(end)));
        free(end);
    }
    json_array_append_new(t->success, json_pack("{s:o}", "request_delete_range", del));
    t->nops++;
}

void wlm_etcd_txn_cmp_create(struct wlm_etcd_txn *t, const char *key, int64_t rev)
{
    char r[32];
    snprintf(r, sizeof(r), "%lld", (long long)rev);
    json_array_append_new(t->compare,
                          json_pack("{s:o,s:s,s:s,s:s}", "key", b64j(key, strlen(key)), "target",
                                    "CREATE", "create_revision", r, "result", "EQUAL"));
}

int wlm_etcd_txn_commit(struct wlm_etcd *e, struct wlm_etcd_txn *t, int *ok, int64_t *rev,
                        struct wlm_error *err)
{
    json_t *req = json_pack("{s:O,s:O}", "compare", t->compare, "success", t->success);
    wlm_etcd_txn_fini(t);
    wlm_etcd_txn_init(t);
    json_t *resp;
    *ok = 0;
    int rc = wlm_etcd_call(e, "/v3/kv/txn", req, &resp, err);
    if (rc)
        return rc;
    *ok = json_is_true(json_object_get(resp, "succeeded"));
    if (rev)
        *rev = jint(json_object_get(resp, "header"), "revision");
    json_decref(resp);
    return 0;
}

/* ---------------------------------------------------------------- leases */

int wlm_etcd_lease_grant(struct wlm_etcd *e, int ttl_s, int64_t *id, struct wlm_error *err)
{
    json_t *resp;
    int rc = wlm_etcd_call(e, "/v3/lease/grant", json_pack("{s:i}", "TTL", ttl_s), &resp, err);
    if (rc)
        return rc;
    *id = jint(resp, "ID");
    json_decref(resp);
    if (*id == 0)
        return wlm_error_set(err, WLM_EIO, "etcd lease grant: no lease id in the answer");
    return 0;
}

int wlm_etcd_lease_keepalive(struct wlm_etcd *e, int64_t id, int64_t *ttl, struct wlm_error *err)
{
    char l[32];
    snprintf(l, sizeof(l), "%lld", (long long)id);
    json_t *resp;
    int rc = wlm_etcd_call(e, "/v3/lease/keepalive", json_pack("{s:s}", "ID", l), &resp, err);
    if (rc)
        return rc;
    /* A streamed answer: {"result": {...}} (an "error" member when it failed). */
    json_t *res = json_object_get(resp, "result");
    if (!res) {
        const char *msg = json_string_value(json_object_get(json_object_get(resp, "error"), "message"));
        rc = wlm_error_set(err, WLM_EUNAVAIL, "etcd keepalive: %s", msg ? msg : "no result");
        json_decref(resp);
        return rc;
    }
    *ttl = jint(res, "TTL");
    json_decref(resp);
    return 0;
}

int wlm_etcd_lease_revoke(struct wlm_etcd *e, int64_t id, struct wlm_error *err)
{
    char l[32];
    snprintf(l, sizeof(l), "%lld", (long long)id);
    json_t *resp;
    int rc = wlm_etcd_call(e, "/v3/lease/revoke", json_pack("{s:s}", "ID", l), &resp, err);
    json_decref(resp);
    return rc;
}
