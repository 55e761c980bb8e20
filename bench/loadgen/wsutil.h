/*
 * Small pieces both the load generator and the C reference peer need:
 * SHA-1 and base64 (for Sec-WebSocket-Accept), a monotonic clock, and a
 * sans-I/O WebSocket frame reader that copes with frames split across reads,
 * many frames in one read, 7/16/64-bit lengths and fragmented messages.
 *
 * Header-only so each program stays one translation unit (gcc -O2 x.c).
 */
#ifndef WSUTIL_H
#define WSUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static inline uint64_t nowNs(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- SHA-1 (FIPS 180-4), enough for a 60-byte handshake key ---------- */

static inline uint32_t rol32(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1(const uint8_t *data, size_t len, uint8_t out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t total = ((len + 8) / 64 + 1) * 64;
    uint8_t *m = calloc(1, total);
    memcpy(m, data, len);
    m[len] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) m[total - 1 - i] = (uint8_t)(bits >> (8 * i));
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)m[off + 4 * i] << 24 | (uint32_t)m[off + 4 * i + 1] << 16 |
                   (uint32_t)m[off + 4 * i + 2] << 8 | m[off + 4 * i + 3];
        for (int i = 16; i < 80; i++) w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
            else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
            else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
            else { f = b ^ c ^ d; k = 0xCA62C1D6; }
            uint32_t t = rol32(a, 5) + f + e + k + w[i];
            e = d; d = c; c = rol32(b, 30); b = a; a = t;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
    }
    free(m);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
}

/* out must hold 4*ceil(n/3)+1 bytes */
static void base64(const uint8_t *in, size_t n, char *out) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n) v |= in[i + 2];
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tbl[v & 63] : '=';
    }
    out[o] = 0;
}

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key; out must hold 29 bytes. */
static void wsAccept(const char *key, char *out) {
    char buf[128];
    size_t n = strlen(key);
    if (n > 64) n = 64;
    memcpy(buf, key, n);
    memcpy(buf + n, WS_GUID, sizeof(WS_GUID) - 1);
    uint8_t digest[20];
    sha1((const uint8_t *)buf, n + sizeof(WS_GUID) - 1, digest);
    base64(digest, 20, out);
}

/* ---- frame reader --------------------------------------------------------
 *
 * wsFeed() consumes every complete frame in buf and returns how many bytes it
 * consumed (the caller keeps the rest for the next read), or -1 with r->error
 * set on a protocol violation.  Complete messages (a single frame, or the
 * reassembled fragments of one) and control frames are handed to r->onMessage.
 * Control frames may arrive between the fragments of a message (RFC 6455 5.4).
 * expectMasked: 1 on a server (client frames must be masked), 0 on a client
 * (server frames must not be); masked payloads are unmasked in place.
 */
typedef void (*WsMessageFn)(void *ctx, int opcode, const uint8_t *payload, size_t len);

typedef struct {
    WsMessageFn onMessage;
    void *ctx;
    int expectMasked;
    uint64_t maxMessage;
    int fragOpcode; /* 0: not inside a fragmented message */
    uint8_t *frag;
    size_t fragLen, fragCap;
    const char *error;
} WsReader;

static int wsAppend(WsReader *r, const uint8_t *p, size_t n) {
    if (r->fragLen + n > r->maxMessage) { r->error = "message too large"; return -1; }
    if (r->fragLen + n > r->fragCap) {
        size_t cap = r->fragCap ? r->fragCap : 256;
        while (cap < r->fragLen + n) cap *= 2;
        uint8_t *q = realloc(r->frag, cap);
        if (!q) { r->error = "out of memory"; return -1; }
        r->frag = q;
        r->fragCap = cap;
    }
    memcpy(r->frag + r->fragLen, p, n);
    r->fragLen += n;
    return 0;
}

static long wsFeed(WsReader *r, uint8_t *buf, size_t len) {
    size_t off = 0;
    while (len - off >= 2) {
        uint8_t b0 = buf[off], b1 = buf[off + 1];
        int fin = b0 & 0x80, opcode = b0 & 0x0f, masked = (b1 & 0x80) != 0;
        uint64_t plen = b1 & 0x7f;
        size_t hdr = 2;
        if (b0 & 0x70) { r->error = "reserved bits set"; return -1; }
        if (masked != r->expectMasked) { r->error = masked ? "masked frame from server" : "unmasked frame from client"; return -1; }
        if (plen == 126) {
            if (len - off < 4) break;
            plen = (uint64_t)buf[off + 2] << 8 | buf[off + 3];
            hdr = 4;
        } else if (plen == 127) {
            if (len - off < 10) break;
            plen = 0;
            for (int i = 0; i < 8; i++) plen = plen << 8 | buf[off + 2 + i];
            hdr = 10;
            if (plen >> 63) { r->error = "64-bit length with the top bit set"; return -1; }
        }
        if (opcode >= 8 && (!fin || plen > 125)) { r->error = "bad control frame"; return -1; }
        if (plen > r->maxMessage) { r->error = "frame too large"; return -1; }
        size_t need = hdr + (masked ? 4 : 0) + (size_t)plen;
        if (len - off < need) break;
        uint8_t *p = buf + off + hdr;
        if (masked) {
            uint8_t *key = p;
            p += 4;
            for (uint64_t i = 0; i < plen; i++) p[i] ^= key[i & 3];
        }
        if (opcode >= 8) {
            if (opcode > 10) { r->error = "reserved control opcode"; return -1; }
            r->onMessage(r->ctx, opcode, p, (size_t)plen);
        } else if (opcode == 0) {
            if (!r->fragOpcode) { r->error = "continuation without a message"; return -1; }
            if (wsAppend(r, p, (size_t)plen) < 0) return -1;
            if (fin) {
                int op = r->fragOpcode;
                r->fragOpcode = 0;
                r->onMessage(r->ctx, op, r->frag, r->fragLen);
                r->fragLen = 0;
            }
        } else if (opcode == 1 || opcode == 2) {
            if (r->fragOpcode) { r->error = "new message inside a fragmented one"; return -1; }
            if (fin) {
                r->onMessage(r->ctx, opcode, p, (size_t)plen);
            } else {
                r->fragOpcode = opcode;
                r->fragLen = 0;
                if (wsAppend(r, p, (size_t)plen) < 0) return -1;
            }
        } else {
            r->error = "reserved data opcode";
            return -1;
        }
        off += need;
    }
    return (long)off;
}

/* Write a frame header for a payload of n bytes; returns its length (<= 14). */
static size_t wsHeader(uint8_t *out, int opcode, uint64_t n, const uint8_t *maskKey) {
    size_t h = 0;
    out[h++] = (uint8_t)(0x80 | opcode);
    uint8_t m = maskKey ? 0x80 : 0;
    if (n < 126) {
        out[h++] = (uint8_t)(m | n);
    } else if (n < 65536) {
        out[h++] = m | 126;
        out[h++] = (uint8_t)(n >> 8);
        out[h++] = (uint8_t)n;
    } else {
        out[h++] = m | 127;
        for (int i = 7; i >= 0; i--) out[h++] = (uint8_t)(n >> (8 * i));
    }
    if (maskKey) { memcpy(out + h, maskKey, 4); h += 4; }
    return h;
}

#endif
