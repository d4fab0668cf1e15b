/*
 * loadgen: a compiled load generator for broadcast chat servers (tchat and
 * the benchmark peers).
 *
 * It opens N client connections, over a line (telnet) door, a WebSocket
 * (RFC 6455) door or both, over tchat's SSH door (libssh, when built
 * with it), or as IRC clients (tchat's IRC door, an IRC server), has the
 * first S of them send messages, and
 * measures what every client receives: throughput, latency, loss,
 * duplicates and reordering. One thread, one epoll loop, non-blocking
 * sockets with TCP_NODELAY, 64 KiB reads and no allocation per message, so
 * that the server, not the generator, is what a run measures.
 *
 * Build:   make -C bench/gen            (gcc, C11 + GNU extensions, libc;
 *                                       libssh too when pkg-config finds it)
 * Run:     bench/gen/loadgen --telnet 127.0.0.1:4444 --clients 100 \
 *              --senders 10 --rate 10 --seconds 5
 *          bench/gen/loadgen --ws 127.0.0.1:8080 --proto tchat --clients 50 \
 *              --senders 5 --window 8 --seconds 5
 *          bench/gen/loadgen --telnet 127.0.0.1:4444 --clients 10000 --idle
 *          bench/gen/loadgen --ssh 127.0.0.1:2222 --proto tchat --clients 100 \
 *              --senders 10 --rate 10 --seconds 10
 *          bench/gen/loadgen --irc 127.0.0.1:6667 --clients 50 --senders 5 \
 *              --window 16 --seconds 5
 *          bench/gen/loadgen --help
 *
 * Each message is "bm:<sender>:<seq>:<t_ns>" (sender = client index, seq
 * from 0 per sender, t_ns = CLOCK_MONOTONIC at send time), padded with a
 * space and 'x's up to --size bytes. Receivers look for "bm:" in every line
 * (line clients) or message (ws clients), wherever the server wraps it (a
 * "<nick> " prefix, a JSON object, ...); anything else is ignored.
 *
 * IRC clients (--irc) register as NICK b<i> / USER b<i> 0 * :bench, answer
 * every PING with a PONG, JOIN #lobby (with --rooms K, #bench-<i%K>) after
 * the 001 welcome, and are ready once the 366 (end of NAMES) of that
 * channel arrives. They send "PRIVMSG <channel> :<text>" and look for "bm:"
 * in every line (":b3!b3@host PRIVMSG #lobby :bm:..."). --proto does not
 * change them. An ERROR line from the server closes the client (a server
 * close); an error numeric (400..599) before ready fails it, after ready
 * it counts as an error.
 *
 * Modes: --rate R sends R msg/s per sender (open loop; sender s is offset
 * by s/(S*R) so that senders do not fire in lockstep); --window W keeps at
 * most W messages per sender not yet received by every other client
 * (closed loop); --idle only connects and holds the connections.
 *
 * Output (stdout): one JSON object per line. --idle prints
 * {"event":"ready","clients","connected","connect_s"} once the connect
 * phase and --settle are over; every run ends with {"event":"result",...}:
 *   clients line_clients ws_clients ssh_clients irc_clients senders mode
 *   proto rooms
 *   rate window size
 *   seconds       the actual sending period
 *   sent          messages sent; expected = sum over sends of the ready
 *                 clients in the sender's room other than the sender
 *   delivered     unique (receiver, sender, seq) copies at other clients;
 *                 lost = expected - delivered
 *   duplicates reordered   per (receiver, sender) pair, exact
 *   self_echoes   a sender's own messages coming back to it (ignored)
 *   foreign       markers not from this run (e.g. history replayed on join)
 *   deliveries_per_s  delivered / (last delivery - first send)
 *   latency_ms    {p50,p90,p99,p999,max}, null when nothing was delivered
 *   late_sends    rate mode: sends >= 1 ms after their due time
 *   skipped_sends sends dropped because 16 MiB were already queued
 *   connect_s connected errors error_samples[<=5 strings]
 *   server_closes server_close_samples[<=5 {client,door,code,reason}]
 *   gen_cpu_s gen_cpu_pct  this process over send+drain (idle: the hold)
 *   wall_s error  (error: null, or why the run did not complete)
 * Exit 0 when the run completed (even with loss), 1 when it could not run
 * or did not complete (no client connected, --max-seconds reached,
 * interrupted outside an idle hold: see "error"), 2 on usage errors.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#ifdef WITH_SSH
#include <libssh/libssh.h>
#endif

#define READ_SIZE     65536          /* bytes per read() */
#define MAX_LINE      (1u << 20)     /* longest partial line kept */
#define MAX_FRAME     (16u << 20)    /* largest ws frame or message */
#define MAX_HANDSHAKE 16384          /* largest HTTP answer to the upgrade */
#define MAX_PENDING   (16u << 20)    /* unsent bytes per client before skipping sends */
#define MAX_EVENTS    1024
#define IRC_MAX_SIZE  400            /* --size with --irc: lines stay under 512 bytes */
#define N_SAMPLES     5
#define SAMPLE_LEN    200
#define LATE_NS       1000000LL      /* a send >= 1 ms after its due time is late */
#define RATE_BURST    100            /* rate mode: sends per sender per wakeup */
#define WINDOW_BURST  1024           /* window mode: sends per sender per wakeup */
#define NS            1000000000LL

/* Latency histogram: 1 us bins below 100 ms, 1 ms bins from 100 ms to 60 s. */
#define HIST_FINE   100000
#define HIST_BINS   (HIST_FINE + 59901)

enum { K_LINE, K_WS, K_SSH, K_IRC };
enum { MODE_RATE, MODE_WINDOW, MODE_IDLE };
enum { PROTO_RAW, PROTO_TCHAT };
/* Client states. OPEN: connected (and upgraded), waiting for the greeting
 * (IRC: registering, then joining; see client_t.irc). */
enum { S_IDLE, S_CONNECTING, S_HANDSHAKE, S_OPEN, S_READY, S_CLOSED };
enum { CL_ERROR, CL_SERVER };

typedef struct client {
    int fd, idx;
    uint8_t kind, state, in_frag;
    uint8_t irc;                     /* K_IRC in S_OPEN: 1 once JOIN is sent */
    uint32_t events;                 /* epoll mask currently registered */
    char *carry;  uint32_t clen, ccap;   /* unparsed bytes from the last read */
    char *frag;   uint32_t flen, fcap;   /* ws fragmented message so far */
    char *wbuf;   uint32_t woff, wlen, wcap; /* bytes the socket did not take */
#ifdef WITH_SSH
    ssh_session ssh;                 /* K_SSH: libssh owns fd */
    ssh_channel chan;
#endif
} client_t;

/* What receiver r got from sender s: a sliding bitmap of seqs. Every seq
 * below 64*base was received; bit i of word k (ring order from head) is seq
 * 64*(base+k)+i. In-order traffic stays in the inline word (no malloc). */
typedef struct pair {
    uint64_t *ring;                  /* NULL: the window is the one word inl */
    uint64_t inl;
    uint32_t base, nw, head;
    int32_t max_seq;                 /* highest seq received, -1 for none */
} pair_t;

typedef struct close_sample {
    int client, kind, code;          /* code -1: no ws close frame */
    char reason[SAMPLE_LEN];
} close_sample_t;

static struct {
    int have_line, have_ws, have_ssh, have_irc;
    struct sockaddr_in line_addr, ws_addr, ssh_addr, irc_addr;
    char ws_host[64];
    const char *ws_path;
    double ws_share;
    int clients, senders, mode, window, size, proto, rooms, conc, verbose;
    double rate, seconds, drain, hold, settle, connect_timeout, max_seconds;
    uint64_t seed;
} opt = {
    .ws_path = "/ws", .ws_share = 0.5, .clients = 10, .senders = 1,
    .mode = -1, .size = 48, .proto = PROTO_RAW, .conc = 200,
    .seconds = 10, .drain = 5, .hold = 10, .settle = 1.0,
    .connect_timeout = 60, .max_seconds = 600,
};

static struct {
    uint64_t sent, expected, delivered, duplicates, reordered, self_echoes,
             foreign, late_sends, skipped_sends, errors, server_closes;
    int ready, failed, inflight, next_connect, line_clients, ws_clients, ssh_clients,
        irc_clients;
    int n_err, n_close;
    char err_samples[N_SAMPLES][SAMPLE_LEN];
    close_sample_t close_samples[N_SAMPLES];
    int64_t prog_start, first_connect, last_ready, send_start, send_end,
            first_send, last_delivery, max_latency;
} st;

