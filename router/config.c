/* config.c - the router's JSON configuration and the pure classifier.
 *
 * Parsing validates everything before anything is returned, so a bad PUT
 * /admin/config changes nothing. Field names in errors use the JSON path
 * ("apps[1].classes[0].weight") so the operator can find the mistake. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <strings.h>

#include <jansson.h>

#include "internal.h"

char *rt_strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static char *xstrdup(const char *s)
{
    return rt_strndup(s, strlen(s));
}

void router_config_free(struct router_config *cfg)
{
    if (!cfg)
        return;
    for (size_t a = 0; a < cfg->napps; a++) {
        struct router_app *app = &cfg->apps[a];
        free(app->name);
        for (size_t i = 0; i < app->nhosts; i++)
            free(app->hosts[i]);
        free(app->hosts);
        free(app->prefix);
        free(app->tls_cert);
        free(app->tls_key);
        for (size_t c = 0; c < app->nclasses; c++) {
            free(app->classes[c].name);
            free(app->classes[c].match.name);
            free(app->classes[c].match.value);
        }
        free(app->classes);
        for (size_t i = 0; i < app->ninstances; i++) {
            free(app->instances[i].id);
            free(app->instances[i].url);
        }
        free(app->instances);
    }
    free(cfg->apps);
    free(cfg->flows);
    free(cfg);
}

static int check_keys(json_t *obj, const char *const *allowed, const char *where,
                      struct wlm_error *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        int ok = 0;
        for (size_t i = 0; allowed[i]; i++)
            if (strcmp(key, allowed[i]) == 0)
                ok = 1;
        if (!ok) {
            char f[64];
            snprintf(f, sizeof f, "%s%s%s", where, *where ? "." : "", key);
            return rt_err(err, WLM_EINVAL, f, "field '%s': unknown field", f);
        }
    }
    return 0;
}

static int get_num(json_t *obj, const char *key, const char *where, double min, double max,
                   double *out, struct wlm_error *err)
{
    json_t *v = json_object_get(obj, key);
    char f[64];
    snprintf(f, sizeof f, "%s%s%s", where, *where ? "." : "", key);
    if (!v)
        return 0;
    if (!json_is_number(v))
        return rt_err(err, WLM_EINVAL, f, "field '%s': must be a number", f);
    double d = json_number_value(v);
    if (!(d >= min && d <= max))
        return rt_err(err, WLM_EINVAL, f, "field '%s': must be in [%g, %g]", f, min, max);
    *out = d;
    return 0;
}

static int get_str(json_t *obj, const char *key, const char *where, int required, const char **out,
                   struct wlm_error *err)
{
    json_t *v = json_object_get(obj, key);
    char f[64];
    snprintf(f, sizeof f, "%s%s%s", where, *where ? "." : "", key);
    if (!v) {
        if (required)
            return rt_err(err, WLM_EINVAL, f, "field '%s': required", f);
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) == 0)
        return rt_err(err, WLM_EINVAL, f, "field '%s': must be a non-empty string", f);
    *out = json_string_value(v);
    return 0;
}

/* "http://host:port" (path ignored, must be "" or "/"). */
static int parse_url(struct router_instance_cfg *in, const char *url, const char *f,
                     struct wlm_error *err)
{
    if (strncmp(url, "http://", 7) != 0)
        return rt_err(err, WLM_EINVAL, f, "field '%s': must start with http://", f);
    const char *h = url + 7, *end = h + strcspn(h, "/");
    const char *colon = memchr(h, ':', (size_t)(end - h));
    if (*end && strcmp(end, "/") != 0)
        return rt_err(err, WLM_EINVAL, f, "field '%s': a path is not supported", f);
    size_t hl = (size_t)((colon ? colon : end) - h);
    if (hl == 0 || hl >= sizeof in->host)
        return rt_err(err, WLM_EINVAL, f, "field '%s': bad host", f);
    memcpy(in->host, h, hl);
    in->host[hl] = 0;
    in->port = 80;
    if (colon) {
        char *e;
        long p = strtol(colon + 1, &e, 10);
        if (e != end || p <= 0 || p > 65535)
            return rt_err(err, WLM_EINVAL, f, "field '%s': bad port", f);
        in->port = (int)p;
    }
    return 0;
}

