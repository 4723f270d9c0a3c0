/*
 * http_server_route.c - the server's routes: registering patterns, matching a
 * request's path and method against them, authentication, and calling the
 * handler (dispatch).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_server_internal.h"

/* Split a raw path into raw segments (pointers into a copy). */
int wlm__http_split_path(const char *path, char **copy, char ***segs, size_t *nsegs)
{
    *copy = strdup(path[0] == '/' ? path + 1 : path);
    if (!*copy)
        return -ENOMEM;
    size_t n = (*copy)[0] ? 1 : 0;
    for (const char *p = *copy; *p; p++)
        n += *p == '/';
    *segs = calloc(n ? n : 1, sizeof(char *));
    if (!*segs) {
        free(*copy);
        return -ENOMEM;
    }
    size_t i = 0;
    if (n) {
        char *p = *copy;
        (*segs)[i++] = p;
        for (; *p; p++)
            if (*p == '/') {
                *p = '\0';
                (*segs)[i++] = p + 1;
            }
    }
    *nsegs = n;
    return 0;
}

static int route_match(const struct http_route *rt, char **segs, size_t nsegs,
                       struct wlm_http_req *req, int capture)
{
    if (rt->wildcard ? nsegs < rt->nsegs : nsegs != rt->nsegs)
        return 0;
    for (size_t i = 0; i < rt->nsegs; i++)
        if (rt->segs[i][0] != ':' && strcmp(rt->segs[i], segs[i]) != 0)
            return 0;
    if (!capture)
        return 1;
    for (size_t i = 0; i < rt->nsegs && req->nparams < HTTP_MAX_PARAMS; i++)
        if (rt->segs[i][0] == ':')
            req->params[req->nparams++] = strdup(segs[i]);
    if (rt->wildcard && req->nparams < HTTP_MAX_PARAMS) {
        /* The suffix matched by "*", segments re-joined with '/'. */
        struct wlm_buf b;
        wlm_buf_init(&b);
        for (size_t i = rt->nsegs; i < nsegs; i++)
            wlm_buf_printf(&b, "%s%s", i > rt->nsegs ? "/" : "", segs[i]);
        req->params[req->nparams++] = wlm_buf_steal(&b);
    }
    return 1;
}

static int method_ok(const struct http_route *rt, const char *method)
{
    return !rt->method || strcmp(rt->method, method) == 0 ||
           (strcmp(method, "HEAD") == 0 && strcmp(rt->method, "GET") == 0);
}

