// Core NATS scenarios: connecting, publishing, subscribing, requests, headers, limits.
#include "scenarios.h"

#include <stdio.h>
#include <stdlib.h>

// The connection learns the server's identity and limits from INFO, and closes cleanly.
void connect_info(const char *url)
{
    natsConnection *nc = connect_to(url);
    natsConnection *nc2 = connect_to(url);
    char buf[256];
    uint64_t cid = 0, cid2 = 0;
    char *ip = NULL;
    char **servers = NULL;
    int count = 0;

    OK(natsConnection_GetConnectedUrl(nc, buf, sizeof(buf)));
    CHECK_STR(buf, url);
    OK(natsConnection_GetConnectedServerId(nc, buf, sizeof(buf)));
    CHECK(buf[0] != '\0', "the server sent a non-empty server_id");
    CHECK_INT(natsConnection_GetMaxPayload(nc), 1024 * 1024);
    CHECK_INT(natsConnection_Status(nc), NATS_CONN_STATUS_CONNECTED);
    OK(natsConnection_HasHeaderSupport(nc));

    // Each connection gets its own client id; the server reports the client's address.
    OK(natsConnection_GetClientID(nc, &cid));
    OK(natsConnection_GetClientID(nc2, &cid2));
    CHECK(cid > 0 && cid2 > 0 && cid != cid2, "distinct client ids, got %llu and %llu",
          (unsigned long long) cid, (unsigned long long) cid2);
    OK(natsConnection_GetClientIP(nc, &ip));
    CHECK_STR(ip, "127.0.0.1");
    free(ip);

    // Without a cluster the server list is the URL given, and nothing is discovered.
    OK(natsConnection_GetServers(nc, &servers, &count));
    CHECK_INT(count, 1);
    CHECK_STR(servers[0], url);
    for (int i = 0; i < count; i++)
        free(servers[i]);
    free(servers);
    OK(natsConnection_GetDiscoveredServers(nc, &servers, &count));
    CHECK_INT(count, 0);
    free(servers);

    natsConnection_Close(nc);
    CHECK(natsConnection_IsClosed(nc), "connection closed after natsConnection_Close");
    EXPECT_STATUS(natsConnection_PublishString(nc, "after.close", "x"), NATS_CONNECTION_CLOSED);
    natsConnection_Destroy(nc);
    natsConnection_Destroy(nc2);
}

// Synchronous subscription: payloads (empty included) and reply subjects arrive intact, in
// order; after unsubscribing the server has no interest left.
void pubsub_sync(const char *url)
{
    natsConnection *nc = connect_to(url);
    natsSubscription *sub = NULL;
    natsMsg *msg = NULL;
    int64_t delivered = 0;

    OK(natsConnection_SubscribeSync(&sub, nc, "greet.sync"));
    OK(natsConnection_Flush(nc));
    OK(natsConnection_PublishString(nc, "greet.sync", "hello"));
    OK(natsConnection_Publish(nc, "greet.sync", NULL, 0));
    OK(natsConnection_PublishRequestString(nc, "greet.sync", "reply.here", "with-reply"));
    OK(natsConnection_Flush(nc));

    msg = next_msg(sub);
    CHECK_STR(natsMsg_GetSubject(msg), "greet.sync");
    CHECK_DATA(msg, "hello");
    CHECK(natsMsg_GetReply(msg) == NULL, "no reply subject, got %s", natsMsg_GetReply(msg));
    natsMsg_Destroy(msg);
    msg = next_msg(sub);
    CHECK_INT(natsMsg_GetDataLength(msg), 0);
    natsMsg_Destroy(msg);
    msg = next_msg(sub);
    CHECK_DATA(msg, "with-reply");
    CHECK_STR(natsMsg_GetReply(msg), "reply.here");
    natsMsg_Destroy(msg);
    expect_no_msg(sub);
    OK(natsSubscription_GetDelivered(sub, &delivered));
    CHECK_INT(delivered, 3);

    // Once the UNSUB is processed, a request on that subject finds no responders.
    OK(natsSubscription_Unsubscribe(sub));
    CHECK(!natsSubscription_IsValid(sub), "subscription invalid after unsubscribe");
    OK(natsConnection_Flush(nc));
    EXPECT_STATUS(natsConnection_RequestString(&msg, nc, "greet.sync", "anyone?", WAIT_MS),
                  NATS_NO_RESPONDERS);
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
}