static int parse_match(struct router_class *c, json_t *m, const char *where, struct wlm_error *err)
{
    static const char *const keys[] = {"header", "cookie", "path", NULL};
    char f[64];
    if (!json_is_object(m))
        return rt_err(err, WLM_EINVAL, where, "field '%s': must be an object", where);
    if (check_keys(m, keys, where, err))
        return err ? err->code : -WLM_EINVAL;
    if (json_object_size(m) > 1)
        return rt_err(err, WLM_EINVAL, where, "field '%s': give one of header, cookie, path",
                      where);
    const char *s = NULL;
    if (get_str(m, "header", where, 0, &s, err))
        return -WLM_EINVAL;
    if (s) {
        snprintf(f, sizeof f, "%s.header", where);
        const char *colon = strchr(s, ':');
        if (!colon || colon == s)
            return rt_err(err, WLM_EINVAL, f, "field '%s': must be \"Name: value\"", f);
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        c->match.kind = ROUTER_MATCH_HEADER;
        c->match.name = rt_strndup(s, (size_t)(colon - s));
        c->match.value = xstrdup(v);
        return 0;
    }
    if (get_str(m, "cookie", where, 0, &s, err))
        return -WLM_EINVAL;
    if (s) {
        snprintf(f, sizeof f, "%s.cookie", where);
        const char *eq = strchr(s, '=');
        if (!eq || eq == s)
            return rt_err(err, WLM_EINVAL, f, "field '%s': must be \"name=value\"", f);
        c->match.kind = ROUTER_MATCH_COOKIE;
        c->match.name = rt_strndup(s, (size_t)(eq - s));
        c->match.value = xstrdup(eq + 1);
        return 0;
    }
    if (get_str(m, "path", where, 0, &s, err))
        return -WLM_EINVAL;
    if (s) {
        snprintf(f, sizeof f, "%s.path", where);
        if (s[0] != '/')
            return rt_err(err, WLM_EINVAL, f, "field '%s': must start with /", f);
        c->match.kind = ROUTER_MATCH_PATH;
        c->match.name = xstrdup(s);
        return 0;
    }
    return 0;
}

