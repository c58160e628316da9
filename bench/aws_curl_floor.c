/*
 * The floor under any libcurl client of moto: CPU per request of a bare
 * curl_easy_perform loop (one reused easy handle, response discarded).
 * moto answers "Connection: close", so every request is a new loopback TCP
 * connection. Built and run by bench/aws_bench.sh:  aws_curl_floor URL [N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <curl/curl.h>

static size_t
discard(char *data, size_t size, size_t n, void *user)
{
    (void)data;
    (void)user;
    return size * n;
}

static double
cpu_seconds(void)
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + (double)r.ru_stime.tv_sec +
           r.ru_stime.tv_usec / 1e6;
}

int
main(int argc, char **argv)
{
    int n = argc > 2 ? atoi(argv[2]) : 500;
    CURL *easy;
    double started;

    if (argc < 2 || curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK ||
        (easy = curl_easy_init()) == NULL)
        return 2;
    curl_easy_setopt(easy, CURLOPT_URL, argv[1]);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
    for (int i = 0; i < 20; i++)
        curl_easy_perform(easy);
    started = cpu_seconds();
    for (int i = 0; i < n; i++)
        if (curl_easy_perform(easy) != CURLE_OK)
            return 1;
    printf("curl_floor_cpu_us_per_call %.1f\n", (cpu_seconds() - started) / n * 1e6);
    curl_easy_cleanup(easy);
    curl_global_cleanup();
    return 0;
}
