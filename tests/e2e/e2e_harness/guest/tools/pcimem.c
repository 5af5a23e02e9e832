/*
 * pcimem: read a register of a PCI memory BAR through sysfs resourceN, for the e2e guests.
 *
 * busybox devmem maps /dev/mem, which CONFIG_STRICT_DEVMEM refuses for BARs, and sysfs gives
 * no read() on memory BARs (EIO, lockdown-measured.md), so the BAR is mmapped here, the way
 * handoff's plugins reach it. Built static by the harness (gcc -static) so the capture
 * initrd, which holds only busybox, can run it before any driver loads.
 *
 *   pcimem BDF BAR OFFSET WIDTH      print the register (WIDTH 1, 2, 4 or 8 bytes) as 0x...
 *   pcimem virtio-status BDF         print a modern virtio device's device_status, found
 *                                    through its VIRTIO_PCI_CAP_COMMON_CFG capability
 *   pcimem msix BDF                  print "enable=E fmask=F vectors=N unmasked=U": the MSI-X
 *                                    Message Control bits and how many table entries have
 *                                    Vector Control's Mask bit clear (PCIe r6.0 7.7.2)
 *
 * Exit status 0 on success, 1 with a message on stderr (the errno name included: EPERM under
 * lockdown, EINVAL when a bound driver claimed the BAR), 2 on a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define VIRTIO_CAP_VNDR 0x09
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_COMMON_DEVICE_STATUS 0x14 /* struct virtio_pci_common_cfg, virtio 1.1 4.1.4.3 */
#define PCI_CAP_ID_MSIX 0x11

static int fail(const char *what, const char *path)
{
	int e = errno;

	fprintf(stderr, "pcimem: %s %s: %s (errno %d)\n", what, path, strerror(e), e);
	return 1;
}

static int read_bar(const char *bdf, unsigned bar, unsigned long off, unsigned width,
		    uint64_t *val_ret)
{
	char path[128];
	struct stat st;
	long page = sysconf(_SC_PAGESIZE);
	unsigned long base = off & ~(unsigned long)(page - 1);
	volatile uint8_t *p;
	void *map;
	int fd;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/resource%u", bdf, bar);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail("open", path);
	if (fstat(fd, &st) < 0)
		return fail("stat", path);
	if ((off_t)(off + width) > st.st_size || off % width) {
		fprintf(stderr, "pcimem: offset %#lx width %u outside %s (%lld bytes) or misaligned\n",
			off, width, path, (long long)st.st_size);
		return 1;
	}
	map = mmap(NULL, page, PROT_READ, MAP_SHARED, fd, base);
	if (map == MAP_FAILED)
		return fail("mmap", path);
	p = (volatile uint8_t *)map + (off - base);
	switch (width) {
	case 1: *val_ret = *p; break;
	case 2: *val_ret = *(volatile uint16_t *)p; break;
	case 4: *val_ret = *(volatile uint32_t *)p; break;
	default: *val_ret = *(volatile uint64_t *)p; break;
	}
	munmap(map, page);
	close(fd);
	return 0;
}

static int read_config(const char *bdf, uint8_t cfg[256])
{
	char path[128];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/config", bdf);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail("open", path);
	n = pread(fd, cfg, 256, 0);
	close(fd);
	if (n < 256) {
		fprintf(stderr, "pcimem: %s: short read (%zd bytes)\n", path, n);
		return 1;
	}
	return 0;
}

/* The offset of capability `id` in the standard capability list, 0 when absent. */
static unsigned find_cap(const uint8_t cfg[256], unsigned id)
{
	unsigned pos, hops = 0;

	for (pos = cfg[0x34] & 0xfc; pos && pos < 0xf0 && hops < 48; pos = cfg[pos + 1] & 0xfc) {
		hops++;
		if (cfg[pos] == id)
			return pos;
	}
	return 0;
}

/* MSI-X: Message Control from config space, each Vector Control through the table's BAR. */
static int msix(const char *bdf)
{
	uint8_t cfg[256];
	unsigned pos, ctrl, size, i, unmasked = 0;
	uint32_t table;
	uint64_t val;

	if (read_config(bdf, cfg))
		return 1;
	pos = find_cap(cfg, PCI_CAP_ID_MSIX);
	if (!pos) {
		fprintf(stderr, "pcimem: %s has no MSI-X capability\n", bdf);
		return 1;
	}
	ctrl = cfg[pos + 2] | cfg[pos + 3] << 8;
	size = (ctrl & 0x7ff) + 1;
	table = cfg[pos + 4] | cfg[pos + 5] << 8 | cfg[pos + 6] << 16 | (uint32_t)cfg[pos + 7] << 24;
	for (i = 0; i < size; i++) {
		if (read_bar(bdf, table & 7, (table & ~7u) + 16 * i + 12, 4, &val))
			return 1;
		unmasked += !(val & 1);
	}
	printf("enable=%u fmask=%u vectors=%u unmasked=%u\n", !!(ctrl & 0x8000), !!(ctrl & 0x4000),
	       size, unmasked);
	return 0;
}

/* Walk the capability list in config space for the virtio common configuration. */
static int virtio_common(const char *bdf, unsigned *bar_ret, unsigned long *off_ret)
{
	uint8_t cfg[256];
	unsigned pos, hops = 0;

	if (read_config(bdf, cfg))
		return 1;
	for (pos = cfg[0x34] & 0xfc; pos && pos < 0xf0 && hops < 48; pos = cfg[pos + 1] & 0xfc) {
		hops++;
		if (cfg[pos] == VIRTIO_CAP_VNDR && cfg[pos + 3] == VIRTIO_PCI_CAP_COMMON_CFG) {
			*bar_ret = cfg[pos + 4];
			*off_ret = cfg[pos + 8] | cfg[pos + 9] << 8 | cfg[pos + 10] << 16 |
				   (unsigned long)cfg[pos + 11] << 24;
			return 0;
		}
	}
	fprintf(stderr, "pcimem: %s has no virtio common configuration capability\n", bdf);
	return 1;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: pcimem BDF BAR OFFSET WIDTH | pcimem virtio-status BDF | pcimem msix BDF\n");
	return 2;
}

int main(int argc, char **argv)
{
	unsigned bar, width;
	unsigned long off;
	uint64_t val;
	char *end;

	if (argc == 3 && !strcmp(argv[1], "virtio-status")) {
		if (virtio_common(argv[2], &bar, &off) ||
		    read_bar(argv[2], bar, off + VIRTIO_COMMON_DEVICE_STATUS, 1, &val))
			return 1;
		printf("0x%02llx\n", (unsigned long long)val);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "msix"))
		return msix(argv[2]);
	if (argc != 5)
		return usage();
	bar = strtoul(argv[2], &end, 0);
	if (*end || bar > 5)
		return usage();
	off = strtoul(argv[3], &end, 0);
	if (*end)
		return usage();
	width = strtoul(argv[4], &end, 0);
	if (*end || (width != 1 && width != 2 && width != 4 && width != 8))
		return usage();
	if (read_bar(argv[1], bar, off, width, &val))
		return 1;
	printf("0x%0*llx\n", (int)(2 * width), (unsigned long long)val);
	return 0;
}
