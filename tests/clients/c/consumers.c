// JetStream consumer scenarios: pull (fetch, acks of every kind, redelivery), push (deliver
// policies, callbacks, ordered consumers, flow control and heartbeats).
#include "scenarios.h"

#include <stdio.h>
#include <stdlib.h>

#define MS_TO_NS(ms) ((int64_t) (ms) * 1000000LL)

// A durable pull consumer on `stream` with explicit acks.
static void add_pull_consumer(jsCtx *js, const char *stream, const char *durable,
                              int64_t ack_wait_ms)
{
    jsConsumerConfig cc;
    jsConsumerInfo *ci = NULL;

    OK(jsConsumerConfig_Init(&cc));
    cc.Durable = durable;
    cc.AckPolicy = js_AckExplicit;
    if (ack_wait_ms > 0)
        cc.AckWait = MS_TO_NS(ack_wait_ms);
    OK(js_AddConsumer(&ci, js, stream, &cc, NULL, &jerr));
    CHECK_STR(ci->Stream, stream);
    CHECK_STR(ci->Name, durable);
    CHECK_STR(ci->Config->Durable, durable);
    CHECK_INT(ci->Config->AckPolicy, js_AckExplicit);
    if (ack_wait_ms > 0)
        CHECK_INT(ci->Config->AckWait, MS_TO_NS(ack_wait_ms));
    jsConsumerInfo_Destroy(ci);
}

// A pull subscription bound to an existing durable consumer.
static natsSubscription *pull_bind(jsCtx *js, const char *stream, const char *subject,
                                   const char *durable)
{
    natsSubscription *sub = NULL;
    jsSubOptions so;

    OK(jsSubOptions_Init(&so));
    so.Stream = stream;
    OK(js_PullSubscribe(&sub, js, subject, durable, NULL, &so, &jerr));
    return sub;
}

// Fetches exactly one message (which must come within WAIT_MS).
static natsMsg *fetch_one(natsSubscription *sub)
{
    natsMsgList list = {NULL, 0};

    OK(natsSubscription_Fetch(&list, sub, 1, WAIT_MS, &jerr));
    CHECK_INT(list.Count, 1);
    natsMsg *msg = list.Msgs[0];
    list.Msgs[0] = NULL;
    natsMsgList_Destroy(&list);
    return msg;
}

// Checks a fetch of one message with this timeout gets nothing.
static void expect_fetch_timeout(natsSubscription *sub, int64_t timeout_ms)
{
    natsMsgList list = {NULL, 0};
    natsStatus s = natsSubscription_Fetch(&list, sub, 1, timeout_ms, &jerr);

    if (s == NATS_OK)
        FAIL("expected no message from the fetch, got %d, the first \"%.*s\"", list.Count,
             natsMsg_GetDataLength(list.Msgs[0]), natsMsg_GetData(list.Msgs[0]));
    if (s != NATS_TIMEOUT)
        FAIL_STATUS("natsSubscription_Fetch returned %s (%d), expected NATS_TIMEOUT",
                    natsStatus_GetText(s), (int) s);
}

static jsConsumerInfo *consumer_info(jsCtx *js, const char *stream, const char *consumer)
{
    jsConsumerInfo *ci = NULL;

    OK(js_GetConsumerInfo(&ci, js, stream, consumer, NULL, &jerr));
    return ci;
}

// Checks a message's stream sequence and delivery count.
static void check_delivery(natsMsg *msg, uint64_t stream_seq, uint64_t delivered)
{
    jsMsgMetaData *meta = metadata(msg);

    CHECK(meta->Sequence.Stream == stream_seq && meta->NumDelivered == delivered,
          "expected stream seq %llu delivered %llu times, got seq %llu delivered %llu times",
          (unsigned long long) stream_seq, (unsigned long long) delivered,
          (unsigned long long) meta->Sequence.Stream, (unsigned long long) meta->NumDelivered);
    jsMsgMetaData_Destroy(meta);
}

