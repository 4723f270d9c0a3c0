/* main.c - wlm-router daemon: parse flags, load the config, run the gateway. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "router.h"

static struct router *g_router; /* for the signal handler only */
static volatile sig_atomic_t g_signo, g_sender;

static void on_signal(int sig, siginfo_t *si, void *ctx)
{
    (void)ctx;
    if (sig == SIGHUP) {
        if (g_router)
            router_reload(g_router); /* a flag + uv_async_send: async-signal-safe */
        return;
    }
    g_sender = si ? (sig_atomic_t)si->si_pid : 0;
    if (g_router) {
        /* SIGTERM drains; SIGINT, or a second signal, stops at once. */
        if (sig == SIGTERM && !g_signo)
            router_drain(g_router); /* flags + uv_async_send: async-signal-safe */
        else
            router_stop(g_router);
    }
    g_signo = sig;
}

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: wlm-router [options]\n"
            "Front-door HTTP/1.1 + HTTP/2 gateway (cleartext and TLS) with per-flow\n"
            "weighted-fair queuing.\n\n"
            "  --config FILE           routing/flow configuration (JSON, see router/README.md)\n"
            "  --listen HOST:PORT      data port (default 0.0.0.0:8080; port 0 = pick)\n"
            "  --admin HOST:PORT|off   admin port (default 127.0.0.1:9090)\n"
            "  --tls-listen HOST:PORT  TLS data port (ALPN h2 and http/1.1; needs --tls-cert/--tls-key)\n"
            "  --tls-cert FILE         default certificate chain (PEM); apps[].tls adds SNI certs\n"
            "  --tls-key FILE          its private key (PEM)\n"
            "  --tls-handshake-timeout-ms MS  TLS handshake must finish (default 10000)\n"
            "  --admin-tls             the admin port speaks HTTPS too (with --tls-cert/--tls-key)\n"
            "  --token TOKEN           bearer token for /admin/ endpoints (env WLM_ROUTER_TOKEN)\n"
            "  --workers N             event-loop threads (default 1)\n"
            "  --header-timeout-ms MS  whole request head must arrive (default 10000)\n"
            "  --idle-timeout-ms MS    idle keep-alive connections closed (default 60000)\n"
            "  --max-header-bytes N    larger heads get 431 (default 16384)\n"
            "  --max-body-bytes N      larger bodies get 413 (default 8388608)\n"
            "  --log-level LEVEL       debug|info|warn|error|off (default info)\n"
            "  --drain-timeout MS      SIGTERM: longest wait for requests in flight (default 10000)\n"
            "  --access-log FILE       JSON lines, one per request (written off the event loop)\n"

            "  --help, --version\n\n"
            "Signals: SIGHUP reloads --config and the certificates (all or nothing);\n"
            "SIGTERM drains (stop accepting, finish in flight, exit); SIGINT or a second\n"
            "signal stops at once.\n");
}

