/*
 * common.h - the one public header of libwlm_common.
 *
 * Logging, errors, configuration, JSON helpers, metrics, SQLite, the clock, and
 * HTTP/1.1 server and client on libuv. Public names start with wlm_.
 *
 * Conventions (see STYLE.md): functions return 0 or a negative WLM_E* / -errno
 * code and describe failures in a struct wlm_error a person can read. Objects
 * are created with *_new and released with *_free (NULL-safe). No library
 * function exits the process.
 */
#ifndef WLM_COMMON_H
#define WLM_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <sqlite3.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef WLM_VERSION
#define WLM_VERSION "0.0.0"
#endif

#define WLM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define WLM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------- errors */

/* Error codes beyond errno (all negative when returned). */
enum {
    WLM_EINVAL = 1000, /* bad input from a user or peer */
    WLM_ENOTFOUND,     /* no such object */
    WLM_ECONFLICT,     /* the request conflicts with current state */
    WLM_EIO,           /* file, socket or database failure */
    WLM_EUNSUPPORTED,  /* the driver or platform cannot do this */
    WLM_EAUTH,         /* missing or wrong credentials */
    WLM_ETIMEOUT,      /* gave up waiting */
    WLM_ELIMIT,        /* a size or count limit was exceeded */
    WLM_EINTERNAL,     /* a bug or an unexpected library failure */
    WLM_EUNAVAIL,      /* the store or the leader cannot be reached now: retry later (503) */
};

/* A human-readable error. `field` names the offending input field when
 * there is one (config key, JSON member, flag), so callers can build messages
 * like "field 'cores': must be > 0". */
struct wlm_error {
    int code; /* negative WLM_E* or -errno, 0 when no error */
    char field[64];
    char msg[512];
};

/* Set err (if not NULL) and return -code_abs; code_abs is a positive WLM_E*
 * or errno value. */
int wlm_error_set(struct wlm_error *err, int code_abs, const char *fmt, ...) WLM_PRINTF(3, 4);
int wlm_error_setf(struct wlm_error *err, int code_abs, const char *field, const char *fmt, ...)
    WLM_PRINTF(4, 5);
void wlm_error_clear(struct wlm_error *err);
/* Short name of a code: "invalid", "not_found", ... Static string. */
const char *wlm_error_name(int code);
/* HTTP status that best matches a code (400, 404, 409, 500, ...). */
int wlm_error_http_status(int code);

/* ---------------------------------------------------------------- strings */

/* Allocation helpers that abort on OOM are deliberately absent: callers check. */
char *wlm_strdup(const char *s);                             /* NULL-safe */
char *wlm_asprintf(const char *fmt, ...) WLM_PRINTF(1, 2);   /* caller frees */
/* Bounded copy that always NUL-terminates; returns strlen(src). */
size_t wlm_strlcpy(char *dst, const char *src, size_t size);
/* Constant-time comparison of two NUL-terminated secrets: the time taken
 * depends only on the length of `b` (the secret), never on where they differ. */
int wlm_secret_equal(const char *a, const char *b);

/* Growable byte buffer. */
struct wlm_buf {
    char *data;
    size_t len, cap;
};
void wlm_buf_init(struct wlm_buf *b);
void wlm_buf_fini(struct wlm_buf *b);
int wlm_buf_append(struct wlm_buf *b, const void *data, size_t len);
int wlm_buf_printf(struct wlm_buf *b, const char *fmt, ...) WLM_PRINTF(2, 3);
int wlm_buf_vprintf(struct wlm_buf *b, const char *fmt, va_list ap);
/* Detach the NUL-terminated contents; the buffer is left empty. */
char *wlm_buf_steal(struct wlm_buf *b);
/* Append everything f has until its end: 0, -ENOMEM, or -errno (-EIO if
 * unknown) when reading failed; what was read stays in b, unusable. */
int wlm_buf_read_file(struct wlm_buf *b, FILE *f);

/* ---------------------------------------------------------------- clock */

/* Wall clock, seconds since the epoch (for records shown to people). */
double wlm_now_wall(void);
/* Monotonic clock in seconds (for intervals and timeouts). */
double wlm_now_mono(void);
/* Format a wall time as RFC 3339 UTC with milliseconds into buf (>= 32). */
char *wlm_time_format(double t, char *buf, size_t size);

/* ---------------------------------------------------------------- logging */

enum wlm_log_level { WLM_LOG_DEBUG, WLM_LOG_INFO, WLM_LOG_WARN, WLM_LOG_ERROR, WLM_LOG_OFF };

