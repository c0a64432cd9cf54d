// nats-c-scenarios: the official C client (nats.c) against one server.
//
//   nats-c-scenarios <scenario> <server-url>   runs one scenario; exit 0 on pass, 1 on failure
//   nats-c-scenarios --list                    prints the scenario names, one per line
//
// tests/clients/python/test_c_client.py builds this program and runs every scenario against
// natrix and against the reference nats-server: both must pass. Scenarios live in core.c,
// jetstream.c, consumers.c and kv.c; the helpers they share are here.
#include "scenarios.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static const struct {
    const char *name;
    scenario_fn fn;
} scenarios[] = {
    // Core NATS (core.c).
    {"connect_info", connect_info},
    {"pubsub_sync", pubsub_sync},
    {"pubsub_async", pubsub_async},
    {"wildcards", wildcards},
    {"queue_group", queue_group},
    {"request_reply", request_reply},
    {"headers", headers},
    {"auto_unsubscribe", auto_unsubscribe},
    {"max_payload", max_payload},
    {"drain", drain},
    {"flush_rtt_stats", flush_rtt_stats},
    // Needs three clustered servers, `url` being the first (the driver starts them).
    {"cluster_discovery", cluster_discovery},
    // JetStream streams and publishing (jetstream.c).
    {"js_publish_acks", js_publish_acks},
    {"js_publish_async", js_publish_async},
    {"js_stream_ops", js_stream_ops},
    {"js_stream_admin", js_stream_admin},
    {"js_limits", js_limits},
    {"js_stream_features", js_stream_features},
    // JetStream consumers (consumers.c).
    {"pull_consumer", pull_consumer},
    {"pull_nak_term", pull_nak_term},
    {"ack_wait_in_progress", ack_wait_in_progress},
    {"fetch_request", fetch_request},
    {"push_deliver_policies", push_deliver_policies},
    {"push_callback_manual_ack", push_callback_manual_ack},
    {"ordered_consumer", ordered_consumer},
    {"flow_control_heartbeat", flow_control_heartbeat},
    {"consumer_limits", consumer_limits},
    {"consumer_variants", consumer_variants},
    // Key/Value (kv.c).
    {"kv_put_get", kv_put_get},
    {"kv_delete_purge_history", kv_delete_purge_history},
    {"kv_watch", kv_watch},
    {"kv_status_delete", kv_status_delete},
};
#define NUM_SCENARIOS ((int) (sizeof(scenarios) / sizeof(scenarios[0])))

jsErrCode jerr;
static const char *current = "?";

// Asynchronous errors nats.c reports (slow consumer, missed heartbeat, ...): none is expected.
static counter async_errors;

void fail_at(const char *file, int line, bool nats_error, const char *fmt, ...)
{
    va_list ap;
    natsStatus last = NATS_OK;
    const char *text = nats_GetLastError(&last);

    printf("FAIL [%s] %s:%d: ", current, file, line);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    if (jerr != 0)
        printf("  jsErrCode: %d\n", (int) jerr);
    if (nats_error && (last != NATS_OK || (text != NULL && text[0] != '\0'))) {
        printf("  nats_GetLastError: %s (%d): %s\n", natsStatus_GetText(last), (int) last,
               text ? text : "");
        nats_PrintLastErrorStack(stdout);
    }
    fflush(stdout);
    exit(1);
}

const char *check_msg(const char *fmt, ...)
{
    static char buf[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return buf;
}

void counter_init(counter *c)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cond, NULL);
}

void counter_destroy(counter *c)
{
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->mu);
}

void counter_add(counter *c, int n)
{
    pthread_mutex_lock(&c->mu);
    c->count += n;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

int counter_get(counter *c)
{
    pthread_mutex_lock(&c->mu);
    int n = c->count;
    pthread_mutex_unlock(&c->mu);
    return n;
}

void counter_error(counter *c, const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&c->mu);
    if (c->error[0] == '\0') {
        va_start(ap, fmt);
        vsnprintf(c->error, sizeof(c->error), fmt, ap);
        va_end(ap);
    }
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

int counter_wait(counter *c, int n, int64_t timeout_ms)
{
    struct timespec deadline;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->mu);
    while (c->count < n && c->error[0] == '\0') {
        if (pthread_cond_timedwait(&c->cond, &c->mu, &deadline) == ETIMEDOUT)
            break;
    }
    int got = c->count;
    pthread_mutex_unlock(&c->mu);
    return got;
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err,
                           void *closure)
{
    (void) nc;
    (void) closure;
    counter_error(&async_errors, "asynchronous error %s (%d) on subscription %s",
                  natsStatus_GetText(err), (int) err,
                  sub ? natsSubscription_GetSubject(sub) : "(none)");
    counter_add(&async_errors, 1);
}