void wlm__http_dispatch(struct http_sreq *r)
{
    struct wlm_http_req *req = &r->pub;
    struct wlm_http_server *srv = r->srv;
    r->state = SREQ_HANDLING;

    if (srv->metrics && strcmp(req->path, "/metrics") == 0 &&
        (strcmp(req->method, "GET") == 0 || r->is_head)) {
        char *text = wlm_metrics_render(srv->metrics);
        if (!text) {
            wlm__http_respond_error_hdr(req, 500, NULL, "internal", "could not render metrics");
            return;
        }
        wlm_http_respond(req, 200, "text/plain; version=0.0.4", NULL, text, strlen(text));
        free(text);
        return;
    }

    /* Segments are decoded one by one so that an encoded '/' stays inside
     * its segment. */
    char *copy = NULL, **raw = NULL;
    size_t nsegs = 0;
    const char *rawpath = req->url;
    struct http_parser_url u;
    http_parser_url_init(&u);
    char *pathbuf = NULL;
    if (http_parser_parse_url(req->url, strlen(req->url), 0, &u) == 0 &&
        (u.field_set & (1 << UF_PATH)))
        pathbuf = strndup(req->url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    else
        pathbuf = strdup("/");
    rawpath = pathbuf ? pathbuf : "/";
    int rc = wlm__http_split_path(rawpath, &copy, &raw, &nsegs);
    free(pathbuf);
    if (rc) {
        wlm__http_respond_error_hdr(req, 500, NULL, "internal", "out of memory");
        return;
    }
    char **segs = calloc(nsegs ? nsegs : 1, sizeof(char *));
    int bad = !segs;
    for (size_t i = 0; !bad && i < nsegs; i++) {
        segs[i] = wlm__http_pct_decode(raw[i], strlen(raw[i]), 0);
        bad = !segs[i];
    }
    free(copy);
    free(raw);

    const struct http_route *found = NULL;
    int path_matched = 0;
    struct wlm_buf allow;
    wlm_buf_init(&allow);
    for (size_t i = 0; !bad && i < srv->nroutes; i++) {
        const struct http_route *rt = &srv->routes[i];
        if (!route_match(rt, segs, nsegs, req, 0))
            continue;
        path_matched = 1;
        if (method_ok(rt, req->method)) {
            found = rt;
            route_match(rt, segs, nsegs, req, 1);
            break;
        }
        if (!strstr(allow.data ? allow.data : "", rt->method)) {
            wlm_buf_printf(&allow, "%s%s", allow.len ? ", " : "Allow: ", rt->method);
            if (strcmp(rt->method, "GET") == 0)
                wlm_buf_printf(&allow, ", HEAD");
        }
    }
    for (size_t i = 0; segs && i < nsegs; i++)
        free(segs[i]);
    free(segs);

    if (bad) {
        wlm_buf_fini(&allow);
        wlm__http_respond_error_hdr(req, 400, NULL, "invalid",
                                    "malformed percent-encoding in the path");
        return;
    }
    if (!found) {
        if (path_matched) {
            char detail[128];
            snprintf(detail, sizeof(detail), "method %s not allowed here", req->method);
            wlm__http_respond_error_hdr(req, 405, allow.data, "method_not_allowed", detail);
        } else {
            wlm__http_respond_error_hdr(req, 404, NULL, "not_found", "no such path");
        }
        wlm_buf_fini(&allow);
        return;
    }
    wlm_buf_fini(&allow);

    req->route = found->pattern;
    if (found->auth && srv->auth.check) {
        const char *h = wlm_http_req_header(req, "Authorization");
        const char *bearer = NULL;
        if (h && strncasecmp(h, "Bearer ", 7) == 0) {
            bearer = h + 7;
            while (*bearer == ' ')
                bearer++;
        }
        char why[256] = "";
        r->audited = 1;
        int st = srv->auth.check(srv->auth.ud, req, bearer, why, sizeof why);
        if (st == 401) {
            wlm__http_respond_error_hdr(req, 401, "WWW-Authenticate: Bearer realm=\"wlm\"",
                                        "unauthorized",
                                        why[0]   ? why
                                        : bearer ? "invalid bearer token"
                                                 : "missing bearer token");
            return;
        }
        if (st == 404) { /* not for this caller's eyes: as if it did not exist */
            wlm__http_respond_error_hdr(req, 404, NULL, "not_found",
                                        why[0] ? why : "no such object");
            return;
        }
        if (st) {
            wlm__http_respond_error_hdr(req, 403, NULL, "forbidden", why[0] ? why : "not allowed");
            return;
        }
    } else if (found->auth && srv->token && srv->token[0]) {
        const char *h = wlm_http_req_header(req, "Authorization");
        int ok = 0;
        if (h && strncasecmp(h, "Bearer ", 7) == 0) {
            const char *t = h + 7;
            while (*t == ' ')
                t++;
            ok = wlm_secret_equal(t, srv->token);
        }
        if (!ok) {
            wlm__http_respond_error_hdr(req, 401, "WWW-Authenticate: Bearer realm=\"wlm\"",
                                        "unauthorized",
                                        h ? "invalid bearer token" : "missing bearer token");
            return;
        }
        wlm_strlcpy(req->principal.name, "token", sizeof req->principal.name);
        wlm_strlcpy(req->principal.role, "admin", sizeof req->principal.role);
    }
    found->fn(req, found->ud);
}

int wlm_http_server_route(struct wlm_http_server *s, const char *method, const char *pattern,
                          int auth, wlm_http_handler_fn fn, void *ud)
{
    if (!s || !pattern || pattern[0] != '/' || !fn)
        return -WLM_EINVAL;
    struct http_route rt = {.auth = auth, .fn = fn, .ud = ud, .pattern = strdup(pattern)};
    if (!rt.pattern)
        return -ENOMEM;
    char *copy;
    char **raw;
    size_t n;
    if (wlm__http_split_path(pattern, &copy, &raw, &n))
        return -ENOMEM;
    int rc = 0;
    size_t nparams = 0;
    if (n && strcmp(raw[n - 1], "*") == 0) {
        rt.wildcard = 1;
        n--;
        nparams++;
    }
    rt.segs = calloc(n ? n : 1, sizeof(char *));
    rt.method = method ? strdup(method) : NULL;
    if (!rt.segs || (method && !rt.method))
        rc = -ENOMEM;
    for (size_t i = 0; !rc && i < n; i++) {
        if (strcmp(raw[i], "*") == 0)
            rc = -WLM_EINVAL; /* "*" only at the end */
        nparams += raw[i][0] == ':';
        rt.segs[i] = strdup(raw[i]);
        if (!rt.segs[i] && !rc)
            rc = -ENOMEM;
        rt.nsegs = i + 1;
    }
    if (!rc && nparams > HTTP_MAX_PARAMS)
        rc = -WLM_ELIMIT;
    free(copy);
    free(raw);
    struct http_route *routes = NULL;
    if (!rc) {
        routes = realloc(s->routes, (s->nroutes + 1) * sizeof(*routes));
        if (!routes)
            rc = -ENOMEM;
    }
    if (rc) {
        for (size_t i = 0; i < rt.nsegs; i++)
            free(rt.segs[i]);
        free(rt.segs);
        free(rt.method);
        free(rt.pattern);
        return rc;
    }
    s->routes = routes;
    s->routes[s->nroutes++] = rt;
    return 0;
}

void wlm__http_routes_free(struct wlm_http_server *srv)
{
    for (size_t i = 0; i < srv->nroutes; i++) {
        struct http_route *rt = &srv->routes[i];
        free(rt->method);
        free(rt->pattern);
        for (size_t j = 0; j < rt->nsegs; j++)
            free(rt->segs[j]);
        free(rt->segs);
    }
    free(srv->routes);
}
