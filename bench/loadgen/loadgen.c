/*
 * loadgen: a WebSocket load generator for push servers that follow the bench
 * contract (bench/README.rst):
 *
 *   - a client connects to ws://HOST:PORT/ and sends its uid ("u<i>") as its
 *     first text message;
 *   - a backend writes one JSON object per line to the push port and reads one
 *     answer line per request ("ok" / "fail"): {"uid":"u1",...} goes to that
 *     uid, {"broadcast":true,...} to everyone; the message clients receive is
 *     the line itself;
 *   - GET /api/stats on the stats port (Authorization: Bearer KEY) answers JSON
 *     with "connections": the number of authenticated connections.
 *
 * One thread, epoll, non-blocking sockets.  Every pushed line carries a
 * sequence number and a CLOCK_MONOTONIC timestamp, so each received message is
 * checked byte for byte, per-connection order is checked, and push->receive
 * latency is measured in this process's own clock.
 *
 * Results are one JSON object on stdout; progress and problems go to stderr.
 * `loadgen --selftest` checks the frame reader, the handshake helpers and the
 * line codec without a network.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "wsutil.h"

#define MAX_EVENTS 4096
#define SCRATCH (256 * 1024)
#define LINE_ID 0xFFFFFFFFu
#define HIST_FINE 100000    /* 1 us buckets below 100 ms */
#define HIST_COARSE 100000  /* then 1 ms buckets up to 100 s */
#define MAX_LINE (2 * 1024 * 1024)
#define MAX_PORTS 16
#define MAX_PIDS 16

enum { ST_IDLE, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSED };

/* ---- options --------------------------------------------------------- */

static struct {
    const char *host;
    int port, pushPort, statsPort;
    int ports[MAX_PORTS], nports;  /* --port P[,P...]: connection i goes to ports[i % nports] */
    const char *key;
    const char *path;
    int connections, concurrency;
    char scenarios[256];
    double warmup, duration, hold;
    double rate;
    int size, pipeline, window, burst, readSize, maxBehind, bpipeline;
    double binterval;
    long maxInflight;
    int pid;                  /* the first of pids: the process whose RSS the idle scenario reads */
    int pids[MAX_PIDS], npids;    /* --pid: the server's processes, their CPU summed as serverCpu */
    int auxPids[MAX_PIDS], nauxPids;  /* --aux-pid: processes the server relies on (redis-server), as auxCpu */
    int sources;  /* >1: connection i binds to 127.0.0.(2 + i % sources), for more than ~28k connections */
    int baselineAfter;
    double connectTimeout, drainTimeout;
    int verbose;
} opt = {
    .host = "127.0.0.1", .key = "", .path = "/", .connections = 1000, .concurrency = 64,
    .scenarios = "fanout", .warmup = 2, .duration = 5, .hold = 3, .rate = 2000, .size = 64,
    .pipeline = 256, .window = 0, .burst = 50, .readSize = 0, .maxBehind = 0, .bpipeline = 50, .binterval = 1000, .maxInflight = 20000, .baselineAfter = 1000,
    .connectTimeout = 180, .drainTimeout = 15,
};

/* ---- small helpers ----------------------------------------------------- */

static void vnote(const char *fmt, va_list ap) {
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
}

static void note(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vnote(fmt, ap);
    va_end(ap);
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vnote(fmt, ap);
    va_end(ap);
    exit(2);
}

static uint64_t rngState = 0x9E3779B97F4A7C15ull;
static inline uint64_t rnd(void) {
    uint64_t x = rngState;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    rngState = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static double secs(uint64_t ns) { return (double)ns / 1e9; }

static double cpuSelf(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds used by process pid (all its threads), or -1. */
static double cpuOf(int pid) {
    if (pid <= 0) return -1;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    unsigned long utime = 0, stime = 0;
    /* after ") " come fields 3..: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2) return -1;
    return (double)(utime + stime) / sysconf(_SC_CLK_TCK);
}

/* CPU seconds used by all of pids, or -1 if there are none or one is gone. */
static double cpuOfAll(const int *pids, int n) {
    if (n <= 0) return -1;
    double sum = 0;
    for (int i = 0; i < n; i++) {
        double c = cpuOf(pids[i]);
        if (c < 0) return -1;
        sum += c;
    }
    return sum;
}

/* Parse "A,B,C" into out (at most max numbers, each > 0); the count, or -1. */
static int parseList(const char *v, int *out, int max) {
    int n = 0;
    for (const char *p = v; *p;) {
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p || x <= 0 || x > 0x7fffffff || n == max) return -1;
        out[n++] = (int)x;
        if (*end == ',') end++;
        else if (*end) return -1;
        p = end;
    }
    return n;
}

/* Busy and total jiffies of each CPU from /proc/stat (busy includes
 * irq and softirq: loopback TCP does much of its work there, which the
 * per-process figures above do not count). */
#define MAX_CPUS 8
typedef struct { double busy[MAX_CPUS], total[MAX_CPUS]; int n; } CpuTimes;

static CpuTimes cpuTimes(void) {
    CpuTimes t = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return t;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        int cpu;
        unsigned long long v[8] = {0};
        if (sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) < 9)
            continue;
        if (cpu < 0 || cpu >= MAX_CPUS) continue;
        double idle = (double)(v[3] + v[4]);
        double total = 0;
        for (int i = 0; i < 8; i++) total += (double)v[i];
        t.busy[cpu] = total - idle;
        t.total[cpu] = total;
        if (cpu + 1 > t.n) t.n = cpu + 1;
    }
    fclose(f);
    return t;
}

/* VmRSS of pid in bytes, or -1. */
static long rssOf(int pid) {
    if (pid <= 0) return -1;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) { kb = atol(line + 6); break; }
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

/* ---- latency histogram ------------------------------------------------ */

typedef struct {
    uint32_t *b;
    uint64_t count, overflow;
    double sumUs;
    uint64_t maxNs;
} Hist;

static void histInit(Hist *h) {
    h->b = calloc(HIST_FINE + HIST_COARSE, sizeof(uint32_t));
    h->count = h->overflow = 0; h->sumUs = 0; h->maxNs = 0;
}
static void histReset(Hist *h) {
    memset(h->b, 0, (HIST_FINE + HIST_COARSE) * sizeof(uint32_t));
    h->count = h->overflow = 0; h->sumUs = 0; h->maxNs = 0;
}
static inline void histAdd(Hist *h, uint64_t ns) {
    uint64_t us = ns / 1000;
    h->count++;
    h->sumUs += (double)us;
    if (ns > h->maxNs) h->maxNs = ns;
    if (us < HIST_FINE) h->b[us]++;
    else if (us / 1000 < HIST_COARSE) h->b[HIST_FINE + us / 1000]++;
    else h->overflow++;
}
/* the q-quantile in milliseconds (upper edge of its bucket) */
static double histQuantile(const Hist *h, double q) {
    if (!h->count) return -1;
    uint64_t want = (uint64_t)(q * (double)h->count);
    if (want >= h->count) want = h->count - 1;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < HIST_FINE + HIST_COARSE; i++) {
        seen += h->b[i];
        if (seen > want) return i < HIST_FINE ? (i + 1) / 1000.0 : (double)(i - HIST_FINE + 1);
    }
    return (double)h->maxNs / 1e6;
}