static client_t *clients;
static pair_t *pairs;                /* [receiver * senders + sender] */
static uint64_t *sent_by;            /* per sender: messages sent */
static uint32_t *recipients;         /* per sender: ready clients that should get them */
static uint64_t *acked;              /* window: first seq not yet fully delivered */
static uint16_t *ack_count;          /* window: [sender * ring + seq % ring] */
static uint32_t ack_ring;
static int *dirty_list, n_dirty;
static uint8_t *is_dirty;
static uint64_t hist[HIST_BINS];

static int epfd;
static int have_pwait2 = 1;
static sigset_t wait_mask;
static volatile sig_atomic_t stop_signal;
static char *gbuf;  static size_t gcap;  /* carry + read buffer */
static char *tbuf;  static size_t tcap;  /* message text */
static char *sbuf;  static size_t scap;  /* outgoing frame */
static uint64_t rng_state;

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static uint64_t rng(void)                    /* xorshift64* */
{
    uint64_t x = rng_state;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    rng_state = x;
    return x * 2685821657736338717ULL;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) { fprintf(stderr, "loadgen: out of memory (%zu bytes)\n", n); exit(1); }
    return q;
}

static void *xcalloc(size_t n, size_t size)
{
    void *q = calloc(n ? n : 1, size ? size : 1);
    if (!q) { fprintf(stderr, "loadgen: out of memory (%zu x %zu bytes)\n", n, size); exit(1); }
    return q;
}

/* Grow *buf (capacity *cap) to hold at least need bytes. */
static void reserve(char **buf, uint32_t *cap, size_t need)
{
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    *buf = xrealloc(*buf, c);
    *cap = (uint32_t)c;
}

static void reserve_sz(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 4096;
    while (c < need) c *= 2;
    *buf = xrealloc(*buf, c);
    *cap = c;
}

/* Keep recorded text printable ASCII so that it needs no JSON care but quotes. */
static void sanitize(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e) *s = '?';
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static const char *kind_name(int kind)
{
    return kind == K_WS ? "ws" : kind == K_SSH ? "ssh" : kind == K_IRC ? "irc" : "line";
}

static void record_error(const char *fmt, ...)
{
    st.errors++;
    if (st.n_err >= N_SAMPLES) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st.err_samples[st.n_err], SAMPLE_LEN, fmt, ap);
    va_end(ap);
    sanitize(st.err_samples[st.n_err]);
    st.n_err++;
}

static void verbose(const char *fmt, ...)
{
    if (!opt.verbose) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: [%.3f s] ", (now_ns() - st.prog_start) / 1e9);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static char *put_u64(char *p, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) *p++ = tmp[--n];
    return p;
}

static void base64(const uint8_t *in, size_t n, char *out)
{
    static const char tb[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *out++ = tb[v >> 18]; *out++ = tb[(v >> 12) & 63];
        *out++ = tb[(v >> 6) & 63]; *out++ = tb[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        *out++ = tb[v >> 18]; *out++ = tb[(v >> 12) & 63];
        *out++ = i + 1 < n ? tb[(v >> 6) & 63] : '=';
        *out++ = '=';
    }
    *out = 0;
}

/* ------------------------------------------------------------------ */
/* sockets                                                             */

static void set_events(client_t *c, uint32_t want)
{
    if (c->events == want) return;
    struct epoll_event ev = { .events = want, .data.ptr = c };
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->events = want;
}

/* Close a client. Before it is ready anything is an error; after, a close
 * by the server (EOF, reset, close frame, failed write) is a server close
 * with a sample, and a protocol error of ours is an error. */
static void client_close(client_t *c, int why, int code, const char *fmt, ...)
{
    if (c->state == S_CLOSED || c->state == S_IDLE) return;
    char msg[SAMPLE_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sanitize(msg);
    int was_ready = c->state == S_READY;
    if (!was_ready) {
        st.inflight--;
        st.failed++;
    }
    if (!was_ready || why == CL_ERROR) {
        if (code >= 0)
            record_error("client %d %s: close %d \"%s\"%s", c->idx, kind_name(c->kind),
                         code, msg, was_ready ? "" : " before ready");
        else
            record_error("client %d %s: %s", c->idx, kind_name(c->kind), msg);
    } else {
        st.server_closes++;
        if (st.n_close < N_SAMPLES) {
            close_sample_t *s = &st.close_samples[st.n_close++];
            s->client = c->idx;
            s->kind = c->kind;
            s->code = code;
            snprintf(s->reason, sizeof s->reason, "%s", msg);
        }
    }
#ifdef WITH_SSH
    if (c->ssh) {
        /* libssh closes the socket: out of the epoll set first. */
        if (c->fd >= 0) epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        if (c->chan) ssh_channel_free(c->chan);
        ssh_disconnect(c->ssh);
        ssh_free(c->ssh);
        c->ssh = NULL;
        c->chan = NULL;
    } else
#endif
    close(c->fd);
    c->fd = -1;
    c->state = S_CLOSED;
    c->clen = c->flen = c->woff = c->wlen = 0;
}

static void flush_out(client_t *c)
{
    while (c->woff < c->wlen) {
        ssize_t k = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            client_close(c, CL_SERVER, -1, "write: %s", strerror(errno));
            return;
        }
        c->woff += (uint32_t)k;
    }
    c->woff = c->wlen = 0;
    set_events(c, EPOLLIN);
}

/* Send bytes, queueing what the socket does not take. -1: client closed. */
static int client_write(client_t *c, const char *p, size_t n)
{
    if (c->state == S_CLOSED) return -1;
#ifdef WITH_SSH
    if (c->kind == K_SSH) {
        /* libssh queues what the socket does not take and sends it as
         * it next handles the session (every read). */
        if (ssh_channel_write(c->chan, p, (uint32_t)n) == SSH_ERROR) {
            client_close(c, CL_SERVER, -1, "write: %s", ssh_get_error(c->ssh));
            return -1;
        }
        return 0;
    }
#endif
    if (c->woff == c->wlen) {
        ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);
        if (k == (ssize_t)n) return 0;
        if (k < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                client_close(c, CL_SERVER, -1, "write: %s", strerror(errno));
                return -1;
            }
            k = 0;
        }
        p += k;
        n -= (size_t)k;
        c->woff = c->wlen = 0;
    }
    if (c->woff > 0 && c->wlen + n > c->wcap) {
        memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
        c->wlen -= c->woff;
        c->woff = 0;
    }
    reserve(&c->wbuf, &c->wcap, (size_t)c->wlen + n);
    memcpy(c->wbuf + c->wlen, p, n);
    c->wlen += (uint32_t)n;
    set_events(c, EPOLLIN | EPOLLOUT);
    return 0;
}

/* Build one masked client frame in sbuf; returns its length. p must not
 * point into sbuf. */
