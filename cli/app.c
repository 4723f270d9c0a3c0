/* app.c - `wlm app deploy|list|show|delete`. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static const char APP_FORMAT[] =
    "APP.json (one object; unknown fields are refused):\n"
    "  name           required  1-63 letters, digits, '-', '_' or '.'\n"
    "  command        required  shell command that serves HTTP; {port} is replaced by the\n"
    "                           instance's port (also in $PORT). Its output goes to the node\n"
    "                           agent's state dir; the last lines show in `wlm app show`.\n"
    "  memory_mb      required  memory of one instance, MB; must fit on some node\n"
    "  min_instances  default 1 instances kept running whatever the load (0: only when\n"
    "                           the placement finds CPU for it)\n"
    "  max_instances  default 1 most instances, at most one per node\n"
    "  max_cpu_mhz    default 0 CPU cap of one instance in MHz (0: a whole node)\n"
    "  hosts          default [] Host headers it serves (none: every host)\n"
    "  prefix         default / URL path prefix it serves. Two apps may not share a prefix\n"
    "                           on the same host (or both on every host).\n"
    "  classes        required  service classes, each {\"name\", \"goal_ms\" (mean response-time\n"
    "                           goal, ms), \"weight\" (default 1), \"match\" ({\"header\": \"X-Class:\n"
    "                           gold\"}), \"max_queue\" (default 1000), \"max_wait_ms\" (default\n"
    "                           5000)}\n"
    "  default_class  default the first class: requests no class matches\n"
    "\n"
    "Example:\n"
    "  {\"name\": \"shop\", \"command\": \"wlm-sampleapp --port {port} --cpu-ms 5\",\n"
    "   \"memory_mb\": 256, \"max_instances\": 2, \"prefix\": \"/shop\",\n"
    "   \"classes\": [{\"name\": \"gold\", \"goal_ms\": 50, \"match\": {\"header\": \"X-Class: gold\"}},\n"
    "               {\"name\": \"bronze\", \"goal_ms\": 200}], \"default_class\": \"bronze\"}\n";

static int app_usage(FILE *out, const char *sub)
{
    if (!sub || !strcmp(sub, "deploy"))
        fprintf(out, "Usage: wlm app deploy -f APP.json|-  deploy or update a web application "
                     "(- reads standard input)\n");
    if (!sub || !strcmp(sub, "list"))
        fprintf(out, "%s wlm app list [--json]           list applications\n",
                sub ? "Usage:" : "      ");
    if (!sub || !strcmp(sub, "show"))
        fprintf(out, "%s wlm app show NAME [--json]      spec, instances (node, port, CPU cap, "
                     "state), last exit, why nothing runs\n",
                sub ? "Usage:" : "      ");
    if (!sub || !strcmp(sub, "delete"))
        fprintf(out, "%s wlm app delete NAME [--no-wait] drain the app from the router, stop "
                     "every instance, then forget it;\n"
                     "                                    waits until every instance has "
                     "stopped (up to 120 s)\n",
                sub ? "Usage:" : "      ");
    if (!sub || !strcmp(sub, "deploy"))
        fprintf(out, "\n%s", APP_FORMAT);
    return out == stdout ? 0 : 2;
}

static const char *jstr(json_t *o, const char *k, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : dflt;
}

static void print_app(json_t *a)
{
    printf("name:       %s\n", jstr(a, "name", "?"));
    printf("command:    %s\n", jstr(a, "command", "?"));
    printf("memory_mb:  %g\n", json_number_value(json_object_get(a, "memory_mb")));
    printf("prefix:     %s", jstr(a, "prefix", "/"));
    json_t *hosts = json_object_get(a, "hosts");
    for (size_t i = 0; i < json_array_size(hosts); i++)
        printf("%s%s", i ? ", " : " on hosts ", json_string_value(json_array_get(hosts, i)));
    printf("\n");
    printf("state:      %s\n", jstr(a, "state", "?"));
    printf("instances:  %lld running (min %lld, max %lld)\n",
           (long long)json_integer_value(json_object_get(a, "instances")),
           json_object_get(a, "min_instances")
               ? (long long)json_integer_value(json_object_get(a, "min_instances"))
               : 1LL,
           json_object_get(a, "max_instances")
               ? (long long)json_integer_value(json_object_get(a, "max_instances"))
               : 1LL);
    const char *reason = jstr(a, "reason", NULL);
    if (reason)
        printf("reason:     %s\n", reason);
    json_t *cls = json_object_get(a, "classes");
    for (size_t i = 0; i < json_array_size(cls); i++) {
        json_t *c = json_array_get(cls, i);
        printf("class:      %s, goal %g ms\n", jstr(c, "name", "?"),
               json_number_value(json_object_get(c, "goal_ms")));
    }
    json_t *list = json_object_get(a, "instance_list");
    if (json_array_size(list)) {
        size_t n = json_array_size(list);
        const size_t nc = 5;
        char **cells = calloc((n + 1) * nc, sizeof(char *));
        const char *hdr[] = {"INSTANCE", "NODE", "PORT", "CPU_CAP_MHZ", "STATE"};
        for (size_t c = 0; c < nc; c++)
            cells[c] = strdup(hdr[c]);
        for (size_t i = 0; i < n; i++) {
            json_t *in = json_array_get(list, i);
            char **r = cells + (i + 1) * nc;
            r[0] = strdup(jstr(in, "id", "?"));
            r[1] = strdup(jstr(in, "node", "?"));
            r[2] = wlm_asprintf("%lld", (long long)json_integer_value(json_object_get(in, "port")));
            r[3] = wlm_asprintf("%.0f", json_number_value(json_object_get(in, "cpu_mhz")));
            r[4] = strdup(jstr(in, "state", "?"));
        }
        printf("\n");
        cli_table(stdout, (const char *const *)cells, n + 1, nc);
        for (size_t i = 0; i < (n + 1) * nc; i++)
            free(cells[i]);
        free(cells);
    }
    json_t *ex = json_object_get(a, "last_exit");
    if (ex) {
        json_t *es = json_object_get(ex, "exit_status");
        char when[40];
        time_t t = (time_t)json_number_value(json_object_get(ex, "at"));
        struct tm tm;
        strftime(when, sizeof(when), "%H:%M:%S", localtime_r(&t, &tm));
        printf("\nlast exit:  %s on %s at %s after %.1f s, ", jstr(ex, "instance", "?"),
               jstr(ex, "node", "?"), when, json_number_value(json_object_get(ex, "ran_s")));
        if (es)
            printf("exit status %lld", (long long)json_integer_value(es));
        else
            printf("exit status unknown");
        json_t *cr = json_object_get(a, "crashes");
        if (cr && json_integer_value(cr) > 1)
            printf(" (%lld quick exits in a row)", (long long)json_integer_value(cr));
        printf("\n");
        const char *tail = jstr(ex, "output_tail", NULL);
        if (tail && *tail) {
            printf("its last output:\n");
            for (const char *p = tail; *p;) {
                size_t l = strcspn(p, "\n");
                printf("  | %.*s\n", (int)l, p);
                p += l;
                if (*p)
                    p++;
            }
        }
    }
}

static int app_list(json_t *v)
{
    json_t *apps = json_object_get(v, "apps");
    size_t n = json_array_size(apps);
    const size_t nc = 6;
    char **cells = calloc((n + 1) * nc, sizeof(char *));
    const char *hdr[] = {"NAME", "STATE", "INSTANCES", "MIN-MAX", "MEMORY_MB", "CLASSES"};
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
            wlm_buf_printf(&b, "%s%s:%gms", k ? "," : "", jstr(c, "name", "?"),
                           json_number_value(json_object_get(c, "goal_ms")));
        }
        json_t *mn = json_object_get(a, "min_instances");
        json_t *mx = json_object_get(a, "max_instances");
        r[0] = strdup(jstr(a, "name", "?"));
        r[1] = strdup(jstr(a, "state", "?"));
        r[2] = wlm_asprintf("%lld", (long long)json_integer_value(json_object_get(a, "instances")));
        r[3] = wlm_asprintf("%lld-%lld", mn ? (long long)json_integer_value(mn) : 1LL,
                            mx ? (long long)json_integer_value(mx) : 1LL);
        r[4] = wlm_asprintf("%g", json_number_value(json_object_get(a, "memory_mb")));
        r[5] = b.len ? wlm_buf_steal(&b) : (wlm_buf_fini(&b), strdup("-"));
    }
    if (n == 0)
        printf("no apps deployed\n");
    else
        cli_table(stdout, (const char *const *)cells, n + 1, nc);
    for (size_t i = 0; i < (n + 1) * nc; i++)
        free(cells[i]);
    free(cells);
    return 0;
}

/* DELETE answers 202 while instances stop: wait until GET says 404. */
static int wait_deleted(const struct cli_ctx *ctx, const char *path, const char *name,
                        long long n, int as_json)
{
    double t0 = wlm_now_mono();
    while (wlm_now_mono() - t0 < 120) {
        json_t *v = NULL;
        struct cli_ctx quiet = *ctx;
        quiet.quiet = 1;
        int st = cli_call(&quiet, "GET", path, NULL, &v);
        json_decref(v);
        if (st == 404) {
            if (as_json)
                printf("{\"name\": \"%s\", \"state\": \"deleted\", \"instances_stopped\": %lld}\n",
                       name, n);
            else
                printf("deleted %s: %lld instance%s drained from the router and stopped\n", name,
                       n, n == 1 ? "" : "s");
            return 0;
        }
        if (st < 0)
            return 3;
        usleep(250000);
    }
    fprintf(stderr,
            "wlm app delete: %s is still stopping its instances after 120 s; see `wlm app show %s` "
            "and the controller's log\n",
            name, name);
    return 1;
}

