/*
 * handoff_cdef.h - the declarations of handoff.h that Python uses, for
 * cffi's cdef() (which takes no preprocessor directives). Documentation:
 * handoff.h. In API mode cffi takes enum values and struct offsets from
 * handoff.h and fails the build if a field's type differs; the values written
 * here are documentation and must match (tests/test_native.py checks the
 * error codes).
 */

enum handoff_err {
	HANDOFF_OK = 0,
	HANDOFF_E_INVAL = -1,
	HANDOFF_E_TRUNCATED = -2,
	HANDOFF_E_MAGIC = -3,
	HANDOFF_E_HEADER_CRC = -4,
	HANDOFF_E_VERSION = -5,
	HANDOFF_E_HEADER_SIZE = -6,
	HANDOFF_E_PAYLOAD_SIZE = -7,
	HANDOFF_E_DIGEST = -8,
	HANDOFF_E_ALG = -9,
	HANDOFF_E_TEXT = -10,
	HANDOFF_E_NOSPACE = -11,
	HANDOFF_E_IO = -12,
	HANDOFF_E_NO_RECORD = -13,
	HANDOFF_E_REGION = -14,
	HANDOFF_E_INTERRUPTED = -15,
	HANDOFF_E_TRAILING = -16,
	HANDOFF_E_CBOR = -17,
	HANDOFF_E_SCHEMA = -18,
};

enum handoff_crc32c_impl {
	HANDOFF_CRC32C_AUTO = 0,
	HANDOFF_CRC32C_TABLE = 1,
	HANDOFF_CRC32C_SSE42 = 2,
};

enum handoff_sha256_impl {
	HANDOFF_SHA256_AUTO = 0,
	HANDOFF_SHA256_PORTABLE = 1,
	HANDOFF_SHA256_SHANI = 2,
};

enum handoff_check_flags {
	HANDOFF_CHECK_PAYLOAD = 1,
	HANDOFF_CHECK_EXACT = 2,
};

/* Values come from handoff.h at build time. */
static const int HANDOFF_VERSION_MAJOR;
static const int HANDOFF_VERSION_MINOR;
static const int HANDOFF_FIXED_HEADER_SIZE;
static const int HANDOFF_HEADER_SIZE_V1_0;
static const int HANDOFF_HEADER_SIZE_MIN;
static const int HANDOFF_HEADER_SIZE_MAX;
static const unsigned int HANDOFF_PAYLOAD_SIZE_MAX;
static const unsigned int HANDOFF_RECORD_SIZE_MAX;
static const int HANDOFF_TEXT_SIZE;
static const int HANDOFF_CBOR_MAX_DEPTH;
static const unsigned int NT_HANDOFF_RECORD;
static const unsigned int NT_HANDOFF_REPORT;
static const int HANDOFF_REGION_HEADER_SIZE;
static const int HANDOFF_SPARSE_CONFIG_MAX;
static const int HANDOFF_SPARSE_MIN_GAP;

struct handoff_diag {
	uint64_t offset;
	uint32_t rule;
	char what[96];
	char path[128];
};

struct handoff_sha256 {
	uint32_t h[8];
	uint64_t nbytes;
	uint8_t block[64];
};

struct handoff_producer {
	uint64_t generation;
	uint64_t created_ns;
	uint8_t boot_id[16];
	uint8_t machine_id[16];
	uint8_t kernel_release[64];
	uint8_t hostname[64];
};

struct handoff_record_info {
	uint16_t version_major;
	uint16_t version_minor;
	uint32_t header_size;
	uint64_t payload_size;
	uint64_t record_size;
	uint64_t generation;
	uint64_t created_ns;
	uint16_t header_check_alg;
	uint16_t payload_digest_alg;
	uint32_t flags;
	uint32_t header_crc;
	uint32_t computed_crc;
	uint8_t payload_digest[32];
	uint8_t computed_digest[32];
	uint8_t boot_id[16];
	uint8_t machine_id[16];
	char kernel_release[65];
	char hostname[65];
	struct handoff_diag diag;
};

struct handoff_region_info {
	uint16_t version_major;
	uint16_t version_minor;
	uint64_t region_size;
	uint64_t slot_size;
	uint64_t slot_offset[2];
	int slot_status[2];
	uint64_t slot_generation[2];
	uint64_t slot_length[2];
	unsigned newest;
	struct handoff_diag diag;
};

const char *handoff_strerror(int err);

int handoff_crc32c(uint32_t crc, const void *buf, size_t len, int impl, uint32_t *crc_ret);
int handoff_crc32c_available(int impl);

int handoff_sha256_init(struct handoff_sha256 *ctx);
int handoff_sha256_update(struct handoff_sha256 *ctx, const void *data, size_t len);
int handoff_sha256_final(struct handoff_sha256 *ctx, uint8_t digest_ret[32]);
int handoff_sha256(const void *data, size_t len, uint8_t digest_ret[32]);
int handoff_sha256_using(const void *data, size_t len, int impl, uint8_t digest_ret[32]);
int handoff_sha256_available(int impl);

int handoff_record_encode(const uint8_t *payload, size_t payload_len,
			  const struct handoff_producer *producer, uint8_t *out,
			  size_t out_cap, size_t *len_ret);
int handoff_record_verify(const uint8_t *buf, size_t len, struct handoff_record_info *info_ret);
int handoff_record_check(const uint8_t *buf, size_t len, unsigned flags,
			 struct handoff_record_info *info_ret);
int handoff_record_set_generation(uint8_t *buf, size_t len, uint64_t generation);
int handoff_payload_check(const uint8_t *payload, size_t len, struct handoff_diag *diag_ret);
int handoff_cbor_check(const uint8_t *buf, size_t len, struct handoff_diag *diag_ret);
int handoff_sparse_encode(const uint8_t *config, size_t len, uint8_t *out, size_t out_cap,
			  size_t *len_ret);

int handoff_note_wrap(const uint8_t *desc, size_t desc_len, uint32_t n_type, uint8_t *out,
		      size_t out_cap, size_t *len_ret);

int handoff_region_format(uint8_t *base, size_t size, uint64_t slot_size);
int handoff_region_inspect(const uint8_t *base, size_t size,
			   struct handoff_region_info *info_ret);
int handoff_region_read_mem(const uint8_t *base, size_t size, uint64_t *off_ret,
			    uint64_t *len_ret, uint64_t *gen_ret, unsigned *slot_ret);
int handoff_region_update_mem(uint8_t *base, size_t size, const uint8_t *record, size_t len,
			      uint64_t *budget, int (*flush)(void *ctx), void *flush_ctx,
			      unsigned *slot_ret, uint64_t *generation_ret);
int handoff_region_format_file(const char *path, uint64_t offset, uint64_t size,
			       uint64_t slot_size);
int handoff_region_inspect_file(const char *path, uint64_t offset, uint64_t size,
				struct handoff_region_info *info_ret);
int handoff_region_read_file(const char *path, uint64_t offset, uint64_t size, uint8_t *out,
			     size_t out_cap, uint64_t *off_ret, size_t *len_ret, uint64_t *gen_ret,
			     unsigned *slot_ret);
int handoff_region_update_file(const char *path, uint64_t offset, uint64_t size,
			       const uint8_t *record, size_t len, uint64_t *budget,
			       unsigned *slot_ret, uint64_t *generation_ret);
