/*
 * auth.h - identities, roles and the audit trail of the controller's API
 * (private to the controller library).
 *
 * auth.c    who is calling (bootstrap token or a stored token) and what each
 *           role may do: one policy row per route;
 * tokens.c  the token store (hashed secrets) and /v1/tokens, /v1/whoami;
 * audit.c   the audit log (every control action and every refusal) and
 *           /v1/audit.
 */
#ifndef WLM_CONTROLLER_AUTH_H
#define WLM_CONTROLLER_AUTH_H

#include "common.h"

struct controller;

/* Roles as bits, so a policy row lists who may call a route. */
enum ctl_role {
    CTL_ROLE_ADMIN = 1,
    CTL_ROLE_OPERATOR = 2,
    CTL_ROLE_SUBMITTER = 4,
    CTL_ROLE_AGENT = 8,
    CTL_ROLE_ROUTER = 16,
};

/* "admin" -> CTL_ROLE_ADMIN; 0 when unknown. */
int ctl_role_parse(const char *name);
const char *ctl_role_name(int role);

/* Create the tables, install the authenticator on the API server and add
 * the /v1/tokens, /v1/whoami, /v1/audit and /v1/router/config routes. */
int ctl_auth_init(struct controller *c, struct wlm_error *err);

/* tokens.c: look a presented credential up. 1 and *p filled when it is a
 * live stored token; 0 when unknown, malformed or revoked; <0 on a database
 * error. */
int ctl_tokens_lookup(struct controller *c, const char *bearer, struct wlm_principal *p);
int ctl_tokens_init(struct controller *c, struct wlm_error *err);
void ctl_tokens_routes(struct controller *c);

/* audit.c */
int ctl_audit_init(struct controller *c, struct wlm_error *err);
void ctl_audit_routes(struct controller *c);
/* One entry: who (principal, may be empty = anonymous), what (method +
 * path), the result (HTTP status) and a detail text (may be NULL). */
void ctl_audit_record(struct controller *c, const struct wlm_principal *p, const char *peer,
                      const char *method, const char *path, int status, const char *detail);
/* Write the queued entries now (one transaction). */
void ctl_audit_flush(struct controller *c);
/* At stop: flush and close the flush timer; 1 when a handle was closed (`cb`
 * runs for it). */
int ctl_audit_close(struct controller *c, uv_close_cb cb);
/* At free: flush what is left and release the queue. */
void ctl_audit_free(struct controller *c);

#endif