static int parse_app(struct router_app *app, json_t *ja, size_t ai, struct wlm_error *err)
{
    static const char *const keys[] = {"name",      "hosts",         "prefix",      "classes",
                                       "instances", "default_class", "tls",         "max_tunnels",
                                       "tunnel_idle_ms", NULL};
    static const char *const ckeys[] = {"name",      "weight",      "cost", "max_queue",
                                        "max_wait_ms", "match", NULL};
    static const char *const ikeys[] = {"id", "url", "cpu_mhz", "max_concurrency", NULL};
    char where[64], f[64];
    const char *s = NULL;
    snprintf(where, sizeof where, "apps[%zu]", ai);
    if (!json_is_object(ja))
        return rt_err(err, WLM_EINVAL, where, "field '%s': must be an object", where);
    if (check_keys(ja, keys, where, err))
        return -WLM_EINVAL;
    if (get_str(ja, "name", where, 1, &s, err))
        return -WLM_EINVAL;
    if (strchr(s, '/') || strchr(s, '"'))
        return rt_err(err, WLM_EINVAL, "name", "field '%s.name': must not contain / or \"", where);
    app->name = xstrdup(s);
    s = "/";
    if (get_str(ja, "prefix", where, 0, &s, err))
        return -WLM_EINVAL;
    if (s[0] != '/') {
        snprintf(f, sizeof f, "%s.prefix", where);
        return rt_err(err, WLM_EINVAL, f, "field '%s': must start with /", f);
    }
    app->prefix = xstrdup(s);

    json_t *hosts = json_object_get(ja, "hosts");
    if (hosts) {
        snprintf(f, sizeof f, "%s.hosts", where);
        if (!json_is_array(hosts))
            return rt_err(err, WLM_EINVAL, f, "field '%s': must be an array of strings", f);
        app->hosts = calloc(json_array_size(hosts) + 1, sizeof *app->hosts);
        size_t i;
        json_t *h;
        json_array_foreach(hosts, i, h) {
            if (!json_is_string(h) || json_string_length(h) == 0)
                return rt_err(err, WLM_EINVAL, f, "field '%s[%zu]': must be a non-empty string",
                              f, i);
            char *lc = xstrdup(json_string_value(h));
            for (char *p = lc; *p; p++)
                *p = (char)tolower((unsigned char)*p);
            app->hosts[app->nhosts++] = lc;
        }
        for (i = 0; i < app->nhosts; i++)
            if (strcmp(app->hosts[i], "*") == 0) { /* "*" = any host */
                for (size_t k = 0; k < app->nhosts; k++)
                    free(app->hosts[k]);
                app->nhosts = 0;
                break;
            }
    }

    json_t *classes = json_object_get(ja, "classes");
    size_t ncls = 0;
    if (classes) {
        snprintf(f, sizeof f, "%s.classes", where);
        if (!json_is_array(classes))
            return rt_err(err, WLM_EINVAL, f, "field '%s': must be an array", f);
        ncls = json_array_size(classes);
    }
    app->classes = calloc(ncls ? ncls : 1, sizeof *app->classes);
    if (ncls == 0) { /* an app without classes has one flow: "default" */
        app->nclasses = 1;
        app->classes[0] = (struct router_class){.name = xstrdup("default"), .weight = 1,
                                                .cost = 1, .max_queue = 1000,
                                                .max_wait_ms = 10000};
    }
    for (size_t c = 0; c < ncls; c++) {
        json_t *jc = json_array_get(classes, c);
        char cw[64];
        snprintf(cw, sizeof cw, "%s.classes[%zu]", where, c);
        struct router_class *cl = &app->classes[c];
        app->nclasses = c + 1;
        *cl = (struct router_class){.weight = 1, .cost = 1, .max_queue = 1000,
                                    .max_wait_ms = 10000};
        if (!json_is_object(jc))
            return rt_err(err, WLM_EINVAL, cw, "field '%s': must be an object", cw);
        if (check_keys(jc, ckeys, cw, err) || get_str(jc, "name", cw, 1, &s, err))
            return -WLM_EINVAL;
        if (strchr(s, '/') || strchr(s, '"'))
            return rt_err(err, WLM_EINVAL, "name", "field '%s.name': must not contain / or \"",
                          cw);
        for (size_t k = 0; k < c; k++)
            if (strcmp(app->classes[k].name, s) == 0)
                return rt_err(err, WLM_EINVAL, "name", "field '%s.name': duplicate class '%s'",
                              cw, s);
        cl->name = xstrdup(s);
        double q = cl->max_queue, w = cl->max_wait_ms;
        if (get_num(jc, "weight", cw, 1e-6, 1e9, &cl->weight, err) ||
            get_num(jc, "cost", cw, 1e-9, 1e18, &cl->cost, err) ||
            get_num(jc, "max_queue", cw, 0, 1e7, &q, err) ||
            get_num(jc, "max_wait_ms", cw, 1, 3.6e6, &w, err))
            return -WLM_EINVAL;
        cl->max_queue = (unsigned)q;
        cl->max_wait_ms = (unsigned)w;
        json_t *m = json_object_get(jc, "match");
        if (m) {
            char mw[64];
            snprintf(mw, sizeof mw, "%s.match", cw);
            if (parse_match(cl, m, mw, err))
                return -WLM_EINVAL;
        }
    }
    app->default_class = 0;
    s = NULL;
    if (get_str(ja, "default_class", where, 0, &s, err))
        return -WLM_EINVAL;
    if (s) {
        size_t c;
        for (c = 0; c < app->nclasses; c++)
            if (strcmp(app->classes[c].name, s) == 0)
                break;
        if (c == app->nclasses) {
            snprintf(f, sizeof f, "%s.default_class", where);
            return rt_err(err, WLM_EINVAL, f, "field '%s': no class named '%s'", f, s);
        }
        app->default_class = c;
    } else {
        /* Default: the first class without a rule, else the first class. */
        for (size_t c = 0; c < app->nclasses; c++)
            if (app->classes[c].match.kind == ROUTER_MATCH_NONE) {
                app->default_class = c;
                break;
            }
    }

    json_t *tls = json_object_get(ja, "tls");
    if (tls) {
        static const char *const tkeys[] = {"cert", "key", NULL};
        char tw[64];
        snprintf(tw, sizeof tw, "%s.tls", where);
        if (!json_is_object(tls))
            return rt_err(err, WLM_EINVAL, tw, "field '%s': must be an object {\"cert\":FILE,\"key\":FILE}", tw);
        const char *cert = NULL, *key = NULL;
        if (check_keys(tls, tkeys, tw, err) || get_str(tls, "cert", tw, 1, &cert, err) ||
            get_str(tls, "key", tw, 1, &key, err))
            return -WLM_EINVAL;
        app->tls_cert = xstrdup(cert);
        app->tls_key = xstrdup(key);
    }
    double mt = 1000, ti = 300000;
    if (get_num(ja, "max_tunnels", where, 0, 1e7, &mt, err) ||
        get_num(ja, "tunnel_idle_ms", where, 1, 8.64e7, &ti, err))
        return -WLM_EINVAL;
    app->max_tunnels = (unsigned)mt;
    app->tunnel_idle_ms = (unsigned)ti;

    json_t *insts = json_object_get(ja, "instances");
    snprintf(f, sizeof f, "%s.instances", where);
    if (insts && !json_is_array(insts))
        return rt_err(err, WLM_EINVAL, f, "field '%s': must be an array", f);
    size_t ni = insts ? json_array_size(insts) : 0;
    app->instances = calloc(ni ? ni : 1, sizeof *app->instances);
    for (size_t i = 0; i < ni; i++) {
        json_t *ji = json_array_get(insts, i);
        char iw[64];
        snprintf(iw, sizeof iw, "%s.instances[%zu]", where, i);
        struct router_instance_cfg *in = &app->instances[i];
        app->ninstances = i + 1;
        if (!json_is_object(ji))
            return rt_err(err, WLM_EINVAL, iw, "field '%s': must be an object", iw);
        if (check_keys(ji, ikeys, iw, err))
            return -WLM_EINVAL;
        const char *url = NULL, *id = NULL;
        if (get_str(ji, "url", iw, 1, &url, err))
            return -WLM_EINVAL;
        if (get_str(ji, "id", iw, 0, &id, err))
            return -WLM_EINVAL;
        in->url = xstrdup(url);
        in->id = xstrdup(id ? id : url);
        char uf[80];
        snprintf(uf, sizeof uf, "%s.url", iw);
        if (parse_url(in, url, uf, err))
            return -WLM_EINVAL;
        double mhz = 1000, mc = 0;
        if (get_num(ji, "cpu_mhz", iw, 1e-3, 1e9, &mhz, err) ||
            get_num(ji, "max_concurrency", iw, 0, 1e6, &mc, err))
            return -WLM_EINVAL;
        in->cpu_mhz = mhz;
        in->max_concurrency = (unsigned)mc;
    }
    return 0;
}

