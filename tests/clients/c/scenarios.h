// Shared helpers of the nats.c scenario program (see scenarios.c).
//
// A scenario is a function that runs against one server URL. Every check that fails prints
// where it was, what was expected and what came back, nats.c's status text and its last error,
// and ends the process with exit code 1: the program runs exactly one scenario, so there is
// nothing to unwind. On success a scenario destroys what it created and returns.
#ifndef NATRIX_C_SCENARIOS_H
#define NATRIX_C_SCENARIOS_H

#include <nats/nats.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

// Bounds of every wait, in milliseconds.
#define WAIT_MS 3000      // for something that must happen
#define QUIET_MS 250      // for something that must NOT happen (a NextMsg that must time out)

// The JetStream error code of the last JetStream call made through OK / EXPECT_JS; printed
// with any failure.
extern jsErrCode jerr;

// Prints "FAIL [scenario] file:line: <message>" and exits 1. With `nats_error`, also prints
// nats.c's last error (set by the failed call) and its error stack.
void fail_at(const char *file, int line, bool nats_error, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));
#define FAIL(...) fail_at(__FILE__, __LINE__, false, __VA_ARGS__)
#define FAIL_STATUS(...) fail_at(__FILE__, __LINE__, true, __VA_ARGS__)

// A nats.c call that must succeed.
#define OK(call)                                                                             \
    do {                                                                                     \
        jerr = 0;                                                                            \
        natsStatus ok_s_ = (call);                                                           \
        if (ok_s_ != NATS_OK)                                                                \
            FAIL_STATUS("%s returned %s (%d), expected NATS_OK", #call,                      \
                        natsStatus_GetText(ok_s_), (int) ok_s_);                             \
    } while (0)

// A nats.c call that must fail with the given status.
#define EXPECT_STATUS(call, want)                                                            \
    do {                                                                                     \
        jerr = 0;                                                                            \
        natsStatus ex_s_ = (call);                                                           \
        if (ex_s_ != (want))                                                                 \
            FAIL_STATUS("%s returned %s (%d), expected %s (%d)", #call,                      \
                        natsStatus_GetText(ex_s_), (int) ex_s_, natsStatus_GetText(want),    \
                        (int) (want));                                                       \
    } while (0)

// A JetStream call (passed &jerr as its errCode) that must fail with this status and code.
#define EXPECT_JS(call, want_status, want_code)                                              \
    do {                                                                                     \
        EXPECT_STATUS(call, want_status);                                                    \
        if ((int) jerr != (int) (want_code))                                                 \
            FAIL_STATUS("%s: expected jsErrCode %d, got %d", #call, (int) (want_code),       \
                        (int) jerr);                                                         \
    } while (0)

// A condition that must hold; the message says what it means.
#define CHECK(cond, ...)                                                                     \
    do {                                                                                     \
        if (!(cond))                                                                         \
            FAIL("check `%s` failed: %s", #cond, check_msg(__VA_ARGS__));                    \
    } while (0)

// Integer and string equality, printing both sides.
#define CHECK_INT(got, want)                                                                 \
    do {                                                                                     \
        long long ci_g_ = (long long) (got), ci_w_ = (long long) (want);                     \
        if (ci_g_ != ci_w_)                                                                  \
            FAIL("%s: expected %lld, got %lld", #got, ci_w_, ci_g_);                         \
    } while (0)

#define CHECK_STR(got, want)                                                                 \
    do {                                                                                     \
        const char *cs_g_ = (got), *cs_w_ = (want);                                          \
        if (cs_g_ == NULL || strcmp(cs_g_, cs_w_) != 0)                                      \
            FAIL("%s: expected \"%s\", got %s%s%s", #got, cs_w_, cs_g_ ? "\"" : "",          \
                 cs_g_ ? cs_g_ : "NULL", cs_g_ ? "\"" : "");                                 \
    } while (0)

// A message's payload (not NUL-terminated on the wire) compared with a string.
#define CHECK_DATA(msg, want)                                                                \
    do {                                                                                     \
        natsMsg *cd_m_ = (msg);                                                              \
        const char *cd_w_ = (want);                                                          \
        int cd_n_ = natsMsg_GetDataLength(cd_m_);                                            \
        if (cd_n_ != (int) strlen(cd_w_) || memcmp(natsMsg_GetData(cd_m_), cd_w_, cd_n_))    \
            FAIL("payload of %s: expected \"%s\", got \"%.*s\"", #msg, cd_w_, cd_n_,         \
                 natsMsg_GetData(cd_m_));                                                    \
    } while (0)

const char *check_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// A counter that callbacks (on nats.c's threads) bump and the scenario waits on.
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int count;
    char error[256]; // first problem a callback saw, reported by the scenario's thread
} counter;

void counter_init(counter *c);
void counter_destroy(counter *c);
void counter_add(counter *c, int n);
int counter_get(counter *c);
// Records a problem seen in a callback (the first one wins); the waiting thread fails on it.
void counter_error(counter *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Waits until the count reaches `n` (or `timeout_ms` passes); returns the count.
int counter_wait(counter *c, int n, int64_t timeout_ms);
// Fails the scenario if a callback recorded a problem.
#define CHECK_COUNTER_CLEAN(c)                                                               \
    do {                                                                                     \
        if ((c)->error[0])                                                                   \
            FAIL("in a callback: %s", (c)->error);                                           \
    } while (0)

// A connection to `url`: no reconnect, 5 s connect timeout, async errors recorded.
natsConnection *connect_to(const char *url);
// A JetStream context on `nc` with a 5 s API wait.
jsCtx *jetstream(natsConnection *nc);
// A file stream named `name` taking the subjects given (a NULL-terminated list).
void add_stream(jsCtx *js, const char *name, const char *subject, ...)
    __attribute__((sentinel));
// Publishes `n` messages "<prefix>-<i>" (i from 1) to `subject` and checks each ack.
void js_publish_n(jsCtx *js, const char *subject, const char *prefix, int n);
// The next message of a synchronous subscription, which must arrive within WAIT_MS.
natsMsg *next_msg(natsSubscription *sub);
// Checks that nothing arrives on a synchronous subscription for QUIET_MS.
void expect_no_msg(natsSubscription *sub);
// A JetStream message's metadata (the caller destroys it).
jsMsgMetaData *metadata(natsMsg *msg);

typedef void (*scenario_fn)(const char *url);

// Scenarios, one per file group.
void connect_info(const char *url);
void pubsub_sync(const char *url);
void pubsub_async(const char *url);
void wildcards(const char *url);
void queue_group(const char *url);
void request_reply(const char *url);
void headers(const char *url);
void auto_unsubscribe(const char *url);
void max_payload(const char *url);
void drain(const char *url);
void flush_rtt_stats(const char *url);
void cluster_discovery(const char *url);

void js_publish_acks(const char *url);
void js_publish_async(const char *url);
void js_stream_ops(const char *url);
void js_stream_admin(const char *url);
void js_limits(const char *url);
void js_stream_features(const char *url);

void pull_consumer(const char *url);
void pull_nak_term(const char *url);
void ack_wait_in_progress(const char *url);
void fetch_request(const char *url);
void push_deliver_policies(const char *url);
void push_callback_manual_ack(const char *url);
void ordered_consumer(const char *url);
void flow_control_heartbeat(const char *url);
void consumer_limits(const char *url);
void consumer_variants(const char *url);

void kv_put_get(const char *url);
void kv_delete_purge_history(const char *url);
void kv_watch(const char *url);
void kv_status_delete(const char *url);

#endif
