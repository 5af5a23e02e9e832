// SPDX-License-Identifier: GPL-2.0-only
/*
 * handoff-quiesce: stop bus mastering in milliseconds, as the capture kernel's first hook.
 *
 * `handoff restore` runs in Python, about a second after its hook starts under TCG; devices the
 * crashed kernel left running keep writing its memory until then. This program runs first,
 * before any runtime starts: it validates the record with the C core (spec/format.md §8,
 * steps 1-10), checks that it comes from the crashed kernel (handoff.generation= and
 * handoff.boot_id= on /proc/cmdline, which `handoff load` puts there), and for every PCI
 * device of the record that
 *   - is present at the same address with the same vendor, device, subsystem and class ids,
 *   - is an endpoint (header type 0, not class 06: never a bridge, whose Bus Master the
 *     kernel's pcieport owns and which forwards the DMA of everything below it),
 *   - has no driver bound now (a bound driver owns COMMAND: pci_set_master() and
 *     pci_clear_master() in drivers/pci/pci.c keep dev->is_busmaster in step with it),
 *   - has a policy other than "skip", and has Bus Master set,
 * writes COMMAND once through sysfs `config` with Bus Master (bit 2) cleared and INTx Disable
 * (bit 10) set, reads it back, and logs what it did and when (CLOCK_BOOTTIME, the clock of
 * /proc/uptime and of the kernel log). Only the 2 bytes of COMMAND are written: STATUS (write-1
 * to clear) and everything else stay as the crash left them. `handoff restore` then reads the
 * log into its report (handoff/restore/quiesce_log.py parses it).
 *
 *   handoff-quiesce [--record FILE] [--sysfs-root DIR] [--cmdline FILE] [--vmcore FILE]
 *                   [--log FILE]
 *
 * Only in a capture kernel: without /proc/vmcore (--vmcore) nothing is written, as `handoff
 * restore` refuses a running system's /sys (after a plain kexec, restore does the work).
 *
 * Log (text, one event a line, "key value..." words): see handoff/restore/quiesce_log.py.
 * Exit status: 0 done (refused writes are logged, not fatal), 1 invalid or foreign record,
 * 2 usage, 3 no record, 4 environment (cannot write the log).
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "handoff.h"

#define EXIT_OK 0
#define EXIT_INVALID 1
#define EXIT_USAGE 2
#define EXIT_NO_RECORD 3
#define EXIT_ENVIRONMENT 4

#define NOTE_HEADER 12
#define RECORD_MAX (HANDOFF_PAYLOAD_SIZE_MAX + 4096)
#define MAX_DEPTH 16
#define PCI_COMMAND 0x04
#define CMD_BUS_MASTER 0x0004u
#define CMD_INTX_DISABLE 0x0400u

static const char *sysfs_root = "/sys";
static FILE *logf;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(logf, fmt, ap);
	va_end(ap);
	fputc('\n', logf);
}

/* --- a bounded reader for the payload's CBOR (already proved strict by the C core) ------- */

struct cbor {
	const uint8_t *p, *end;
};

/* One item head: major type and argument. Indefinite lengths never pass R15. */
static int head(struct cbor *c, unsigned *major, uint64_t *arg)
{
	unsigned ai, n;

	if (c->p >= c->end)
		return -1;
	*major = *c->p >> 5;
	ai = *c->p++ & 31;
	if (ai < 24) {
		*arg = ai;
		return 0;
	}
	if (ai > 27)
		return -1;
	n = 1u << (ai - 24);
	if ((size_t)(c->end - c->p) < n)
		return -1;
	*arg = 0;
	while (n--)
		*arg = *arg << 8 | *c->p++;
	return 0;
}

static int skip(struct cbor *c, int depth)
{
	unsigned major;
	uint64_t arg, i;

	if (depth > MAX_DEPTH || head(c, &major, &arg))
		return -1;
	switch (major) {
	case 2:
	case 3:
		if ((uint64_t)(c->end - c->p) < arg)
			return -1;
		c->p += arg;
		return 0;
	case 4:
	case 5:
		for (i = 0; i < arg * (major == 5 ? 2 : 1); i++)
			if (skip(c, depth + 1))
				return -1;
		return 0;
	default:
		return 0; /* uint, nint, simple: the head was the item */
	}
}

