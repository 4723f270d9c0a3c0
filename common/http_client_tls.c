/*
 * http_client_tls.c - https:// on a client connection: the handshake (with
 * chain and host-name verification, wlm_tls.h), decrypting responses into the
 * plain parser path, and OpenSSL's output out.
 */
#include <errno.h>

#include <openssl/err.h>

#include "http_client_internal.h"

int wlm__http_cconn_tls_flush(struct cconn *conn)
{
    char *out;
    long n = wlm_tls_take_output(conn->ssl, &out);
    if (n < 0) {
        if (conn->req)
            wlm__http_creq_fail(conn->req, ENOMEM, "%s: out of memory", conn->req->desc);
        wlm__http_cconn_close(conn);
        return -ENOMEM;
    }
    return n ? wlm__http_cconn_write_raw(conn, out, (size_t)n) : 0;
}

void wlm__http_cconn_tls_fail(struct cconn *conn, const char *what)
{
    char why[300];
    wlm_tls_handshake_error(conn->ssl, why, sizeof why);
    if (conn->req)
        wlm__http_creq_fail(conn->req, WLM_EIO, "%s: TLS %s with %s: %s", conn->req->desc, what,
                            conn->key, why);
    wlm__http_cconn_close(conn);
}

/* Drive the handshake; send the queued request once it is done. */
void wlm__http_cconn_tls_handshake(struct cconn *conn)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(conn->ssl);
    if (wlm__http_cconn_tls_flush(conn))
        return;
    if (rc != 1) {
        int e = SSL_get_error(conn->ssl, rc);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            wlm__http_cconn_tls_fail(conn, "handshake failed");
        return;
    }
    conn->tls_up = 1;
    if (conn->send_queued && conn->req) {
        conn->send_queued = 0;
        wlm__http_cconn_send(conn);
    }
}

void wlm__http_cconn_tls_read(struct cconn *conn, const char *data, size_t n)
{
    if (BIO_write(SSL_get_rbio(conn->ssl), data, (int)n) != (int)n) {
        wlm__http_cconn_tls_fail(conn, "read failed");
        return;
    }
    if (!conn->tls_up) {
        wlm__http_cconn_tls_handshake(conn);
        if (conn->closing || !conn->tls_up)
            return;
    }
    char buf[16384];
    while (!conn->closing) {
        ERR_clear_error();
        int k = SSL_read(conn->ssl, buf, (int)sizeof buf);
        if (k <= 0) {
            int e = SSL_get_error(conn->ssl, k);
            if (wlm__http_cconn_tls_flush(conn))
                return;
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return;
            if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify: the server is done */
                struct creq *r = conn->req;
                if (r && conn->nrecv > 0) {
                    http_parser_execute(&conn->parser, &wlm__http_client_settings, NULL, 0);
                    if (conn->complete) {
                        wlm__http_cconn_complete(conn, 0);
                        return;
                    }
                }
                if (r)
                    wlm__http_creq_fail(r, WLM_EIO,
                                        "%s: connection closed before the response was "
                                        "complete",
                                        r->desc);
                wlm__http_cconn_close(conn);
                return;
            }
            wlm__http_cconn_tls_fail(conn, "read failed");
            return;
        }
        wlm__http_cconn_data(conn, buf, (size_t)k);
    }
}