/* ---- the pushed line: built by the sender, checked by the receiver --------
 *
 * {"uid":"u17","s":42,"t":123456789,"x":"abc..."}   to one uid
 * {"broadcast":true,"s":42,"t":123456789,"x":"abc..."}  to everyone
 *
 * padded with a pattern derived from s to exactly `size` bytes (when the
 * fields leave room), so a receiver can rebuild the expected bytes from the
 * fields it parsed and compare them all.
 */
static inline char *putU64(char *p, uint64_t v) {
    char tmp[24];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) *p++ = tmp[--n];
    return p;
}

static size_t buildLine(char *out, int broadcast, uint32_t uid, uint64_t s, uint64_t t, size_t size) {
    char *p = out;
    if (broadcast) {
        memcpy(p, "{\"broadcast\":true,\"s\":", 22); p += 22;
    } else {
        memcpy(p, "{\"uid\":\"u", 9); p += 9;
        p = putU64(p, uid);
        memcpy(p, "\",\"s\":", 6); p += 6;
    }
    p = putU64(p, s);
    memcpy(p, ",\"t\":", 5); p += 5;
    p = putU64(p, t);
    memcpy(p, ",\"x\":\"", 6); p += 6;
    size_t used = (size_t)(p - out) + 2;
    size_t pad = size > used ? size - used : 0;
    for (size_t i = 0; i < pad; i++) p[i] = (char)('a' + (s + i) % 26);
    p += pad;
    *p++ = '"'; *p++ = '}';
    return (size_t)(p - out);
}

static inline int getU64(const uint8_t **pp, const uint8_t *end, uint64_t *v) {
    const uint8_t *p = *pp;
    uint64_t x = 0;
    if (p >= end || *p < '0' || *p > '9') return -1;
    while (p < end && *p >= '0' && *p <= '9') x = x * 10 + (uint64_t)(*p++ - '0');
    *pp = p; *v = x;
    return 0;
}

static inline int expect(const uint8_t **pp, const uint8_t *end, const char *lit, size_t n) {
    if ((size_t)(end - *pp) < n || memcmp(*pp, lit, n)) return -1;
    *pp += n;
    return 0;
}

/* Parse a received line: kind 'b' or 'u', uid (for 'u'), s, t.  -1 if it is
 * not one of ours. */
static int parseLine(const uint8_t *p, size_t n, int *kind, uint64_t *uid, uint64_t *s, uint64_t *t) {
    const uint8_t *end = p + n;
    if (!expect(&p, end, "{\"broadcast\":true,\"s\":", 22)) {
        *kind = 'b'; *uid = 0;
    } else if (!expect(&p, end, "{\"uid\":\"u", 9)) {
        *kind = 'u';
        if (getU64(&p, end, uid) || expect(&p, end, "\",\"s\":", 6)) return -1;
    } else {
        return -1;
    }
    if (getU64(&p, end, s) || expect(&p, end, ",\"t\":", 5) || getU64(&p, end, t)) return -1;
    return 0;
}

/* ---- connections --------------------------------------------------------- */

typedef struct {
    uint8_t *buf;
    size_t len, cap;
} Inbox;

static void inboxReserve(Inbox *in, size_t need) {
    if (need <= in->cap) return;
    size_t cap = in->cap ? in->cap : 512;
    while (cap < need) cap *= 2;
    in->buf = realloc(in->buf, cap);
    if (!in->buf) die("out of memory");
    in->cap = cap;
}

/* Feed newly read bytes through r, keeping an incomplete frame for later. */
static int inboxFeed(Inbox *in, WsReader *r, uint8_t *data, size_t n) {
    uint8_t *buf;
    size_t len;
    if (in->len) {
        inboxReserve(in, in->len + n);
        memcpy(in->buf + in->len, data, n);
        in->len += n;
        buf = in->buf; len = in->len;
    } else {
        buf = data; len = n;
    }
    long used = wsFeed(r, buf, len);
    if (used < 0) return -1;
    size_t rest = len - (size_t)used;
    if (in->len) {
        memmove(in->buf, in->buf + used, rest);
        in->len = rest;
    } else if (rest) {
        inboxReserve(in, rest);
        memcpy(in->buf, data + used, rest);
        in->len = rest;
    }
    if (!in->len && in->cap > 65536) { free(in->buf); in->buf = NULL; in->cap = 0; }
    return 0;
}

typedef struct {
    int fd;
    uint8_t state;
    uint8_t wantOut;
    uint32_t idx;
    Inbox in;
    uint8_t *wbuf;
    uint32_t wlen, wcap;
    WsReader reader;
    uint64_t lastB, lastU;  /* last broadcast / unicast sequence received */
    uint64_t recvU, okU;    /* unicast messages received / answered ok for this uid */
    char accept[32];
} Conn;

static Conn *conns;
static int epfd;
static int openCount, inflightConnects, startedConnects, connectFailures, serverClosed;
static struct sockaddr_in wsAddr;  /* the host, and the first port (the push and stats ports' host too) */
static int measuring;
static Hist hist;

static struct {
    uint64_t deliveredB, deliveredU, orderErrors, corrupt, other, dup, gaps;
    uint64_t pongs, pings;
} cnt;
static char otherSample[160];
static char lastError[200];