/* The log level and stream are process-wide by nature (one stderr); they are
 * the only mutable globals in common/, set once by a daemon's main. */
void wlm_log_set_level(enum wlm_log_level level);
enum wlm_log_level wlm_log_get_level(void);
void wlm_log_set_stream(FILE *f); /* default stderr */
/* Parse "debug|info|warn|error|off"; -WLM_EINVAL when unknown. */
int wlm_log_parse_level(const char *s, enum wlm_log_level *out);

/* One line: "2026-11-21T23:40:00.123Z INFO  controller: node registered name=a cores=4".
 * `fields` is a printf format for key=value pairs (may be NULL or ""). Values
 * that contain spaces should be quoted by the caller with %s in "\"...\"". */
void wlm_log(enum wlm_log_level level, const char *component, const char *msg, const char *fields,
             ...) WLM_PRINTF(4, 5);
#define wlm_debug(comp, msg, ...) wlm_log(WLM_LOG_DEBUG, comp, msg, __VA_ARGS__)
#define wlm_info(comp, msg, ...) wlm_log(WLM_LOG_INFO, comp, msg, __VA_ARGS__)
#define wlm_warn(comp, msg, ...) wlm_log(WLM_LOG_WARN, comp, msg, __VA_ARGS__)
#define wlm_errorlog(comp, msg, ...) wlm_log(WLM_LOG_ERROR, comp, msg, __VA_ARGS__)

/* ---------------------------------------------------------------- JSON */

/* Typed getters that name the field in errors. `required` = 1 makes a missing
 * member an error; otherwise *out keeps its value (the default). Each returns 0
 * or -WLM_EINVAL. Strings are borrowed from the json object. */
int wlm_json_get_str(const json_t *obj, const char *key, int required, const char **out,
                     struct wlm_error *err);
int wlm_json_get_int(const json_t *obj, const char *key, int required, long long min, long long max,
                     long long *out, struct wlm_error *err);
int wlm_json_get_num(const json_t *obj, const char *key, int required, double min, double max,
                     double *out, struct wlm_error *err);
int wlm_json_get_bool(const json_t *obj, const char *key, int required, int *out,
                      struct wlm_error *err);
/* Fails with the first member of obj not listed in `allowed` (NULL-terminated). */
int wlm_json_check_keys(const json_t *obj, const char *const *allowed, const char *where,
                        struct wlm_error *err);
/* Parse a whole buffer that must hold one JSON object; error names line/column. */
json_t *wlm_json_parse_object(const char *data, size_t len, struct wlm_error *err);
json_t *wlm_json_load_file(const char *path, struct wlm_error *err);
/* Compact serialisation; caller frees. */
char *wlm_json_dumps(const json_t *v);
/* {"error": name, "detail": detail}; caller decrefs. */
json_t *wlm_json_error_body(const char *error, const char *detail);

/* ---------------------------------------------------------------- config */

enum wlm_cfg_type { WLM_CFG_STR, WLM_CFG_INT, WLM_CFG_NUM, WLM_CFG_BOOL };

/* One configuration field stored at `offset` in the caller's struct:
 * STR -> char[size] buffer, INT -> long long, NUM -> double, BOOL -> int.
 * `env` names the environment variable that overrides the file (may be NULL). */
struct wlm_cfg_field {
    const char *name;
    enum wlm_cfg_type type;
    size_t offset;
    size_t size; /* buffer size for STR */
    const char *env;
    const char *defval; /* default as text, applied first (may be NULL) */
    double min, max;    /* for INT/NUM; min > max disables the check */
    const char *help;
};

/* Apply defaults, then the JSON file at `path` (NULL = none), then environment
 * overrides. Unknown keys, wrong types and out-of-range values fail with the
 * field named in err->field; on failure `cfg` may be partly written, so load
 * into a scratch struct and copy on success when that matters. */
int wlm_config_load(const struct wlm_cfg_field *fields, size_t n, void *cfg, const char *path,
                    struct wlm_error *err);
/* Set one field from text ("--flag value" style); same validation. */
int wlm_config_set(const struct wlm_cfg_field *fields, size_t n, void *cfg, const char *name,
                   const char *value, struct wlm_error *err);
/* Print "  name (ENV, default X): help" lines for --help. */
void wlm_config_print_help(const struct wlm_cfg_field *fields, size_t n, FILE *out);


