/*
 * http_client_internal.h - types and functions the pieces of the HTTP client
 * share (http_client*.c). Not installed, not part of the public API (common.h):
 * names use the wlm__http_ prefix.
 */
#ifndef WLM_HTTP_CLIENT_INTERNAL_H
#define WLM_HTTP_CLIENT_INTERNAL_H

#include <http_parser.h>
#include <openssl/ssl.h>

#include "common.h"
#include "http_internal.h"
#include "wlm_tls.h"

#define CLIENT_MAX_IDLE_PER_HOST 8
#define CLIENT_MAX_BODY (256u * 1024 * 1024)

struct creq;
struct mreq;

struct cconn {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    struct wlm_http_client *c;
    struct cconn *next, *prev;
    char key[300]; /* "host:port" */
    http_parser parser;
    struct wlm__http_hdr_acc acc;
    struct creq *req; /* in flight, NULL when idle */
    int idle, closing, connected;
    int reused;   /* has served a request before the current one */
    size_t nrecv; /* response bytes for the current request */
    int complete, keep_alive;
    struct wlm_http_header *headers;
    size_t nheaders;
    struct wlm_buf body;
    int https;
    SSL *ssl;        /* https: the session */
    int tls_up;      /* handshake done */
    int send_queued; /* send the request once the handshake is done */
};

struct creq {
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    struct addrinfo *ai, *ai_next; /* resolved addresses; the next to try */
    struct wlm_http_client *c;
    struct creq *next, *prev;
    char *host;
    int port;
    char key[300];
    int https;
    char *desc; /* "GET http://host:port/path" for messages */
    struct wlm_buf out;
    int is_head;
    unsigned timeout_ms;
    wlm_http_client_cb cb;
    void *ud;
    struct cconn *conn;
    int done, retried, gai_pending, timer_closed;
    int starting;           /* inside wlm_http_client_request: report failures later */
    struct wlm_error early; /* failure to report from the first loop turn */
};

struct wlm_http_client {
    uv_loop_t *loop;
    struct cconn *conns;
    struct creq *reqs;
    struct mreq *mreqs; /* requests over several servers (or redirected) */
    size_t alive;       /* creqs + cconns not yet released */
    int closing;
    SSL_CTX *tls_ctx; /* for https://; made on first use when not set */
};

/* http_client_request.c: a request's life, from start to its one callback */
void wlm__http_client_unref(struct wlm_http_client *c);
void wlm__http_creq_maybe_free(struct creq *r);
void wlm__http_creq_finish(struct creq *r, const struct wlm_http_response *resp,
                           const struct wlm_error *err);
void wlm__http_creq_fail(struct creq *r, int code_abs, const char *fmt, ...) WLM_PRINTF(3, 4);
void wlm__http_creq_start(struct creq *r);
void wlm__http_creq_timer(uv_timer_t *t);

/* http_client_conn.c: connections and their pool */
extern const http_parser_settings wlm__http_client_settings;
void wlm__http_creq_connect(struct creq *r, const struct sockaddr *sa);
void wlm__http_cconn_close(struct cconn *conn);
void wlm__http_cconn_send(struct cconn *conn);
void wlm__http_cconn_data(struct cconn *conn, const char *data, size_t nread);
void wlm__http_cconn_complete(struct cconn *conn, int reusable);
int wlm__http_cconn_write_raw(struct cconn *conn, char *data, size_t len);

/* http_client_tls.c */
int wlm__http_cconn_tls_flush(struct cconn *conn);
void wlm__http_cconn_tls_fail(struct cconn *conn, const char *what);
void wlm__http_cconn_tls_handshake(struct cconn *conn);
void wlm__http_cconn_tls_read(struct cconn *conn, const char *data, size_t n);

/* http_client.c: one request to one server */
int wlm__http_client_request(struct wlm_http_client *c, const char *method, const char *url,
                             const char *token, const char *content_type, const void *body,
                             size_t len, unsigned timeout_ms, wlm_http_client_cb cb, void *ud,
                             struct wlm_error *err);

/* http_client_multi.c: a request over a list of servers, or redirected */
int wlm__http_multi_request(struct wlm_http_client *c, const char *method, const char *url,
                            const char *token, const char *content_type, const void *body,
                            size_t len, unsigned timeout_ms, wlm_http_client_cb cb, void *ud,
                            struct wlm_error *err);
void wlm__http_mreqs_cancel(struct wlm_http_client *c);

#endif /* WLM_HTTP_CLIENT_INTERNAL_H */
