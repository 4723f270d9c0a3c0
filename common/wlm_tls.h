/*
 * wlm_tls.h - the OpenSSL 3 parts shared by every TLS endpoint in wlm: the
 * HTTP/1.1 server and client of common/ (control plane) and the router's data
 * and admin ports.
 *
 * TLS runs over memory BIOs: the socket stays libuv's, ciphertext read from
 * it is written into the session's read BIO and what OpenSSL produces
 * (handshake messages, records, alerts) is taken from its write BIO and sent.
 * Kept out of common.h so that users of common who do not speak TLS do not
 * see OpenSSL's headers.
 */
#ifndef WLM_TLS_H
#define WLM_TLS_H

#include <openssl/ssl.h>

#include "common.h"

/* The most specific OpenSSL error queued, then the queue is cleared. */
void wlm_tls_reason(char *buf, size_t n);

/* A server context: TLS 1.2 or later, forward-secret AEAD suites only, no
 * renegotiation or compression, the certificate chain and key loaded from PEM
 * files and checked against each other. `field` names the flag or JSON path
 * in errors ("--tls-cert"). Caller frees with SSL_CTX_free. */
SSL_CTX *wlm_tls_server_ctx(const char *cert, const char *key, const char *field,
                            struct wlm_error *err);

/* A client context that verifies the peer's chain against the CA
 * certificates in `ca_file` (PEM; NULL or "" = the system's store) and, per
 * session, its name (see wlm_tls_session). Caller frees with SSL_CTX_free. */
SSL_CTX *wlm_tls_client_ctx(const char *ca_file, const char *field, struct wlm_error *err);

/* A session over a fresh pair of memory BIOs. Server side: accept state.
 * Client side: connect state, SNI and the expected host name (DNS name or IP
 * address) set from `host`. NULL on allocation failure. */
SSL *wlm_tls_session(SSL_CTX *ctx, int server, const char *host);

/* Move what OpenSSL wants sent into a new malloc'd buffer (*out, caller
 * frees). Returns its length, 0 when nothing is pending (*out = NULL), or -1
 * when out of memory. */
long wlm_tls_take_output(SSL *ssl, char **out);

/* Why a client handshake failed, for a person: the certificate check's
 * verdict when it failed ("certificate verify failed: hostname mismatch"),
 * else OpenSSL's reason. */
void wlm_tls_handshake_error(SSL *ssl, char *buf, size_t n);

#endif /* WLM_TLS_H */