int cli_cmd_app(const struct cli_ctx *ctx, int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
        return app_usage(argc < 2 ? stderr : stdout, NULL);
    const char *sub = argv[1];
    if (strcmp(sub, "deploy") && strcmp(sub, "list") && strcmp(sub, "show") &&
        strcmp(sub, "delete")) {
        fprintf(stderr, "wlm app: unknown subcommand '%s' (deploy, list, show, delete; see wlm "
                        "app --help)\n",
                sub);
        return 2;
    }
    int as_json = ctx->json, no_wait = 0;
    const char *file = NULL, *name = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return app_usage(stdout, sub);
        else if (!strcmp(argv[i], "--json"))
            as_json = 1;
        else if (!strcmp(argv[i], "--no-wait") && !strcmp(sub, "delete"))
            no_wait = 1;
        else if ((!strcmp(argv[i], "-f") || !strcmp(argv[i], "--file")) &&
                 !strcmp(sub, "deploy")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "wlm app deploy: %s needs a file name (or - for standard input)\n",
                        argv[i]);
                return 2;
            }
            file = argv[++i];
        } else if (argv[i][0] != '-' && !name && (!strcmp(sub, "show") || !strcmp(sub, "delete")))
            name = argv[i];
        else {
            fprintf(stderr, "wlm app %s: unexpected argument '%s' (see wlm app %s --help)\n", sub,
                    argv[i], sub);
            return 2;
        }
    }
    json_t *v = NULL;
    int st;
    if (!strcmp(sub, "deploy")) {
        if (!file) {
            fprintf(stderr, "wlm app deploy: -f APP.json is required (-f - reads standard input; "
                            "see wlm app deploy --help for the format)\n");
            return 2;
        }
        json_t *spec = cli_load_json(file, "wlm app deploy");
        if (!spec)
            return 2;
        char *body = wlm_json_dumps(spec);
        json_decref(spec);
        st = cli_call(ctx, "POST", "/v1/apps", body, &v);
        free(body);
        if (st == 201 && !as_json) {
            printf("deployed %s\n", jstr(v, "name", "?"));
            const char *w = jstr(v, "warning", NULL);
            if (w)
                printf("warning: %s\n", w);
        }
    } else if (!strcmp(sub, "list")) {
        st = cli_call(ctx, "GET", "/v1/apps", NULL, &v);
        if (st == 200 && !as_json)
            app_list(v);
    } else {
        if (!name) {
            fprintf(stderr, "wlm app %s: NAME is required (see wlm app list)\n", sub);
            return 2;
        }
        char path[300];
        snprintf(path, sizeof(path), "/v1/apps/%s", name);
        st = cli_call(ctx, !strcmp(sub, "show") ? "GET" : "DELETE", path, NULL, &v);
        if (!strcmp(sub, "show") && st == 200 && !as_json) {
            print_app(v);
            cli_print_app_energy(ctx, name);
        } else if (!strcmp(sub, "delete") && (st == 200 || st == 202)) {
            long long n = (long long)json_integer_value(json_object_get(v, "instances"));
            if (st == 202 && !no_wait) {
                json_decref(v);
                return wait_deleted(ctx, path, name, n, as_json);
            }
            if (!as_json && st == 200)
                printf("deleted %s (no instance was running)\n", name);
            else if (!as_json)
                printf("deleting %s: %lld instances stopping\n", name, n);
        }
    }
    if (as_json && v && st >= 200 && st < 300) {
        char *s = json_dumps(v, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
    }
    json_decref(v);
    return st < 0 ? 3 : (st >= 200 && st < 300 ? 0 : 1);
}
