/* etracectl top: a live terminal view of the daemon's Stats (DESIGN §7) — tick rate, tick
 * time and lateness, skipped periods, frames/s, rejected messages, loss and reward, and one
 * row per projection with its drift, update and gradient norms and a sparkline of the
 * drift over the last minute. Plain ANSI. Client layer. */
#ifndef ETRACE_CTL_TOP_H
#define ETRACE_CTL_TOP_H

/* Subscribes to stats_ep (NULL: the daemon's default stats endpoint) and redraws the view
 * at every Stats until `q` is typed on stdin (or SIGINT/SIGTERM). While no Stats arrive
 * it shows "waiting for daemon" and recovers when the daemon returns. stdin is put in
 * raw mode when it is a terminal, and restored. Returns the exit code: 0, or 1 when the
 * socket cannot be created. curve: the server's public key and the client's public and
 * secret keys (Z85) for a CURVE endpoint, or NULL. Called from the main thread only (it
 * installs signal handlers). */
int ctl_top_run(const char *stats_ep, const char *const curve[3]);

#endif