typedef struct {
    counter c;
    int next; // the index the next message must carry (only the callback thread touches it)
} ordered_rx;

static void on_ordered(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    ordered_rx *rx = closure;
    char want[32];

    (void) nc;
    (void) sub;
    snprintf(want, sizeof(want), "m-%d", rx->next);
    if (natsMsg_GetDataLength(msg) != (int) strlen(want) ||
        memcmp(natsMsg_GetData(msg), want, strlen(want)) != 0)
        counter_error(&rx->c, "expected payload %s, got %.*s", want,
                      natsMsg_GetDataLength(msg), natsMsg_GetData(msg));
    rx->next++;
    natsMsg_Destroy(msg);
    counter_add(&rx->c, 1);
}

// Asynchronous (callback) subscription receives every message, in publish order.
void pubsub_async(const char *url)
{
    natsConnection *nc = connect_to(url);
    natsConnection *pub = connect_to(url);
    natsSubscription *sub = NULL;
    ordered_rx rx;
    char data[32];

    counter_init(&rx.c);
    rx.next = 1;
    OK(natsConnection_Subscribe(&sub, nc, "greet.async", on_ordered, &rx));
    OK(natsConnection_Flush(nc));
    for (int i = 1; i <= 200; i++) {
        snprintf(data, sizeof(data), "m-%d", i);
        OK(natsConnection_PublishString(pub, "greet.async", data));
    }
    OK(natsConnection_Flush(pub));
    int got = counter_wait(&rx.c, 200, WAIT_MS);
    CHECK_COUNTER_CLEAN(&rx.c);
    CHECK_INT(got, 200);

    OK(natsSubscription_Unsubscribe(sub));
    natsSubscription_Destroy(sub);
    counter_destroy(&rx.c);
    natsConnection_Destroy(pub);
    natsConnection_Destroy(nc);
}

// Receives the subjects listed (NULL-terminated), in that order, then nothing more.
static void expect_subjects(natsSubscription *sub, const char **subjects)
{
    for (int i = 0; subjects[i] != NULL; i++) {
        natsMsg *msg = next_msg(sub);
        CHECK(strcmp(natsMsg_GetSubject(msg), subjects[i]) == 0,
              "subscription %s: message %d should be on %s, got %s",
              natsSubscription_GetSubject(sub), i + 1, subjects[i], natsMsg_GetSubject(msg));
        natsMsg_Destroy(msg);
    }
    expect_no_msg(sub);
}

// `*` matches exactly one token, `>` one or more trailing tokens.
void wildcards(const char *url)
{
    natsConnection *nc = connect_to(url);
    natsSubscription *star = NULL, *tail = NULL, *mid = NULL, *all = NULL;
    const char *published[] = {"a.b", "a.b.c", "a.b.c.d", "b.x", "a", NULL};

    OK(natsConnection_SubscribeSync(&star, nc, "a.*"));
    OK(natsConnection_SubscribeSync(&tail, nc, "a.>"));
    OK(natsConnection_SubscribeSync(&mid, nc, "a.*.c"));
    OK(natsConnection_SubscribeSync(&all, nc, ">"));
    OK(natsConnection_Flush(nc));
    for (int i = 0; published[i] != NULL; i++)
        OK(natsConnection_PublishString(nc, published[i], published[i]));
    OK(natsConnection_Flush(nc));

    expect_subjects(star, (const char *[]){"a.b", NULL});
    expect_subjects(tail, (const char *[]){"a.b", "a.b.c", "a.b.c.d", NULL});
    expect_subjects(mid, (const char *[]){"a.b.c", NULL});
    expect_subjects(all, published);

    natsSubscription_Destroy(star);
    natsSubscription_Destroy(tail);
    natsSubscription_Destroy(mid);
    natsSubscription_Destroy(all);
    natsConnection_Destroy(nc);
}

