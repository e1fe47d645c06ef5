//! The work queue's tables and statements, in one place: jobs (one row per request and queue,
//! with its lease), workers (heartbeats and counts), hosts (the fleet's per-host send slots and
//! `Retry-After` pauses), and the function that reserves send slots. Owns SQL text only.

/// Created when missing, next to the outcome store's tables (which the queue writes too).
///
/// `queue_jobs` churns: every job is updated two or three times (leased, renewed, done), so its
/// pages keep room for new row versions (fillfactor 70, HOT updates when no indexed column
/// changes) and autovacuum visits it after 1% of its rows changed instead of 20%. The partial
/// indexes hold only rows in their state, so claims and sweeps never walk done jobs; done jobs
/// have no index of their own (each costs index work on every completion, and only `status`
/// would read it).
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queue_jobs (
    queue         text NOT NULL,
    key           text NOT NULL,
    host          text NOT NULL,
    method        text NOT NULL,
    url           text NOT NULL,
    headers       text,
    body          bytea,
    origin        text NOT NULL,
    line          bigint NOT NULL,
    state         text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'leased', 'done')),
    not_before    timestamptz NOT NULL DEFAULT '-infinity',
    lease_token   bigint,
    lease_expires timestamptz,
    leased_at     timestamptz,
    worker        text,
    leases        integer NOT NULL DEFAULT 0,
    expired       integer NOT NULL DEFAULT 0,
    attempts      integer NOT NULL DEFAULT 0,
    failed        boolean,
    enqueued_at   timestamptz NOT NULL DEFAULT now(),
    done_at       timestamptz,
    PRIMARY KEY (queue, key)
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01,
        autovacuum_analyze_scale_factor = 0.02);
CREATE INDEX IF NOT EXISTS queue_jobs_ready ON queue_jobs (queue, not_before)
    WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS queue_jobs_leased ON queue_jobs (queue, lease_expires)
    WHERE state = 'leased';
CREATE SEQUENCE IF NOT EXISTS queue_lease_seq;
CREATE TABLE IF NOT EXISTS queue_workers (
    queue      text NOT NULL,
    worker     text NOT NULL,
    run_id     bigint NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL DEFAULT now(),
    state      text NOT NULL DEFAULT 'working',
    done       bigint NOT NULL DEFAULT 0,
    failed     bigint NOT NULL DEFAULT 0,
    stale      bigint NOT NULL DEFAULT 0,
    lease_secs double precision NOT NULL DEFAULT 30,
    PRIMARY KEY (queue, worker)
) WITH (fillfactor = 50);
CREATE TABLE IF NOT EXISTS queue_hosts (
    queue         text NOT NULL,
    host          text NOT NULL,
    next_slot     timestamptz NOT NULL DEFAULT '-infinity',
    backoff_until timestamptz,
    PRIMARY KEY (queue, host)
) WITH (fillfactor = 50);
CREATE TABLE IF NOT EXISTS queue_host_slots (
    queue     text NOT NULL,
    host      text NOT NULL,
    worker    text NOT NULL,
    in_flight integer NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, host, worker)
) WITH (fillfactor = 50);
CREATE OR REPLACE FUNCTION fanout_acquire(q text, h text, w text, lim integer,
                                          stale_secs double precision)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    busy bigint;
