// SPDX-License-Identifier: GPL-2.0-only
/*
 * region.c - the two-slot region of spec/format.md §7 (R25, R26), in memory
 * or in a byte range of a file or device.
 *
 * One update algorithm serves every backend: it writes through region_io,
 * which counts each byte against an optional budget so that tests can cut an
 * update at any byte, as a power failure would, and check that R26 keeps the
 * previous record valid.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define REG(field) offsetof(struct handoff_wire_region, field)

struct region_io {
	uint8_t *base;		/* the region's bytes: caller memory, a mapping, or a shadow copy */
	size_t size;
	uint64_t *budget;	/* bytes still allowed to be written; NULL: no limit */
	int (*write)(struct region_io *io, uint64_t off, size_t n);
	int (*flush)(struct region_io *io);
	int (*user_flush)(void *ctx);
	void *user_ctx;
	int fd;
	uint64_t file_off;	/* region start in the file */
	void *map;		/* page-aligned mapping, or NULL */
	size_t map_len;
	uint8_t *shadow;	/* malloc'ed copy when the range cannot be mapped */
};

/*
 * Write @n bytes of @src (NULL: zeros) at region offset @off, in ascending
 * order, spending the budget; stop where it runs out.
 */
static int io_write(struct region_io *io, uint64_t off, const uint8_t *src, size_t n)
{
	size_t now = n;
	int err;

	if (io->budget && *io->budget < n)
		now = (size_t)*io->budget;
	if (src)
		memcpy(io->base + off, src, now);
	else
		memset(io->base + off, 0, now);
	if (now) {
		err = io->write(io, off, now);	/* make base[off, off + now) durable-to-be */
		if (err)
			return err;
	}
	if (io->budget)
		*io->budget -= now;
	return now < n ? HANDOFF_E_INTERRUPTED : 0;
}

/* Memory and mappings: the bytes are already in place. */
static int mem_write(struct region_io *io, uint64_t off, size_t n)
{
	(void)io, (void)off, (void)n;
	return 0;
}

static int mem_flush(struct region_io *io)
{
	int err;

	if (!io->user_flush)
		return 0;
	err = io->user_flush(io->user_ctx);
	return err < 0 ? err : err ? HANDOFF_E_IO : 0;
}

static int map_flush(struct region_io *io)
{
	return msync(io->map, io->map_len, MS_SYNC) ? HANDOFF_E_IO : 0;
}

/* Fallback for ranges that cannot be mapped: the shadow holds the bytes, pwrite() sends them. */
static int shadow_write(struct region_io *io, uint64_t off, size_t n)
{
	const uint8_t *p = io->base + off;

	while (n) {
		ssize_t done = pwrite(io->fd, p, n, (off_t)(io->file_off + off));

		if (done < 0 && errno == EINTR)
			continue;
		if (done <= 0)
			return HANDOFF_E_IO;
		p += done, off += (size_t)done, n -= (size_t)done;
	}
	return 0;
}

static int fd_flush(struct region_io *io)
{
	return fsync(io->fd) ? HANDOFF_E_IO : 0;
}

static int region_fail(struct handoff_region_info *info, uint64_t off, const char *what,
		       const char *field)
{
	handoff__diag(&info->diag, off, 0, what, field);
	return HANDOFF_E_REGION;
}

