/*
 * http_client_multi.c - requests over several servers.
 *
 * A URL may name several servers: "http://h1:p1,h2:p2/path" (or
 * "http://h1:p1,http://h2:p2/path"), e.g. the controllers of an HA cluster.
 * The request goes to the server that answered last; on a transport failure
 * (or a 503) it moves to the next, and after a round on all of them it waits
 * (100 ms doubling up to 1 s) and goes round again until timeout_ms. A
 * 307/308 with a Location (a standby naming the leader) is followed, for any
 * URL, up to 4 times. Which server is in use is logged when it changes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "http_client_internal.h"

#define MREQ_MAX_BASES 8

static size_t scheme_len(const char *p);

struct mreq {
    struct wlm_http_client *c;
    char *method, *token, *ctype, *body, *path;
    size_t len;
    char *bases[MREQ_MAX_BASES];
    size_t nbases, cur, tried;
    unsigned timeout_ms, backoff_ms;
    double deadline;
    int hops, list;
    unsigned failed_mask; /* bases that failed in this round */
    uv_timer_t wait;
    wlm_http_client_cb cb;
    void *ud;
    struct mreq *next, *prev; /* the client's multi-requests */
};

static void mreq_link(struct mreq *m)
{
    m->next = m->c->mreqs;
    if (m->next)
        m->next->prev = m;
    m->c->mreqs = m;
}

static void mreq_unlink(struct mreq *m)
{
    if (m->prev)
        m->prev->next = m->next;
    else if (m->c->mreqs == m)
        m->c->mreqs = m->next;
    if (m->next)
        m->next->prev = m->prev;
    m->next = m->prev = NULL;
}

/* The server that answered last, per list (process-wide: the CLI and the
 * agent talk to one cluster). */
static char mreq_pref_list[512], mreq_pref_base[256];

static void mreq_free_handle(uv_handle_t *h)
{
    struct mreq *m = h->data;
    for (size_t i = 0; i < m->nbases; i++)
        free(m->bases[i]);
    free(m->method), free(m->token), free(m->ctype), free(m->body), free(m->path);
    free(m);
}

static void mreq_done(struct mreq *m, const struct wlm_http_response *resp,
                      const struct wlm_error *err)
{
    mreq_unlink(m);
    if (m->cb)
        m->cb(resp, err, m->ud);
    uv_close((uv_handle_t *)&m->wait, mreq_free_handle);
}

static void mreq_send(struct mreq *m, const char *url, unsigned timeout_ms);

void wlm__http_mreqs_cancel(struct wlm_http_client *c)
{
    while (c->mreqs) {
        struct mreq *m = c->mreqs;
        uv_timer_stop(&m->wait);
        struct wlm_http_response none = {0};
        struct wlm_error err;
        wlm_error_set(&err, ECANCELED, "%s %s: client closed", m->method, m->path);
        mreq_done(m, &none, &err);
    }
}

static int mreq_is_list(const struct mreq *m)
{
    return m->nbases > 1;
}

static void mreq_remember(struct mreq *m, const char *list_key)
{
    const char *base = m->bases[m->cur];
    /* A process starts on the first server quietly; a change is logged. */
    if (strcmp(mreq_pref_base, base) != 0 && (mreq_pref_base[0] || m->cur != 0 || m->hops > 0))
        wlm_info("http", "using server", "server=%s", base);
    wlm_strlcpy(mreq_pref_list, list_key, sizeof(mreq_pref_list));
    wlm_strlcpy(mreq_pref_base, base, sizeof(mreq_pref_base));
}

static void mreq_list_key(const struct mreq *m, char *out, size_t n)
{
    out[0] = 0;
    for (size_t i = 0; i < m->nbases; i++) {
        size_t l = strlen(out);
        snprintf(out + l, n - l, "%s%s", i ? "," : "", m->bases[i]);
    }
}

static void mreq_next(struct mreq *m);

static void mreq_wait_done(uv_timer_t *t)
{
    struct mreq *m = t->data;
    m->tried = 0;
    mreq_next(m);
}

