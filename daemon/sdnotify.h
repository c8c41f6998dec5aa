/* systemd notification (DESIGN §5.7): READY, WATCHDOG, STOPPING, STATUS. Daemon layer.
 * Each is a no-op outside systemd (no NOTIFY_SOCKET). Loop thread or start-up only. */
#ifndef ETRACE_SDNOTIFY_H
#define ETRACE_SDNOTIFY_H

#include <stdint.h>

/* READY=1 with a STATUS line. */
void sdnotify_ready(const char *status);

/* RELOADING=1 with MONOTONIC_USEC (CLOCK_MONOTONIC now), before a reload (SIGHUP); send
 * sdnotify_ready after it, as Type=notify-reload expects. */
void sdnotify_reloading(void);

/* STATUS= alone, the one-line state systemctl status shows. */
void sdnotify_status(const char *status);

/* STOPPING=1. */
void sdnotify_stopping(void);

/* WATCHDOG=1. */
void sdnotify_watchdog(void);

/* The watchdog interval the service manager expects in nanoseconds, 0 when off. */
int64_t sdnotify_watchdog_ns(void);

#endif