static void setError(const char *fmt, ...) {
    if (lastError[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(lastError, sizeof lastError, fmt, ap);
    va_end(ap);
    note("%s", lastError);
}

static void epollSet(int fd, uint32_t id, uint32_t events, int add) {
    struct epoll_event ev = {.events = events, .data.u64 = id};
    if (epoll_ctl(epfd, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
}

static void connClose(Conn *c, const char *why) {
    if (c->state == ST_CLOSED) return;
    if (c->state == ST_OPEN) {
        openCount--;
        serverClosed++;
        setError("connection u%u closed: %s", c->idx, why);
    } else if (c->state == ST_CONNECTING || c->state == ST_HANDSHAKE) {
        inflightConnects--;
        connectFailures++;
        setError("connection u%u failed: %s", c->idx, why);
    }
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->state = ST_CLOSED;
}

static void connSend(Conn *c, const void *data, size_t n) {
    if (c->fd < 0) return;
    size_t off = 0;
    if (!c->wlen) {
        ssize_t w = write(c->fd, data, n);
        if (w < 0 && errno != EAGAIN) { connClose(c, strerror(errno)); return; }
        if (w > 0) off = (size_t)w;
    }
    if (off == n) return;
    if (c->wlen + (n - off) > c->wcap) {
        c->wcap = (uint32_t)(c->wlen + (n - off) + 256);
        c->wbuf = realloc(c->wbuf, c->wcap);
    }
    memcpy(c->wbuf + c->wlen, (const uint8_t *)data + off, n - off);
    c->wlen += (uint32_t)(n - off);
    if (!c->wantOut) { c->wantOut = 1; epollSet(c->fd, c->idx, EPOLLIN | EPOLLOUT, 0); }
}

static void connFlush(Conn *c) {
    if (!c->wlen) return;
    ssize_t w = write(c->fd, c->wbuf, c->wlen);
    if (w < 0 && errno != EAGAIN) { connClose(c, strerror(errno)); return; }
    if (w > 0) { memmove(c->wbuf, c->wbuf + w, c->wlen - (size_t)w); c->wlen -= (uint32_t)w; }
    if (!c->wlen && c->wantOut) { c->wantOut = 0; epollSet(c->fd, c->idx, EPOLLIN, 0); }
}

/* A masked client frame. */
static void connSendFrame(Conn *c, int opcode, const void *payload, size_t n) {
    uint8_t buf[256];
    uint64_t r = rnd();
    uint8_t key[4] = {(uint8_t)r, (uint8_t)(r >> 8), (uint8_t)(r >> 16), (uint8_t)(r >> 24)};
    if (n > sizeof buf - 14) n = sizeof buf - 14;
    size_t h = wsHeader(buf, opcode, n, key);
    for (size_t i = 0; i < n; i++) buf[h + i] = ((const uint8_t *)payload)[i] ^ key[i & 3];
    connSend(c, buf, h + n);
}

/* cache of the last broadcast line rebuilt, since every connection gets it */
static uint8_t bcastCache[MAX_LINE + 64];
static size_t bcastCacheLen;
static uint64_t bcastCacheS, bcastCacheT;
static uint8_t checkBuf[MAX_LINE + 64];

static void onText(Conn *c, const uint8_t *p, size_t n) {
    int kind;
    uint64_t uid, s, t;
    uint64_t now = nowNs();
    if (parseLine(p, n, &kind, &uid, &s, &t) < 0) {
        if (!cnt.other++) snprintf(otherSample, sizeof otherSample, "%.*s", (int)(n < 120 ? n : 120), p);
        return;
    }
    if (kind == 'b') {
        if (!bcastCacheLen || s != bcastCacheS || t != bcastCacheT) {
            bcastCacheLen = buildLine((char *)bcastCache, 1, 0, s, t, (size_t)opt.size);
            bcastCacheS = s; bcastCacheT = t;
        }
        if (n != bcastCacheLen || memcmp(p, bcastCache, n)) cnt.corrupt++;
        if (s != c->lastB + 1) {
            cnt.orderErrors++;
            if (s <= c->lastB) cnt.dup++; else cnt.gaps++;
        }
        if (s > c->lastB) c->lastB = s;
        cnt.deliveredB++;
    } else {
        size_t m = buildLine((char *)checkBuf, 0, (uint32_t)uid, s, t, (size_t)opt.size);
        if (uid != c->idx || m != n || memcmp(p, checkBuf, n)) cnt.corrupt++;
        if (s <= c->lastU) { cnt.orderErrors++; cnt.dup++; }
        else c->lastU = s;
        c->recvU++;
        cnt.deliveredU++;
    }
    if (measuring && t <= now) histAdd(&hist, now - t);
}

static void onFrame(void *ctx, int opcode, const uint8_t *p, size_t n) {
    Conn *c = ctx;
    switch (opcode) {
    case 1: onText(c, p, n); break;
    case 2:
        if (!cnt.other++) snprintf(otherSample, sizeof otherSample, "(binary message of %zu bytes)", n);
        break;
    case 8: {
        int code = n >= 2 ? (p[0] << 8 | p[1]) : 1005;
        char why[160];
        snprintf(why, sizeof why, "server sent close %d %.*s", code, (int)(n > 2 ? (n - 2 < 100 ? n - 2 : 100) : 0),
                 n > 2 ? (const char *)p + 2 : "");
        connSendFrame(c, 8, p, n >= 2 ? 2 : 0);
        connClose(c, why);
        break;
    }
    case 9: cnt.pings++; connSendFrame(c, 10, p, n); cnt.pongs++; break;
    default: break;
    }
}

static void connStart(Conn *c) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket: %s (raise the open-file limit)", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opt.sources > 1) {
        /* one source address has only ip_local_port_range ports (~28k) toward one server port */
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7F000002u + c->idx % (uint32_t)opt.sources);
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) die("bind to a source address: %s", strerror(errno));
    }
    c->fd = fd;
    c->state = ST_CONNECTING;
    inflightConnects++;
    startedConnects++;
    struct sockaddr_in to = wsAddr;
    to.sin_port = htons((uint16_t)opt.ports[c->idx % (uint32_t)opt.nports]);
    if (connect(fd, (struct sockaddr *)&to, sizeof to) < 0 && errno != EINPROGRESS) {
        connClose(c, strerror(errno));
        return;
    }
    epollSet(fd, c->idx, EPOLLIN | EPOLLOUT, 1);
    c->wantOut = 1;
}

static void connConnected(Conn *c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) { connClose(c, strerror(err)); return; }
    uint8_t raw[16];
    for (int i = 0; i < 16; i++) raw[i] = (uint8_t)rnd();
    char key[32];
    base64(raw, 16, key);
    wsAccept(key, c->accept);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     opt.path, opt.host, opt.ports[c->idx % (uint32_t)opt.nports], key);
    c->state = ST_HANDSHAKE;
    c->wantOut = 0;
    epollSet(c->fd, c->idx, EPOLLIN, 0);
    connSend(c, req, (size_t)n);
}