static size_t ws_frame_build(int opcode, const char *p, size_t n)
{
    reserve_sz(&sbuf, &scap, n + 14);
    uint8_t *f = (uint8_t *)sbuf;
    size_t h = 0;
    f[h++] = (uint8_t)(0x80 | opcode);
    if (n < 126) {
        f[h++] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        f[h++] = 0x80 | 126;
        f[h++] = (uint8_t)(n >> 8);
        f[h++] = (uint8_t)n;
    } else {
        f[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) f[h++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    uint8_t m[4];
    uint32_t mk = (uint32_t)(rng() >> 32);
    memcpy(m, &mk, 4);
    memcpy(f + h, m, 4);
    h += 4;
    for (size_t i = 0; i < n; i++) f[h + i] = (uint8_t)p[i] ^ m[i & 3];
    return h + n;
}

static int ws_send(client_t *c, int opcode, const char *p, size_t n)
{
    return client_write(c, sbuf, ws_frame_build(opcode, p, n));
}

/* An IRC client's channel, written at p: #lobby, or #bench-<i%K> with
 * --rooms K. Returns the end. */
static char *irc_channel(const client_t *c, char *p)
{
    if (opt.rooms <= 0) {
        memcpy(p, "#lobby", 6);
        return p + 6;
    }
    memcpy(p, "#bench-", 7);
    return put_u64(p + 7, (uint64_t)(c->idx % opt.rooms));
}

/* A chat line: "<text>\r\n" for line clients, "PRIVMSG <channel> :<text>\r\n"
 * for IRC clients; for ws clients one text frame, JSON-wrapped for tchat.
 * text lives in tbuf with room to spare. */
static int send_text(client_t *c, size_t len)
{
    if (c->kind == K_IRC) {
        char pre[64], *q = pre;
        memcpy(q, "PRIVMSG ", 8);
        q = irc_channel(c, q + 8);
        *q++ = ' ';
        *q++ = ':';
        size_t pn = (size_t)(q - pre);
        memmove(tbuf + pn, tbuf, len);
        memcpy(tbuf, pre, pn);
        len += pn;
        tbuf[len] = '\r';
        tbuf[len + 1] = '\n';
        return client_write(c, tbuf, len + 2);
    }
    if (c->kind == K_SSH) {
        tbuf[len] = '\r';   /* typed: Enter */
        return client_write(c, tbuf, len + 1);
    }
    if (c->kind == K_LINE) {
        tbuf[len] = '\r';
        tbuf[len + 1] = '\n';
        return client_write(c, tbuf, len + 2);
    }
    if (opt.proto == PROTO_RAW) return ws_send(c, 1, tbuf, len);
    static const char pre[] = "{\"message\":\"";
    memmove(tbuf + sizeof pre - 1, tbuf, len);
    memcpy(tbuf, pre, sizeof pre - 1);
    len += sizeof pre - 1;
    tbuf[len++] = '"';
    tbuf[len++] = '}';
    return ws_send(c, 1, tbuf, len);
}

static int send_command(client_t *c, const char *cmd)
{
    size_t n = strlen(cmd);
    memcpy(tbuf, cmd, n);
    return send_text(c, n);
}

#ifdef WITH_SSH
static void on_readable(client_t *c);
static ssh_key ssh_identity;   /* one ed25519 key for every client */

/* Connect, log in as s<idx> with the key, open a shell on a pty: blocking
 * (the door's key exchange, not the generator, is what takes the time),
 * then non-blocking on the epoll loop like every client. */
static void ssh_start(client_t *c)
{
    char user[32], host[INET_ADDRSTRLEN];
    snprintf(user, sizeof user, "s%d", c->idx);
    inet_ntop(AF_INET, &opt.ssh_addr.sin_addr, host, sizeof host);
    unsigned int port = ntohs(opt.ssh_addr.sin_port);
    int no = 0;
    long timeout = (long)opt.connect_timeout + 1;
    c->ssh = ssh_new();
    if (!c->ssh) {
        client_close(c, CL_ERROR, -1, "ssh_new failed");
        return;
    }
    ssh_options_set(c->ssh, SSH_OPTIONS_PROCESS_CONFIG, &no);
    ssh_options_set(c->ssh, SSH_OPTIONS_HOST, host);
    ssh_options_set(c->ssh, SSH_OPTIONS_PORT, &port);
    ssh_options_set(c->ssh, SSH_OPTIONS_USER, user);
    ssh_options_set(c->ssh, SSH_OPTIONS_TIMEOUT, &timeout);
    ssh_options_set(c->ssh, SSH_OPTIONS_NODELAY, &(int){ 1 });
    if (ssh_connect(c->ssh) != SSH_OK) {
        client_close(c, CL_ERROR, -1, "ssh connect: %s", ssh_get_error(c->ssh));
        return;
    }
    /* The door takes any key: no known_hosts check for a loopback run. */
    if (ssh_userauth_publickey(c->ssh, NULL, ssh_identity) != SSH_AUTH_SUCCESS) {
        client_close(c, CL_ERROR, -1, "ssh login: %s", ssh_get_error(c->ssh));
        return;
    }
    c->chan = ssh_channel_new(c->ssh);
    if (!c->chan || ssh_channel_open_session(c->chan) != SSH_OK ||
        ssh_channel_request_pty_size(c->chan, "xterm", 200, 50) != SSH_OK ||
        ssh_channel_request_shell(c->chan) != SSH_OK) {
        client_close(c, CL_ERROR, -1, "ssh shell: %s", ssh_get_error(c->ssh));
        return;
    }
    ssh_set_blocking(c->ssh, 0);
    c->fd = ssh_get_fd(c->ssh);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
    c->events = EPOLLIN;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        client_close(c, CL_ERROR, -1, "epoll_ctl: %s", strerror(errno));
        return;
    }
    c->state = S_OPEN;
}
#endif

static void start_connect(client_t *c)
{
#ifdef WITH_SSH
    if (c->kind == K_SSH) {
        if (!st.first_connect) st.first_connect = now_ns();
        c->state = S_CONNECTING;
        st.inflight++;
        ssh_start(c);
        /* What came with the shell is in libssh's buffer already. */
        if (c->state == S_OPEN) on_readable(c);
        return;
    }
#endif
    const struct sockaddr_in *a = c->kind == K_WS ? &opt.ws_addr :
                                  c->kind == K_IRC ? &opt.irc_addr : &opt.line_addr;
    if (!st.first_connect) st.first_connect = now_ns();
    c->state = S_CONNECTING;
    st.inflight++;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        int e = errno;
        c->state = S_IDLE;
        st.inflight--;
        st.failed++;
        record_error("client %d %s: socket: %s", c->idx, kind_name(c->kind), strerror(e));
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
    c->events = EPOLLOUT;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        client_close(c, CL_ERROR, -1, "epoll_ctl: %s", strerror(errno));
        return;
    }
    if (connect(c->fd, (const struct sockaddr *)a, sizeof *a) < 0 && errno != EINPROGRESS)
        client_close(c, CL_ERROR, -1, "connect: %s", strerror(errno));
}

static void on_connected(client_t *c)
{
    int err = 0;
    socklen_t l = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0) err = errno;
    if (err) {
        client_close(c, CL_ERROR, -1, "connect: %s", strerror(err));
        return;
    }
    set_events(c, EPOLLIN);
    if (c->kind == K_LINE) {
        c->state = S_OPEN;
        return;
    }
    if (c->kind == K_IRC) {
        c->state = S_OPEN;
        char reg[96];
        int n = snprintf(reg, sizeof reg, "NICK b%d\r\nUSER b%d 0 * :bench\r\n",
                         c->idx, c->idx);
        client_write(c, reg, (size_t)n);
        return;
    }
    c->state = S_HANDSHAKE;
    uint8_t key[16];
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = rng();
        memcpy(key + i, &r, 8);
    }
    char key64[32], req[512];
    base64(key, sizeof key, key64);
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     opt.ws_path, opt.ws_host, key64);
    client_write(c, req, (size_t)n);
}

/* ------------------------------------------------------------------ */
/* what receivers do                                                    */

static void mark_dirty(int s)
{
    if (is_dirty[s]) return;
    is_dirty[s] = 1;
    dirty_list[n_dirty++] = s;
}

static void become_ready(client_t *c, int64_t t)
{
    c->state = S_READY;
    st.ready++;
    st.inflight--;
    st.last_ready = t;
    if (opt.proto != PROTO_TCHAT || c->kind == K_IRC) return;
    if (c->kind != K_WS && send_command(c, "/color off") < 0) return;
    if (opt.rooms > 0) {
        char cmd[64];
        snprintf(cmd, sizeof cmd, "/join #bench-%d", c->idx % opt.rooms);
        if (send_command(c, cmd) < 0) return;
        send_command(c, "/part #lobby");
    }
}

/* 1 when seq is new for this pair, 0 for a duplicate. */
static int pair_mark(pair_t *p, uint64_t seq)
{
    uint64_t w = seq >> 6;
    if (w < p->base) return 0;
    uint32_t nw = p->ring ? p->nw : 1;
    if (w - p->base >= nw) {
        uint32_t nn = nw < 4 ? 4 : nw;
        while (w - p->base >= nn) nn *= 2;
        uint64_t *r = xcalloc(nn, sizeof *r);
        if (p->ring) {
            for (uint32_t i = 0; i < nw; i++) r[i] = p->ring[(p->head + i) & (nw - 1)];
            free(p->ring);
        } else {
            r[0] = p->inl;
        }
        p->ring = r;
        p->nw = nw = nn;
        p->head = 0;
    }
    uint64_t *words = p->ring ? p->ring : &p->inl;
    uint32_t i = (uint32_t)((p->head + (w - p->base)) & (nw - 1));
    uint64_t bit = 1ULL << (seq & 63);
    if (words[i] & bit) return 0;
    words[i] |= bit;
    while (words[p->head] == ~0ULL) {
        words[p->head] = 0;
        p->head = (p->head + 1) & (nw - 1);
        p->base++;
    }
    return 1;
}

