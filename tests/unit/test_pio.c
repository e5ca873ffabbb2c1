/*
 * Tests of the pio backends: the behaviour both share (run once on the real file system under a
 * temporary directory and once on the simulation), then the simulation's durability model and faults.
 */
#define _GNU_SOURCE /* nftw */
#include <criterion/criterion.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "partition/pio.h"
#include "partition/piosim.h"

/* ---- fixture: one backend and a root directory for the test's paths ---- */

static struct pio *P;
static char root[256];

static void real_setup(void)
{
	strcpy(root, "/tmp/galgo-test-pio-XXXXXX");
	cr_assert_not_null(mkdtemp(root));
	P = pio_real_new();
	cr_assert_not_null(P);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void real_teardown(void)
{
	pio_destroy(P);
	nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void sim_setup(void)
{
	strcpy(root, "/sim/data");
	P = pio_sim_new();
	cr_assert_not_null(P);
	cr_assert_eq(pio_mkdir(P, root), 0);
}

static void sim_teardown(void)
{
	pio_destroy(P);
}

/* root + "/" + rel, in one of a few rotating static buffers. */
static const char *at(const char *rel)
{
	static char bufs[8][PATH_MAX];
	static int next;
	char *b = bufs[next++ % 8];
	if (rel[0])
		snprintf(b, PATH_MAX, "%s/%s", root, rel);
	else
		snprintf(b, PATH_MAX, "%s", root);
	return b;
}

/* ---- helpers ---- */

static struct pio_file *open_ok(const char *rel, int flags)
{
	struct pio_file *f = NULL;
	int r = pio_open(P, at(rel), flags, &f);
	cr_assert_eq(r, 0, "open %s: %d", rel, r);
	return f;
}

static void write_str(struct pio_file *f, uint64_t off, const char *s)
{
	struct iovec iov = {(void *)s, strlen(s)};
	cr_assert_eq(pio_pwritev(P, f, &iov, 1, off), 0);
}

/* Creates rel with content s (volatile only). */
static void put(const char *rel, const char *s)
{
	struct pio_file *f = open_ok(rel, PIO_CREATE);
	cr_assert_eq(pio_truncate(P, f, 0), 0);
	write_str(f, 0, s);
	pio_close(P, f);
}

/* Creates rel with content s and makes both content and name durable. */
static void put_durable(const char *rel, const char *s)
{
	struct pio_file *f = open_ok(rel, PIO_CREATE);
	cr_assert_eq(pio_truncate(P, f, 0), 0);
	write_str(f, 0, s);
	cr_assert_eq(pio_datasync(P, f), 0);
	pio_close(P, f);
	cr_assert_eq(pio_syncdir(P, root), 0);
}

/* Asserts that rel exists with exactly the content s (len bytes). */
static void expect_bytes(const char *rel, const void *s, size_t len)
{
	struct pio_file *f = open_ok(rel, PIO_RDONLY);
	uint64_t size = 0;
	cr_assert_eq(pio_size(P, f, &size), 0);
	cr_assert_eq(size, len, "%s: size %llu, want %zu", rel, (unsigned long long)size, len);
	char buf[256];
	cr_assert_leq(len, sizeof(buf));
	ssize_t n = pio_pread(P, f, buf, sizeof(buf), 0);
	cr_assert_eq(n, (ssize_t)len);
	cr_assert_arr_eq(buf, s, len, "%s: wrong content", rel);
	pio_close(P, f);
}

static void expect(const char *rel, const char *s)
{
	expect_bytes(rel, s, strlen(s));
}

static void expect_missing(const char *rel)
{
	struct pio_file *f = NULL;
	cr_assert_eq(pio_open(P, at(rel), PIO_RDONLY, &f), -ENOENT, "%s should not exist", rel);
}

static void power_loss(uint32_t tear)
{
	cr_assert_eq(pio_sim_power_loss(P, tear), 0);
}

/* ---- behaviour shared by both backends ---- */

static void check_roundtrip(void)
{
	struct pio_file *f = open_ok("a", PIO_CREATE);
	struct iovec iov[3] = {{"hello", 5}, {", ", 2}, {"world", 5}};
	cr_assert_eq(pio_pwritev(P, f, iov, 3, 0), 0);
	struct iovec empty[2] = {{"", 0}, {"!", 1}};
	cr_assert_eq(pio_pwritev(P, f, empty, 2, 12), 0);
	struct iovec gap = {"Z", 1};
	cr_assert_eq(pio_pwritev(P, f, &gap, 1, 16), 0);
	char buf[32];
	cr_assert_eq(pio_pread(P, f, buf, 17, 0), 17);
	cr_assert_arr_eq(buf, "hello, world!\0\0\0Z", 17);
	cr_assert_eq(pio_pread(P, f, buf, 5, 7), 5);
	cr_assert_arr_eq(buf, "world", 5);
	cr_assert_eq(pio_datasync(P, f), 0);
	pio_close(P, f);
}

static void check_many_iovecs(void)
{
	/* More iovecs than one pwritev(2) batch of the real backend. */
	enum { N = 300 };
	static char bytes[N];
	struct iovec iov[N];
	for (int i = 0; i < N; i++) {
		bytes[i] = (char)(i * 7);
		iov[i].iov_base = &bytes[i];
		iov[i].iov_len = 1;
	}
	struct pio_file *f = open_ok("many", PIO_CREATE);
	cr_assert_eq(pio_pwritev(P, f, iov, N, 3), 0);
	char buf[N + 3];
	cr_assert_eq(pio_pread(P, f, buf, sizeof(buf), 0), N + 3);
	cr_assert_arr_eq(buf + 3, bytes, N);
	pio_close(P, f);
}

static void check_short_read(void)
{
	put("a", "0123456789");
	struct pio_file *f = open_ok("a", PIO_RDONLY);
	char buf[64];
	cr_assert_eq(pio_pread(P, f, buf, sizeof(buf), 7), 3);
	cr_assert_arr_eq(buf, "789", 3);
	cr_assert_eq(pio_pread(P, f, buf, sizeof(buf), 10), 0);
	cr_assert_eq(pio_pread(P, f, buf, sizeof(buf), 1000), 0);
	pio_close(P, f);
}

static void check_truncate_and_size(void)
{
	struct pio_file *f = open_ok("a", PIO_CREATE);
	uint64_t size = 99;
	cr_assert_eq(pio_size(P, f, &size), 0);
	cr_assert_eq(size, 0);
	write_str(f, 0, "abcdefgh");
	cr_assert_eq(pio_size(P, f, &size), 0);
	cr_assert_eq(size, 8);
	cr_assert_eq(pio_truncate(P, f, 3), 0);
	cr_assert_eq(pio_size(P, f, &size), 0);
	cr_assert_eq(size, 3);
	cr_assert_eq(pio_truncate(P, f, 6), 0);
	pio_close(P, f);
	expect_bytes("a", "abc\0\0\0", 6);
}

static void check_open_flags(void)
{
	struct pio_file *f = NULL;
	cr_assert_eq(pio_open(P, at("nope"), PIO_RDONLY, &f), -ENOENT);
	cr_assert_eq(pio_open(P, at("nope"), PIO_RDWR, &f), -ENOENT);
	cr_assert_eq(pio_open(P, at("no/such/dir/file"), PIO_CREATE, &f), -ENOENT);
	put("a", "x");
	cr_assert_eq(pio_open(P, at("a"), PIO_CREATE | PIO_EXCL, &f), -EEXIST);
	f = open_ok("b", PIO_CREATE | PIO_EXCL);
	pio_close(P, f);
	f = open_ok("a", PIO_CREATE); /* opening an existing file with PIO_CREATE keeps its content */
	pio_close(P, f);
	expect("a", "x");
	f = open_ok("a", PIO_RDWR);
	write_str(f, 1, "y");
	pio_close(P, f);
	expect("a", "xy");
}

static void check_rename_replaces(void)
{
	put("a", "AAA");
	put("b", "B");
	cr_assert_eq(pio_rename(P, at("a"), at("b")), 0);
	expect("b", "AAA");
	expect_missing("a");
	cr_assert_eq(pio_rename(P, at("a"), at("c")), -ENOENT);
}

static void check_unlink_while_open(void)
{
	put("a", "still here");
	struct pio_file *f = open_ok("a", PIO_RDWR);
	cr_assert_eq(pio_unlink(P, at("a")), 0);
	expect_missing("a");
	char buf[32];
	cr_assert_eq(pio_pread(P, f, buf, sizeof(buf), 0), 10);
	cr_assert_arr_eq(buf, "still here", 10);
	write_str(f, 10, "!");
	cr_assert_eq(pio_pread(P, f, buf, sizeof(buf), 0), 11);
	pio_close(P, f);
	cr_assert_eq(pio_unlink(P, at("a")), -ENOENT);
	/* A new file of the same name is a different file. */
	put("a", "new");
	expect("a", "new");
}

static void check_rename_while_open(void)
{
	put("a", "data");
	struct pio_file *f = open_ok("a", PIO_RDWR);
	cr_assert_eq(pio_rename(P, at("a"), at("b")), 0);
	write_str(f, 4, "+");
	pio_close(P, f);
	expect("b", "data+");
}

static void check_list_sorted(void)
{
	put("c", "");
	put("a", "");
	put("b10", "");
	put("b2", "");
	cr_assert_eq(pio_mkdir(P, at("sub")), 0);
	put("sub/inner", "");
	char **names = NULL;
	size_t n = 0;
	cr_assert_eq(pio_list(P, root, &names, &n), 0);
	const char *want[] = {"a", "b10", "b2", "c", "sub"};
	cr_assert_eq(n, 5);
	for (size_t i = 0; i < n; i++)
		cr_assert_str_eq(names[i], want[i]);
	pio_list_free(names, n);

	cr_assert_eq(pio_list(P, at("sub"), &names, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(names[0], "inner");
	pio_list_free(names, n);

	cr_assert_eq(pio_mkdir(P, at("empty")), 0);
	cr_assert_eq(pio_list(P, at("empty"), &names, &n), 0);
	cr_assert_eq(n, 0);
	pio_list_free(names, n);

	cr_assert_eq(pio_list(P, at("missing"), &names, &n), -ENOENT);
}

static void check_mkdir_p(void)
{
	cr_assert_eq(pio_mkdir(P, at("x/y/z")), 0);
	cr_assert_eq(pio_mkdir(P, at("x/y/z")), 0);
	cr_assert_eq(pio_mkdir(P, at("x/y")), 0);
	cr_assert_eq(pio_mkdir(P, at("x/y/z/")), 0);
	put("x/y/z/f", "deep");
	expect("x/y/z/f", "deep");
	cr_assert_eq(pio_syncdir(P, at("x/y/z")), 0);
	put("file", "");
	cr_assert_lt(pio_mkdir(P, at("file")), 0);
	cr_assert_lt(pio_mkdir(P, at("file/sub")), 0);
}

static void check_rmdir(void)
{
	cr_assert_eq(pio_mkdir(P, at("d/e")), 0);
	cr_assert_eq(pio_rmdir(P, at("d")), -ENOTEMPTY);
	cr_assert_eq(pio_rmdir(P, at("d/e")), 0);
	put("d/f", "");
	cr_assert_eq(pio_rmdir(P, at("d")), -ENOTEMPTY);
	cr_assert_eq(pio_unlink(P, at("d/f")), 0);
	cr_assert_eq(pio_rmdir(P, at("d")), 0);
	cr_assert_eq(pio_rmdir(P, at("d")), -ENOENT);
	char **names = NULL;
	size_t n = 0;
	cr_assert_eq(pio_list(P, root, &names, &n), 0);
	cr_assert_eq(n, 0);
	pio_list_free(names, n);
}

#define BOTH(name, fn)                                                                                   \
	Test(pio_real, name, .init = real_setup, .fini = real_teardown)                                  \
	{                                                                                                \
		fn();                                                                                    \
	}                                                                                                \
	Test(pio_sim, name, .init = sim_setup, .fini = sim_teardown)                                     \
	{                                                                                                \
		fn();                                                                                    \
	}

/* Bytes written from several iovecs, with empty iovecs and a gap, read back intact (gap as zeros). */
BOTH(a_write_of_several_iovecs_reads_back_intact, check_roundtrip)
/* A write of more iovecs than one system call takes still lands contiguously. */
BOTH(a_write_of_hundreds_of_iovecs_lands_contiguously, check_many_iovecs)
/* A read that reaches end of file returns only the bytes that exist, and 0 at or past the end. */
BOTH(a_read_at_end_of_file_is_short, check_short_read)
/* Truncate shrinks and grows (with zeros) and size reports the current length. */
BOTH(truncate_sets_the_size_and_size_reports_it, check_truncate_and_size)
/* Open fails with ENOENT for a missing file or parent, EEXIST with PIO_EXCL, and keeps contents otherwise. */
BOTH(open_honours_its_flags, check_open_flags)
/* Rename replaces an existing target and removes the source name. */
BOTH(rename_replaces_the_target, check_rename_replaces)
/* A file unlinked while open stays readable and writable through its handle. */
BOTH(an_unlinked_file_stays_usable_while_open, check_unlink_while_open)
/* A file renamed while open is the same file under its new name. */
BOTH(a_renamed_file_stays_usable_while_open, check_rename_while_open)
/* List returns the names of files and directories in strcmp order without dot entries. */
BOTH(list_returns_names_sorted_by_strcmp, check_list_sorted)
/* mkdir makes missing parents, succeeds when the directory exists and fails over a file. */
BOTH(mkdir_makes_parents_and_is_idempotent, check_mkdir_p)
/* rmdir removes only empty directories. */
BOTH(rmdir_removes_only_empty_directories, check_rmdir)

/* The real backend exposes its file descriptor for sendfile. */
Test(pio_real, the_real_backend_exposes_a_file_descriptor, .init = real_setup, .fini = real_teardown)
{
	struct pio_file *f = open_ok("a", PIO_CREATE);
	cr_assert_geq(pio_fd(P, f), 0);
	pio_close(P, f);
}

/* The simulation has no file descriptor. */
Test(pio_sim, the_simulation_has_no_file_descriptor, .init = sim_setup, .fini = sim_teardown)
{
	struct pio_file *f = open_ok("a", PIO_CREATE);
	cr_assert_eq(pio_fd(P, f), -1);
	pio_close(P, f);
}

/* ---- the simulation's durability model ---- */

/* Data written after the last datasync is lost at power loss. */
Test(pio_sim, data_not_datasynced_is_lost_at_power_loss, .init = sim_setup, .fini = sim_teardown)
{
	put_durable("a", "old");
	struct pio_file *f = open_ok("a", PIO_RDWR);
	write_str(f, 0, "NEW");
	write_str(f, 3, "more");
	pio_close(P, f);
	expect("a", "NEWmore");
	power_loss(0);
	expect("a", "old");
}

/* Data that was datasync'd survives power loss. */
Test(pio_sim, datasynced_data_survives_power_loss, .init = sim_setup, .fini = sim_teardown)
{
	put_durable("a", "old");
	struct pio_file *f = open_ok("a", PIO_RDWR);
	write_str(f, 3, "+new");
	cr_assert_eq(pio_datasync(P, f), 0);
	write_str(f, 7, "+lost");
	pio_close(P, f);
	uint64_t ds = 0;
	cr_assert_eq(pio_sim_durable_size(P, at("a"), &ds), 0);
	cr_assert_eq(ds, 7);
	power_loss(0);
	expect("a", "old+new");
}

/* A created file that was datasync'd but whose directory was not synced is gone after power loss. */
Test(pio_sim, a_new_file_without_syncdir_is_gone_after_power_loss, .init = sim_setup,
     .fini = sim_teardown)
{
	struct pio_file *f = open_ok("a", PIO_CREATE);
	write_str(f, 0, "data");
	cr_assert_eq(pio_datasync(P, f), 0);
	pio_close(P, f);
	cr_assert_eq(pio_syncdir(P, "/sim"), 0); /* syncing another directory does not help */
	power_loss(0);
	expect_missing("a");
	char **names = NULL;
	size_t n = 7;
	cr_assert_eq(pio_list(P, root, &names, &n), 0);
	cr_assert_eq(n, 0);
	pio_list_free(names, n);
	cr_assert_eq(pio_sim_durable_size(P, at("a"), &(uint64_t){0}), -ENOENT);
}

/* A created file survives power loss once its directory was synced. */
Test(pio_sim, a_new_file_survives_power_loss_after_syncdir, .init = sim_setup, .fini = sim_teardown)
{
	struct pio_file *f = open_ok("a", PIO_CREATE);
	write_str(f, 0, "data");
	cr_assert_eq(pio_datasync(P, f), 0);
	pio_close(P, f);
	cr_assert_eq(pio_syncdir(P, root), 0);
	power_loss(0);
	expect("a", "data");
}

/* A file whose name was synced but whose data was not survives empty. */
Test(pio_sim, a_synced_name_without_datasync_survives_empty, .init = sim_setup, .fini = sim_teardown)
{
	struct pio_file *f = open_ok("a", PIO_CREATE);
	write_str(f, 0, "data");
	pio_close(P, f);
	cr_assert_eq(pio_syncdir(P, root), 0);
	power_loss(0);
	expect("a", "");
}

/* Directories made by mkdir survive power loss at once. */
Test(pio_sim, mkdir_is_durable_at_once, .init = sim_setup, .fini = sim_teardown)
{
	cr_assert_eq(pio_mkdir(P, at("p/q")), 0);
	power_loss(0);
	char **names = NULL;
	size_t n = 0;
	cr_assert_eq(pio_list(P, at("p"), &names, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(names[0], "q");
	pio_list_free(names, n);
}

/* A rename is undone by power loss until the directory is synced. */
Test(pio_sim, rename_is_durable_only_after_syncdir, .init = sim_setup, .fini = sim_teardown)
{
	put_durable("a", "A");
	put_durable("b", "B");
	cr_assert_eq(pio_rename(P, at("a"), at("b")), 0);
	power_loss(0);
	expect("a", "A");
	expect("b", "B");

	cr_assert_eq(pio_rename(P, at("a"), at("b")), 0);
	cr_assert_eq(pio_syncdir(P, root), 0);
	power_loss(0);
	expect_missing("a");
	expect("b", "A");
}

/* A rename across directories needs both parents synced. */
Test(pio_sim, a_rename_across_directories_needs_both_parents_synced, .init = sim_setup,
     .fini = sim_teardown)
{
	cr_assert_eq(pio_mkdir(P, at("d")), 0);
	put_durable("a", "A");
	cr_assert_eq(pio_rename(P, at("a"), at("d/a")), 0);
	cr_assert_eq(pio_syncdir(P, at("d")), 0);
	power_loss(0);
	expect("a", "A"); /* the old name is still durable */
	expect("d/a", "A");

	cr_assert_eq(pio_unlink(P, at("d/a")), 0);
	cr_assert_eq(pio_syncdir(P, at("d")), 0);
	cr_assert_eq(pio_rename(P, at("a"), at("d/a")), 0);
	cr_assert_eq(pio_syncdir(P, at("d")), 0);
	cr_assert_eq(pio_syncdir(P, root), 0);
	power_loss(0);
	expect_missing("a");
	expect("d/a", "A");
}

/* An unlink is undone by power loss until the directory is synced. */
Test(pio_sim, unlink_is_durable_only_after_syncdir, .init = sim_setup, .fini = sim_teardown)
{
	put_durable("a", "A");
	cr_assert_eq(pio_unlink(P, at("a")), 0);
	expect_missing("a");
	power_loss(0);
	expect("a", "A");

	cr_assert_eq(pio_unlink(P, at("a")), 0);
	cr_assert_eq(pio_syncdir(P, root), 0);
	power_loss(0);
	expect_missing("a");
}

/* A truncate is undone by power loss until the file is datasync'd. */
Test(pio_sim, truncate_is_durable_only_after_datasync, .init = sim_setup, .fini = sim_teardown)
{
	put_durable("a", "abcdef");
	struct pio_file *f = open_ok("a", PIO_RDWR);
	cr_assert_eq(pio_truncate(P, f, 2), 0);
	pio_close(P, f);
	power_loss(0);
	expect("a", "abcdef");

	f = open_ok("a", PIO_RDWR);
	cr_assert_eq(pio_truncate(P, f, 2), 0);
	cr_assert_eq(pio_datasync(P, f), 0);
	pio_close(P, f);
	power_loss(0);
	expect("a", "ab");
}

/* Tear keeps exactly tear % len bytes of the last unsynced write and nothing of earlier ones. */
Test(pio_sim, tear_keeps_exactly_tear_mod_len_bytes_of_the_last_unsynced_write, .init = sim_setup,
     .fini = sim_teardown)
{
	put_durable("a", "AAAA");
	struct pio_file *f = open_ok("a", PIO_RDWR);
	write_str(f, 4, "xxxx");     /* unsynced, not the last: lost */
	write_str(f, 2, "BBBBBBBB"); /* the last unsynced write: torn */
	pio_close(P, f);
	power_loss(8 + 5);
	expect("a", "AABBBBB");

	/* A tear that is a multiple of the length, or zero, keeps nothing. */
	f = open_ok("a", PIO_RDWR);
	write_str(f, 0, "CCC");
	pio_close(P, f);
	power_loss(6);
	expect("a", "AABBBBB");

	/* A write past the end is torn onto a zero-filled gap. */
	f = open_ok("a", PIO_RDWR);
	write_str(f, 9, "DDDD");
	pio_close(P, f);
	power_loss(3);
	expect_bytes("a", "AABBBBB\0\0DDD", 12);

	/* A tear after everything was synced changes nothing. */
	f = open_ok("a", PIO_RDWR);
	write_str(f, 0, "EEEE");
	cr_assert_eq(pio_datasync(P, f), 0);
	pio_close(P, f);
	power_loss(2);
	expect_bytes("a", "EEEEBBB\0\0DDD", 12);
}

/* The torn write is the last one not yet synced, even when a later write to another file was synced. */
Test(pio_sim, tear_picks_the_last_write_that_was_not_synced, .init = sim_setup, .fini = sim_teardown)
{
	put_durable("a", "");
	put_durable("b", "");
	struct pio_file *a = open_ok("a", PIO_RDWR);
	struct pio_file *b = open_ok("b", PIO_RDWR);
	write_str(a, 0, "aaaa");
	write_str(b, 0, "bbbb");
	cr_assert_eq(pio_datasync(P, b), 0);
	pio_close(P, a);
	pio_close(P, b);
	power_loss(3);
	expect("a", "aaa");
	expect("b", "bbbb");
}

/* A tear of a write to a file that is not in the durable namespace has no effect. */
Test(pio_sim, tear_of_a_file_that_did_not_survive_has_no_effect, .init = sim_setup, .fini = sim_teardown)
{
	put_durable("a", "A");
	struct pio_file *f = open_ok("new", PIO_CREATE);
	write_str(f, 0, "xyz");
	pio_close(P, f);
	power_loss(2);
	expect_missing("new");
	expect("a", "A");
}

/* fail_nth fails exactly the nth mutating call with the given errno and that call changes nothing. */
Test(pio_sim, fail_nth_fails_exactly_the_nth_mutating_call, .init = sim_setup, .fini = sim_teardown)
{
	put_durable("a", "abc");
	struct pio_file *f = open_ok("a", PIO_RDWR); /* reading call: not counted */
	pio_sim_fail_nth(P, 3, ENOSPC);
	write_str(f, 3, "d");                        /* 1 */
	char buf[8];
	cr_assert_eq(pio_pread(P, f, buf, sizeof(buf), 0), 4); /* reading call: not counted */
	cr_assert_eq(pio_truncate(P, f, 5), 0);                 /* 2 */
	struct iovec iov = {"ZZZZZZ", 6};
	cr_assert_eq(pio_pwritev(P, f, &iov, 1, 0), -ENOSPC);  /* 3: fails */
	uint64_t size = 0;
	cr_assert_eq(pio_size(P, f, &size), 0);
	cr_assert_eq(size, 5);
	write_str(f, 5, "e"); /* 4: succeeds again */
	pio_close(P, f);
	expect_bytes("a", "abcd\0e", 6);

	/* A failed rename, unlink, datasync or create changes nothing either. */
	pio_sim_fail_nth(P, 1, EIO);
	cr_assert_eq(pio_rename(P, at("a"), at("b")), -EIO);
	expect_missing("b");
	pio_sim_fail_nth(P, 1, EIO);
	cr_assert_eq(pio_unlink(P, at("a")), -EIO);
	pio_sim_fail_nth(P, 1, EROFS);
	struct pio_file *g = NULL;
	cr_assert_eq(pio_open(P, at("c"), PIO_CREATE, &g), -EROFS);
	expect_missing("c");
	f = open_ok("a", PIO_RDWR);
	pio_sim_fail_nth(P, 1, EIO);
	cr_assert_eq(pio_datasync(P, f), -EIO);
	pio_close(P, f);
	power_loss(0);
	expect("a", "abc");
}

/* crash_after lets n mutating calls through, then every call fails with EIO until power loss. */
Test(pio_sim, crash_after_fails_every_call_after_n_mutations, .init = sim_setup, .fini = sim_teardown)
{
	put_durable("a", "abc");
	struct pio_file *f = open_ok("a", PIO_RDWR);
	pio_sim_crash_after(P, 2);
	char buf[8];
	cr_assert_eq(pio_pread(P, f, buf, sizeof(buf), 0), 3);
	write_str(f, 3, "d");                   /* 1 */
	cr_assert_eq(pio_datasync(P, f), 0);    /* 2: the last one let through */
	cr_assert_eq(pio_pread(P, f, buf, sizeof(buf), 0), -EIO);
	struct iovec iov = {"x", 1};
	cr_assert_eq(pio_pwritev(P, f, &iov, 1, 0), -EIO);
	cr_assert_eq(pio_datasync(P, f), -EIO);
	cr_assert_eq(pio_truncate(P, f, 0), -EIO);
	struct pio_file *g = NULL;
	cr_assert_eq(pio_open(P, at("a"), PIO_RDONLY, &g), -EIO);
	cr_assert_eq(pio_open(P, at("b"), PIO_CREATE, &g), -EIO);
	cr_assert_eq(pio_rename(P, at("a"), at("b")), -EIO);
	cr_assert_eq(pio_unlink(P, at("a")), -EIO);
	cr_assert_eq(pio_mkdir(P, at("d")), -EIO);
	cr_assert_eq(pio_rmdir(P, root), -EIO);
	cr_assert_eq(pio_syncdir(P, root), -EIO);
	char **names = NULL;
	size_t n = 0;
	cr_assert_eq(pio_list(P, root, &names, &n), -EIO);
	pio_close(P, f); /* close still works */
	power_loss(0);
	expect("a", "abcd");

	/* crash_after(0) crashes at once. */
	pio_sim_crash_after(P, 0);
	cr_assert_eq(pio_open(P, at("a"), PIO_RDONLY, &g), -EIO);
	power_loss(0);
	expect("a", "abcd");
}

/* Power loss refuses with EBUSY while a file is open, and changes nothing. */
Test(pio_sim, power_loss_refuses_while_a_file_is_open, .init = sim_setup, .fini = sim_teardown)
{
	put_durable("a", "abc");
	struct pio_file *f = open_ok("a", PIO_RDWR);
	write_str(f, 0, "X");
	cr_assert_eq(pio_sim_power_loss(P, 0), -EBUSY);
	pio_close(P, f);
	expect("a", "Xbc");
	power_loss(0);
	expect("a", "abc");
}

/* corrupt flips one byte in both the volatile and the durable content. */
Test(pio_sim, corrupt_flips_a_byte_in_both_views, .init = sim_setup, .fini = sim_teardown)
{
	put_durable("a", "abc");
	cr_assert_eq(pio_sim_corrupt(P, at("a"), 1, 0x20), 0);
	expect("a", "aBc");
	power_loss(0);
	expect("a", "aBc");
	cr_assert_eq(pio_sim_corrupt(P, at("nope"), 0, 1), -ENOENT);
	uint64_t size = 0;
	cr_assert_eq(pio_sim_durable_size(P, at("nope"), &size), -ENOENT);
}

/* Every operation but close, fd and size is a counted call; only the mutating ones count as mutations. */
Test(pio_sim, call_counters_count_as_specified, .init = sim_setup, .fini = sim_teardown)
{
	uint64_t c0 = pio_sim_calls(P), m0 = pio_sim_mutations(P);
	cr_assert_eq(c0, 1); /* the fixture's mkdir */
	cr_assert_eq(m0, 1);
#define EXPECT_COUNTS(dc, dm)                                                                            \
	do {                                                                                             \
		cr_assert_eq(pio_sim_calls(P) - c0, (dc));                                               \
		cr_assert_eq(pio_sim_mutations(P) - m0, (dm));                                           \
	} while (0)
	struct pio_file *f = open_ok("a", PIO_CREATE); /* mutating */
	EXPECT_COUNTS(1, 1);
	write_str(f, 0, "abc"); /* mutating */
	EXPECT_COUNTS(2, 2);
	char buf[4];
	cr_assert_eq(pio_pread(P, f, buf, 3, 0), 3); /* reading */
	EXPECT_COUNTS(3, 2);
	cr_assert_eq(pio_datasync(P, f), 0);  /* mutating */
	cr_assert_eq(pio_truncate(P, f, 1), 0); /* mutating */
	EXPECT_COUNTS(5, 4);
	uint64_t size;
	cr_assert_eq(pio_size(P, f, &size), 0); /* not a call */
	cr_assert_eq(pio_fd(P, f), -1);          /* not a call */
	pio_close(P, f);                          /* not a call */
	EXPECT_COUNTS(5, 4);
	f = open_ok("a", PIO_RDWR); /* reading */
	pio_close(P, f);
	EXPECT_COUNTS(6, 4);
	cr_assert_eq(pio_rename(P, at("a"), at("b")), 0); /* mutating */
	cr_assert_eq(pio_unlink(P, at("b")), 0);          /* mutating */
	cr_assert_eq(pio_mkdir(P, at("d")), 0);           /* mutating */
	cr_assert_eq(pio_rmdir(P, at("d")), 0);           /* mutating */
	cr_assert_eq(pio_syncdir(P, root), 0);            /* mutating */
	EXPECT_COUNTS(11, 9);
	char **names = NULL;
	size_t n = 0;
	cr_assert_eq(pio_list(P, root, &names, &n), 0); /* reading */
	pio_list_free(names, n);
	EXPECT_COUNTS(12, 9);
	cr_assert_eq(pio_unlink(P, at("b")), -ENOENT); /* failing calls count too */
	EXPECT_COUNTS(13, 10);
#undef EXPECT_COUNTS
}

struct worker_arg {
	const char *path;
	char fill;
};

static void *worker(void *varg)
{
	struct worker_arg *arg = varg;
	struct pio_file *f = NULL;
	if (pio_open(P, arg->path, PIO_CREATE, &f) != 0)
		return (void *)1;
	char block[64];
	memset(block, arg->fill, sizeof(block));
	uintptr_t bad = 0;
	for (int i = 0; i < 200; i++) {
		struct iovec iov = {block, sizeof(block)};
		if (pio_pwritev(P, f, &iov, 1, (uint64_t)i * sizeof(block)) != 0)
			bad = 1;
		if (i % 10 == 0 && pio_datasync(P, f) != 0)
			bad = 1;
		char back[64];
		if (pio_pread(P, f, back, sizeof(back), (uint64_t)i * sizeof(block)) != sizeof(back) ||
		    memcmp(back, block, sizeof(back)) != 0)
			bad = 1;
	}
	pio_close(P, f);
	return (void *)bad;
}

/* Two threads writing, reading and syncing their own files at once see their own data intact. */
Test(pio_sim, concurrent_use_from_two_threads_is_safe, .init = sim_setup, .fini = sim_teardown)
{
	struct worker_arg a = {strdup(at("t1")), '1'}, b = {strdup(at("t2")), '2'};
	pthread_t ta, tb;
	cr_assert_eq(pthread_create(&ta, NULL, worker, &a), 0);
	cr_assert_eq(pthread_create(&tb, NULL, worker, &b), 0);
	void *ra, *rb;
	pthread_join(ta, &ra);
	pthread_join(tb, &rb);
	cr_assert_null(ra);
	cr_assert_null(rb);
	free((void *)a.path);
	free((void *)b.path);
}
