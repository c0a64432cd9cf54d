// JetStream scenarios: streams, publishing with acks and expectations, stream management.
#include "scenarios.h"

#include <stdio.h>
#include <stdlib.h>

// js_Publish acks name the stream and sequence; message ids deduplicate; expectations on the
// stream name, last sequence, last subject sequence and last message id are enforced.
void js_publish_acks(const char *url)
{
    natsConnection *nc = connect_to(url);
    jsCtx *js = jetstream(nc);
    jsPubAck *pa = NULL;
    jsPubOptions po;
    jsStreamInfo *si = NULL;

    add_stream(js, "ORDERS", "orders.>", NULL);
    for (int i = 1; i <= 3; i++) {
        OK(js_Publish(&pa, js, "orders.new", "o", 1, NULL, &jerr));
        CHECK_STR(pa->Stream, "ORDERS");
        CHECK_INT(pa->Sequence, i);
        CHECK(!pa->Duplicate, "first publish is not a duplicate");
        jsPubAck_Destroy(pa);
    }

    // Duplicate detection by message id (Nats-Msg-Id).
    OK(jsPubOptions_Init(&po));
    po.MsgId = "id-1";
    OK(js_Publish(&pa, js, "orders.new", "d", 1, &po, &jerr));
    CHECK_INT(pa->Sequence, 4);
    CHECK(!pa->Duplicate, "first publish with id-1 is not a duplicate");
    jsPubAck_Destroy(pa);
    OK(js_Publish(&pa, js, "orders.new", "d", 1, &po, &jerr));
    CHECK_INT(pa->Sequence, 4);
    CHECK(pa->Duplicate, "second publish with id-1 is a duplicate");
    jsPubAck_Destroy(pa);

    // Expected last sequence (Nats-Expected-Last-Sequence).
    OK(jsPubOptions_Init(&po));
    po.ExpectLastSeq = 2;
    pa = NULL;
    EXPECT_JS(js_Publish(&pa, js, "orders.new", "e", 1, &po, &jerr), NATS_ERR,
              JSStreamWrongLastSequenceErr);
    CHECK(pa == NULL, "no ack for a refused publish");
    po.ExpectLastSeq = 4;
    OK(js_Publish(&pa, js, "orders.new", "e", 1, &po, &jerr));
    CHECK_INT(pa->Sequence, 5);
    jsPubAck_Destroy(pa);

    // Expected stream (Nats-Expected-Stream).
    OK(jsPubOptions_Init(&po));
    po.ExpectStream = "OTHER";
    EXPECT_JS(js_Publish(&pa, js, "orders.new", "s", 1, &po, &jerr), NATS_ERR,
              JSStreamNotMatchErr);
    po.ExpectStream = "ORDERS";
    OK(js_Publish(&pa, js, "orders.new", "s", 1, &po, &jerr));
    CHECK_INT(pa->Sequence, 6);
    jsPubAck_Destroy(pa);

    // Expected last sequence for the subject (Nats-Expected-Last-Subject-Sequence).
    OK(js_Publish(&pa, js, "orders.other", "x", 1, NULL, &jerr));
    CHECK_INT(pa->Sequence, 7);
    jsPubAck_Destroy(pa);
    OK(jsPubOptions_Init(&po));
    po.ExpectLastSubjectSeq = 5;
    EXPECT_JS(js_Publish(&pa, js, "orders.new", "l", 1, &po, &jerr), NATS_ERR,
              JSStreamWrongLastSequenceErr);
    po.ExpectLastSubjectSeq = 6;
    OK(js_Publish(&pa, js, "orders.new", "l", 1, &po, &jerr));
    CHECK_INT(pa->Sequence, 8);
    jsPubAck_Destroy(pa);

    // Expected last message id (Nats-Expected-Last-Msg-Id).
    OK(jsPubOptions_Init(&po));
    po.MsgId = "id-2";
    OK(js_Publish(&pa, js, "orders.new", "m", 1, &po, &jerr));
    CHECK_INT(pa->Sequence, 9);
    jsPubAck_Destroy(pa);
    OK(jsPubOptions_Init(&po));
    po.ExpectLastMsgId = "id-1";
    EXPECT_JS(js_Publish(&pa, js, "orders.new", "m", 1, &po, &jerr), NATS_ERR,
              JSStreamWrongLastMsgIDErr);
    po.ExpectLastMsgId = "id-2";
    OK(js_Publish(&pa, js, "orders.new", "m", 1, &po, &jerr));
    CHECK_INT(pa->Sequence, 10);
    jsPubAck_Destroy(pa);

    // A subject no stream takes: the request has no responders.
    EXPECT_STATUS(js_Publish(&pa, js, "nostream.x", "n", 1, NULL, &jerr), NATS_NO_RESPONDERS);

    OK(js_GetStreamInfo(&si, js, "ORDERS", NULL, &jerr));
    CHECK_INT(si->State.Msgs, 10);
    CHECK_INT(si->State.LastSeq, 10);
    jsStreamInfo_Destroy(si);

    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

typedef struct {
    counter c;       // acks received (positive or not)
    int ok;          // positive acks, in sequence order
    int errors;      // negative acks
    jsErrCode code;  // error code of the last negative ack
    uint64_t last_seq;
} async_acks;

// Counts js_PublishAsync outcomes; positive acks must come with increasing sequences.
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    async_acks *a = closure;
    bool bad = false;
    uint64_t want = 0;

    (void) js;
    pthread_mutex_lock(&a->c.mu);
    if (pa != NULL) {
        want = a->last_seq + 1;
        bad = strcmp(pa->Stream, "ASYNC") != 0 || pa->Sequence != want;
        a->last_seq = pa->Sequence;
        a->ok++;
    } else if (pae != NULL) {
        a->errors++;
        a->code = pae->ErrCode;
    }
    pthread_mutex_unlock(&a->c.mu);
    if (bad)
        counter_error(&a->c, "ack for stream %s seq %llu, expected ASYNC seq %llu", pa->Stream,
                      (unsigned long long) pa->Sequence, (unsigned long long) want);
    natsMsg_Destroy(msg);
    counter_add(&a->c, 1);
}

