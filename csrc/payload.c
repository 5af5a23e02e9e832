// SPDX-License-Identifier: GPL-2.0-only
/*
 * payload.c - §8 step 10: the payload as strict CBOR (R15, R16, R18, R19),
 * then the part of payload.cddl the format itself depends on (R20, R21).
 *
 * Two passes, because §8 orders "bad CBOR" before "schema violation": the
 * first pass proves the whole item well-formed and deterministic while
 * bounding every length by the bytes left (R18), so the second can walk it
 * without re-checking the encoding. Recursion depth is at most
 * HANDOFF_CBOR_MAX_DEPTH + 1 frames; nothing is allocated.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

enum { MT_UINT, MT_NINT, MT_BYTES, MT_TEXT, MT_ARRAY, MT_MAP, MT_TAG, MT_SIMPLE };

struct head {
	const uint8_t *at;	/* the initial byte */
	unsigned major;
	uint64_t arg;		/* argument; for MT_SIMPLE, the additional information */
};

struct walk {
	const uint8_t *start, *end;
	struct handoff_diag *diag;
};

static int cbor_fail(struct walk *w, const uint8_t *at, uint32_t rule, const char *what)
{
	handoff__diag(w->diag, (uint64_t)(at - w->start), rule, what, "payload");
	return HANDOFF_E_CBOR;
}

/* Read an item's head at *pp: R15 (well-formed, shortest form, definite) and R16 (allowed types). */
static int read_head(struct walk *w, const uint8_t **pp, struct head *h)
{
	static const uint64_t shortest_min[4] = { 24, 0x100, 0x10000, 0x100000000 };
	const uint8_t *p = *pp;
	unsigned ai, n;

	if (p == w->end)
		return cbor_fail(w, p, 18, "item expected, but the payload ends");
	h->at = p;
	h->major = *p >> 5;
	ai = *p++ & 0x1f;
	if (h->major == MT_TAG)
		return cbor_fail(w, h->at, 16, "tag");
	if (h->major == MT_SIMPLE) {
		h->arg = ai;
		if (ai >= 20 && ai <= 22)	/* false, true, null */
			goto done;
		if (ai == 23)
			return cbor_fail(w, h->at, 16, "undefined");
		if (ai >= 25 && ai <= 27)
			return cbor_fail(w, h->at, 16, "float");
		if (ai == 31)
			return cbor_fail(w, h->at, 15, "break outside an indefinite-length item");
		if (ai >= 28)
			return cbor_fail(w, h->at, 15, "reserved additional information");
		return cbor_fail(w, h->at, 16, "simple value other than false, true, null");
	}
	if (ai < 24) {
		h->arg = ai;
		goto done;
	}
	if (ai == 31)
		return cbor_fail(w, h->at, 15, h->major >= MT_BYTES ? "indefinite length" :
				 "indefinite-length integer");
	if (ai > 27)
		return cbor_fail(w, h->at, 15, "reserved additional information");
	n = 1u << (ai - 24);
	if ((size_t)(w->end - p) < n)
		return cbor_fail(w, h->at, 18, "argument runs past the end of the payload");
	h->arg = 0;
	for (unsigned i = 0; i < n; i++)
		h->arg = h->arg << 8 | *p++;	/* CBOR arguments are big-endian */
	if (h->arg < shortest_min[ai - 24])
		return cbor_fail(w, h->at, 15, "argument not in its shortest form");
done:
	*pp = p;
	return 0;
}

/* Bytewise lexicographic order of two encodings (RFC 8949 §4.2.1): <0, 0 (equal), >0. */
static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;

	/* Keys are short and usually differ in their first (head) byte: no call to memcmp(). */
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return a[i] < b[i] ? -1 : 1;
	return alen < blen ? -1 : alen > blen;
}

static int walk_item(struct walk *w, const uint8_t **pp, unsigned depth);