// Each message reaches exactly one member of a queue group (members on two connections),
// while a plain subscriber on the same subject still gets every message.
void queue_group(const char *url)
{
    enum { N = 100 };
    natsConnection *nc1 = connect_to(url);
    natsConnection *nc2 = connect_to(url);
    natsSubscription *members[2] = {NULL, NULL};
    natsSubscription *plain = NULL;
    int seen[N + 1] = {0};
    int per_member[2] = {0, 0};
    char data[32];

    OK(natsConnection_QueueSubscribeSync(&members[0], nc1, "jobs", "workers"));
    OK(natsConnection_QueueSubscribeSync(&members[1], nc2, "jobs", "workers"));
    OK(natsConnection_SubscribeSync(&plain, nc1, "jobs"));
    OK(natsConnection_Flush(nc1));
    OK(natsConnection_Flush(nc2));
    for (int i = 1; i <= N; i++) {
        snprintf(data, sizeof(data), "%d", i);
        OK(natsConnection_PublishString(nc1, "jobs", data));
    }
    OK(natsConnection_Flush(nc1));

    // Collect from both members, alternating, until all N arrived (bounded).
    int total = 0;
    int64_t deadline = nats_Now() + WAIT_MS;
    while (total < N && nats_Now() < deadline) {
        for (int m = 0; m < 2; m++) {
            natsMsg *msg = NULL;
            while (natsSubscription_NextMsg(&msg, members[m], 20) == NATS_OK) {
                int i = atoi(natsMsg_GetData(msg));
                CHECK(i >= 1 && i <= N, "payload in range, got %d", i);
                CHECK(seen[i] == 0, "message %d delivered to the group twice", i);
                seen[i] = 1;
                per_member[m]++;
                total++;
                natsMsg_Destroy(msg);
            }
        }
    }
    CHECK_INT(total, N);
    CHECK(per_member[0] > 0 && per_member[1] > 0,
          "both members got messages, got %d and %d", per_member[0], per_member[1]);
    expect_no_msg(members[0]);
    expect_no_msg(members[1]);
    for (int i = 1; i <= N; i++) {
        natsMsg *msg = next_msg(plain);
        natsMsg_Destroy(msg);
    }
    expect_no_msg(plain);

    natsSubscription_Destroy(members[0]);
    natsSubscription_Destroy(members[1]);
    natsSubscription_Destroy(plain);
    natsConnection_Destroy(nc1);
    natsConnection_Destroy(nc2);
}

// Replies "echo: <request>" to the request's reply subject.
static void on_echo(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    char reply[128];
    int n = snprintf(reply, sizeof(reply), "echo: %.*s", natsMsg_GetDataLength(msg),
                     natsMsg_GetData(msg));

    (void) sub;
    if (natsMsg_GetReply(msg) == NULL)
        counter_error(closure, "request without a reply subject");
    else if (natsConnection_Publish(nc, natsMsg_GetReply(msg), reply, n) != NATS_OK)
        counter_error(closure, "responder could not publish its reply");
    natsMsg_Destroy(msg);
    counter_add(closure, 1);
}