/* Command line of a daemon or tool with a config table: --help, --version,
 * --config FILE, --log-level LEVEL, and --<field> VALUE or --<field>=VALUE for
 * every config field (underscores in field names are dashes on the command
 * line). Precedence: defaults < config file < environment < flags.
 * Positional arguments are not accepted. Returns 0 to run, 1 when --help or
 * --version was printed (the caller exits 0), or -WLM_EINVAL with err set
 * (the caller prints "prog: msg" and exits 2). */
int wlm_daemon_args(int argc, char **argv, const char *prog, const char *summary,
                    const struct wlm_cfg_field *fields, size_t n, void *cfg, struct wlm_error *err);

/* ---------------------------------------------------------------- metrics */

/* Prometheus text-format registry. Metrics are identified by name plus a
 * label string such as `flow="shop/gold"` (already escaped; may be NULL).
 * Getters create on first use and return a stable pointer owned by the
 * registry, valid until wlm_metrics_free. Not thread-safe: one loop owns it. */
struct wlm_metrics;
struct wlm_counter;
struct wlm_gauge;
struct wlm_histogram;

struct wlm_metrics *wlm_metrics_new(void);
void wlm_metrics_free(struct wlm_metrics *m);
struct wlm_counter *wlm_metrics_counter(struct wlm_metrics *m, const char *name, const char *help,
                                        const char *labels);
struct wlm_gauge *wlm_metrics_gauge(struct wlm_metrics *m, const char *name, const char *help,
                                    const char *labels);
/* `bounds` are the upper bounds of the finite buckets, ascending; copied. */
struct wlm_histogram *wlm_metrics_histogram(struct wlm_metrics *m, const char *name,
                                            const char *help, const char *labels,
                                            const double *bounds, size_t nbounds);
void wlm_counter_add(struct wlm_counter *c, double v);
void wlm_gauge_set(struct wlm_gauge *g, double v);
void wlm_gauge_add(struct wlm_gauge *g, double v);
void wlm_histogram_observe(struct wlm_histogram *h, double v);
/* Render all metrics in text exposition format 0.0.4; caller frees. */
char *wlm_metrics_render(const struct wlm_metrics *m);
/* Escape a label value per the text format (\\, \", \n); caller frees. */
char *wlm_metrics_escape_label(const char *v);

/* ---------------------------------------------------------------- SQLite */

/* Open (creating if needed) a database in WAL mode with a busy timeout and
 * foreign keys on, then apply `migrations[i]` for every i >= the version
 * recorded in table schema_version, each in its own transaction. */
int wlm_db_open(const char *path, const char *const *migrations, size_t nmigrations,
                sqlite3 **out, struct wlm_error *err);
void wlm_db_close(sqlite3 *db);
/* Run SQL without results; error carries sqlite's message. */
int wlm_db_exec(sqlite3 *db, const char *sql, struct wlm_error *err);
int wlm_db_begin(sqlite3 *db, struct wlm_error *err);  /* BEGIN IMMEDIATE */
int wlm_db_commit(sqlite3 *db, struct wlm_error *err);
void wlm_db_rollback(sqlite3 *db);
int wlm_db_schema_version(sqlite3 *db);

/* ---------------------------------------------------------------- HTTP */

struct wlm_http_header {
    char *name; /* as received; compare case-insensitively */
    char *value;
};

/* Who sent a request, as established by the server's authenticator (see
 * wlm_http_server_set_auth). All empty when the route needs no token or
 * nobody was authenticated. With the plain shared token (no authenticator)
 * an accepted request is {"token", "admin"}. */
struct wlm_principal {
    char name[64];  /* "bootstrap", a token's name */
    char role[16];  /* "admin", "operator", "submitter", "agent", "router" */
    char node[64];  /* agent tokens: the one node they speak for */
    long long id;   /* token id, 0 for the bootstrap token */
};

/* A request being served. Owned by the server; valid from the handler call
 * until the response is finished (wlm_http_respond or wlm_http_stream_end) or
 * the connection closes (then `on_abort` fires if set). After on_abort returns
 * the request is freed: drop every pointer to it. A handler that sets no
 * on_abort keeps a valid request after the peer left: its respond/stream_end
 * then returns -ENOTCONN and frees it (stream_write returns -ENOTCONN too, but
 * call stream_end to release it); if it never answers, the request is freed
 * when the server closes. One loop thread only: respond from the server's loop. */
