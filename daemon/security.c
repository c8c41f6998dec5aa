/* File-system and network trust rules (see security.h). */
#include "security.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "root.h"
#include "log.h"

static const char *const ep_names[CONFIG_N_EP] = {"input", "output", "control", "stats"};

int
security_open_read(const char *path, int nofollow, struct stat *st, char *err, size_t err_len)
{
    struct stat tmp;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0));
    if (!st)
        st = &tmp;
    if (fd < 0) {
        snprintf(err, err_len, "%s: %s", path,
                 nofollow && errno == ELOOP ? "is a symlink: refused" : strerror(errno));
        return -1;
    }
    if (fstat(fd, st)) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st->st_mode)) {
        snprintf(err, err_len, "%s: not a regular file (%s): refused", path,
                 S_ISFIFO(st->st_mode)   ? "a FIFO"
                 : S_ISDIR(st->st_mode)  ? "a directory"
                 : S_ISSOCK(st->st_mode) ? "a socket"
                                         : "a device");
        close(fd);
        return -1;
    }
    return fd;
}

int
security_dir_ok(const char *dir, const char *what, char *err, size_t err_len)
{
    struct stat st;
    if (stat(dir, &st)) {
        snprintf(err, err_len, "%s %s: %s", what, dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, err_len, "%s %s: not a directory", what, dir);
        return -1;
    }
    if (st.st_uid != geteuid() && st.st_uid != 0) {
        snprintf(err, err_len,
                 "%s %s: owned by uid %u, neither etraced's user (uid %u) nor root: refused "
                 "(another user could replace what etraced reads there)",
                 what, dir, (unsigned)st.st_uid, (unsigned)geteuid());
        return -1;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(err, err_len,
                 "%s %s: mode %04o is group- or world-writable: refused (chmod go-w, e.g. "
                 "0700; 0750 with security.socket_group)",
                 what, dir, (unsigned)(st.st_mode & 07777));
        return -1;
    }
    return 0;
}

int
security_file_ours(const struct stat *st, const char *name, char *err, size_t err_len)
{
    if (st->st_uid != geteuid()) {
        snprintf(err, err_len,
                 "%s: owned by uid %u, not by etraced's user (uid %u): not a checkpoint etraced "
                 "wrote, refused",
                 name, (unsigned)st->st_uid, (unsigned)geteuid());
        return -1;
    }
    if (st->st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(err, err_len,
                 "%s: mode %04o is group- or world-writable (etraced writes 0600): refused", name,
                 (unsigned)(st->st_mode & 07777));
        return -1;
    }
    return 0;
}

/* The gid of a group name or number. Returns 0, or -1. */
static int
group_id(const char *name, gid_t *gid)
{
    char buf[16384], *end;
    struct group gr, *res = NULL;
    if (getgrnam_r(name, &gr, buf, sizeof buf, &res) == 0 && res) {
        *gid = res->gr_gid;
        return 0;
    }
    errno = 0;
    unsigned long v = strtoul(name, &end, 10);
    if (*name && !*end && !errno && v <= (unsigned long)INT_MAX) {
        *gid = (gid_t)v;
        return 0;
    }
    return -1;
}

/* The file path of an ipc endpoint, or NULL (another transport, or an abstract socket). */
static const char *
ipc_path(const char *url)
{
    if (!url || strncmp(url, "ipc://", 6) || url[6] == '@')
        return NULL;
    return url + 6;
}

int
security_start(struct daemon *d, char *err, size_t err_len)
{
    const struct config *c = &d->cfg;
    const char *ckpt = c->checkpoint_dir ? c->checkpoint_dir : d->state_dir;
    gid_t gid;
    umask(077);
    for (int i = 0; i < CONFIG_N_EP; i++) {
        const char *url = c->endpoints[i];
        if (!url || !strncmp(url, "ipc://", 6) || !strncmp(url, "inproc://", 9))
            continue;
        if (!c->curve_server_secret_file && !c->security_allow_plaintext_tcp) {
            snprintf(err, err_len,
                     "endpoints.%s: %s without CURVE gives anyone who reaches it full control: "
                     "set curve.server_secret_file (and curve.allow), or accept the risk with "
                     "security.allow_plaintext_tcp: true",
                     ep_names[i], url);
            return -1;
        }
        if (!c->curve_server_secret_file)
            log_warning("endpoints.%s: %s has no CURVE (security.allow_plaintext_tcp: true): "
                        "anyone who reaches it has full control",
                        ep_names[i], url);
    }
    if (c->security_socket_group && group_id(c->security_socket_group, &gid)) {
        snprintf(err, err_len, "security.socket_group: no group '%s'", c->security_socket_group);
        return -1;
    }
    /* The default socket directory, when it exists already (it is made later, 0700). */
    for (int i = 0; i < CONFIG_N_EP; i++) {
        struct stat st;
        if (!c->endpoints[i] && stat(d->run_dir, &st) == 0) {
            if (security_dir_ok(d->run_dir, "the socket directory", err, err_len))
                return -1;
            break;
        }
    }
    if (checkpoint_mkdirs(d->state_dir) && errno != EEXIST)
        log_warning("cannot create the state directory %s: %s", d->state_dir, strerror(errno));
    else if (security_dir_ok(d->state_dir, "the state directory", err, err_len))
        return -1;
    if (checkpoint_mkdirs(ckpt) && errno != EEXIST)
        log_warning("cannot create checkpoint.dir %s: %s", ckpt, strerror(errno));
    else if (security_dir_ok(ckpt, "checkpoint.dir", err, err_len))
        return -1;
    for (int i = 0; i < CONFIG_N_EP; i++) {
        const char *path = ipc_path(c->endpoints[i]);
        char dir[PATH_MAX], what[64];
        if (!path)
            continue;
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (!slash)
            snprintf(dir, sizeof dir, ".");
        else if (slash == dir)
            dir[1] = '\0';
        else
            *slash = '\0';
        snprintf(what, sizeof what, "endpoints.%s's directory", ep_names[i]);
        if (security_dir_ok(dir, what, err, err_len))
            return -1;
    }
    return 0;
}

int
security_sockets_bound(struct daemon *d, char *err, size_t err_len)
{
    const struct config *c = &d->cfg;
    const char *group = c->security_socket_group;
    gid_t gid = (gid_t)-1;
    int any_default = 0;
    if (group && group_id(group, &gid)) {
        snprintf(err, err_len, "security.socket_group: no group '%s'", group);
        return -1;
    }
    for (int i = 0; i < CONFIG_N_EP; i++) {
        char def[PATH_MAX + 16];
        const char *path = ipc_path(c->endpoints[i]);
        if (!c->endpoints[i]) {
            snprintf(def, sizeof def, "%s/%s", d->run_dir, ep_names[i]);
            path = def;
            any_default = 1;
        }
        if (!path)
            continue;
        if (group && chown(path, (uid_t)-1, gid)) {
            snprintf(err, err_len, "endpoints.%s: %s: cannot give it to group %s: %s", ep_names[i],
                     path, group, strerror(errno));
            return -1;
        }
        if (chmod(path, group ? 0660 : 0600)) {
            snprintf(err, err_len, "endpoints.%s: %s: %s", ep_names[i], path, strerror(errno));
            return -1;
        }
    }
    if (group && any_default && (chown(d->run_dir, (uid_t)-1, gid) || chmod(d->run_dir, 0750))) {
        snprintf(err, err_len, "the socket directory %s: cannot give it to group %s: %s",
                 d->run_dir, group, strerror(errno));
        return -1;
    }
    return 0;
}