/* The 101 response is complete in c->in; check it, then send the uid. */
static void connHandshake(Conn *c, size_t headEnd) {
    char *head = (char *)c->in.buf;
    head[headEnd] = 0;
    if (strncmp(head, "HTTP/1.1 101", 12)) {
        char why[200];
        snprintf(why, sizeof why, "handshake refused: %.80s", head);
        connClose(c, why);
        return;
    }
    char *accept = NULL;
    for (char *line = strstr(head, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n")) {
        if (!strncasecmp(line + 2, "Sec-WebSocket-Accept:", 21)) { accept = line + 23; break; }
    }
    if (!accept) { connClose(c, "no Sec-WebSocket-Accept"); return; }
    while (*accept == ' ' || *accept == '\t') accept++;
    if (strncmp(accept, c->accept, 28) || (accept[28] != '\r' && accept[28] != ' ' && accept[28] != 0)) {
        connClose(c, "wrong Sec-WebSocket-Accept");
        return;
    }
    size_t rest = c->in.len - (headEnd + 4);
    c->state = ST_OPEN;
    inflightConnects--;
    openCount++;
    c->reader = (WsReader){.onMessage = onFrame, .ctx = c, .expectMasked = 0, .maxMessage = MAX_LINE};
    char uid[24];
    int n = snprintf(uid, sizeof uid, "u%u", c->idx);
    connSendFrame(c, 1, uid, (size_t)n);
    if (rest) {
        uint8_t *tmp = malloc(rest);
        memcpy(tmp, c->in.buf + headEnd + 4, rest);
        c->in.len = 0;
        if (inboxFeed(&c->in, &c->reader, tmp, rest) < 0) connClose(c, c->reader.error);
        free(tmp);
    } else {
        c->in.len = 0;
    }
}

static uint8_t scratch[SCRATCH];

static void connReadable(Conn *c) {
    size_t want = opt.readSize > 0 && (size_t)opt.readSize < sizeof scratch ? (size_t)opt.readSize : sizeof scratch;
    ssize_t n = read(c->fd, scratch, want);
    if (n == 0) { connClose(c, "EOF"); return; }
    if (n < 0) {
        if (errno != EAGAIN) connClose(c, strerror(errno));
        return;
    }
    if (c->state == ST_HANDSHAKE) {
        inboxReserve(&c->in, c->in.len + (size_t)n + 1);
        memcpy(c->in.buf + c->in.len, scratch, (size_t)n);
        c->in.len += (size_t)n;
        void *end = memmem(c->in.buf, c->in.len, "\r\n\r\n", 4);
        if (end) connHandshake(c, (size_t)((uint8_t *)end - c->in.buf));
        else if (c->in.len > 16384) connClose(c, "handshake response too long");
        return;
    }
    if (c->state == ST_OPEN && inboxFeed(&c->in, &c->reader, scratch, (size_t)n) < 0) connClose(c, c->reader.error);
}

/* ---- the push-port connection ---------------------------------------------- */

static struct {
    int fd;
    char *w;
    size_t wlen, wcap, woff;
    int wantOut;
    char r[65536];
    size_t rlen;
    int32_t *ring;   /* target of each unanswered line, in order; -1 for a broadcast */
    size_t ringCap, head, tail;
    uint64_t sent, ok, fail, errors;
    char errorSample[160];
} line;

static size_t lineOutstanding(void) { return line.tail - line.head; }

static void lineConnect(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = wsAddr;
    a.sin_port = htons((uint16_t)opt.pushPort);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) die("cannot connect to the push port %d: %s", opt.pushPort, strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    line.fd = fd;
    line.ringCap = 1 << 20;
    line.ring = malloc(line.ringCap * sizeof(int32_t));
    line.wcap = 1 << 20;
    line.w = malloc(line.wcap);
    epollSet(fd, LINE_ID, EPOLLIN, 1);
}

static void lineQueue(int broadcast, uint32_t target, uint64_t s, uint64_t t) {
    if (line.wlen + (size_t)opt.size + 128 > line.wcap) {
        line.wcap = (line.wlen + (size_t)opt.size + 128) * 2;
        line.w = realloc(line.w, line.wcap);
    }
    size_t n = buildLine(line.w + line.wlen, broadcast, target, s, t, (size_t)opt.size);
    line.w[line.wlen + n] = '\n';
    line.wlen += n + 1;
    if (lineOutstanding() >= line.ringCap) die("too many unanswered push lines");
    line.ring[line.tail++ % line.ringCap] = broadcast ? -1 : (int32_t)target;
    line.sent++;
}

static void lineFlush(void) {
    while (line.woff < line.wlen) {
        ssize_t w = write(line.fd, line.w + line.woff, line.wlen - line.woff);
        if (w < 0) {
            if (errno == EAGAIN) break;
            die("push port write: %s", strerror(errno));
        }
        line.woff += (size_t)w;
    }
    if (line.woff == line.wlen) line.woff = line.wlen = 0;
    int want = line.wlen > 0;
    if (want != line.wantOut) {
        line.wantOut = want;
        epollSet(line.fd, LINE_ID, want ? EPOLLIN | EPOLLOUT : EPOLLIN, 0);
    }
}

static void lineReadable(void) {
    ssize_t n = read(line.fd, line.r + line.rlen, sizeof line.r - line.rlen);
    if (n == 0) die("the push port closed the connection");
    if (n < 0) { if (errno == EAGAIN) return; die("push port read: %s", strerror(errno)); }
    line.rlen += (size_t)n;
    size_t start = 0;
    for (;;) {
        char *nl = memchr(line.r + start, '\n', line.rlen - start);
        if (!nl) break;
        size_t len = (size_t)(nl - (line.r + start));
        if (len && line.r[start + len - 1] == '\r') len--;
        const char *a = line.r + start;
        if (lineOutstanding() == 0) die("an answer for no request: %.*s", (int)len, a);
        int32_t target = line.ring[line.head++ % line.ringCap];
        if (len == 2 && !memcmp(a, "ok", 2)) {
            line.ok++;
            if (target >= 0) conns[target].okU++;
        } else if (len == 4 && !memcmp(a, "fail", 4)) {
            line.fail++;
        } else {
            if (!line.errors++) snprintf(line.errorSample, sizeof line.errorSample, "%.*s", (int)(len < 120 ? len : 120), a);
        }
        start = (size_t)(nl - line.r) + 1;
    }
    memmove(line.r, line.r + start, line.rlen - start);
    line.rlen -= start;
    if (line.rlen == sizeof line.r) die("push port answer line too long");
}

/* ---- the event loop ------------------------------------------------------ */

static struct epoll_event events[MAX_EVENTS];

/* Handle whatever is ready, waiting at most timeoutNs for something. */
static void pump(uint64_t timeoutNs) {
    struct timespec ts = {.tv_sec = (time_t)(timeoutNs / 1000000000ull), .tv_nsec = (long)(timeoutNs % 1000000000ull)};
    int n = epoll_pwait2(epfd, events, MAX_EVENTS, &ts, NULL);
    if (n < 0) {
        if (errno == EINTR) return;
        die("epoll_wait: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++) {
        uint32_t id = (uint32_t)events[i].data.u64;
        uint32_t ev = events[i].events;
        if (id == LINE_ID) {
            if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) lineReadable();
            if (ev & EPOLLOUT) lineFlush();
            continue;
        }
        Conn *c = &conns[id];
        if (c->state == ST_CLOSED) continue;
        if (c->state == ST_CONNECTING) {
            if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) connConnected(c);
            continue;
        }
        if (ev & EPOLLOUT) connFlush(c);
        if (c->state != ST_CLOSED && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR))) connReadable(c);
    }
}

/* ---- readiness: GET /api/stats ---------------------------------------------- */

static long statsConnections(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = wsAddr;
    a.sin_port = htons((uint16_t)opt.statsPort);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { close(fd); return -1; }
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /api/stats HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n",
                     opt.host, opt.key);
    if (write(fd, req, (size_t)n) != n) { close(fd); return -1; }
    char buf[8192];
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
        if (r <= 0) break;
        len += (size_t)r;
        if (len == sizeof buf - 1) break;
    }
    close(fd);
    buf[len] = 0;
    char *body = strstr(buf, "\r\n\r\n");
    char *p = body ? strstr(body, "\"connections\"") : NULL;
    if (!p) return -1;
    p += 13;
    while (*p == ' ' || *p == ':') p++;
    return strtol(p, NULL, 10);
}

/* Wait until the server reports `want` authenticated connections, pumping. */
static int waitRegistered(long want, double timeout) {
    uint64_t deadline = nowNs() + (uint64_t)(timeout * 1e9);
    for (;;) {
        long have = statsConnections();
        if (have >= want) return 0;
        if (nowNs() > deadline) {
            setError("server reports %ld connections, expected %ld", have, want);
            return -1;
        }
        pump(5000000);
    }
}

/* ---- scenarios ---------------------------------------------------------------- */

typedef struct {
    uint64_t t;
    double cpuSelf, cpuServer, cpuAux;
    uint64_t deliveredB, deliveredU, lineOk, lineSent;
    CpuTimes cores;
} Snap;

static Snap snap(void) {
    return (Snap){nowNs(), cpuSelf(), cpuOfAll(opt.pids, opt.npids), cpuOfAll(opt.auxPids, opt.nauxPids),
                  cnt.deliveredB, cnt.deliveredU, line.ok, line.sent, cpuTimes()};
}

static FILE *out;
static int firstScenario = 1;

