/*
 * glog — the galgod logger.
 *
 * Every message is one line on stderr:
 *
 *   2024-05-01T12:34:56.789Z INFO  [tag] message
 *
 * that is, the UTC time in ISO-8601 with milliseconds, the level, the module tag and the message. Line
 * breaks inside a message are replaced by spaces so that one message is always one line. Each line is
 * written with a single write(2), so lines from several threads never interleave.
 *
 * Messages below the current level (glog_set_level, default info) are dropped. The functions may be
 * called from any thread.
 */
#ifndef GALGO_LOG_H
#define GALGO_LOG_H

#include <stdarg.h>

enum glog_level {
	GLOG_DEBUG = 0,
	GLOG_INFO = 1,
	GLOG_WARN = 2,
	GLOG_ERROR = 3,
};

/* Sets the lowest level that is written. */
void glog_set_level(enum glog_level level);

/* The lowest level that is written. */
enum glog_level glog_get_level(void);

/*
 * Parses a level name ("debug", "info", "warn" or "warning", "error"; case-insensitive). Returns 0 and
 * sets *out, or -EINVAL.
 */
int glog_parse_level(const char *name, enum glog_level *out);

/* The name of a level ("debug", "info", "warn", "error"). */
const char *glog_level_name(enum glog_level level);

/* Writes one message at a level with a module tag (tag may be NULL). */
void glog_log(enum glog_level level, const char *tag, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void glog_vlog(enum glog_level level, const char *tag, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

/* Shorthands for glog_log at each level. */
void glog_debug(const char *tag, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void glog_info(const char *tag, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void glog_warn(const char *tag, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void glog_error(const char *tag, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * A log callback for components that report through a (ud, level, msg) function, such as
 * plog_opts.log: level 0 is info, 1 warn, 2 error (anything higher is error too). ud is the module tag
 * (a NUL-terminated string that must outlive the component) or NULL for the tag "storage".
 */
void glog_sink(void *ud, int level, const char *msg);

#endif /* GALGO_LOG_H */