static int parse_u64(const char **pp, const char *end, uint64_t *out)
{
    const char *p = *pp;
    uint64_t v = 0;
    int n = 0;
    while (p < end && *p >= '0' && *p <= '9' && n < 19) {
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
        n++;
    }
    if (!n) return 0;
    *pp = p;
    *out = v;
    return 1;
}

static void hist_add(int64_t ns)
{
    if (ns < 0) ns = 0;
    if (ns > st.max_latency) st.max_latency = ns;
    int64_t us = ns / 1000;
    if (us < HIST_FINE) { hist[us]++; return; }
    int64_t ms = ns / 1000000;
    if (ms > 60000) ms = 60000;
    hist[HIST_FINE + (ms - 100)]++;
}

/* p points just after "bm:". */
static void on_marker(client_t *rc, const char *p, const char *end, int64_t t)
{
    uint64_t s, seq, tns;
    if (!parse_u64(&p, end, &s) || p >= end || *p++ != ':' ||
        !parse_u64(&p, end, &seq) || p >= end || *p++ != ':' ||
        !parse_u64(&p, end, &tns)) {
        st.foreign++;
        return;
    }
    /* Not from this run (e.g. history replayed from an earlier one). */
    if (s >= (uint64_t)opt.senders || seq >= sent_by[s] || st.send_start == 0 ||
        (int64_t)tns < st.send_start || (int64_t)tns > t) {
        st.foreign++;
        return;
    }
    if (s == (uint64_t)rc->idx) { st.self_echoes++; return; }
    pair_t *pr = &pairs[(size_t)rc->idx * opt.senders + s];
    if (!pair_mark(pr, seq)) { st.duplicates++; return; }
    if ((int64_t)seq < pr->max_seq) st.reordered++;
    else pr->max_seq = (int32_t)seq;
    st.delivered++;
    st.last_delivery = t;
    hist_add(t - (int64_t)tns);
    if (opt.mode == MODE_WINDOW && seq >= acked[s]) {
        uint16_t *cnt = ack_count + (size_t)s * ack_ring;
        uint32_t mask = ack_ring - 1;
        cnt[seq & mask]++;
        if (seq == acked[s]) {
            while (acked[s] < sent_by[s] && cnt[acked[s] & mask] >= recipients[s]) {
                cnt[acked[s] & mask] = 0;
                acked[s]++;
            }
            mark_dirty((int)s);
        }
    }
}

/* A numeric reply that says something went wrong (400..599), but not 422
 * (no MOTD), which servers send at registration. */
static int irc_error_numeric(int num)
{
    return num >= 400 && num < 600 && num != 422;
}

/* One IRC line, without its CR LF: PING answered, ERROR closes; before
 * ready, 001 sends the JOIN and the 366 of our channel makes the client
 * ready; after, a marker anywhere in the line counts. */
static void irc_text(client_t *c, const char *p, size_t n, int64_t t)
{
    const char *end = p + n, *cmd = p;
    if (n && *p == ':') {                        /* skip the prefix */
        cmd = memchr(p, ' ', n);
        if (!cmd) return;
        while (cmd < end && *cmd == ' ') cmd++;
    }
    const char *ce = memchr(cmd, ' ', (size_t)(end - cmd));
    if (!ce) ce = end;
    size_t cn = (size_t)(ce - cmd);
    const char *args = ce < end ? ce + 1 : end;
    if (cn == 4 && !memcmp(cmd, "PING", 4)) {
        size_t an = (size_t)(end - args);
        reserve_sz(&tbuf, &tcap, an + 8);
        memcpy(tbuf, "PONG ", 5);
        memcpy(tbuf + 5, args, an);
        memcpy(tbuf + 5 + an, "\r\n", 2);
        client_write(c, tbuf, an + 7);
        return;
    }
    if (cn == 5 && !memcmp(cmd, "ERROR", 5)) {
        client_close(c, CL_SERVER, -1, "ERROR %.*s", (int)(end - args), args);
        return;
    }
    int num = -1;
    if (cn == 3 && cmd[0] >= '0' && cmd[0] <= '9' && cmd[1] >= '0' && cmd[1] <= '9' &&
        cmd[2] >= '0' && cmd[2] <= '9')
        num = (cmd[0] - '0') * 100 + (cmd[1] - '0') * 10 + (cmd[2] - '0');
    if (c->state == S_READY) {
        if (irc_error_numeric(num)) {
            record_error("client %d irc: %.*s", c->idx, (int)(end - cmd), cmd);
            return;
        }
        if (n < 3) return;
        const char *m = memmem(p, n, "bm:", 3);
        if (m) on_marker(c, m + 3, end, t);
        return;
    }
    if (irc_error_numeric(num)) {
        client_close(c, CL_ERROR, -1, "%.*s", (int)(end - cmd), cmd);
        return;
    }
    char chan[32];
    size_t chn = (size_t)(irc_channel(c, chan) - chan);
    if (num == 1 && !c->irc) {
        char join[48];
        memcpy(join, "JOIN ", 5);
        memcpy(join + 5, chan, chn);
        memcpy(join + 5 + chn, "\r\n", 2);
        c->irc = 1;
        client_write(c, join, chn + 7);
        return;
    }
    if (num == 366 && c->irc) {
        /* "<nick> <channel> :End of NAMES list" */
        const char *ch = memchr(args, ' ', (size_t)(end - args));
        if (!ch) return;
        ch++;
        const char *che = memchr(ch, ' ', (size_t)(end - ch));
        if (!che) che = end;
        if ((size_t)(che - ch) == chn && !strncasecmp(ch, chan, chn)) become_ready(c, t);
    }
}

/* A complete line or ws message. */
static void on_text(client_t *c, const char *p, size_t n, int64_t t)
{
    if (c->kind == K_IRC) {
        if (n && p[n - 1] == '\r') n--;
        irc_text(c, p, n, t);
        return;
    }
    if (c->state != S_READY) {
        become_ready(c, t);
        if (c->state != S_READY) return;
    }
    if (n < 3) return;
    const char *m = memmem(p, n, "bm:", 3);
    if (m) on_marker(c, m + 3, p + n, t);
}

static size_t parse_lines(client_t *c, char *buf, size_t len, int64_t t)
{
    size_t off = 0;
    while (off < len && c->state != S_CLOSED) {
        char *nl = memchr(buf + off, '\n', len - off);
        if (!nl) break;
        on_text(c, buf + off, (size_t)(nl - (buf + off)), t);
        off = (size_t)(nl - buf) + 1;
    }
    return off;
}