static unsigned mreq_attempt_ms(const struct mreq *m)
{
    if (!m->timeout_ms)
        return 0;
    double left = (m->deadline - wlm_now_mono()) * 1000;
    size_t untried = m->nbases - m->tried;
    /* A server that accepts and never answers (stopped) must not eat the
     * whole budget: split what is left over the servers not tried yet. */
    double per = untried > 1 ? left / (double)untried : left;
    if (per < 300 && left > 300)
        per = 300;
    return per < 1 ? 1 : (unsigned)per;
}

static void mreq_next(struct mreq *m)
{
    char *url = wlm_asprintf("%s%s", m->bases[m->cur], m->path);
    m->tried++;
    mreq_send(m, url, mreq_attempt_ms(m));
    free(url);
}

/* Log a server change at most once per server and 10 s (agents retry often). */
static void mreq_log(int warn, const char *what, const char *server, const char *detail)
{
    static char last[256];
    static double last_t;
    double now = wlm_now_mono();
    if (strcmp(last, server) == 0 && now - last_t < 10)
        return;
    wlm_strlcpy(last, server, sizeof(last));
    last_t = now;
    if (warn)
        wlm_warn("http", what, "server=%s detail=\"%s\"", server, detail);
    else
        wlm_info("http", what, "server=%s", server);
}

static void mreq_cb(const struct wlm_http_response *resp, const struct wlm_error *err, void *ud)
{
    struct mreq *m = ud;
    char key[512];
    mreq_list_key(m, key, sizeof(key));
    int failed = err && err->code;
    if (m->c->closing) {
        mreq_done(m, resp, err);
        return;
    }
    if (failed && m->cur < 32)
        m->failed_mask |= 1u << m->cur;
    const char *loc = !failed && (resp->status == 307 || resp->status == 308)
                          ? wlm_http_response_header(resp, "Location")
                          : NULL;
    int dead_redirect = 0;
    if (loc && m->hops < 4 && scheme_len(loc)) {
        /* A standby names the leader: go there, and prefer it from now on. */
        const char *auth_end = strchr(loc + scheme_len(loc), '/');
        size_t blen = auth_end ? (size_t)(auth_end - loc) : strlen(loc);
        size_t i = 0;
        for (; i < m->nbases; i++)
            if (strlen(m->bases[i]) == blen && strncmp(m->bases[i], loc, blen) == 0)
                break;
        if (i == m->nbases && m->nbases < MREQ_MAX_BASES)
            m->bases[m->nbases++] = strndup(loc, blen);
        if (i < 32 && (m->failed_mask & (1u << i))) {
            /* It names a leader that just failed us: it has not noticed yet
             * (its lease still runs). Wait for the election instead. */
            dead_redirect = 1;
        } else {
            m->hops++;
            if (i < m->nbases)
                m->cur = i;
            mreq_log(0, "redirected to the leader", m->bases[m->cur], NULL);
            mreq_send(m, loc, mreq_attempt_ms(m));
            return;
        }
    }
    int retry = mreq_is_list(m) && (failed || resp->status == 503 || dead_redirect);
    if (retry && m->timeout_ms && wlm_now_mono() < m->deadline) {
        mreq_log(1, "server unavailable, trying the next", m->bases[m->cur],
                 failed          ? err->msg
                 : dead_redirect ? "redirects to a leader that is down"
                                 : "503");
        m->cur = (m->cur + 1) % m->nbases;
        if (m->tried < m->nbases) {
            mreq_next(m);
            return;
        }
        unsigned wait = m->backoff_ms;
        m->backoff_ms = m->backoff_ms * 2 > 1000 ? 1000 : m->backoff_ms * 2;
        double left = (m->deadline - wlm_now_mono()) * 1000;
        if (left > wait) {
            m->failed_mask = 0; /* a new round: anyone may have come back */
            uv_timer_start(&m->wait, mreq_wait_done, wait, 0);
            return;
        }
    }
    if (!failed && resp->status != 503 && !dead_redirect && (m->list || m->hops > 0))
        mreq_remember(m, key);
    mreq_done(m, resp, err);
}

