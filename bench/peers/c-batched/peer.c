/*
 * The bench contract in C with batched writes: the "limit" column of issue 5
 * and the proof that the load generator is not the bottleneck (whatever this
 * peer reaches, the generator kept up with).
 *
 *   - WebSocket on --port: the first text message is the uid;
 *   - GET /api/stats on the same port: {"connections": <authenticated>};
 *   - the line-JSON push port: {"uid":"..."...} or {"broadcast":true...} per
 *     line, answered ok / fail per line, in order; clients receive the line.
 *
 * One thread, epoll.  A pushed line is framed once; each recipient gets the
 * frame appended to its output buffer, and every buffer touched in one loop
 * iteration is written with one write() at the end of it.
 * Prints "READY ws=<port> push=<port> stats=<port>" once listening.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../loadgen/wsutil.h"

#define MAXFD (1 << 18)
#define NBUCKETS (1 << 17)

enum { K_NONE, K_HTTP, K_WS, K_LINE, K_LISTEN_WS, K_LISTEN_LINE };

typedef struct Conn Conn;
struct Conn {
    int fd, kind;
    uint8_t *in;
    size_t inLen, inCap;
    uint8_t *out;
    size_t outLen, outCap;
    int dirty, closeAfterWrite, wantOut;
    WsReader reader;
    char *uid;
    int regPos;      /* index in reg[], -1 if not authenticated */
    Conn *nextSame;  /* next connection of the same uid */
};

typedef struct Bucket Bucket;
struct Bucket { char *uid; Conn *first; Bucket *next; };

static Conn *conns[MAXFD];
static Bucket *buckets[NBUCKETS];
static Conn **reg;
static int regLen, regCap;
static int epfd;
static Conn *dirtyList[MAXFD];
static int dirtyLen;

static uint32_t hashStr(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h & (NBUCKETS - 1);
}

static Bucket *lookup(const char *uid, size_t n, int create) {
    uint32_t h = hashStr(uid, n);
    for (Bucket *b = buckets[h]; b; b = b->next)
        if (strlen(b->uid) == n && !memcmp(b->uid, uid, n)) return b;
    if (!create) return NULL;
    Bucket *b = calloc(1, sizeof *b);
    b->uid = strndup(uid, n);
    b->next = buckets[h];
    buckets[h] = b;
    return b;
}

static void epollSet(int fd, uint32_t events, int op) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    epoll_ctl(epfd, op, fd, &ev);
}

static void queue(Conn *c, const void *data, size_t n) {
    if (c->outLen + n > c->outCap) {
        size_t cap = c->outCap ? c->outCap : 1024;
        while (cap < c->outLen + n) cap *= 2;
        c->out = realloc(c->out, cap);
        c->outCap = cap;
    }
    memcpy(c->out + c->outLen, data, n);
    c->outLen += n;
    if (!c->dirty) { c->dirty = 1; dirtyList[dirtyLen++] = c; }
}

static void closeConn(Conn *c) {
    if (c->regPos >= 0) {
        Conn *last = reg[--regLen];
        reg[c->regPos] = last;
        last->regPos = c->regPos;
        Bucket *b = lookup(c->uid, strlen(c->uid), 0);
        for (Conn **p = &b->first; *p; p = &(*p)->nextSame)
            if (*p == c) { *p = c->nextSame; break; }
    }
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    conns[c->fd] = NULL;
    c->kind = K_NONE;  /* may still sit in dirtyList: flush skips it, then frees it */
    if (!c->dirty) { free(c->in); free(c->out); free(c->uid); free(c->reader.frag); free(c); }
}

static void flush(Conn *c) {
    while (c->outLen) {
        ssize_t w = write(c->fd, c->out, c->outLen);
        if (w < 0) {
            if (errno == EAGAIN) break;
            closeConn(c);
            return;
        }
        memmove(c->out, c->out + w, c->outLen - (size_t)w);
        c->outLen -= (size_t)w;
    }
    int want = c->outLen > 0;
    if (want != c->wantOut) { c->wantOut = want; epollSet(c->fd, want ? EPOLLIN | EPOLLOUT : EPOLLIN, EPOLL_CTL_MOD); }
    if (!c->outLen && c->closeAfterWrite) closeConn(c);
}

