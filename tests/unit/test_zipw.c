/*
 * test_zipw — node/zipw: CRC-32 against its check value, archives Python's zipfile accepts (stored and
 * deflated, every CRC tested by `python3 -m zipfile -t`), the exact bytes of a stored entry, and the bound.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node/zipw.h"

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Writes the archive to a file and has Python's zipfile test it and list it; returns its output. */
static char *python_check(const uint8_t *zip, size_t len)
{
	char path[] = "/tmp/test_zipw_XXXXXX";
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert(write(fd, zip, len) == (ssize_t)len);
	close(fd);
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "python3 -c 'import sys,zipfile; z=zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; "
		 "print(\"|\".join(\"%%s=%%d/%%d\" %% (i.filename, i.file_size, i.compress_type) for i in z.infolist()))' %s "
		 "&& python3 -m zipfile -t %s >/dev/null",
		 path, path);
	FILE *f = popen(cmd, "r");
	cr_assert(f != NULL);
	char *out = calloc(1, 4096);
	size_t n = fread(out, 1, 4095, f);
	int rc = pclose(f);
	unlink(path);
	cr_assert_eq(rc, 0, "python rejected the archive: %.*s", (int)n, out);
	return out;
}

Test(zipw, crc32_check_value)
{
	cr_assert_eq(zipw_crc32(0, "123456789", 9), 0xcbf43926u);
	cr_assert_eq(zipw_crc32(0, "", 0), 0u);
	cr_assert_eq(zipw_crc32(zipw_crc32(0, "1234", 4), "56789", 5), 0xcbf43926u);
}

Test(zipw, stored_bytes_are_as_documented)
{
	struct zipw z;
	uint8_t *zip;
	size_t len;
	zipw_init(&z, ZIPW_STORED, 1 << 20);
	cr_assert_eq(zipw_add(&z, "a.txt", "hello", 5, 0), 0);
	cr_assert_eq(zipw_finish(&z, &zip, &len), 0);
	cr_assert_eq(len, 30 + 5 + 5 + 46 + 5 + 22);
	cr_assert_eq(le32(zip), 0x04034b50u);
	cr_assert_eq(le32(zip + 14), zipw_crc32(0, "hello", 5));
	cr_assert_eq(le32(zip + 18), 5u);
	cr_assert(memcmp(zip + 30, "a.txt", 5) == 0 && memcmp(zip + 35, "hello", 5) == 0);
	const uint8_t *cd = zip + 40, *end = zip + len - 22;
	cr_assert_eq(le32(cd), 0x02014b50u);
	cr_assert_eq(le32(cd + 42), 0u); /* the local header's offset */
	cr_assert_eq(le32(end), 0x06054b50u);
	cr_assert_eq(end[10] | end[11] << 8, 1);
	cr_assert_eq(le32(end + 12), 46u + 5);
	cr_assert_eq(le32(end + 16), 40u);
	free(python_check(zip, len));
	free(zip);
}

Test(zipw, python_reads_stored_and_deflated_archives)
{
	static const uint16_t methods[] = {ZIPW_STORED, ZIPW_DEFLATED};
	size_t big_len = 300000;
	char *big = malloc(big_len);
	cr_assert(big != NULL);
	for (size_t i = 0; i < big_len; i++)
		big[i] = (char)("abcdefgh\n"[i % 9] ^ (char)(i % 7 == 0));
	for (size_t m = 0; m < 2; m++) {
		struct zipw z;
		uint8_t *zip;
		size_t len;
		zipw_init(&z, methods[m], 4 << 20);
		cr_assert_eq(zipw_add(&z, "empty.txt", "", 0, 1700000000), 0);
		cr_assert_eq(zipw_add(&z, "big.txt", big, big_len, 1700000000), 0);
		cr_assert_eq(zipw_add(&z, "test.txt", "test\n", 5, 1700000000), 0);
		cr_assert_eq(zipw_finish(&z, &zip, &len), 0);
		if (methods[m] == ZIPW_DEFLATED)
			cr_assert_lt(len, big_len / 4);
		char *out = python_check(zip, len);
		char want[256];
		snprintf(want, sizeof(want), "empty.txt=0/%u|big.txt=%zu/%u|test.txt=5/%u\n", methods[m], big_len,
			 methods[m], methods[m]);
		cr_assert_str_eq(out, want);
		free(out);
		free(zip);
	}
	free(big);
}

Test(zipw, the_bound_and_bad_names_are_refused)
{
	struct zipw z;
	uint8_t *zip;
	size_t len;
	char data[2000] = {0};
	zipw_init(&z, ZIPW_STORED, 1024);
	cr_assert_eq(zipw_add(&z, "one", data, 500, 0), 0);
	cr_assert_eq(zipw_add(&z, "two", data, 500, 0), -EFBIG);
	cr_assert_eq(zipw_add(&z, "three", data, 1, 0), -EFBIG); /* the first error stays */
	cr_assert_eq(zipw_finish(&z, &zip, &len), -EFBIG);
	zipw_init(&z, ZIPW_STORED, 1024);
	cr_assert_eq(zipw_add(&z, "", data, 1, 0), -EINVAL);
	zipw_free(&z);
	zipw_init(&z, ZIPW_DEFLATED, 1024);
	cr_assert_eq(zipw_add(&z, "a", data, sizeof(data), 0), 0); /* zeros deflate small */
	cr_assert_eq(zipw_finish(&z, &zip, &len), 0);
	cr_assert_leq(len, 1024);
	free(python_check(zip, len));
	free(zip);
}