/* A text string into buf (NUL-terminated); -1 if it is not text or does not fit. */
static int text(struct cbor *c, char *buf, size_t cap)
{
	unsigned major;
	uint64_t len;

	if (head(c, &major, &len) || major != 3 || len >= cap || (uint64_t)(c->end - c->p) < len)
		return -1;
	memcpy(buf, c->p, len);
	buf[len] = 0;
	c->p += len;
	return 0;
}

static int uint_(struct cbor *c, uint64_t *v)
{
	unsigned major;

	return head(c, &major, v) || major != 0 ? -1 : 0;
}

struct device {
	char bus[16], addr[32], policy[32];
	uint64_t vendor, device, subvendor, subdevice, class_;
	int have_ids;
};

static int read_ids(struct cbor *c, struct device *d)
{
	unsigned major;
	uint64_t n, i;
	char key[16];

	if (head(c, &major, &n) || major != 5)
		return -1;
	for (i = 0; i < n; i++) {
		uint64_t *slot = NULL;

		if (text(c, key, sizeof(key)))
			return -1;
		if (!strcmp(key, "vendor"))
			slot = &d->vendor;
		else if (!strcmp(key, "device"))
			slot = &d->device;
		else if (!strcmp(key, "subvendor"))
			slot = &d->subvendor;
		else if (!strcmp(key, "subdevice"))
			slot = &d->subdevice;
		else if (!strcmp(key, "class"))
			slot = &d->class_;
		if (slot ? uint_(c, slot) : skip(c, 1))
			return -1;
	}
	d->have_ids = 1;
	return 0;
}

static int read_device(struct cbor *c, struct device *d)
{
	unsigned major;
	uint64_t n, i;
	char key[32];
	int rc;

	memset(d, 0, sizeof(*d));
	if (head(c, &major, &n) || major != 5)
		return -1;
	for (i = 0; i < n; i++) {
		if (text(c, key, sizeof(key)))
			return -1;
		if (!strcmp(key, "bus"))
			rc = text(c, d->bus, sizeof(d->bus));
		else if (!strcmp(key, "addr"))
			rc = text(c, d->addr, sizeof(d->addr));
		else if (!strcmp(key, "policy"))
			rc = text(c, d->policy, sizeof(d->policy));
		else if (!strcmp(key, "ids"))
			rc = read_ids(c, d);
		else
			rc = skip(c, 1);
		if (rc)
			return -1;
	}
	return 0;
}

/* --- the live device --------------------------------------------------------------------- */

/* One read of a small text file (a sysfs attribute, /proc/cmdline) into @buf, NUL-terminated.
 * Returns 0, or -1 if it cannot be opened or reads nothing. */
