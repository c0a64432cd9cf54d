// Key/Value scenarios: buckets, put/get/create/update, delete and purge, history, keys,
// watchers, status.
#include "scenarios.h"

#include <stdio.h>
#include <stdlib.h>

static kvStore *create_bucket(jsCtx *js, const char *bucket, int history)
{
    kvStore *kv = NULL;
    kvConfig kc;

    OK(kvConfig_Init(&kc));
    kc.Bucket = bucket;
    kc.History = (uint8_t) history;
    OK(js_CreateKeyValue(&kv, js, &kc));
    CHECK_STR(kvStore_Bucket(kv), bucket);
    return kv;
}

static kvEntry *get(kvStore *kv, const char *key)
{
    kvEntry *e = NULL;

    OK(kvStore_Get(&e, kv, key));
    return e;
}

// Checks a key's current value and revision.
static void expect_value(kvStore *kv, const char *key, const char *value, uint64_t revision)
{
    kvEntry *e = get(kv, key);

    CHECK_STR(kvEntry_Key(e), key);
    CHECK_STR(kvEntry_ValueString(e), value);
    CHECK_INT(kvEntry_ValueLen(e), strlen(value));
    CHECK_INT(kvEntry_Revision(e), revision);
    CHECK_INT(kvEntry_Operation(e), kvOp_Put);
    kvEntry_Destroy(e);
}

// Checks a call failed the way nats.c fails against nats-server when the revision a write
// expects is not the key's: NATS_ERR, with the server's "wrong last sequence" error.
#define EXPECT_WRONG_REVISION(call)                                                          \
    do {                                                                                     \
        EXPECT_STATUS(call, NATS_ERR);                                                       \
        const char *wr_text_ = nats_GetLastError(NULL);                                      \
        CHECK(wr_text_ != NULL && strstr(wr_text_, "wrong last sequence") != NULL,           \
              "%s: last error mentions the wrong last sequence, got \"%s\"", #call,          \
              wr_text_ ? wr_text_ : "");                                                     \
    } while (0)

