/*
 * tlscert — the TLS server context of galgod's TCP listener, from configured PEM files or from a
 * self-signed development certificate.
 *
 * With a certificate and a key configured, both are loaded and must match. With neither, a development
 * certificate is used: <data_dir>/tls/cert.pem and <data_dir>/tls/key.pem, made on first start (an EC
 * P-256 key, a self-signed X.509 v3 certificate for CN=localhost with subjectAltName DNS:localhost and
 * IP:127.0.0.1, valid for ten years, usable as its own trust anchor) and reused as they are on later
 * starts. The key file is written with mode 0600, and both files appear through a rename, so a crash
 * never leaves half a file behind. Clients verify the server against cert.pem.
 */
#ifndef GALGO_TLSCERT_H
#define GALGO_TLSCERT_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#define TLSCERT_DIR "tls"
#define TLSCERT_CERT_FILE "cert.pem"
#define TLSCERT_KEY_FILE "key.pem"

/*
 * Makes the server context (TLS 1.2 and later). cert and key are the configured paths, either both
 * empty (or NULL) or both set. On success returns 0, sets *out (the caller frees it with SSL_CTX_free),
 * writes the certificate's path into cert_path and sets *generated when the certificate was made by
 * this call. Otherwise returns a negative errno (-EINVAL for a bad or mismatched configuration) with a
 * one-line message in errbuf.
 */
int tlscert_server_ctx(const char *cert, const char *key, const char *data_dir, SSL_CTX **out,
		       char *cert_path, size_t cert_path_len, bool *generated, char *errbuf, size_t errlen);

/*
 * Writes a new self-signed development certificate and its key (the files described above) to
 * cert_path and key_path, replacing any that exist. Returns 0 or a negative errno with a message.
 */
int tlscert_generate(const char *cert_path, const char *key_path, char *errbuf, size_t errlen);

#endif /* GALGO_TLSCERT_H */