static void onClientFrame(void *ctx, int opcode, const uint8_t *p, size_t n) {
    Conn *c = ctx;
    if (opcode == 1 && !c->uid) {
        size_t a = 0, b = n;
        while (a < b && (p[a] == ' ' || p[a] == '\t' || p[a] == '\r' || p[a] == '\n')) a++;
        while (b > a && (p[b - 1] == ' ' || p[b - 1] == '\t' || p[b - 1] == '\r' || p[b - 1] == '\n')) b--;
        c->uid = strndup((const char *)p + a, b - a);
        Bucket *bk = lookup(c->uid, b - a, 1);
        c->nextSame = bk->first;
        bk->first = c;
        if (regLen == regCap) { regCap = regCap ? regCap * 2 : 1024; reg = realloc(reg, regCap * sizeof *reg); }
        c->regPos = regLen;
        reg[regLen++] = c;
    } else if (opcode == 8) {
        uint8_t f[4] = {0x88, 0x02, 0x03, 0xe8};
        queue(c, f, 4);
        c->closeAfterWrite = 1;
    } else if (opcode == 9) {
        uint8_t h[14];
        queue(c, h, wsHeader(h, 10, n, NULL));
        queue(c, p, n);
    }
}

static void onHttp(Conn *c) {
    uint8_t *end = memmem(c->in, c->inLen, "\r\n\r\n", 4);
    if (!end) { if (c->inLen > 16384) closeConn(c); return; }
    *end = 0;
    char *head = (char *)c->in;
    if (!strncmp(head, "GET /api/stats ", 15)) {
        char body[128], resp[256];
        int bn = snprintf(body, sizeof body, "{\"connections\": %d}", regLen);
        int n = snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", bn, body);
        queue(c, resp, (size_t)n);
        c->closeAfterWrite = 1;
        c->inLen = 0;
        return;
    }
    char *key = NULL;
    for (char *line = strstr(head, "\r\n"); line; line = strstr(line + 2, "\r\n"))
        if (!strncasecmp(line + 2, "Sec-WebSocket-Key:", 18)) { key = line + 20; break; }
    if (!key) {
        const char *r = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        queue(c, r, strlen(r));
        c->closeAfterWrite = 1;
        return;
    }
    while (*key == ' ') key++;
    char *e = key;
    while (*e && *e != '\r' && *e != ' ') e++;
    *e = 0;
    char accept[32], resp[256];
    wsAccept(key, accept);
    int n = snprintf(resp, sizeof resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
    queue(c, resp, (size_t)n);
    size_t rest = c->inLen - (size_t)((end + 4) - c->in);
    memmove(c->in, end + 4, rest);
    c->inLen = rest;
    c->kind = K_WS;
    c->reader = (WsReader){.onMessage = onClientFrame, .ctx = c, .expectMasked = 1, .maxMessage = 1 << 20};
}

static const char *push(const char *line, size_t n) {
    uint8_t hdr[14];
    size_t h = wsHeader(hdr, 1, n, NULL);
    uint8_t *frame = malloc(h + n);
    memcpy(frame, hdr, h);
    memcpy(frame + h, line, n);
    int sent = 0;
    if (n >= 17 && !memcmp(line, "{\"broadcast\":true", 17)) {
        for (int i = 0; i < regLen; i++) { queue(reg[i], frame, h + n); sent++; }
    } else {
        const char *u = memmem(line, n, "\"uid\":\"", 7);
        if (!u) { free(frame); return "error: missing \"uid\" (or \"broadcast\": true)\n"; }
        u += 7;
        const char *ue = memchr(u, '"', n - (size_t)(u - line));
        if (!ue) { free(frame); return "error: invalid JSON\n"; }
        Bucket *b = lookup(u, (size_t)(ue - u), 0);
        for (Conn *c = b ? b->first : NULL; c; c = c->nextSame) { queue(c, frame, h + n); sent++; }
    }
    free(frame);
    return sent ? "ok\n" : "fail\n";
}

static void onLineData(Conn *c) {
    size_t start = 0;
    for (;;) {
        uint8_t *nl = memchr(c->in + start, '\n', c->inLen - start);
        if (!nl) break;
        size_t len = (size_t)(nl - (c->in + start));
        if (len && c->in[start + len - 1] == '\r') len--;
        if (len) {
            const char *a = push((const char *)c->in + start, len);
            queue(c, a, strlen(a));
        }
        start = (size_t)(nl - c->in) + 1;
    }
    memmove(c->in, c->in + start, c->inLen - start);
    c->inLen -= start;
}

static Conn *newConn(int fd, int kind) {
    Conn *c = calloc(1, sizeof *c);
    c->fd = fd;
    c->kind = kind;
    c->regPos = -1;
    conns[fd] = c;
    return c;
}

static int listenOn(const char *host, int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &a.sin_addr);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4096) < 0) { perror("listen"); exit(1); }
    return fd;
}