/* The region header and layout, §7. */
static int parse_header(const uint8_t *b, size_t size, struct handoff_region_info *info)
{
	uint64_t lo, hi;
	uint32_t hsize;

	if (size < HANDOFF_REGION_HEADER_SIZE)
		return region_fail(info, size, "smaller than a region header", "region");
	if (memcmp(b + REG(magic), HANDOFF_REGION_MAGIC, 8))
		return region_fail(info, REG(magic), "bad magic", "magic");
	if (handoff__crc32c(b, HANDOFF_REGION_CRC_OFFSET) != handoff_get_le32(b + REG(crc)))
		return region_fail(info, REG(crc), "header checksum mismatch", "crc");
	info->version_major = handoff_get_le16(b + REG(version_major));
	info->version_minor = handoff_get_le16(b + REG(version_minor));
	/* §7, as R7 for records: any minor of our major, and a header a later minor grew. */
	if (info->version_major != HANDOFF_REGION_VERSION_MAJOR)
		return region_fail(info, REG(version_major), "unsupported major version",
				   "version_major");
	hsize = handoff_get_le32(b + REG(header_size));
	if (hsize < HANDOFF_REGION_HEADER_SIZE || hsize > HANDOFF_REGION_HEADER_SIZE_MAX ||
	    hsize % 8)
		return region_fail(info, REG(header_size), "not a multiple of 8 in [64, 4096]",
				   "header_size");
	info->region_size = handoff_get_le64(b + REG(region_size));
	info->slot_size = handoff_get_le64(b + REG(slot_size));
	info->slot_offset[0] = handoff_get_le64(b + REG(slot0_offset));
	info->slot_offset[1] = handoff_get_le64(b + REG(slot1_offset));
	if (info->region_size > size)
		return region_fail(info, REG(region_size), "region_size exceeds the range given",
				   "region_size");
	if (info->slot_size == 0 || info->slot_size % 8)
		return region_fail(info, REG(slot_size), "not a nonzero multiple of 8", "slot_size");
	for (unsigned s = 0; s < 2; s++) {
		uint64_t off = info->slot_offset[s];
		const char *field = s ? "slot1_offset" : "slot0_offset";

		if (off % 8)
			return region_fail(info, REG(slot0_offset) + 8 * s, "not 8-aligned", field);
		if (off < hsize)
			return region_fail(info, REG(slot0_offset) + 8 * s,
					   "slot overlaps the region header", field);
		if (off > info->region_size || info->slot_size > info->region_size - off)
			return region_fail(info, REG(slot0_offset) + 8 * s,
					   "slot extends past region_size", field);
	}
	lo = info->slot_offset[0], hi = info->slot_offset[1];
	if (lo > hi)
		lo = info->slot_offset[1], hi = info->slot_offset[0];
	if (hi - lo < info->slot_size)
		return region_fail(info, REG(slot1_offset), "slots overlap", "slot1_offset");
	return 0;
}

/* R25: both slots validated (§8, all steps); the larger generation wins, slot 0 on a tie. */
static int inspect(const uint8_t *b, size_t size, struct handoff_region_info *info)
{
	struct handoff_record_info rec;
	int err;

	memset(info, 0, sizeof(*info));
	err = parse_header(b, size, info);
	if (err)
		return err;
	for (unsigned s = 0; s < 2; s++) {
		info->slot_status[s] = handoff_record_check(b + info->slot_offset[s],
							    (size_t)info->slot_size,
							    HANDOFF_CHECK_PAYLOAD, &rec);
		if (info->slot_status[s] == 0) {
			info->slot_generation[s] = rec.generation;
			info->slot_length[s] = rec.record_size;
		}
	}
	if (info->slot_status[0] && info->slot_status[1])
		return HANDOFF_E_NO_RECORD;
	if (info->slot_status[0])
		info->newest = 1;
	else if (info->slot_status[1])
		info->newest = 0;
	else
		info->newest = info->slot_generation[1] > info->slot_generation[0];
	return 0;
}