static void emitCpu(const Snap *a, const Snap *b) {
    double wall = secs(b->t - a->t);
    fprintf(out, "\"loadgenCpu\": %.3f, \"serverCpu\": %.3f", (b->cpuSelf - a->cpuSelf) / wall,
            a->cpuServer >= 0 && b->cpuServer >= 0 ? (b->cpuServer - a->cpuServer) / wall : -1.0);
    if (opt.nauxPids)
        fprintf(out, ", \"auxCpu\": %.3f", a->cpuAux >= 0 && b->cpuAux >= 0 ? (b->cpuAux - a->cpuAux) / wall : -1.0);
    fprintf(out, ", \"coreBusy\": [");
    for (int i = 0; i < b->cores.n; i++) {
        double total = b->cores.total[i] - a->cores.total[i];
        fprintf(out, "%s%.3f", i ? ", " : "", total > 0 ? (b->cores.busy[i] - a->cores.busy[i]) / total : -1.0);
    }
    fprintf(out, "]");
}

static void emitLatency(void) {
    fprintf(out, "\"latencyMs\": {\"count\": %llu, \"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"p999\": %.3f, \"max\": %.3f, \"mean\": %.3f}",
            (unsigned long long)hist.count, histQuantile(&hist, 0.5), histQuantile(&hist, 0.9), histQuantile(&hist, 0.99),
            histQuantile(&hist, 0.999), (double)hist.maxNs / 1e6, hist.count ? hist.sumUs / (double)hist.count / 1000.0 : -1.0);
}

static void beginScenario(const char *name) {
    fprintf(out, "%s\"%s\": {", firstScenario ? "" : ", ", name);
    firstScenario = 0;
    note("scenario %s", name);
}

static uint64_t bseq, useq = 0;

/* Wait for every unanswered line and every expected delivery; report what is missing. */
static int drain(uint64_t wantB, uint64_t wantU) {
    uint64_t deadline = nowNs() + (uint64_t)(opt.drainTimeout * 1e9);
    while (nowNs() < deadline) {
        if (!lineOutstanding() && cnt.deliveredB >= wantB && cnt.deliveredU >= wantU) return 0;
        lineFlush();
        pump(2000000);
    }
    return -1;
}

/* How broadcasts are pumped into the push port (bench/README.rst, The scenarios):
 *
 *   fanout            at most W broadcasts not yet received everywhere, W the
 *                     4 MiB window below (--window overrides), joined writes;
 *   fanout-pipelined  at most --broadcast-pipeline unanswered lines (50), each
 *                     line its own write() as soon as an answer frees its
 *                     place: a backend pushing at full rate, whatever the
 *                     audience's progress (bounded only by --max-behind
 *                     broadcasts not yet received, by default that depth + 16,
 *                     for a server that answers before it has written);
 *   fanout-paced      one line every --broadcast-interval microseconds (1000),
 *                     each its own write(), while fewer than
 *                     --broadcast-pipeline are unanswered: broadcasts that
 *                     arrive one or a few at a time, steadily, whatever the
 *                     server is doing (events from many sources);
 *   fanout-serial     one line at a time, the next once its answer is read;
 *   fanout-burst      --burst lines in one write, the next burst once every
 *                     connection has received all of them.
 */
enum { PUMP_WINDOW, PUMP_PIPELINED, PUMP_PACED, PUMP_SERIAL, PUMP_BURST };

static void runFanout(const char *name, int pumping) {
    /* at most 4 MiB of messages in flight over all connections (65,536
     * deliveries of 64 bytes): deep enough to keep any server busy, far
     * below any slow-consumer limit whatever the message size */
    long perBroadcast = (long)opt.connections * opt.size;
    int window = opt.window > 0 ? opt.window : (int)((4L << 20) / perBroadcast);
    if (window < 2) window = 2;
    if (pumping == PUMP_PIPELINED || pumping == PUMP_PACED) window = opt.bpipeline;
    else if (pumping == PUMP_SERIAL) window = 1;
    else if (pumping == PUMP_BURST) window = opt.burst;
    if (window < 1) window = 1;
    uint64_t maxBehind = opt.maxBehind > 0 ? (uint64_t)opt.maxBehind : (uint64_t)window + 16;
    uint64_t interval = (uint64_t)(opt.binterval * 1000), nextLine = 0;
    beginScenario(name);
    for (int i = 0; i < opt.connections; i++) conns[i].lastB = bseq;
    uint64_t startB = cnt.deliveredB, sentB = 0;
    uint64_t n = (uint64_t)openCount;
    uint64_t t0 = nowNs(), tm = t0 + (uint64_t)(opt.warmup * 1e9), tend = tm + (uint64_t)(opt.duration * 1e9);
    Snap a = {0}, b;
    for (;;) {
        uint64_t now = nowNs();
        if (!measuring && now >= tm) { histReset(&hist); a = snap(); measuring = 1; }
        if (now >= tend) break;
        uint64_t done = (cnt.deliveredB - startB) / n;
        switch (pumping) {
        case PUMP_WINDOW:
            while (sentB - done < (uint64_t)window && lineOutstanding() < (size_t)window) {
                lineQueue(1, 0, ++bseq, nowNs());
                sentB++;
            }
            lineFlush();
            break;
        case PUMP_PIPELINED:
            while (lineOutstanding() < (size_t)window && sentB - done < maxBehind) {
                lineQueue(1, 0, ++bseq, nowNs());
                sentB++;
                lineFlush();
            }
            break;
        case PUMP_PACED:
            if (!nextLine) nextLine = now;
            while (now >= nextLine && lineOutstanding() < (size_t)window && sentB - done < maxBehind) {
                lineQueue(1, 0, ++bseq, nowNs());
                sentB++;
                lineFlush();
                nextLine += interval;
            }
            /* a pace the server cannot follow is not banked up for later */
            if (now >= nextLine) nextLine = now + interval;
            break;
        case PUMP_SERIAL:
            if (!lineOutstanding() && sentB - done < maxBehind) {
                lineQueue(1, 0, ++bseq, nowNs());
                sentB++;
                lineFlush();
            }
            break;
        case PUMP_BURST:
            if (!lineOutstanding() && sentB == done) {
                for (int k = 0; k < window; k++) lineQueue(1, 0, ++bseq, nowNs());
                sentB += (uint64_t)window;
                lineFlush();
            }
            break;
        }
        uint64_t wait = 1000000, later = nowNs();
        if (pumping == PUMP_PACED && nextLine > later && nextLine - later < wait) wait = nextLine - later;
        pump(wait);
    }
    b = snap();
    measuring = 0;
    int drained = drain(startB + sentB * n, 0);
    double wall = secs(b.t - a.t);
    uint64_t lost = startB + sentB * n - cnt.deliveredB;
    int behind = 0;
    for (int i = 0; i < opt.connections; i++)
        if (conns[i].state == ST_OPEN && conns[i].lastB != bseq) behind++;
    fprintf(out, "\"deliveriesPerSec\": %.1f, \"broadcastsPerSec\": %.2f, \"window\": %d, \"broadcasts\": %llu, \"lost\": %llu, \"connectionsBehind\": %d, \"drained\": %s, ",
            (double)(b.deliveredB - a.deliveredB) / wall, (double)(b.lineSent - a.lineSent) / wall, window,
            (unsigned long long)sentB, (unsigned long long)(drained ? lost : 0), behind, drained ? "false" : "true");
    emitLatency();
    fprintf(out, ", ");
    emitCpu(&a, &b);
    fprintf(out, "}");
}