int router_config_parse(const char *json, size_t len, struct router_config **out,
                        struct wlm_error *err)
{
    static const char *const keys[] = {"limit", "apps", "upstream_timeout_ms", "retry_after_s",
                                       NULL};
    json_error_t je;
    *out = NULL;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return rt_err(err, WLM_EINVAL, "", "invalid JSON at line %d column %d: %s", je.line,
                      je.column, je.text);
    struct router_config *cfg = calloc(1, sizeof *cfg);
    int rc = -WLM_EINVAL;
    if (!cfg) {
        json_decref(root);
        return rt_err(err, ENOMEM, "", "out of memory");
    }
    cfg->limit = 64;
    cfg->upstream_timeout_ms = 30000;
    cfg->retry_after_s = 1;
    if (!json_is_object(root)) {
        rt_err(err, WLM_EINVAL, "", "configuration must be a JSON object");
        goto fail;
    }
    if (check_keys(root, keys, "", err))
        goto fail;
    double lim = cfg->limit, to = cfg->upstream_timeout_ms, ra = cfg->retry_after_s;
    if (get_num(root, "limit", "", 1, 1e6, &lim, err) ||
        get_num(root, "upstream_timeout_ms", "", 1, 3.6e6, &to, err) ||
        get_num(root, "retry_after_s", "", 0, 3600, &ra, err))
        goto fail;
    cfg->limit = (unsigned)lim;
    cfg->upstream_timeout_ms = (unsigned)to;
    cfg->retry_after_s = (unsigned)ra;
    json_t *apps = json_object_get(root, "apps");
    if (apps && !json_is_array(apps)) {
        rt_err(err, WLM_EINVAL, "apps", "field 'apps': must be an array");
        goto fail;
    }
    size_t na = apps ? json_array_size(apps) : 0;
    cfg->apps = calloc(na ? na : 1, sizeof *cfg->apps);
    for (size_t a = 0; a < na; a++) {
        cfg->napps = a + 1;
        if (parse_app(&cfg->apps[a], json_array_get(apps, a), a, err))
            goto fail;
        for (size_t b = 0; b < a; b++)
            if (strcmp(cfg->apps[b].name, cfg->apps[a].name) == 0) {
                char f[64];
                snprintf(f, sizeof f, "apps[%zu].name", a);
                rt_err(err, WLM_EINVAL, f, "field '%s': duplicate app '%s'", f,
                       cfg->apps[a].name);
                goto fail;
            }
        cfg->nflows += cfg->apps[a].nclasses;
    }
    cfg->flows = calloc(cfg->nflows ? cfg->nflows : 1, sizeof *cfg->flows);
    size_t fl = 0;
    for (size_t a = 0; a < cfg->napps; a++)
        for (size_t c = 0; c < cfg->apps[a].nclasses; c++) {
            cfg->apps[a].classes[c].flow = fl;
            cfg->flows[fl++] = (struct router_flow_ref){a, c};
        }
    json_decref(root);
    *out = cfg;
    return 0;
fail:
    json_decref(root);
    router_config_free(cfg);
    return rc;
}

