/* token.c - wlm token create|list|revoke|whoami: per-principal API tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void token_usage(FILE *out)
{
    fprintf(out,
            "Usage: wlm token COMMAND\n"
            "\n"
            "  create --role ROLE [--node NODE] [--name NAME] [--json]\n"
            "        make a token and print its secret (shown once, never stored in clear)\n"
            "        roles: admin, operator (apps, jobs, placement), submitter (its own jobs),\n"
            "        agent (one node: --node is required), router (reads its configuration)\n"
            "  list [--json]     every token: id, name, role, node, created, revoked\n"
            "  revoke ID|NAME    the token stops working at once\n"
            "  whoami            the identity the controller sees for the current token\n"
            "\n"
            "Managing tokens needs an admin token (the bootstrap token is one).\n");
}

static char *fmt_time(json_t *v)
{
    char buf[40];
    if (!json_is_number(v))
        return strdup("-");
    return strdup(wlm_time_format(json_number_value(v), buf, sizeof buf));
}

static const char *str_or(json_t *o, const char *k, const char *def)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s && *s ? s : def;
}

static int token_create(const struct cli_ctx *ctx, int argc, char **argv)
{
    const char *role = NULL, *node = NULL, *name = NULL;
    int as_json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--role") && i + 1 < argc)
            role = argv[++i];
        else if (!strcmp(argv[i], "--node") && i + 1 < argc)
            node = argv[++i];
        else if (!strcmp(argv[i], "--name") && i + 1 < argc)
            name = argv[++i];
        else if (!strcmp(argv[i], "--json"))
            as_json = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            token_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "wlm token create: unknown or incomplete argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!role) {
        fprintf(stderr, "wlm token create: --role is required (admin, operator, submitter, "
                        "agent, router)\n");
        return 2;
    }
    json_t *b = json_pack("{s:s}", "role", role);
    if (node)
        json_object_set_new(b, "node", json_string(node));
    if (name)
        json_object_set_new(b, "name", json_string(name));
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    json_t *v = NULL;
    int st = cli_call(ctx, "POST", "/v1/tokens", body, &v);
    free(body);
    if (st != 201) {
        json_decref(v);
        return st < 0 ? 3 : 1;
    }
    if (as_json) {
        char *s = json_dumps(v, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
    } else {
        printf("%s\n", str_or(v, "token", ""));
        fprintf(stderr,
                "token '%s' (id %s, role %s%s%s) created; the secret above is shown "
                "only once\n",
                str_or(v, "name", ""), str_or(v, "id", ""), str_or(v, "role", ""),
                node ? ", node " : "", node ? node : "");
    }
    json_decref(v);
    return 0;
}

static int token_list(const struct cli_ctx *ctx, int argc, char **argv)
{
    int as_json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            as_json = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            token_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "wlm token list: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    json_t *v, *toks;
    int rc = cli_get_list(ctx, "/v1/tokens", "tokens", as_json, &v, &toks);
    if (rc >= 0)
        return rc;
    size_t n = json_array_size(toks);
    const size_t ncols = 6;
    const char *hdr[] = {"ID", "NAME", "ROLE", "NODE", "CREATED", "REVOKED"};
    char **cells = cli_cells_new(n, ncols, hdr);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(toks, i);
        char **row = cells + (i + 1) * ncols;
        row[0] = strdup(str_or(o, "id", "-"));
        row[1] = strdup(str_or(o, "name", "-"));
        row[2] = strdup(str_or(o, "role", "-"));
        row[3] = strdup(str_or(o, "node", "-"));
        row[4] = fmt_time(json_object_get(o, "created_at"));
        row[5] = fmt_time(json_object_get(o, "revoked_at"));
    }
    cli_cells_print_free(cells, n, ncols, "no tokens (only the bootstrap token works)");
    json_decref(v);
    return 0;
}

static int token_revoke(const struct cli_ctx *ctx, int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            token_usage(stdout);
            return 0;
        }
        fprintf(stderr, "wlm token revoke: give one token id or name (see wlm token list)\n");
        return 2;
    }
    char *esc = NULL;
    {
        /* Ids and names are [A-Za-z0-9._@-]: refuse anything else rather
         * than escape it. */
        for (const char *p = argv[1]; *p; p++)
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-", *p)) {
                fprintf(stderr, "wlm token revoke: '%s' is not a token id or name\n", argv[1]);
                return 2;
            }
        esc = wlm_asprintf("/v1/tokens/%s", argv[1]);
    }
    json_t *v = NULL;
    int st = cli_call(ctx, "DELETE", esc, NULL, &v);
    free(esc);
    if (st != 200) {
        json_decref(v);
        return st < 0 ? 3 : 1;
    }
    printf("revoked token %s (%s, role %s)\n", str_or(v, "id", "?"), str_or(v, "name", "?"),
           str_or(v, "role", "?"));
    json_decref(v);
    return 0;
}

static int token_whoami(const struct cli_ctx *ctx)
{
    json_t *v = NULL;
    int st = cli_call(ctx, "GET", "/v1/whoami", NULL, &v);
    if (st != 200) {
        json_decref(v);
        return st < 0 ? 3 : 1;
    }
    printf("%s (role %s%s%s) over %s\n", str_or(v, "name", "?"), str_or(v, "role", "?"),
           json_is_string(json_object_get(v, "node")) ? ", node " : "", str_or(v, "node", ""),
           json_is_true(json_object_get(v, "tls")) ? "HTTPS" : "HTTP");
    json_decref(v);
    return 0;
}

int cli_cmd_token(const struct cli_ctx *ctx, int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        token_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "create"))
        return token_create(ctx, argc - 1, argv + 1);
    if (!strcmp(sub, "list"))
        return token_list(ctx, argc - 1, argv + 1);
    if (!strcmp(sub, "revoke"))
        return token_revoke(ctx, argc - 1, argv + 1);
    if (!strcmp(sub, "whoami"))
        return token_whoami(ctx);
    fprintf(stderr, "wlm token: unknown command '%s' (see wlm token --help)\n", sub);
    return 2;
}
