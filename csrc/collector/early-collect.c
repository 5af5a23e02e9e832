// SPDX-License-Identifier: GPL-2.0-only
/*
 * handoff-early-collect: save every PCI function's config space before drivers bind.
 *
 * Runs from the initramfs (initramfs-tools init-top, dracut pre-udev) as root, reads
 * SYSFS_ROOT/bus/pci/devices/<addr>/{config,vendor,device,subsystem_vendor,
 * subsystem_device,class,revision} and writes the snapshot file of spec/early-snapshot.md.
 *
 * This is a contract: the file layout is spec/early-snapshot.md version 1.0. Changing a
 * field bumps EARLY_VERSION_MAJOR; growing the header bumps EARLY_VERSION_MINOR.
 *
 * POSIX only, no allocation beyond one array of names: it must link with -static and run
 * with nothing else in the initramfs.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EARLY_MAGIC "HDOFEARL"          /* E3 */
#define EARLY_VERSION_MAJOR 1           /* E4 */
#define EARLY_VERSION_MINOR 0
#define EARLY_HEADER_SIZE 64            /* E5 */
#define EARLY_ENTRY_HEADER_SIZE 32
#define EARLY_MAX_ENTRIES 65536
#define EARLY_FLAG_PARTIAL 0x1u
#define EARLY_ENTRY_DRIVER_BOUND 0x1u
#define CONFIG_MAX 4096

#define EXIT_OK 0
#define EXIT_PARTIAL 1
#define EXIT_USAGE 2
#define EXIT_ENVIRONMENT 4

_Static_assert(sizeof(EARLY_MAGIC) - 1 == 8, "magic is 8 bytes");

/* CRC-32C (Castagnoli), reflected, init and xorout ~0: format.md section 5, id 1 (E2). */
static uint32_t crc_table[256];

