/* systemd notification (see sdnotify.h). */
#include "sdnotify.h"

#include <stdio.h>
#include <time.h>
#include <systemd/sd-daemon.h>

void
sdnotify_ready(const char *status)
{
    sd_notifyf(0, "READY=1\nSTATUS=%s", status ? status : "running");
}

void
sdnotify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
               (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
}

void
sdnotify_status(const char *status)
{
    sd_notifyf(0, "STATUS=%s", status);
}

void
sdnotify_stopping(void)
{
    sd_notify(0, "STOPPING=1");
}

void
sdnotify_watchdog(void)
{
    sd_notify(0, "WATCHDOG=1");
}

int64_t
sdnotify_watchdog_ns(void)
{
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0)
        return 0;
    return (int64_t)usec * 1000;
}
