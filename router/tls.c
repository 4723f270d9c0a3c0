/* tls.c - TLS termination on OpenSSL 3: certificate stores (default +
 * per-application by SNI), ALPN (h2, http/1.1), and the per-connection
 * record layer over memory BIOs (the socket stays libuv's).
 *
 * A store is a reference-counted set of SSL_CTX built from files; a reload
 * (SIGHUP, PUT /admin/config) builds a whole new store first and swaps it
 * in only when every file loaded, so a bad certificate changes nothing and
 * is named in the error. Connections keep the store they started with, so
 * open connections are not disturbed. The SSL_CTX objects are shared by the
 * workers (OpenSSL 3 contexts are thread-safe once set up): TLS work runs in
 * whichever worker accepted the connection, and session tickets issued by
 * one worker resume on another. */
#include <strings.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "gw.h"
#include "wlm_tls.h"

struct rt_tls_sni {
    char *host; /* lower case; "*.example.com" matches one label */
    SSL_CTX *ctx;
};

struct rt_tls_store {
    atomic_int refs;
    SSL_CTX *def;
    struct rt_tls_sni *sni;
    size_t nsni;
    char *sig; /* what it was built from: files (identity, size, mtime) + SNI names */
};

/* The TLS policy (versions, suites, options), certificate loading and the
 * memory-BIO sessions are common/tls.c's, shared with the control plane. */
#define ssl_reason wlm_tls_reason

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    static const unsigned char prefs[] = "\x02h2\x08http/1.1";
    /* The admin port speaks HTTP/1.1 only. */
    const struct rt_conn *c = SSL_get_app_data(ssl);
    size_t skip = c && c->admin ? 3 : 0;
    /* Server preference: h2 when offered, else http/1.1. */
    if (SSL_select_next_proto((unsigned char **)out, outlen, prefs + skip,
                              (unsigned)(sizeof prefs - 1 - skip), in,
                              inlen) == OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_OK;
    return SSL_TLSEXT_ERR_NOACK; /* no common protocol: go on without ALPN */
}

static int host_match(const char *pattern, const char *name)
{
    if (pattern[0] == '*' && pattern[1] == '.') {
        const char *dot = strchr(name, '.');
        return dot && strcasecmp(dot, pattern + 1) == 0;
    }
    return strcasecmp(pattern, name) == 0;
}

static int sni_select(SSL *ssl, int *al, void *arg)
{
    struct rt_tls_store *st = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name)
        return SSL_TLSEXT_ERR_OK; /* default certificate */
    for (size_t i = 0; i < st->nsni; i++)
        if (host_match(st->sni[i].host, name)) {
            SSL_set_SSL_CTX(ssl, st->sni[i].ctx);
            break;
        }
    return SSL_TLSEXT_ERR_OK;
}

/* One context for a certificate chain + key; field names the JSON path or
 * flag for the error. */
static SSL_CTX *ctx_load(const char *cert, const char *key, const char *field,
                         struct wlm_error *err)
{
    SSL_CTX *ctx = wlm_tls_server_ctx(cert, key, field, err);
    if (!ctx)
        return NULL;
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"wlm-router", 10);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    return ctx;
}

void rt_tls_store_unref(struct rt_tls_store *st)
{
    if (!st || atomic_fetch_sub(&st->refs, 1) != 1)
        return;
    for (size_t i = 0; i < st->nsni; i++) {
        free(st->sni[i].host);
        SSL_CTX_free(st->sni[i].ctx);
    }
    free(st->sni);
    SSL_CTX_free(st->def);
    free(st->sig);
    free(st);
}

static void sig_file(char **b, size_t *len, size_t *cap, const char *path)
{
    struct stat sb;
    char t[160];
    rt_buf_str(b, len, cap, path);
    if (stat(path, &sb) == 0)
        snprintf(t, sizeof t, "|%llu:%llu:%lld:%lld.%09ld;", (unsigned long long)sb.st_dev,
                 (unsigned long long)sb.st_ino, (long long)sb.st_size,
                 (long long)sb.st_mtim.tv_sec, sb.st_mtim.tv_nsec);
    else
        snprintf(t, sizeof t, "|missing;");
    rt_buf_str(b, len, cap, t);
}

/* A string that changes when any certificate/key file or SNI name of the
 * store for (cert, key, cfg) changes. */
char *rt_tls_signature(const char *cert, const char *key, const struct router_config *cfg)
{
    char *b = NULL;
    size_t len = 0, cap = 0;
    sig_file(&b, &len, &cap, cert);
    sig_file(&b, &len, &cap, key);
    for (size_t a = 0; cfg && a < cfg->napps; a++) {
        const struct router_app *app = &cfg->apps[a];
        if (!app->tls_cert)
            continue;
        sig_file(&b, &len, &cap, app->tls_cert);
        sig_file(&b, &len, &cap, app->tls_key);
        for (size_t h = 0; h < app->nhosts; h++) {
            rt_buf_str(&b, &len, &cap, app->hosts[h]);
            rt_buf_add(&b, &len, &cap, ",", 1);
        }
    }
    return b;
}

int rt_tls_store_same(const struct rt_tls_store *st, const char *sig)
{
    return st && st->sig && sig && strcmp(st->sig, sig) == 0;
}

struct rt_tls_store *rt_tls_store_ref(struct rt_tls_store *st)
{
    if (st)
        atomic_fetch_add(&st->refs, 1);
    return st;
}