static void mreq_send(struct mreq *m, const char *url, unsigned timeout_ms)
{
    struct wlm_error err = {0};
    if (wlm__http_client_request(m->c, m->method, url, m->token, m->ctype, m->body, m->len,
                                 timeout_ms, mreq_cb, m, &err)) {
        struct wlm_http_response none = {0};
        mreq_done(m, &none, &err);
    }
}

static size_t scheme_len(const char *p)
{
    return strncmp(p, "http://", 7) == 0 ? 7 : strncmp(p, "https://", 8) == 0 ? 8 : 0;
}

/* Split "http://a:1,b:2/path" or "http://a:1,http://b:2/path" (or https)
 * into bases and the path. Returns 0 when the URL names one server. */
static int split_bases(const char *url, struct mreq *m)
{
    size_t sl = url ? scheme_len(url) : 0;
    if (!sl)
        return 0;
    const char *p = url + sl;
    const char *slash = strchr(p, '/');
    const char *comma = strchr(p, ',');
    if (!comma || (slash && slash < comma))
        return 0;
    const char *item = p;
    size_t isl = sl;
    const char *ischeme = url;
    for (;;) {
        const char *end = item;
        while (*end && *end != ',' && *end != '/')
            end++;
        if (m->nbases < MREQ_MAX_BASES)
            m->bases[m->nbases++] =
                wlm_asprintf("%.*s%.*s", (int)isl, ischeme, (int)(end - item), item);
        if (*end == ',') {
            item = end + 1;
            size_t l = scheme_len(item);
            if (l) {
                ischeme = item;
                isl = l;
                item += l;
            }
            continue;
        }
        m->path = wlm_strdup(*end ? end : "/");
        break;
    }
    return m->nbases > 1 ? 1 : 0;
}

int wlm__http_multi_request(struct wlm_http_client *c, const char *method, const char *url,
                            const char *token, const char *content_type, const void *body,
                            size_t len, unsigned timeout_ms, wlm_http_client_cb cb, void *ud,
                            struct wlm_error *err)
{
    if (!c || !method || !method[0] || !url)
        return wlm__http_client_request(c, method, url, token, content_type, body, len, timeout_ms,
                                        cb, ud, err);
    struct mreq *m = calloc(1, sizeof(*m));
    if (!m)
        return wlm_error_set(err, ENOMEM, "out of memory");
    int list = split_bases(url, m);
    m->list = list;
    if (!list) {
        for (size_t i = 0; i < m->nbases; i++)
            free(m->bases[i]);
        m->nbases = 0;
        free(m->path);
        m->path = NULL;
        /* One server: as before, plus following a redirect. */
        m->bases[m->nbases++] = wlm_strdup(url);
        m->path = wlm_strdup("");
    }
    m->c = c;
    m->method = wlm_strdup(method);
    m->token = token ? wlm_strdup(token) : NULL;
    m->ctype = content_type ? wlm_strdup(content_type) : NULL;
    m->body = len ? malloc(len) : NULL;
    if (len && m->body)
        memcpy(m->body, body, len);
    m->len = len;
    m->timeout_ms = timeout_ms;
    m->deadline = wlm_now_mono() + timeout_ms / 1000.0;
    m->backoff_ms = 100;
    m->cb = cb;
    m->ud = ud;
    if (list) {
        char key[512];
        mreq_list_key(m, key, sizeof(key));
        if (strcmp(key, mreq_pref_list) == 0)
            for (size_t i = 0; i < m->nbases; i++)
                if (strcmp(m->bases[i], mreq_pref_base) == 0)
                    m->cur = i;
    }
    char *first = wlm_asprintf("%s%s", m->bases[m->cur], m->path);
    uv_timer_init(c->loop, &m->wait);
    m->wait.data = m;
    m->tried = 1;
    int rc = wlm__http_client_request(c, method, first, token, content_type, body, len,
                                      list ? mreq_attempt_ms(m) : timeout_ms, mreq_cb, m, err);
    free(first);
    if (rc) {
        uv_close((uv_handle_t *)&m->wait, mreq_free_handle);
        return rc;
    }
    mreq_link(m);
    return 0;
}