/* Unicast to random uids: as fast as the server answers (rate <= 0), or paced. */
static void runUnicast(const char *name, double rate) {
    beginScenario(name);
    uint64_t startU = cnt.deliveredU, startOk = line.ok, sent = 0;
    uint64_t n = (uint64_t)opt.connections;
    uint64_t t0 = nowNs(), tm = t0 + (uint64_t)(opt.warmup * 1e9), tend = tm + (uint64_t)(opt.duration * 1e9);
    uint64_t interval = rate > 0 ? (uint64_t)(1e9 / rate) : 0;
    /* answered but not yet received: bounded in count and, for big messages, to 64 MiB */
    uint64_t maxInflight = (uint64_t)opt.maxInflight;
    if (maxInflight > (64ull << 20) / (uint64_t)opt.size) maxInflight = (64ull << 20) / (uint64_t)opt.size;
    Snap a = {0}, b;
    for (;;) {
        uint64_t now = nowNs();
        if (!measuring && now >= tm) { histReset(&hist); a = snap(); measuring = 1; }
        if (now >= tend) break;
        if (rate > 0) {
            uint64_t due = (now - t0) / interval + 1;
            while (sent < due) {
                lineQueue(0, (uint32_t)(rnd() % n), ++useq, nowNs());
                sent++;
            }
            lineFlush();
            uint64_t next = t0 + sent * interval;
            now = nowNs();
            pump(next > now ? next - now : 0);
        } else {
            uint64_t inflight = (line.ok - startOk) + lineOutstanding() - (cnt.deliveredU - startU);
            while (lineOutstanding() < (size_t)opt.pipeline && inflight < maxInflight) {
                lineQueue(0, (uint32_t)(rnd() % n), ++useq, nowNs());
                sent++;
                inflight++;
            }
            lineFlush();
            pump(1000000);
        }
    }
    b = snap();
    measuring = 0;
    drain(0, 0);
    int drained = drain(0, startU + (line.ok - startOk));
    uint64_t missing = 0;
    for (int i = 0; i < opt.connections; i++)
        if (conns[i].okU > conns[i].recvU) missing += conns[i].okU - conns[i].recvU;
    double wall = secs(b.t - a.t);
    fprintf(out, "\"deliveriesPerSec\": %.1f, \"pushesPerSec\": %.1f, \"targetRate\": %.1f, \"pushes\": %llu, \"lost\": %llu, \"drained\": %s, ",
            (double)(b.deliveredU - a.deliveredU) / wall, (double)(b.lineOk - a.lineOk) / wall, rate,
            (unsigned long long)sent, (unsigned long long)missing, drained ? "false" : "true");
    emitLatency();
    fprintf(out, ", ");
    emitCpu(&a, &b);
    fprintf(out, "}");
}

static void runIdle(long rssFresh, long rssBase, int baseConns) {
    beginScenario("idle");
    uint64_t end = nowNs() + (uint64_t)(opt.hold * 1e9);
    Snap a = snap();
    while (nowNs() < end) pump(10000000);
    Snap b = snap();
    long rss = rssOf(opt.pid);
    int n = openCount;
    double perConn = rssBase > 0 && n > baseConns ? (double)(rss - rssBase) / (n - baseConns) : -1;
    double perConnFresh = rssFresh > 0 && n > 0 ? (double)(rss - rssFresh) / n : -1;
    fprintf(out, "\"connections\": %d, \"rssFresh\": %ld, \"rssBaseline\": %ld, \"baselineConnections\": %d, \"rss\": %ld, "
            "\"bytesPerConnection\": %.0f, \"bytesPerConnectionOverFresh\": %.0f, \"projectedRss100k\": %.0f, ",
            n, rssFresh, rssBase, baseConns, rss, perConn, perConnFresh,
            perConn > 0 ? (double)rssFresh + 100000.0 * perConn : -1.0);
    emitCpu(&a, &b);
    fprintf(out, "}");
}

/* ---- ramp ------------------------------------------------------------------- */

/* Open connections up to `target` (concurrency-limited); 0 when all are open. */
static int ramp(int target) {
    uint64_t deadline = nowNs() + (uint64_t)(opt.connectTimeout * 1e9);
    while (openCount + connectFailures < target || inflightConnects) {
        while (startedConnects < target && inflightConnects < opt.concurrency) connStart(&conns[startedConnects]);
        if (nowNs() > deadline) { setError("only %d of %d connections opened", openCount, target); return -1; }
        if (connectFailures) return -1;
        pump(1000000);
    }
    return connectFailures ? -1 : 0;
}

/* ---- self-test ------------------------------------------------------------- */

typedef struct { int n; int op[16]; size_t len[16]; uint8_t first[16]; uint8_t last[16]; } Seen;

static void seenFrame(void *ctx, int opcode, const uint8_t *p, size_t n) {
    Seen *s = ctx;
    if (s->n < 16) {
        s->op[s->n] = opcode; s->len[s->n] = n;
        s->first[s->n] = n ? p[0] : 0; s->last[s->n] = n ? p[n - 1] : 0;
    }
    s->n++;
}

static size_t frameInto(uint8_t *out, int b0, const uint8_t *p, size_t n) {
    size_t h = wsHeader(out, b0 & 0x0f, n, NULL);
    out[0] = (uint8_t)b0;
    memcpy(out + h, p, n);
    return h + n;
}

static int failures;
#define CHECK(cond, what) do { if (!(cond)) { fprintf(stderr, "selftest FAILED: %s\n", what); failures++; } } while (0)

