/*
 * http_server_internal.h - types and functions the pieces of the HTTP server
 * share (http_server*.c). Not installed, not part of the public API (common.h):
 * names use the wlm__http_ prefix.
 */
#ifndef WLM_HTTP_SERVER_INTERNAL_H
#define WLM_HTTP_SERVER_INTERNAL_H

#include <http_parser.h>
#include <openssl/ssl.h>

#include "common.h"
#include "http_internal.h"
#include "wlm_tls.h"

#define HTTP_MAX_PIPELINE 32
#define HTTP_MAX_HEADERS 128
#define HTTP_DRAIN_MS 500
#define HTTP_READ_BUF (64 * 1024)
#define HTTP_MAX_STREAM_BACKLOG (8u * 1024 * 1024) /* unsent stream bytes before we give up */
#define HTTP_MAX_PARAMS WLM_ARRAY_LEN(((struct wlm_http_req *)0)->params)

struct http_route {
    char *method;  /* NULL = any */
    char *pattern; /* as registered, shown to the authenticator as req->route */
    char **segs;
    size_t nsegs;
    int wildcard; /* pattern ended in "*" */
    int auth;
    wlm_http_handler_fn fn;
    void *ud;
};

enum sreq_state {
    SREQ_PARSING,   /* header or body still arriving */
    SREQ_HANDLING,  /* with the handler, no response yet */
    SREQ_STREAMING, /* chunked response begun */
    SREQ_DONE,      /* response complete (maybe not yet written) */
};

struct http_sreq {
    struct wlm_http_req pub; /* first: the public view is a cast away */
    struct http_sreq *next, *prev;
    struct wlm_http_server *srv;
    enum sreq_state state;
    struct wlm_buf url, body;
    struct wlm_buf out; /* response bytes not yet handed to the socket */
    size_t hdr_bytes;
    int headers_done;
    int seen_cl, seen_te;
    char *cl_value;
    int is_head, chunked, no_body;
    int close_after; /* close the connection after this response */
    int status;
    uint64_t t0; /* uv_hrtime at the first byte */
    int orphan, in_abort;
    int audited; /* reached an auth route: report the status to auth.answered once */
};

enum timer_mode { T_NONE, T_IDLE, T_HEADER, T_DRAIN, T_KILL };

struct wlm_http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shut;
    struct wlm_http_server *srv;
    struct wlm_http_conn *next, *prev;
    http_parser parser;
    struct http_sreq *cur; /* being parsed */
    struct wlm__http_hdr_acc acc;
    struct http_sreq *qhead, *qtail; /* awaiting their turn to be written */
    size_t nq;
    struct wlm_buf inbuf; /* unparsed input kept while the parser is paused */
    size_t inoff;
    int handles;  /* uv handles not yet closed */
    int closing;  /* uv_close issued */
    int final;    /* no further requests will be parsed */
    int draining; /* shut down our side; discarding input until EOF */
    int peer_eof; /* the peer half-closed */
    int paused;   /* parser paused with input in inbuf */
    int in_parse; /* inside http_parser_execute: do not re-enter */
    int reading;
    enum timer_mode tmode;
    char peer[64];
    SSL *ssl;     /* HTTPS: the session, NULL on plain connections */
    int tls_up;   /* handshake finished */
    int tls_seen; /* some ciphertext arrived */
};

struct wlm_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listener_open;
    char *host, *token;
    int port;
    size_t max_header_bytes, max_body_bytes;
    unsigned header_timeout_ms, idle_timeout_ms, max_connections;
    struct http_route *routes;
    size_t nroutes;
    struct wlm_metrics *metrics;
    struct wlm_counter *by_class[5];
    struct wlm_histogram *latency;
    struct wlm_http_conn *conns;
    size_t nconns;
    struct http_sreq *orphans;
    int closing;
    void (*done)(void *ud);
    void *done_ud;
    struct wlm_http_auth auth; /* check == NULL: the shared token */
    char *tls_cert, *tls_key;
    SSL_CTX *tls_ctx;         /* set by listen when tls_cert is given */
    char rbuf[HTTP_READ_BUF]; /* reads are consumed synchronously, so one buffer serves all */
};

/* http_server_request.c: request objects, queues, error responses */
struct http_sreq *wlm__http_sreq_new(struct wlm_http_conn *conn);
void wlm__http_sreq_free(struct http_sreq *r);
void wlm__http_queue_push(struct wlm_http_conn *conn, struct http_sreq *r);
void wlm__http_queue_remove(struct wlm_http_conn *conn, struct http_sreq *r);
void wlm__http_orphan_remove(struct wlm_http_server *srv, struct http_sreq *r);
int wlm__http_respond_error_hdr(struct wlm_http_req *req, int status, const char *extra,
                                const char *error, const char *detail);

/* http_server_conn.c: a connection's I/O */
void wlm__http_conn_close(struct wlm_http_conn *conn);
void wlm__http_conn_flush(struct wlm_http_conn *conn);
void wlm__http_conn_finish(struct wlm_http_conn *conn);
void wlm__http_conn_reject(struct wlm_http_conn *conn, int status, const char *error,
                           const char *detail);
void wlm__http_conn_update_timer(struct wlm_http_conn *conn);
void wlm__http_timer_cb(uv_timer_t *t);
void wlm__http_conn_start_reading(struct wlm_http_conn *conn);
int wlm__http_conn_write_raw(struct wlm_http_conn *conn, char *data, size_t len);
int wlm__http_conn_write(struct wlm_http_conn *conn, struct wlm_buf *b);
void wlm__http_conn_on_eof(struct wlm_http_conn *conn);
void wlm__http_conn_input(struct wlm_http_conn *conn, const char *data, size_t nread);

/* http_server_parse.c: feed bytes to the parser; returns how many were consumed */
size_t wlm__http_conn_parse(struct wlm_http_conn *conn, const char *data, size_t len);

/* http_server_route.c */
int wlm__http_split_path(const char *path, char **copy, char ***segs, size_t *nsegs);
void wlm__http_dispatch(struct http_sreq *r);
void wlm__http_routes_free(struct wlm_http_server *srv);

/* http_server_tls.c */
int wlm__http_conn_tls_flush(struct wlm_http_conn *conn);
void wlm__http_conn_tls_input(struct wlm_http_conn *conn, char *data, size_t n);

/* http_server.c: free the server once it is closing and nothing is left open */
void wlm__http_server_maybe_done(struct wlm_http_server *srv);

#endif /* WLM_HTTP_SERVER_INTERNAL_H */