const char *router_flow_name(const struct router_config *cfg, size_t flow, char *buf, size_t size)
{
    if (flow >= cfg->nflows) {
        snprintf(buf, size, "?");
        return buf;
    }
    const struct router_app *a = &cfg->apps[cfg->flows[flow].app];
    snprintf(buf, size, "%s/%s", a->name, a->classes[cfg->flows[flow].cls].name);
    return buf;
}

long router_config_find_flow(const struct router_config *cfg, const char *name)
{
    char buf[512];
    for (size_t f = 0; f < cfg->nflows; f++)
        if (strcmp(router_flow_name(cfg, f, buf, sizeof buf), name) == 0)
            return (long)f;
    return -1;
}

/* ---------------------------------------------------------------- classifier */

const struct router_hdr *router_hdr_find(const struct router_hdr *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (rt_ieq(h[i].name, h[i].name_len, name))
            return &h[i];
    return NULL;
}

static int host_matches(const struct router_app *app, const char *host, size_t hl)
{
    if (app->nhosts == 0)
        return 1;
    if (!host)
        return 0;
    /* Strip ":port" (but not inside an IPv6 literal's brackets). */
    for (size_t i = hl; i > 0; i--) {
        if (host[i - 1] == ']')
            break;
        if (host[i - 1] == ':') {
            hl = i - 1;
            break;
        }
    }
    for (size_t i = 0; i < app->nhosts; i++)
        if (rt_ieq(host, hl, app->hosts[i]))
            return 1;
    return 0;
}

/* Path prefix match on segment-agnostic bytes; the query is not part of it. */
static int path_has_prefix(const char *path, size_t pl, const char *prefix)
{
    size_t n = strlen(prefix);
    size_t q = 0;
    while (q < pl && path[q] != '?' && path[q] != '#')
        q++;
    return q >= n && memcmp(path, prefix, n) == 0;
}

static int cookie_matches(const struct router_hdr *h, size_t nh, const struct router_match *m)
{
    size_t nl = strlen(m->name), vl = strlen(m->value);
    for (size_t i = 0; i < nh; i++) {
        if (!rt_ieq(h[i].name, h[i].name_len, "cookie"))
            continue;
        const char *p = h[i].value, *end = p + h[i].value_len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ';'))
                p++;
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *e = semi ? semi : end;
            const char *eq = memchr(p, '=', (size_t)(e - p));
            if (eq && (size_t)(eq - p) == nl && memcmp(p, m->name, nl) == 0 &&
                (size_t)(e - eq - 1) == vl && memcmp(eq + 1, m->value, vl) == 0)
                return 1;
            p = e;
        }
    }
    return 0;
}

static int class_matches(const struct router_class *c, const struct router_reqinfo *ri)
{
    switch (c->match.kind) {
    case ROUTER_MATCH_NONE:
        return 0;
    case ROUTER_MATCH_HEADER: {
        for (size_t i = 0; i < ri->nheaders; i++) {
            const struct router_hdr *h = &ri->headers[i];
            if (!rt_ieq(h->name, h->name_len, c->match.name))
                continue;
            size_t vl = strlen(c->match.value);
            if (h->value_len == vl && memcmp(h->value, c->match.value, vl) == 0)
                return 1;
        }
        return 0;
    }
    case ROUTER_MATCH_COOKIE:
        return cookie_matches(ri->headers, ri->nheaders, &c->match);
    case ROUTER_MATCH_PATH:
        return ri->path && path_has_prefix(ri->path, ri->path_len, c->match.name);
    }
    return 0;
}

long router_classify(const struct router_config *cfg, const struct router_reqinfo *ri)
{
    long best = -1;
    size_t best_len = 0;
    const char *path = ri->path ? ri->path : "/";
    size_t pl = ri->path ? ri->path_len : 1;
    for (size_t a = 0; a < cfg->napps; a++) {
        const struct router_app *app = &cfg->apps[a];
        if (!host_matches(app, ri->host, ri->host_len) || !path_has_prefix(path, pl, app->prefix))
            continue;
        size_t l = strlen(app->prefix);
        if (best < 0 || l > best_len)
            best = (long)a, best_len = l;
    }
    if (best < 0)
        return -WLM_ENOTFOUND;
    const struct router_app *app = &cfg->apps[best];
    struct router_reqinfo r = *ri;
    r.path = path;
    r.path_len = pl;
    for (size_t c = 0; c < app->nclasses; c++)
        if (class_matches(&app->classes[c], &r))
            return (long)app->classes[c].flow;
    return (long)app->classes[app->default_class].flow;
}
