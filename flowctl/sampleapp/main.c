/*
 * wlm-sampleapp - the micro-benchmark web application of the design
 * description: each request burns a given amount of CPU and then waits a given
 * delay (standing in for database or I/O time), over HTTP/1.1 keep-alive.
 *
 * CPU is burnt by a pool of worker threads that serve the runnable requests
 * round-robin in small quanta of *thread CPU time*, so the application behaves
 * as a processor-sharing server with capacity = workers cores, and a request's
 * CPU cost is exact whatever else runs on the machine. The delay is a libuv
 * timer (no thread held). GET /stats reports requests served and the
 * process's own CPU time; GET /healthz answers "ok".
 *
 * This program has its own small HTTP server (http-parser) so that it has no
 * dependency beyond libuv and http-parser and stays cheap per request.
 */
#include <errno.h>
#include <getopt.h>
#include <http_parser.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#ifndef WLM_VERSION
#define WLM_VERSION "0.0.0"
#endif

struct app;

/* One request; lives until its response is written (or its connection dies). */
struct job {
    struct job *next;  /* run queue / done list / connection FIFO */
    struct job *cnext; /* connection's FIFO of responses in request order */
    struct conn *conn;
    int64_t remaining_ns; /* CPU still to burn */
    double delay_ms;
    double cpu_ms;
    int done;      /* response ready */
    int status;    /* HTTP status */
    char body[384];
    int keep_alive;
    uv_timer_t timer;
};

struct conn {
    uv_tcp_t tcp;
    http_parser parser;
    struct app *app;
    char url[2048];
    size_t url_len;
    int url_overflow;
    struct job *head, *tail; /* responses in order */
    int refs;                /* 1 for the socket + 1 per job not yet written */
    int closing;
};

struct app {
    uv_loop_t *loop;
    uv_tcp_t server;
    uv_async_t async;
    uv_signal_t sigint, sigterm;
    http_parser_settings settings;
    double cpu_ms, delay_ms;
    int exp_dist;
    int64_t quantum_ns;
    uint64_t rng;
    /* Run queue shared with the workers. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *rq_head, *rq_tail;
    struct job *done_head; /* finished burning, to the loop */
    int stop;
    int nworkers;
    int cpu_affinity; /* -1 = any CPU */
    pthread_t *workers;
    /* Statistics (loop thread only, except burn_ns under mu). */
    uint64_t requests, in_flight;
    int64_t burn_ns;
    int64_t busy_ns; /* wall time the workers spent burning: burn/busy = CPU share they got */
    double start;
};

static int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double process_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* Burn CPU until this thread has used `ns` more nanoseconds of CPU time. */
static void burn(int64_t ns)
{
    int64_t end = thread_cpu_ns() + ns;
    volatile uint64_t x = 0x9e3779b97f4a7c15ull;
    while (thread_cpu_ns() < end)
        for (int i = 0; i < 2000; i++)
            x = x * 6364136223846793005ull + 1442695040888963407ull;
}

