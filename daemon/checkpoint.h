/* Checkpoint and recording files in the state directory (DESIGN §5.4, §7): daemon-side
 * names (a bare file name: no '/', no '..', no symlink), crash-safe writes (temporary
 * file, fsync, rename, directory fsync), the newest-first listing that resume walks, and
 * pruning to the newest `keep`. Daemon layer; plain POSIX, any thread (the daemon calls
 * the writers from libuv workers). */
#ifndef ETRACE_CHECKPOINT_H
#define ETRACE_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

/* The suffix of checkpoint files; generated names are "ckpt-<CLOCK_REALTIME ns>.ckpt". */
#define CHECKPOINT_SUFFIX ".ckpt"
#define CHECKPOINT_AUTO_PREFIX "ckpt-"

/* Checks that name is a bare file name (not empty, no '/', not "." or "..", no leading
 * '.', at most 200 bytes, printable). Returns 0, or -1 with the reason in err. */
int checkpoint_name_ok(const char *name, char *err, size_t err_len);

/* The file name for a checkpoint request: name + ".ckpt" unless it ends so; a generated
 * one when name is NULL or empty. Returns 0, or -1 (bad name, reason in err). */
int checkpoint_file_name(const char *name, char *out, size_t out_len, char *err, size_t err_len);

/* Writes buf[len] as dir/name crash-safely: dir/.name.tmp, fsync, rename, fsync(dir).
 * An existing symlink at dir/name is refused. Returns 0, or -1 with err. */
int checkpoint_write(const char *dir, const char *name, const void *buf, size_t len, char *err,
                     size_t err_len);

/* Reads dir/name (O_NOFOLLOW: a symlink is refused) into a malloc'd *buf. Returns 0, or -1
 * with err. */
int checkpoint_read(const char *dir, const char *name, uint8_t **buf, size_t *len, char *err,
                    size_t err_len);

/* Opens dir/name for a new recording (O_CREAT | O_EXCL | O_NOFOLLOW, mode 0600). Returns
 * the fd, or -1 with err (exists, symlink, ...). */
int checkpoint_create(const char *dir, const char *name, char *err, size_t err_len);

/* The *.ckpt regular files of dir, newest first (modification time, then name). *names is
 * malloc'd (free each and the array). Returns the count, or -1 when dir is unreadable. */
int checkpoint_list(const char *dir, char ***names);

/* Removes generated checkpoints (ckpt-*.ckpt) beyond the newest `keep`, and our stale
 * temporary files (checkpoint_remove_tmp, CHECKPOINT_TMP_STALE_S). Returns the number of
 * checkpoints removed. */
int checkpoint_prune(const char *dir, int keep);

/* A temporary file untouched this long is stale when pruning: no write of ours is then in
 * progress on it (a shutdown checkpoint may run beside a periodic one). */
#define CHECKPOINT_TMP_STALE_S 60

/* Removes the temporary files a crash left in dir (".NAME.ckpt.tmp": regular, owned by
 * etraced's user) not modified for min_age_s seconds (0 at start: all). Returns the number
 * removed. */
int checkpoint_remove_tmp(const char *dir, int min_age_s);

/* Creates dir and its parents (mode 0700). Returns 0 or -1. */
int checkpoint_mkdirs(const char *dir);

#endif
