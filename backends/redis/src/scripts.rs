//! The Lua scripts behind every call that must be atomic.
//!
//! Redis runs a script without interleaving any other command, so a script is how a
//! read-then-write (claim due jobs, take a lock unless someone holds it, keep a count
//! beside a set) stays correct with many clients. Each script touches only the keys it is
//! given, except [`LIVE_WORKERS`] (see the module docs). Scripts are sent by hash
//! (`EVALSHA`) and loaded on first use by `redis::Script`.

use std::sync::LazyLock;

use redis::Script;

/// Lua: `decr(hash, field)` lowers a counter and drops it at zero, so count hashes hold
/// only live queues and never go negative.
macro_rules! decr_fn {
    () => {
        "local function decr(hash, field)
            if redis.call('HINCRBY', hash, field, -1) <= 0 then
                redis.call('HDEL', hash, field)
            end
        end
        "
    };
}

/// Lua: `now` is the server's time in ms; lock expiry must not depend on client clocks.
/// `keep_until_last(zset)` makes a shared-holder set expire with its last holder, so an
/// abandoned lock leaves nothing behind.
macro_rules! time_fns {
    () => {
        "local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local function keep_until_last(zset)
            local last = redis.call('ZRANGE', zset, -1, -1, 'WITHSCORES')
            if last[2] then redis.call('PEXPIREAT', zset, last[2]) end
        end
        "
    };
}

/// Lua: the delayed set's helpers; `k` = {waiting, releasing, jobs, due, counts, legacy
/// body, legacy queue} (see `RedisStore::delayed_keys`). Jobs are members and fields by
/// their id's 16 bytes; a job's entry in `jobs` is its queue, a newline (queue names have
/// none) and its encoded job. Jobs written before this layout are keyed by the hyphenated
/// id, with body and queue in the legacy hashes; `legacy` says whether any is left,
/// checked once per script run, so a store without them pays nothing for them, and
/// `text_id(id)` gives the hyphenated form. `entry(k, m)` returns the body and queue of
/// member `m` (`false` for none); `drop_entry(k, m)` deletes its entry and due time and
/// uncounts it; `schedule_one(k, id, queue, due, body)` adds a job, or moves it (from
/// either layout) to its new due time, its old lease dropped, counted once, under its new
/// queue; `take(k, id, set)` removes the job from `set` in either layout and returns the
/// member it had there, or `false`.
macro_rules! delayed_fns {
    () => {
        "local function text_id(b)
            local h = string.gsub(b, '.', function(c) return string.format('%02x', string.byte(c)) end)
            return string.sub(h, 1, 8) .. '-' .. string.sub(h, 9, 12) .. '-' ..
                string.sub(h, 13, 16) .. '-' .. string.sub(h, 17, 20) .. '-' .. string.sub(h, 21, 32)
        end
        local function entry(k, m)
            local v = redis.call('HGET', k[3], m)
            if v then
                local nl = string.find(v, '\\n', 1, true)
                return string.sub(v, nl + 1), string.sub(v, 1, nl - 1)
            end
            if legacy then return redis.call('HGET', k[6], m), redis.call('HGET', k[7], m) end
            return false, false
        end
        local function queue_of(k, m)
            local v = redis.call('HGET', k[3], m)
            if v then return string.sub(v, 1, string.find(v, '\\n', 1, true) - 1) end
            if legacy then return redis.call('HGET', k[7], m) end
            return false
        end
        local function drop_entry(k, m)
            local queue = queue_of(k, m)
            redis.call('HDEL', k[3], m)
            redis.call('HDEL', k[4], m)
            if legacy then
                redis.call('HDEL', k[6], m)
                redis.call('HDEL', k[7], m)
            end
            if queue then decr(k[5], queue) end
        end
        local function take(k, id, set)
            if redis.call('ZREM', set, id) == 1 then return id end
            if legacy then
                local t = text_id(id)
                if redis.call('ZREM', set, t) == 1 then return t end
            end
            return false
        end
        local function schedule_one(k, id, queue, due, body)
            local old = queue_of(k, id)
            if legacy then
                local t = text_id(id)
                local was = redis.call('HGET', k[7], t)
                if was then
                    redis.call('ZREM', k[1], t)
                    redis.call('ZREM', k[2], t)
                    redis.call('HDEL', k[4], t)
                    redis.call('HDEL', k[6], t)
                    redis.call('HDEL', k[7], t)
                    if old then decr(k[5], was) else old = was end
                end
            end
            if old ~= queue then
                if old then decr(k[5], old) end
                redis.call('HINCRBY', k[5], queue, 1)
            end
            redis.call('ZREM', k[2], id)
            redis.call('HDEL', k[4], id)
            redis.call('ZADD', k[1], due, id)
            redis.call('HSET', k[3], id, queue .. '\\n' .. body)
        end
        "
    };
}