BEGIN
    INSERT INTO queue_hosts (queue, host) VALUES (q, h) ON CONFLICT DO NOTHING;
    -- The host's row serializes workers taking its slots.
    PERFORM 1 FROM queue_hosts WHERE queue = q AND host = h FOR UPDATE;
    -- Slots of workers not heard from within a lease are theirs no more (a dead worker's).
    SELECT coalesce(sum(s.in_flight), 0) INTO busy
    FROM queue_host_slots s JOIN queue_workers k ON k.queue = s.queue AND k.worker = s.worker
    WHERE s.queue = q AND s.host = h AND k.state = 'working'
      AND k.seen_at > clock_timestamp() - make_interval(secs => stale_secs);
    IF busy >= lim THEN
        RETURN false;
    END IF;
    INSERT INTO queue_host_slots (queue, host, worker, in_flight) VALUES (q, h, w, 1)
    ON CONFLICT (queue, host, worker) DO UPDATE SET in_flight = queue_host_slots.in_flight + 1;
    RETURN true;
END $$;
CREATE OR REPLACE FUNCTION fanout_reserve(q text, h text, iv double precision,
                                          tol double precision, n integer,
                                          OUT granted integer, OUT wait double precision)
LANGUAGE plpgsql AS $$
DECLARE
    t     timestamptz := clock_timestamp();
    r     queue_hosts%ROWTYPE;
    tat   timestamptz;
    ready timestamptz;
BEGIN
    INSERT INTO queue_hosts (queue, host) VALUES (q, h) ON CONFLICT DO NOTHING;
    SELECT * INTO r FROM queue_hosts WHERE queue = q AND host = h FOR UPDATE;
    IF r.backoff_until IS NOT NULL AND r.backoff_until > t THEN
        granted := 0;
        wait := extract(epoch FROM r.backoff_until - t);
        RETURN;
    END IF;
    -- GCRA: a slot is free when the theoretical arrival time less the burst tolerance has come.
    tat := greatest(r.next_slot, t);
    ready := tat - make_interval(secs => tol);
    IF ready > t THEN
        granted := 0;
        wait := extract(epoch FROM ready - t);
        RETURN;
    END IF;
    granted := least(n, 1 + floor(extract(epoch FROM t - ready) / iv)::integer);
    UPDATE queue_hosts SET next_slot = tat + make_interval(secs => iv * granted)
        WHERE queue = q AND host = h;
    wait := 0;
END $$;
";

/// Takes up to `$2` ready jobs of queue `$1` for worker `$4` with leases of `$3` seconds, judged
/// by the database's clock. Jobs of hosts paused by a `Retry-After` stay where they are.
pub(crate) const CLAIM: &str = "
WITH c AS (
    SELECT j.key FROM queue_jobs j
    WHERE j.queue = $1 AND j.state = 'queued' AND j.not_before <= now()
      AND NOT EXISTS (SELECT 1 FROM queue_hosts h
                      WHERE h.queue = j.queue AND h.host = j.host AND h.backoff_until > now())
    LIMIT $2
    FOR UPDATE OF j SKIP LOCKED
)
UPDATE queue_jobs j
SET state = 'leased', lease_token = nextval('queue_lease_seq'),
    lease_expires = now() + make_interval(secs => $3), leased_at = now(), worker = $4,
    leases = j.leases + 1
FROM c WHERE j.queue = $1 AND j.key = c.key
RETURNING j.key, j.lease_token, j.method, j.url, j.headers, j.body, j.origin, j.line, j.expired";

/// Extends the leases named by keys `$3` and tokens `$4` by `$2` seconds from now; a lease that
/// was taken away (expired and reclaimed) is not extended. Rows locked by a completion or a
/// hand-back in progress are skipped (they are ending anyway): waiting for them could deadlock
/// with a statement taking the same rows in another order.
pub(crate) const RENEW: &str = "
WITH r AS (
    SELECT j.key FROM queue_jobs j
    JOIN unnest($3::text[], $4::bigint[]) AS t(key, token)
      ON j.queue = $1 AND j.key = t.key AND j.lease_token = t.token
    WHERE j.state = 'leased'
    FOR UPDATE OF j SKIP LOCKED
)
UPDATE queue_jobs j SET lease_expires = now() + make_interval(secs => $2)
FROM r WHERE j.queue = $1 AND j.key = r.key";

/// Returns expired leases to the queue, counting each on its job (`expired`). Run under
/// [`SWEEP_LOCK`], so one worker sweeps at a time.
pub(crate) const SWEEP: &str = "
WITH e AS (
    SELECT key FROM queue_jobs
    WHERE queue = $1 AND state = 'leased' AND lease_expires < now()
    FOR UPDATE SKIP LOCKED
)
UPDATE queue_jobs j SET state = 'queued', lease_token = NULL, lease_expires = NULL, worker = NULL,
    expired = j.expired + 1
FROM e WHERE j.queue = $1 AND j.key = e.key";

/// A transaction-scoped lock per queue for the sweep: a worker that does not get it skips.
pub(crate) const SWEEP_LOCK: &str =
    "SELECT pg_try_advisory_xact_lock(hashtext('fanout-sweep'), hashtext($1))";

/// Hands jobs back (keys `$2`, tokens `$3`), counting `$4` attempts made and due again `$5`
/// seconds from now; only those whose lease is still this worker's.
pub(crate) const RELEASE: &str = "
UPDATE queue_jobs j
SET state = 'queued', lease_token = NULL, lease_expires = NULL, worker = NULL,
    attempts = j.attempts + t.attempted, not_before = now() + make_interval(secs => t.delay)
FROM unnest($2::text[], $3::bigint[], $4::integer[], $5::float8[])
     AS t(key, token, attempted, delay)
WHERE j.queue = $1 AND j.key = t.key AND j.lease_token = t.token AND j.state = 'leased'";

/// Per worker connection: outcomes are copied here, then moved by [`complete`].
pub(crate) const STAGE: &str =
    "CREATE TEMP TABLE IF NOT EXISTS fanout_stage (LIKE outcomes) ON COMMIT DELETE ROWS";

/// Completes the jobs whose lease still matches (keys `$2`, tokens `$3`, failed `$4`, attempts
/// `$5`) and inserts exactly their staged outcomes, in one statement (so in one transaction
/// with the staging COPY). Returns the keys of the jobs completed, each with whether it failed. (A data-modifying `WITH`
/// runs whether or not the final query reads it.)
pub(crate) fn complete(columns: &str) -> String {
    format!(
        "WITH t AS (
    SELECT * FROM unnest($2::text[], $3::bigint[], $4::bool[], $5::integer[])
        AS t(key, token, failed, attempts)
), done AS (
    UPDATE queue_jobs j
    SET state = 'done', lease_token = NULL, lease_expires = NULL, done_at = now(),
        failed = t.failed, attempts = j.attempts + t.attempts
    FROM t WHERE j.queue = $1 AND j.key = t.key AND j.lease_token = t.token
      AND j.state = 'leased'
    RETURNING j.key, j.failed
), ins AS (
    INSERT INTO outcomes ({columns})
    SELECT {columns} FROM fanout_stage s WHERE s.key IN (SELECT key FROM done)
    ON CONFLICT (key) DO NOTHING
    RETURNING 1
)
SELECT key, failed FROM done"
    )
}