struct rt_tls_store *rt_tls_store_new(const char *cert, const char *key,
                                      const struct router_config *cfg, struct wlm_error *err)
{
    struct rt_tls_store *st = calloc(1, sizeof *st);
    if (!st) {
        rt_err(err, ENOMEM, "", "out of memory");
        return NULL;
    }
    atomic_init(&st->refs, 1);
    st->sig = rt_tls_signature(cert, key, cfg);
    st->def = ctx_load(cert, key, "--tls-cert", err);
    if (!st->def)
        goto fail;
    size_t n = 0;
    for (size_t a = 0; cfg && a < cfg->napps; a++)
        if (cfg->apps[a].tls_cert)
            n += cfg->apps[a].nhosts;
    st->sni = calloc(n + 1, sizeof *st->sni);
    if (!st->sni)
        goto fail;
    for (size_t a = 0; cfg && a < cfg->napps; a++) {
        const struct router_app *app = &cfg->apps[a];
        if (!app->tls_cert)
            continue;
        char field[64];
        snprintf(field, sizeof field, "apps[%zu].tls", a);
        if (app->nhosts == 0) {
            rt_err(err, WLM_EINVAL, field,
                   "field '%s': an application with its own certificate needs \"hosts\" "
                   "(the SNI names it answers)", field);
            goto fail;
        }
        SSL_CTX *ctx = ctx_load(app->tls_cert, app->tls_key, field, err);
        if (!ctx)
            goto fail;
        for (size_t h = 0; h < app->nhosts; h++) {
            st->sni[st->nsni].host = rt_dup(app->hosts[h]);
            st->sni[st->nsni].ctx = ctx;
            if (h)
                SSL_CTX_up_ref(ctx);
            st->nsni++;
        }
    }
    SSL_CTX_set_tlsext_servername_callback(st->def, sni_select);
    SSL_CTX_set_tlsext_servername_arg(st->def, st);
    return st;
fail:
    rt_tls_store_unref(st);
    return NULL;
}

/* ------------------------------------------------------------ connections */

int rt_tls_conn_start(struct rt_conn *c, struct rt_tls_store *st)
{
    c->tls_store = rt_tls_store_ref(st);
    c->ssl = wlm_tls_session(st->def, 1, NULL);
    if (c->ssl)
        SSL_set_app_data(c->ssl, c);
    return c->ssl ? 0 : -1;
}

void rt_tls_conn_free(struct rt_conn *c)
{
    if (c->ssl)
        SSL_free(c->ssl);
    c->ssl = NULL;
    rt_tls_store_unref(c->tls_store);
    c->tls_store = NULL;
}

/* Send what OpenSSL produced (handshake messages, records, alerts). */
static int tls_out(struct rt_conn *c)
{
    BIO *wb = SSL_get_wbio(c->ssl);
    char *p = NULL;
    long n = BIO_get_mem_data(wb, &p);
    if (n <= 0)
        return 0;
    int rc = rt_stream_write((uv_stream_t *)&c->tcp, p, (size_t)n);
    (void)BIO_reset(wb);
    return rc;
}

int rt_tls_write(struct rt_conn *c, const char *d, size_t n)
{
    while (n) {
        int k = SSL_write(c->ssl, d, n > (1u << 30) ? 1 << 30 : (int)n);
        if (k <= 0)
            return UV_EPROTO;
        d += k;
        n -= (size_t)k;
    }
    return tls_out(c);
}

void rt_tls_close_notify(struct rt_conn *c)
{
    if (c->ssl && c->tls_up) {
        SSL_shutdown(c->ssl);
        tls_out(c);
    }
}

/* Ciphertext from the socket: finish the handshake (choosing the protocol
 * by ALPN), then hand plaintext to conn_process. Returns -1 on a fatal
 * error (the caller closes). */
int rt_tls_input(struct rt_conn *c, const char *d, size_t n)
{
    if (BIO_write(SSL_get_rbio(c->ssl), d, (int)n) != (int)n)
        return -1;
    if (!c->tls_up) {
        ERR_clear_error();
        int rc = SSL_do_handshake(c->ssl);
        if (tls_out(c))
            return -1;
        if (rc != 1) {
            int e = SSL_get_error(c->ssl, rc);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return 0;
            char why[256];
            ssl_reason(why, sizeof why);
            wlm_debug("router", "TLS handshake failed", "peer=%s reason=%s", c->peer, why);
            return -1;
        }
        c->tls_up = 1;
        const unsigned char *alpn = NULL;
        unsigned alen = 0;
        SSL_get0_alpn_selected(c->ssl, &alpn, &alen);
        if (alen == 2 && memcmp(alpn, "h2", 2) == 0) {
            if (h2_start(c, NULL, 0, NULL, 0))
                return -1;
        } else if (alen == 8) {
            c->proto = P_H1;
        } /* no ALPN: detect h1 or prior-knowledge h2 as on the plaintext port */
        conn_handshake_done(c);
    }
    char *buf = c->w->tbuf;
    while (!c->closing) {
        ERR_clear_error();
        int k = SSL_read(c->ssl, buf, (int)sizeof c->w->tbuf);
        if (k <= 0) {
            int e = SSL_get_error(c->ssl, k);
            if (tls_out(c))
                return -1;
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return 0;
            if (e == SSL_ERROR_ZERO_RETURN) /* close_notify: like EOF */
                return -1;
            return -1;
        }
        if (conn_process(c, buf, (size_t)k))
            return 0; /* closed */
    }
    return 0;
}

const char *rt_tls_version(const struct rt_conn *c)
{
    return c->ssl && c->tls_up ? SSL_get_version(c->ssl) : "";
}

const char *rt_tls_alpn(const struct rt_conn *c)
{
    const unsigned char *a = NULL;
    unsigned n = 0;
    if (!c->ssl || !c->tls_up)
        return "";
    SSL_get0_alpn_selected(c->ssl, &a, &n);
    return n == 2 ? "h2" : n == 8 ? "http/1.1" : "";
}