static void ws_frame(client_t *c, int fin, int op, char *pl, size_t n, int64_t t)
{
    switch (op) {
    case 0x0:
        if (!c->in_frag) {
            client_close(c, CL_ERROR, -1, "ws continuation frame without a message");
            return;
        }
        if ((size_t)c->flen + n > MAX_FRAME) {
            client_close(c, CL_ERROR, -1, "ws message over %u bytes", MAX_FRAME);
            return;
        }
        reserve(&c->frag, &c->fcap, (size_t)c->flen + n);
        memcpy(c->frag + c->flen, pl, n);
        c->flen += (uint32_t)n;
        if (fin) {
            c->in_frag = 0;
            on_text(c, c->frag, c->flen, t);
            c->flen = 0;
        }
        return;
    case 0x1: case 0x2:
        if (c->in_frag) {
            client_close(c, CL_ERROR, -1, "ws new message inside a fragmented one");
            return;
        }
        if (fin) {
            on_text(c, pl, n, t);
        } else {
            c->in_frag = 1;
            reserve(&c->frag, &c->fcap, n);
            memcpy(c->frag, pl, n);
            c->flen = (uint32_t)n;
        }
        return;
    case 0x8: {
        int code = n >= 2 ? ((uint8_t)pl[0] << 8 | (uint8_t)pl[1]) : 1005;
        char reason[SAMPLE_LEN];
        size_t rn = n > 2 ? n - 2 : 0;
        if (rn >= sizeof reason) rn = sizeof reason - 1;
        memcpy(reason, pl + (n > 2 ? 2 : 0), rn);
        reason[rn] = 0;
        /* Answer (best effort, behind anything still queued) and close. */
        if (c->woff == c->wlen) {
            size_t fl = ws_frame_build(0x8, pl, n >= 2 ? 2 : 0);
            if (send(c->fd, sbuf, fl, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) { /* closing anyway */ }
        }
        client_close(c, CL_SERVER, code, "%s", reason);
        return;
    }
    case 0x9:
        ws_send(c, 0xA, pl, n);
        return;
    case 0xA:
        return;
    default:
        client_close(c, CL_ERROR, -1, "ws frame with unknown opcode %d", op);
    }
}

static size_t parse_frames(client_t *c, char *buf, size_t len, int64_t t)
{
    size_t off = 0;
    while (c->state != S_CLOSED && len - off >= 2) {
        uint8_t *b = (uint8_t *)buf + off;
        size_t avail = len - off, h = 2;
        uint64_t n = b[1] & 0x7f;
        if (b[0] & 0x70) {
            client_close(c, CL_ERROR, -1, "ws frame with RSV bits 0x%02x", b[0] & 0x70);
            break;
        }
        if (n == 126) {
            if (avail < 4) break;
            n = (uint64_t)b[2] << 8 | b[3];
            h = 4;
        } else if (n == 127) {
            if (avail < 10) break;
            n = 0;
            for (int i = 0; i < 8; i++) n = n << 8 | b[2 + i];
            h = 10;
        }
        if (n > MAX_FRAME) {
            client_close(c, CL_ERROR, -1, "ws frame of %" PRIu64 " bytes", n);
            break;
        }
        size_t mpos = h;
        if (b[1] & 0x80) h += 4;
        if (avail < h + n) break;
        char *pl = buf + off + h;
        if (b[1] & 0x80)
            for (size_t i = 0; i < n; i++) pl[i] ^= (char)b[mpos + (i & 3)];
        off += h + n;
        ws_frame(c, b[0] & 0x80, b[0] & 0x0f, pl, (size_t)n, t);
    }
    return off;
}

static size_t parse_input(client_t *c, char *buf, size_t len, int64_t t)
{
    if (c->kind != K_WS) return parse_lines(c, buf, len, t);
    size_t off = 0;
    if (c->state == S_HANDSHAKE) {
        char *end = memmem(buf, len, "\r\n\r\n", 4);
        if (!end) {
            if (len > MAX_HANDSHAKE)
                client_close(c, CL_ERROR, -1, "handshake answer over %d bytes", MAX_HANDSHAKE);
            return 0;
        }
        if (len < 12 || memcmp(buf, "HTTP/1.1 101", 12) != 0) {
            char *eol = memchr(buf, '\r', (size_t)(end - buf) + 1);
            int sl = (int)(eol - buf);
            client_close(c, CL_ERROR, -1, "handshake refused: %.*s", sl > 120 ? 120 : sl, buf);
            return 0;
        }
        c->state = S_OPEN;
        off = (size_t)(end - buf) + 4;
    }
    return off + parse_frames(c, buf + off, len - off, t);
}

static void on_readable(client_t *c)
{
    int ssh_rounds = 0;
    (void)ssh_rounds;
    for (int round = 0; round < 4 && c->state != S_CLOSED; round++) {
        size_t have = c->clen;
        reserve_sz(&gbuf, &gcap, have + READ_SIZE);
        if (have) memcpy(gbuf, c->carry, have);
        ssize_t n;
#ifdef WITH_SSH
        if (c->kind == K_SSH) {
            /* Everything libssh has decrypted for the channel; 0 once
             * both it and the socket are empty. */
            n = ssh_channel_read_nonblocking(c->chan, gbuf + have, READ_SIZE, 0);
            if (n == SSH_ERROR) {
                client_close(c, CL_SERVER, -1, "read: %s", ssh_get_error(c->ssh));
                return;
            }
            if (n == 0) {
                if (ssh_channel_is_eof(c->chan) || !ssh_channel_is_open(c->chan))
                    client_close(c, CL_SERVER, -1,
                                 c->state == S_READY ? "eof" : "eof before ready");
                return;
            }
            /* Until libssh has nothing left (epoll cannot see its buffer). */
            if (round == 3 && ++ssh_rounds < 1024) round = 2;
        } else
#endif
        n = read(c->fd, gbuf + have, READ_SIZE);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
            client_close(c, CL_SERVER, -1, "read: %s%s", strerror(errno),
                         c->state == S_READY ? "" : " before ready");
            return;
        }
        if (n == 0) {
            client_close(c, CL_SERVER, -1, c->state == S_READY ? "eof" : "eof before ready");
            return;
        }
        int64_t t = now_ns();
        size_t total = have + (size_t)n;
        size_t used = parse_input(c, gbuf, total, t);
        if (c->state == S_CLOSED) return;
        size_t left = total - used;
        if (c->kind != K_WS && left > MAX_LINE) {
            client_close(c, CL_ERROR, -1, "line over %u bytes", MAX_LINE);
            return;
        }
        if (left) {
            reserve(&c->carry, &c->ccap, left);
            memcpy(c->carry, gbuf + used, left);
        }
        c->clen = (uint32_t)left;
        if (n < READ_SIZE && c->kind != K_SSH) return;
    }
}