/// Lua: `local legacy`, for [`delayed_fns`], from the delayed keys starting at `KEYS[i]`.
macro_rules! legacy_at {
    ($i:literal) => {
        concat!(
            "local legacy = redis.call('EXISTS', KEYS[",
            $i,
            " + 5], KEYS[",
            $i,
            " + 6]) > 0
            "
        )
    };
}

/// Lua: `plain_scheduled(json)` is true for a state record that says only what the job
/// itself says while it waits: `scheduled`, never started, no note, error, progress or
/// result. Such a record is not kept beside a job in the delayed set (see [`SCHEDULE`]).
macro_rules! plain_scheduled_fn {
    () => {
        "local function plain_scheduled(json)
            local ok, r = pcall(cjson.decode, json)
            if not ok or type(r) ~= 'table' or r.state ~= 'scheduled' then return false end
            for _, f in ipairs({'started_at_ms', 'finished_at_ms', 'progress', 'progress_note',
                                'worker', 'last_error', 'note', 'result'}) do
                if r[f] ~= nil and r[f] ~= cjson.null then return false end
            end
            return true
        end
        "
    };
}

/// Adds or moves jobs. KEYS: the seven delayed keys, then each job's state record.
/// ARGV: id (16 bytes), queue, due, body for each job (see `schedule_one`). A job's
/// record that is only `scheduled` ([`plain_scheduled_fn`]) is deleted: while the job
/// waits, the store answers that record from the job itself (`JobStates::record`), which
/// saves most of what a waiting job costs the server.
pub(super) const SCHEDULE_LUA: &str = concat!(
    decr_fn!(),
    legacy_at!(1),
    delayed_fns!(),
    plain_scheduled_fn!(),
    "for i = 1, #ARGV, 4 do
        schedule_one(KEYS, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
        local record = KEYS[7 + (i + 3) / 4]
        local json = redis.call('GET', record)
        if json and plain_scheduled(json) then redis.call('DEL', record) end
    end
    return 0"
);

/// [`SCHEDULE_LUA`], for one batch of jobs.
pub(super) static SCHEDULE: LazyLock<Script> = LazyLock::new(|| Script::new(SCHEDULE_LUA));

/// Claims due jobs. KEYS: the seven delayed keys. ARGV: now, limit, lease expiry. First
/// returns expired leases to waiting (at their own due time), then moves up to `limit`
/// jobs due by `now`, earliest first, into releasing, keeping each one's due time in
/// `due` while it is claimed. Returns `{id, body, queue, due}` per claimed job.
pub(super) static CLAIM_DUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        decr_fn!(),
        legacy_at!(1),
        delayed_fns!(),
        "local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
        for _, id in ipairs(expired) do
            redis.call('ZADD', KEYS[1], redis.call('HGET', KEYS[4], id) or ARGV[1], id)
            redis.call('HDEL', KEYS[4], id)
        end
        if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1]) end
        local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES',
            'LIMIT', 0, ARGV[2])
        local claimed = {}
        for i = 1, #due, 2 do
            local id, at = due[i], due[i + 1]
            redis.call('ZREM', KEYS[1], id)
            redis.call('ZADD', KEYS[2], ARGV[3], id)
            redis.call('HSET', KEYS[4], id, at)
            local body, queue = entry(KEYS, id)
            claimed[#claimed + 1] = {id, body, queue, at}
        end
        return claimed"
    ))
});

/// Forgets published jobs. KEYS: the seven delayed keys. ARGV: ids (16 bytes). Only jobs
/// still claimed go: one rescheduled since its claim has started a new wait.
pub(super) static RELEASE_DONE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        decr_fn!(),
        legacy_at!(1),
        delayed_fns!(),
        "for _, id in ipairs(ARGV) do
            local m = take(KEYS, id, KEYS[2])
            if m then drop_entry(KEYS, m) end
        end
        return 0"
    ))
});