static int walk_map(struct walk *w, const uint8_t **pp, const struct head *h, unsigned depth)
{
	const uint8_t *prev = NULL, *key;
	size_t prev_len = 0;
	int err;

	/* R18: each pair takes at least two bytes. */
	if (h->arg > (uint64_t)(w->end - *pp) / 2)
		return cbor_fail(w, h->at, 18, "map count exceeds the bytes left");
	for (uint64_t i = 0; i < h->arg; i++) {
		key = *pp;
		if (key < w->end && *key >> 5 != MT_TEXT)
			return cbor_fail(w, key, 16, "map key is not a text string");
		err = walk_item(w, pp, depth + 1);
		if (err)
			return err;
		/* R15: keys strictly increasing, which also rules out duplicates */
		if (prev) {
			int c = key_cmp(prev, prev_len, key, (size_t)(*pp - key));

			if (c == 0)
				return cbor_fail(w, key, 15, "duplicate map key");
			if (c > 0)
				return cbor_fail(w, key, 15, "map keys not in bytewise order");
		}
		prev = key;
		prev_len = (size_t)(*pp - key);
		err = walk_item(w, pp, depth + 1);
		if (err)
			return err;
	}
	return 0;
}

/* Check one item at *pp, at nesting depth @depth (the top level is 1), and step past it. */
static int walk_item(struct walk *w, const uint8_t **pp, unsigned depth)
{
	struct head h;
	size_t left, bad;
	int err;

	/* R18: refuse before recursing any further. */
	if (depth > HANDOFF_CBOR_MAX_DEPTH)
		return cbor_fail(w, *pp, 18, "nesting deeper than 16");
	err = read_head(w, pp, &h);
	if (err)
		return err;
	left = (size_t)(w->end - *pp);
	switch (h.major) {
	case MT_BYTES:
	case MT_TEXT:
		if (h.arg > left)
			return cbor_fail(w, h.at, 18, "string length exceeds the bytes left");
		if (h.major == MT_TEXT && !handoff__utf8_valid(*pp, (size_t)h.arg, &bad))
			return cbor_fail(w, *pp + bad, 16, "text string is not valid UTF-8");
		*pp += h.arg;
		return 0;
	case MT_ARRAY:
		/* R18: each element takes at least one byte. */
		if (h.arg > left)
			return cbor_fail(w, h.at, 18, "array count exceeds the bytes left");
		for (uint64_t i = 0; i < h.arg; i++) {
			err = walk_item(w, pp, depth + 1);
			if (err)
				return err;
		}
		return 0;
	case MT_MAP:
		return walk_map(w, pp, &h, depth);
	default:	/* integers (any 64-bit argument, R16) and false/true/null */
		return 0;
	}
}

/*
 * Second pass: the items are known to be well-formed, so these helpers only
 * decode. They still never step past the end, as a second line of defence.
 */
static void head(const uint8_t **pp, unsigned *major, uint64_t *arg)
{
	const uint8_t *p = *pp;
	unsigned ai = *p & 0x1f;

	*major = *p++ >> 5;
	*arg = ai;
	if (ai >= 24 && ai <= 27 && *major != MT_SIMPLE) {
		*arg = 0;
		for (unsigned i = 0; i < 1u << (ai - 24); i++)
			*arg = *arg << 8 | *p++;
	}
	*pp = p;
}

/*
 * Step past one item. A loop over a count of items still to skip rather than a
 * recursion: the first pass bounded every count by the bytes left, so the
 * count stays below the payload's length.
 */
static void skip(const uint8_t **pp)
{
	const uint8_t *p = *pp;
	uint64_t left = 1, arg;
	unsigned major;

	while (left) {
		left--;
		head(&p, &major, &arg);
		if (major == MT_BYTES || major == MT_TEXT)
			p += arg;
		else if (major == MT_ARRAY)
			left += arg;
		else if (major == MT_MAP)
			left += 2 * arg;
	}
	*pp = p;
}

