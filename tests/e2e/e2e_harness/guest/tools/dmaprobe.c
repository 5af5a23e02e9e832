/*
 * dmaprobe: the DMA scenarios' guest helper (tests/e2e/scenarios/dma-*).
 *
 *   dmaprobe ring IFACE N     set IFACE's RX ring to N descriptors (ETHTOOL_SRINGPARAM, what
 *                             `ethtool -G IFACE rx N` does; busybox has no ethtool) and print
 *                             "rx PENDING max MAX" as read back by ETHTOOL_GRINGPARAM
 *   dmaprobe hash CORE OUT    hash every 4 KiB page of every PT_LOAD of the ELF core CORE
 *                             (/proc/vmcore) and write OUT: "DMAH", u32 count, then count
 *                             records of (u64 physical address, u64 hash), little-endian;
 *                             print "pages COUNT ms ELAPSED" (CLOCK_MONOTONIC)
 *
 * The capture kernel's /proc/vmcore is the crashed kernel's memory read live, so two hashes of
 * the same page that differ mean something wrote that memory in between: a device's DMA (the
 * capture kernel itself never writes old memory). Built static by the harness (gcc -static)
 * for the capture initrd, which holds only busybox.
 *
 * Exit status 0 on success, 1 with a message on stderr, 2 on a usage error.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define CHUNK (1u << 20)
#define MAX_PHDRS 64
#define MAX_PAGES (1u << 22) /* 16 GiB of old memory: far above any e2e guest */

static int fail(const char *what, const char *arg)
{
	int e = errno;

	fprintf(stderr, "dmaprobe: %s %s: %s (errno %d)\n", what, arg, strerror(e), e);
	return 1;
}

static int ring(const char *ifname, unsigned n)
{
	struct ethtool_ringparam rp = { .cmd = ETHTOOL_GRINGPARAM };
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (fd < 0)
		return fail("socket", "AF_INET");
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	ifr.ifr_data = (void *)&rp;
	if (ioctl(fd, SIOCETHTOOL, &ifr) < 0)
		return fail("ETHTOOL_GRINGPARAM", ifname);
	rp.cmd = ETHTOOL_SRINGPARAM;
	rp.rx_pending = n;
	if (ioctl(fd, SIOCETHTOOL, &ifr) < 0)
		return fail("ETHTOOL_SRINGPARAM", ifname);
	rp.cmd = ETHTOOL_GRINGPARAM;
	if (ioctl(fd, SIOCETHTOOL, &ifr) < 0)
		return fail("ETHTOOL_GRINGPARAM", ifname);
	close(fd);
	printf("rx %u max %u\n", rp.rx_pending, rp.rx_max_pending);
	return 0;
}

/* A 64-bit multiply-xor hash over the page's words (FNV-1a's prime, one word at a time):
 * cheap under TCG, and a page's change flips it with overwhelming probability. */
static uint64_t page_hash(const unsigned char *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull, w;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		memcpy(&w, p + i, 8);
		h = (h ^ w) * 0x100000001b3ull;
		h ^= h >> 29;
	}
	for (; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* x86_64 cores map the kernel image twice (its text mapping and the RAM holding it): hash a
 * physical range once, in the larger segment that covers it. */
static int covered(const Elf64_Phdr *ph, int n, int i)
{
	for (int j = 0; j < n; j++) {
		if (j == i || ph[j].p_type != PT_LOAD)
			continue;
		if (ph[j].p_paddr <= ph[i].p_paddr &&
		    ph[i].p_paddr + ph[i].p_filesz <= ph[j].p_paddr + ph[j].p_filesz &&
		    (ph[j].p_filesz > ph[i].p_filesz || j < i))
			return 1;
	}
	return 0;
}

static int hash(const char *core, const char *out)
{
	Elf64_Ehdr eh;
	Elf64_Phdr ph[MAX_PHDRS];
	struct timespec t0, t1;
	unsigned char *buf, rec[16];
	uint32_t count = 0;
	FILE *f;
	int fd;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	fd = open(core, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail("open", core);
	if (pread(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh) ||
	    memcmp(eh.e_ident, ELFMAG, SELFMAG) || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > MAX_PHDRS) {
		fprintf(stderr, "dmaprobe: %s is not an ELF64 core with at most %d program headers\n",
			core, MAX_PHDRS);
		return 1;
	}
	if (pread(fd, ph, eh.e_phnum * sizeof(Elf64_Phdr), eh.e_phoff) !=
	    (ssize_t)(eh.e_phnum * sizeof(Elf64_Phdr)))
		return fail("read program headers of", core);
	buf = malloc(CHUNK);
	f = fopen(out, "wb");
	if (!buf || !f)
		return fail("open", out);
	fwrite("DMAH\0\0\0\0", 1, 8, f); /* the count is written last */
	for (int i = 0; i < eh.e_phnum; i++) {
		if (ph[i].p_type != PT_LOAD || covered(ph, eh.e_phnum, i))
			continue;
		for (uint64_t done = 0; done < ph[i].p_filesz;) {
			size_t want = ph[i].p_filesz - done < CHUNK ? ph[i].p_filesz - done : CHUNK;
			ssize_t got = pread(fd, buf, want, ph[i].p_offset + done);

			if (got <= 0)
				return fail("read", core);
			for (size_t at = 0; at < (size_t)got; at += PAGE) {
				size_t len = (size_t)got - at < PAGE ? (size_t)got - at : PAGE;

				if (++count > MAX_PAGES) {
					fprintf(stderr, "dmaprobe: more than %u pages\n", MAX_PAGES);
					return 1;
				}
				put64(rec, ph[i].p_paddr + done + at);
				put64(rec + 8, page_hash(buf + at, len));
				fwrite(rec, 1, sizeof(rec), f);
			}
			done += (uint64_t)got;
		}
	}
	rec[0] = count;
	rec[1] = count >> 8;
	rec[2] = count >> 16;
	rec[3] = count >> 24;
	if (fseek(f, 4, SEEK_SET) || fwrite(rec, 1, 4, f) != 4 || fclose(f))
		return fail("write", out);
	close(fd);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("pages %u ms %ld\n", count,
	       (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000));
	return 0;
}

int main(int argc, char **argv)
{
	char *end;
	unsigned long n;

	if (argc == 4 && !strcmp(argv[1], "ring")) {
		n = strtoul(argv[3], &end, 0);
		if (*end || !n || n > 65536) {
			fprintf(stderr, "dmaprobe: ring size %s: expected 1-65536\n", argv[3]);
			return 2;
		}
		return ring(argv[2], (unsigned)n);
	}
	if (argc == 4 && !strcmp(argv[1], "hash"))
		return hash(argv[2], argv[3]);
	fprintf(stderr, "usage: dmaprobe ring IFACE N | dmaprobe hash CORE OUT\n");
	return 2;
}
