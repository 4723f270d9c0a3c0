/*
 * auth.c - who may call what on the controller's API.
 *
 * Every token-protected route is authenticated here (the server calls
 * auth_check after routing): the bootstrap token (configured or generated,
 * as before roles existed) is the principal "bootstrap" with role admin;
 * any other credential must be a live stored token (tokens.c), looked up on
 * every request so that a revocation takes effect at once.
 *
 * Authorisation is one table, `policy`, with a row per route: the roles that
 * may call it. admin may call everything. A route that has no row (say, an
 * endpoint added later without a row here) is admin-only: forgetting the
 * table fails closed. Two rules need the request itself:
 *   - an agent token speaks for one node: the node in the path
 *     (/v1/nodes/:name...), in a registration body, or the node that carries
 *     out the action it completes must be its own;
 *   - a submitter sees only its own jobs: jobsched/api.c filters by
 *     req->principal (jobs record their owner).
 * Refusals are 401 (no or unknown credential) and 403 (known, not allowed),
 * with a reason that names the role and the route.
 */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "internal.h"

static const struct {
    int bit;
    const char *name;
} roles[] = {
    {CTL_ROLE_ADMIN, "admin"}, {CTL_ROLE_OPERATOR, "operator"}, {CTL_ROLE_SUBMITTER, "submitter"},
    {CTL_ROLE_AGENT, "agent"}, {CTL_ROLE_ROUTER, "router"},
};

int ctl_role_parse(const char *name)
{
    for (size_t i = 0; name && i < WLM_ARRAY_LEN(roles); i++)
        if (strcmp(roles[i].name, name) == 0)
            return roles[i].bit;
    return 0;
}

const char *ctl_role_name(int role)
{
    for (size_t i = 0; i < WLM_ARRAY_LEN(roles); i++)
        if (roles[i].bit == role)
            return roles[i].name;
    return "";
}

#define OP CTL_ROLE_OPERATOR
#define SUB CTL_ROLE_SUBMITTER
#define AG CTL_ROLE_AGENT
#define RT CTL_ROLE_ROUTER

/* Besides admin. "operator: apps, jobs and placement, no nodes or tokens":
 * it may read the node list (placement shows the nodes anyway) but not
 * register, remove or speak for a node. */
static const struct {
    const char *method, *route;
    int roles;
} policy[] = {
    {"POST", "/v1/nodes", AG},
    {"GET", "/v1/nodes", OP},
    {"GET", "/v1/nodes/:name", OP | AG},
    {"DELETE", "/v1/nodes/:name", 0},
    {"POST", "/v1/nodes/:name/heartbeat", AG},
    {"POST", "/v1/actions/:id/complete", AG},
    {"POST", "/v1/apps", OP},
    {"GET", "/v1/apps", OP},
    {"GET", "/v1/apps/:name", OP},
    {"DELETE", "/v1/apps/:name", OP},
    {"POST", "/v1/jobs", OP | SUB},
    {"GET", "/v1/jobs", OP | SUB},
    {"GET", "/v1/jobs/:id", OP | SUB},
    {"DELETE", "/v1/jobs/:id", OP | SUB},
    {"GET", "/v1/jobs/:id/utility", OP | SUB},
    {"POST", "/v1/jobs/:id/usage", OP},
    {"POST", "/v1/jobs/:id/state", OP},
    {"GET", "/v1/jobqueue/hypothetical", OP},
    {"GET", "/v1/jobprofiles", OP},
    {"GET", "/v1/placement", OP},
    {"GET", "/v1/placement/snapshot", OP},
    {"GET", "/v1/summary", OP},
    {"GET", "/v1/utilities", OP},
    {"GET", "/v1/events", OP},
    {"GET", "/v1/flows", OP},
    {"GET", "/v1/router/config", RT},
    {"GET", "/v1/whoami", OP | SUB | AG | RT},
    {"POST", "/v1/tokens", 0},
    {"GET", "/v1/tokens", 0},
    {"DELETE", "/v1/tokens/:id", 0},
    {"GET", "/v1/audit", 0},
    {"GET", "/v1/energy", OP},
    {"GET", "/v1/energy/jobs/:id", OP | SUB},
    {"GET", "/v1/energy/apps/:name", OP},
    {"GET", "/v1/power", OP},
    {"PUT", "/v1/power", OP},
    {"PUT", "/v1/nodes/:name/power", 0},
};

static int allowed_roles(const char *method, const char *route)
{
    if (strcmp(method, "HEAD") == 0)
        method = "GET";
    for (size_t i = 0; route && i < WLM_ARRAY_LEN(policy); i++)
        if (strcmp(policy[i].method, method) == 0 && strcmp(policy[i].route, route) == 0)
            return policy[i].roles | CTL_ROLE_ADMIN;
    return CTL_ROLE_ADMIN;
}