/*
 * Find text keys @keys[0..@n) in the map at @map in one pass over it: @vals_ret[i]
 * is the value of @keys[i], or NULL. Keys are unique (R15, checked in the first
 * pass), so the first match is the only one.
 */
static void map_find(const uint8_t *map, const char *const keys[], size_t n,
		     const uint8_t *vals_ret[])
{
	const uint8_t *p = map;
	unsigned major;
	uint64_t count, len;
	size_t found = 0;

	for (size_t k = 0; k < n; k++)
		vals_ret[k] = NULL;
	head(&p, &major, &count);
	for (uint64_t i = 0; i < count && found < n; i++) {
		head(&p, &major, &len);	/* keys are text (R16) */
		for (size_t k = 0; k < n; k++) {
			if (!vals_ret[k] && strlen(keys[k]) == len && !memcmp(p, keys[k], len)) {
				vals_ret[k] = p + len;
				found++;
				break;
			}
		}
		p += len;
		skip(&p);
	}
}

static unsigned major_of(const uint8_t *item)
{
	return *item >> 5;
}

#define NO_DEVICE UINT64_MAX

/* Where the schema check is; the path is only written out when something fails. */
struct schema {
	struct walk *w;
	uint64_t device;	/* index in "devices", or NO_DEVICE */
	const char *snapshot;	/* "early", "live", or NULL */
};

static int schema_fail(struct schema *s, const uint8_t *at, uint32_t rule, const char *what,
		       const char *leaf)
{
	char path[sizeof(((struct handoff_diag *)0)->path)];
	const char *snap = s->snapshot;
	int n;

	/* Paths are diagnostics: a cut one is still better than none. */
	if (s->device == NO_DEVICE)
		n = snprintf(path, sizeof(path), "payload%s%s", leaf ? "." : "", leaf ? leaf : "");
	else
		n = snprintf(path, sizeof(path), "payload.devices[%llu]%s%s%s%s",
			     (unsigned long long)s->device, snap ? "." : "", snap ? snap : "",
			     leaf ? "." : "", leaf ? leaf : "");
	if (n < 0)
		path[0] = '\0';
	handoff__diag(s->w->diag, (uint64_t)(at - s->w->start), rule, what, path);
	return HANDOFF_E_SCHEMA;
}

/* A required unsigned integer member @v (NULL if missing) of map @map (R20). */
static int get_uint(struct schema *s, const uint8_t *map, const uint8_t *v, const char *key,
		    uint64_t *val_ret)
{
	unsigned major;

	if (!v)
		return schema_fail(s, map, 20, "missing", key);
	if (major_of(v) != MT_UINT)
		return schema_fail(s, v, 20, "must be an unsigned integer", key);
	head(&v, &major, val_ret);
	return 0;
}

/* §4.1 runs: offset and length little-endian (R1), length >= 1, increasing, inside [0, len). */
static int check_runs(struct schema *s, const uint8_t *data, uint64_t len)
{
	const uint8_t *p = data, *end;
	unsigned major;
	uint64_t size, next = 0;	/* first offset the next run may start at */
	char what[96];

	head(&p, &major, &size);
	end = p + size;
	for (unsigned k = 0; p < end; k++) {
		uint16_t off, n;

		if (end - p < 4) {
			snprintf(what, sizeof(what), "run %u: header cut short", k);
			return schema_fail(s, p, 21, what, "data");
		}
		off = handoff_get_le16(p);
		n = handoff_get_le16(p + 2);
		if (n == 0)
			snprintf(what, sizeof(what), "run %u: length 0", k);
		else if (off < next)
			snprintf(what, sizeof(what), "run %u: offset %u overlaps or precedes run %u",
				 k, off, k - 1);
		else if ((uint64_t)off + n > len)
			snprintf(what, sizeof(what), "run %u: [%u, %u) is outside [0, len=%llu)",
				 k, off, off + n, (unsigned long long)len);
		else if (end - (p + 4) < n)
			snprintf(what, sizeof(what), "run %u: %u bytes claimed, %zu left", k, n,
				 (size_t)(end - (p + 4)));
		else
			what[0] = '\0';
		if (what[0])
			return schema_fail(s, p, 21, what, "data");
		next = (uint64_t)off + n;
		p += 4 + n;
	}
	return 0;
}