// Request/reply through a responder on another connection; a request nobody can answer fails
// at once with NATS_NO_RESPONDERS; one whose responder stays silent times out.
void request_reply(const char *url)
{
    natsConnection *nc = connect_to(url);
    natsConnection *rnc = connect_to(url);
    natsSubscription *responder = NULL, *silent = NULL;
    natsMsg *reply = NULL;
    counter served;
    char data[32], want[48];

    counter_init(&served);
    OK(natsConnection_Subscribe(&responder, rnc, "svc.echo", on_echo, &served));
    OK(natsConnection_SubscribeSync(&silent, rnc, "svc.silent"));
    OK(natsConnection_Flush(rnc));

    for (int i = 1; i <= 10; i++) {
        snprintf(data, sizeof(data), "req-%d", i);
        snprintf(want, sizeof(want), "echo: req-%d", i);
        OK(natsConnection_RequestString(&reply, nc, "svc.echo", data, WAIT_MS));
        CHECK_DATA(reply, want);
        CHECK(!natsMsg_IsNoResponders(reply), "a real reply is not a no-responders status");
        natsMsg_Destroy(reply);
    }
    CHECK_COUNTER_CLEAN(&served);
    CHECK_INT(counter_get(&served), 10);

    int64_t start = nats_Now();
    EXPECT_STATUS(natsConnection_RequestString(&reply, nc, "svc.nobody", "hello?", WAIT_MS),
                  NATS_NO_RESPONDERS);
    int64_t took = nats_Now() - start;
    CHECK(took < WAIT_MS / 2, "no-responders answer comes at once, took %lld ms",
          (long long) took);

    start = nats_Now();
    EXPECT_STATUS(natsConnection_RequestString(&reply, nc, "svc.silent", "hello?", 300),
                  NATS_TIMEOUT);
    took = nats_Now() - start;
    CHECK(took >= 250, "a silent responder makes the request wait its timeout, took %lld ms",
          (long long) took);

    OK(natsSubscription_Unsubscribe(responder));
    natsSubscription_Destroy(responder);
    natsSubscription_Destroy(silent);
    counter_destroy(&served);
    natsConnection_Destroy(rnc);
    natsConnection_Destroy(nc);
}

// Replies with the request's X-Req header copied into X-Echo, payload unchanged.
static void on_header_echo(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                           void *closure)
{
    natsMsg *reply = NULL;
    const char *value = NULL;

    (void) sub;
    if (natsMsgHeader_Get(msg, "X-Req", &value) != NATS_OK)
        counter_error(closure, "request without an X-Req header");
    else if (natsMsg_Create(&reply, natsMsg_GetReply(msg), NULL, natsMsg_GetData(msg),
                            natsMsg_GetDataLength(msg)) != NATS_OK ||
             natsMsgHeader_Set(reply, "X-Echo", value) != NATS_OK ||
             natsConnection_PublishMsg(nc, reply) != NATS_OK)
        counter_error(closure, "responder could not send its reply");
    natsMsg_Destroy(reply);
    natsMsg_Destroy(msg);
    counter_add(closure, 1);
}

// Headers set with natsMsgHeader_Set/Add arrive intact (multiple values, header-only
// messages), and travel both ways through a request.
void headers(const char *url)
{
    natsConnection *nc = connect_to(url);
    natsSubscription *sub = NULL, *responder = NULL;
    natsMsg *msg = NULL, *got = NULL, *reply = NULL;
    const char *value = NULL;
    const char **values = NULL;
    const char **keys = NULL;
    int count = 0;
    counter served;

    OK(natsConnection_SubscribeSync(&sub, nc, "hdr.test"));
    OK(natsConnection_Flush(nc));

    OK(natsMsg_Create(&msg, "hdr.test", NULL, "body", 4));
    OK(natsMsgHeader_Set(msg, "X-Key", "v1"));
    OK(natsMsgHeader_Add(msg, "X-Multi", "a"));
    OK(natsMsgHeader_Add(msg, "X-Multi", "b"));
    OK(natsMsgHeader_Set(msg, "X-Spaces", "a value with spaces"));
    OK(natsConnection_PublishMsg(nc, msg));
    natsMsg_Destroy(msg);

    got = next_msg(sub);
    CHECK_DATA(got, "body");
    OK(natsMsgHeader_Get(got, "X-Key", &value));
    CHECK_STR(value, "v1");
    OK(natsMsgHeader_Get(got, "X-Spaces", &value));
    CHECK_STR(value, "a value with spaces");
    OK(natsMsgHeader_Values(got, "X-Multi", &values, &count));
    CHECK_INT(count, 2);
    CHECK_STR(values[0], "a");
    CHECK_STR(values[1], "b");
    free((void *) values);
    OK(natsMsgHeader_Keys(got, &keys, &count));
    CHECK_INT(count, 3);
    free((void *) keys);
    EXPECT_STATUS(natsMsgHeader_Get(got, "X-Missing", &value), NATS_NOT_FOUND);
    natsMsg_Destroy(got);

    // Headers and no payload.
    OK(natsMsg_Create(&msg, "hdr.test", NULL, NULL, 0));
    OK(natsMsgHeader_Set(msg, "X-Only", "yes"));
    OK(natsConnection_PublishMsg(nc, msg));
    natsMsg_Destroy(msg);
    got = next_msg(sub);
    CHECK_INT(natsMsg_GetDataLength(got), 0);
    OK(natsMsgHeader_Get(got, "X-Only", &value));
    CHECK_STR(value, "yes");
    natsMsg_Destroy(got);
    expect_no_msg(sub);

    // A request with headers, answered with headers.
    counter_init(&served);
    OK(natsConnection_Subscribe(&responder, nc, "hdr.echo", on_header_echo, &served));
    OK(natsConnection_Flush(nc));
    OK(natsMsg_Create(&msg, "hdr.echo", NULL, "ping", 4));
    OK(natsMsgHeader_Set(msg, "X-Req", "trace-42"));
    OK(natsConnection_RequestMsg(&reply, nc, msg, WAIT_MS));
    CHECK_COUNTER_CLEAN(&served);
    CHECK_DATA(reply, "ping");
    OK(natsMsgHeader_Get(reply, "X-Echo", &value));
    CHECK_STR(value, "trace-42");
    natsMsg_Destroy(reply);
    natsMsg_Destroy(msg);

    OK(natsSubscription_Unsubscribe(responder));
    natsSubscription_Destroy(responder);
    natsSubscription_Destroy(sub);
    counter_destroy(&served);
    natsConnection_Destroy(nc);
}