/// Removes a job wherever it is. KEYS: the seven delayed keys. ARGV: id (16 bytes).
/// Returns its body only if it was waiting (a claimed job may be published already).
pub(super) static UNSCHEDULE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        decr_fn!(),
        legacy_at!(1),
        delayed_fns!(),
        "local waiting = take(KEYS, ARGV[1], KEYS[1])
        local m = waiting or take(KEYS, ARGV[1], KEYS[2])
        local body = false
        if m then
            if waiting then body = entry(KEYS, m) end
            drop_entry(KEYS, m)
        end
        return body"
    ))
});

/// A job's state record. KEYS: the record, then the seven delayed keys. ARGV: id (16
/// bytes). Returns `{'record', json}`, or for a job in the delayed set without a record
/// (see [`SCHEDULE`]) `{'waiting', body, due}`, or `{}`.
pub(super) static RECORD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        decr_fn!(),
        legacy_at!(2),
        delayed_fns!(),
        "local json = redis.call('GET', KEYS[1])
        if json then return {'record', json} end
        local k = {KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]}
        local body = entry(k, ARGV[1])
        if not body then return {} end
        local due = redis.call('ZSCORE', k[1], ARGV[1]) or redis.call('HGET', k[4], ARGV[1])
        return {'waiting', body, due or ''}"
    ))
});

/// Takes a lock. KEYS: exclusive key, shared set, fence counter. ARGV: `x` or `s`,
/// holder, TTL ms. Grants unless another live holder excludes the request (a holder
/// asking again, even in the other mode, is renewed); returns the next fencing token,
/// or nil if refused.
pub(super) static LOCK_ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        time_fns!(),
        "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
        local owner = redis.call('GET', KEYS[1])
        if owner and owner ~= ARGV[2] then return false end
        local ttl = tonumber(ARGV[3])
        if ARGV[1] == 'x' then
            local others = redis.call('ZCARD', KEYS[2])
            if redis.call('ZSCORE', KEYS[2], ARGV[2]) then others = others - 1 end
            if others > 0 then return false end
            redis.call('ZREM', KEYS[2], ARGV[2])
            redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
        else
            redis.call('DEL', KEYS[1])
            redis.call('ZADD', KEYS[2], now + ttl, ARGV[2])
            keep_until_last(KEYS[2])
        end
        return redis.call('INCR', KEYS[3])"
    ))
});

/// Extends a lock. KEYS: exclusive key, shared set. ARGV: holder, TTL ms. Returns 1 if
/// the holder still held it (in either mode), else 0.
pub(super) static LOCK_RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        time_fns!(),
        "if redis.call('GET', KEYS[1]) == ARGV[1] then
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
            return 1
        end
        redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
        if redis.call('ZSCORE', KEYS[2], ARGV[1]) then
            redis.call('ZADD', KEYS[2], 'XX', now + tonumber(ARGV[2]), ARGV[1])
            keep_until_last(KEYS[2])
            return 1
        end
        return 0"
    ))
});

/// Releases a lock if the holder holds it. KEYS: exclusive key, shared set. ARGV: holder.
pub(super) static LOCK_RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
        redis.call('ZREM', KEYS[2], ARGV[1])
        return 0",
    )
});

/// Writes a fenced resource. KEYS: resource hash. ARGV: token, value. Refuses (returns 0)
/// a token below the stored one. Tokens are compared as decimal strings (length, then
/// text) because Lua numbers lose precision past 2^53.
pub(super) static FENCED_WRITE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local stored = redis.call('HGET', KEYS[1], 'token')
        if stored and (#ARGV[1] < #stored or (#ARGV[1] == #stored and ARGV[1] < stored)) then
            return 0
        end
        redis.call('HSET', KEYS[1], 'token', ARGV[1], 'value', ARGV[2])
        return 1",
    )
});

/// Claims a uniqueness key. KEYS: the key. ARGV: job id, TTL ms. Returns nil if the job
/// now holds it (or already did, keeping its expiry), else the holder's id.
pub(super) static UNIQUE_CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
        local holder = redis.call('GET', KEYS[1])
        if holder == ARGV[1] then return false end
        return holder",
    )
});