/*
 * A member @v (NULL if missing) of map @map must have CBOR major type @major:
 * 1 if present and right, 0 if absent and optional, else the failure.
 */
static int want(struct schema *s, const uint8_t *map, const uint8_t *v, const char *key,
		unsigned major, const char *what, int required, int *present_ret)
{
	*present_ret = 0;
	if (!v)
		return required ? schema_fail(s, map, 20, "missing", key) : 0;
	if (major_of(v) != major)
		return schema_fail(s, v, 20, what, key);
	*present_ret = 1;
	return 0;
}

/* An unsigned integer member of at most @max; optional unless @required (R20). */
static int check_uint(struct schema *s, const uint8_t *map, const uint8_t *v, const char *key,
		      uint64_t max, int required)
{
	unsigned major;
	uint64_t val;
	int present, err;

	err = want(s, map, v, key, MT_UINT, "must be an unsigned integer", required, &present);
	if (err || !present)
		return err;
	head(&v, &major, &val);
	if (val > max)
		return schema_fail(s, v, 20, "out of range", key);
	return 0;
}

/* An array of text strings ("classes", "path", "reset_methods"). */
static int check_texts(struct schema *s, const uint8_t *map, const uint8_t *v, const char *key,
		       int required)
{
	unsigned major;
	uint64_t n, len;
	int present, err;

	err = want(s, map, v, key, MT_ARRAY, "must be an array", required, &present);
	if (err || !present)
		return err;
	head(&v, &major, &n);
	for (uint64_t i = 0; i < n; i++) {
		if (major_of(v) != MT_TEXT)
			return schema_fail(s, v, 20, "items must be text strings", key);
		head(&v, &major, &len);
		v += len;
	}
	return 0;
}