static void on_count(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void) nc;
    (void) sub;
    natsMsg_Destroy(msg);
    counter_add(closure, 1);
}

// natsSubscription_AutoUnsubscribe: a subscription gets at most `max` messages, and the server
// drops its interest after delivering them.
void auto_unsubscribe(const char *url)
{
    natsConnection *nc = connect_to(url);
    natsConnection *other = connect_to(url);
    natsSubscription *sub = NULL, *asub = NULL;
    natsMsg *msg = NULL;
    counter received;

    OK(natsConnection_SubscribeSync(&sub, nc, "auto.sync"));
    OK(natsSubscription_AutoUnsubscribe(sub, 3));
    OK(natsConnection_Flush(nc));
    for (int i = 0; i < 5; i++)
        OK(natsConnection_PublishString(nc, "auto.sync", "x"));
    OK(natsConnection_Flush(nc));
    for (int i = 0; i < 3; i++)
        natsMsg_Destroy(next_msg(sub));
    EXPECT_STATUS(natsSubscription_NextMsg(&msg, sub, QUIET_MS), NATS_MAX_DELIVERED_MSGS);
    CHECK(!natsSubscription_IsValid(sub), "subscription closed after its 3 messages");
    // The server removed the subscription: another client's request finds no responders.
    EXPECT_STATUS(natsConnection_RequestString(&msg, other, "auto.sync", "?", WAIT_MS),
                  NATS_NO_RESPONDERS);

    counter_init(&received);
    OK(natsConnection_Subscribe(&asub, nc, "auto.async", on_count, &received));
    OK(natsSubscription_AutoUnsubscribe(asub, 2));
    OK(natsConnection_Flush(nc));
    for (int i = 0; i < 4; i++)
        OK(natsConnection_PublishString(other, "auto.async", "y"));
    OK(natsConnection_Flush(other));
    CHECK_INT(counter_wait(&received, 2, WAIT_MS), 2);
    nats_Sleep(QUIET_MS);
    CHECK_INT(counter_get(&received), 2);
    EXPECT_STATUS(natsConnection_RequestString(&msg, other, "auto.async", "?", WAIT_MS),
                  NATS_NO_RESPONDERS);

    natsSubscription_Destroy(sub);
    natsSubscription_Destroy(asub);
    counter_destroy(&received);
    natsConnection_Destroy(other);
    natsConnection_Destroy(nc);
}