/// The checks before a job runs, and its execution lease. KEYS: completion marker, cancel
/// flag, state record, lease hash. ARGV: the `running` record's JSON (empty: write
/// nothing), record TTL ms, holder, lease TTL ms, max crashes. Returns `{1}` if the job
/// completed, `{2}` if its cancel was requested, `{3, remaining ms}` if another holder's
/// lease is live, `{4, crashes}` if too many executions crashed, else `{0, token,
/// crashes}` with the lease taken and the record written. A lease that expired without
/// being released is one crash, counted once: the next holder replaces it.
pub(super) static ADMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        time_fns!(),
        "if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then
            if redis.call('EXISTS', KEYS[1]) == 1 then return {1} end
            return {2}
        end
        local lease = redis.call('HMGET', KEYS[4], 'holder', 'crashes', 'until')
        local holder = lease[1]
        local crashes = tonumber(lease[2] or '0')
        if holder then
            local expires = tonumber(lease[3] or '0')
            if expires > now then return {3, expires - now} end
            crashes = redis.call('HINCRBY', KEYS[4], 'crashes', 1)
            redis.call('HDEL', KEYS[4], 'holder', 'until')
        end
        if crashes >= tonumber(ARGV[5]) then return {4, crashes} end
        local token = redis.call('HINCRBY', KEYS[4], 'token', 1)
        redis.call('HSET', KEYS[4], 'holder', ARGV[3], 'until', now + tonumber(ARGV[4]))
        redis.call('PEXPIRE', KEYS[4], ARGV[2])
        if ARGV[1] ~= '' then redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2]) end
        return {0, token, crashes}"
    ))
});

/// Extends an execution lease. KEYS: lease hash. ARGV: holder, TTL ms. Returns 1 if the
/// holder still held it, else 0. An expired lease nobody took yet is still the holder's.
pub(super) static LEASE_RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        time_fns!(),
        "if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return 0 end
        redis.call('HSET', KEYS[1], 'until', now + tonumber(ARGV[2]))
        return 1"
    ))
});

/// Ends an execution. KEYS: lease hash. ARGV: holder. Frees the lease if the holder holds
/// it; the token and crash count stay, so tokens keep increasing.
pub(super) static LEASE_RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('HGET', KEYS[1], 'holder') == ARGV[1] then
            redis.call('HDEL', KEYS[1], 'holder', 'until')
        end
        return 0",
    )
});

/// Deletes a key only if it holds the given value. KEYS: the key. ARGV: value.
pub(super) static COMPARE_AND_DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0",
    )
});

/// Files a dead letter. KEYS: index, letters, queues, counts, bodies. ARGV: id, died at,
/// the summary's JSON, queue, body. Replacing a letter counts it once, under its new
/// queue.
pub(super) static DEAD_PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        decr_fn!(),
        "local old = redis.call('HGET', KEYS[3], ARGV[1])
        if old ~= ARGV[4] then
            if old then decr(KEYS[4], old) end
            redis.call('HINCRBY', KEYS[4], ARGV[4], 1)
        end
        redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
        redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
        redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
        redis.call('HSET', KEYS[5], ARGV[1], ARGV[5])
        return 0"
    ))
});

/// Removes dead letters. KEYS: index, letters, queues, counts, bodies. ARGV: ids.
/// Returns how many existed.
pub(super) static DEAD_REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        decr_fn!(),
        "local removed = 0
        for _, id in ipairs(ARGV) do
            if redis.call('HDEL', KEYS[2], id) == 1 then
                removed = removed + 1
                redis.call('ZREM', KEYS[1], id)
                redis.call('HDEL', KEYS[5], id)
                local queue = redis.call('HGET', KEYS[3], id)
                redis.call('HDEL', KEYS[3], id)
                if queue then decr(KEYS[4], queue) end
            end
        end
        return removed"
    ))
});

/// One page of dead letters, newest first. KEYS: index, letters. ARGV: first and last
/// rank. Returns the summary JSON of each letter in the page (nil for one removed
/// meanwhile); bodies are not read.
pub(super) static DEAD_PAGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local ids = redis.call('ZREVRANGE', KEYS[1], ARGV[1], ARGV[2])
        local page = {}
        for i, id in ipairs(ids) do page[i] = redis.call('HGET', KEYS[2], id) end
        return page",
    )
});

/// Lists live workers. KEYS: the workers set. ARGV: the `ns:worker:` prefix. Drops ids
/// expired by the server's clock, then returns the JSON of each live worker (nil if its key expired first).
pub(super) static LIVE_WORKERS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        time_fns!(),
        "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
        local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
        local infos = {}
        for i, id in ipairs(ids) do infos[i] = redis.call('GET', ARGV[1] .. id) end
        return infos",
    ))
});

