/*
 * http_server_tls.c - HTTPS on a server connection: ciphertext in (handshake,
 * then decryption into the plain input path) and OpenSSL's output out.
 */
#include <string.h>

#include <openssl/err.h>

#include "http_server_internal.h"

int wlm__http_conn_tls_flush(struct wlm_http_conn *conn)
{
    char *out;
    long n = wlm_tls_take_output(conn->ssl, &out);
    if (n < 0) {
        wlm__http_conn_close(conn);
        return -ENOMEM;
    }
    return n ? wlm__http_conn_write_raw(conn, out, (size_t)n) : 0;
}

/* Ciphertext from the socket: finish the handshake, then decrypt everything
 * available. `data` may be the server's read buffer, which is reused for the
 * plaintext once OpenSSL holds the ciphertext. */
void wlm__http_conn_tls_input(struct wlm_http_conn *conn, char *data, size_t n)
{
    if (conn->draining || conn->final)
        return;
    if (!conn->tls_up && !conn->tls_seen && n >= 4 && data[0] >= 'A' && data[0] <= 'Z' &&
        (!memcmp(data, "GET ", 4) || !memcmp(data, "POST", 4) || !memcmp(data, "PUT ", 4) ||
         !memcmp(data, "HEAD", 4) || !memcmp(data, "DELE", 4) || !memcmp(data, "OPTI", 4))) {
        /* Plain HTTP on the HTTPS port: say so in plain HTTP, not with a reset. */
        static const char msg[] =
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
            "Connection: close\r\nContent-Length: 75\r\n\r\n"
            "{\"error\":\"invalid\",\"detail\":\"this port speaks HTTPS: use an https:// URL\"}\n";
        char *copy = malloc(sizeof msg - 1);
        if (!copy) {
            wlm__http_conn_close(conn);
            return;
        }
        memcpy(copy, msg, sizeof msg - 1);
        if (wlm__http_conn_write_raw(conn, copy, sizeof msg - 1))
            return;
        conn->final = 1;
        wlm__http_conn_finish(conn);
        return;
    }
    conn->tls_seen = 1;
    if (BIO_write(SSL_get_rbio(conn->ssl), data, (int)n) != (int)n) {
        wlm__http_conn_close(conn);
        return;
    }
    if (!conn->tls_up) {
        ERR_clear_error();
        int rc = SSL_do_handshake(conn->ssl);
        if (wlm__http_conn_tls_flush(conn))
            return;
        if (rc != 1) {
            int e = SSL_get_error(conn->ssl, rc);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return;
            char why[256];
            wlm_tls_reason(why, sizeof why);
            wlm_debug("http", "TLS handshake failed", "peer=%s reason=\"%s\"", conn->peer, why);
            wlm__http_conn_close(conn);
            return;
        }
        conn->tls_up = 1;
    }
    char *buf = conn->srv->rbuf;
    while (!conn->closing && !conn->draining && !conn->final) {
        ERR_clear_error();
        int k = SSL_read(conn->ssl, buf, (int)sizeof conn->srv->rbuf);
        if (k <= 0) {
            int e = SSL_get_error(conn->ssl, k);
            if (wlm__http_conn_tls_flush(conn))
                return;
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return;
            if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify: like EOF */
                wlm__http_conn_on_eof(conn);
                return;
            }
            wlm__http_conn_close(conn);
            return;
        }
        wlm__http_conn_input(conn, buf, (size_t)k);
    }
}
