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

#include "cycle.h"

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
    json_decref(a->last_exit);
    a->spec = NULL;
    a->last_exit = NULL;
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

/* ------------------------------------------------------------ checks */

static const char *spec_prefix(const struct ctl_app *a)
{
    const char *p = json_string_value(json_object_get(a->spec, "prefix"));
    return p ? p : "/";
}

/* Do two apps claim the same requests? Same prefix, and either the same
 * host among their hosts or both without hosts (every host). */
static int routes_clash(const struct ctl_app *a, const struct ctl_app *b, char *host, size_t size)
{
    if (strcmp(spec_prefix(a), spec_prefix(b)))
        return 0;
    json_t *ha = json_object_get(a->spec, "hosts"), *hb = json_object_get(b->spec, "hosts");
    if (json_array_size(ha) == 0 && json_array_size(hb) == 0) {
        snprintf(host, size, "any host");
        return 1;
    }
    for (size_t i = 0; i < json_array_size(ha); i++)
        for (size_t k = 0; k < json_array_size(hb); k++) {
            const char *x = json_string_value(json_array_get(ha, i));
            const char *y = json_string_value(json_array_get(hb, k));
            if (x && y && !strcasecmp(x, y)) {
                snprintf(host, size, "host %s", x);
                return 1;
            }
        }
    return 0;
}

/* The largest memory of a READY node (or of any registered node when none is
 * READY); 0 when no node is registered. */
static long long largest_node_mb(const struct controller *c, int *ready_only)
{
    long long best = 0, best_any = 0;
    for (size_t i = 0; i < c->nnodes; i++) {
        if (c->nodes[i].memory_mb > best_any)
            best_any = c->nodes[i].memory_mb;
        if (c->nodes[i].state == CONTROLLER_NODE_READY && c->nodes[i].memory_mb > best)
            best = c->nodes[i].memory_mb;
    }
    *ready_only = best > 0;
    return best > 0 ? best : best_any;
}

int ctl_app_crash_looping(const struct ctl_app *a)
{
    return a->crashes >= 2 && a->restart_after > 0;
}

void ctl_app_reason(struct controller *c, const struct ctl_app *a, char *out, size_t size)
{
    out[0] = '\0';
    if (a->deleting) {
        snprintf(out, size, "being deleted: stopping its instances");
        return;
    }
    double now = wlm_now_wall();
    if (a->restart_after > now) {
        if (a->crashes >= 2)
            snprintf(out, size, "crash-looping: %d starts in a row exited at once; next start in "
                     "%.0f s", a->crashes, a->restart_after - now);
        else
            snprintf(out, size, "its instance exited at once; next start in %.0f s",
                     a->restart_after - now);
        return;
    }
    if (ctl_app_crash_looping(a)) {
        snprintf(out, size, "crash-looping: %d starts in a row exited at once; starting again",
                 a->crashes);
        return;
    }
    if (a->ninstances)
        return;
    int ready;
    long long big = largest_node_mb(c, &ready);
    if (!c->nnodes)
        snprintf(out, size, "no node is registered yet");
    else if (!ready)
        snprintf(out, size, "no node is READY");
    else if (a->memory_mb > (double)big)
        snprintf(out, size, "no node matches: memory_mb %g (largest node has %lld)", a->memory_mb,
                 big);
    else if (a->min_instances == 0)
        snprintf(out, size, "min_instances is 0: started only when the placement finds CPU for it");
}