/* The node an agent's request speaks for, or NULL when the route names
 * none. *out_buf receives a copy when it comes from the body. */
static const char *agent_target(struct controller *c, struct wlm_http_req *req, char *buf, size_t n)
{
    const char *route = req->route;
    if (strncmp(route, "/v1/nodes/:name", 15) == 0 && req->nparams > 0)
        return req->params[0];
    if (strcmp(route, "/v1/nodes") == 0) {
        json_t *b = req->body_len ? json_loadb(req->body, req->body_len, 0, NULL) : NULL;
        const char *name = json_string_value(json_object_get(b, "name"));
        wlm_strlcpy(buf, name ? name : "", n);
        json_decref(b);
        return buf;
    }
    if (strcmp(route, "/v1/actions/:id/complete") == 0 && req->nparams > 0) {
        for (size_t i = 0; i < c->nplan; i++)
            if (strcmp(c->plan[i].id, req->params[0]) == 0) {
                wlm_strlcpy(buf, c->plan[i].node, n);
                return buf;
            }
        for (size_t i = 0; i < c->nsettle; i++)
            if (strcmp(c->settle[i].id, req->params[0]) == 0) {
                wlm_strlcpy(buf, c->settle[i].node, n);
                return buf;
            }
        return NULL; /* unknown action: the handler ignores it, nothing to protect */
    }
    return NULL;
}

static int auth_check(void *ud, struct wlm_http_req *req, const char *bearer, char *why,
                      size_t whylen)
{
    struct controller *c = ud;
    struct wlm_principal *p = &req->principal;
    memset(p, 0, sizeof *p);
    if (!bearer || !bearer[0]) {
        snprintf(why, whylen, "missing bearer token");
        return 401;
    }
    if (c->token[0] && wlm_secret_equal(bearer, c->token)) {
        wlm_strlcpy(p->name, "bootstrap", sizeof p->name);
        wlm_strlcpy(p->role, "admin", sizeof p->role);
    } else {
        int rc = ctl_tokens_lookup(c, bearer, p);
        if (rc < 0) {
            snprintf(why, whylen, "cannot check the token: the token store failed");
            return 401;
        }
        if (rc == 0) {
            /* The audit log names the token tried (its public id), never
             * the secret. */
            if (strncmp(bearer, "wlm_", 4) == 0 && strlen(bearer) > 20 && bearer[20] == '_')
                snprintf(p->name, sizeof p->name, "token:%.16s", bearer + 4);
            snprintf(why, whylen, "invalid or revoked bearer token");
            return 401;
        }
    }
    int role = ctl_role_parse(p->role);
    if (!(allowed_roles(req->method, req->route) & role)) {
        snprintf(why, whylen, "role '%s' (token '%s') may not %s %s", p->role, p->name, req->method,
                 req->path);
        return 403;
    }
    /* Job-scoped routes outside the job API (which filters by owner itself):
     * another owner's job does not exist for a submitter. */
    if (role == CTL_ROLE_SUBMITTER && !strcmp(req->route, "/v1/energy/jobs/:id") &&
        req->nparams > 0) {
        char *end = NULL;
        long long id = strtoll(req->params[0], &end, 10);
        const struct jobsched_job *j = end && !*end && id > 0 ? jobsched_get(c->js, id) : NULL;
        if (!j || !j->owner || strcmp(j->owner, p->name)) {
            snprintf(why, whylen, "no job %s", req->params[0]);
            return 404;
        }
    }
    if (role == CTL_ROLE_AGENT) {
        char buf[128];
        const char *node = agent_target(c, req, buf, sizeof buf);
        if (node && strcmp(node, p->node) != 0) {
            snprintf(why, whylen, "agent token '%s' speaks for node '%s', not '%s'", p->name,
                     p->node, node);
            return 403;
        }
    }
    return 0;
}

/* Reads are not control actions: they are audited only when refused.
 * Heartbeats are telemetry every few seconds per node: only refusals too. */
static void auth_answered(void *ud, struct wlm_http_req *req, int status)
{
    struct controller *c = ud;
    int read = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
    int heartbeat = req->route && strcmp(req->route, "/v1/nodes/:name/heartbeat") == 0;
    if ((read || heartbeat) && status != 401 && status != 403)
        return;
    ctl_audit_record(c, &req->principal, req->peer, req->method, req->url, status,
                     req->audit[0] ? req->audit : NULL);
}

int ctl_auth_init(struct controller *c, struct wlm_error *err)
{
    int rc;
    if ((rc = ctl_tokens_init(c, err)) || (rc = ctl_audit_init(c, err)))
        return rc;
    struct wlm_http_auth a = {.check = auth_check, .answered = auth_answered, .ud = c};
    wlm_http_server_set_auth(c->http, &a);
    ctl_tokens_routes(c);
    ctl_audit_routes(c);
    return 0;
}