/* Worker: round-robin quanta over the runnable requests (processor sharing). */
static void *worker_main(void *arg)
{
    struct app *a = arg;
    if (a->cpu_affinity >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(a->cpu_affinity, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (!a->stop && !a->rq_head)
            pthread_cond_wait(&a->cv, &a->mu);
        if (a->stop)
            break;
        struct job *j = a->rq_head;
        a->rq_head = j->next;
        if (!a->rq_head)
            a->rq_tail = NULL;
        j->next = NULL;
        pthread_mutex_unlock(&a->mu);
        int64_t q = j->remaining_ns < a->quantum_ns ? j->remaining_ns : a->quantum_ns;
        int64_t t0 = thread_cpu_ns(), w0 = (int64_t)uv_hrtime();
        burn(q);
        int64_t used = thread_cpu_ns() - t0, wall = (int64_t)uv_hrtime() - w0;
        pthread_mutex_lock(&a->mu);
        a->burn_ns += used;
        a->busy_ns += wall;
        j->remaining_ns -= used;
        if (j->remaining_ns > 0) {
            if (a->rq_tail)
                a->rq_tail->next = j;
            else
                a->rq_head = j;
            a->rq_tail = j;
        } else {
            j->next = a->done_head;
            a->done_head = j;
            uv_async_send(&a->async);
        }
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* ---------------------------------------------------------------- connections */

static void conn_unref(struct conn *c);

static void on_conn_closed(uv_handle_t *h)
{
    conn_unref(h->data);
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void conn_unref(struct conn *c)
{
    if (--c->refs == 0)
        free(c);
}

struct wreq {
    uv_write_t w;
    struct conn *conn;
    int close_after;
    char data[];
};

static void on_written(uv_write_t *w, int status)
{
    struct wreq *r = (struct wreq *)w;
    if (status < 0 || r->close_after)
        conn_close(r->conn);
    conn_unref(r->conn);
    free(r);
}

static void conn_send(struct conn *c, const char *data, size_t len, int close_after)
{
    if (c->closing)
        return;
    struct wreq *r = malloc(sizeof *r + len);
    if (!r) {
        conn_close(c);
        return;
    }
    memcpy(r->data, data, len);
    r->conn = c;
    r->close_after = close_after;
    c->refs++;
    uv_buf_t b = uv_buf_init(r->data, (unsigned)len);
    if (uv_write(&r->w, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0) {
        conn_unref(c);
        free(r);
        conn_close(c);
    }
}

static void on_job_timer_closed(uv_handle_t *h)
{
    struct job *j = h->data;
    free(j);
}

/* Write every finished response at the head of the connection's FIFO. */
static void conn_flush(struct conn *c)
{
    c->refs++; /* each written job drops a reference; keep c alive meanwhile */
    while (c->head && c->head->done) {
        struct job *j = c->head;
        c->head = j->cnext;
        if (!c->head)
            c->tail = NULL;
        char buf[512];
        size_t blen = strlen(j->body);
        int n = snprintf(buf, sizeof buf,
                         "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n%s\r\n%s",
                         j->status, j->status == 200 ? "OK" : "Bad Request", blen,
                         j->keep_alive ? "" : "Connection: close\r\n", j->body);
        conn_send(c, buf, (size_t)n, !j->keep_alive);
        uv_close((uv_handle_t *)&j->timer, on_job_timer_closed);
        c->refs--; /* the job's reference; ours keeps c alive */
    }
    conn_unref(c);
}

static void job_finish(struct job *j)
{
    struct app *a = j->conn->app;
    j->done = 1;
    a->requests++;
    a->in_flight--;
    conn_flush(j->conn);
}

static void on_delay_done(uv_timer_t *t)
{
    job_finish(t->data);
}

static void on_async(uv_async_t *h)
{
    struct app *a = h->data;
    pthread_mutex_lock(&a->mu);
    struct job *list = a->done_head;
    a->done_head = NULL;
    pthread_mutex_unlock(&a->mu);
    while (list) {
        struct job *j = list;
        list = j->next;
        j->next = NULL;
        if (j->delay_ms > 0)
            uv_timer_start(&j->timer, on_delay_done, (uint64_t)llround(j->delay_ms), 0);
        else
            job_finish(j);
    }
}

static double rng_exp(struct app *a, double mean)
{
    a->rng ^= a->rng << 13;
    a->rng ^= a->rng >> 7;
    a->rng ^= a->rng << 17;
    double u = ((a->rng >> 11) + 0.5) / 9007199254740992.0;
    return -mean * log(u);
}

/* Value of ?key=number in the query, or `def`. Returns -1 on a bad number. */
static int query_num(const char *q, const char *key, double def, double *out)
{
    *out = def;
    size_t kl = strlen(key);
    while (q && *q) {
        if (!strncmp(q, key, kl) && q[kl] == '=') {
            char *end;
            double v = strtod(q + kl + 1, &end);
            if (end == q + kl + 1 || (*end && *end != '&') || !(v >= 0) || v > 1e6)
                return -1;
            *out = v;
            return 0;
        }
        q = strchr(q, '&');
        if (q)
            q++;
    }
    return 0;
}

static struct job *job_new(struct conn *c)
{
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->conn = c;
    j->keep_alive = http_should_keep_alive(&c->parser);
    uv_timer_init(c->app->loop, &j->timer);
    j->timer.data = j;
    c->refs++;
    if (c->tail)
        c->tail->cnext = j;
    else
        c->head = j;
    c->tail = j;
    return j;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    if (c->url_len + len >= sizeof c->url) {
        c->url_overflow = 1;
        return 0;
    }
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    c->url[c->url_len] = 0;
    return 0;
}

static int on_message_begin(http_parser *p)
{
    struct conn *c = p->data;
    c->url_len = 0;
    c->url[0] = 0;
    c->url_overflow = 0;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;
    struct app *a = c->app;
    struct job *j = job_new(c);
    if (!j)
        return -1;
    char *q = strchr(c->url, '?');
    if (q)
        *q++ = 0;
    if (c->url_overflow) {
        j->status = 400;
        snprintf(j->body, sizeof j->body, "request target too long\n");
        j->done = 1;
        a->in_flight++;
        job_finish(j);
        return 0;
    }
    a->in_flight++;
    if (!strcmp(c->url, "/stats")) {
        j->status = 200;
        double up = uv_now(a->loop) / 1000.0 - a->start;
        pthread_mutex_lock(&a->mu);
        double burn_s = a->burn_ns / 1e9, busy_s = a->busy_ns / 1e9;
        pthread_mutex_unlock(&a->mu);
        snprintf(j->body, sizeof j->body,
                 "{\"requests\":%" PRIu64 ",\"in_flight\":%" PRIu64
                 ",\"cpu_seconds\":%.6f,\"burn_seconds\":%.6f,\"busy_seconds\":%.6f,"
                 "\"uptime_seconds\":%.3f,\"cpu_ms\":%g,\"delay_ms\":%g,\"workers\":%d}\n",
                 a->requests, a->in_flight - 1, process_cpu_s(), burn_s, busy_s, up, a->cpu_ms,
                 a->delay_ms, a->nworkers);
        a->requests--; /* /stats is not work */
        job_finish(j);
        return 0;
    }
    if (!strcmp(c->url, "/healthz")) {
        j->status = 200;
        snprintf(j->body, sizeof j->body, "ok\n");
        a->requests--;
        job_finish(j);
        return 0;
    }
    double cpu, delay;
    if (query_num(q, "cpu_ms", a->cpu_ms, &cpu) || query_num(q, "delay_ms", a->delay_ms, &delay)) {
        j->status = 400;
        snprintf(j->body, sizeof j->body, "cpu_ms and delay_ms must be numbers in 0..1e6\n");
        a->requests--;
        job_finish(j);
        return 0;
    }
    if (a->exp_dist && cpu > 0)
        cpu = rng_exp(a, cpu);
    j->status = 200;
    j->cpu_ms = cpu;
    j->delay_ms = delay;
    snprintf(j->body, sizeof j->body, "ok cpu_ms=%.3f delay_ms=%.3f\n", cpu, delay);
    j->remaining_ns = (int64_t)llround(cpu * 1e6);
    if (j->remaining_ns <= 0) {
        j->next = NULL;
        pthread_mutex_lock(&a->mu);
        j->next = a->done_head;
        a->done_head = j;
        pthread_mutex_unlock(&a->mu);
        uv_async_send(&a->async);
        return 0;
    }
    pthread_mutex_lock(&a->mu);
    if (a->rq_tail)
        a->rq_tail->next = j;
    else
        a->rq_head = j;
    a->rq_tail = j;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    static __thread char slab[65536];
    buf->base = slab;
    buf->len = sizeof slab;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (n < 0) {
        conn_close(c);
        return;
    }
    if (n == 0)
        return;
    size_t used = http_parser_execute(&c->parser, &c->app->settings, buf->base, (size_t)n);
    if (c->parser.upgrade || used != (size_t)n) {
        const char *bad = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        if (!c->head)
            conn_send(c, bad, strlen(bad), 1);
        else
            conn_close(c);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    struct app *a = server->data;
    if (status < 0)
        return;
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->app = a;
    c->refs = 1;
    uv_tcp_init(a->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* A benchmark server has nothing to save: on SIGINT/SIGTERM leave at once
 * (requests in flight are abandoned, as a crashed server would). */
static void on_signal(uv_signal_t *s, int sig)
{
    (void)s;
    (void)sig;
    fflush(stdout);
    _exit(0);
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: wlm-sampleapp [options]\n"
            "A web application whose requests burn CPU then wait (processor-sharing server).\n\n"
            "  --host ADDR        listen address (default 127.0.0.1)\n"
            "  --port N           listen port, 0 = pick a free one (default 8080)\n"
            "  --port-file PATH   write the port actually bound to PATH\n"
            "  --cpu-ms X         CPU per request in ms of CPU time (default 10); ?cpu_ms= overrides\n"
            "  --delay-ms X       non-CPU delay per request in ms (default 0); ?delay_ms= overrides\n"
            "  --cpu-dist D       const or exp (exponentially distributed around --cpu-ms)\n"
            "  --workers N        CPU worker threads = cores of capacity (default 1)\n"
            "  --quantum-us N     processor-sharing quantum in us of CPU time (default 1000)\n"
            "  --cpu-affinity N   run the CPU workers on CPU N only (default: any)\n"
            "  --help, --version\n\n"
            "GET /stats -> {\"requests\", \"cpu_seconds\" (process), \"burn_seconds\" (request CPU),\n"
            "  \"busy_seconds\" (wall time spent burning; burn/busy = CPU share obtained), ...}\n");
}

static int parse_num(const char *flag, const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max)) {
        fprintf(stderr, "wlm-sampleapp: --%s: expected a number in %g..%g, got '%s'\n", flag, min,
                max, s);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"host", required_argument, 0, 'h'},      {"port", required_argument, 0, 'p'},
        {"port-file", required_argument, 0, 'f'}, {"cpu-ms", required_argument, 0, 'c'},
        {"delay-ms", required_argument, 0, 'd'},  {"cpu-dist", required_argument, 0, 'D'},
        {"workers", required_argument, 0, 'w'},   {"quantum-us", required_argument, 0, 'q'},
        {"help", no_argument, 0, 'H'},            {"version", no_argument, 0, 'V'},
        {"cpu-affinity", required_argument, 0, 'a'},
        {0, 0, 0, 0},
    };
    const char *host = "127.0.0.1", *port_file = NULL;
    double port = 8080, cpu = 10, delay = 0, workers = 1, quantum = 1000, affinity = -1;
    int exp_dist = 0, o;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'h': host = optarg; break;
        case 'f': port_file = optarg; break;
        case 'p': if (parse_num("port", optarg, 0, 65535, &port)) return 2; break;
        case 'c': if (parse_num("cpu-ms", optarg, 0, 1e6, &cpu)) return 2; break;
        case 'd': if (parse_num("delay-ms", optarg, 0, 1e6, &delay)) return 2; break;
        case 'w': if (parse_num("workers", optarg, 1, 256, &workers)) return 2; break;
        case 'q': if (parse_num("quantum-us", optarg, 10, 1e6, &quantum)) return 2; break;
        case 'a': if (parse_num("cpu-affinity", optarg, 0, CPU_SETSIZE - 1, &affinity)) return 2; break;
        case 'D':
            if (!strcmp(optarg, "exp"))
                exp_dist = 1;
            else if (strcmp(optarg, "const")) {
                fprintf(stderr, "wlm-sampleapp: --cpu-dist: expected const or exp, got '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 'H': usage(stdout); return 0;
        case 'V': printf("wlm-sampleapp %s\n", WLM_VERSION); return 0;
        default:
            fprintf(stderr, "wlm-sampleapp: unknown or incomplete option '%s' (see --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "wlm-sampleapp: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }

    struct app a;
    memset(&a, 0, sizeof a);
    a.loop = uv_default_loop();
    a.cpu_ms = cpu;
    a.delay_ms = delay;
    a.exp_dist = exp_dist;
    a.quantum_ns = (int64_t)(quantum * 1000);
    a.rng = 0x2545F4914F6CDD1Dull ^ (uint64_t)uv_hrtime();
    a.nworkers = (int)workers;
    a.cpu_affinity = (int)affinity;
    a.start = uv_now(a.loop) / 1000.0;
    a.settings.on_message_begin = on_message_begin;
    a.settings.on_url = on_url;
    a.settings.on_message_complete = on_message_complete;
    pthread_mutex_init(&a.mu, NULL);
    pthread_cond_init(&a.cv, NULL);

    struct sockaddr_storage ss;
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&ss) &&
        uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&ss)) {
        fprintf(stderr, "wlm-sampleapp: --host: not an IP address: '%s'\n", host);
        return 2;
    }
    uv_tcp_init(a.loop, &a.server);
    a.server.data = &a;
    int rc = uv_tcp_bind(&a.server, (struct sockaddr *)&ss, 0);
    if (!rc)
        rc = uv_listen((uv_stream_t *)&a.server, 1024, on_connection);
    if (rc) {
        fprintf(stderr, "wlm-sampleapp: cannot listen on %s:%d: %s\n", host, (int)port,
                uv_strerror(rc));
        return 1;
    }
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    uv_tcp_getsockname(&a.server, (struct sockaddr *)&bound, &blen);
    int bport = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    if (port_file) {
        FILE *f = fopen(port_file, "w");
        if (!f || fprintf(f, "%d\n", bport) < 0 || fclose(f)) {
            fprintf(stderr, "wlm-sampleapp: --port-file %s: %s\n", port_file, strerror(errno));
            return 1;
        }
    }
    printf("wlm-sampleapp listening on %s:%d cpu_ms=%g delay_ms=%g workers=%d\n", host, bport,
           cpu, delay, a.nworkers);
    fflush(stdout);

    uv_async_init(a.loop, &a.async, on_async);
    a.async.data = &a;
    uv_signal_init(a.loop, &a.sigint);
    uv_signal_init(a.loop, &a.sigterm);
    a.sigint.data = a.sigterm.data = &a;
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);

    a.workers = calloc((size_t)a.nworkers, sizeof *a.workers);
    for (int i = 0; a.workers && i < a.nworkers; i++)
        pthread_create(&a.workers[i], NULL, worker_main, &a);

    uv_run(a.loop, UV_RUN_DEFAULT);
    return 0;
}