static void crc32c_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t crc32c_update(uint32_t crc, const unsigned char *p, size_t n)
{
	crc = ~crc;
	while (n--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static void put16(unsigned char *p, uint16_t v) { p[0] = v; p[1] = v >> 8; }
static void put32(unsigned char *p, uint32_t v) { put16(p, v); put16(p + 2, v >> 16); }
static void put64(unsigned char *p, uint64_t v) { put32(p, v); put32(p + 4, v >> 32); }

static const char *prog = "handoff-early-collect";

static void usage(void)
{
	fprintf(stderr,
		"usage: %s [-r SYSFS_ROOT] [-o OUTPUT] [-b BOOT_ID_FILE] [-q]\n"
		"  -r  sysfs root holding bus/pci/devices (default /sys)\n"
		"  -o  snapshot file to write (default /run/handoff/early.bin)\n"
		"  -b  boot id file (default /proc/sys/kernel/random/boot_id)\n"
		"  -q  quiet: no summary on stderr\n"
		"exit: 0 ok, 1 some config reads were short, 2 usage, 4 cannot read sysfs or write\n",
		prog);
}

/* Read a small text attribute into buf; returns length or -1. */
static ssize_t read_text(int dirfd, const char *name, char *buf, size_t size)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = 0;
	return n;
}

static unsigned long read_hex(int dirfd, const char *name)
{
	char buf[64];
	if (read_text(dirfd, name, buf, sizeof(buf)) <= 0)
		return 0;
	return strtoul(buf, NULL, 0);
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

/* Parse a UUID text into 16 bytes; leaves zeros on any error (E6). */
static void read_boot_id(const char *path, unsigned char out[16])
{
	char buf[64];
	memset(out, 0, 16);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	unsigned char tmp[16];
	int k = 0;
	for (ssize_t i = 0; i < n && k < 32; i++) {
		if (buf[i] == '-')
			continue;
		int h = hexval((unsigned char)buf[i]);
		if (h < 0)
			break;
		if (k & 1)
			tmp[k / 2] |= h;
		else
			tmp[k / 2] = h << 4;
		k++;
	}
	if (k == 32)
		memcpy(out, tmp, 16);
}

/* "DDDD:BB:DD.F" (domain may be longer) -> fields; 0 on success. */
static int parse_addr(const char *s, uint32_t *dom, unsigned *bus, unsigned *dev, unsigned *fn)
{
	char *end;
	errno = 0;
	unsigned long d = strtoul(s, &end, 16);
	if (errno || *end != ':' || end == s)
		return -1;
	unsigned long b = strtoul(end + 1, &end, 16);
	if (*end != ':' || b > 255)
		return -1;
	unsigned long sl = strtoul(end + 1, &end, 16);
	if (*end != '.' || sl > 31)
		return -1;
	unsigned long f = strtoul(end + 1, &end, 10);
	if (*end || f > 7 || d > 0xffffffffUL)
		return -1;
	*dom = d; *bus = b; *dev = sl; *fn = f;
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	/* Fixed-width lower-case hex addresses sort correctly as strings. */
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int write_all(int fd, const void *buf, size_t n)
{
	const unsigned char *p = buf;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void mkdir_parents(const char *path)
{
	char buf[4096];
	size_t n = strlen(path);
	if (n >= sizeof(buf))
		return;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		mkdir(buf, 0700);
		*p = '/';
	}
}

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	if (clock_gettime(id, &ts))
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	const char *root = "/sys";
	const char *out = "/run/handoff/early.bin";
	const char *boot_id_path = "/proc/sys/kernel/random/boot_id";
	int quiet = 0, opt;
	int ret = EXIT_ENVIRONMENT;

	while ((opt = getopt(argc, argv, "r:o:b:qh")) != -1) {
		switch (opt) {
		case 'r': root = optarg; break;
		case 'o': out = optarg; break;
		case 'b': boot_id_path = optarg; break;
		case 'q': quiet = 1; break;
		case 'h': usage(); return EXIT_OK;
		default: usage(); return EXIT_USAGE;
		}
	}
	if (optind != argc) {
		usage();
		return EXIT_USAGE;
	}
	crc32c_init();

	char devpath[4096];
	if ((size_t)snprintf(devpath, sizeof(devpath), "%s/bus/pci/devices", root) >= sizeof(devpath)) {
		fprintf(stderr, "%s: sysfs root path too long\n", prog);
		return EXIT_USAGE;
	}
	DIR *dir = opendir(devpath);
	if (!dir) {
		fprintf(stderr, "%s: cannot open %s: %s\n", prog, devpath, strerror(errno));
		return EXIT_ENVIRONMENT;
	}
	char **names = NULL;
	size_t count = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(dir))) {
		uint32_t dom; unsigned b, d, f;
		if (parse_addr(de->d_name, &dom, &b, &d, &f))
			continue;
		if (count == EARLY_MAX_ENTRIES)
			break;
		if (count == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			char **nn = realloc(names, ncap * sizeof(*nn));
			if (!nn)
				goto out_names;
			names = nn;
			cap = ncap;
		}
		if (!(names[count] = strdup(de->d_name)))
			goto out_names;
		count++;
	}
	qsort(names, count, sizeof(*names), cmp_names);

	char tmp[4096 + 8];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", out) >= sizeof(tmp)) {
		fprintf(stderr, "%s: output path too long\n", prog);
		ret = EXIT_USAGE;
		goto out_names;
	}
	mkdir_parents(out);
	/*
	 * O_EXCL|O_NOFOLLOW: never write through a name planted where the temporary
	 * file goes. One that is there (an interrupted run's, or planted) is
	 * unlinked, which removes a symlink itself and never its target, and the
	 * create is tried once more. Messages name the output, not the temporary.
	 */
	int oflags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
	int ofd = open(tmp, oflags, 0600);
	if (ofd < 0 && errno == EEXIST && unlink(tmp) == 0)
		ofd = open(tmp, oflags, 0600);
	if (ofd < 0) {
		fprintf(stderr, "%s: cannot create %s: %s\n", prog, out, strerror(errno));
		goto out_names;
	}
	unsigned char header[EARLY_HEADER_SIZE];
	memset(header, 0, sizeof(header));
	if (write_all(ofd, header, sizeof(header)))
		goto out_write;

	uint64_t total = EARLY_HEADER_SIZE;
	uint32_t flags = 0;
	size_t partial = 0, bound = 0;
	int devfd = dirfd(dir);
	for (size_t i = 0; i < count; i++) {
		uint32_t dom; unsigned b, d, f;
		parse_addr(names[i], &dom, &b, &d, &f);
		unsigned char eh[EARLY_ENTRY_HEADER_SIZE];
		unsigned char data[CONFIG_MAX + 8];
		memset(eh, 0, sizeof(eh));
		int dfd = openat(devfd, names[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		uint32_t err = 0;
		ssize_t n = 0;
		uint16_t size = 256;
		if (dfd < 0) {
			err = errno;
		} else {
			int cfd = openat(dfd, "config", O_RDONLY | O_CLOEXEC);
			if (cfd < 0) {
				err = errno;
			} else {
				struct stat st;
				if (!fstat(cfd, &st) && st.st_size == 4096)
					size = 4096;
				/* One pread of the whole space, as lspci -xxxx does. */
				n = pread(cfd, data, CONFIG_MAX, 0);
				if (n < 0) {
					err = errno;
					n = 0;
				}
				if (n > size)
					size = 4096;
				if (n > size)
					n = size;
				if (!err && n < size)
					err = EIO;
				close(cfd);
			}
		}
		put32(eh + 0, dom);
		eh[4] = b;
		eh[5] = (d << 3) | f;
		put16(eh + 6, size);
		put16(eh + 8, (uint16_t)n);
		if (dfd >= 0) {
			struct stat st;
			put16(eh + 10, read_hex(dfd, "vendor"));
			put16(eh + 12, read_hex(dfd, "device"));
			put16(eh + 14, read_hex(dfd, "subsystem_vendor"));
			put16(eh + 16, read_hex(dfd, "subsystem_device"));
			eh[18] = read_hex(dfd, "revision");
			if (!fstatat(dfd, "driver", &st, AT_SYMLINK_NOFOLLOW)) {
				eh[19] |= EARLY_ENTRY_DRIVER_BOUND;
				bound++;
			}
			put32(eh + 20, read_hex(dfd, "class") & 0xffffff);
			close(dfd);
		}
		put32(eh + 24, err);
		if (err) {
			flags |= EARLY_FLAG_PARTIAL;
			partial++;
		}
		/* CRC over the entry header then the data, as one stream (E9): the update
		 * function undoes and redoes the final xor, so calls chain. */
		uint32_t crc = crc32c_update(0, eh, 28);
		crc = crc32c_update(crc, data, (size_t)n);
		put32(eh + 28, crc);
		size_t padded = ((size_t)n + 7) & ~(size_t)7;
		memset(data + n, 0, padded - (size_t)n);
		if (write_all(ofd, eh, sizeof(eh)) || write_all(ofd, data, padded))
			goto out_write;
		total += sizeof(eh) + padded;
	}
	if (total > 0xffffffffu) {
		fprintf(stderr, "%s: snapshot would exceed 4 GiB\n", prog);
		goto out_write;
	}
	memcpy(header, EARLY_MAGIC, 8);
	put16(header + 8, EARLY_VERSION_MAJOR);
	put16(header + 10, EARLY_VERSION_MINOR);
	put32(header + 12, EARLY_HEADER_SIZE);
	put32(header + 16, (uint32_t)count);
	put32(header + 20, flags);
	put64(header + 24, clock_ns(CLOCK_REALTIME));
	read_boot_id(boot_id_path, header + 32);
#ifdef CLOCK_BOOTTIME
	put64(header + 48, clock_ns(CLOCK_BOOTTIME));
#else
	put64(header + 48, clock_ns(CLOCK_MONOTONIC));
#endif
	put32(header + 56, (uint32_t)total);
	put32(header + 60, crc32c_update(0, header, 60));   /* E8 */
	if (pwrite(ofd, header, sizeof(header), 0) != (ssize_t)sizeof(header))
		goto out_write;
	if (fsync(ofd))
		goto out_write;
	if (close(ofd)) {
		ofd = -1;
		goto out_write;
	}
	ofd = -1;
	if (rename(tmp, out)) {
		fprintf(stderr, "%s: cannot write %s: %s\n", prog, out, strerror(errno));
		unlink(tmp);
		goto out_names;
	}
	if (!quiet)
		fprintf(stderr, "%s: %zu device(s) saved to %s (%zu partial, %zu with a driver bound)\n",
			prog, count, out, partial, bound);
	ret = partial ? EXIT_PARTIAL : EXIT_OK;
	goto out_names;

out_write:
	fprintf(stderr, "%s: cannot write %s: %s\n", prog, out, strerror(errno));
	if (ofd >= 0)
		close(ofd);
	unlink(tmp);
out_names:
	for (size_t i = 0; i < count; i++)
		free(names[i]);
	free(names);
	closedir(dir);
	return ret;
}