/* §7 layout: slot 0 right after the header, slot 1 right after slot 0. */
static int format(struct region_io *io, uint64_t slot_size)
{
	uint8_t hdr[HANDOFF_REGION_HEADER_SIZE] = { 0 };	/* R2: reserved */
	uint64_t size = io->size;
	int err;

	if (size < HANDOFF_REGION_HEADER_SIZE)
		return HANDOFF_E_INVAL;
	if (slot_size == 0)
		slot_size = (size - HANDOFF_REGION_HEADER_SIZE) / 2 & ~(uint64_t)7;
	if (slot_size % 8 || slot_size < HANDOFF_HEADER_SIZE_MIN ||
	    slot_size > (size - HANDOFF_REGION_HEADER_SIZE) / 2)
		return HANDOFF_E_INVAL;
	memcpy(hdr + REG(magic), HANDOFF_REGION_MAGIC, 8);
	handoff_put_le16(hdr + REG(version_major), HANDOFF_REGION_VERSION_MAJOR);
	handoff_put_le16(hdr + REG(version_minor), HANDOFF_REGION_VERSION_MINOR);
	handoff_put_le32(hdr + REG(header_size), HANDOFF_REGION_HEADER_SIZE);
	handoff_put_le64(hdr + REG(region_size), size);
	handoff_put_le64(hdr + REG(slot_size), slot_size);
	handoff_put_le64(hdr + REG(slot0_offset), HANDOFF_REGION_HEADER_SIZE);
	handoff_put_le64(hdr + REG(slot1_offset), HANDOFF_REGION_HEADER_SIZE + slot_size);
	handoff_put_le32(hdr + REG(crc), handoff__crc32c(hdr, HANDOFF_REGION_CRC_OFFSET));

	/* Kill stale records first, so no old record is valid under the new header. */
	err = io_write(io, HANDOFF_REGION_HEADER_SIZE, NULL, HANDOFF_FIXED_HEADER_SIZE);
	if (!err)
		err = io_write(io, HANDOFF_REGION_HEADER_SIZE + slot_size, NULL,
			       HANDOFF_FIXED_HEADER_SIZE);
	if (!err)
		err = io->flush(io);
	if (!err)
		err = io_write(io, 0, hdr, sizeof(hdr));
	if (!err)
		err = io->flush(io);
	return err;
}

/* R26, for any backend. */
static int update(struct region_io *io, const uint8_t *rec, size_t len, unsigned *slot_ret,
		  uint64_t *gen_ret)
{
	struct handoff_record_info rinfo;
	struct handoff_region_info info;
	uint8_t hdr[HANDOFF_FIXED_HEADER_SIZE];
	uint64_t gen = 1, slot;
	unsigned target = 0;
	int err;

	/* Never put a record in a region that a reader would refuse (§8, every step). */
	err = handoff_record_check(rec, len, HANDOFF_CHECK_PAYLOAD | HANDOFF_CHECK_EXACT, &rinfo);
	if (err)
		return err;
	err = inspect(io->base, io->size, &info);
	if (err && err != HANDOFF_E_NO_RECORD)
		return err;
	if (!err) {
		target = !info.newest;
		gen = info.slot_generation[info.newest];
		if (gen == UINT64_MAX)
			return HANDOFF_E_REGION;	/* R17 cannot go on */
		gen++;
	}
	if (len > info.slot_size)
		return HANDOFF_E_NOSPACE;
	slot = info.slot_offset[target];
	/* The digest does not cover [0, 128) (R13): only header_crc changes. */
	memcpy(hdr, rec, sizeof(hdr));
	handoff_put_le64(hdr + offsetof(struct handoff_wire_header, generation), gen);
	handoff_put_le32(hdr + HANDOFF_HEADER_CRC_OFFSET,
			 handoff__crc32c(hdr, HANDOFF_HEADER_CRC_OFFSET));

	/* R26 (1): from here on the target slot cannot validate ... */
	err = io_write(io, slot, NULL, sizeof(hdr));
	if (!err)
		err = io->flush(io);
	/* (2): ... while its body is written ... */
	if (!err)
		err = io_write(io, slot + sizeof(hdr), rec + sizeof(hdr), len - sizeof(hdr));
	if (!err)
		err = io->flush(io);
	/* (3): ... until the header, whose CRC is its last 4 bytes, is complete. */
	if (!err)
		err = io_write(io, slot, hdr, sizeof(hdr));
	if (!err)
		err = io->flush(io);
	if (err)
		return err;
	*slot_ret = target;
	*gen_ret = gen;
	return 0;
}

static void mem_io(struct region_io *io, uint8_t *base, size_t size)
{
	memset(io, 0, sizeof(*io));
	io->base = base;
	io->size = size;
	io->write = mem_write;
	io->flush = mem_flush;
	io->fd = -1;
}