/* Wait for events until deadline (or a signal) and handle them. */
static void poll_until(int64_t deadline)
{
    static struct epoll_event evs[MAX_EVENTS];
    int64_t wait = deadline - now_ns();
    if (wait < 0 || stop_signal) wait = 0;
    int n = 0;
    if (have_pwait2) {
        struct timespec ts = { .tv_sec = wait / NS, .tv_nsec = wait % NS };
        n = epoll_pwait2(epfd, evs, MAX_EVENTS, &ts, &wait_mask);
        if (n < 0 && errno == ENOSYS) have_pwait2 = 0;
    }
    if (!have_pwait2) {
        int64_t ms = (wait + 999999) / 1000000;
        n = epoll_pwait(epfd, evs, MAX_EVENTS, (int)(ms > 1000 ? 1000 : ms), &wait_mask);
    }
    for (int i = 0; i < n; i++) {
        client_t *c = evs[i].data.ptr;
        uint32_t e = evs[i].events;
        if (c->state == S_CLOSED || c->state == S_IDLE) continue;
        if (c->state == S_CONNECTING) {
            on_connected(c);
            if (c->state == S_CLOSED || !(e & EPOLLIN)) continue;
        }
        if (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
        if (c->state != S_CLOSED && (e & EPOLLOUT) && c->woff < c->wlen) flush_out(c);
    }
}

/* ------------------------------------------------------------------ */
/* senders                                                             */

/* Build "bm:<s>:<seq>:<t_ns>" padded to --size in tbuf and send it. */
static void send_message(int s)
{
    client_t *c = &clients[s];
    if (c->wlen - c->woff > MAX_PENDING) { st.skipped_sends++; return; }
    int64_t t = now_ns();
    char *p = tbuf;
    memcpy(p, "bm:", 3);
    p = put_u64(p + 3, (uint64_t)s);
    *p++ = ':';
    p = put_u64(p, sent_by[s]);
    *p++ = ':';
    p = put_u64(p, (uint64_t)t);
    size_t len = (size_t)(p - tbuf);
    if (len < (size_t)opt.size) {
        tbuf[len] = ' ';
        memset(tbuf + len + 1, 'x', (size_t)opt.size - len - 1);
        len = (size_t)opt.size;
    }
    if (send_text(c, len) < 0) return;
    if (!st.first_send) st.first_send = t;
    sent_by[s]++;
    st.sent++;
    st.expected += recipients[s];
    if (opt.mode == MODE_WINDOW && recipients[s] == 0) acked[s] = sent_by[s];
}

static void run_rate(int64_t end)
{
    double interval = 1e9 / (opt.rate * opt.senders);   /* between any two sends */
    uint64_t m = 0;                                     /* global send number */
    while (!stop_signal) {
        int64_t t = now_ns();
        if (t >= end) break;
        uint64_t budget = (uint64_t)RATE_BURST * opt.senders;
        int64_t due = 0;
        for (; budget; budget--) {
            due = st.send_start + (int64_t)((double)m * interval);
            if (due > t || due >= end) break;
            int s = (int)(m % (uint64_t)opt.senders);
            m++;
            if (clients[s].state != S_READY) continue;
            if (t - due >= LATE_NS) st.late_sends++;
            send_message(s);
        }
        poll_until(budget == 0 ? t : (due < end ? due : end));
    }
}

static void run_window(int64_t end)
{
    for (int s = 0; s < opt.senders; s++) mark_dirty(s);
    while (!stop_signal) {
        int64_t t = now_ns();
        if (t >= end) break;
        int n = n_dirty, again = 0;
        n_dirty = 0;
        for (int i = 0; i < n; i++) {
            int s = dirty_list[i];
            is_dirty[s] = 0;
            if (clients[s].state != S_READY) continue;
            int budget = WINDOW_BURST;
            while (budget-- && sent_by[s] - acked[s] < (uint64_t)opt.window &&
                   clients[s].state == S_READY) {
                uint64_t before = sent_by[s];
                send_message(s);
                if (sent_by[s] == before) break;        /* skipped or closed */
            }
            if (budget < 0 && sent_by[s] - acked[s] < (uint64_t)opt.window) {
                mark_dirty(s);
                again = 1;
            }
        }
        poll_until(again ? t : end);
    }
}

/* ------------------------------------------------------------------ */
/* output                                                              */

static double pct_ms(double q)
{
    uint64_t rank = (uint64_t)ceil(q * (double)st.delivered);
    if (rank < 1) rank = 1;
    uint64_t cum = 0;
    for (int i = 0; i < HIST_BINS; i++) {
        cum += hist[i];
        if (cum >= rank) {
            double v = i < HIST_FINE ? i / 1000.0 : (double)(i - HIST_FINE + 100) + 0.5;
            double mx = st.max_latency / 1e6;
            return v > mx ? mx : v;
        }
    }
    return st.max_latency / 1e6;
}

static double rusage_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static double connect_s(void)
{
    return st.last_ready && st.first_connect ? (st.last_ready - st.first_connect) / 1e9 : 0.0;
}

static void print_result(int connected, double cpu_s, double cpu_wall_s, const char *error)
{
    static const char *modes[] = { "rate", "window", "idle" };
    FILE *f = stdout;
    double seconds = st.send_end > st.send_start ? (st.send_end - st.send_start) / 1e9 : 0.0;
    double dspan = st.last_delivery > st.first_send ? (st.last_delivery - st.first_send) / 1e9 : 0.0;
    fprintf(f, "{\"event\":\"result\",\"clients\":%d,\"line_clients\":%d,\"ws_clients\":%d,"
               "\"ssh_clients\":%d,\"irc_clients\":%d,\"senders\":%d,\"mode\":\"%s\","
               "\"proto\":\"%s\",\"rooms\":%d,",
            opt.clients, st.line_clients, st.ws_clients, st.ssh_clients, st.irc_clients,
            opt.senders, modes[opt.mode],
            opt.proto == PROTO_TCHAT ? "tchat" : "raw", opt.rooms);
    if (opt.mode == MODE_RATE) fprintf(f, "\"rate\":%g,", opt.rate);
    else fprintf(f, "\"rate\":null,");
    if (opt.mode == MODE_WINDOW) fprintf(f, "\"window\":%d,", opt.window);
    else fprintf(f, "\"window\":null,");
    fprintf(f, "\"size\":%d,\"seconds\":%.3f,\"sent\":%" PRIu64 ",\"expected\":%" PRIu64
               ",\"delivered\":%" PRIu64 ",\"lost\":%" PRId64 ",\"duplicates\":%" PRIu64
               ",\"reordered\":%" PRIu64 ",\"self_echoes\":%" PRIu64 ",\"foreign\":%" PRIu64
               ",\"deliveries_per_s\":%.1f,",
            opt.size, seconds, st.sent, st.expected, st.delivered,
            (int64_t)st.expected - (int64_t)st.delivered, st.duplicates, st.reordered,
            st.self_echoes, st.foreign, dspan > 0 ? st.delivered / dspan : 0.0);
    if (st.delivered)
        fprintf(f, "\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,"
                   "\"max\":%.3f},",
                pct_ms(0.50), pct_ms(0.90), pct_ms(0.99), pct_ms(0.999), st.max_latency / 1e6);
    else
        fprintf(f, "\"latency_ms\":null,");
    fprintf(f, "\"late_sends\":%" PRIu64 ",\"skipped_sends\":%" PRIu64
               ",\"connect_s\":%.3f,\"connected\":%d,\"errors\":%" PRIu64 ",\"error_samples\":[",
            st.late_sends, st.skipped_sends, connect_s(), connected, st.errors);
    for (int i = 0; i < st.n_err; i++) {
        if (i) fputc(',', f);
        json_str(f, st.err_samples[i]);
    }
    fprintf(f, "],\"server_closes\":%" PRIu64 ",\"server_close_samples\":[", st.server_closes);
    for (int i = 0; i < st.n_close; i++) {
        close_sample_t *s = &st.close_samples[i];
        fprintf(f, "%s{\"client\":%d,\"door\":\"%s\",\"code\":", i ? "," : "", s->client,
                kind_name(s->kind));
        if (s->code >= 0) fprintf(f, "%d", s->code);
        else fprintf(f, "null");
        fprintf(f, ",\"reason\":");
        json_str(f, s->reason);
        fputc('}', f);
    }
    fprintf(f, "],\"gen_cpu_s\":%.3f,\"gen_cpu_pct\":%.1f,\"wall_s\":%.3f,\"error\":",
            cpu_s, cpu_wall_s > 0 ? cpu_s / cpu_wall_s * 100.0 : 0.0,
            (now_ns() - st.prog_start) / 1e9);
    if (error) json_str(f, error);
    else fprintf(f, "null");
    fprintf(f, "}\n");
    fflush(f);
}

/* ------------------------------------------------------------------ */
/* command line                                                        */

static void usage(FILE *f)
{
    fprintf(f,
"usage: loadgen (--telnet ADDR:PORT | --ws ADDR:PORT | both | --ssh ADDR:PORT |\n"
"                --irc ADDR:PORT) (--rate R | --window W | --idle) [options]\n"
"\n"
"Doors (IPv4 literals, e.g. 127.0.0.1:4444):\n"
"  --telnet A:P            line clients: CR LF lines, telnet bytes ignored\n"
"  --ws A:P                RFC 6455 clients (no extensions, no Origin)\n"
"  --ws-path PATH          upgrade path (default /ws)\n"
#ifdef WITH_SSH
"  --ssh A:P               SSH clients (libssh; alone, not with the others):\n"
"                          user s<i>, one ed25519 key, a 200x50 xterm pty,\n"
"                          each line typed ending in CR\n"
#else
"  --ssh A:P               (this build is without libssh: apt-get install\n"
"                          libssh-dev pkg-config; make -C bench/gen clean all)\n"
#endif
"  --irc A:P               IRC clients (alone, not with the others): NICK and\n"
"                          USER b<i>, PING answered, JOIN #lobby (or\n"
"                          #bench-(i%%K) with --rooms K) after 001, ready at\n"
"                          its 366; PRIVMSG <channel> :TEXT; --proto ignored\n"
"  --ws-share F            with both doors, the share of ws clients, 0..1\n"
"                          (default 0.5: client i is ws when\n"
"                          floor((i+1)F) > floor(iF))\n"
"Load:\n"
"  --clients N             connections, 1..20000 (default 10)\n"
"  --senders S             clients 0..S-1 send, 0..N (default 1)\n"
"  --rate R                open loop: R msg/s per sender, 0 < R <= 100000\n"
"  --window W              closed loop: at most W messages per sender not yet\n"
"                          received by every other client, 1..100000\n"
"  --idle                  no senders: connect, print the ready line, hold\n"
"  --seconds T             sending period, 0 < T <= 600 (default 10)\n"
"  --size B                message text bytes, 1..1048576 (default 48;\n"
"                          with --irc at most 400: IRC lines are 512 bytes)\n"
"  --proto raw|tchat       raw: lines / text frames as is (default); tchat:\n"
"                          ws frames are {\"message\":TEXT}, line and ssh\n"
"                          clients send /color off when ready\n"
"  --rooms K               tchat or --irc: client i joins #bench-(i%%K) (tchat:\n"
"                          and parts #lobby); deliveries are expected within\n"
"                          rooms\n"
"Timing:\n"
"  --connect-concurrency C connections in flight until ready (default 200)\n"
"  --connect-timeout T     bound on the whole connect phase (default 60 s)\n"
"  --settle S              wait after all are ready (default 1.0 s)\n"
"  --drain D               wait for deliveries after sending (default 5 s)\n"
"  --hold H                idle: hold the connections (default 10 s;\n"
"                          SIGTERM or SIGINT ends it earlier)\n"
"  --max-seconds M         hard cap on the whole run (default 600)\n"
"Other:\n"
"  --seed N                PRNG seed (ws keys and masks)\n"
"  -v, --verbose           progress on stderr\n"
"  -h, --help              this text\n"
"\n"
"stdout: JSON lines, {\"event\":\"ready\",...} (idle) and {\"event\":\"result\",...}.\n"
"Exit: 0 run completed, 1 could not run or incomplete, 2 usage error.\n");
}

__attribute__((noreturn, format(printf, 1, 2)))
static void die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (try --help)\n");
    va_end(ap);
    exit(2);
}