struct wlm_http_req {
    const char *method; /* "GET", "POST", ... */
    char *url;          /* raw request target */
    char *path;         /* percent-decoded path, no query */
    char *query;        /* raw query string without '?', or NULL */
    struct wlm_http_header *headers;
    size_t nheaders;
    char *body; /* NUL-terminated for convenience; may contain NULs */
    size_t body_len;
    int http_major, http_minor;
    int keep_alive;
    char peer[64];   /* "127.0.0.1:53211" */
    /* Path parameters filled by the router: ":id" segments in order. */
    char *params[8];
    size_t nparams;
    void *user;                                  /* free for the handler */
    void (*on_abort)(struct wlm_http_req *req); /* connection went away */
    struct wlm_http_conn *conn;                  /* private */
    struct wlm_principal principal;              /* see struct wlm_principal */
    const char *route; /* pattern of the matched route ("/v1/jobs/:id"), owned by the server */
    int tls;           /* arrived over TLS */
    char audit[160];   /* what the handler did, for the audit trail ("job=12", "token=ab12..") */
};

/* Case-insensitive header lookup; NULL when absent. */
const char *wlm_http_req_header(const struct wlm_http_req *req, const char *name);
/* Value of a query parameter (decoded, caller frees) or NULL. */
char *wlm_http_req_query(const struct wlm_http_req *req, const char *key);

/* Respond once. `extra_headers` are "Name: value" lines joined by "\r\n" (may
 * be NULL). Content-Length is computed. Safe to call from a later loop turn
 * (asynchronous handlers). Returns 0 or -ENOTCONN if the peer is gone. */
int wlm_http_respond(struct wlm_http_req *req, int status, const char *content_type,
                     const char *extra_headers, const void *body, size_t len);
/* Convenience: JSON body (steals the reference to `v`). */
int wlm_http_respond_json(struct wlm_http_req *req, int status, json_t *v);
/* {"error": ..., "detail": ...} with the status mapped from a struct wlm_error
 * code when status is 0. */
int wlm_http_respond_error(struct wlm_http_req *req, int status, const char *error,
                           const char *detail_fmt, ...) WLM_PRINTF(4, 5);
int wlm_http_respond_werr(struct wlm_http_req *req, const struct wlm_error *err);

/* Streaming responses (chunked), for Server-Sent Events and large bodies. */
int wlm_http_stream_begin(struct wlm_http_req *req, int status, const char *content_type,
                          const char *extra_headers);
int wlm_http_stream_write(struct wlm_http_req *req, const void *data, size_t len);
int wlm_http_stream_end(struct wlm_http_req *req);

typedef void (*wlm_http_handler_fn)(struct wlm_http_req *req, void *ud);

struct wlm_http_server_opts {
    const char *host; /* default "127.0.0.1" */
    int port;         /* 0 = pick a free port (see wlm_http_server_port) */
    size_t max_header_bytes;   /* default 16 KiB -> 431 */
    size_t max_body_bytes;     /* default 8 MiB -> 413 */
    unsigned header_timeout_ms; /* default 10000: whole header must arrive -> 408 */
    unsigned idle_timeout_ms;   /* default 60000: idle keep-alive closed */
    unsigned max_connections;   /* default 4096 */
    const char *token;          /* bearer token; NULL/"" = auth off */
    /* HTTPS: certificate chain and private key (PEM files). Both or none;
     * loaded by wlm_http_server_listen, which names a bad file. */
    const char *tls_cert, *tls_key;
};

struct wlm_http_server;

/* Create a server on `loop`. Requests that match no route get 404 (405 when
 * the path matches with another method). Routes are matched in the order added. */
struct wlm_http_server *wlm_http_server_new(uv_loop_t *loop, const struct wlm_http_server_opts *o);
/* Pattern: literal segments and ":name" segments, e.g. "/v1/nodes/:id/heartbeat",
 * or a trailing "*" to match any suffix (zero or more segments; the suffix,
 * without its leading '/', becomes the last req->params entry). Segments are
 * compared after percent-decoding. A GET route also answers HEAD (body
 * omitted). method NULL matches any method.
 * `auth` = 1 requires "Authorization: Bearer <token>" (401 otherwise). */
int wlm_http_server_route(struct wlm_http_server *s, const char *method, const char *pattern,
                          int auth, wlm_http_handler_fn fn, void *ud);
