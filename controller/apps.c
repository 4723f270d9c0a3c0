/* apps.c - web applications: deploy, list, show, delete; persisted specs.
 *
 * An application is what operators deploy: a command that serves HTTP on a
 * port, how much memory an instance needs, how many instances it may have,
 * how the router recognises its requests and, per service class, the
 * response-time goal. The control cycle turns these into router flows,
 * instances on nodes and utility functions. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int valid_ident(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len == 0 || len > max)
        return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
            return 0;
    return 1;
}

static int parse_class(json_t *cl, size_t i, struct ctl_app_class *out, struct wlm_error *err)
{
    static const char *const keys[] = {"name", "goal_ms", "weight", "match", "max_queue",
                                       "max_wait_ms", NULL};
    char where[32];
    snprintf(where, sizeof(where), "classes[%zu]", i);
    const char *name = NULL;
    int rc;
    out->weight = 1;
    out->max_queue = 1000;
    out->max_wait_ms = 5000;
    if ((rc = wlm_json_check_keys(cl, keys, where, err)))
        return rc;
    if ((rc = wlm_json_get_str(cl, "name", 1, &name, err)) ||
        (rc = wlm_json_get_num(cl, "goal_ms", 1, 0.1, 3.6e6, &out->goal_ms, err)) ||
        (rc = wlm_json_get_num(cl, "weight", 0, 1e-3, 1e6, &out->weight, err)) ||
        (rc = wlm_json_get_int(cl, "max_queue", 0, 1, 1000000, &out->max_queue, err)) ||
        (rc = wlm_json_get_int(cl, "max_wait_ms", 0, 1, 3600000, &out->max_wait_ms, err))) {
        char msg[sizeof(err->msg)];
        wlm_strlcpy(msg, err->msg, sizeof(msg));
        return wlm_error_setf(err, WLM_EINVAL, err->field, "%s.%s", where, msg);
    }
    if (!valid_ident(name, 31))
        return wlm_error_setf(err, WLM_EINVAL, "name", "%s.name: '%s' must be 1-31 letters, "
                              "digits, '-', '_' or '.'", where, name);
    wlm_strlcpy(out->name, name, sizeof(out->name));
    json_t *m = json_object_get(cl, "match");
    if (m && !json_is_object(m))
        return wlm_error_setf(err, WLM_EINVAL, "match", "%s.match: expected an object like "
                              "{\"header\": \"X-Class: gold\"}", where);
    return 0;
}

int ctl_app_parse(const json_t *body, struct ctl_app *a, struct wlm_error *err)
{
    static const char *const keys[] = {"name", "command", "memory_mb", "min_instances",
                                       "max_instances", "max_cpu_mhz", "hosts", "prefix",
                                       "classes", "default_class", "user", NULL};
    const char *name = NULL, *cmd = NULL, *prefix = "/", *defcls = NULL, *user = NULL;
    int rc;
    memset(a, 0, sizeof(*a));
    a->min_instances = 1;
    a->max_instances = 1;
    a->max_cpu_mhz = 0;
    if ((rc = wlm_json_check_keys(body, keys, NULL, err)) ||
        (rc = wlm_json_get_str(body, "name", 1, &name, err)) ||
        (rc = wlm_json_get_str(body, "command", 1, &cmd, err)) ||
        (rc = wlm_json_get_num(body, "memory_mb", 1, 1, 1 << 30, &a->memory_mb, err)) ||
        (rc = wlm_json_get_int(body, "min_instances", 0, 0, 10000, &a->min_instances, err)) ||
        (rc = wlm_json_get_int(body, "max_instances", 0, 1, 10000, &a->max_instances, err)) ||
        (rc = wlm_json_get_num(body, "max_cpu_mhz", 0, 0, 1e7, &a->max_cpu_mhz, err)) ||
        (rc = wlm_json_get_str(body, "prefix", 0, &prefix, err)) ||
        (rc = wlm_json_get_str(body, "default_class", 0, &defcls, err)) ||
        (rc = wlm_json_get_str(body, "user", 0, &user, err)))
        return rc;
    /* The unprivileged user its instances run as (the agent's --app-user,
     * wlm-app, when absent); a login name, checked again by the agent. */
    if (user && (!*user || strlen(user) > 32 || (*user >= '0' && *user <= '9') || *user == '-' ||
                 strspn(user, "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(user)))
        return wlm_error_setf(err, WLM_EINVAL, "user",
                              "user: '%s' must be 1-32 of [a-z0-9_-], not starting with a digit "
                              "or '-'",
                              user);
    if (!valid_ident(name, 63))
        return wlm_error_setf(err, WLM_EINVAL, "name",
                              "name: '%s' must be 1-63 letters, digits, '-', '_' or '.'", name);
    if (a->min_instances > a->max_instances)
        return wlm_error_setf(err, WLM_EINVAL, "min_instances",
                              "min_instances: %lld is more than max_instances %lld",
                              a->min_instances, a->max_instances);
    if (!strstr(cmd, "{port}"))
        return wlm_error_setf(err, WLM_EINVAL, "command",
                              "command: must contain {port}, where the instance listens");
    if (prefix[0] != '/')
        return wlm_error_setf(err, WLM_EINVAL, "prefix", "prefix: must start with '/'");
    json_t *hosts = json_object_get(body, "hosts");
    if (hosts && !json_is_array(hosts))
        return wlm_error_setf(err, WLM_EINVAL, "hosts", "hosts: expected an array of strings");
    for (size_t i = 0; i < json_array_size(hosts); i++)
        if (!json_is_string(json_array_get(hosts, i)))
            return wlm_error_setf(err, WLM_EINVAL, "hosts", "hosts[%zu]: expected a string", i);
    json_t *classes = json_object_get(body, "classes");
    if (!json_is_array(classes) || json_array_size(classes) == 0)
        return wlm_error_setf(err, WLM_EINVAL, "classes",
                              "classes: required, a non-empty array of {name, goal_ms}");
    if (json_array_size(classes) > CTL_APP_MAX_CLASSES)
        return wlm_error_setf(err, WLM_EINVAL, "classes", "classes: at most %d",
                              CTL_APP_MAX_CLASSES);
    for (size_t i = 0; i < json_array_size(classes); i++) {
        if ((rc = parse_class(json_array_get(classes, i), i, &a->classes[i], err)))
            return rc;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(a->classes[j].name, a->classes[i].name))
                return wlm_error_setf(err, WLM_EINVAL, "classes",
                                      "classes[%zu].name: '%s' appears twice", i,
                                      a->classes[i].name);
    }
    a->nclasses = json_array_size(classes);
    a->default_class = 0;
    if (defcls) {
        size_t i;
        for (i = 0; i < a->nclasses && strcmp(a->classes[i].name, defcls); i++)
            ;
        if (i == a->nclasses)
            return wlm_error_setf(err, WLM_EINVAL, "default_class",
                                  "default_class: '%s' is not one of the classes", defcls);
        a->default_class = i;
    }
    wlm_strlcpy(a->name, name, sizeof(a->name));
    a->spec = json_deep_copy(body);
    return a->spec ? 0 : wlm_error_set(err, WLM_EINTERNAL, "out of memory");
}

void ctl_app_fini(struct ctl_app *a)
{
    json_decref(a->spec);
    a->spec = NULL;
}

struct ctl_app *ctl_app_find(struct controller *c, const char *name)
{
    for (size_t i = 0; i < c->napps; i++)
        if (!strcmp(c->apps[i].name, name))
            return &c->apps[i];
    return NULL;
}

static int load_app(const json_t *doc, void *ud)
{
    struct controller *c = ud;
    const char *text = json_string_value(json_object_get(doc, "spec"));
    json_t *spec = text ? json_loads(text, 0, NULL) : NULL;
    struct ctl_app a;
    struct wlm_error perr = {0};
    if (!spec || ctl_app_parse(spec, &a, &perr)) {
        /* A row we wrote ourselves should always parse; keep going with
         * the rest rather than refuse to start. */
        wlm_errorlog("controller", "stored app spec unreadable", "detail=\"%s\"", perr.msg);
        json_decref(spec);
        return 0;
    }
    json_decref(spec);
    struct ctl_app *p = realloc(c->apps, (c->napps + 1) * sizeof(*p));
    if (!p) {
        ctl_app_fini(&a);
        return 1;
    }
    c->apps = p;
    c->apps[c->napps++] = a;
    return 0;
}

int ctl_apps_load(struct controller *c, struct wlm_error *err)
{
    int rc = wlm_store_scan(c->store, "apps", "created_at", load_app, c, err);
    if (rc == 1)
        return wlm_error_set(err, WLM_EINTERNAL, "out of memory");
    return rc;
}

void ctl_apps_free(struct controller *c)
{
    for (size_t i = 0; i < c->napps; i++)
        ctl_app_fini(&c->apps[i]);
    free(c->apps);
    c->apps = NULL;
    c->napps = 0;
}

static json_t *app_json(const struct ctl_app *a)
{
    json_t *o = json_deep_copy(a->spec);
    json_object_set_new(o, "instances", json_integer((json_int_t)a->ninstances));
    return o;
}

/* The stored created_at of an app (a redeploy keeps it: SQLite checks NOT
 * NULL before an upsert turns into an update, so it must be sent again). */
struct created_q {
    const char *name;
    json_t *t;
};

static int find_created(const json_t *doc, void *ud)
{
    struct created_q *q = ud;
    const char *n = json_string_value(json_object_get(doc, "name"));
    if (!n || strcmp(n, q->name))
        return 0;
    q->t = json_incref(json_object_get(doc, "created_at"));
    return 1;
}

static void handle_deploy(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    struct wlm_error err = {0};
    struct ctl_app a;
    json_t *body = wlm_json_parse_object(req->body, req->body_len, &err);
    if (!body || ctl_app_parse(body, &a, &err)) {
        json_decref(body);
        wlm_http_respond_werr(req, &err);
        return;
    }
    json_decref(body);
    struct ctl_app *old = ctl_app_find(c, a.name);
    char *text = wlm_json_dumps(a.spec);
    /* An update keeps the app's created_at (its place in the load order). */
    json_t *doc = json_pack("{s:s,s:s}", "name", a.name, "spec", text ? text : "{}");
    struct created_q cq = {a.name, NULL};
    if (old)
        wlm_store_scan(c->store, "apps", NULL, find_created, &cq, NULL);
    json_object_set_new(doc, "created_at", cq.t ? cq.t : json_real(wlm_now_wall()));
    free(text);
    struct wlm_error serr;
    wlm_error_clear(&serr);
    int ok = wlm_store_put(c->store, "apps", "name", doc, &serr) == 0;
    json_decref(doc);
    if (!ok) {
        ctl_app_fini(&a);
        wlm_http_respond_error(req, wlm_error_http_status(serr.code), wlm_error_name(serr.code),
                               "store app: %s", serr.msg);
        return;
    }
    if (old) {
        a.ninstances = old->ninstances;
        ctl_app_fini(old);
        *old = a;
    } else {
        struct ctl_app *p = realloc(c->apps, (c->napps + 1) * sizeof(*p));
        if (!p) {
            ctl_app_fini(&a);
            wlm_http_respond_error(req, 500, "internal", "out of memory");
            return;
        }
        c->apps = p;
        c->apps[c->napps++] = a;
        old = &c->apps[c->napps - 1];
    }
    wlm_info("controller", "app deployed", "name=%s classes=%zu min=%lld max=%lld", old->name,
             old->nclasses, old->min_instances, old->max_instances);
    c->apps_changed = 1;
    wlm_http_respond_json(req, 201, app_json(old));
}

static void handle_list(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    json_t *arr = json_array();
    for (size_t i = 0; i < c->napps; i++)
        json_array_append_new(arr, app_json(&c->apps[i]));
    wlm_http_respond_json(req, 200, json_pack("{s:o}", "apps", arr));
}

static void handle_get(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    struct ctl_app *a = ctl_app_find(c, req->params[0]);
    if (!a) {
        wlm_http_respond_error(req, 404, "not_found", "no app named '%s'", req->params[0]);
        return;
    }
    wlm_http_respond_json(req, 200, app_json(a));
}

static void handle_delete(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    struct ctl_app *a = ctl_app_find(c, req->params[0]);
    if (!a) {
        wlm_http_respond_error(req, 404, "not_found", "no app named '%s'", req->params[0]);
        return;
    }
    struct wlm_error serr;
    wlm_error_clear(&serr);
    if (wlm_store_del(c->store, "apps", "name", a->name, &serr)) {
        wlm_http_respond_error(req, wlm_error_http_status(serr.code), wlm_error_name(serr.code),
                               "delete app: %s", serr.msg);
        return;
    }
    wlm_info("controller", "app deleted", "name=%s", a->name);
    ctl_app_fini(a);
    size_t idx = (size_t)(a - c->apps);
    memmove(a, a + 1, (c->napps - idx - 1) * sizeof(*a));
    c->napps--;
    c->apps_changed = 1;
    wlm_http_respond(req, 204, NULL, NULL, NULL, 0);
}

void ctl_apps_routes(struct controller *c)
{
    wlm_http_server_route(c->http, "POST", "/v1/apps", 1, handle_deploy, c);
    wlm_http_server_route(c->http, "GET", "/v1/apps", 1, handle_list, c);
    wlm_http_server_route(c->http, "GET", "/v1/apps/:name", 1, handle_get, c);
    wlm_http_server_route(c->http, "DELETE", "/v1/apps/:name", 1, handle_delete, c);
}