// The client refuses a payload over the server's max_payload; exactly max_payload goes through
// intact.
void max_payload(const char *url)
{
    natsConnection *nc = connect_to(url);
    natsSubscription *sub = NULL;
    int64_t max = natsConnection_GetMaxPayload(nc);
    char *big = malloc((size_t) max + 1);

    CHECK(big != NULL, "allocated %lld bytes", (long long) max + 1);
    for (int64_t i = 0; i <= max; i++)
        big[i] = (char) ('a' + i % 26);
    OK(natsConnection_SubscribeSync(&sub, nc, "big"));
    OK(natsConnection_Flush(nc));

    EXPECT_STATUS(natsConnection_Publish(nc, "big", big, (int) max + 1), NATS_MAX_PAYLOAD);
    CHECK_INT(natsConnection_Status(nc), NATS_CONN_STATUS_CONNECTED);

    OK(natsConnection_Publish(nc, "big", big, (int) max));
    OK(natsConnection_Flush(nc));
    natsMsg *msg = next_msg(sub);
    CHECK_INT(natsMsg_GetDataLength(msg), max);
    CHECK(memcmp(natsMsg_GetData(msg), big, (size_t) max) == 0, "the big payload is intact");
    natsMsg_Destroy(msg);
    expect_no_msg(sub);

    free(big);
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
}

static void on_slow_count(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                          void *closure)
{
    (void) nc;
    (void) sub;
    nats_Sleep(2); // slow enough that messages are still queued when draining starts
    natsMsg_Destroy(msg);
    counter_add(closure, 1);
}

// Draining a subscription, then a whole connection, delivers what was already published and
// then closes: nothing published before the drain is lost.
void drain(const char *url)
{
    natsConnection *nc = connect_to(url);
    natsConnection *pub = connect_to(url);
    natsSubscription *sub = NULL, *single = NULL;
    counter received, single_received;

    // One subscription.
    counter_init(&single_received);
    OK(natsConnection_Subscribe(&single, pub, "drain.one", on_slow_count, &single_received));
    OK(natsConnection_Flush(pub));
    for (int i = 0; i < 20; i++)
        OK(natsConnection_PublishString(pub, "drain.one", "x"));
    OK(natsConnection_Flush(pub));
    OK(natsSubscription_Drain(single));
    OK(natsSubscription_WaitForDrainCompletion(single, 5000));
    OK(natsSubscription_DrainCompletionStatus(single));
    CHECK_INT(counter_get(&single_received), 20);

    // The whole connection.
    counter_init(&received);
    OK(natsConnection_Subscribe(&sub, nc, "drain.all", on_slow_count, &received));
    OK(natsConnection_Flush(nc));
    for (int i = 0; i < 100; i++)
        OK(natsConnection_PublishString(pub, "drain.all", "y"));
    OK(natsConnection_Flush(pub));
    OK(natsConnection_DrainTimeout(nc, 5000));
    int64_t deadline = nats_Now() + 5000;
    while (!natsConnection_IsClosed(nc) && nats_Now() < deadline)
        nats_Sleep(10);
    CHECK(natsConnection_IsClosed(nc), "connection closed after draining");
    CHECK_INT(counter_get(&received), 100);
    EXPECT_STATUS(natsConnection_PublishString(nc, "drain.all", "late"),
                  NATS_CONNECTION_CLOSED);

    natsSubscription_Destroy(single);
    natsSubscription_Destroy(sub);
    counter_destroy(&single_received);
    counter_destroy(&received);
    natsConnection_Destroy(pub);
    natsConnection_Destroy(nc);
}

