/*
 * LD_PRELOAD shim for mq9's durability tests: a journal of what reached the disk, and a switch
 * that makes syncs fail. No mock: the broker and RocksDB run unchanged, only fsync(2) and
 * fdatasync(2) are wrapped.
 *
 * MQ9_SHIM_JOURNAL=path    after every successful fsync/fdatasync, appends one line
 *                          "<inode> <btime s> <btime ns> <size> <path>\n": the file (or
 *                          directory: inode and birth time tell a file from a later one that
 *                          reuses its inode) and its size just before the sync, i.e. a size the
 *                          sync made durable. The power-cut test truncates every file to its
 *                          last journaled size after SIGKILL.
 * MQ9_SHIM_FAIL_SYNC_WHEN=path
 *                          once this file exists, every fsync/fdatasync fails with EIO without
 *                          syncing: a disk that stopped taking writes.
 *
 * RocksDB 7.8 (what mq9 links) makes data durable with fdatasync (files) and fsync
 * (directories, and files with use_fsync). It also calls sync_file_range, but only to start
 * write-back early (bytes_per_sync): that never persists metadata nor flushes the drive's
 * cache, so it is not a durability point and is not journaled. It calls neither syncfs(2) nor
 * sync(2), and writes through write(2), not mmap (allow_mmap_writes is off), so msync is moot.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

typedef int (*sync_fn)(int);

static int syncs_fail(void) {
    const char *trigger = getenv("MQ9_SHIM_FAIL_SYNC_WHEN");
    return trigger != NULL && access(trigger, F_OK) == 0;
}

/* One line per sync, written with a single write(2) on an O_APPEND descriptor so that lines of
 * concurrent syncs (RocksDB's background threads) never interleave. */
static void journal(int fd, const struct statx *before) {
    const char *journal_path = getenv("MQ9_SHIM_JOURNAL");
    if (journal_path == NULL) {
        return;
    }
    char link[64];
    char path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t length = readlink(link, path, sizeof path - 1);
    if (length < 0) {
        return;
    }
    path[length] = '\0';
    char line[4200];
    int size = snprintf(line, sizeof line, "%llu %lld %u %llu %s\n",
                        (unsigned long long)before->stx_ino, (long long)before->stx_btime.tv_sec,
                        before->stx_btime.tv_nsec, (unsigned long long)before->stx_size, path);
    int out = open(journal_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (out < 0) {
        return;
    }
    if (write(out, line, (size_t)size) != size) {
        /* Nothing to do: a short journal only makes the power cut harsher. */
    }
    close(out);
}

/* The size is taken before the real sync: bytes appended while it runs may or may not be
 * covered, so the journal claims only what surely is. */
static int sync_through(const char *name, int fd) {
    static sync_fn real_fsync;
    static sync_fn real_fdatasync;
    sync_fn *real = name[1] == 's' ? &real_fsync : &real_fdatasync;
    if (*real == NULL) {
        *real = (sync_fn)dlsym(RTLD_NEXT, name);
    }
    if (syncs_fail()) {
        errno = EIO;
        return -1;
    }
    struct statx before;
    unsigned int wanted = STATX_INO | STATX_SIZE | STATX_BTIME;
    int have_size = statx(fd, "", AT_EMPTY_PATH, wanted, &before) == 0;
    int result = (*real)(fd);
    if (result == 0 && have_size) {
        int saved = errno;
        journal(fd, &before);
        errno = saved;
    }
    return result;
}

int fsync(int fd) { return sync_through("fsync", fd); }

int fdatasync(int fd) { return sync_through("fdatasync", fd); }
