/*
 * tlscert — the TLS server context of galgod's TCP listener (see tlscert.h).
 */
#include "node/tlscert.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "node/datadir.h"

#define TLSCERT_DAYS 3650L

/* Formats a message into errbuf, followed by OpenSSL's last error when there is one. */
static void tls_err(char *errbuf, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void tls_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	unsigned long code = ERR_peek_last_error();
	const char *reason = code ? ERR_reason_error_string(code) : NULL;
	if (errbuf != NULL && errlen > 0) {
		if (reason != NULL)
			snprintf(errbuf, errlen, "%s: %s", msg, reason);
		else
			snprintf(errbuf, errlen, "%s", msg);
	}
	ERR_clear_error();
}

/* Adds one X.509 v3 extension written in OpenSSL's configuration syntax. Returns 0 or -1. */
static int add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, v3, nid, value);
	if (ext == NULL)
		return -1;
	int ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok == 1 ? 0 : -1;
}

/* Builds and signs the development certificate for pkey. Returns it, or NULL. */
static X509 *make_cert(EVP_PKEY *pkey)
{
	X509 *x = X509_new();
	BIGNUM *serial = BN_new();
	if (x == NULL || serial == NULL)
		goto fail;
	/* A random positive 127-bit serial number, as RFC 5280 recommends for unrelated certificates. */
	if (X509_set_version(x, 2) != 1 || BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
	    BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) == NULL)
		goto fail;
	/* An hour of slack covers clocks that are a little behind. */
	if (X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(x), TLSCERT_DAYS * 24 * 3600) == NULL)
		goto fail;
	X509_NAME *name = X509_get_subject_name(x);
	if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0) != 1 ||
	    X509_set_issuer_name(x, name) != 1 || X509_set_pubkey(x, pkey) != 1)
		goto fail;
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	/* An end-entity certificate (not a CA), so that strict verifiers accept it as its own anchor. */
	if (add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
	    add_ext(x, &v3, NID_ext_key_usage, "serverAuth") != 0 ||
	    add_ext(x, &v3, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1") != 0 ||
	    add_ext(x, &v3, NID_subject_key_identifier, "hash") != 0)
		goto fail;
	if (X509_sign(x, pkey, EVP_sha256()) <= 0)
		goto fail;
	BN_free(serial);
	return x;
fail:
	BN_free(serial);
	X509_free(x);
	return NULL;
}

/*
 * Writes a PEM file through a temporary name and a rename. key: write pkey with mode 0600; otherwise
 * write cert with mode 0644. Returns 0 or a negative errno.
 */
static int write_pem(const char *path, EVP_PKEY *pkey, X509 *cert)
{
	char tmp[4096];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return -ENAMETOOLONG;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, pkey != NULL ? 0600 : 0644);
	if (fd < 0)
		return -errno;
	FILE *f = fdopen(fd, "w");
	if (f == NULL) {
		int e = errno;
		close(fd);
		unlink(tmp);
		return -e;
	}
	int ok = pkey != NULL ? PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, cert);
	int rc = ok == 1 ? 0 : -EIO;
	if (rc == 0 && (fflush(f) != 0 || fsync(fileno(f)) != 0))
		rc = -errno;
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc == 0)
		rc = datadir_sync_parent(path); /* the rename survives a power loss */
	if (rc != 0)
		unlink(tmp);
	return rc;
}

int tlscert_generate(const char *cert_path, const char *key_path, char *errbuf, size_t errlen)
{
	ERR_clear_error();
	EVP_PKEY *pkey = EVP_EC_gen("P-256");
	if (pkey == NULL) {
		tls_err(errbuf, errlen, "cannot generate a P-256 key");
		return -EIO;
	}
	X509 *x = make_cert(pkey);
	if (x == NULL) {
		tls_err(errbuf, errlen, "cannot build the development certificate");
		EVP_PKEY_free(pkey);
		return -EIO;
	}
	/* The key first: a certificate on disk always has its key next to it. */
	int rc = write_pem(key_path, pkey, NULL);
	if (rc < 0)
		tls_err(errbuf, errlen, "cannot write %s: %s", key_path, strerror(-rc));
	if (rc == 0) {
		rc = write_pem(cert_path, NULL, x);
		if (rc < 0)
			tls_err(errbuf, errlen, "cannot write %s: %s", cert_path, strerror(-rc));
	}
	X509_free(x);
	EVP_PKEY_free(pkey);
	return rc;
}

int tlscert_server_ctx(const char *cert, const char *key, const char *data_dir, SSL_CTX **out,
		       char *cert_path, size_t cert_path_len, bool *generated, char *errbuf, size_t errlen)
{
	char gen_cert[4096], gen_key[4096];
	bool have_cert = cert != NULL && cert[0] != '\0', have_key = key != NULL && key[0] != '\0';
	int rc;

	*out = NULL;
	*generated = false;
	if (have_cert != have_key) {
		tls_err(errbuf, errlen, "tcp.tls_cert and tcp.tls_key must be set together");
		return -EINVAL;
	}
	if (!have_cert) {
		char dir[4096];
		if ((size_t)snprintf(dir, sizeof(dir), "%s/%s", data_dir, TLSCERT_DIR) >= sizeof(dir) ||
		    (size_t)snprintf(gen_cert, sizeof(gen_cert), "%s/%s", dir, TLSCERT_CERT_FILE) >= sizeof(gen_cert) ||
		    (size_t)snprintf(gen_key, sizeof(gen_key), "%s/%s", dir, TLSCERT_KEY_FILE) >= sizeof(gen_key)) {
			tls_err(errbuf, errlen, "data directory path too long for the TLS files");
			return -ENAMETOOLONG;
		}
		rc = datadir_mkdir_p(dir);
		if (rc < 0) {
			tls_err(errbuf, errlen, "cannot create %s: %s", dir, strerror(-rc));
			return rc;
		}
		/* Either file missing: make both anew, so that they always belong together. */
		if (access(gen_cert, F_OK) != 0 || access(gen_key, F_OK) != 0) {
			rc = tlscert_generate(gen_cert, gen_key, errbuf, errlen);
			if (rc < 0)
				return rc;
			*generated = true;
		}
		cert = gen_cert;
		key = gen_key;
	}

	/* OpenSSL reports a missing file only as "system lib": say which file and why first. */
	const char *files[2] = {cert, key};
	for (int i = 0; i < 2; i++) {
		if (access(files[i], R_OK) != 0) {
			rc = -errno;
			tls_err(errbuf, errlen, "cannot read %s: %s", files[i], strerror(-rc));
			return rc;
		}
	}
	ERR_clear_error();
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		tls_err(errbuf, errlen, "cannot create a TLS context");
		return -ENOMEM;
	}
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
		tls_err(errbuf, errlen, "cannot restrict the TLS versions");
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		tls_err(errbuf, errlen, "cannot load the TLS certificate %s", cert);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		tls_err(errbuf, errlen, "cannot load the TLS key %s", key);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		tls_err(errbuf, errlen, "the TLS key %s does not match the certificate %s", key, cert);
		goto fail;
	}
	if (cert_path != NULL && cert_path_len > 0)
		snprintf(cert_path, cert_path_len, "%s", cert);
	*out = ctx;
	return 0;
fail:
	SSL_CTX_free(ctx);
	return -EINVAL;
}
