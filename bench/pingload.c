/* pingload: one client, one keep-alive connection, sequential GET /_ping for a bounded time.
 * Prints "<requests> <seconds>" on stdout. Traffic goes only to the unix socket or TCP address given
 * (the harness passes loopback addresses only).
 *   pingload unix PATH SECONDS
 *   pingload tcp HOST PORT SECONDS [CA CERT KEY]   (with CA/CERT/KEY: mutual TLS)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static SSL *ssl;
static int fd;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int xwrite(const char *buf, int n) {
    return ssl ? SSL_write(ssl, buf, n) : (int)write(fd, buf, n);
}

static int xread(char *buf, int n) {
    return ssl ? SSL_read(ssl, buf, n) : (int)read(fd, buf, n);
}

/* Read one response: headers, then Content-Length bytes of body. Leftover bytes are kept. */
static char rbuf[65536];
static int rlen;

static int read_response(void) {
    for (;;) {
        char *end = memmem(rbuf, rlen, "\r\n\r\n", 4);
        if (end) {
            int head = (int)(end - rbuf) + 4;
            if (strncmp(rbuf, "HTTP/1.1 200", 12) != 0) {
                fprintf(stderr, "unexpected response: %.40s\n", rbuf);
                return -1;
            }
            char *cl = memmem(rbuf, head, "ontent-Length: ", 15);
            int body = cl ? atoi(cl + 15) : 0;
            while (rlen < head + body) {
                int n = xread(rbuf + rlen, sizeof rbuf - rlen);
                if (n <= 0) return -1;
                rlen += n;
            }
            memmove(rbuf, rbuf + head + body, rlen - head - body);
            rlen -= head + body;
            return 0;
        }
        int n = xread(rbuf + rlen, sizeof rbuf - rlen);
        if (n <= 0) return -1;
        rlen += n;
    }
}

int main(int argc, char **argv) {
    double seconds;
    if (argc >= 4 && strcmp(argv[1], "unix") == 0) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        strncpy(sa.sun_path, argv[2], sizeof sa.sun_path - 1);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("connect"); return 1; }
        seconds = atof(argv[3]);
    } else if (argc >= 5 && strcmp(argv[1], "tcp") == 0) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
        inet_pton(AF_INET, argv[2], &sa.sin_addr);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("connect"); return 1; }
        seconds = atof(argv[4]);
        if (argc >= 8) {
            SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
            SSL_CTX_load_verify_locations(ctx, argv[5], NULL);
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
            if (SSL_CTX_use_certificate_file(ctx, argv[6], SSL_FILETYPE_PEM) != 1 ||
                SSL_CTX_use_PrivateKey_file(ctx, argv[7], SSL_FILETYPE_PEM) != 1) {
                ERR_print_errors_fp(stderr);
                return 1;
            }
            ssl = SSL_new(ctx);
            SSL_set_fd(ssl, fd);
            if (SSL_connect(ssl) != 1) { ERR_print_errors_fp(stderr); return 1; }
        }
    } else {
        fprintf(stderr, "usage: pingload unix PATH SECONDS | tcp HOST PORT SECONDS [CA CERT KEY]\n");
        return 2;
    }
    static const char req[] = "GET /_ping HTTP/1.1\r\nHost: bench\r\n\r\n";
    long count = 0;
    double start = now(), deadline = start + seconds;
    while (1) {
        if (xwrite(req, sizeof req - 1) <= 0 || read_response() < 0) { fprintf(stderr, "connection failed\n"); return 1; }
        count++;
        if ((count & 255) == 0 && now() >= deadline) break;
    }
    printf("%ld %.6f\n", count, now() - start);
    return 0;
}