static int split_hostport(const char *s, char *host, size_t hl, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon)
        return -1;
    size_t n = (size_t)(colon - s);
    if (n == 0 || n >= hl)
        return -1;
    memcpy(host, s, n);
    host[n] = 0;
    if (host[0] == '[' && host[n - 1] == ']') {
        memmove(host, host + 1, n - 2);
        host[n - 2] = 0;
    }
    char *e;
    long p = strtol(colon + 1, &e, 10);
    if (*e || p < 0 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

static long num_arg(const char *flag, const char *v, long min, long max)
{
    char *e;
    errno = 0;
    long x = strtol(v, &e, 10);
    if (errno || *e || x < min || x > max) {
        fprintf(stderr, "wlm-router: %s: expected an integer in [%ld, %ld], got '%s'\n", flag, min,
                max, v);
        exit(2);
    }
    return x;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    size_t k;
    while (b && (k = fread(b + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) {
                free(b);
                b = NULL;
            } else {
                b = nb;
            }
        }
    }
    fclose(f);
    if (b)
        b[n] = 0; /* the loop always leaves room */
    *len = n;
    return b;
}


int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, 0, 'c'},
        {"listen", required_argument, 0, 'l'},
        {"admin", required_argument, 0, 'a'},
        {"token", required_argument, 0, 't'},
        {"workers", required_argument, 0, 'w'},
        {"header-timeout-ms", required_argument, 0, 'H'},
        {"idle-timeout-ms", required_argument, 0, 'I'},
        {"max-header-bytes", required_argument, 0, 'M'},
        {"max-body-bytes", required_argument, 0, 'B'},
        {"log-level", required_argument, 0, 'L'},
        {"tls-listen", required_argument, 0, 'T'},
        {"drain-timeout", required_argument, 0, 'D'},
        {"access-log", required_argument, 0, 'A'},
        {"tls-cert", required_argument, 0, 'C'},
        {"tls-key", required_argument, 0, 'K'},
        {"tls-handshake-timeout-ms", required_argument, 0, 'S'},
        {"admin-tls", no_argument, 0, 'Z'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    char lhost[256] = "0.0.0.0", ahost[256] = "127.0.0.1", thost[256] = "";
    int lport = 8080, aport = 9090, tport = -1;
    const char *config = NULL, *token = getenv("WLM_ROUTER_TOKEN");
    struct router_opts o = {0};
    o.workers = 1;
    int opt;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': config = optarg; break;
        case 'l':
            if (split_hostport(optarg, lhost, sizeof lhost, &lport)) {
                fprintf(stderr, "wlm-router: --listen: expected HOST:PORT, got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'a':
            if (strcmp(optarg, "off") == 0)
                aport = -1;
            else if (split_hostport(optarg, ahost, sizeof ahost, &aport)) {
                fprintf(stderr, "wlm-router: --admin: expected HOST:PORT or off, got '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 't': token = optarg; break;
        case 'T':
            if (split_hostport(optarg, thost, sizeof thost, &tport)) {
                fprintf(stderr, "wlm-router: --tls-listen: expected HOST:PORT, got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'C': o.tls_cert = optarg; break;
        case 'Z': o.admin_tls = 1; break;
        case 'D': o.drain_timeout_ms = (unsigned)num_arg("--drain-timeout", optarg, 1, 3600000); break;
        case 'A': o.access_log = optarg; break;
        case 'K': o.tls_key = optarg; break;
        case 'S': o.tls_handshake_timeout_ms = (unsigned)num_arg("--tls-handshake-timeout-ms", optarg, 1, 3600000); break;
        case 'w': o.workers = (unsigned)num_arg("--workers", optarg, 1, 64); break;
        case 'H': o.header_timeout_ms = (unsigned)num_arg("--header-timeout-ms", optarg, 1, 3600000); break;
        case 'I': o.idle_timeout_ms = (unsigned)num_arg("--idle-timeout-ms", optarg, 1, 36000000); break;
        case 'M': o.max_header_bytes = (size_t)num_arg("--max-header-bytes", optarg, 256, 1 << 24); break;
        case 'B': o.max_body_bytes = (size_t)num_arg("--max-body-bytes", optarg, 0, 1L << 34); break;
        case 'L': {
            enum wlm_log_level lv;
            if (wlm_log_parse_level(optarg, &lv)) {
                fprintf(stderr, "wlm-router: --log-level: unknown level '%s'\n", optarg);
                return 2;
            }
            wlm_log_set_level(lv);
            break;
        }
        case 'h': usage(stdout); return 0;
        case 'V': printf("wlm-router %s\n", WLM_VERSION); return 0;
        default:
            fprintf(stderr, "wlm-router: unknown or incomplete option '%s' (see --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "wlm-router: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }
    size_t len = 2;
    char *text = NULL;
    if (config) {
        text = read_file(config, &len);
        if (!text) {
            fprintf(stderr, "wlm-router: --config: cannot read '%s': %s\n", config,
                    strerror(errno));
            return 2;
        }
    }
    struct wlm_error err = {0};
    struct router_config *cfg = NULL;
    if (router_config_parse(text ? text : "{}", len, &cfg, &err)) {
        fprintf(stderr, "wlm-router: config %s: %s\n", config ? config : "(empty)", err.msg);
        free(text);
        return 2;
    }
    o.listen_host = lhost;
    o.listen_port = lport;
    o.admin_host = ahost;
    o.admin_port = aport;
    o.token = token;
    o.config_json = text;
    o.config_path = config;
    if (o.admin_tls && (!o.tls_cert || !o.tls_key)) {
        fprintf(stderr, "wlm-router: --admin-tls needs --tls-cert FILE and --tls-key FILE\n");
        router_config_free(cfg);
        free(text);
        return 2;
    }
    if (tport >= 0) {
        if (!o.tls_cert || !o.tls_key) {
            fprintf(stderr, "wlm-router: --tls-listen needs --tls-cert FILE and --tls-key FILE\n");
            router_config_free(cfg);
            free(text);
            return 2;
        }
        o.tls_listen_host = thost;
        o.tls_listen_port = tport;
    }
    struct router *r = NULL;
    if (router_new(&o, cfg, &r, &err)) {
        fprintf(stderr, "wlm-router: %s\n", err.msg);
        router_config_free(cfg);
        free(text);
        return 2;
    }
    free(text);
    g_router = r;
    struct sigaction sa = {0};
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    wlm_info("router", "listening", "listen=%s:%d tls=%s:%d admin=%s:%d workers=%u apps=%zu flows=%zu",
             lhost, router_listen_port(r), thost[0] ? thost : "-", router_tls_port(r), ahost,
             aport < 0 ? -1 : router_admin_port(r), o.workers, cfg->napps, cfg->nflows);
    if (aport >= 0 && !o.admin_tls && wlm_host_is_loopback(ahost))
        wlm_info("router", "admin port: plain HTTP on loopback only", "admin=%s", ahost);
    else if (aport >= 0 && !o.admin_tls)
        wlm_warn("router",
                 "admin port: plain HTTP on a non-loopback address: the token crosses the network "
                 "in clear text; give --admin-tls",
                 "admin=%s", ahost);
    else if (aport >= 0)
        wlm_info("router", "admin port speaks HTTPS", "admin=%s:%d", ahost, router_admin_port(r));
    router_run(r);
    wlm_info("router", "stopped", "signal=%d sender_pid=%d", (int)g_signo, (int)g_sender);
    router_free(r);
    return 0;
}