static int selftest(void) {
    /* SHA-1 and the RFC 6455 handshake example */
    uint8_t d[20];
    char hex[41];
    sha1((const uint8_t *)"abc", 3, d);
    for (int i = 0; i < 20; i++) sprintf(hex + 2 * i, "%02x", d[i]);
    CHECK(!strcmp(hex, "a9993e364706816aba3e25717850c26c9cd0d89d"), "sha1(abc)");
    sha1((const uint8_t *)"", 0, d);
    for (int i = 0; i < 20; i++) sprintf(hex + 2 * i, "%02x", d[i]);
    CHECK(!strcmp(hex, "da39a3ee5e6b4b0d3255bfef95601890afd80709"), "sha1(empty)");
    char acc[32];
    wsAccept("dGhlIHNhbXBsZSBub25jZQ==", acc);
    CHECK(!strcmp(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "RFC 6455 accept example");

    /* a stream of frames: 7-bit, 16-bit, 64-bit lengths, a fragmented message
     * with a ping between its fragments, a pong, a close */
    static uint8_t stream[200000];
    static uint8_t big[70000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)('a' + i % 26);
    size_t n = 0;
    n += frameInto(stream + n, 0x81, (const uint8_t *)"hello", 5);
    n += frameInto(stream + n, 0x81, big, 300);
    n += frameInto(stream + n, 0x82, big, 70000);
    n += frameInto(stream + n, 0x01, (const uint8_t *)"abc", 3);
    n += frameInto(stream + n, 0x89, (const uint8_t *)"p", 1);
    n += frameInto(stream + n, 0x00, big, 200);
    n += frameInto(stream + n, 0x80, (const uint8_t *)"gh", 2);
    n += frameInto(stream + n, 0x8A, (const uint8_t *)"", 0);
    n += frameInto(stream + n, 0x81, (const uint8_t *)"", 0);
    n += frameInto(stream + n, 0x88, (const uint8_t *)"\x03\xe8", 2);
    const int expOp[] = {1, 1, 2, 9, 1, 10, 1, 8};
    const size_t expLen[] = {5, 300, 70000, 1, 205, 0, 0, 2};
    /* whole, byte by byte, and in odd chunk sizes: same messages every time */
    size_t chunks[] = {n, 1, 7, 4093, 65536};
    for (size_t k = 0; k < sizeof chunks / sizeof *chunks; k++) {
        Seen seen = {0};
        WsReader r = {.onMessage = seenFrame, .ctx = &seen, .maxMessage = MAX_LINE};
        Inbox in = {0};
        static uint8_t copy[200000];
        memcpy(copy, stream, n);
        int bad = 0;
        for (size_t off = 0; off < n; off += chunks[k]) {
            size_t m = n - off < chunks[k] ? n - off : chunks[k];
            if (inboxFeed(&in, &r, copy + off, m) < 0) { bad = 1; break; }
        }
        char what[80];
        snprintf(what, sizeof what, "stream in chunks of %zu: no error", chunks[k]);
        CHECK(!bad, what);
        snprintf(what, sizeof what, "stream in chunks of %zu: 8 messages (got %d)", chunks[k], seen.n);
        CHECK(seen.n == 8, what);
        for (int i = 0; i < 8 && i < seen.n; i++) {
            snprintf(what, sizeof what, "chunks of %zu, message %d: opcode %d len %zu", chunks[k], i, seen.op[i], seen.len[i]);
            CHECK(seen.op[i] == expOp[i] && seen.len[i] == expLen[i], what);
        }
        CHECK(seen.first[4] == 'a' && seen.last[4] == 'h', "reassembled fragments in order");
        CHECK(in.len == 0, "nothing left over");
        free(in.buf);
        free(r.frag);
    }
    /* protocol errors */
    struct { const char *name; uint8_t bytes[8]; size_t n; } bad[] = {
        {"masked server frame", {0x81, 0x81, 1, 2, 3, 4, 'x'}, 7},
        {"continuation without a message", {0x80, 0x01, 'x'}, 3},
        {"fragmented control frame", {0x09, 0x00}, 2},
        {"reserved bits", {0xC1, 0x00}, 2},
        {"reserved opcode", {0x83, 0x00}, 2},
        {"message inside a fragmented one", {0x01, 0x01, 'a', 0x81, 0x01, 'b'}, 6},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        Seen seen = {0};
        WsReader r = {.onMessage = seenFrame, .ctx = &seen, .maxMessage = MAX_LINE};
        CHECK(wsFeed(&r, bad[i].bytes, bad[i].n) < 0, bad[i].name);
        free(r.frag);
    }
    /* a masked client frame, as the C peer reads it */
    {
        uint8_t f[64], key[4] = {1, 2, 3, 4};
        size_t h = wsHeader(f, 1, 3, key);
        for (int i = 0; i < 3; i++) f[h + i] = (uint8_t)("u42"[i] ^ key[i]);
        Seen seen = {0};
        WsReader r = {.onMessage = seenFrame, .ctx = &seen, .expectMasked = 1, .maxMessage = 1024};
        CHECK(wsFeed(&r, f, h + 3) == (long)(h + 3) && seen.n == 1 && seen.first[0] == 'u' && seen.last[0] == '2', "masked client frame");
    }
    /* the line codec */
    {
        char buf[256];
        int kind;
        uint64_t uid, s, t;
        size_t m = buildLine(buf, 0, 17, 42, 123456789, 64);
        CHECK(m == 64, "unicast line is 64 bytes");
        CHECK(!parseLine((uint8_t *)buf, m, &kind, &uid, &s, &t) && kind == 'u' && uid == 17 && s == 42 && t == 123456789, "unicast line round trip");
        m = buildLine(buf, 1, 0, 7, 99, 64);
        CHECK(m == 64 && !parseLine((uint8_t *)buf, m, &kind, &uid, &s, &t) && kind == 'b' && s == 7 && t == 99, "broadcast line round trip");
        CHECK(parseLine((const uint8_t *)"{\"type\":\"error\"}", 16, &kind, &uid, &s, &t) < 0, "foreign message is not ours");
        m = buildLine(buf, 0, 19999, 9999999999ull, 99999999999999999ull, 64);
        CHECK(m >= 64 && buf[m - 1] == '}', "long fields still a valid line");
    }
    /* the lists --port and --pid take */
    {
        int v[MAX_PORTS];
        CHECK(parseList("8080", v, MAX_PORTS) == 1 && v[0] == 8080, "a list of one");
        CHECK(parseList("8080,9090,7", v, MAX_PORTS) == 3 && v[1] == 9090 && v[2] == 7, "a list of three");
        CHECK(parseList("", v, MAX_PORTS) == 0, "an empty list");
        CHECK(parseList("80,", v, MAX_PORTS) == 1, "a trailing comma");
        CHECK(parseList("80,x", v, MAX_PORTS) < 0 && parseList("0", v, MAX_PORTS) < 0 && parseList("1 2", v, MAX_PORTS) < 0, "not a list");
        CHECK(parseList("1,2,3", v, 2) < 0, "a list too long");
    }
    /* latency histogram */
    {
        histInit(&hist);
        for (int i = 1; i <= 1000; i++) histAdd(&hist, (uint64_t)i * 1000000ull / 100);  /* 0.01 .. 10 ms */
        double p50 = histQuantile(&hist, 0.5), p99 = histQuantile(&hist, 0.99);
        CHECK(p50 > 4.99 && p50 < 5.02, "histogram p50");
        CHECK(p99 > 9.89 && p99 < 9.92, "histogram p99");
    }
    if (failures) { fprintf(stderr, "selftest: %d failures\n", failures); return 1; }
    printf("selftest: all checks passed\n");
    return 0;
}

/* ---- main --------------------------------------------------------------------- */

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --port P[,P...] --push-port P --stats-port P [--key K] [-n N]\n"
            "               (several ports: connection i goes to the (i mod count)-th; push and stats stay on one)\n"
            "               [--scenarios fanout,fanout-pipelined,fanout-paced,fanout-serial,fanout-burst,unicast-max,unicast-rate,idle]\n"
            "               [--warmup S] [--duration S] [--rate R] [--size B] [--pipeline K] [--window W] [--conc C]\n"
            "               [--broadcast-pipeline K] [--broadcast-interval US] [--burst N] [--max-behind N] [--read-size B]\n"
            "               [--pid PID[,PID...]] [--aux-pid PID[,PID...]] [--baseline-after N] [--hold S] [--host H] [--drain-timeout S]\n"
            "               [--sources K]   (bind to 127.0.0.2..K+1: beyond ~28k connections)\n"
            "       loadgen --selftest\n");
    exit(2);
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    out = stdout;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--selftest")) return selftest();
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--host")) opt.host = v;
        else if (!strcmp(a, "--port")) { if ((opt.nports = parseList(v, opt.ports, MAX_PORTS)) < 1) die("--port takes P[,P...]"); opt.port = opt.ports[0]; }
        else if (!strcmp(a, "--push-port")) opt.pushPort = atoi(v);
        else if (!strcmp(a, "--stats-port")) opt.statsPort = atoi(v);
        else if (!strcmp(a, "--key")) opt.key = v;
        else if (!strcmp(a, "--path")) opt.path = v;
        else if (!strcmp(a, "-n") || !strcmp(a, "--connections")) opt.connections = atoi(v);
        else if (!strcmp(a, "--conc")) opt.concurrency = atoi(v);
        else if (!strcmp(a, "--scenarios")) snprintf(opt.scenarios, sizeof opt.scenarios, "%s", v);
        else if (!strcmp(a, "--warmup")) opt.warmup = atof(v);
        else if (!strcmp(a, "--duration")) opt.duration = atof(v);
        else if (!strcmp(a, "--hold")) opt.hold = atof(v);
        else if (!strcmp(a, "--rate")) opt.rate = atof(v);
        else if (!strcmp(a, "--size")) opt.size = atoi(v);
        else if (!strcmp(a, "--pipeline")) opt.pipeline = atoi(v);
        else if (!strcmp(a, "--window")) opt.window = atoi(v);
        else if (!strcmp(a, "--burst")) opt.burst = atoi(v);
        else if (!strcmp(a, "--broadcast-pipeline")) opt.bpipeline = atoi(v);
        else if (!strcmp(a, "--broadcast-interval")) opt.binterval = atof(v);
        else if (!strcmp(a, "--max-behind")) opt.maxBehind = atoi(v);
        else if (!strcmp(a, "--read-size")) opt.readSize = atoi(v);
        else if (!strcmp(a, "--max-inflight")) opt.maxInflight = atol(v);
        else if (!strcmp(a, "--pid")) { if ((opt.npids = parseList(v, opt.pids, MAX_PIDS)) < 1) die("--pid takes PID[,PID...]"); opt.pid = opt.pids[0]; }
        else if (!strcmp(a, "--aux-pid")) { if ((opt.nauxPids = parseList(v, opt.auxPids, MAX_PIDS)) < 1) die("--aux-pid takes PID[,PID...]"); }
        else if (!strcmp(a, "--baseline-after")) opt.baselineAfter = atoi(v);
        else if (!strcmp(a, "--connect-timeout")) opt.connectTimeout = atof(v);
        else if (!strcmp(a, "--drain-timeout")) opt.drainTimeout = atof(v);
        else if (!strcmp(a, "--sources")) opt.sources = atoi(v);
        else usage();
    }
    if (!opt.port || !opt.pushPort || !opt.statsPort || opt.connections < 1) usage();
    if (opt.size < 64 || opt.size > MAX_LINE - 64) die("--size must be between 64 and %d", MAX_LINE - 64);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if ((rlim_t)opt.connections + 64 > rl.rlim_cur)
        die("%d connections need %d open files; the limit is %lu", opt.connections, opt.connections + 64, (unsigned long)rl.rlim_cur);
    rngState ^= nowNs() ^ ((uint64_t)getpid() << 32);

    wsAddr.sin_family = AF_INET;
    wsAddr.sin_port = htons((uint16_t)opt.ports[0]);
    if (inet_pton(AF_INET, opt.host, &wsAddr.sin_addr) != 1) die("--host must be an IPv4 address");
    epfd = epoll_create1(EPOLL_CLOEXEC);
    conns = calloc((size_t)opt.connections, sizeof(Conn));
    for (int i = 0; i < opt.connections; i++) { conns[i].idx = (uint32_t)i; conns[i].fd = -1; }
    histInit(&hist);
    lineConnect();

    int wantIdle = strstr(opt.scenarios, "idle") != NULL;
    long rssFresh = rssOf(opt.pid), rssBase = -1;
    int baseConns = 0;
    int ok = 0;
    fprintf(out, "{\"connections\": %d, \"size\": %d, ", opt.connections, opt.size);
    if (wantIdle && opt.pid > 0 && opt.baselineAfter > 0 && opt.baselineAfter < opt.connections) {
        /* the marginal cost per connection: RSS over a server already holding some */
        if (ramp(opt.baselineAfter) || waitRegistered(opt.baselineAfter, 60)) ok = -1;
        uint64_t settle = nowNs() + 1000000000ull;
        while (!ok && nowNs() < settle) pump(10000000);
        rssBase = rssOf(opt.pid);
        baseConns = opt.baselineAfter;
    }
    Snap a = snap();
    int already = openCount;
    if (!ok && ramp(opt.connections)) ok = -1;
    Snap opened = snap();
    if (!ok && waitRegistered(opt.connections, 60)) ok = -1;
    Snap registered = snap();
    int made = openCount - already;
    fprintf(out, "\"connect\": {\"opened\": %d, \"handshakesPerSec\": %.1f, \"registeredPerSec\": %.1f, \"concurrency\": %d, ",
            made, made / secs(opened.t - a.t), made / secs(registered.t - a.t), opt.concurrency);
    emitCpu(&a, &registered);
    fprintf(out, "}, \"scenarios\": {");
    if (!ok) {
        note("%d connections open and registered", openCount);
        char list[256];
        snprintf(list, sizeof list, "%s", opt.scenarios);
        for (char *save = NULL, *s = strtok_r(list, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
            if (!strcmp(s, "fanout")) runFanout(s, PUMP_WINDOW);
            else if (!strcmp(s, "fanout-pipelined")) runFanout(s, PUMP_PIPELINED);
            else if (!strcmp(s, "fanout-paced")) runFanout(s, PUMP_PACED);
            else if (!strcmp(s, "fanout-serial")) runFanout(s, PUMP_SERIAL);
            else if (!strcmp(s, "fanout-burst")) runFanout(s, PUMP_BURST);
            else if (!strcmp(s, "unicast-max")) runUnicast("unicast-max", 0);
            else if (!strcmp(s, "unicast-rate")) runUnicast("unicast-rate", opt.rate);
            else if (!strcmp(s, "idle")) runIdle(rssFresh, rssBase, baseConns);
            else die("unknown scenario %s", s);
            if (openCount < opt.connections) break;
        }
    }
    int closedAll = opt.connections - openCount;
    fprintf(out, "}, \"checks\": {\"orderErrors\": %llu, \"duplicates\": %llu, \"gaps\": %llu, \"corrupt\": %llu, \"foreign\": %llu, "
            "\"lineFail\": %llu, \"lineErrors\": %llu, \"connectFailures\": %d, \"closedByServer\": %d, \"notOpen\": %d, \"pingsAnswered\": %llu",
            (unsigned long long)cnt.orderErrors, (unsigned long long)cnt.dup, (unsigned long long)cnt.gaps,
            (unsigned long long)cnt.corrupt, (unsigned long long)cnt.other, (unsigned long long)line.fail,
            (unsigned long long)line.errors, connectFailures, serverClosed, closedAll, (unsigned long long)cnt.pongs);
    fprintf(out, ", \"foreignSample\": \"");
    for (const char *p = otherSample; *p; p++) fprintf(out, (*p == '"' || *p == '\\') ? "\\%c" : "%c", *p >= 32 ? *p : '?');
    fprintf(out, "\", \"lineErrorSample\": \"");
    for (const char *p = line.errorSample; *p; p++) fprintf(out, (*p == '"' || *p == '\\') ? "\\%c" : "%c", *p >= 32 ? *p : '?');
    fprintf(out, "\", \"error\": \"");
    for (const char *p = lastError; *p; p++) fprintf(out, (*p == '"' || *p == '\\') ? "\\%c" : "%c", *p >= 32 ? *p : '?');
    fprintf(out, "\"}}\n");
    fflush(out);
    /* abortive close: no TIME_WAIT, so back-to-back runs never run out of ports */
    struct linger lg = {1, 0};
    for (int i = 0; i < opt.connections; i++)
        if (conns[i].fd >= 0) { setsockopt(conns[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg); close(conns[i].fd); }
    return ok || lastError[0] || cnt.orderErrors || cnt.corrupt ? 1 : 0;
}