/// A worker's heartbeat: its id in the live set until the server's time plus the TTL,
/// and its report, which expires with it. KEYS: the live set, the report's key. ARGV:
/// id, TTL ms, report JSON.
pub(super) static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        time_fns!(),
        "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
        redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
        return 0",
    ))
});

/// Writes state records, each unless its job completed. ARGV[1]: TTL ms. For record `i`
/// (from 0): KEYS[3i+1..3i+3] are its record, completion marker and queue's `waiting`
/// ZSET; ARGV[4i+2..4i+5] its JSON, `1` if pending (else `0`), its score (updated ms) and
/// its id. A completed job's final record is never replaced by a write meant for an
/// earlier stage (a re-release, a retried enqueue). One call writes a batch: one command
/// for the server to parse and answer instead of one per job.
pub(super) const PUT_RECORDS_LUA: &str = "for i = 0, #KEYS / 3 - 1 do
        local k, a = 3 * i, 4 * i + 1
        if redis.call('EXISTS', KEYS[k + 2]) == 0 then
            redis.call('SET', KEYS[k + 1], ARGV[a + 1], 'PX', ARGV[1])
            if ARGV[a + 2] == '1' then
                redis.call('ZADD', KEYS[k + 3], 'NX', ARGV[a + 3], ARGV[a + 4])
            else
                redis.call('ZREM', KEYS[k + 3], ARGV[a + 4])
            end
        end
    end
    return 0";

/// [`PUT_RECORDS_LUA`].
pub(super) static PUT_RECORDS: LazyLock<Script> = LazyLock::new(|| Script::new(PUT_RECORDS_LUA));

/// Records a completion. KEYS: state record, completion marker, the queue's `waiting`
/// ZSET, lease hash, `ns:completed`. ARGV: the record's JSON, TTL ms, the job's id, its
/// queue. The queue's completed count goes up unless the marker was already there (a
/// second completion of one job counts once). One script, so no
/// reader sees the marker without the final record or the reverse; a completed job never
/// runs again (the marker is checked first), so its lease, token and crash count go.
pub(super) static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
        if redis.call('EXISTS', KEYS[2]) == 0 then
            redis.call('HINCRBY', KEYS[5], ARGV[4], 1)
        end
        redis.call('SET', KEYS[2], 1, 'PX', ARGV[2])
        redis.call('ZREM', KEYS[3], ARGV[3])
        redis.call('DEL', KEYS[4])
        return 0",
    )
});

/// The oldest waiting job of each queue. KEYS: the queues' `waiting` ZSETs. ARGV[1]: the
/// job record key prefix (`ns:job:`). For each queue, the head's record is checked: one
/// that no longer says `pending` (it ran, died, expired or was never published) is
/// removed and the next looked at, at most 100 per queue and call. Returns one score per
/// key, `false` for a queue with none.
pub(super) static OLDEST_PENDING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local out = {}
        for i, key in ipairs(KEYS) do
            out[i] = false
            for _ = 1, 100 do
                local head = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
                if #head == 0 then break end
                local v = redis.call('GET', ARGV[1] .. head[1])
                local ok, record = false, nil
                if v then ok, record = pcall(cjson.decode, v) end
                if ok and record.state == 'pending' then
                    out[i] = head[2]
                    break
                end
                redis.call('ZREM', key, head[1])
            end
        end
        return out",
    )
});

/// Deletes the record `KEYS[1]` if its state is still `pending` or `scheduled`; 1 if it did.
pub(super) static FORGET_UNPUBLISHED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local v = redis.call('GET', KEYS[1])
        if not v then return 0 end
        local ok, record = pcall(cjson.decode, v)
        if ok and (record.state == 'pending' or record.state == 'scheduled') then
            redis.call('DEL', KEYS[1])
            return 1
        end
        return 0",
    )
});

/// Creates or replaces a schedule's declaration. KEYS: declarations hash, state hash.
/// ARGV: name, declaration JSON, enabled (1 or 0). A new schedule's watermark and
/// creation time are the server's now; one re-enabled moves its watermark up to now.
/// Returns 1 if it was created.
pub(super) static SCHEDULE_PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        time_fns!(),
        "local created = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        local at = string.format('%d', now)
        if redis.call('HGET', KEYS[2], 'enabled') == '0' and ARGV[3] == '1' then
            if (tonumber(redis.call('HGET', KEYS[2], 'watermark')) or 0) < now then
                redis.call('HSET', KEYS[2], 'watermark', at)
            end
        end
        redis.call('HSET', KEYS[2], 'enabled', ARGV[3])
        redis.call('HSET', KEYS[2], 'updated_at', at)
        redis.call('HSETNX', KEYS[2], 'watermark', at)
        redis.call('HSETNX', KEYS[2], 'created_at', at)
        return created"
    ))
});