// js_PublishAsync with an ack handler: every message acked in order; js_PublishAsyncComplete
// waits for all; a failed expectation comes back as a negative ack with its error code.
void js_publish_async(const char *url)
{
    enum { N = 200 };
    natsConnection *nc = connect_to(url);
    jsCtx *js = NULL;
    jsOptions o;
    jsPubOptions po;
    jsStreamInfo *si = NULL;
    async_acks acks;
    char data[32];

    memset(&acks, 0, sizeof(acks));
    counter_init(&acks.c);
    OK(jsOptions_Init(&o));
    o.Wait = 5000;
    o.PublishAsync.AckHandler = on_ack;
    o.PublishAsync.AckHandlerClosure = &acks;
    OK(natsConnection_JetStream(&js, nc, &o));
    add_stream(js, "ASYNC", "async.>", NULL);

    for (int i = 1; i <= N; i++) {
        int len = snprintf(data, sizeof(data), "a-%d", i);
        OK(js_PublishAsync(js, "async.x", data, len, NULL));
    }
    OK(jsPubOptions_Init(&po));
    po.MaxWait = 5000;
    OK(js_PublishAsyncComplete(js, &po));
    CHECK_INT(counter_wait(&acks.c, N, WAIT_MS), N);
    CHECK_COUNTER_CLEAN(&acks.c);
    CHECK_INT(acks.ok, N);
    CHECK_INT(acks.errors, 0);

    // A wrong expected last sequence: negative ack with JSStreamWrongLastSequenceErr.
    OK(jsPubOptions_Init(&po));
    po.ExpectLastSeq = 1;
    OK(js_PublishAsync(js, "async.x", "late", 4, &po));
    OK(jsPubOptions_Init(&po));
    po.MaxWait = 5000;
    OK(js_PublishAsyncComplete(js, &po));
    CHECK_INT(counter_wait(&acks.c, N + 1, WAIT_MS), N + 1);
    CHECK_INT(acks.errors, 1);
    CHECK_INT(acks.code, JSStreamWrongLastSequenceErr);

    OK(js_GetStreamInfo(&si, js, "ASYNC", NULL, &jerr));
    CHECK_INT(si->State.Msgs, N);
    CHECK_INT(si->State.FirstSeq, 1);
    CHECK_INT(si->State.LastSeq, N);
    jsStreamInfo_Destroy(si);

    jsCtx_Destroy(js);
    counter_destroy(&acks.c);
    natsConnection_Destroy(nc);
}

static jsStreamInfo *stream_info(jsCtx *js, const char *name, jsOptions *o)
{
    jsStreamInfo *si = NULL;

    OK(js_GetStreamInfo(&si, js, name, o, &jerr));
    return si;
}