static int is_hex(uint8_t c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/*
 * A PCI address as pci_name() prints it (drivers/pci/probe.c, "%04x:%02x:%02x.%d"):
 * "DDDD:BB:DD.F", lower-case, device <= 0x1f, function <= 7 (R20). The same rule as
 * handoff.payload.is_pci_addr: save, the reader and restore share it.
 */
static int check_addr(struct schema *s, const uint8_t *map, const uint8_t *v, const char *key,
		      int required)
{
	static const char shape[] = "hhhh:hh:Dh.F";
	unsigned major;
	uint64_t len;
	int present, err;

	err = want(s, map, v, key, MT_TEXT, "must be a text string", required, &present);
	if (err || !present)
		return err;
	head(&v, &major, &len);
	if (len != sizeof(shape) - 1)
		return schema_fail(s, v, 20, "is not DDDD:BB:DD.F", key);
	for (size_t i = 0; i < len; i++) {
		uint8_t c = v[i];
		int ok;

		switch (shape[i]) {
		case 'h': ok = is_hex(c); break;
		case 'D': ok = c == '0' || c == '1'; break;
		case 'F': ok = c >= '0' && c <= '7'; break;
		default: ok = c == (uint8_t)shape[i]; break;
		}
		if (!ok)
			return schema_fail(s, v, 20, "is not DDDD:BB:DD.F", key);
	}
	return 0;
}

/* "ext": a map of versioned sections, each a map with an unsigned "v" < 2^32. */
static int check_ext(struct schema *s, const uint8_t *map, const uint8_t *v)
{
	static const char *const keys[] = { "v" };
	const uint8_t *sv[1];
	unsigned major;
	uint64_t n, len;
	int present, err;

	err = want(s, map, v, "ext", MT_MAP, "must be a map", 0, &present);
	if (err || !present)
		return err;
	head(&v, &major, &n);
	for (uint64_t i = 0; i < n; i++) {
		head(&v, &major, &len);	/* keys are text (R16) */
		v += len;
		if (major_of(v) != MT_MAP)
			return schema_fail(s, v, 20, "sections must be maps", "ext");
		map_find(v, keys, 1, sv);
		err = check_uint(s, v, sv[0], "ext.v", 0xffffffffu, 1);
		if (err)
			return err;
		skip(&v);
	}
	return 0;
}

/* A pci device's "early" or "live" snapshot (payload.cddl snapshot, R21). */
static int check_snapshot(struct schema *s, const uint8_t *snap)
{
	static const char *const keys[] = { "size", "len", "data", "src", "partial" };
	const uint8_t *v[5];
	uint64_t size, len;
	int err, present;

	if (major_of(snap) != MT_MAP)
		return schema_fail(s, snap, 20, "must be a map", NULL);
	map_find(snap, keys, 5, v);
	err = want(s, snap, v[3], "src", MT_TEXT, "must be a text string", 1, &present);
	if (err)
		return err;
	err = get_uint(s, snap, v[0], "size", &size);
	if (err)
		return err;
	if (size != 256 && size != 4096)
		return schema_fail(s, v[0], 20, "must be 256 or 4096", "size");
	err = get_uint(s, snap, v[1], "len", &len);
	if (err)
		return err;
	if (len > size)
		return schema_fail(s, v[1], 20, "exceeds size", "len");
	err = want(s, snap, v[4], "partial", MT_TEXT, "must be a text string", 0, &present);
	if (err)
		return err;
	if (!v[2])
		return schema_fail(s, snap, 21, "missing", "data");
	if (major_of(v[2]) != MT_BYTES)
		return schema_fail(s, v[2], 21, "must be a byte string", "data");
	return check_runs(s, v[2], len);
}

static int check_ids(struct schema *s, const uint8_t *dev, const uint8_t *ids)
{
	static const char *const keys[] = { "vendor", "device", "subvendor", "subdevice", "class",
					    "revision" };
	static const char *const paths[] = { "ids.vendor", "ids.device", "ids.subvendor",
					     "ids.subdevice", "ids.class", "ids.revision" };
	static const uint64_t max[] = { 0xffff, 0xffff, 0xffff, 0xffff, 0xffffff, 0xff };
	const uint8_t *v[6];
	int err, present;

	err = want(s, dev, ids, "ids", MT_MAP, "must be a map", 1, &present);
	if (err)
		return err;
	map_find(ids, keys, 6, v);
	for (size_t i = 0; i < 6; i++) {
		err = check_uint(s, ids, v[i], paths[i], max[i], 1);
		if (err)
			return err;
	}
	return 0;
}

/* "bars": [* [index <= 6, start, size, flags]], all unsigned. */
static int check_bars(struct schema *s, const uint8_t *dev, const uint8_t *v)
{
	unsigned major;
	uint64_t n, k, arg;
	int present, err;

	err = want(s, dev, v, "bars", MT_ARRAY, "must be an array", 0, &present);
	if (err || !present)
		return err;
	head(&v, &major, &n);
	for (uint64_t i = 0; i < n; i++) {
		const uint8_t *bar = v;

		if (major_of(v) != MT_ARRAY)
			return schema_fail(s, bar, 20, "expected [index<=6, start, size, flags]", "bars");
		head(&v, &major, &k);
		if (k != 4)
			return schema_fail(s, bar, 20, "expected [index<=6, start, size, flags]", "bars");
		for (uint64_t j = 0; j < 4; j++) {
			if (major_of(v) != MT_UINT)
				return schema_fail(s, bar, 20, "expected [index<=6, start, size, flags]",
						   "bars");
			head(&v, &major, &arg);
			if (j == 0 && arg > 6)
				return schema_fail(s, bar, 20, "expected [index<=6, start, size, flags]",
						   "bars");
		}
	}
	return 0;
}

static int check_sriov(struct schema *s, const uint8_t *dev, const uint8_t *v)
{
	static const char *const keys[] = { "total", "num" };
	const uint8_t *sv[2];
	int present, err;

	err = want(s, dev, v, "sriov", MT_MAP, "must be a map", 0, &present);
	if (err || !present)
		return err;
	map_find(v, keys, 2, sv);
	err = check_uint(s, v, sv[0], "sriov.total", 0xffff, 1);
	if (err)
		return err;
	return check_uint(s, v, sv[1], "sriov.num", 0xffff, 1);
}

/*
 * One device (payload.cddl pci-device / other-device): every rule of schema 1,
 * the same predicate as handoff.payload.validate_device, so that C and Python
 * agree on which records are valid, and so on which slot R25 picks.
 */
static int check_device(struct schema *s, const uint8_t *dev)
{
	enum { BUS, ADDR, IDS, DRIVER, CLASSES, PARENT, PATH, BARS, RESET, SRIOV, DSN, EARLY,
	       LIVE, POLICY, EXT, NKEYS };
	static const char *const keys[NKEYS] = {
		"bus", "addr", "ids", "driver", "classes", "parent", "path", "bars",
		"reset_methods", "sriov", "dsn", "early", "live", "policy", "ext",
	};
	const uint8_t *v[NKEYS], *bus;
	unsigned major;
	uint64_t len;
	int err, present;

	if (major_of(dev) != MT_MAP)
		return schema_fail(s, dev, 20, "must be a map", NULL);
	map_find(dev, keys, NKEYS, v);
	bus = v[BUS];
	err = want(s, dev, bus, "bus", MT_TEXT, "must be a text string", 1, &present);
	if (err)
		return err;
	err = want(s, dev, v[ADDR], "addr", MT_TEXT, "must be a text string", 1, &present);
	if (err)
		return err;
	head(&bus, &major, &len);
	if (len != 3 || memcmp(bus, "pci", 3))
		return 0;	/* other buses stay opaque (payload.cddl other-device) */
	if ((err = check_addr(s, dev, v[ADDR], "addr", 1)) ||
	    (err = check_ids(s, dev, v[IDS])) ||
	    (err = want(s, dev, v[DRIVER], "driver", MT_TEXT, "must be a text string", 0,
			&present)) ||
	    (err = check_texts(s, dev, v[CLASSES], "classes", 0)) ||
	    (err = check_texts(s, dev, v[PATH], "path", 1)) ||
	    (err = check_texts(s, dev, v[RESET], "reset_methods", 0)) ||
	    (err = check_addr(s, dev, v[PARENT], "parent", 0)) ||
	    (err = check_bars(s, dev, v[BARS])) ||
	    (err = check_sriov(s, dev, v[SRIOV])) ||
	    (err = check_uint(s, dev, v[DSN], "dsn", UINT64_MAX, 0)))
		return err;
	for (size_t i = EARLY; i <= LIVE; i++) {	/* "early", then "live" */
		if (!v[i]) {
			if (i == LIVE)
				return schema_fail(s, dev, 20, "missing (required for bus \"pci\")",
						   "live");
			continue;
		}
		s->snapshot = keys[i];
		err = check_snapshot(s, v[i]);
		s->snapshot = NULL;
		if (err)
			return err;
	}
	err = want(s, dev, v[POLICY], "policy", MT_TEXT, "must be a text string", 1, &present);
	if (err)
		return err;
	return check_ext(s, dev, v[EXT]);
}

/* "capture": blacklist module names ([A-Za-z0-9_-]+, as modprobe takes them), cmdline text. */
static int check_capture(struct schema *s, const uint8_t *top, const uint8_t *v)
{
	static const char *const keys[] = { "blacklist", "cmdline" };
	const uint8_t *cv[2], *p;
	unsigned major;
	uint64_t n, len;
	int present, err;

	err = want(s, top, v, "capture", MT_MAP, "must be a map", 0, &present);
	if (err || !present)
		return err;
	map_find(v, keys, 2, cv);
	err = want(s, v, cv[0], "capture.blacklist", MT_ARRAY, "must be an array", 0, &present);
	if (err)
		return err;
	if (present) {
		p = cv[0];
		head(&p, &major, &n);
		for (uint64_t i = 0; i < n; i++) {
			const uint8_t *item = p;

			if (major_of(p) != MT_TEXT)
				return schema_fail(s, item, 20, "not a module name", "capture.blacklist");
			head(&p, &major, &len);
			if (len == 0)
				return schema_fail(s, item, 20, "not a module name", "capture.blacklist");
			for (uint64_t j = 0; j < len; j++) {
				uint8_t c = p[j];

				if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
				      (c >= 'A' && c <= 'Z') || c == '_' || c == '-'))
					return schema_fail(s, item, 20, "not a module name",
							   "capture.blacklist");
			}
			p += len;
		}
	}
	return want(s, v, cv[1], "capture.cmdline", MT_TEXT, "must be a text string", 0,
		    &present);
}