/// Counts this worker's completions and refused ones, and says it is alive.
pub(crate) const WORKER_COUNTS: &str = "
UPDATE queue_workers SET done = done + $3, failed = failed + $4, stale = stale + $5,
    seen_at = now()
WHERE queue = $1 AND worker = $2";

/// Says a worker is alive (and in which state).
pub(crate) const HEARTBEAT: &str =
    "UPDATE queue_workers SET seen_at = now(), state = $3 WHERE queue = $1 AND worker = $2";

/// What is left of a queue: whether jobs are ready now, whether any is leased (by anyone), and
/// in how many seconds the next job due later is due. Each part reads one partial index.
pub(crate) const REMAINING: &str = "
SELECT EXISTS (SELECT 1 FROM queue_jobs WHERE queue = $1 AND state = 'queued'
               AND not_before <= now()),
       EXISTS (SELECT 1 FROM queue_jobs WHERE queue = $1 AND state = 'leased'),
       (SELECT extract(epoch FROM min(not_before) - now())::float8 FROM queue_jobs
        WHERE queue = $1 AND state = 'queued' AND not_before > now())";

/// Pauses a host for every worker of the queue (a `Retry-After`), `$3` seconds from now.
pub(crate) const PAUSE_HOST: &str = "
INSERT INTO queue_hosts (queue, host, backoff_until)
VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT (queue, host) DO UPDATE
SET backoff_until = greatest(coalesce(queue_hosts.backoff_until, '-infinity'),
                             EXCLUDED.backoff_until)";

/// Hosts paused now, with the seconds left.
pub(crate) const PAUSED_HOSTS: &str = "
SELECT host, extract(epoch FROM backoff_until - now())::float8 FROM queue_hosts
WHERE queue = $1 AND backoff_until > now() ORDER BY backoff_until DESC";

/// Takes one of host `$2`'s `$4` fleet-wide concurrency slots for worker `$3`, if one is free.
pub(crate) const ACQUIRE: &str = "SELECT fanout_acquire($1, $2, $3, $4, $5)";

/// Gives back `$4` slots of each host `$3` that worker `$2` held.
pub(crate) const RELEASE_SLOTS: &str = "
UPDATE queue_host_slots s SET in_flight = greatest(s.in_flight - t.n, 0)
FROM unnest($3::text[], $4::integer[]) AS t(host, n)
WHERE s.queue = $1 AND s.worker = $2 AND s.host = t.host";

/// Reserves up to `$5` send slots to host `$2` at interval `$3` s with burst tolerance `$4` s.
pub(crate) const RESERVE: &str = "SELECT granted, wait FROM fanout_reserve($1, $2, $3, $4, $5)";

/// Per-state counts, the last minute's completions and the oldest lease's age.
pub(crate) const STATUS: &str = "
SELECT count(*) FILTER (WHERE state = 'queued'),
       count(*) FILTER (WHERE state = 'queued' AND not_before > now()),
       count(*) FILTER (WHERE state = 'leased'),
       count(*) FILTER (WHERE state = 'done' AND NOT coalesce(failed, false)),
       count(*) FILTER (WHERE state = 'done' AND failed),
       count(*) FILTER (WHERE state = 'done' AND done_at > now() - interval '1 minute'),
       extract(epoch FROM now() - min(leased_at) FILTER (WHERE state = 'leased'))::float8
FROM queue_jobs WHERE queue = $1";

/// Workers seen in the last ten minutes; one still `working` but not heard from for longer than
/// its lease is `lost` (died or frozen: its leases have run out).
pub(crate) const WORKERS: &str = "
SELECT worker, run_id,
       CASE WHEN state = 'working' AND seen_at < now() - make_interval(secs => lease_secs)
            THEN 'lost' ELSE state END,
       done, failed, stale,
       extract(epoch FROM now() - seen_at)::float8
FROM queue_workers WHERE queue = $1 AND seen_at > now() - interval '10 minutes'
ORDER BY started_at, worker";