static double num(const char *name, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        die_usage("%s: %s is not a number in %g..%g", name, s, lo, hi);
    return v;
}

static int inum(const char *name, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        die_usage("%s: %s is not an integer in %ld..%ld", name, s, lo, hi);
    return (int)v;
}

static void parse_addr(const char *name, const char *s, struct sockaddr_in *a, char *host, size_t hn)
{
    const char *colon = strrchr(s, ':');
    char ip[64];
    if (!colon || colon == s || (size_t)(colon - s) >= sizeof ip)
        die_usage("%s: expected ADDR:PORT, got %s", name, s);
    memcpy(ip, s, (size_t)(colon - s));
    ip[colon - s] = 0;
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)inum(name, colon + 1, 1, 65535));
    if (inet_pton(AF_INET, ip, &a->sin_addr) != 1)
        die_usage("%s: %s is not an IPv4 address", name, ip);
    if (host) snprintf(host, hn, "%s", s);
}

static void parse_args(int argc, char **argv)
{
    enum { O_TELNET = 256, O_WS, O_WSPATH, O_WSSHARE, O_CLIENTS, O_SENDERS, O_RATE,
           O_WINDOW, O_IDLE, O_SECONDS, O_SIZE, O_PROTO, O_ROOMS, O_CONC, O_CTIMEOUT,
           O_SETTLE, O_DRAIN, O_HOLD, O_MAXS, O_SEED, O_SSH, O_IRC };
    static const struct option lo[] = {
        { "telnet", 1, 0, O_TELNET }, { "ws", 1, 0, O_WS }, { "ssh", 1, 0, O_SSH }, { "irc", 1, 0, O_IRC },
        { "ws-path", 1, 0, O_WSPATH },
        { "ws-share", 1, 0, O_WSSHARE }, { "clients", 1, 0, O_CLIENTS },
        { "senders", 1, 0, O_SENDERS }, { "rate", 1, 0, O_RATE }, { "window", 1, 0, O_WINDOW },
        { "idle", 0, 0, O_IDLE }, { "seconds", 1, 0, O_SECONDS }, { "size", 1, 0, O_SIZE },
        { "proto", 1, 0, O_PROTO }, { "rooms", 1, 0, O_ROOMS },
        { "connect-concurrency", 1, 0, O_CONC }, { "connect-timeout", 1, 0, O_CTIMEOUT },
        { "settle", 1, 0, O_SETTLE }, { "drain", 1, 0, O_DRAIN }, { "hold", 1, 0, O_HOLD },
        { "max-seconds", 1, 0, O_MAXS }, { "seed", 1, 0, O_SEED },
        { "verbose", 0, 0, 'v' }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 },
    };
    int senders_given = 0, modes = 0, o;
    while ((o = getopt_long(argc, argv, "vh", lo, NULL)) != -1) {
        switch (o) {
        case O_TELNET: parse_addr("--telnet", optarg, &opt.line_addr, NULL, 0); opt.have_line = 1; break;
        case O_WS: parse_addr("--ws", optarg, &opt.ws_addr, opt.ws_host, sizeof opt.ws_host); opt.have_ws = 1; break;
        case O_SSH:
#ifdef WITH_SSH
            parse_addr("--ssh", optarg, &opt.ssh_addr, NULL, 0);
            opt.have_ssh = 1;
            break;
#else
            die_usage("--ssh: this loadgen was built without libssh (apt install libssh-dev, make -C bench/gen clean all)");
#endif
        case O_IRC: parse_addr("--irc", optarg, &opt.irc_addr, NULL, 0); opt.have_irc = 1; break;
        case O_WSPATH:
            if (optarg[0] != '/' || strlen(optarg) > 256 || strpbrk(optarg, " \t\r\n"))
                die_usage("--ws-path: a path starting with / without spaces, at most 256 bytes");
            opt.ws_path = optarg;
            break;
        case O_WSSHARE: opt.ws_share = num("--ws-share", optarg, 0, 1); break;
        case O_CLIENTS: opt.clients = inum("--clients", optarg, 1, 20000); break;
        case O_SENDERS: opt.senders = inum("--senders", optarg, 0, 20000); senders_given = 1; break;
        case O_RATE: opt.rate = num("--rate", optarg, 0, 100000); opt.mode = MODE_RATE; modes++;
            if (opt.rate <= 0) die_usage("--rate: must be > 0");
            break;
        case O_WINDOW: opt.window = inum("--window", optarg, 1, 100000); opt.mode = MODE_WINDOW; modes++; break;
        case O_IDLE: opt.mode = MODE_IDLE; modes++; break;
        case O_SECONDS: opt.seconds = num("--seconds", optarg, 0, 600);
            if (opt.seconds <= 0) die_usage("--seconds: must be > 0");
            break;
        case O_SIZE: opt.size = inum("--size", optarg, 1, 1 << 20); break;
        case O_PROTO:
            if (!strcmp(optarg, "raw")) opt.proto = PROTO_RAW;
            else if (!strcmp(optarg, "tchat")) opt.proto = PROTO_TCHAT;
            else die_usage("--proto: raw or tchat, not %s", optarg);
            break;
        case O_ROOMS: opt.rooms = inum("--rooms", optarg, 0, 20000); break;
        case O_CONC: opt.conc = inum("--connect-concurrency", optarg, 1, 20000); break;
        case O_CTIMEOUT: opt.connect_timeout = num("--connect-timeout", optarg, 0.001, 3600); break;
        case O_SETTLE: opt.settle = num("--settle", optarg, 0, 600); break;
        case O_DRAIN: opt.drain = num("--drain", optarg, 0, 600); break;
        case O_HOLD: opt.hold = num("--hold", optarg, 0, 86400); break;
        case O_MAXS: opt.max_seconds = num("--max-seconds", optarg, 1, 86400); break;
        case O_SEED: opt.seed = strtoull(optarg, NULL, 0); break;
        case 'v': opt.verbose = 1; break;
        case 'h': usage(stdout); exit(0);
        default: exit(2);
        }
    }
    if (optind < argc) die_usage("unexpected argument %s", argv[optind]);
    if (opt.have_ssh && (opt.have_line || opt.have_ws))
        die_usage("--ssh goes alone, without --telnet or --ws");
    if (opt.have_irc && (opt.have_line || opt.have_ws || opt.have_ssh))
        die_usage("--irc goes alone, without --telnet, --ws or --ssh");
    if (!opt.have_line && !opt.have_ws && !opt.have_ssh && !opt.have_irc)
        die_usage("give --telnet and/or --ws, or --ssh, or --irc");
    if (modes != 1) die_usage("give exactly one of --rate, --window, --idle");
    if (opt.mode == MODE_IDLE) {
        if (senders_given && opt.senders) die_usage("--idle has no senders");
        opt.senders = 0;
    }
    if (opt.senders > opt.clients) die_usage("--senders %d > --clients %d", opt.senders, opt.clients);
    if (opt.rooms && opt.proto != PROTO_TCHAT && !opt.have_irc)
        die_usage("--rooms needs --proto tchat or --irc");
    if (opt.have_irc && opt.size > IRC_MAX_SIZE)
        die_usage("--size %d: at most %d with --irc (IRC lines are at most 512 bytes)",
                  opt.size, IRC_MAX_SIZE);
    if ((double)opt.clients * opt.senders > 25e6)
        die_usage("clients x senders over 25,000,000 pairs to track");
}