static int portOf(int fd) {
    struct sockaddr_in a;
    socklen_t n = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &n);
    return ntohs(a.sin_port);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 0, pushPort = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--host")) host = argv[i + 1];
        else if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--push-port")) pushPort = atoi(argv[i + 1]);
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    int lw = listenOn(host, port), ll = listenOn(host, pushPort);
    newConn(lw, K_LISTEN_WS);
    newConn(ll, K_LISTEN_LINE);
    epollSet(lw, EPOLLIN, EPOLL_CTL_ADD);
    epollSet(ll, EPOLLIN, EPOLL_CTL_ADD);
    printf("READY ws=%d push=%d stats=%d\n", portOf(lw), portOf(ll), portOf(lw));
    fflush(stdout);
    static struct epoll_event ev[4096];
    static uint8_t buf[256 * 1024];
    for (;;) {
        int n = epoll_wait(epfd, ev, 4096, -1);
        for (int i = 0; i < n; i++) {
            Conn *c = conns[ev[i].data.fd];
            if (!c) continue;
            if (c->kind == K_LISTEN_WS || c->kind == K_LISTEN_LINE) {
                for (;;) {
                    int fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break;
                    if (fd >= MAXFD) { close(fd); continue; }
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    newConn(fd, c->kind == K_LISTEN_WS ? K_HTTP : K_LINE);
                    epollSet(fd, EPOLLIN, EPOLL_CTL_ADD);
                }
                continue;
            }
            if (ev[i].events & EPOLLOUT) { flush(c); if (!conns[ev[i].data.fd]) continue; }
            if (!(ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            ssize_t r = read(c->fd, buf, sizeof buf);
            if (r == 0 || (r < 0 && errno != EAGAIN)) { closeConn(c); continue; }
            if (r < 0) continue;
            if (c->inLen + (size_t)r > c->inCap) {
                size_t cap = c->inCap ? c->inCap : 4096;
                while (cap < c->inLen + (size_t)r) cap *= 2;
                c->in = realloc(c->in, cap);
                c->inCap = cap;
            }
            memcpy(c->in + c->inLen, buf, (size_t)r);
            c->inLen += (size_t)r;
            if (c->kind == K_HTTP) onHttp(c);
            if (c->kind == K_WS && c->inLen) {
                long used = wsFeed(&c->reader, c->in, c->inLen);
                if (used < 0) { closeConn(c); continue; }
                memmove(c->in, c->in + used, c->inLen - (size_t)used);
                c->inLen -= (size_t)used;
            } else if (c->kind == K_LINE) {
                onLineData(c);
            }
        }
        for (int i = 0; i < dirtyLen; i++) {
            Conn *c = dirtyList[i];
            c->dirty = 0;
            if (c->kind == K_NONE) { free(c->in); free(c->out); free(c->uid); free(c->reader.frag); free(c); continue; }
            flush(c);
        }
        dirtyLen = 0;
    }
}