static int read_text(const char *path, char *buf, size_t cap)
{
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	n = read(fd, buf, cap - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	return 0;
}

static int read_hex(const char *addr, const char *attr, uint64_t *v)
{
	char path[256], buf[32];

	snprintf(path, sizeof(path), "%s/bus/pci/devices/%s/%s", sysfs_root, addr, attr);
	if (read_text(path, buf, sizeof(buf)))
		return -1;
	*v = strtoull(buf, NULL, 16);
	return 0;
}

static int bound(const char *addr, char *driver, size_t cap)
{
	char path[256], target[256];
	ssize_t n;

	snprintf(path, sizeof(path), "%s/bus/pci/devices/%s/driver", sysfs_root, addr);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return 0;
	target[n] = 0;
	snprintf(driver, cap, "%.63s", strrchr(target, '/') ? strrchr(target, '/') + 1 : target);
	return 1;
}

static void quiesce(const struct device *d, unsigned *cleared, uint64_t *last_ns)
{
	char path[256], driver[64];
	uint8_t cfg[16], out[2];
	uint64_t v, dv, sv, sd, cl;
	unsigned cmd, want, got;
	int fd;

	if (strcmp(d->bus, "pci") || !d->have_ids)
		return;
	if (!strcmp(d->policy, "skip")) {
		say("skip %s policy-skip", d->addr);
		return;
	}
	if (read_hex(d->addr, "vendor", &v) || read_hex(d->addr, "device", &dv) ||
	    read_hex(d->addr, "subsystem_vendor", &sv) ||
	    read_hex(d->addr, "subsystem_device", &sd) || read_hex(d->addr, "class", &cl)) {
		say("skip %s absent", d->addr);
		return;
	}
	if (v != d->vendor || dv != d->device || sv != d->subvendor || sd != d->subdevice ||
	    cl != d->class_) {
		say("skip %s identity %04llx:%04llx", d->addr, (unsigned long long)v,
		    (unsigned long long)dv);
		return;
	}
	if (bound(d->addr, driver, sizeof(driver))) {
		say("skip %s bound %s", d->addr, driver);
		return;
	}
	snprintf(path, sizeof(path), "%s/bus/pci/devices/%s/config", sysfs_root, d->addr);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		say("error %s open %s", d->addr, strerror(errno));
		return;
	}
	if (pread(fd, cfg, sizeof(cfg), 0) != (ssize_t)sizeof(cfg)) {
		say("error %s read %s", d->addr, strerror(errno));
		goto out;
	}
	/* Header type 0 (bits 0-6 of 0x0e) and not a bridge class: endpoints only. */
	if ((cfg[0x0e] & 0x7f) != 0 || cfg[0x0b] == 0x06) {
		say("skip %s not-endpoint", d->addr);
		goto out;
	}
	cmd = cfg[PCI_COMMAND] | cfg[PCI_COMMAND + 1] << 8;
	if (!(cmd & CMD_BUS_MASTER)) {
		say("skip %s not-bus-master 0x%04x", d->addr, cmd);
		goto out;
	}
	want = (cmd & ~CMD_BUS_MASTER) | CMD_INTX_DISABLE;
	out[0] = want & 0xff;
	out[1] = want >> 8;
	if (pwrite(fd, out, 2, PCI_COMMAND) != 2) {
		say("refused %s 0x%04x %s", d->addr, cmd, strerror(errno));
		goto out;
	}
	*last_ns = now_ns();
	got = 0xffff;
	if (pread(fd, out, 2, PCI_COMMAND) == 2)
		got = out[0] | out[1] << 8;
	say("cleared %s 0x%04x 0x%04x %llu", d->addr, cmd, got, (unsigned long long)*last_ns);
	(*cleared)++;
out:
	close(fd);
}

/* --- the record -------------------------------------------------------------------------- */

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) || st.st_size < NOTE_HEADER || st.st_size > RECORD_MAX) {
		close(fd);
		errno = EFBIG;
		return NULL;
	}
	buf = malloc(st.st_size);
	n = buf ? read(fd, buf, st.st_size) : -1;
	close(fd);
	if (n != st.st_size) {
		free(buf);
		errno = EIO;
		return NULL;
	}
	*len = (size_t)n;
	return buf;
}

static uint32_t le32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