/* Authentication and authorisation of token-protected routes, replacing the
 * shared-token check. `check` runs after routing for every route registered
 * with auth = 1; it gets the bearer credential (NULL when absent or not a
 * Bearer) and fills req->principal. It returns 0 to let the handler run, 401
 * (unknown or missing credential), 403 (known, but not allowed here) or 404
 * (an object this caller may not know of), with a reason for the person in
 * `why`; the server answers those itself.
 * `answered` (may be NULL) runs once for every response to a request that
 * reached an auth route (handled or refused), when its status is known: the
 * place to keep an audit trail. The struct is copied. */
struct wlm_http_auth {
    int (*check)(void *ud, struct wlm_http_req *req, const char *bearer, char *why,
                 size_t whylen);
    void (*answered)(void *ud, struct wlm_http_req *req, int status);
    void *ud;
};
void wlm_http_server_set_auth(struct wlm_http_server *s, const struct wlm_http_auth *a);
/* 1 when `host` (a listen address) is loopback only: 127.0.0.0/8, ::1,
 * "localhost". Daemons say so in their startup log, and warn when a
 * non-loopback address serves plain HTTP. */
int wlm_host_is_loopback(const char *host);
/* 1 when the server answers HTTPS (after a successful listen). */
int wlm_http_server_is_tls(const struct wlm_http_server *s);

/* Serve /metrics from this registry (public) and count requests into it. */
void wlm_http_server_set_metrics(struct wlm_http_server *s, struct wlm_metrics *m);
int wlm_http_server_listen(struct wlm_http_server *s, struct wlm_error *err);
int wlm_http_server_port(const struct wlm_http_server *s);
/* Stop accepting, close all connections (aborting requests in flight); `done`
 * runs when every handle is closed, after the server memory is released.
 * Also the way to release a server whose listen failed. */
void wlm_http_server_close(struct wlm_http_server *s, void (*done)(void *ud), void *ud);

/* ---- client ---- */

struct wlm_http_response {
    int status; /* 0 when no response arrived (see err) */
    struct wlm_http_header *headers;
    size_t nheaders;
    char *body; /* NUL-terminated */
    size_t body_len;
};
const char *wlm_http_response_header(const struct wlm_http_response *r, const char *name);
void wlm_http_response_fini(struct wlm_http_response *r);

/* Completion callback of an asynchronous request. `resp` and `err` are valid
 * only during the call. err->code != 0 means transport failure or timeout. */
typedef void (*wlm_http_client_cb)(const struct wlm_http_response *resp,
                                   const struct wlm_error *err, void *ud);

struct wlm_http_client;
/* A client keeps idle keep-alive connections per host:port for reuse; idle
 * connections do not keep the loop alive. wlm_http_client_free completes in
 * the loop's next close phase, so keep running the loop afterwards. The
 * callback never runs inside wlm_http_client_request; transport errors read
 * like "connect 127.0.0.1:7700: connection refused" and timeouts like
 * "GET http://...: timed out after 500 ms" (code -WLM_ETIMEOUT). */
struct wlm_http_client *wlm_http_client_new(uv_loop_t *loop);
void wlm_http_client_free(struct wlm_http_client *c); /* aborts requests in flight (cb with error) */

/* url: "http://host:port/path?query". token: bearer token or NULL.
 * body may be NULL; content_type defaults to application/json with a body.
 * timeout_ms 0 = no deadline. Returns -WLM_EINVAL for a bad URL or method
 * (no callback then). */
int wlm_http_client_request(struct wlm_http_client *c, const char *method, const char *url,
                            const char *token, const char *content_type, const void *body,
                            size_t len, unsigned timeout_ms, wlm_http_client_cb cb, void *ud);

/* HTTPS for https:// URLs: verify servers against the CA certificates in
 * `ca_file` (PEM), or the system's store when NULL/"". Without this call an
 * https:// request uses the system store. Fails with the file named. A
 * verification failure reads like "https://h:p: TLS: certificate verify
 * failed (unable to get local issuer certificate)". */
int wlm_http_client_set_ca(struct wlm_http_client *c, const char *ca_file, struct wlm_error *err);

/* Blocking request on a private loop (CLI, tests). Returns 0 when a response
 * arrived (any status), else a negative code with err filled. https:// URLs
 * are verified against the CA file named by $WLM_CA, else the system store. */
int wlm_http_fetch(const char *method, const char *url, const char *token, const char *content_type,
                   const void *body, size_t len, unsigned timeout_ms,
                   struct wlm_http_response *resp, struct wlm_error *err);

/* Status reason phrase ("Not Found"). */
const char *wlm_http_reason(int status);

#ifdef __cplusplus
}
#endif
#endif /* WLM_COMMON_H */