// Stream state through js_GetStreamInfo (counts, bytes, sequences, per-subject counts, deleted
// sequences) as messages are fetched with js_GetMsg / js_GetLastMsg, deleted, limited by
// js_UpdateStream and purged (by subject, then entirely); js_GetMsg returns headers.
void js_stream_ops(const char *url)
{
    natsConnection *nc = connect_to(url);
    jsCtx *js = jetstream(nc);
    jsStreamInfo *si = NULL;
    jsOptions o;
    natsMsg *msg = NULL;
    char data[32];

    add_stream(js, "EVENTS", "events.>", NULL);
    // events.a gets the odd sequences, events.b the even ones.
    for (int i = 1; i <= 10; i++) {
        jsPubAck *pa = NULL;
        int len = snprintf(data, sizeof(data), "ev-%d", i);
        OK(js_Publish(&pa, js, i % 2 ? "events.a" : "events.b", data, len, NULL, &jerr));
        CHECK_INT(pa->Sequence, i);
        jsPubAck_Destroy(pa);
    }

    si = stream_info(js, "EVENTS", NULL);
    CHECK_INT(si->State.Msgs, 10);
    CHECK(si->State.Bytes > 0, "stream bytes > 0, got %llu", (unsigned long long) si->State.Bytes);
    CHECK_INT(si->State.FirstSeq, 1);
    CHECK_INT(si->State.LastSeq, 10);
    CHECK(si->State.FirstTime > 0 && si->State.LastTime >= si->State.FirstTime,
          "first/last times set, got %lld and %lld", (long long) si->State.FirstTime,
          (long long) si->State.LastTime);
    CHECK_INT(si->State.NumSubjects, 2);
    CHECK_INT(si->State.Consumers, 0);
    CHECK_INT(si->Config->SubjectsLen, 1);
    CHECK_STR(si->Config->Subjects[0], "events.>");
    CHECK_INT(si->Config->Storage, js_FileStorage);
    CHECK_INT(si->Config->Retention, js_LimitsPolicy);
    jsStreamInfo_Destroy(si);

    // Per-subject counts on request.
    OK(jsOptions_Init(&o));
    o.Stream.Info.SubjectsFilter = ">";
    si = stream_info(js, "EVENTS", &o);
    CHECK(si->State.Subjects != NULL, "subject counts returned");
    CHECK_INT(si->State.Subjects->Count, 2);
    for (int i = 0; i < si->State.Subjects->Count; i++) {
        jsStreamStateSubject *s = &si->State.Subjects->List[i];
        CHECK(strcmp(s->Subject, "events.a") == 0 || strcmp(s->Subject, "events.b") == 0,
              "subject events.a or events.b, got %s", s->Subject);
        CHECK_INT(s->Msgs, 5);
    }
    jsStreamInfo_Destroy(si);

    // Direct reads by sequence and by last subject.
    OK(js_GetMsg(&msg, js, "EVENTS", 3, NULL, &jerr));
    CHECK_STR(natsMsg_GetSubject(msg), "events.a");
    CHECK_DATA(msg, "ev-3");
    CHECK_INT(natsMsg_GetSequence(msg), 3);
    CHECK(natsMsg_GetTime(msg) > 0, "stored time set");
    natsMsg_Destroy(msg);
    OK(js_GetLastMsg(&msg, js, "EVENTS", "events.a", NULL, &jerr));
    CHECK_DATA(msg, "ev-9");
    CHECK_INT(natsMsg_GetSequence(msg), 9);
    natsMsg_Destroy(msg);
    OK(js_GetLastMsg(&msg, js, "EVENTS", "events.b", NULL, &jerr));
    CHECK_DATA(msg, "ev-10");
    natsMsg_Destroy(msg);
    EXPECT_JS(js_GetLastMsg(&msg, js, "EVENTS", "events.none", NULL, &jerr), NATS_NOT_FOUND,
              JSNoMessageFoundErr);
    EXPECT_JS(js_GetMsg(&msg, js, "EVENTS", 99, NULL, &jerr), NATS_NOT_FOUND,
              JSNoMessageFoundErr);

    // Delete one message: gone for js_GetMsg, counted as deleted.
    OK(js_DeleteMsg(js, "EVENTS", 3, NULL, &jerr));
    EXPECT_JS(js_GetMsg(&msg, js, "EVENTS", 3, NULL, &jerr), NATS_NOT_FOUND,
              JSNoMessageFoundErr);
    OK(jsOptions_Init(&o));
    o.Stream.Info.DeletedDetails = true;
    si = stream_info(js, "EVENTS", &o);
    CHECK_INT(si->State.Msgs, 9);
    CHECK_INT(si->State.NumDeleted, 1);
    CHECK_INT(si->State.DeletedLen, 1);
    CHECK_INT(si->State.Deleted[0], 3);
    jsStreamInfo_Destroy(si);

    // Lower MaxMsgs: the oldest messages go at once, and the limit holds for new ones.
    {
        jsStreamConfig cfg;
        const char *subjects[] = {"events.>", "more.>"};

        OK(jsStreamConfig_Init(&cfg));
        cfg.Name = "EVENTS";
        cfg.Subjects = subjects;
        cfg.SubjectsLen = 2;
        cfg.MaxMsgs = 5;
        OK(js_UpdateStream(&si, js, &cfg, NULL, &jerr));
        CHECK_INT(si->Config->MaxMsgs, 5);
        CHECK_INT(si->Config->SubjectsLen, 2);
        CHECK_INT(si->State.Msgs, 5);
        CHECK_INT(si->State.FirstSeq, 6);
        CHECK_INT(si->State.LastSeq, 10);
        jsStreamInfo_Destroy(si);
    }
    js_publish_n(js, "more.x", "more", 1); // seq 11 (the new subject is taken)
    si = stream_info(js, "EVENTS", NULL);
    CHECK_INT(si->State.Msgs, 5);
    CHECK_INT(si->State.FirstSeq, 7);
    CHECK_INT(si->State.LastSeq, 11);
    jsStreamInfo_Destroy(si);

    // Purge one subject (events.a: 7, 9), then everything.
    OK(jsOptions_Init(&o));
    o.Stream.Purge.Subject = "events.a";
    OK(js_PurgeStream(js, "EVENTS", &o, &jerr));
    si = stream_info(js, "EVENTS", NULL);
    CHECK_INT(si->State.Msgs, 3);
    CHECK_INT(si->State.FirstSeq, 8);
    jsStreamInfo_Destroy(si);
    OK(js_PurgeStream(js, "EVENTS", NULL, &jerr));
    si = stream_info(js, "EVENTS", NULL);
    CHECK_INT(si->State.Msgs, 0);
    CHECK_INT(si->State.Bytes, 0);
    CHECK_INT(si->State.FirstSeq, 12);
    CHECK_INT(si->State.LastSeq, 11);
    jsStreamInfo_Destroy(si);
    // Sequences continue after a purge.
    js_publish_n(js, "events.a", "after", 1);
    si = stream_info(js, "EVENTS", NULL);
    CHECK_INT(si->State.Msgs, 1);
    CHECK_INT(si->State.FirstSeq, 12);
    CHECK_INT(si->State.LastSeq, 12);
    jsStreamInfo_Destroy(si);

    // A message with headers: js_GetMsg returns them.
    {
        natsMsg *hm = NULL;
        const char *value = NULL;
        jsPubAck *pa = NULL;

        OK(natsMsg_Create(&hm, "events.h", NULL, "with-headers", 12));
        OK(natsMsgHeader_Set(hm, "X-Trace", "t-1"));
        OK(js_PublishMsg(&pa, js, hm, NULL, &jerr));
        CHECK_INT(pa->Sequence, 13);
        jsPubAck_Destroy(pa);
        natsMsg_Destroy(hm);
        OK(js_GetMsg(&hm, js, "EVENTS", 13, NULL, &jerr));
        CHECK_STR(natsMsg_GetSubject(hm), "events.h");
        CHECK_DATA(hm, "with-headers");
        OK(natsMsgHeader_Get(hm, "X-Trace", &value));
        CHECK_STR(value, "t-1");
        natsMsg_Destroy(hm);
    }

    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

static bool names_contain(char **names, int count, const char *name)
{
    for (int i = 0; i < count; i++) {
        if (strcmp(names[i], name) == 0)
            return true;
    }
    return false;
}

// Listing streams (names and infos), account info, the errors for a name in use, overlapping
// subjects and a missing stream, and deleting streams.
void js_stream_admin(const char *url)
{
    natsConnection *nc = connect_to(url);
    jsCtx *js = jetstream(nc);
    jsStreamNamesList *names = NULL;
    jsStreamInfoList *infos = NULL;
    jsAccountInfo *ai = NULL;
    jsStreamInfo *si = NULL;
    jsStreamConfig cfg;
    const char *subjects[1];

    add_stream(js, "S1", "s1.>", NULL);
    add_stream(js, "S2", "s2.>", NULL);
    add_stream(js, "S3", "s3.>", NULL);
    js_publish_n(js, "s1.x", "s1", 3);

    // Same name, another config: refused. Overlapping subjects: refused.
    OK(jsStreamConfig_Init(&cfg));
    cfg.Name = "S1";
    subjects[0] = "other.>";
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    EXPECT_JS(js_AddStream(&si, js, &cfg, NULL, &jerr), NATS_ERR, JSStreamNameExistErr);
    cfg.Name = "S4";
    subjects[0] = "s1.x";
    EXPECT_JS(js_AddStream(&si, js, &cfg, NULL, &jerr), NATS_ERR, JSStreamSubjectOverlapErr);

    OK(js_StreamNames(&names, js, NULL, &jerr));
    CHECK_INT(names->Count, 3);
    for (int i = 1; i <= 3; i++) {
        char name[16];
        snprintf(name, sizeof(name), "S%d", i);
        CHECK(names_contain(names->List, names->Count, name), "stream names include %s", name);
    }
    jsStreamNamesList_Destroy(names);

    OK(js_Streams(&infos, js, NULL, &jerr));
    CHECK_INT(infos->Count, 3);
    for (int i = 0; i < infos->Count; i++) {
        jsStreamInfo *info = infos->List[i];
        uint64_t want = strcmp(info->Config->Name, "S1") == 0 ? 3 : 0;
        CHECK(info->Config->Name[0] == 'S', "a listed stream, got %s", info->Config->Name);
        CHECK(info->State.Msgs == want, "stream %s holds %llu messages, got %llu",
              info->Config->Name, (unsigned long long) want,
              (unsigned long long) info->State.Msgs);
    }
    jsStreamInfoList_Destroy(infos);

    OK(js_GetAccountInfo(&ai, js, NULL, &jerr));
    CHECK_INT(ai->Streams, 3);
    CHECK_INT(ai->Consumers, 0);
    CHECK(ai->Store > 0, "file storage used by S1's messages, got %llu",
          (unsigned long long) ai->Store);
    CHECK_INT(ai->Memory, 0);
    CHECK(ai->API.Total > 0, "API calls counted, got %llu", (unsigned long long) ai->API.Total);
    jsAccountInfo_Destroy(ai);

    // A stream that does not exist.
    EXPECT_JS(js_GetStreamInfo(&si, js, "NOPE", NULL, &jerr), NATS_NOT_FOUND,
              JSStreamNotFoundErr);
    EXPECT_JS(js_PurgeStream(js, "NOPE", NULL, &jerr), NATS_NOT_FOUND, JSStreamNotFoundErr);

    // Delete S2: gone from the lists and the account; deleting again is "not found".
    OK(js_DeleteStream(js, "S2", NULL, &jerr));
    EXPECT_JS(js_GetStreamInfo(&si, js, "S2", NULL, &jerr), NATS_NOT_FOUND,
              JSStreamNotFoundErr);
    EXPECT_JS(js_DeleteStream(js, "S2", NULL, &jerr), NATS_NOT_FOUND, JSStreamNotFoundErr);
    OK(js_StreamNames(&names, js, NULL, &jerr));
    CHECK_INT(names->Count, 2);
    CHECK(!names_contain(names->List, names->Count, "S2"), "S2 no longer listed");
    jsStreamNamesList_Destroy(names);
    OK(js_GetAccountInfo(&ai, js, NULL, &jerr));
    CHECK_INT(ai->Streams, 2);
    jsAccountInfo_Destroy(ai);
    // Its subjects are free again.
    EXPECT_STATUS(js_Publish(NULL, js, "s2.x", "x", 1, NULL, &jerr), NATS_NO_RESPONDERS);

    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

// A stream with these limits on one subject; the server must echo them.
static void add_limited_stream(jsCtx *js, jsStreamConfig *cfg, const char *name,
                               const char *subject)
{
    jsStreamInfo *si = NULL;
    const char *subjects[] = {subject};

    cfg->Name = name;
    cfg->Subjects = subjects;
    cfg->SubjectsLen = 1;
    OK(js_AddStream(&si, js, cfg, NULL, &jerr));
    // The limits this scenario sets (unset ones come back as the server's defaults).
    if (cfg->MaxMsgs > 0)
        CHECK_INT(si->Config->MaxMsgs, cfg->MaxMsgs);
    if (cfg->MaxMsgSize > 0)
        CHECK_INT(si->Config->MaxMsgSize, cfg->MaxMsgSize);
    if (cfg->MaxMsgsPerSubject > 0)
        CHECK_INT(si->Config->MaxMsgsPerSubject, cfg->MaxMsgsPerSubject);
    if (cfg->MaxAge > 0)
        CHECK_INT(si->Config->MaxAge, cfg->MaxAge);
    CHECK_INT(si->Config->Discard, cfg->Discard);
    CHECK_INT(si->Config->Storage, cfg->Storage);
    jsStreamInfo_Destroy(si);
}

// Stream limits as publishers meet them: MaxMsgs with DiscardNew refuses, MaxMsgSize refuses,
// MaxMsgsPerSubject keeps the newest per subject, MaxAge expires; memory storage shows in the
// account's memory use.
void js_limits(const char *url)
{
    natsConnection *nc = connect_to(url);
    jsCtx *js = jetstream(nc);
    jsStreamConfig cfg;
    jsStreamInfo *si = NULL;
    jsAccountInfo *ai = NULL;
    natsMsg *msg = NULL;
    char big[17];

    // MaxMsgs 2 with DiscardNew, in memory.
    OK(jsStreamConfig_Init(&cfg));
    cfg.MaxMsgs = 2;
    cfg.Discard = js_DiscardNew;
    cfg.Storage = js_MemoryStorage;
    add_limited_stream(js, &cfg, "LIMNEW", "lim.new");
    js_publish_n(js, "lim.new", "n", 2);
    EXPECT_JS(js_Publish(NULL, js, "lim.new", "n", 1, NULL, &jerr), NATS_ERR,
              JSStreamStoreFailedErr);
    si = stream_info(js, "LIMNEW", NULL);
    CHECK_INT(si->State.Msgs, 2);
    CHECK_INT(si->State.LastSeq, 2);
    jsStreamInfo_Destroy(si);
    OK(js_GetAccountInfo(&ai, js, NULL, &jerr));
    CHECK(ai->Memory > 0, "memory storage used, got %llu", (unsigned long long) ai->Memory);
    CHECK_INT(ai->Store, 0);
    jsAccountInfo_Destroy(ai);

    // MaxMsgSize 16.
    OK(jsStreamConfig_Init(&cfg));
    cfg.MaxMsgSize = 16;
    add_limited_stream(js, &cfg, "LIMSIZE", "lim.size");
    memset(big, 'b', sizeof(big));
    OK(js_Publish(NULL, js, "lim.size", big, 16, NULL, &jerr));
    EXPECT_JS(js_Publish(NULL, js, "lim.size", big, 17, NULL, &jerr), NATS_ERR,
              JSStreamMessageExceedsMaximumErr);

    // MaxMsgsPerSubject 1: the newest message of each subject stays.
    OK(jsStreamConfig_Init(&cfg));
    cfg.MaxMsgsPerSubject = 1;
    add_limited_stream(js, &cfg, "LIMSUBJ", "lim.subj.*");
    js_publish_n(js, "lim.subj.a", "a", 3);
    js_publish_n(js, "lim.subj.b", "b", 1);
    si = stream_info(js, "LIMSUBJ", NULL);
    CHECK_INT(si->State.Msgs, 2);
    CHECK_INT(si->State.FirstSeq, 3);
    CHECK_INT(si->State.LastSeq, 4);
    jsStreamInfo_Destroy(si);
    OK(js_GetLastMsg(&msg, js, "LIMSUBJ", "lim.subj.a", NULL, &jerr));
    CHECK_DATA(msg, "a-3");
    natsMsg_Destroy(msg);

    // MaxAge 500 ms: the messages expire (well within 3 s), not at once.
    OK(jsStreamConfig_Init(&cfg));
    cfg.MaxAge = 500LL * 1000000LL;
    add_limited_stream(js, &cfg, "LIMAGE", "lim.age");
    int64_t start = nats_Now();
    js_publish_n(js, "lim.age", "old", 2);
    for (;;) {
        si = stream_info(js, "LIMAGE", NULL);
        uint64_t msgs = si->State.Msgs;
        jsStreamInfo_Destroy(si);
        if (msgs == 0)
            break;
        CHECK(nats_Now() - start < WAIT_MS, "messages older than MaxAge expire, %llu left",
              (unsigned long long) msgs);
        nats_Sleep(50);
    }
    CHECK(nats_Now() - start >= 400, "messages kept until MaxAge, gone after %lld ms",
          (long long) (nats_Now() - start));
    si = stream_info(js, "LIMAGE", NULL);
    CHECK_INT(si->State.FirstSeq, 3);
    CHECK_INT(si->State.LastSeq, 2);
    jsStreamInfo_Destroy(si);

    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

// Waits (bounded) until `stream` holds `msgs` messages (mirrors and sources copy in the
// background).
static void wait_stream_msgs(jsCtx *js, const char *stream, uint64_t msgs)
{
    int64_t deadline = nats_Now() + WAIT_MS;

    for (;;) {
        jsStreamInfo *si = stream_info(js, stream, NULL);
        uint64_t got = si->State.Msgs;
        jsStreamInfo_Destroy(si);
        if (got == msgs)
            return;
        CHECK(nats_Now() < deadline, "stream %s holds %llu messages, got %llu", stream,
              (unsigned long long) msgs, (unsigned long long) got);
        nats_Sleep(50);
    }
}

// Stream features beyond plain storage: direct gets (AllowDirect), erasing a message,
// DenyDelete / DenyPurge, republishing stored messages (RePublish), a mirror and a stream
// sourcing from two others.
void js_stream_features(const char *url)
{
    natsConnection *nc = connect_to(url);
    jsCtx *js = jetstream(nc);
    jsStreamConfig cfg;
    jsStreamInfo *si = NULL;
    jsDirectGetMsgOptions dg;
    natsMsg *msg = NULL;
    natsSubscription *republished = NULL;
    const char *value = NULL;

    // Direct gets: by sequence, next for a subject, last for a subject.
    {
        const char *subjects[] = {"dir.>"};
        OK(jsStreamConfig_Init(&cfg));
        cfg.Name = "DIRECT";
        cfg.Subjects = subjects;
        cfg.SubjectsLen = 1;
        cfg.AllowDirect = true;
        OK(js_AddStream(&si, js, &cfg, NULL, &jerr));
        CHECK(si->Config->AllowDirect, "stream created with allow_direct");
        jsStreamInfo_Destroy(si);
    }
    OK(js_Publish(NULL, js, "dir.a", "1", 1, NULL, &jerr));
    OK(js_Publish(NULL, js, "dir.b", "2", 1, NULL, &jerr));
    OK(js_Publish(NULL, js, "dir.a", "3", 1, NULL, &jerr));
    OK(jsDirectGetMsgOptions_Init(&dg));
    dg.Sequence = 2;
    OK(js_DirectGetMsg(&msg, js, "DIRECT", NULL, &dg));
    CHECK_STR(natsMsg_GetSubject(msg), "dir.b");
    CHECK_DATA(msg, "2");
    CHECK_INT(natsMsg_GetSequence(msg), 2);
    CHECK(natsMsg_GetTime(msg) > 0, "direct get returns the stored time");
    OK(natsMsgHeader_Get(msg, "Nats-Stream", &value));
    CHECK_STR(value, "DIRECT");
    natsMsg_Destroy(msg);
    OK(jsDirectGetMsgOptions_Init(&dg));
    dg.LastBySubject = "dir.a";
    OK(js_DirectGetMsg(&msg, js, "DIRECT", NULL, &dg));
    CHECK_DATA(msg, "3");
    CHECK_INT(natsMsg_GetSequence(msg), 3);
    natsMsg_Destroy(msg);
    OK(jsDirectGetMsgOptions_Init(&dg));
    dg.Sequence = 1;
    dg.NextBySubject = "dir.b";
    OK(js_DirectGetMsg(&msg, js, "DIRECT", NULL, &dg));
    CHECK_DATA(msg, "2");
    natsMsg_Destroy(msg);
    OK(jsDirectGetMsgOptions_Init(&dg));
    dg.Sequence = 99;
    EXPECT_STATUS(js_DirectGetMsg(&msg, js, "DIRECT", NULL, &dg), NATS_NOT_FOUND);

    // Erase: like delete, the message is gone.
    OK(js_EraseMsg(js, "DIRECT", 1, NULL, &jerr));
    EXPECT_JS(js_GetMsg(&msg, js, "DIRECT", 1, NULL, &jerr), NATS_NOT_FOUND,
              JSNoMessageFoundErr);
    wait_stream_msgs(js, "DIRECT", 2);

    // DenyDelete / DenyPurge.
    {
        const char *subjects[] = {"locked.>"};
        OK(jsStreamConfig_Init(&cfg));
        cfg.Name = "LOCKED";
        cfg.Subjects = subjects;
        cfg.SubjectsLen = 1;
        cfg.DenyDelete = true;
        cfg.DenyPurge = true;
        OK(js_AddStream(&si, js, &cfg, NULL, &jerr));
        CHECK(si->Config->DenyDelete && si->Config->DenyPurge, "deny_delete and deny_purge set");
        jsStreamInfo_Destroy(si);
    }
    js_publish_n(js, "locked.x", "l", 2);
    EXPECT_JS(js_DeleteMsg(js, "LOCKED", 1, NULL, &jerr), NATS_ERR, JSStreamMsgDeleteFailed);
    EXPECT_JS(js_PurgeStream(js, "LOCKED", NULL, &jerr), NATS_ERR, JSStreamPurgeFailedErr);
    wait_stream_msgs(js, "LOCKED", 2);

    // RePublish: each stored message is also published on the destination, with its stream
    // position in headers.
    OK(natsConnection_SubscribeSync(&republished, nc, "rp.out.>"));
    OK(natsConnection_Flush(nc));
    {
        const char *subjects[] = {"rp.in.>"};
        jsRePublish rp;
        OK(jsRePublish_Init(&rp));
        rp.Source = "rp.in.>";
        rp.Destination = "rp.out.>";
        OK(jsStreamConfig_Init(&cfg));
        cfg.Name = "RP";
        cfg.Subjects = subjects;
        cfg.SubjectsLen = 1;
        cfg.RePublish = &rp;
        OK(js_AddStream(&si, js, &cfg, NULL, &jerr));
        CHECK(si->Config->RePublish != NULL, "republish config echoed");
        CHECK_STR(si->Config->RePublish->Destination, "rp.out.>");
        jsStreamInfo_Destroy(si);
    }
    OK(js_Publish(NULL, js, "rp.in.x", "hello", 5, NULL, &jerr));
    OK(js_Publish(NULL, js, "rp.in.y", "world", 5, NULL, &jerr));
    OK(js_Publish(NULL, js, "rp.in.x", "again", 5, NULL, &jerr));
    // Nats-Last-Sequence is the previous sequence of the same subject (0: none).
    const char *want[][4] = {
        {"rp.out.x", "hello", "1", "0"},
        {"rp.out.y", "world", "2", "0"},
        {"rp.out.x", "again", "3", "1"},
    };
    for (int i = 0; i < 3; i++) {
        msg = next_msg(republished);
        CHECK_STR(natsMsg_GetSubject(msg), want[i][0]);
        CHECK_DATA(msg, want[i][1]);
        OK(natsMsgHeader_Get(msg, "Nats-Stream", &value));
        CHECK_STR(value, "RP");
        OK(natsMsgHeader_Get(msg, "Nats-Sequence", &value));
        CHECK_STR(value, want[i][2]);
        OK(natsMsgHeader_Get(msg, "Nats-Last-Sequence", &value));
        CHECK_STR(value, want[i][3]);
        natsMsg_Destroy(msg);
    }
    expect_no_msg(republished);

    // A mirror of DIRECT, and a stream sourcing DIRECT and RP.
    {
        jsStreamSource mirror;
        OK(jsStreamSource_Init(&mirror));
        mirror.Name = "DIRECT";
        OK(jsStreamConfig_Init(&cfg));
        cfg.Name = "MIRROR";
        cfg.Mirror = &mirror;
        OK(js_AddStream(&si, js, &cfg, NULL, &jerr));
        jsStreamInfo_Destroy(si);
    }
    wait_stream_msgs(js, "MIRROR", 2);
    OK(js_GetMsg(&msg, js, "MIRROR", 3, NULL, &jerr));
    CHECK_STR(natsMsg_GetSubject(msg), "dir.a");
    CHECK_DATA(msg, "3");
    natsMsg_Destroy(msg);
    si = stream_info(js, "MIRROR", NULL);
    CHECK(si->Mirror != NULL, "mirror info reported");
    CHECK_STR(si->Mirror->Name, "DIRECT");
    jsStreamInfo_Destroy(si);
    {
        jsStreamSource a, b;
        jsStreamSource *sources[] = {&a, &b};
        OK(jsStreamSource_Init(&a));
        OK(jsStreamSource_Init(&b));
        a.Name = "DIRECT";
        b.Name = "RP";
        OK(jsStreamConfig_Init(&cfg));
        cfg.Name = "AGG";
        cfg.Sources = sources;
        cfg.SourcesLen = 2;
        OK(js_AddStream(&si, js, &cfg, NULL, &jerr));
        jsStreamInfo_Destroy(si);
    }
    wait_stream_msgs(js, "AGG", 5);
    si = stream_info(js, "AGG", NULL);
    CHECK_INT(si->SourcesLen, 2);
    jsStreamInfo_Destroy(si);

    natsSubscription_Destroy(republished);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}