natsConnection *connect_to(const char *url)
{
    natsOptions *opts = NULL;
    natsConnection *nc = NULL;

    OK(natsOptions_Create(&opts));
    OK(natsOptions_SetURL(opts, url));
    OK(natsOptions_SetTimeout(opts, 5000));
    OK(natsOptions_SetAllowReconnect(opts, false));
    OK(natsOptions_SetErrorHandler(opts, on_async_error, NULL));
    OK(natsConnection_Connect(&nc, opts));
    natsOptions_Destroy(opts);
    return nc;
}

jsCtx *jetstream(natsConnection *nc)
{
    jsCtx *js = NULL;
    jsOptions o;

    OK(jsOptions_Init(&o));
    o.Wait = 5000;
    OK(natsConnection_JetStream(&js, nc, &o));
    return js;
}

void add_stream(jsCtx *js, const char *name, const char *subject, ...)
{
    const char *subjects[16];
    int n = 0;
    va_list ap;
    jsStreamConfig cfg;
    jsStreamInfo *si = NULL;

    va_start(ap, subject);
    for (const char *s = subject; s != NULL && n < 16; s = va_arg(ap, const char *))
        subjects[n++] = s;
    va_end(ap);

    OK(jsStreamConfig_Init(&cfg));
    cfg.Name = name;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = n;
    OK(js_AddStream(&si, js, &cfg, NULL, &jerr));
    CHECK_STR(si->Config->Name, name);
    CHECK_INT(si->State.Msgs, 0);
    jsStreamInfo_Destroy(si);
}

void js_publish_n(jsCtx *js, const char *subject, const char *prefix, int n)
{
    char data[64];

    for (int i = 1; i <= n; i++) {
        jsPubAck *pa = NULL;
        int len = snprintf(data, sizeof(data), "%s-%d", prefix, i);
        OK(js_Publish(&pa, js, subject, data, len, NULL, &jerr));
        CHECK(pa->Sequence > 0, "publish ack of message %d has a sequence", i);
        jsPubAck_Destroy(pa);
    }
}

natsMsg *next_msg(natsSubscription *sub)
{
    natsMsg *msg = NULL;

    OK(natsSubscription_NextMsg(&msg, sub, WAIT_MS));
    return msg;
}

void expect_no_msg(natsSubscription *sub)
{
    natsMsg *msg = NULL;
    natsStatus s = natsSubscription_NextMsg(&msg, sub, QUIET_MS);

    if (s == NATS_OK)
        FAIL("expected no message on %s, got one on %s: \"%.*s\"",
             natsSubscription_GetSubject(sub), natsMsg_GetSubject(msg),
             natsMsg_GetDataLength(msg), natsMsg_GetData(msg));
    if (s != NATS_TIMEOUT)
        FAIL_STATUS("NextMsg on %s returned %s (%d), expected NATS_TIMEOUT",
                    natsSubscription_GetSubject(sub), natsStatus_GetText(s), (int) s);
}

jsMsgMetaData *metadata(natsMsg *msg)
{
    jsMsgMetaData *meta = NULL;

    OK(natsMsg_GetMetaData(&meta, msg));
    return meta;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (int i = 0; i < NUM_SCENARIOS; i++)
            printf("%s\n", scenarios[i].name);
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: %s <scenario> <server-url> | --list\n", argv[0]);
        return 2;
    }
    scenario_fn fn = NULL;
    for (int i = 0; i < NUM_SCENARIOS; i++) {
        if (strcmp(argv[1], scenarios[i].name) == 0)
            fn = scenarios[i].fn;
    }
    if (fn == NULL) {
        fprintf(stderr, "unknown scenario %s (see --list)\n", argv[1]);
        return 2;
    }
    current = argv[1];
    // Line-buffered, so a run killed on its timeout still shows how far it got.
    setvbuf(stdout, NULL, _IOLBF, 0);
    counter_init(&async_errors);
    OK(nats_Open(-1));
    printf("nats.c %s: scenario %s against %s\n", nats_GetVersion(), current, argv[2]);
    fflush(stdout);

    fn(argv[2]);

    CHECK_COUNTER_CLEAN(&async_errors);
    nats_Close();
    counter_destroy(&async_errors);
    printf("PASS [%s]\n", current);
    return 0;
}