int handoff_region_format(uint8_t *base, size_t size, uint64_t slot_size)
{
	struct region_io io;

	if (!base)
		return HANDOFF_E_INVAL;
	mem_io(&io, base, size);
	return format(&io, slot_size);
}

int handoff_region_inspect(const uint8_t *base, size_t size, struct handoff_region_info *info_ret)
{
	if (!base || !info_ret)
		return HANDOFF_E_INVAL;
	return inspect(base, size, info_ret);
}

int handoff_region_read_mem(const uint8_t *base, size_t size, uint64_t *off_ret,
			    uint64_t *len_ret, uint64_t *gen_ret, unsigned *slot_ret)
{
	struct handoff_region_info info;
	int err;

	if (!base || !off_ret || !len_ret || !gen_ret || !slot_ret)
		return HANDOFF_E_INVAL;
	err = inspect(base, size, &info);
	if (err)
		return err;
	*slot_ret = info.newest;
	*off_ret = info.slot_offset[info.newest];
	*len_ret = info.slot_length[info.newest];
	*gen_ret = info.slot_generation[info.newest];
	return 0;
}

int handoff_region_update_mem(uint8_t *base, size_t size, const uint8_t *record, size_t len,
			      uint64_t *budget, int (*flush)(void *ctx), void *flush_ctx,
			      unsigned *slot_ret, uint64_t *generation_ret)
{
	struct region_io io;

	if (!base || !record || !slot_ret || !generation_ret)
		return HANDOFF_E_INVAL;
	mem_io(&io, base, size);
	io.budget = budget;
	io.user_flush = flush;
	io.user_ctx = flush_ctx;
	return update(&io, record, len, slot_ret, generation_ret);
}

enum open_mode { OPEN_READ, OPEN_WRITE, OPEN_FORMAT };

static int read_all(int fd, uint8_t *p, size_t n, uint64_t off)
{
	while (n) {
		ssize_t done = pread(fd, p, n, (off_t)off);

		if (done < 0 && errno == EINTR)
			continue;
		if (done < 0)
			return HANDOFF_E_IO;
		if (done == 0)
			return HANDOFF_E_REGION;	/* the file ends inside the range */
		p += done, off += (size_t)done, n -= (size_t)done;
	}
	return 0;
}

/* Map [offset, offset + size) of @path, or read it into a shadow copy if it cannot be mapped. */
static int file_open(struct region_io *io, const char *path, uint64_t offset, uint64_t size,
		     enum open_mode mode, struct handoff_diag *diag)
{
	uint64_t end, delta;
	struct stat st;
	long page;
	off_t dev_end;
	int err;

	memset(io, 0, sizeof(*io));
	io->fd = -1;
	if (!path || size == 0 || size > SIZE_MAX / 2 || offset > (uint64_t)INT64_MAX - size)
		return HANDOFF_E_INVAL;
	end = offset + size;
	io->fd = open(path, (mode == OPEN_READ ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (io->fd < 0 || fstat(io->fd, &st))
		return HANDOFF_E_IO;
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size < end) {
		if (mode != OPEN_FORMAT) {
			handoff__diag(diag, (uint64_t)st.st_size, 0, "the file ends before the region",
				      "region");
			return HANDOFF_E_REGION;
		}
		if (ftruncate(io->fd, (off_t)end))
			return HANDOFF_E_IO;
	} else if (S_ISBLK(st.st_mode)) {
		dev_end = lseek(io->fd, 0, SEEK_END);
		if (dev_end < 0)
			return HANDOFF_E_IO;
		if ((uint64_t)dev_end < end) {
			handoff__diag(diag, (uint64_t)dev_end, 0, "the device ends before the region",
				      "region");
			return HANDOFF_E_REGION;
		}
	} else if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode)) {
		return HANDOFF_E_INVAL;
	}

	io->size = (size_t)size;
	io->file_off = offset;
	page = sysconf(_SC_PAGESIZE);
	delta = page > 0 ? offset % (uint64_t)page : 0;
	io->map_len = (size_t)(delta + size);
	io->map = mmap(NULL, io->map_len, PROT_READ | (mode == OPEN_READ ? 0 : PROT_WRITE),
		       MAP_SHARED, io->fd, (off_t)(offset - delta));
	if (io->map != MAP_FAILED) {
		io->base = (uint8_t *)io->map + delta;
		io->write = mem_write;
		io->flush = map_flush;
		return 0;
	}
	io->map = NULL;
	io->shadow = malloc(io->size);
	if (!io->shadow)
		return HANDOFF_E_IO;	/* errno is ENOMEM */
	io->base = io->shadow;
	io->write = shadow_write;
	io->flush = fd_flush;
	err = read_all(io->fd, io->shadow, io->size, offset);
	if (err == HANDOFF_E_REGION)
		handoff__diag(diag, 0, 0, "the file ends before the region", "region");
	return err;
}

