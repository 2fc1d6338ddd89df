/*
 * nsm-pcr0: ask the Nitro Secure Module for an attestation document through the real
 * driver interface (open /dev/nsm, ioctl NSM_IOCTL_RAW) and print the document's PCR0.
 *
 *   nsm-pcr0              PCR0 from a fresh attestation document
 *   nsm-pcr0 --describe   PCR0 as DescribePCR{index: 0} reports it
 *
 * It prints 96 hex digits and a newline, and exits 0; on any failure it names the
 * failure on stderr and exits 1. Nothing here knows about the emulator: inside a Nitro
 * Enclave it talks to the hardware module, in the emulator to the emulated one (through
 * the emulator's LD_PRELOAD library). It does not verify the document's signature;
 * that is the relying party's job (KMS, or the emulator's KMS front).
 *
 * Build: cc -O2 -Wall -Werror -o nsm-pcr0 main.c
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* include/uapi/linux/nsm.h */
#define NSM_MAGIC 0x0A
#define NSM_REQUEST_MAX_SIZE 0x1000
#define NSM_RESPONSE_MAX_SIZE 0x3000
struct nsm_iovec {
    uint64_t addr;
    uint64_t len;
};
struct nsm_raw {
    struct nsm_iovec request;
    struct nsm_iovec response;
};
#define NSM_IOCTL_RAW _IOWR(NSM_MAGIC, 0x0, struct nsm_raw)

#define PCR_SIZE 48
#define MAX_DEPTH 16

/* -- just enough CBOR (RFC 8949) to walk the NSM's answers -------------------------------- */

struct reader {
    const uint8_t *data;
    size_t size;
    size_t at;
};

struct head {
    int major;
    uint64_t value; /* the argument: a length, a count or an integer */
    int indefinite;
};

static int read_head(struct reader *r, struct head *h) {
    uint8_t first, info;
    int bytes, i;
    if (r->at >= r->size) return -1;
    first = r->data[r->at++];
    h->major = first >> 5;
    info = first & 0x1f;
    h->indefinite = 0;
    if (info < 24) {
        h->value = info;
        return 0;
    }
    if (info == 31) {
        h->indefinite = 1;
        h->value = 0;
        return 0;
    }
    if (info > 27) return -1;
    bytes = 1 << (info - 24);
    if (r->size - r->at < (size_t)bytes) return -1;
    h->value = 0;
    for (i = 0; i < bytes; i++) h->value = (h->value << 8) | r->data[r->at++];
    return 0;
}

static int skip(struct reader *r, int depth);

/* Whether the next byte ends an indefinite-length item (the "break" 0xff); consumes it if so. */
static int at_break(struct reader *r) {
    if (r->at < r->size && r->data[r->at] == 0xff) {
        r->at++;
        return 1;
    }
    return 0;
}

/* Walks a map or array entry by entry: definite counts, or up to the break (real
 * documents' payloads are indefinite-length maps). Returns 1 while entries remain. */
static int more(struct reader *r, const struct head *h, uint64_t *seen) {
    if (h->indefinite) return !at_break(r) && r->at < r->size;
    return (*seen)++ < h->value;
}

static int skip_body(struct reader *r, const struct head *h, int depth) {
    uint64_t i;
    if (depth > MAX_DEPTH) return -1;
    switch (h->major) {
    case 0: case 1: case 7:
        return 0;
    case 2: case 3:
        if (h->indefinite || h->value > r->size - r->at) return -1;
        r->at += (size_t)h->value;
        return 0;
    case 4: case 5:
        i = 0;
        while (more(r, h, &i)) {
            if (skip(r, depth + 1) != 0) return -1;
            if (h->major == 5 && skip(r, depth + 1) != 0) return -1;
        }
        return 0;
    case 6:
        return skip(r, depth + 1);
    }
    return -1;
}

static int skip(struct reader *r, int depth) {
    struct head h;
    if (read_head(r, &h) != 0) return -1;
    return skip_body(r, &h, depth);
}

/* Read a text string head and compare it with key; the reader moves past it either way. */
static int text_equals(struct reader *r, const struct head *h, const char *key) {
    size_t n = strlen(key);
    int equal;
    if (h->major != 3 || h->indefinite || h->value > r->size - r->at) return -1;
    equal = h->value == n && memcmp(r->data + r->at, key, n) == 0;
    r->at += (size_t)h->value;
    return equal;
}

/* In the map at the reader, find the value under text key; leave the reader on it. */
static int find_key(struct reader *r, const char *key) {
    struct head map, k;
    uint64_t i = 0;
    if (read_head(r, &map) != 0 || map.major != 5) return -1;
    while (more(r, &map, &i)) {
        if (read_head(r, &k) != 0) return -1;
        if (k.major == 3) {
            int equal = text_equals(r, &k, key);
            if (equal < 0) return -1;
            if (equal) return 0;
        } else if (skip_body(r, &k, 0) != 0) {
            return -1;
        }
        if (skip(r, 0) != 0) return -1;
    }
    return -1;
}

/* In the map at the reader, find the value under unsigned integer key. */
static int find_index(struct reader *r, uint64_t key) {
    struct head map, k;
    uint64_t i = 0;
    if (read_head(r, &map) != 0 || map.major != 5) return -1;
    while (more(r, &map, &i)) {
        if (read_head(r, &k) != 0) return -1;
        if (k.major == 0 && k.value == key) return 0;
        if (skip_body(r, &k, 0) != 0 || skip(r, 0) != 0) return -1;
    }
    return -1;
}

