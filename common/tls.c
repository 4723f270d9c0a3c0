/*
 * tls.c - OpenSSL 3 contexts and memory-BIO sessions shared by the control
 * plane (http_server.c, http_client.c) and the router (router/tls.c).
 *
 * Policy lives here so that every endpoint speaks the same TLS: version 1.2
 * at least, forward secrecy and AEAD only for 1.2 (1.3 uses OpenSSL's
 * defaults, all AEAD), no renegotiation, no compression. Clients always
 * verify the chain and the host name: there is no "insecure" switch.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "wlm_tls.h"

static const char tls_ciphers12[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

void wlm_tls_reason(char *buf, size_t n)
{
    unsigned long e = ERR_get_error(), last = e;
    while (e) { /* the last one queued is the most specific */
        last = e;
        e = ERR_get_error();
    }
    if (last)
        ERR_error_string_n(last, buf, n);
    else
        snprintf(buf, n, "unknown error");
}

static void ctx_policy(SSL_CTX *ctx)
{
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_cipher_list(ctx, tls_ciphers12);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
}

SSL_CTX *wlm_tls_server_ctx(const char *cert, const char *key, const char *field,
                            struct wlm_error *err)
{
    char why[256];
    if (!cert || !cert[0] || !key || !key[0]) {
        wlm_error_setf(err, WLM_EINVAL, field, "TLS (%s): a certificate and a key are both needed",
                       field);
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        wlm_error_setf(err, ENOMEM, field, "TLS: cannot create a context");
        return NULL;
    }
    ctx_policy(ctx);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        wlm_tls_reason(why, sizeof why);
        wlm_error_setf(err, WLM_EINVAL, field, "TLS certificate '%s' (%s): cannot load: %s", cert,
                       field, why);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        wlm_tls_reason(why, sizeof why);
        wlm_error_setf(err, WLM_EINVAL, field, "TLS key '%s' (%s): cannot load: %s", key, field,
                       why);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        wlm_tls_reason(why, sizeof why);
        wlm_error_setf(err, WLM_EINVAL, field,
                       "TLS key '%s' does not match certificate '%s' (%s): %s", key, cert, field,
                       why);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

SSL_CTX *wlm_tls_client_ctx(const char *ca_file, const char *field, struct wlm_error *err)
{
    char why[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        wlm_error_setf(err, ENOMEM, field, "TLS: cannot create a context");
        return NULL;
    }
    ctx_policy(ctx);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    ERR_clear_error();
    int ok = ca_file && ca_file[0] ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                                   : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        wlm_tls_reason(why, sizeof why);
        wlm_error_setf(err, WLM_EINVAL, field, "TLS CA file '%s' (%s): cannot load: %s",
                       ca_file && ca_file[0] ? ca_file : "(system store)", field, why);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

SSL *wlm_tls_session(SSL_CTX *ctx, int server, const char *host)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return NULL;
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    if (!rb || !wb) {
        BIO_free(rb);
        BIO_free(wb);
        SSL_free(ssl);
        return NULL;
    }
    BIO_set_mem_eof_return(rb, -1); /* empty = "want more", not EOF */
    SSL_set_bio(ssl, rb, wb);
    if (server) {
        SSL_set_accept_state(ssl);
        return ssl;
    }
    SSL_set_connect_state(ssl);
    if (host && host[0]) {
        /* An IP address is checked against the certificate's IP SANs; a name
         * against its DNS names (and is sent as SNI, which IPs never are). */
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(host);
        if (ip) {
            ASN1_OCTET_STRING_free(ip);
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
        } else {
            SSL_set_tlsext_host_name(ssl, host);
            SSL_set1_host(ssl, host);
        }
    }
    return ssl;
}

long wlm_tls_take_output(SSL *ssl, char **out)
{
    *out = NULL;
    BIO *wb = SSL_get_wbio(ssl);
    char *p = NULL;
    long n = BIO_get_mem_data(wb, &p);
    if (n <= 0)
        return 0;
    char *copy = malloc((size_t)n);
    if (!copy)
        return -1;
    memcpy(copy, p, (size_t)n);
    (void)BIO_reset(wb);
    *out = copy;
    return n;
}

void wlm_tls_handshake_error(SSL *ssl, char *buf, size_t n)
{
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK) {
        ERR_clear_error();
        snprintf(buf, n, "certificate verify failed: %s", X509_verify_cert_error_string(v));
        return;
    }
    wlm_tls_reason(buf, n);
}