// A durable pull consumer: fetched batches carry full metadata; Ack / AckSync move the ack
// floor; js_GetConsumerInfo reports delivered, pending and ack-pending counts; an empty fetch
// times out; js_DeleteConsumer removes it.
void pull_consumer(const char *url)
{
    natsConnection *nc = connect_to(url);
    jsCtx *js = jetstream(nc);
    natsSubscription *sub = NULL;
    natsMsgList list = {NULL, 0};
    jsConsumerInfo *ci = NULL;
    jsConsumerNamesList *names = NULL;
    jsConsumerInfoList *infos = NULL;
    char want[32];

    add_stream(js, "WORK", "work.>", NULL);
    js_publish_n(js, "work.item", "job", 10);
    add_pull_consumer(js, "WORK", "workers", 0);
    ci = consumer_info(js, "WORK", "workers");
    CHECK_INT(ci->NumPending, 10);
    CHECK_INT(ci->NumAckPending, 0);
    CHECK_INT(ci->Delivered.Stream, 0);
    jsConsumerInfo_Destroy(ci);

    sub = pull_bind(js, "WORK", "work.item", "workers");
    OK(natsSubscription_Fetch(&list, sub, 5, WAIT_MS, &jerr));
    CHECK_INT(list.Count, 5);
    for (int i = 0; i < list.Count; i++) {
        natsMsg *msg = list.Msgs[i];
        jsMsgMetaData *meta = metadata(msg);

        snprintf(want, sizeof(want), "job-%d", i + 1);
        CHECK_DATA(msg, want);
        CHECK_STR(natsMsg_GetSubject(msg), "work.item");
        CHECK_STR(meta->Stream, "WORK");
        CHECK_STR(meta->Consumer, "workers");
        CHECK_INT(meta->Sequence.Stream, i + 1);
        CHECK_INT(meta->Sequence.Consumer, i + 1);
        CHECK_INT(meta->NumDelivered, 1);
        CHECK_INT(meta->NumPending, 10 - (i + 1));
        CHECK(meta->Timestamp > 0, "metadata timestamp set");
        jsMsgMetaData_Destroy(meta);
    }
    // Unacked so far: the consumer knows 5 are delivered and waiting for acks.
    ci = consumer_info(js, "WORK", "workers");
    CHECK_INT(ci->Delivered.Stream, 5);
    CHECK_INT(ci->Delivered.Consumer, 5);
    CHECK_INT(ci->NumAckPending, 5);
    CHECK_INT(ci->NumPending, 5);
    CHECK_INT(ci->AckFloor.Stream, 0);
    jsConsumerInfo_Destroy(ci);
    for (int i = 0; i < 4; i++)
        OK(natsMsg_Ack(list.Msgs[i], NULL));
    OK(natsMsg_AckSync(list.Msgs[4], NULL, &jerr));
    natsMsgList_Destroy(&list);

    ci = consumer_info(js, "WORK", "workers");
    CHECK_INT(ci->NumAckPending, 0);
    CHECK_INT(ci->AckFloor.Stream, 5);
    CHECK_INT(ci->AckFloor.Consumer, 5);
    CHECK_INT(ci->NumPending, 5);
    CHECK_INT(ci->NumRedelivered, 0);
    jsConsumerInfo_Destroy(ci);

    // Ask for more than is left: the 5 remaining come back.
    OK(natsSubscription_Fetch(&list, sub, 10, WAIT_MS, &jerr));
    CHECK_INT(list.Count, 5);
    for (int i = 0; i < list.Count; i++) {
        snprintf(want, sizeof(want), "job-%d", i + 6);
        CHECK_DATA(list.Msgs[i], want);
        OK(natsMsg_AckSync(list.Msgs[i], NULL, &jerr));
    }
    natsMsgList_Destroy(&list);
    ci = consumer_info(js, "WORK", "workers");
    CHECK_INT(ci->Delivered.Stream, 10);
    CHECK_INT(ci->NumPending, 0);
    CHECK_INT(ci->NumAckPending, 0);
    CHECK_INT(ci->AckFloor.Stream, 10);
    jsConsumerInfo_Destroy(ci);

    // Nothing left: the fetch times out.
    expect_fetch_timeout(sub, 500);

    OK(js_ConsumerNames(&names, js, "WORK", NULL, &jerr));
    CHECK_INT(names->Count, 1);
    CHECK_STR(names->List[0], "workers");
    jsConsumerNamesList_Destroy(names);
    OK(js_Consumers(&infos, js, "WORK", NULL, &jerr));
    CHECK_INT(infos->Count, 1);
    CHECK_STR(infos->List[0]->Name, "workers");
    jsConsumerInfoList_Destroy(infos);

    natsSubscription_Destroy(sub);
    OK(js_DeleteConsumer(js, "WORK", "workers", NULL, &jerr));
    EXPECT_JS(js_GetConsumerInfo(&ci, js, "WORK", "workers", NULL, &jerr), NATS_NOT_FOUND,
              JSConsumerNotFoundErr);
    EXPECT_JS(js_DeleteConsumer(js, "WORK", "workers", NULL, &jerr), NATS_NOT_FOUND,
              JSConsumerNotFoundErr);
    // (nats.c maps only "consumer not found" to NATS_NOT_FOUND here.)
    EXPECT_JS(js_GetConsumerInfo(&ci, js, "NOPE", "workers", NULL, &jerr), NATS_ERR,
              JSStreamNotFoundErr);

    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

// Waits (bounded) until the consumer has no ack pending and its ack floor reached `floor`:
// the server may apply acks asynchronously.
static void wait_consumer_acked(jsCtx *js, const char *stream, const char *consumer,
                                uint64_t floor)
{
    int64_t deadline = nats_Now() + WAIT_MS;

    for (;;) {
        jsConsumerInfo *ci = consumer_info(js, stream, consumer);
        bool done = ci->NumAckPending == 0 && ci->AckFloor.Stream == floor;
        if (done || nats_Now() > deadline)
            CHECK(done, "consumer %s: expected no ack pending and ack floor %llu, got %lld "
                  "pending and floor %llu", consumer, (unsigned long long) floor,
                  (long long) ci->NumAckPending, (unsigned long long) ci->AckFloor.Stream);
        jsConsumerInfo_Destroy(ci);
        if (done)
            return;
        nats_Sleep(50);
    }
}

// Nak redelivers at once (NumDelivered 2), NakWithDelay after the delay, Term never again.
// Each message is published when its step starts, so it is the only one the consumer can
// deliver: the server handles acks asynchronously, so with several messages pending a fetch
// right after a Nak may legitimately get the next one first.
void pull_nak_term(const char *url)
{
    natsConnection *nc = connect_to(url);
    jsCtx *js = jetstream(nc);
    natsSubscription *sub = NULL;
    jsConsumerInfo *ci = NULL;
    natsMsg *msg = NULL;

    add_stream(js, "NAK", "nak.>", NULL);
    add_pull_consumer(js, "NAK", "nk", 0);
    sub = pull_bind(js, "NAK", "nak.x", "nk");

    // Nak: redelivered at once, as delivery 2 (consumer sequence 2).
    js_publish_n(js, "nak.x", "nak", 1); // seq 1
    msg = fetch_one(sub);
    check_delivery(msg, 1, 1);
    OK(natsMsg_Nak(msg, NULL));
    natsMsg_Destroy(msg);
    msg = fetch_one(sub);
    CHECK_DATA(msg, "nak-1");
    check_delivery(msg, 1, 2);
    {
        jsMsgMetaData *meta = metadata(msg);
        CHECK_INT(meta->Sequence.Consumer, 2);
        jsMsgMetaData_Destroy(meta);
    }
    OK(natsMsg_AckSync(msg, NULL, &jerr));
    natsMsg_Destroy(msg);

    // Term: settled without an ack, never redelivered.
    js_publish_n(js, "nak.x", "term", 1); // seq 2
    msg = fetch_one(sub);
    check_delivery(msg, 2, 1);
    OK(natsMsg_Term(msg, NULL));
    natsMsg_Destroy(msg);
    wait_consumer_acked(js, "NAK", "nk", 2);
    expect_fetch_timeout(sub, 300);

    // Nak with a delay: not redelivered before it (1 s), redelivered after.
    js_publish_n(js, "nak.x", "delay", 1); // seq 3
    msg = fetch_one(sub);
    check_delivery(msg, 3, 1);
    OK(natsMsg_NakWithDelay(msg, 1000, NULL));
    natsMsg_Destroy(msg);
    expect_fetch_timeout(sub, 300);
    msg = fetch_one(sub);
    CHECK_DATA(msg, "delay-1");
    check_delivery(msg, 3, 2);
    OK(natsMsg_AckSync(msg, NULL, &jerr));
    natsMsg_Destroy(msg);

    expect_fetch_timeout(sub, 300);
    ci = consumer_info(js, "NAK", "nk");
    CHECK_INT(ci->NumAckPending, 0);
    CHECK_INT(ci->NumPending, 0);
    CHECK_INT(ci->NumRedelivered, 0);
    CHECK_INT(ci->AckFloor.Stream, 3);
    CHECK_INT(ci->Delivered.Stream, 3);
    CHECK_INT(ci->Delivered.Consumer, 5);
    jsConsumerInfo_Destroy(ci);

    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

// An unacked message is redelivered once AckWait (1.5 s) expires; natsMsg_InProgress pushes
// that deadline back.
void ack_wait_in_progress(const char *url)
{
    natsConnection *nc = connect_to(url);
    jsCtx *js = jetstream(nc);
    natsSubscription *sub = NULL;
    jsConsumerInfo *ci = NULL;
    natsMsg *msg = NULL, *again = NULL;

    add_stream(js, "SLOW", "slow.>", NULL);
    js_publish_n(js, "slow.x", "s", 1);
    add_pull_consumer(js, "SLOW", "slowpoke", 1500);
    sub = pull_bind(js, "SLOW", "slow.x", "slowpoke");

    // t=0 fetch; t=0.8 s in progress (deadline moves to 2.3 s); t=1.6..1.9 s nothing comes,
    // though the original deadline (1.5 s) has passed.
    msg = fetch_one(sub);
    check_delivery(msg, 1, 1);
    nats_Sleep(800);
    OK(natsMsg_InProgress(msg, NULL));
    OK(natsConnection_Flush(nc));
    nats_Sleep(800);
    expect_fetch_timeout(sub, 300);

    // Then the extended deadline passes: redelivered.
    again = fetch_one(sub);
    CHECK_DATA(again, "s-1");
    check_delivery(again, 1, 2);
    ci = consumer_info(js, "SLOW", "slowpoke");
    CHECK_INT(ci->NumAckPending, 1);
    CHECK_INT(ci->NumRedelivered, 1);
    jsConsumerInfo_Destroy(ci);
    OK(natsMsg_AckSync(again, NULL, &jerr));
    ci = consumer_info(js, "SLOW", "slowpoke");
    CHECK_INT(ci->NumAckPending, 0);
    CHECK_INT(ci->NumRedelivered, 0);
    CHECK_INT(ci->AckFloor.Stream, 1);
    jsConsumerInfo_Destroy(ci);

    natsMsg_Destroy(msg);
    natsMsg_Destroy(again);
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

// natsSubscription_FetchRequest: Expires bounds the wait on an empty stream, NoWait returns
// what is there at once, Batch caps the count, MaxBytes caps the size.
void fetch_request(const char *url)
{
    natsConnection *nc = connect_to(url);
    jsCtx *js = jetstream(nc);
    natsSubscription *sub = NULL;
    natsMsgList list = {NULL, 0};
    jsFetchRequest fr;
    char payload[100];

    add_stream(js, "FR", "fr.>", NULL);
    add_pull_consumer(js, "FR", "fr", 0);
    sub = pull_bind(js, "FR", "fr.x", "fr");

    // Empty stream, expiring request: times out after about Expires.
    OK(jsFetchRequest_Init(&fr));
    fr.Batch = 5;
    fr.Expires = MS_TO_NS(500);
    int64_t start = nats_Now();
    EXPECT_STATUS(natsSubscription_FetchRequest(&list, sub, &fr), NATS_TIMEOUT);
    int64_t took = nats_Now() - start;
    CHECK(took >= 400 && took < WAIT_MS, "an empty fetch waits about Expires (500 ms), took %lld",
          (long long) took);

    // Empty stream, NoWait with Expires (nats.c always sends the Expires it waits for): the
    // server keeps the request until it expires, then the fetch times out.
    OK(jsFetchRequest_Init(&fr));
    fr.Batch = 5;
    fr.NoWait = true;
    fr.Expires = MS_TO_NS(500);
    start = nats_Now();
    EXPECT_STATUS(natsSubscription_FetchRequest(&list, sub, &fr), NATS_TIMEOUT);
    took = nats_Now() - start;
    CHECK(took < WAIT_MS, "an empty NoWait fetch ends by its Expires, took %lld",
          (long long) took);

    // Three messages, a batch of 10 with NoWait: the three, at once.
    js_publish_n(js, "fr.x", "f", 3);
    OK(jsFetchRequest_Init(&fr));
    fr.Batch = 10;
    fr.NoWait = true;
    fr.Expires = MS_TO_NS(WAIT_MS);
    start = nats_Now();
    OK(natsSubscription_FetchRequest(&list, sub, &fr));
    took = nats_Now() - start;
    CHECK_INT(list.Count, 3);
    CHECK(took < WAIT_MS / 2, "a NoWait fetch returns what there is at once, took %lld",
          (long long) took);
    for (int i = 0; i < list.Count; i++)
        OK(natsMsg_AckSync(list.Msgs[i], NULL, &jerr));
    natsMsgList_Destroy(&list);

    // Five messages, a batch of 2 with Expires: two.
    js_publish_n(js, "fr.x", "g", 5);
    OK(jsFetchRequest_Init(&fr));
    fr.Batch = 2;
    fr.Expires = MS_TO_NS(1000);
    OK(natsSubscription_FetchRequest(&list, sub, &fr));
    CHECK_INT(list.Count, 2);
    CHECK_DATA(list.Msgs[0], "g-1");
    CHECK_DATA(list.Msgs[1], "g-2");
    for (int i = 0; i < list.Count; i++)
        OK(natsMsg_AckSync(list.Msgs[i], NULL, &jerr));
    natsMsgList_Destroy(&list);

    // The three left, then three messages of 100 bytes: MaxBytes 250 has room for one, as the
    // server counts a message's size (subject, reply subject and payload), and the fetch ends
    // there at once (the server ends the request with a 409).
    OK(jsFetchRequest_Init(&fr));
    fr.Batch = 10;
    fr.NoWait = true;
    fr.Expires = MS_TO_NS(WAIT_MS);
    OK(natsSubscription_FetchRequest(&list, sub, &fr));
    CHECK_INT(list.Count, 3);
    CHECK_DATA(list.Msgs[2], "g-5");
    for (int i = 0; i < list.Count; i++)
        OK(natsMsg_AckSync(list.Msgs[i], NULL, &jerr));
    natsMsgList_Destroy(&list);
    memset(payload, 'p', sizeof(payload));
    for (int i = 0; i < 3; i++)
        OK(js_Publish(NULL, js, "fr.x", payload, sizeof(payload), NULL, &jerr));
    OK(jsFetchRequest_Init(&fr));
    fr.Batch = 3;
    fr.Expires = MS_TO_NS(1000);
    fr.MaxBytes = 250;
    start = nats_Now();
    OK(natsSubscription_FetchRequest(&list, sub, &fr));
    took = nats_Now() - start;
    CHECK_INT(list.Count, 1);
    CHECK(took < WAIT_MS / 2, "a fetch that reached MaxBytes returns at once, took %lld",
          (long long) took);
    OK(natsMsg_AckSync(list.Msgs[0], NULL, &jerr));
    natsMsgList_Destroy(&list);

    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

// Receives the payloads listed (NULL-terminated) on a push subscription, acking each, then
// nothing more.
static void expect_payloads(natsSubscription *sub, const char **payloads)
{
    for (int i = 0; payloads[i] != NULL; i++) {
        natsMsg *msg = next_msg(sub);
        CHECK_DATA(msg, payloads[i]);
        OK(natsMsg_Ack(msg, NULL));
        natsMsg_Destroy(msg);
    }
    expect_no_msg(sub);
}

// An ephemeral push subscription with this deliver policy on `subject`.
static natsSubscription *push_sub(jsCtx *js, const char *subject, jsDeliverPolicy policy,
                                  uint64_t start_seq)
{
    natsSubscription *sub = NULL;
    jsSubOptions so;

    OK(jsSubOptions_Init(&so));
    so.Config.DeliverPolicy = policy;
    so.Config.OptStartSeq = start_seq;
    OK(js_SubscribeSync(&sub, js, subject, NULL, &so, &jerr));
    return sub;
}

static void push_done(natsSubscription *sub)
{
    OK(natsSubscription_Unsubscribe(sub));
    natsSubscription_Destroy(sub);
}

// Push consumers through js_SubscribeSync: deliver policies all / last / new / by start
// sequence / last per subject, and a durable one (kept while bound, removed on unsubscribe).
void push_deliver_policies(const char *url)
{
    natsConnection *nc = connect_to(url);
    jsCtx *js = jetstream(nc);
    natsSubscription *sub = NULL;
    jsSubOptions so;
    jsConsumerInfo *ci = NULL;

    add_stream(js, "PUSH", "push.>", NULL);
    js_publish_n(js, "push.a", "p", 5);

    // All, with metadata counting down what is pending.
    sub = push_sub(js, "push.a", js_DeliverAll, 0);
    for (int i = 1; i <= 5; i++) {
        natsMsg *msg = next_msg(sub);
        jsMsgMetaData *meta = metadata(msg);
        CHECK_INT(meta->Sequence.Stream, i);
        CHECK_INT(meta->Sequence.Consumer, i);
        CHECK_INT(meta->NumPending, 5 - i);
        CHECK_STR(meta->Stream, "PUSH");
        jsMsgMetaData_Destroy(meta);
        OK(natsMsg_Ack(msg, NULL));
        natsMsg_Destroy(msg);
    }
    expect_no_msg(sub);
    push_done(sub);

    sub = push_sub(js, "push.a", js_DeliverLast, 0);
    expect_payloads(sub, (const char *[]){"p-5", NULL});
    push_done(sub);

    // New: nothing of the past, then what is published after.
    sub = push_sub(js, "push.a", js_DeliverNew, 0);
    expect_no_msg(sub);
    js_publish_n(js, "push.a", "q", 1); // seq 6
    expect_payloads(sub, (const char *[]){"q-1", NULL});
    push_done(sub);

    sub = push_sub(js, "push.a", js_DeliverByStartSequence, 3);
    expect_payloads(sub, (const char *[]){"p-3", "p-4", "p-5", "q-1", NULL});
    push_done(sub);

    // Last per subject, across push.a and push.b.
    js_publish_n(js, "push.b", "b", 2); // seqs 7, 8
    sub = push_sub(js, "push.>", js_DeliverLastPerSubject, 0);
    expect_payloads(sub, (const char *[]){"q-1", "b-2", NULL});
    push_done(sub);

    // Durable: the consumer exists under its name while bound, with its push state.
    OK(jsSubOptions_Init(&so));
    so.Config.Durable = "dur";
    OK(js_SubscribeSync(&sub, js, "push.a", NULL, &so, &jerr));
    for (int i = 1; i <= 6; i++) {
        natsMsg *msg = next_msg(sub);
        OK(natsMsg_AckSync(msg, NULL, &jerr));
        natsMsg_Destroy(msg);
    }
    expect_no_msg(sub);
    ci = consumer_info(js, "PUSH", "dur");
    CHECK_STR(ci->Name, "dur");
    CHECK(ci->Config->DeliverSubject != NULL && ci->Config->DeliverSubject[0] != '\0',
          "a push consumer has a deliver subject");
    CHECK_STR(ci->Config->FilterSubject, "push.a");
    CHECK(ci->PushBound, "the durable is bound to our subscription");
    CHECK_INT(ci->NumAckPending, 0);
    CHECK_INT(ci->NumPending, 0);
    CHECK_INT(ci->Delivered.Consumer, 6);
    CHECK_INT(ci->AckFloor.Consumer, 6);
    // Stream sequences: nats-server 2.9 reports the last one it looked at, past the two push.b
    // messages (7, 8) the filter skipped; 2.15 (and natrix) the last one it delivered (6).
    CHECK(ci->Delivered.Stream == 6 || ci->Delivered.Stream == 8,
          "delivered stream sequence is the last delivered (6) or the last looked at (8)");
    CHECK(ci->AckFloor.Stream == ci->Delivered.Stream,
          "with nothing pending the ack floor is the delivered stream sequence");
    jsConsumerInfo_Destroy(ci);
    // The library created it, so unsubscribing deletes it.
    push_done(sub);
    EXPECT_JS(js_GetConsumerInfo(&ci, js, "PUSH", "dur", NULL, &jerr), NATS_NOT_FOUND,
              JSConsumerNotFoundErr);

    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

typedef struct {
    counter c;
    uint64_t next_seq; // stream sequence the next message must have (callback thread only)
    bool manual_ack;
} push_rx;

static void on_push(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    push_rx *rx = closure;
    jsMsgMetaData *meta = NULL;

    (void) nc;
    (void) sub;
    if (natsMsg_GetMetaData(&meta, msg) != NATS_OK)
        counter_error(&rx->c, "no JetStream metadata on a pushed message");
    else if (meta->Sequence.Stream != rx->next_seq)
        counter_error(&rx->c, "expected stream seq %llu, got %llu",
                      (unsigned long long) rx->next_seq,
                      (unsigned long long) meta->Sequence.Stream);
    jsMsgMetaData_Destroy(meta);
    rx->next_seq++;
    if (rx->manual_ack && natsMsg_Ack(msg, NULL) != NATS_OK)
        counter_error(&rx->c, "natsMsg_Ack failed in the callback");
    natsMsg_Destroy(msg);
    counter_add(&rx->c, 1);
}

// wait_consumer_acked for the consumer behind a JetStream subscription.
static void wait_acked(jsCtx *js, natsSubscription *sub, uint64_t floor)
{
    jsConsumerInfo *ci = NULL;

    OK(natsSubscription_GetConsumerInfo(&ci, sub, NULL, &jerr));
    wait_consumer_acked(js, ci->Stream, ci->Name, floor);
    jsConsumerInfo_Destroy(ci);
}

// js_Subscribe with a callback: manual acks from the callback, and the library's automatic
// ack after the callback returns; both move the consumer's ack floor.
void push_callback_manual_ack(const char *url)
{
    natsConnection *nc = connect_to(url);
    jsCtx *js = jetstream(nc);
    natsSubscription *manual = NULL, *automatic = NULL;
    jsSubOptions so;
    push_rx rx_manual, rx_auto;

    add_stream(js, "CB", "cb.>", NULL);
    js_publish_n(js, "cb.x", "c", 20);

    memset(&rx_manual, 0, sizeof(rx_manual));
    counter_init(&rx_manual.c);
    rx_manual.next_seq = 1;
    rx_manual.manual_ack = true;
    OK(jsSubOptions_Init(&so));
    so.ManualAck = true;
    so.Config.Durable = "manual";
    so.Config.AckPolicy = js_AckExplicit;
    OK(js_Subscribe(&manual, js, "cb.x", on_push, &rx_manual, NULL, &so, &jerr));

    memset(&rx_auto, 0, sizeof(rx_auto));
    counter_init(&rx_auto.c);
    rx_auto.next_seq = 1;
    OK(jsSubOptions_Init(&so));
    so.Config.Durable = "auto";
    OK(js_Subscribe(&automatic, js, "cb.x", on_push, &rx_auto, NULL, &so, &jerr));

    CHECK_INT(counter_wait(&rx_manual.c, 20, WAIT_MS), 20);
    CHECK_INT(counter_wait(&rx_auto.c, 20, WAIT_MS), 20);
    CHECK_COUNTER_CLEAN(&rx_manual.c);
    CHECK_COUNTER_CLEAN(&rx_auto.c);
    wait_acked(js, manual, 20);
    wait_acked(js, automatic, 20);

    // Live messages follow.
    js_publish_n(js, "cb.x", "live", 5);
    CHECK_INT(counter_wait(&rx_manual.c, 25, WAIT_MS), 25);
    CHECK_INT(counter_wait(&rx_auto.c, 25, WAIT_MS), 25);
    CHECK_COUNTER_CLEAN(&rx_manual.c);
    CHECK_COUNTER_CLEAN(&rx_auto.c);
    wait_acked(js, manual, 25);
    wait_acked(js, automatic, 25);

    OK(natsSubscription_Unsubscribe(manual));
    OK(natsSubscription_Unsubscribe(automatic));
    natsSubscription_Destroy(manual);
    natsSubscription_Destroy(automatic);
    counter_destroy(&rx_manual.c);
    counter_destroy(&rx_auto.c);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

// Ordered consumers (jsSubOptions.Ordered), sync and with a callback: every message in
// stream order, with consumer sequences 1, 2, ...; the consumer is AckNone with flow control
// and heartbeats, as the library asks.
void ordered_consumer(const char *url)
{
    natsConnection *nc = connect_to(url);
    jsCtx *js = jetstream(nc);
    natsSubscription *sub = NULL, *async = NULL;
    jsSubOptions so;
    jsConsumerInfo *ci = NULL;
    push_rx rx;
    char want[32];

    add_stream(js, "ORD", "ord.>", NULL);
    js_publish_n(js, "ord.x", "o", 50);

    OK(jsSubOptions_Init(&so));
    so.Ordered = true;
    OK(js_SubscribeSync(&sub, js, "ord.x", NULL, &so, &jerr));
    memset(&rx, 0, sizeof(rx));
    counter_init(&rx.c);
    rx.next_seq = 1;
    OK(js_Subscribe(&async, js, "ord.x", on_push, &rx, NULL, &so, &jerr));

    for (int i = 1; i <= 60; i++) {
        if (i == 51)
            js_publish_n(js, "ord.x", "live", 10); // seqs 51..60 while subscribed
        natsMsg *msg = next_msg(sub);
        jsMsgMetaData *meta = metadata(msg);
        if (i <= 50)
            snprintf(want, sizeof(want), "o-%d", i);
        else
            snprintf(want, sizeof(want), "live-%d", i - 50);
        CHECK_DATA(msg, want);
        CHECK_INT(meta->Sequence.Stream, i);
        CHECK_INT(meta->Sequence.Consumer, i);
        jsMsgMetaData_Destroy(meta);
        natsMsg_Destroy(msg);
    }
    expect_no_msg(sub);
    CHECK_INT(counter_wait(&rx.c, 60, WAIT_MS), 60);
    CHECK_COUNTER_CLEAN(&rx.c);

    OK(natsSubscription_GetConsumerInfo(&ci, sub, NULL, &jerr));
    CHECK_INT(ci->Config->AckPolicy, js_AckNone);
    CHECK(ci->Config->FlowControl, "ordered consumer has flow control");
    CHECK(ci->Config->Heartbeat > 0, "ordered consumer has heartbeats");
    CHECK_INT(ci->Delivered.Stream, 60);
    CHECK_INT(ci->NumPending, 0);
    jsConsumerInfo_Destroy(ci);

    push_done(sub);
    push_done(async);
    counter_destroy(&rx.c);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

// Flow control and idle heartbeats on push consumers: seen raw on a plain subscription to the
// deliver subject (status 100 messages, answering flow-control requests), and through
// js_SubscribeSync, where the library answers them and detects missed heartbeats.
void flow_control_heartbeat(const char *url)
{
    enum { N = 2000, SIZE = 2048 };
    natsConnection *nc = connect_to(url);
    jsCtx *js = jetstream(nc);
    natsSubscription *raw = NULL, *sub = NULL;
    jsConsumerConfig cc;
    jsConsumerInfo *ci = NULL;
    jsSubOptions so;
    jsPubOptions po;
    static char payload[SIZE];
    int data = 0, fc = 0, hb = 0;

    add_stream(js, "FC", "fc.>", NULL);
    memset(payload, 'f', sizeof(payload));
    for (int i = 0; i < N; i++)
        OK(js_PublishAsync(js, "fc.x", payload, SIZE, NULL));
    OK(jsPubOptions_Init(&po));
    po.MaxWait = 10000;
    OK(js_PublishAsyncComplete(js, &po));

    // Raw: a plain subscription on the deliver subject sees the protocol.
    OK(natsConnection_SubscribeSync(&raw, nc, "deliver.fc"));
    OK(natsSubscription_SetPendingLimits(raw, -1, -1));
    OK(natsConnection_Flush(nc));
    OK(jsConsumerConfig_Init(&cc));
    cc.Durable = "raw";
    cc.DeliverSubject = "deliver.fc";
    cc.AckPolicy = js_AckNone;
    cc.FlowControl = true;
    cc.Heartbeat = MS_TO_NS(250);
    OK(js_AddConsumer(&ci, js, "FC", &cc, NULL, &jerr));
    CHECK(ci->Config->FlowControl, "consumer created with flow control");
    CHECK_INT(ci->Config->Heartbeat, MS_TO_NS(250));
    jsConsumerInfo_Destroy(ci);

    int64_t deadline = nats_Now() + 10000;
    while ((data < N || hb == 0) && nats_Now() < deadline) {
        natsMsg *msg = NULL;
        const char *status = NULL, *desc = NULL;
        natsStatus s = natsSubscription_NextMsg(&msg, raw, 2000);
        if (s == NATS_TIMEOUT)
            break;
        OK(s);
        if (natsMsgHeader_Get(msg, "Status", &status) == NATS_OK) {
            CHECK_STR(status, "100");
            CHECK_INT(natsMsg_GetDataLength(msg), 0);
            OK(natsMsgHeader_Get(msg, "Description", &desc));
            if (strcmp(desc, "FlowControl Request") == 0) {
                CHECK(natsMsg_GetReply(msg) != NULL, "a flow-control request has a reply");
                OK(natsConnection_Publish(nc, natsMsg_GetReply(msg), NULL, 0));
                fc++;
            } else if (strcmp(desc, "Idle Heartbeat") == 0) {
                hb++;
            } else {
                FAIL("unexpected status 100 description \"%s\"", desc);
            }
        } else {
            CHECK_INT(natsMsg_GetDataLength(msg), SIZE);
            data++;
        }
        natsMsg_Destroy(msg);
    }
    CHECK_INT(data, N);
    CHECK(fc >= 1, "flow-control requests while delivering %d x %d bytes, got %d", N, SIZE, fc);
    CHECK(hb >= 1, "an idle heartbeat once delivery is done, got %d", hb);

    // Through the library: it answers flow control itself; with 250 ms heartbeats an idle
    // second passes without NATS_MISSED_HEARTBEAT.
    OK(jsSubOptions_Init(&so));
    so.Config.AckPolicy = js_AckNone;
    so.Config.FlowControl = true;
    so.Config.Heartbeat = MS_TO_NS(250);
    OK(js_SubscribeSync(&sub, js, "fc.x", NULL, &so, &jerr));
    OK(natsSubscription_SetPendingLimits(sub, -1, -1));
    for (int i = 1; i <= N; i++) {
        natsMsg *msg = next_msg(sub);
        jsMsgMetaData *meta = metadata(msg);
        CHECK_INT(meta->Sequence.Stream, i);
        jsMsgMetaData_Destroy(meta);
        natsMsg_Destroy(msg);
    }
    {
        natsMsg *msg = NULL;
        EXPECT_STATUS(natsSubscription_NextMsg(&msg, sub, 1000), NATS_TIMEOUT);
    }
    OK(natsSubscription_GetConsumerInfo(&ci, sub, NULL, &jerr));
    CHECK_INT(ci->Delivered.Stream, N);
    CHECK_INT(ci->NumPending, 0);
    jsConsumerInfo_Destroy(ci);

    push_done(sub);
    natsSubscription_Destroy(raw);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

// Consumer limits and policies on pull consumers: MaxAckPending caps what is out unacked,
// MaxDeliver stops redelivering, AckAll acks everything up to the message acked, FilterSubject
// selects.
void consumer_limits(const char *url)
{
    natsConnection *nc = connect_to(url);
    jsCtx *js = jetstream(nc);
    natsSubscription *sub = NULL;
    natsMsgList list = {NULL, 0};
    jsConsumerConfig cc;
    jsConsumerInfo *ci = NULL;
    natsMsg *msg = NULL;

    add_stream(js, "CL", "cl.>", NULL);
    js_publish_n(js, "cl.a", "a", 3); // seqs 1-3
    js_publish_n(js, "cl.b", "b", 3); // seqs 4-6

    // MaxAckPending 2: a fetch of 5 gets 2; after acking them, the next 2.
    OK(jsConsumerConfig_Init(&cc));
    cc.Durable = "map";
    cc.AckPolicy = js_AckExplicit;
    cc.MaxAckPending = 2;
    OK(js_AddConsumer(&ci, js, "CL", &cc, NULL, &jerr));
    CHECK_INT(ci->Config->MaxAckPending, 2);
    jsConsumerInfo_Destroy(ci);
    sub = pull_bind(js, "CL", "cl.>", "map");
    int64_t start = nats_Now();
    OK(natsSubscription_Fetch(&list, sub, 5, 500, &jerr));
    int64_t took = nats_Now() - start;
    CHECK_INT(list.Count, 2);
    CHECK_DATA(list.Msgs[0], "a-1");
    // The server keeps the rest of the pull request open until it expires (then answers 408),
    // rather than ending it as soon as MaxAckPending is reached.
    CHECK(took >= 400, "a fetch held back by MaxAckPending lasts until its expiry (500 ms), "
          "took %lld ms", (long long) took);
    for (int i = 0; i < list.Count; i++)
        OK(natsMsg_AckSync(list.Msgs[i], NULL, &jerr));
    natsMsgList_Destroy(&list);
    OK(natsSubscription_Fetch(&list, sub, 5, 500, &jerr));
    CHECK_INT(list.Count, 2);
    CHECK_DATA(list.Msgs[0], "a-3");
    natsMsgList_Destroy(&list);
    ci = consumer_info(js, "CL", "map");
    CHECK_INT(ci->NumAckPending, 2);
    CHECK_INT(ci->NumPending, 2);
    jsConsumerInfo_Destroy(ci);
    natsSubscription_Destroy(sub);

    // AckAll: acking the third message acks the first two as well.
    OK(jsConsumerConfig_Init(&cc));
    cc.Durable = "all";
    cc.AckPolicy = js_AckAll;
    OK(js_AddConsumer(&ci, js, "CL", &cc, NULL, &jerr));
    CHECK_INT(ci->Config->AckPolicy, js_AckAll);
    jsConsumerInfo_Destroy(ci);
    sub = pull_bind(js, "CL", "cl.>", "all");
    OK(natsSubscription_Fetch(&list, sub, 3, WAIT_MS, &jerr));
    CHECK_INT(list.Count, 3);
    OK(natsMsg_AckSync(list.Msgs[2], NULL, &jerr));
    natsMsgList_Destroy(&list);
    wait_consumer_acked(js, "CL", "all", 3);
    natsSubscription_Destroy(sub);

    // FilterSubject: only cl.b, with pending counted for cl.b only.
    OK(jsConsumerConfig_Init(&cc));
    cc.Durable = "onlyb";
    cc.AckPolicy = js_AckExplicit;
    cc.FilterSubject = "cl.b";
    OK(js_AddConsumer(&ci, js, "CL", &cc, NULL, &jerr));
    CHECK_STR(ci->Config->FilterSubject, "cl.b");
    CHECK_INT(ci->NumPending, 3);
    jsConsumerInfo_Destroy(ci);
    sub = pull_bind(js, "CL", "cl.b", "onlyb");
    OK(natsSubscription_Fetch(&list, sub, 3, WAIT_MS, &jerr));
    CHECK_INT(list.Count, 3);
    for (int i = 0; i < list.Count; i++) {
        char want[32];
        snprintf(want, sizeof(want), "b-%d", i + 1);
        CHECK_STR(natsMsg_GetSubject(list.Msgs[i]), "cl.b");
        CHECK_DATA(list.Msgs[i], want);
        OK(natsMsg_AckSync(list.Msgs[i], NULL, &jerr));
    }
    natsMsgList_Destroy(&list);
    natsSubscription_Destroy(sub);

    // MaxDeliver 2, on a stream holding one message: delivered twice, then never again.
    add_stream(js, "MD", "md.>", NULL);
    js_publish_n(js, "md.x", "m", 1);
    OK(jsConsumerConfig_Init(&cc));
    cc.Durable = "md";
    cc.AckPolicy = js_AckExplicit;
    cc.MaxDeliver = 2;
    OK(js_AddConsumer(&ci, js, "MD", &cc, NULL, &jerr));
    CHECK_INT(ci->Config->MaxDeliver, 2);
    jsConsumerInfo_Destroy(ci);
    sub = pull_bind(js, "MD", "md.x", "md");
    msg = fetch_one(sub);
    check_delivery(msg, 1, 1);
    OK(natsMsg_Nak(msg, NULL));
    natsMsg_Destroy(msg);
    msg = fetch_one(sub);
    check_delivery(msg, 1, 2);
    OK(natsMsg_Nak(msg, NULL));
    natsMsg_Destroy(msg);
    expect_fetch_timeout(sub, 500);
    natsSubscription_Destroy(sub);

    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

// Consumer variants: an ephemeral pull consumer, a push consumer shared by a queue group,
// re-adding a durable (same config: fine; another config: refused) and js_UpdateConsumer.
void consumer_variants(const char *url)
{
    natsConnection *nc = connect_to(url);
    jsCtx *js = jetstream(nc);
    natsSubscription *sub = NULL, *members[2] = {NULL, NULL};
    natsMsgList list = {NULL, 0};
    jsConsumerConfig cc;
    jsConsumerInfo *ci = NULL;
    jsSubOptions so;
    int seen[11] = {0};

    add_stream(js, "VAR", "var.>", NULL);
    js_publish_n(js, "var.x", "v", 10);

    // Ephemeral pull (no durable name): a server-named consumer.
    OK(js_PullSubscribe(&sub, js, "var.x", NULL, NULL, NULL, &jerr));
    OK(natsSubscription_Fetch(&list, sub, 10, WAIT_MS, &jerr));
    CHECK_INT(list.Count, 10);
    for (int i = 0; i < list.Count; i++)
        OK(natsMsg_Ack(list.Msgs[i], NULL));
    natsMsgList_Destroy(&list);
    OK(natsSubscription_GetConsumerInfo(&ci, sub, NULL, &jerr));
    CHECK(ci->Name != NULL && ci->Name[0] != '\0', "the ephemeral consumer has a name");
    CHECK(ci->Config->Durable == NULL || ci->Config->Durable[0] == '\0',
          "the ephemeral consumer is not durable, got %s", ci->Config->Durable);
    CHECK_INT(ci->Delivered.Stream, 10);
    jsConsumerInfo_Destroy(ci);
    OK(natsSubscription_Unsubscribe(sub));
    natsSubscription_Destroy(sub);

    // Queue group: two members share one push consumer; each message goes to one of them.
    for (int m = 0; m < 2; m++) {
        OK(jsSubOptions_Init(&so));
        so.Queue = "grp";
        OK(js_SubscribeSync(&members[m], js, "var.x", NULL, &so, &jerr));
    }
    int total = 0;
    int64_t deadline = nats_Now() + WAIT_MS;
    while (total < 10 && nats_Now() < deadline) {
        for (int m = 0; m < 2; m++) {
            natsMsg *msg = NULL;
            while (natsSubscription_NextMsg(&msg, members[m], 20) == NATS_OK) {
                jsMsgMetaData *meta = metadata(msg);
                uint64_t seq = meta->Sequence.Stream;
                jsMsgMetaData_Destroy(meta);
                CHECK(seq >= 1 && seq <= 10 && !seen[seq], "stream seq %llu delivered once",
                      (unsigned long long) seq);
                seen[seq] = 1;
                total++;
                OK(natsMsg_Ack(msg, NULL));
                natsMsg_Destroy(msg);
            }
        }
    }
    CHECK_INT(total, 10);
    expect_no_msg(members[0]);
    expect_no_msg(members[1]);
    ci = consumer_info(js, "VAR", "grp");
    CHECK_STR(ci->Config->DeliverGroup, "grp");
    jsConsumerInfo_Destroy(ci);
    for (int m = 0; m < 2; m++)
        push_done(members[m]);

    // Re-adding a durable.
    OK(jsConsumerConfig_Init(&cc));
    cc.Durable = "again";
    cc.AckPolicy = js_AckExplicit;
    OK(js_AddConsumer(&ci, js, "VAR", &cc, NULL, &jerr));
    jsConsumerInfo_Destroy(ci);
    OK(js_AddConsumer(&ci, js, "VAR", &cc, NULL, &jerr));
    CHECK_STR(ci->Name, "again");
    jsConsumerInfo_Destroy(ci);
    cc.AckPolicy = js_AckNone; // "ack policy can not be updated"
    EXPECT_JS(js_AddConsumer(&ci, js, "VAR", &cc, NULL, &jerr), NATS_ERR,
              JSConsumerCreateErr);

    // Updating what may change.
    OK(jsConsumerConfig_Init(&cc));
    cc.Durable = "again";
    cc.AckPolicy = js_AckExplicit;
    cc.MaxAckPending = 7;
    cc.Description = "updated";
    OK(js_UpdateConsumer(&ci, js, "VAR", &cc, NULL, &jerr));
    CHECK_INT(ci->Config->MaxAckPending, 7);
    CHECK_STR(ci->Config->Description, "updated");
    jsConsumerInfo_Destroy(ci);
    ci = consumer_info(js, "VAR", "again");
    CHECK_INT(ci->Config->MaxAckPending, 7);
    jsConsumerInfo_Destroy(ci);

    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}