// FlushTimeout round-trips, RTT is measured, and the statistics count messages and bytes
// both ways.
void flush_rtt_stats(const char *url)
{
    natsConnection *nc = connect_to(url);
    natsSubscription *sub = NULL;
    natsStatistics *stats = NULL;
    int64_t rtt = 0;
    uint64_t in_msgs, in_bytes, out_msgs, out_bytes, reconnects;

    OK(natsConnection_SubscribeSync(&sub, nc, "stats.x"));
    OK(natsConnection_FlushTimeout(nc, 2000));
    for (int i = 0; i < 5; i++)
        OK(natsConnection_PublishString(nc, "stats.x", "hello"));
    OK(natsConnection_FlushTimeout(nc, 2000));
    for (int i = 0; i < 5; i++)
        natsMsg_Destroy(next_msg(sub));

    OK(natsConnection_GetRTT(nc, &rtt));
    CHECK(rtt > 0 && rtt < 2000000000LL, "RTT between 0 and 2 s, got %lld ns", (long long) rtt);

    OK(natsStatistics_Create(&stats));
    OK(natsConnection_GetStats(nc, stats));
    OK(natsStatistics_GetCounts(stats, &in_msgs, &in_bytes, &out_msgs, &out_bytes, &reconnects));
    CHECK_INT(in_msgs, 5);
    CHECK_INT(in_bytes, 25);
    CHECK_INT(out_msgs, 5);
    CHECK_INT(out_bytes, 25);
    CHECK_INT(reconnects, 0);

    natsStatistics_Destroy(stats);
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
}

// Three clustered servers (the test driver starts them; `url` is the first): the client
// learns the other two from INFO's connect_urls, and messages and requests cross the routes.
void cluster_discovery(const char *url)
{
    natsConnection *nc = connect_to(url);
    natsConnection *other = NULL;
    natsSubscription *sub = NULL, *responder = NULL;
    natsMsg *reply = NULL;
    char **servers = NULL;
    int count = 0;
    counter served;

    // Routes may still be forming: wait (bounded) for both other servers to be announced.
    int64_t deadline = nats_Now() + 5000;
    for (;;) {
        OK(natsConnection_GetDiscoveredServers(nc, &servers, &count));
        if (count == 2 || nats_Now() > deadline)
            break;
        for (int i = 0; i < count; i++)
            free(servers[i]);
        free(servers);
        nats_Sleep(50);
    }
    CHECK_INT(count, 2);
    for (int i = 0; i < count; i++) {
        CHECK(strncmp(servers[i], "nats://127.0.0.1:", 17) == 0 && strcmp(servers[i], url) != 0,
              "discovered server %d is another local server, got %s", i, servers[i]);
    }
    for (int i = 0; i < count; i++)
        free(servers[i]);
    free(servers);
    // The known servers: the one given plus the two discovered.
    OK(natsConnection_GetServers(nc, &servers, &count));
    CHECK_INT(count, 3);
    for (int i = 0; i < count; i++)
        free(servers[i]);
    free(servers);

    // Connect to a discovered server; subscribe there, publish here.
    OK(natsConnection_GetDiscoveredServers(nc, &servers, &count));
    other = connect_to(servers[0]);
    for (int i = 0; i < count; i++)
        free(servers[i]);
    free(servers);
    counter_init(&served);
    OK(natsConnection_Subscribe(&responder, other, "cross.echo", on_echo, &served));
    OK(natsConnection_SubscribeSync(&sub, other, "cross.data"));
    OK(natsConnection_Flush(other));
    // The subscription reaches the first server through the route: retry until it has.
    deadline = nats_Now() + 5000;
    for (;;) {
        natsStatus s = natsConnection_RequestString(&reply, nc, "cross.echo", "hi", WAIT_MS);
        if (s == NATS_OK || nats_Now() > deadline) {
            OK(s);
            break;
        }
        EXPECT_STATUS(s, NATS_NO_RESPONDERS);
        nats_Sleep(50);
    }
    CHECK_DATA(reply, "echo: hi");
    natsMsg_Destroy(reply);
    for (int i = 0; i < 10; i++)
        OK(natsConnection_PublishString(nc, "cross.data", "routed"));
    OK(natsConnection_Flush(nc));
    for (int i = 0; i < 10; i++) {
        natsMsg *msg = next_msg(sub);
        CHECK_DATA(msg, "routed");
        natsMsg_Destroy(msg);
    }
    expect_no_msg(sub);
    CHECK_COUNTER_CLEAN(&served);

    OK(natsSubscription_Unsubscribe(responder));
    natsSubscription_Destroy(responder);
    natsSubscription_Destroy(sub);
    counter_destroy(&served);
    natsConnection_Destroy(other);
    natsConnection_Destroy(nc);
}
