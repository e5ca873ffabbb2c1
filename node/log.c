/*
 * glog — the galgod logger (see log.h).
 */
#include "node/log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* The lowest level written; an atomic so that any thread may log while another changes it. */
static _Atomic int glog_min_level = GLOG_INFO;

/* Level names as they appear in a line, padded to the same width so that messages line up. */
static const char *const glog_line_names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
static const char *const glog_names[] = {"debug", "info", "warn", "error"};

void glog_set_level(enum glog_level level)
{
	if ((int)level < GLOG_DEBUG)
		level = GLOG_DEBUG;
	if ((int)level > GLOG_ERROR)
		level = GLOG_ERROR;
	atomic_store(&glog_min_level, (int)level);
}

enum glog_level glog_get_level(void)
{
	return (enum glog_level)atomic_load(&glog_min_level);
}

int glog_parse_level(const char *name, enum glog_level *out)
{
	if (name == NULL)
		return -EINVAL;
	for (int i = GLOG_DEBUG; i <= GLOG_ERROR; i++) {
		if (strcasecmp(name, glog_names[i]) == 0) {
			*out = (enum glog_level)i;
			return 0;
		}
	}
	if (strcasecmp(name, "warning") == 0) {
		*out = GLOG_WARN;
		return 0;
	}
	return -EINVAL;
}

const char *glog_level_name(enum glog_level level)
{
	if ((int)level < GLOG_DEBUG || (int)level > GLOG_ERROR)
		return "?";
	return glog_names[level];
}

/* Writes all of buf to stderr, retrying after interruptions and short writes. */
static void glog_write_all(const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDERR_FILENO, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		buf += n;
		len -= (size_t)n;
	}
}

/* Formats the line prefix (time, level, tag) into buf and returns its length. */
static size_t glog_prefix(char *buf, size_t cap, enum glog_level level, const char *tag)
{
	struct timespec ts;
	struct tm tm;
	char date[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
	int n = snprintf(buf, cap, "%s.%03ldZ %s [%s] ", date, ts.tv_nsec / 1000000L, glog_line_names[level],
			 tag != NULL ? tag : "-");
	if (n < 0)
		return 0;
	return (size_t)n < cap ? (size_t)n : cap - 1;
}

void glog_vlog(enum glog_level level, const char *tag, const char *fmt, va_list ap)
{
	char stack[1024];
	char *buf = stack;
	size_t cap = sizeof(stack);
	va_list ap2;

	if ((int)level < GLOG_DEBUG)
		level = GLOG_DEBUG;
	if ((int)level > GLOG_ERROR)
		level = GLOG_ERROR;
	if ((int)level < atomic_load(&glog_min_level))
		return;

	size_t pre = glog_prefix(buf, cap, level, tag);
	va_copy(ap2, ap);
	int n = vsnprintf(buf + pre, cap - pre, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		n = 0;
	/* The message did not fit (room is kept for the newline): format it again into a big enough buffer. */
	if ((size_t)n + 2 > cap - pre) {
		size_t need = pre + (size_t)n + 2;
		char *big = malloc(need);
		if (big != NULL) {
			memcpy(big, buf, pre);
			buf = big;
			cap = need;
			va_copy(ap2, ap);
			vsnprintf(buf + pre, cap - pre, fmt, ap2);
			va_end(ap2);
		} else {
			if (pre > cap - 2)
				pre = cap - 2;
			n = (int)(cap - pre - 2);
		}
	}
	size_t len = pre + (size_t)n;
	/* One message is one line: line breaks inside it become spaces. */
	for (size_t i = pre; i < len; i++) {
		if (buf[i] == '\n' || buf[i] == '\r')
			buf[i] = ' ';
	}
	buf[len++] = '\n';
	glog_write_all(buf, len);
	if (buf != stack)
		free(buf);
}

void glog_log(enum glog_level level, const char *tag, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	glog_vlog(level, tag, fmt, ap);
	va_end(ap);
}

void glog_debug(const char *tag, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	glog_vlog(GLOG_DEBUG, tag, fmt, ap);
	va_end(ap);
}

void glog_info(const char *tag, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	glog_vlog(GLOG_INFO, tag, fmt, ap);
	va_end(ap);
}

void glog_warn(const char *tag, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	glog_vlog(GLOG_WARN, tag, fmt, ap);
	va_end(ap);
}

void glog_error(const char *tag, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	glog_vlog(GLOG_ERROR, tag, fmt, ap);
	va_end(ap);
}

void glog_sink(void *ud, int level, const char *msg)
{
	enum glog_level l = level <= 0 ? GLOG_INFO : level == 1 ? GLOG_WARN : GLOG_ERROR;
	glog_log(l, ud != NULL ? (const char *)ud : "storage", "%s", msg != NULL ? msg : "");
}