/* Undo file_open(); the errno of the first failure survives. */
static int file_close(struct region_io *io, int err)
{
	int saved = errno;

	if (io->map)
		munmap(io->map, io->map_len);
	free(io->shadow);
	if (io->fd >= 0 && close(io->fd) && !err) {
		err = HANDOFF_E_IO;
		saved = errno;
	}
	errno = saved;
	return err;
}

int handoff_region_format_file(const char *path, uint64_t offset, uint64_t size,
			       uint64_t slot_size)
{
	struct region_io io;
	int err;

	err = file_open(&io, path, offset, size, OPEN_FORMAT, NULL);
	if (err)
		goto out_close;
	err = format(&io, slot_size);
out_close:
	return file_close(&io, err);
}

int handoff_region_inspect_file(const char *path, uint64_t offset, uint64_t size,
				struct handoff_region_info *info_ret)
{
	struct region_io io;
	int err;

	if (!info_ret)
		return HANDOFF_E_INVAL;
	memset(info_ret, 0, sizeof(*info_ret));
	err = file_open(&io, path, offset, size, OPEN_READ, &info_ret->diag);
	if (err)
		goto out_close;
	err = inspect(io.base, io.size, info_ret);
out_close:
	return file_close(&io, err);
}

int handoff_region_read_file(const char *path, uint64_t offset, uint64_t size, uint8_t *out,
			     size_t out_cap, uint64_t *off_ret, size_t *len_ret, uint64_t *gen_ret,
			     unsigned *slot_ret)
{
	struct handoff_region_info info;
	struct region_io io;
	int err;

	if ((!out && out_cap) || !off_ret || !len_ret || !gen_ret || !slot_ret)
		return HANDOFF_E_INVAL;
	err = file_open(&io, path, offset, size, OPEN_READ, NULL);
	if (err)
		goto out_close;
	err = inspect(io.base, io.size, &info);
	if (err)
		goto out_close;
	*len_ret = (size_t)info.slot_length[info.newest];
	if (out_cap < *len_ret) {
		err = HANDOFF_E_NOSPACE;
		goto out_close;
	}
	memcpy(out, io.base + info.slot_offset[info.newest], *len_ret);
	*off_ret = info.slot_offset[info.newest];
	*gen_ret = info.slot_generation[info.newest];
	*slot_ret = info.newest;
out_close:
	return file_close(&io, err);
}

int handoff_region_update_file(const char *path, uint64_t offset, uint64_t size,
			       const uint8_t *record, size_t len, uint64_t *budget,
			       unsigned *slot_ret, uint64_t *generation_ret)
{
	struct region_io io;
	int err;

	if (!record || !slot_ret || !generation_ret)
		return HANDOFF_E_INVAL;
	err = file_open(&io, path, offset, size, OPEN_WRITE, NULL);
	if (err)
		goto out_close;
	io.budget = budget;
	err = update(&io, record, len, slot_ret, generation_ret);
out_close:
	return file_close(&io, err);
}