static int check_schema(struct schema *s, const uint8_t *top)
{
	static const char *const keys[] = { "v", "devices", "capture", "ext" };
	const uint8_t *v[4], *p;
	unsigned major;
	uint64_t n;
	int err;

	if (major_of(top) != MT_MAP)
		return schema_fail(s, top, 20, "must be a map", NULL);
	map_find(top, keys, 4, v);
	err = get_uint(s, top, v[0], "v", &n);
	if (err)
		return err;
	if (n != 1)
		return schema_fail(s, v[0], 20, "must be 1", "v");
	if (!v[1])
		return schema_fail(s, top, 20, "missing", "devices");
	if (major_of(v[1]) != MT_ARRAY)
		return schema_fail(s, v[1], 20, "must be an array", "devices");
	p = v[1];
	head(&p, &major, &n);
	for (uint64_t i = 0; i < n; i++) {
		s->device = i;
		err = check_device(s, p);
		if (err)
			return err;
		skip(&p);
	}
	s->device = NO_DEVICE;
	err = check_capture(s, top, v[2]);
	if (err)
		return err;
	return check_ext(s, top, v[3]);
}

/* The first pass on its own: one strict, deterministic item and nothing after it. */
static int check_cbor(struct walk *w, size_t len)
{
	const uint8_t *p = w->start;
	int err;

	if (len == 0)
		return cbor_fail(w, p, 19, "empty payload: no item");
	w->end = w->start + len;
	err = walk_item(w, &p, 1);
	if (err)
		return err;
	if (p != w->end)
		return cbor_fail(w, p, 19, "bytes follow the item");
	return 0;
}

int handoff_cbor_check(const uint8_t *buf, size_t len, struct handoff_diag *diag_ret)
{
	struct walk w = { buf, buf, diag_ret };

	if (!buf && len)
		return HANDOFF_E_INVAL;
	if (diag_ret)
		memset(diag_ret, 0, sizeof(*diag_ret));
	return check_cbor(&w, len);
}

int handoff_payload_check(const uint8_t *payload, size_t len, struct handoff_diag *diag_ret)
{
	struct walk w = { payload, payload, diag_ret };
	struct schema s = { &w, NO_DEVICE, NULL };
	int err;

	if (!payload && len)
		return HANDOFF_E_INVAL;
	if (diag_ret)
		memset(diag_ret, 0, sizeof(*diag_ret));
	if (len > HANDOFF_PAYLOAD_SIZE_MAX)
		return HANDOFF_E_PAYLOAD_SIZE;	/* R9 */
	err = check_cbor(&w, len);
	if (err)
		return err;
	return check_schema(&s, payload);
}