/* ------------------------------------------------------------------ */

static void on_signal(int sig) { stop_signal = sig; }

static void setup(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < (rlim_t)opt.clients + 16) {
        fprintf(stderr, "loadgen: %d clients need %d file descriptors, the limit is %llu\n",
                opt.clients, opt.clients + 16, (unsigned long long)rl.rlim_cur);
        exit(1);
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, &wait_mask);   /* delivered only inside epoll waits */
    sigdelset(&wait_mask, SIGTERM);
    sigdelset(&wait_mask, SIGINT);

    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);  /* wake up on time for --rate */
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) { perror("loadgen: epoll_create1"); exit(1); }
    rng_state = opt.seed ? opt.seed : ((uint64_t)now_ns() ^ ((uint64_t)getpid() << 32));
    if (!rng_state) rng_state = 1;

    clients = xcalloc((size_t)opt.clients, sizeof *clients);
    for (int i = 0; i < opt.clients; i++) {
        client_t *c = &clients[i];
        c->idx = i;
        c->fd = -1;
        if (opt.have_ssh)
            c->kind = K_SSH;
        else if (opt.have_irc)
            c->kind = K_IRC;
        else if (opt.have_line && opt.have_ws)
            c->kind = floor((i + 1) * opt.ws_share) > floor(i * opt.ws_share) ? K_WS : K_LINE;
        else
            c->kind = opt.have_ws ? K_WS : K_LINE;
        if (c->kind == K_WS) st.ws_clients++;
        else if (c->kind == K_SSH) st.ssh_clients++;
        else if (c->kind == K_IRC) st.irc_clients++;
        else st.line_clients++;
    }
    int s = opt.senders;
    pairs = xcalloc((size_t)opt.clients * (size_t)s, sizeof *pairs);
    for (size_t i = 0; i < (size_t)opt.clients * (size_t)s; i++) pairs[i].max_seq = -1;
    sent_by = xcalloc((size_t)s, sizeof *sent_by);
    recipients = xcalloc((size_t)s, sizeof *recipients);
    acked = xcalloc((size_t)s, sizeof *acked);
    dirty_list = xcalloc((size_t)s, sizeof *dirty_list);
    is_dirty = xcalloc((size_t)s, 1);
    if (opt.mode == MODE_WINDOW) {
        ack_ring = 2;
        while (ack_ring <= (uint32_t)opt.window) ack_ring *= 2;
        ack_count = xcalloc((size_t)s * ack_ring, sizeof *ack_count);
    }
#ifdef WITH_SSH
    if (opt.have_ssh && ssh_pki_generate(SSH_KEYTYPE_ED25519, 0, &ssh_identity) != SSH_OK) {
        fprintf(stderr, "loadgen: could not make an ed25519 key\n");
        exit(1);
    }
#endif
    reserve_sz(&tbuf, &tcap, (size_t)opt.size + 256);
    reserve_sz(&gbuf, &gcap, READ_SIZE + 4096);
}

/* Per sender, the ready clients in its room other than itself. */
static void count_recipients(void)
{
    int k = opt.rooms > 0 ? opt.rooms : 1;
    uint32_t *room_ready = xcalloc((size_t)k, sizeof *room_ready);
    for (int i = 0; i < opt.clients; i++)
        if (clients[i].state == S_READY) room_ready[i % k]++;
    for (int s = 0; s < opt.senders; s++)
        recipients[s] = room_ready[s % k] - (clients[s].state == S_READY ? 1 : 0);
    free(room_ready);
}

static const char *stop_reason(int64_t hard_end)
{
    static char buf[64];
    if (stop_signal) {
        snprintf(buf, sizeof buf, "interrupted by signal %d", (int)stop_signal);
        return buf;
    }
    if (now_ns() >= hard_end) {
        snprintf(buf, sizeof buf, "--max-seconds %g reached", opt.max_seconds);
        return buf;
    }
    return NULL;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    st.prog_start = now_ns();
    setup();
    int64_t hard_end = st.prog_start + (int64_t)(opt.max_seconds * NS);
    const char *error = NULL;

    /* Connect, at most --connect-concurrency in flight until ready. */
    int64_t cend = min64(st.prog_start + (int64_t)(opt.connect_timeout * NS), hard_end);
    verbose("connecting %d clients", opt.clients);
    while (!stop_signal) {
        while (st.inflight < opt.conc && st.next_connect < opt.clients)
            start_connect(&clients[st.next_connect++]);
        if (st.ready + st.failed >= opt.clients || now_ns() >= cend) break;
        poll_until(cend);
    }
    if (st.ready + st.failed < opt.clients) {
        int pending = 0;
        for (int i = 0; i < st.next_connect; i++) {
            int s = clients[i].state;
            if (s == S_CONNECTING || s == S_HANDSHAKE || s == S_OPEN) {
                client_close(&clients[i], CL_ERROR, -1, "connect phase ended %s",
                             s == S_CONNECTING ? "while connecting" :
                             s == S_HANDSHAKE ? "with no answer to the upgrade" :
                             clients[i].kind != K_IRC ? "with no greeting" :
                             clients[i].irc ? "with no 366 (end of NAMES) for its channel" :
                             "with no 001 (welcome)");
                pending++;
            }
        }
        int unstarted = opt.clients - st.next_connect;
        if (unstarted) {
            st.errors += (uint64_t)unstarted - 1;
            st.failed += unstarted;
            record_error("%d clients never started: connect phase ended", unstarted);
        }
        verbose("connect phase ended: %d in flight, %d not started", pending, unstarted);
        error = stop_reason(hard_end);
    }
    int connected = st.ready;
    verbose("%d ready, %d failed, connect_s %.3f", st.ready, st.failed, connect_s());
    if (connected == 0) {
        print_result(0, 0, 0, error ? error : "no client connected");
        return 1;
    }

    /* Settle: keep reading (replies to the tchat commands, joins). */
    int64_t settle_end = min64(now_ns() + (int64_t)(opt.settle * NS), hard_end);
    while (!stop_signal && !error && now_ns() < settle_end) poll_until(settle_end);
    if (!error) error = stop_reason(hard_end);

    if (opt.mode == MODE_IDLE) {
        if (!error) {
            printf("{\"event\":\"ready\",\"clients\":%d,\"connected\":%d,\"connect_s\":%.3f}\n",
                   opt.clients, connected, connect_s());
            fflush(stdout);
        }
        double cpu0 = rusage_s();
        int64_t h0 = now_ns(), hend = min64(h0 + (int64_t)(opt.hold * NS), hard_end);
        while (!stop_signal && !error && now_ns() < hend) poll_until(hend);
        if (!error && !stop_signal) error = stop_reason(hard_end);   /* a signal ends idle cleanly */
        double wall = (now_ns() - h0) / 1e9;
        print_result(connected, rusage_s() - cpu0, wall, error);
        return error ? 1 : 0;
    }

    /* Send for --seconds, then drain. */
    double cpu0 = rusage_s();
    int64_t p0 = now_ns();
    if (!error) {
        count_recipients();
        st.send_start = now_ns();
        int64_t send_end = min64(st.send_start + (int64_t)(opt.seconds * NS), hard_end);
        verbose("sending for %.3f s", opt.seconds);
        if (opt.senders > 0) {
            if (opt.mode == MODE_RATE) run_rate(send_end);
            else run_window(send_end);
        } else {
            while (!stop_signal && now_ns() < send_end) poll_until(send_end);
        }
        st.send_end = now_ns();
        error = stop_reason(hard_end);
        int64_t dend = min64(st.send_end + (int64_t)(opt.drain * NS), hard_end);
        verbose("sent %" PRIu64 ", draining", st.sent);
        while (!error && !stop_signal && st.delivered < st.expected && now_ns() < dend)
            poll_until(dend);
        if (!error) error = stop_reason(hard_end);
    }
    double wall = (now_ns() - p0) / 1e9;
    print_result(connected, rusage_s() - cpu0, wall, error);
    return error ? 1 : 0;
}
