/* Log lines on stderr (journald reads them under systemd). Daemon layer. Never called from
 * inside a tick. Lines start with "etraced: " and the level; under systemd the sd-daemon
 * "<N>" priority prefix is added so journald keeps the level. */
#ifndef ETRACE_LOG_H
#define ETRACE_LOG_H

enum log_level { LOG_LEVEL_ERROR = 3, LOG_LEVEL_WARNING = 4, LOG_LEVEL_INFO = 6 };

/* Writes one line (a newline is added). Any thread. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)

#endif