// Put / Get / GetRevision, Create (only for a new key), Update (only at the current revision),
// binary values, missing keys, and binding to an existing bucket with js_KeyValue.
void kv_put_get(const char *url)
{
    natsConnection *nc = connect_to(url);
    jsCtx *js = jetstream(nc);
    kvStore *kv = create_bucket(js, "cfg", 5);
    kvStore *again = NULL;
    kvEntry *e = NULL;
    uint64_t rev = 0;
    const char binary[] = {'a', '\0', 'b', '\n', (char) 0xff};

    OK(kvStore_PutString(&rev, kv, "color", "red"));
    CHECK_INT(rev, 1);
    e = get(kv, "color");
    CHECK_STR(kvEntry_Bucket(e), "cfg");
    CHECK_STR(kvEntry_Key(e), "color");
    CHECK_STR(kvEntry_ValueString(e), "red");
    CHECK_INT(kvEntry_Revision(e), 1);
    CHECK_INT(kvEntry_Operation(e), kvOp_Put);
    CHECK_INT(kvEntry_Delta(e), 0);
    CHECK(kvEntry_Created(e) > 0, "entry creation time set");
    kvEntry_Destroy(e);

    OK(kvStore_PutString(&rev, kv, "color", "blue"));
    CHECK_INT(rev, 2);
    expect_value(kv, "color", "blue", 2);
    OK(kvStore_GetRevision(&e, kv, "color", 1));
    CHECK_STR(kvEntry_ValueString(e), "red");
    kvEntry_Destroy(e);

    OK(kvStore_Put(&rev, kv, "bin", binary, (int) sizeof(binary)));
    CHECK_INT(rev, 3);
    e = get(kv, "bin");
    CHECK_INT(kvEntry_ValueLen(e), sizeof(binary));
    CHECK(memcmp(kvEntry_Value(e), binary, sizeof(binary)) == 0, "binary value intact");
    kvEntry_Destroy(e);

    // Create: only if the key does not exist.
    EXPECT_WRONG_REVISION(kvStore_CreateString(&rev, kv, "color", "green"));
    expect_value(kv, "color", "blue", 2);
    OK(kvStore_CreateString(&rev, kv, "shape", "circle"));
    CHECK_INT(rev, 4);

    // Update: only at the current revision.
    EXPECT_WRONG_REVISION(kvStore_UpdateString(&rev, kv, "shape", "square", 3));
    OK(kvStore_UpdateString(&rev, kv, "shape", "square", 4));
    CHECK_INT(rev, 5);
    expect_value(kv, "shape", "square", 5);
    EXPECT_WRONG_REVISION(kvStore_UpdateString(&rev, kv, "shape", "oval", 4));

    EXPECT_STATUS(kvStore_Get(&e, kv, "missing"), NATS_NOT_FOUND);
    EXPECT_STATUS(kvStore_GetRevision(&e, kv, "color", 4), NATS_NOT_FOUND);

    // Another handle on the same bucket sees the same data.
    OK(js_KeyValue(&again, js, "cfg"));
    expect_value(again, "shape", "square", 5);
    kvStore_Destroy(again);
    EXPECT_STATUS(js_KeyValue(&again, js, "nosuchbucket"), NATS_NOT_FOUND);

    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

// Checks a key's history: the operations, in revision order (NULL-terminated).
static void expect_history(kvStore *kv, const char *key, bool ignore_deletes,
                           const kvOperation *ops, const uint64_t *revisions)
{
    kvEntryList list = {NULL, 0};
    kvWatchOptions o;
    int n = 0;

    while (ops[n] != kvOp_Unknown)
        n++;
    OK(kvWatchOptions_Init(&o));
    o.IgnoreDeletes = ignore_deletes;
    o.Timeout = WAIT_MS;
    OK(kvStore_History(&list, kv, key, &o));
    CHECK(list.Count == n, "history of %s has %d entries, got %d", key, n, list.Count);
    for (int i = 0; i < n; i++) {
        CHECK_STR(kvEntry_Key(list.Entries[i]), key);
        CHECK(kvEntry_Operation(list.Entries[i]) == ops[i] &&
                  kvEntry_Revision(list.Entries[i]) == revisions[i],
              "history of %s, entry %d: expected op %d at revision %llu, got op %d at %llu",
              key, i, (int) ops[i], (unsigned long long) revisions[i],
              (int) kvEntry_Operation(list.Entries[i]),
              (unsigned long long) kvEntry_Revision(list.Entries[i]));
    }
    kvEntryList_Destroy(&list);
}

// Checks the bucket's keys (a NULL-terminated list, any order).
static void expect_keys(kvStore *kv, const char **keys)
{
    kvKeysList list = {NULL, 0};
    kvWatchOptions o;
    int n = 0;

    while (keys[n] != NULL)
        n++;
    OK(kvWatchOptions_Init(&o));
    o.Timeout = WAIT_MS;
    OK(kvStore_Keys(&list, kv, &o));
    CHECK(list.Count == n, "bucket %s has %d keys, got %d", kvStore_Bucket(kv), n, list.Count);
    for (int i = 0; i < n; i++) {
        bool found = false;
        for (int j = 0; j < list.Count; j++)
            found = found || strcmp(list.Keys[j], keys[i]) == 0;
        CHECK(found, "key %s listed", keys[i]);
    }
    kvKeysList_Destroy(&list);
}

// Delete leaves a marker (Get: not found; history keeps the values), Create works again after
// it; Purge drops the history; PurgeDeletes drops the markers; Keys lists live keys only.
void kv_delete_purge_history(const char *url)
{
    natsConnection *nc = connect_to(url);
    jsCtx *js = jetstream(nc);
    kvStore *kv = create_bucket(js, "hist", 10);
    kvEntry *e = NULL;
    kvEntryList list = {NULL, 0};
    kvPurgeOptions po;
    uint64_t rev = 0;

    OK(kvStore_PutString(&rev, kv, "a", "1")); // 1
    OK(kvStore_PutString(&rev, kv, "a", "2")); // 2
    OK(kvStore_PutString(&rev, kv, "b", "x")); // 3
    OK(kvStore_PutString(&rev, kv, "a", "3")); // 4
    OK(kvStore_PutString(&rev, kv, "c", "y")); // 5
    CHECK_INT(rev, 5);
    expect_history(kv, "a", false, (kvOperation[]){kvOp_Put, kvOp_Put, kvOp_Put, kvOp_Unknown},
                   (uint64_t[]){1, 2, 4});
    expect_keys(kv, (const char *[]){"a", "b", "c", NULL});

    OK(kvStore_Delete(kv, "a")); // 6
    EXPECT_STATUS(kvStore_Get(&e, kv, "a"), NATS_NOT_FOUND);
    expect_history(kv, "a", false,
                   (kvOperation[]){kvOp_Put, kvOp_Put, kvOp_Put, kvOp_Delete, kvOp_Unknown},
                   (uint64_t[]){1, 2, 4, 6});
    expect_history(kv, "a", true, (kvOperation[]){kvOp_Put, kvOp_Put, kvOp_Put, kvOp_Unknown},
                   (uint64_t[]){1, 2, 4});
    expect_keys(kv, (const char *[]){"b", "c", NULL});
    OK(kvStore_CreateString(&rev, kv, "a", "reborn")); // 7
    CHECK_INT(rev, 7);
    expect_value(kv, "a", "reborn", 7);

    OK(kvStore_Purge(kv, "b", NULL)); // 8
    EXPECT_STATUS(kvStore_Get(&e, kv, "b"), NATS_NOT_FOUND);
    expect_history(kv, "b", false, (kvOperation[]){kvOp_Purge, kvOp_Unknown},
                   (uint64_t[]){8});
    expect_keys(kv, (const char *[]){"a", "c", NULL});
    // The purge left "a" and "c" alone.
    expect_history(kv, "c", false, (kvOperation[]){kvOp_Put, kvOp_Unknown}, (uint64_t[]){5});

    // Remove every delete/purge marker, whatever its age: b has no history at all.
    OK(kvPurgeOptions_Init(&po));
    po.DeleteMarkersOlderThan = -1;
    OK(kvStore_PurgeDeletes(kv, &po));
    EXPECT_STATUS(kvStore_History(&list, kv, "b", NULL), NATS_NOT_FOUND);
    expect_keys(kv, (const char *[]){"a", "c", NULL});
    expect_value(kv, "a", "reborn", 7);

    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

// The next watcher entry, which must come within WAIT_MS; NULL is the "initial values done"
// marker.
static kvEntry *watch_next(kvWatcher *w)
{
    kvEntry *e = NULL;

    OK(kvWatcher_Next(&e, w, WAIT_MS));
    return e;
}

// Checks the next watcher entry's key, operation and (for puts) value.
static void expect_update(kvWatcher *w, const char *key, kvOperation op, const char *value)
{
    kvEntry *e = watch_next(w);

    CHECK(e != NULL, "a watcher entry for %s, got the init-done marker", key);
    CHECK_STR(kvEntry_Key(e), key);
    CHECK_INT(kvEntry_Operation(e), op);
    if (value != NULL)
        CHECK_STR(kvEntry_ValueString(e), value);
    kvEntry_Destroy(e);
}

static void expect_init_done(kvWatcher *w)
{
    kvEntry *e = watch_next(w);

    CHECK(e == NULL, "the init-done marker, got key %s", kvEntry_Key(e));
}

static void expect_no_update(kvWatcher *w)
{
    kvEntry *e = NULL;
    natsStatus s = kvWatcher_Next(&e, w, QUIET_MS);

    CHECK(s == NATS_TIMEOUT, "no watcher entry, got status %s and key %s",
          natsStatus_GetText(s), e ? kvEntry_Key(e) : "(none)");
}

// Watchers: current values first, the init-done marker, then live puts, deletes and purges;
// a watcher on one key; a watcher on an empty key gets the marker at once; IncludeHistory
// replays every revision; a stopped watcher reports NATS_ILLEGAL_STATE.
void kv_watch(const char *url)
{
    natsConnection *nc = connect_to(url);
    jsCtx *js = jetstream(nc);
    kvStore *kv = create_bucket(js, "watch", 5);
    kvWatcher *all = NULL, *one = NULL, *empty = NULL, *history = NULL;
    kvWatchOptions o;
    kvEntry *e = NULL;

    OK(kvStore_PutString(NULL, kv, "k1", "v1"));
    OK(kvStore_PutString(NULL, kv, "k2", "old"));
    OK(kvStore_PutString(NULL, kv, "k2", "v2"));

    OK(kvStore_WatchAll(&all, kv, NULL));
    expect_update(all, "k1", kvOp_Put, "v1");
    expect_update(all, "k2", kvOp_Put, "v2");
    expect_init_done(all);
    OK(kvStore_Watch(&one, kv, "k1", NULL));
    expect_update(one, "k1", kvOp_Put, "v1");
    expect_init_done(one);
    OK(kvStore_Watch(&empty, kv, "k3", NULL));
    expect_init_done(empty);

    OK(kvStore_PutString(NULL, kv, "k1", "v1b"));
    OK(kvStore_Delete(kv, "k2"));
    OK(kvStore_PutString(NULL, kv, "k3", "v3"));
    OK(kvStore_Purge(kv, "k1", NULL));
    expect_update(all, "k1", kvOp_Put, "v1b");
    expect_update(all, "k2", kvOp_Delete, NULL);
    expect_update(all, "k3", kvOp_Put, "v3");
    expect_update(all, "k1", kvOp_Purge, NULL);
    expect_no_update(all);
    expect_update(one, "k1", kvOp_Put, "v1b");
    expect_update(one, "k1", kvOp_Purge, NULL);
    expect_no_update(one);
    expect_update(empty, "k3", kvOp_Put, "v3");
    expect_no_update(empty);

    // Every revision still kept for k2 (two puts and the delete marker).
    OK(kvWatchOptions_Init(&o));
    o.IncludeHistory = true;
    OK(kvStore_Watch(&history, kv, "k2", &o));
    expect_update(history, "k2", kvOp_Put, "old");
    expect_update(history, "k2", kvOp_Put, "v2");
    expect_update(history, "k2", kvOp_Delete, NULL);
    expect_init_done(history);

    OK(kvWatcher_Stop(all));
    EXPECT_STATUS(kvWatcher_Next(&e, all, QUIET_MS), NATS_ILLEGAL_STATE);

    kvWatcher_Destroy(all);
    kvWatcher_Destroy(one);
    kvWatcher_Destroy(empty);
    kvWatcher_Destroy(history);
    kvStore_Destroy(kv);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

// kvStore_Status reports values, history, TTL and bucket; the bucket is a stream KV_<bucket>
// with the KV settings; js_DeleteKeyValue removes it.
void kv_status_delete(const char *url)
{
    natsConnection *nc = connect_to(url);
    jsCtx *js = jetstream(nc);
    kvStore *kv = NULL;
    kvStatus *sts = NULL;
    jsStreamInfo *si = NULL;
    kvConfig kc;
    const int64_t ttl = 60LL * 1000000000LL; // 60 s, in nanoseconds

    OK(kvConfig_Init(&kc));
    kc.Bucket = "st";
    kc.History = 3;
    kc.TTL = ttl;
    OK(js_CreateKeyValue(&kv, js, &kc));

    for (int i = 0; i < 4; i++)
        OK(kvStore_PutString(NULL, kv, "a", "value"));
    OK(kvStore_PutString(NULL, kv, "b", "value"));

    OK(kvStore_Status(&sts, kv));
    CHECK_STR(kvStatus_Bucket(sts), "st");
    CHECK_INT(kvStatus_Values(sts), 4); // three revisions of a are kept, one of b
    CHECK_INT(kvStatus_History(sts), 3);
    CHECK_INT(kvStatus_Replicas(sts), 1);
    CHECK_INT(kvStatus_TTL(sts), ttl);
    kvStatus_Destroy(sts);

    OK(js_GetStreamInfo(&si, js, "KV_st", NULL, &jerr));
    CHECK_INT(si->Config->SubjectsLen, 1);
    CHECK_STR(si->Config->Subjects[0], "$KV.st.>");
    CHECK_INT(si->Config->MaxMsgsPerSubject, 3);
    CHECK(si->Config->AllowRollup, "KV stream allows rollups");
    CHECK(si->Config->DenyDelete, "KV stream denies message deletes");
    CHECK(si->Config->AllowDirect, "KV stream allows direct gets");
    CHECK_INT(si->Config->Discard, js_DiscardNew);
    CHECK_INT(si->Config->MaxAge, ttl);
    CHECK_INT(si->Config->Duplicates, ttl); // the duplicate window is capped at the TTL
    CHECK_INT(si->State.Msgs, 4);
    jsStreamInfo_Destroy(si);

    kvStore_Destroy(kv);
    OK(js_DeleteKeyValue(js, "st"));
    EXPECT_STATUS(js_KeyValue(&kv, js, "st"), NATS_NOT_FOUND);
    EXPECT_JS(js_GetStreamInfo(&si, js, "KV_st", NULL, &jerr), NATS_NOT_FOUND,
              JSStreamNotFoundErr);

    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}
