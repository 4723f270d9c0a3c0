/* fuzz_config.c - libFuzzer target: daemon configuration files.
 *
 * wlm_config_load reads a JSON file by path, so the input is placed in an
 * anonymous memory file (memfd) and loaded through /proc/self/fd/N: nothing
 * touches the disk and common/ needs no test hook. The field table mirrors
 * the controller's kinds of fields (strings of bounded size, ranged integers
 * and numbers, booleans) without environment names, so the run does not
 * depend on the environment. Inputs starting with '-' instead go through
 * wlm_config_set ("--flag value" path): "-name\nvalue".
 * Properties: never crash; a string field is always NUL-terminated within
 * its buffer; an accepted value is within its range. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"

struct fcfg {
    char listen_host[64];
    long long listen_port;
    char db[512];
    char token[16];
    long long period_ms;
    double headroom;
    double anything;
    int power_saving;
};

static const struct wlm_cfg_field fields[] = {
    {"listen_host", WLM_CFG_STR, offsetof(struct fcfg, listen_host), 64, NULL, "127.0.0.1", 0, -1,
     "address"},
    {"listen_port", WLM_CFG_INT, offsetof(struct fcfg, listen_port), 0, NULL, "7700", 0, 65535,
     "port"},
    {"db", WLM_CFG_STR, offsetof(struct fcfg, db), 512, NULL, "wlm.db", 0, -1, "database"},
    {"token", WLM_CFG_STR, offsetof(struct fcfg, token), 16, NULL, "", 0, -1, "short buffer"},
    {"period_ms", WLM_CFG_INT, offsetof(struct fcfg, period_ms), 0, NULL, "2000", 100, 3600000,
     "period"},
    {"headroom", WLM_CFG_NUM, offsetof(struct fcfg, headroom), 0, NULL, "0.1", 0, 1, "fraction"},
    {"anything", WLM_CFG_NUM, offsetof(struct fcfg, anything), 0, NULL, NULL, 1, 0, "unbounded"},
    {"power_saving", WLM_CFG_BOOL, offsetof(struct fcfg, power_saving), 0, NULL, "false", 0, -1,
     "flag"},
};

static void check(const struct fcfg *c)
{
    if (!memchr(c->listen_host, 0, sizeof c->listen_host) || !memchr(c->db, 0, sizeof c->db) ||
        !memchr(c->token, 0, sizeof c->token))
        abort();
    if (c->listen_port < 0 || c->listen_port > 65535 || c->period_ms < 100 ||
        c->period_ms > 3600000 || !(c->headroom >= 0 && c->headroom <= 1))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fcfg c;
    struct wlm_error err = {0};
    if (size > 0 && data[0] == '-') {
        char *s = strndup((const char *)data + 1, size - 1);
        char *nl = strchr(s, '\n');
        if (nl) {
            *nl = 0;
            memset(&c, 0, sizeof c);
            if (wlm_config_load(fields, WLM_ARRAY_LEN(fields), &c, NULL, &err) != 0)
                abort(); /* defaults alone must load */
            if (wlm_config_set(fields, WLM_ARRAY_LEN(fields), &c, s, nl + 1, &err) == 0)
                check(&c);
        }
        free(s);
        return 0;
    }
    int fd = memfd_create("fuzzcfg", 0);
    if (fd < 0)
        abort();
    if (size && write(fd, data, size) != (ssize_t)size)
        abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    memset(&c, 0x5a, sizeof c); /* garbage first: defaults must overwrite it */
    if (wlm_config_load(fields, WLM_ARRAY_LEN(fields), &c, path, &err) == 0)
        check(&c);
    else if (err.msg[0] == '\0')
        abort();
    close(fd);
    return 0;
}