/* handoff.generation= and handoff.boot_id= of the capture command line. */
static int crashed_identity(const char *cmdline, uint64_t *gen, uint8_t boot_id[16])
{
	char buf[4096], *tok, *save;
	int have = 0;

	if (read_text(cmdline, buf, sizeof(buf)))
		return -1;
	for (tok = strtok_r(buf, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
		if (!strncmp(tok, "handoff.generation=", 19)) {
			*gen = strtoull(tok + 19, NULL, 10);
			have |= 1;
		} else if (!strncmp(tok, "handoff.boot_id=", 16)) {
			const char *s = tok + 16;
			int i = 0;

			for (; *s && i < 32; s++) {
				unsigned x;

				if (*s == '-')
					continue;
				if (sscanf(s, "%1x", &x) != 1)
					return -1;
				boot_id[i / 2] = (uint8_t)(i % 2 ? boot_id[i / 2] | x : x << 4);
				i++;
			}
			if (i == 32)
				have |= 2;
		}
	}
	return have == 3 ? 0 : -1;
}

static int usage(void)
{
	fprintf(stderr, "usage: handoff-quiesce [--record FILE] [--sysfs-root DIR] "
			"[--cmdline FILE] [--vmcore FILE] [--log FILE]\n");
	return EXIT_USAGE;
}

int main(int argc, char **argv)
{
	const char *record = "/handoff/record.note", *cmdline = "/proc/cmdline";
	const char *log_path = "/handoff/quiesce.log", *vmcore = "/proc/vmcore";
	struct handoff_record_info info;
	uint64_t start = now_ns(), last = 0, gen = 0;
	uint8_t boot_id[16] = { 0 }, *buf;
	size_t len = 0;
	unsigned cleared = 0, major;
	uint64_t n, i;
	struct cbor c;
	int rc;

	for (int a = 1; a < argc; a += 2) {
		if (a + 1 >= argc)
			return usage();
		if (!strcmp(argv[a], "--record"))
			record = argv[a + 1];
		else if (!strcmp(argv[a], "--sysfs-root"))
			sysfs_root = argv[a + 1];
		else if (!strcmp(argv[a], "--cmdline"))
			cmdline = argv[a + 1];
		else if (!strcmp(argv[a], "--vmcore"))
			vmcore = argv[a + 1];
		else if (!strcmp(argv[a], "--log"))
			log_path = argv[a + 1];
		else
			return usage();
	}
	logf = fopen(log_path, "w");
	if (!logf) {
		fprintf(stderr, "handoff-quiesce: cannot write %s: %s\n", log_path, strerror(errno));
		return EXIT_ENVIRONMENT;
	}
	say("handoff-quiesce 1");
	say("start %llu", (unsigned long long)start);
	if (access(vmcore, F_OK)) {
		say("not-capture-kernel %s %s", vmcore, strerror(errno));
		rc = EXIT_OK;
		buf = NULL;
		goto done;
	}
	buf = slurp(record, &len);
	if (!buf) {
		say("no-record %s %s", record, strerror(errno));
		rc = EXIT_NO_RECORD;
		goto done;
	}
	/* spec §6: the record travels as one ELF note, name "HANDOFF", type NT_HANDOFF_RECORD. */
	if (le32(buf) != HANDOFF_NOTE_NAMESZ || le32(buf + 8) != NT_HANDOFF_RECORD ||
	    memcmp(buf + NOTE_HEADER, HANDOFF_NOTE_NAME, HANDOFF_NOTE_NAMESZ) ||
	    le32(buf + 4) > len - NOTE_HEADER - HANDOFF_NOTE_NAMESZ) {
		say("invalid %s not-a-handoff-note", record);
		rc = EXIT_INVALID;
		goto done;
	}
	rc = handoff_record_check(buf + NOTE_HEADER + HANDOFF_NOTE_NAMESZ, le32(buf + 4),
				  HANDOFF_CHECK_PAYLOAD, &info);
	if (rc) {
		say("invalid %s %s", record, handoff_strerror(rc));
		rc = EXIT_INVALID;
		goto done;
	}
	if (crashed_identity(cmdline, &gen, boot_id) || gen != info.generation ||
	    memcmp(boot_id, info.boot_id, 16)) {
		say("foreign generation %llu (cmdline %llu)", (unsigned long long)info.generation,
		    (unsigned long long)gen);
		rc = EXIT_INVALID;
		goto done;
	}
	say("record generation %llu", (unsigned long long)info.generation);
	c.p = buf + NOTE_HEADER + HANDOFF_NOTE_NAMESZ + info.header_size;
	c.end = c.p + info.payload_size;
	rc = EXIT_INVALID;
	if (head(&c, &major, &n) || major != 5)
		goto bad;
	for (i = 0; i < n; i++) {
		char key[16];
		uint64_t m, j;

		if (text(&c, key, sizeof(key)))
			goto bad;
		if (strcmp(key, "devices")) {
			if (skip(&c, 1))
				goto bad;
			continue;
		}
		if (head(&c, &major, &m) || major != 4)
			goto bad;
		for (j = 0; j < m; j++) {
			struct device d;

			if (read_device(&c, &d))
				goto bad;
			quiesce(&d, &cleared, &last);
		}
	}
	rc = EXIT_OK;
	goto done;
bad:
	say("invalid payload-walk");
done:
	say("end %llu cleared %u last %llu", (unsigned long long)now_ns(), cleared,
	    (unsigned long long)last);
	fclose(logf);
	free(buf);
	return rc;
}
