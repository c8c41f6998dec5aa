/* Checkpoint and recording files (see checkpoint.h). */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "security.h"

int
checkpoint_name_ok(const char *name, char *err, size_t err_len)
{
    size_t n = name ? strlen(name) : 0;
    if (!n) {
        snprintf(err, err_len, "an empty name");
        return -1;
    }
    if (n > 200) {
        snprintf(err, err_len, "name '%.40s...' is over 200 bytes", name);
        return -1;
    }
    if (strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..") || strstr(name, "..")) {
        snprintf(err, err_len,
                 "name '%s': a bare file name (in checkpoint.dir, or the state directory for "
                 "recordings) is "
                 "required ('/' and '..' are refused)",
                 name);
        return -1;
    }
    if (name[0] == '.' || name[0] == '-') {
        snprintf(err, err_len, "name '%s' may not start with '%c'", name, name[0]);
        return -1;
    }
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p < 0x20 || *p == 0x7f) {
            snprintf(err, err_len, "name contains a control character");
            return -1;
        }
    return 0;
}

int
checkpoint_file_name(const char *name, char *out, size_t out_len, char *err, size_t err_len)
{
    if (!name || !*name) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(out, out_len, CHECKPOINT_AUTO_PREFIX "%019lld" CHECKPOINT_SUFFIX,
                 (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
        return 0;
    }
    if (checkpoint_name_ok(name, err, err_len))
        return -1;
    size_t n = strlen(name), sl = strlen(CHECKPOINT_SUFFIX);
    if (n >= sl && !strcmp(name + n - sl, CHECKPOINT_SUFFIX))
        snprintf(out, out_len, "%s", name);
    else
        snprintf(out, out_len, "%s" CHECKPOINT_SUFFIX, name);
    return 0;
}

static int
is_symlink(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISLNK(st.st_mode);
}

static int
write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int
checkpoint_write(const char *dir, const char *name, const void *buf, size_t len, char *err,
                 size_t err_len)
{
    char path[4096], tmp[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
    if (is_symlink(path)) {
        snprintf(err, err_len, "%s is a symlink: refused", name);
        return -1;
    }
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, err_len, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    if (write_all(fd, buf, len) || fsync(fd)) {
        snprintf(err, err_len, "%s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path)) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

int
checkpoint_read(const char *dir, const char *name, uint8_t **buf, size_t *len, char *err,
                size_t err_len)
{
    char path[4096];
    struct stat st;
    *buf = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    /* Not blocking on a FIFO, no symlink, a regular file etraced's user wrote, in a
     * directory only that user (or root) can change. */
    if (security_dir_ok(dir, "checkpoint.dir", err, err_len))
        return -1;
    int fd = security_open_read(path, 1, &st, err, err_len);
    if (fd < 0)
        return -1;
    if (security_file_ours(&st, name, err, err_len)) {
        close(fd);
        return -1;
    }
    *len = (size_t)st.st_size;
    *buf = malloc(*len ? *len : 1);
    size_t got = 0;
    while (*buf && got < *len) {
        ssize_t n = read(fd, *buf + got, *len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (!*buf || got != *len) {
        snprintf(err, err_len, "%s: %s", name, *buf ? "short read" : "out of memory");
        free(*buf);
        *buf = NULL;
        return -1;
    }
    return 0;
}

int
checkpoint_create(const char *dir, const char *name, char *err, size_t err_len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        snprintf(err, err_len, "%s: %s", name,
                 errno == EEXIST ? (is_symlink(path) ? "is a symlink: refused"
                                                     : "exists (recordings are never overwritten)")
                                 : strerror(errno));
    return fd;
}

struct entry {
    char *name;
    int64_t mtime_ns;
};

static int
newest_first(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    if (x->mtime_ns != y->mtime_ns)
        return x->mtime_ns > y->mtime_ns ? -1 : 1;
    return -strcmp(x->name, y->name);
}

int
checkpoint_list(const char *dir, char ***names)
{
    DIR *dp = opendir(dir);
    struct dirent *e;
    struct entry *v = NULL;
    int n = 0, cap = 0;
    size_t sl = strlen(CHECKPOINT_SUFFIX);
    *names = NULL;
    if (!dp)
        return -1;
    while ((e = readdir(dp))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len <= sl || strcmp(e->d_name + len - sl, CHECKPOINT_SUFFIX))
            continue;
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (lstat(path, &st) || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            struct entry *nv = realloc(v, (size_t)cap * sizeof(*v));
            if (!nv)
                break;
            v = nv;
        }
        v[n].name = strdup(e->d_name);
        v[n].mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
        if (v[n].name)
            n++;
    }
    closedir(dp);
    if (n > 1) /* qsort with v NULL (an empty directory) is undefined */
        qsort(v, (size_t)n, sizeof(*v), newest_first);
    *names = calloc((size_t)n + 1, sizeof(char *));
    for (int i = 0; i < n; i++) {
        if (*names)
            (*names)[i] = v[i].name;
        else
            free(v[i].name);
    }
    free(v);
    return *names ? n : -1;
}

int
checkpoint_remove_tmp(const char *dir, int min_age_s)
{
    static const char tmp_suffix[] = CHECKPOINT_SUFFIX ".tmp";
    size_t sl = strlen(tmp_suffix);
    struct timespec now;
    DIR *dp = opendir(dir);
    struct dirent *e;
    int removed = 0;
    if (!dp)
        return 0;
    clock_gettime(CLOCK_REALTIME, &now);
    while ((e = readdir(dp))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] != '.' || len <= sl + 1 || strcmp(e->d_name + len - sl, tmp_suffix))
            continue;
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        /* Ours only: a regular file of etraced's user, not written to for min_age_s. */
        if (lstat(path, &st) || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
            now.tv_sec - st.st_mtim.tv_sec < min_age_s)
            continue;
        removed += unlink(path) == 0;
    }
    closedir(dp);
    return removed;
}

int
checkpoint_prune(const char *dir, int keep)
{
    char **names;
    int n = checkpoint_list(dir, &names), removed = 0, kept = 0;
    for (int i = 0; i < n; i++) {
        if (!strncmp(names[i], CHECKPOINT_AUTO_PREFIX, strlen(CHECKPOINT_AUTO_PREFIX))) {
            if (kept++ >= keep) {
                char path[4096];
                snprintf(path, sizeof path, "%s/%s", dir, names[i]);
                removed += unlink(path) == 0;
            }
        }
        free(names[i]);
    }
    free(names);
    checkpoint_remove_tmp(dir, CHECKPOINT_TMP_STALE_S);
    return removed;
}

int
checkpoint_mkdirs(const char *dir)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0700) && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, 0700) && errno != EEXIST)
        return -1;
    return 0;
}
