/* app.c - `wlm app deploy|list|show|delete`. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int app_usage(FILE *out)
{
    fprintf(out,
            "Usage: wlm app deploy -f APP.json     deploy or update a web application\n"
            "       wlm app list [--json]           list applications\n"
            "       wlm app show NAME [--json]      one application's spec and instances\n"
            "       wlm app delete NAME             remove an application\n"
            "\n"
            "APP.json: {\"name\", \"command\" (with {port}), \"memory_mb\", \"min_instances\",\n"
            "\"max_instances\", \"hosts\", \"prefix\", \"classes\": [{\"name\", \"goal_ms\",\n"
            "\"weight\", \"match\": {\"header\": \"X-Class: gold\"}}], \"default_class\"}\n");
    return out == stdout ? 0 : 2;
}

static void print_app(json_t *a)
{
    printf("name:       %s\n", json_string_value(json_object_get(a, "name")));
    printf("command:    %s\n", json_string_value(json_object_get(a, "command")));
    printf("memory_mb:  %g\n", json_number_value(json_object_get(a, "memory_mb")));
    printf("instances:  %lld running (min %lld, max %lld)\n",
           (long long)json_integer_value(json_object_get(a, "instances")),
           json_object_get(a, "min_instances")
               ? (long long)json_integer_value(json_object_get(a, "min_instances")) : 1LL,
           json_object_get(a, "max_instances")
               ? (long long)json_integer_value(json_object_get(a, "max_instances")) : 1LL);
    json_t *cls = json_object_get(a, "classes");
    for (size_t i = 0; i < json_array_size(cls); i++) {
        json_t *c = json_array_get(cls, i);
        printf("class:      %s goal %g ms\n", json_string_value(json_object_get(c, "name")),
               json_number_value(json_object_get(c, "goal_ms")));
    }
}

int cli_cmd_app(const struct cli_ctx *ctx, int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
        return app_usage(argc < 2 ? stderr : stdout);
    const char *sub = argv[1];
    int as_json = 0;
    const char *file = NULL, *name = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            as_json = 1;
        else if (!strcmp(argv[i], "-f") && i + 1 < argc)
            file = argv[++i];
        else if (argv[i][0] != '-' && !name)
            name = argv[i];
        else {
            fprintf(stderr, "wlm app %s: unexpected argument '%s' (see wlm app --help)\n", sub,
                    argv[i]);
            return 2;
        }
    }
    json_t *v = NULL;
    int st;
    if (!strcmp(sub, "deploy")) {
        if (!file) {
            fprintf(stderr, "wlm app deploy: -f APP.json is required\n");
            return 2;
        }
        struct wlm_error err = {0};
        json_t *spec = wlm_json_load_file(file, &err);
        if (!spec) {
            fprintf(stderr, "wlm app deploy: %s\n", err.msg);
            return 2;
        }
        char *body = wlm_json_dumps(spec);
        json_decref(spec);
        st = cli_call(ctx, "POST", "/v1/apps", body, &v);
        free(body);
        if (st == 201)
            printf("deployed %s\n", json_string_value(json_object_get(v, "name")));
    } else if (!strcmp(sub, "list")) {
        st = cli_call(ctx, "GET", "/v1/apps", NULL, &v);
        if (st == 200 && !as_json) {
            json_t *apps = json_object_get(v, "apps");
            size_t n = json_array_size(apps);
            const size_t nc = 5;
            char **cells = calloc((n + 1) * nc, sizeof(char *));
            const char *hdr[] = {"NAME", "INSTANCES", "MIN-MAX", "MEMORY_MB", "CLASSES"};
            for (size_t c = 0; c < nc; c++)
                cells[c] = strdup(hdr[c]);
            for (size_t i = 0; i < n; i++) {
                json_t *a = json_array_get(apps, i);
                char **r = cells + (i + 1) * nc;
                struct wlm_buf b;
                wlm_buf_init(&b);
                json_t *cls = json_object_get(a, "classes");
                for (size_t k = 0; k < json_array_size(cls); k++) {
                    json_t *c = json_array_get(cls, k);
                    wlm_buf_printf(&b, "%s%s:%gms", k ? "," : "",
                                   json_string_value(json_object_get(c, "name")),
                                   json_number_value(json_object_get(c, "goal_ms")));
                }
                json_t *mn = json_object_get(a, "min_instances");
                json_t *mx = json_object_get(a, "max_instances");
                r[0] = strdup(json_string_value(json_object_get(a, "name")));
                r[1] = wlm_asprintf("%lld", (long long)json_integer_value(json_object_get(a, "instances")));
                r[2] = wlm_asprintf("%lld-%lld", mn ? (long long)json_integer_value(mn) : 1LL,
                                    mx ? (long long)json_integer_value(mx) : 1LL);
                r[3] = wlm_asprintf("%g", json_number_value(json_object_get(a, "memory_mb")));
                r[4] = wlm_buf_steal(&b);
            }
            if (n == 0)
                printf("no apps deployed\n");
            else
                cli_table(stdout, (const char *const *)cells, n + 1, nc);
            for (size_t i = 0; i < (n + 1) * nc; i++)
                free(cells[i]);
            free(cells);
        }
    } else if (!strcmp(sub, "show") || !strcmp(sub, "delete")) {
        if (!name) {
            fprintf(stderr, "wlm app %s: NAME is required\n", sub);
            return 2;
        }
        char path[300];
        snprintf(path, sizeof(path), "/v1/apps/%s", name);
        st = cli_call(ctx, !strcmp(sub, "show") ? "GET" : "DELETE", path, NULL, &v);
        if (st == 200 && !as_json && !strcmp(sub, "show")) {
            print_app(v);
            cli_print_app_energy(ctx, name);
        }
        else if (st == 204)
            printf("deleted %s\n", name);
    } else {
        fprintf(stderr, "wlm app: unknown subcommand '%s' (see wlm app --help)\n", sub);
        return 2;
    }
    if (as_json && v && st >= 200 && st < 300) {
        char *s = json_dumps(v, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
    }
    json_decref(v);
    return st < 0 ? 3 : (st >= 200 && st < 300 ? 0 : 1);
}