static json_t *app_json(struct controller *c, const struct ctl_app *a)
{
    json_t *o = json_deep_copy(a->spec);
    json_object_set_new(o, "instances", json_integer((json_int_t)a->ninstances));
    json_object_set_new(o, "state", json_string(a->deleting                    ? "deleting"
                                                : ctl_app_crash_looping(a)   ? "crash-looping"
                                                : a->ninstances                ? "running"
                                                                               : "waiting"));
    char why[256];
    ctl_app_reason(c, a, why, sizeof(why));
    if (why[0])
        json_object_set_new(o, "reason", json_string(why));
    if (a->crashes)
        json_object_set_new(o, "crashes", json_integer(a->crashes));
    if (a->last_exit)
        json_object_set_new(o, "last_exit", json_incref(a->last_exit));
    json_t *list = json_array();
    for (size_t i = 0; i < c->ninsts; i++) {
        const struct ctl_instance *in = &c->insts[i];
        if (strcmp(in->app, a->name))
            continue;
        json_array_append_new(
            list, json_pack("{s:s, s:s, s:s, s:i, s:f, s:s}", "id", in->id, "node", in->node, "host",
                            in->host, "port", in->port, "cpu_mhz", in->cpu_mhz, "state",
                            in->state == CTL_INST_RUNNING    ? "RUNNING"
                            : in->state == CTL_INST_STARTING ? "STARTING"
                                                             : "STOPPING"));
    }
    json_object_set_new(o, "instance_list", list);
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
    if (old && old->deleting) {
        wlm_http_respond_error(req, 409, "conflict",
                               "app '%s' is being deleted (its instances are stopping); deploy it "
                               "again once `wlm app show %s` says it is gone",
                               a.name, a.name);
        ctl_app_fini(&a);
        return;
    }
    /* Two apps on the same host and prefix: the router could send a request
     * to either. */
    for (size_t i = 0; i < c->napps; i++) {
        char host[96];
        if (&c->apps[i] == old || c->apps[i].deleting || !routes_clash(&a, &c->apps[i], host, sizeof(host)))
            continue;
        wlm_http_respond_error(req, 409, "conflict",
                               "prefix: app '%s' already serves prefix %s on %s; give this app "
                               "another prefix or hosts, or delete '%s' first",
                               c->apps[i].name, spec_prefix(&a), host, c->apps[i].name);
        ctl_app_fini(&a);
        return;
    }
    /* An instance that fits no node would never run: say so now, as jobs do. */
    int ready;
    long long big = largest_node_mb(c, &ready);
    if (c->nnodes && a.memory_mb > (double)big) {
        wlm_http_respond_error(req, 422, "unplaceable",
                               "memory_mb: no node matches: memory_mb %g (largest %snode has %lld)",
                               a.memory_mb, ready ? "READY " : "", big);
        ctl_app_fini(&a);
        return;
    }
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
        /* A new spec may fix what crashed: the next start is not delayed. */
        a.last_exit = old->last_exit;
        old->last_exit = NULL;
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
    json_t *out = app_json(c, old);
    if (!c->nnodes)
        json_object_set_new(out, "warning",
                            json_string("no node is registered yet: the app runs once a node with "
                                        "enough memory registers"));
    wlm_http_respond_json(req, 201, out);
}

static void handle_list(struct wlm_http_req *req, void *ud)
{
    struct controller *c = ud;
    json_t *arr = json_array();
    for (size_t i = 0; i < c->napps; i++)
        json_array_append_new(arr, app_json(c, &c->apps[i]));
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
    wlm_http_respond_json(req, 200, app_json(c, a));
}

static void app_remove(struct controller *c, struct ctl_app *a)
{
    ctl_app_fini(a);
    size_t idx = (size_t)(a - c->apps);
    memmove(a, a + 1, (c->napps - idx - 1) * sizeof(*a));
    c->napps--;
    c->apps_changed = 1;
}

static size_t app_instances(const struct controller *c, const char *app)
{
    size_t n = 0;
    for (size_t i = 0; i < c->ninsts; i++)
        n += !strcmp(c->insts[i].app, app);
    return n;
}

/* The spec is forgotten at once (a restart does not bring the app back);
 * the app leaves the router and the placement, and its instances are
 * stopped by ctl_apps_reap once the router no longer uses them. The answer
 * is 202 while instances remain: GET /v1/apps/NAME says 404 when all are
 * gone. */
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
    size_t n = app_instances(c, a->name);
    wlm_info("controller", "app deleted", "name=%s instances=%zu", a->name, n);
    json_t *o = json_pack("{s:s, s:I}", "name", a->name, "instances", (json_int_t)n);
    if (!a->deleting) {
        a->deleting = 1;
        a->deleting_since = wlm_now_mono();
    }
    c->apps_changed = 1;
    ctl_router_push(c, 1);
    ctl_apps_reap(c);
    a = ctl_app_find(c, req->params[0]);
    json_object_set_new(o, "state", json_string(a ? "deleting" : "deleted"));
    wlm_http_respond_json(req, a ? 202 : 200, o);
}

/* The router drained an instance when the configuration it accepted last
 * no longer names it (or there is no router, or it has not answered for
 * long: the instance is stopped anyway). */
static int router_drained(const struct controller *c, const struct ctl_instance *in,
                          const struct ctl_app *a)
{
    if (!c->cfg.router_url[0])
        return 1;
    if (a && wlm_now_mono() - a->deleting_since > 10.0)
        return 1;
    /* An instance whose app was deleted before a restart of this controller:
     * no configuration it pushes names it. */
    if (!a && wlm_now_wall() - c->started_at > 10.0)
        return 1;
    if (!c->router_acked)
        return 0;
    char key[128];
    snprintf(key, sizeof(key), "\"%s\"", in->id);
    return strstr(c->router_acked, key) == NULL;
}