/// Pauses (`ARGV[2]` = 1) or resumes (0) schedule `ARGV[1]`. KEYS: declarations hash,
/// state hash. A resume moves the watermark up to the server's now. Returns 0 if there
/// is no such schedule.
pub(super) static SCHEDULE_PAUSE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        time_fns!(),
        "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
        if ARGV[2] == '0' and redis.call('HGET', KEYS[2], 'paused') == '1' then
            if (tonumber(redis.call('HGET', KEYS[2], 'watermark')) or 0) < now then
                redis.call('HSET', KEYS[2], 'watermark', string.format('%d', now))
            end
        end
        redis.call('HSET', KEYS[2], 'paused', ARGV[2])
        return 1"
    ))
});

/// One step of a schedule (`Schedules::cron_step`), applied only if the caller holds the
/// leader lock with its token, the schedule exists, is not paused and its watermark is
/// the one the caller read. KEYS: leader lock, leader fence counter, declarations hash,
/// state hash, then for a fire: the seven delayed-set keys, the job's record, its
/// uniqueness key. ARGV: holder, token, name, expected watermark, new watermark, action
/// (`advance`, `owe`, `settle`, `fire`), instant, then for a fire: id, queue, due, body,
/// record JSON, record TTL, uniqueness TTL, the id's 16 bytes. Returns `{outcome}` or
/// `{'taken', holder}`. A fired job's record (it names its schedule) is kept as written.
pub(super) static CRON_STEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        decr_fn!(),
        "local legacy = #KEYS > 4 and redis.call('EXISTS', KEYS[10], KEYS[11]) > 0
        ",
        delayed_fns!(),
        time_fns!(),
        "if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('GET', KEYS[2]) ~= ARGV[2] then
            return {'not_leader'}
        end
        if redis.call('HEXISTS', KEYS[3], ARGV[3]) == 0 then return {'gone'} end
        if redis.call('HGET', KEYS[4], 'paused') == '1' then return {'paused'} end
        if redis.call('HGET', KEYS[4], 'watermark') ~= ARGV[4] then return {'moved'} end
        if ARGV[6] == 'fire' then
            local id = ARGV[8]
            local holder = redis.call('GET', KEYS[13])
            if holder then return {'taken', holder} end
            redis.call('SET', KEYS[13], id, 'PX', ARGV[14])
            schedule_one({KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]},
                ARGV[15], ARGV[9], ARGV[10], ARGV[11])
            redis.call('SET', KEYS[12], ARGV[12], 'PX', ARGV[13])
            local owed = tonumber(redis.call('HGET', KEYS[4], 'owed'))
            if owed and owed <= tonumber(ARGV[7]) then redis.call('HDEL', KEYS[4], 'owed') end
            redis.call('HSET', KEYS[4], 'last_instant', ARGV[7],
                'last_fired_at', string.format('%d', now), 'last_job', id)
            redis.call('HINCRBY', KEYS[4], 'fires', 1)
        elseif ARGV[6] == 'owe' then
            redis.call('HSET', KEYS[4], 'owed', ARGV[7])
        elseif ARGV[6] == 'settle' then
            local owed = tonumber(redis.call('HGET', KEYS[4], 'owed'))
            if owed and owed <= tonumber(ARGV[7]) then redis.call('HDEL', KEYS[4], 'owed') end
        end
        if tonumber(ARGV[5]) > tonumber(ARGV[4]) then
            redis.call('HSET', KEYS[4], 'watermark', ARGV[5])
        end
        return {'applied'}"
    ))
});

/// Records a pipeline child's result. KEYS: the step's results hash. ARGV: child, result,
/// children in the step, TTL ms. Returns every result in child order once all are there,
/// else false.
pub(super) static PIPELINE_CHILD_DONE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        redis.call('PEXPIRE', KEYS[1], ARGV[4])
        local of = tonumber(ARGV[3])
        if redis.call('HLEN', KEYS[1]) < of then return false end
        local fields = {}
        for i = 0, of - 1 do fields[#fields + 1] = tostring(i) end
        local results = redis.call('HMGET', KEYS[1], unpack(fields))
        for _, r in ipairs(results) do
            if not r then return false end
        end
        return results",
    )
});