/* The byte string at the reader. */
static int byte_string(struct reader *r, const uint8_t **data, size_t *size) {
    struct head h;
    if (read_head(r, &h) != 0 || h.major != 2 || h.indefinite || h.value > r->size - r->at) return -1;
    *data = r->data + r->at;
    *size = (size_t)h.value;
    r->at += (size_t)h.value;
    return 0;
}

/* -- the NSM ------------------------------------------------------------------------------- */

static int nsm_request(int fd, const uint8_t *request, size_t request_size, uint8_t *response,
                       size_t *response_size) {
    struct nsm_raw raw;
    memset(&raw, 0, sizeof(raw));
    raw.request.addr = (uint64_t)(uintptr_t)request;
    raw.request.len = request_size;
    raw.response.addr = (uint64_t)(uintptr_t)response;
    raw.response.len = *response_size;
    if (ioctl(fd, NSM_IOCTL_RAW, &raw) != 0) {
        fprintf(stderr, "nsm-pcr0: ioctl(NSM_IOCTL_RAW): %s\n", strerror(errno));
        return -1;
    }
    *response_size = (size_t)raw.response.len;
    return 0;
}

static int check_error(const uint8_t *response, size_t size) {
    struct reader r = {response, size, 0};
    const uint8_t *text;
    struct head h;
    if (find_key(&r, "Error") != 0) return 0;
    if (read_head(&r, &h) == 0 && h.major == 3 && h.value <= r.size - r.at) {
        text = r.data + r.at;
        fprintf(stderr, "nsm-pcr0: the NSM refused the request: %.*s\n", (int)h.value, (const char *)text);
    } else {
        fprintf(stderr, "nsm-pcr0: the NSM refused the request\n");
    }
    return -1;
}

/* {"Attestation": {"document": COSE_Sign1}}; the payload's "pcrs" map holds PCR0. */
static int pcr0_from_attestation(const uint8_t *response, size_t size, const uint8_t **pcr, size_t *pcr_size) {
    struct reader r = {response, size, 0};
    struct reader cose, payload;
    struct head h;
    const uint8_t *document, *body;
    size_t document_size, body_size;
    if (find_key(&r, "Attestation") != 0 || find_key(&r, "document") != 0 ||
        byte_string(&r, &document, &document_size) != 0)
        return -1;
    cose = (struct reader){document, document_size, 0};
    if (read_head(&cose, &h) != 0) return -1;
    if (h.major == 6) { /* an optional COSE_Sign1 tag (18) */
        if (read_head(&cose, &h) != 0) return -1;
    }
    /* [protected, unprotected, payload, signature] */
    if (h.major != 4 || h.indefinite || h.value != 4) return -1;
    if (skip(&cose, 0) != 0 || skip(&cose, 0) != 0) return -1;
    if (byte_string(&cose, &body, &body_size) != 0) return -1;
    payload = (struct reader){body, body_size, 0};
    if (find_key(&payload, "pcrs") != 0 || find_index(&payload, 0) != 0) return -1;
    return byte_string(&payload, pcr, pcr_size);
}

/* {"DescribePCR": {"lock": bool, "data": bytes}} */
static int pcr0_from_describe(const uint8_t *response, size_t size, const uint8_t **pcr, size_t *pcr_size) {
    struct reader r = {response, size, 0};
    if (find_key(&r, "DescribePCR") != 0 || find_key(&r, "data") != 0) return -1;
    return byte_string(&r, pcr, pcr_size);
}

int main(int argc, char **argv) {
    /* {"Attestation": {"user_data": null, "nonce": null, "public_key": null}} */
    static const uint8_t attestation[] = {
        0xa1, 0x6b, 'A', 't', 't', 'e', 's', 't', 'a', 't', 'i', 'o', 'n', 0xa3,
        0x69, 'u', 's', 'e', 'r', '_', 'd', 'a', 't', 'a', 0xf6,
        0x65, 'n', 'o', 'n', 'c', 'e', 0xf6,
        0x6a, 'p', 'u', 'b', 'l', 'i', 'c', '_', 'k', 'e', 'y', 0xf6,
    };
    /* {"DescribePCR": {"index": 0}} */
    static const uint8_t describe[] = {
        0xa1, 0x6b, 'D', 'e', 's', 'c', 'r', 'i', 'b', 'e', 'P', 'C', 'R', 0xa1,
        0x65, 'i', 'n', 'd', 'e', 'x', 0x00,
    };
    static uint8_t response[NSM_RESPONSE_MAX_SIZE];
    size_t response_size = sizeof(response), pcr_size = 0, i;
    const uint8_t *pcr = NULL;
    int use_describe = argc > 1 && strcmp(argv[1], "--describe") == 0;
    int fd, rc;

    if (argc > 2 || (argc == 2 && !use_describe)) {
        fprintf(stderr, "usage: nsm-pcr0 [--describe]\n");
        return 2;
    }
    fd = open("/dev/nsm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "nsm-pcr0: open /dev/nsm: %s\n", strerror(errno));
        return 1;
    }
    rc = use_describe ? nsm_request(fd, describe, sizeof(describe), response, &response_size)
                      : nsm_request(fd, attestation, sizeof(attestation), response, &response_size);
    close(fd);
    if (rc != 0 || check_error(response, response_size) != 0) return 1;
    rc = use_describe ? pcr0_from_describe(response, response_size, &pcr, &pcr_size)
                      : pcr0_from_attestation(response, response_size, &pcr, &pcr_size);
    if (rc != 0 || pcr_size != PCR_SIZE) {
        fprintf(stderr, "nsm-pcr0: the NSM response has no 48-byte PCR0\n");
        return 1;
    }
    for (i = 0; i < pcr_size; i++) printf("%02x", pcr[i]);
    printf("\n");
    return 0;
}