void ctl_apps_reap(struct controller *c)
{
    /* Deleted apps whose instances are all gone leave for good. */
    for (size_t i = 0; i < c->napps;) {
        if (c->apps[i].deleting && !app_instances(c, c->apps[i].name)) {
            wlm_info("controller", "app removed: every instance stopped", "name=%s",
                     c->apps[i].name);
            app_remove(c, &c->apps[i]);
            continue;
        }
        i++;
    }
    if (c->solving || c->nplan)
        return; /* the plan in progress ends first; ctl_dispatch calls again */
    size_t n = 0, waiting = 0;
    for (size_t i = 0; i < c->ninsts; i++) {
        const struct ctl_instance *in = &c->insts[i];
        const struct ctl_app *a = ctl_app_find(c, in->app);
        if (a && !a->deleting)
            continue;
        if (in->state == CTL_INST_STOPPING || router_drained(c, in, a))
            n++;
        else
            waiting++;
    }
    if (waiting)
        ctl_router_push(c, 0);
    if (!n)
        return;
    c->plan = calloc(n, sizeof(*c->plan));
    if (!c->plan)
        return;
    c->plan_seq++;
    for (size_t i = 0; i < c->ninsts; i++) {
        const struct ctl_instance *in = &c->insts[i];
        const struct ctl_app *a = ctl_app_find(c, in->app);
        if ((a && !a->deleting) || (in->state != CTL_INST_STOPPING && !router_drained(c, in, a)))
            continue;
        struct ctl_action *x = &c->plan[c->nplan];
        memset(x, 0, sizeof(*x));
        snprintf(x->id, sizeof(x->id), "d%u-%u-%zu", (unsigned)(wlm_now_wall()) % 100000000u,
                 c->plan_seq, c->nplan);
        x->kind = PLACEMENT_ACT_STOP_INSTANCE;
        wlm_strlcpy(x->node, in->node, sizeof(x->node));
        wlm_strlcpy(x->app, in->app, sizeof(x->app));
        wlm_strlcpy(x->instance, in->id, sizeof(x->instance));
        c->nplan++;
    }
    wlm_info("controller", "stopping the instances of deleted apps", "count=%zu", c->nplan);
    ctl_dispatch(c);
}

/* An instance that ends soon after its start is a crash: each one in a row
 * doubles the wait before the next start (one placement period, two, four,
 * ... at most 5 minutes); an instance that ran a while resets the count. */
void ctl_app_instance_exited(struct controller *c, const char *app, const char *instance,
                             const char *node, json_t *proc)
{
    struct ctl_app *a = ctl_app_find(c, app);
    if (!a || a->deleting)
        return;
    const struct ctl_instance *in = ctl_inst_by_id(c, instance);
    double now = wlm_now_wall();
    double lived = in && in->started_at > 0 ? now - in->started_at : 0;
    json_t *es = json_object_get(proc, "exit_status");
    const char *tail = json_string_value(json_object_get(proc, "output_tail"));
    json_decref(a->last_exit);
    a->last_exit = json_pack("{s:s, s:s, s:f, s:f}", "instance", instance, "node", node, "at", now,
                             "ran_s", lived);
    if (json_is_integer(es))
        json_object_set(a->last_exit, "exit_status", es);
    if (tail)
        json_object_set_new(a->last_exit, "output_tail", json_string(tail));
    double period = (double)c->cfg.placement_period_ms / 1000.0;
    if (lived < 30.0 || lived < 2 * period) {
        a->crashes++;
        double delay = period * (double)(1LL << (a->crashes < 8 ? a->crashes - 1 : 7));
        if (delay > 300)
            delay = 300;
        a->restart_after = now + delay;
    } else {
        a->crashes = 0;
        a->restart_after = 0;
    }
    wlm_warn("controller", a->crashes >= 2 ? "app instance exited: crash-looping" : "app instance exited",
             "app=%s instance=%s node=%s exit_status=%lld ran_s=%.1f crashes=%d next_start_in_s=%.0f",
             app, instance, node, json_is_integer(es) ? (long long)json_integer_value(es) : -1LL,
             lived, a->crashes, a->restart_after > now ? a->restart_after - now : 0);
}

void ctl_apps_routes(struct controller *c)
{
    wlm_http_server_route(c->http, "POST", "/v1/apps", 1, handle_deploy, c);
    wlm_http_server_route(c->http, "GET", "/v1/apps", 1, handle_list, c);
    wlm_http_server_route(c->http, "GET", "/v1/apps/:name", 1, handle_get, c);
    wlm_http_server_route(c->http, "DELETE", "/v1/apps/:name", 1, handle_delete, c);
}
