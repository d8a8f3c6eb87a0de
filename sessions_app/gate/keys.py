"""The only place a Redis key string of the gate is built.

Every key lives under one prefix inside one hash tag, `{<prefix>}:`, so that all keys a script
touches map to one Redis Cluster slot. The Lua scripts receive the tagged prefix as ARGV[1] and
build the per-session and per-user keys from it with exactly the names below (`sess:` and
`user:`), because those keys are only known inside the script.

| key        | type       | holds                                                           |
|------------|------------|-----------------------------------------------------------------|
| seq        | string     | monotonic ticket counter (INCR)                                 |
| queue      | sorted set | queued session id -> order score (lane-adjusted ticket)         |
| active     | sorted set | active session id -> time of last chat activity                 |
| seen       | sorted set | session id -> last time a page (or API poll) saw the person      |
| sess:<id>  | hash       | user, state, lane, ticket, created, activated, paged, over, lease |
|            |            | lease_waiter (who it was granted to), w:<waiting query> (its     |
|            |            | lease id and next poll due: lua/_lib.lua hand_over)             |
| user:<u>   | string     | the person's live session id                                    |
| slots      | sorted set | query lease id -> lease deadline (the generation semaphore)     |
| slotq      | sorted set | waiting query id -> ticket (FIFO among queries)                 |
| slotw      | sorted set | waiting query id -> liveness deadline (dead waiters are dropped)|
| config     | hash       | the live limits, pushed from GateSettings                       |
| stats      | hash       | global counters (admissions, promotions, expiries, ...)         |
| departures | list       | times of recent departures from the active set (for ETAs)       |
| waits      | list       | recent queue waits in seconds (for the console's percentiles)   |
| slotfree   | channel    | pub/sub: slots handed to waiting queries (JSON, gate/slots.py)  |
| journal    | stream     | session changes not yet written to the SQL record (journal.py)  |
| journal:lock | string   | who is writing the journal to SQL now (token, short expiry)     |

Departure from DESIGN.md §2: `active` scores are the time of last activity, not the idle
deadline, so that a live change of the idle timeout applies at once to everyone.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class RedisKeys:
    prefix: str

    @property
    def tagged(self) -> str:
        """`{prefix}:` — what every key starts with and what the scripts get as ARGV[1]."""
        return "{" + self.prefix + "}:"

    def _key(self, name: str) -> str:
        return self.tagged + name

    @property
    def seq(self) -> str:
        return self._key("seq")

    @property
    def queue(self) -> str:
        return self._key("queue")

    @property
    def active(self) -> str:
        return self._key("active")

    @property
    def seen(self) -> str:
        return self._key("seen")

    @property
    def slots(self) -> str:
        return self._key("slots")

    @property
    def slot_queue(self) -> str:
        return self._key("slotq")

    @property
    def slot_waiters(self) -> str:
        return self._key("slotw")

    @property
    def slot_free(self) -> str:
        """A pub/sub channel, not a key: the scripts that free a slot publish on it (building
        the same name from ARGV[1]) the grants they made to waiting queries (chat/handoff.py)."""
        return self._key("slotfree")

    @property
    def config(self) -> str:
        return self._key("config")

    @property
    def stats(self) -> str:
        return self._key("stats")

    @property
    def departures(self) -> str:
        return self._key("departures")

    @property
    def waits(self) -> str:
        return self._key("waits")

    @property
    def journal(self) -> str:
        return self._key("journal")

    @property
    def journal_lock(self) -> str:
        return self._key("journal:lock")

    @property
    def reconciled(self) -> str:
        """The run id of the Redis server the last reconcile ran against (gate/reconcile.py):
        missing or different means a restart, a failover or a data loss since."""
        return self._key("reconciled")

    def session(self, session_id: str) -> str:
        return self._key(f"sess:{session_id}")

    def user(self, user_key: str) -> str:
        return self._key(f"user:{user_key}")

    def session_pattern(self) -> str:
        """A SCAN pattern matching every session hash (reconcile_sessions)."""
        return self._key("sess:*")

    def metrics_minute(self, minute: int) -> str:
        """Per-minute request metrics (middleware), one hash per minute."""
        return self._key(f"metrics:{minute}")

    def metrics_counters(self) -> str:
        """Counters the Lua scripts do not own (chat messages, backend errors), one hash."""
        return self._key("metrics:counters")

    def metrics_histogram(self, name: str) -> str:
        """A cumulative Prometheus-style histogram (bucket counts, sum, count), one hash."""
        return self._key(f"metrics:hist:{name}")

    def metrics_endpoints(self) -> str:
        """Cumulative per-route request counts and latency buckets (bounded by the URLconf)."""
        return self._key("metrics:endpoints")

    def metrics_wait_mark(self) -> str:
        """Admission time of the newest wait already folded into the wait histogram."""
        return self._key("metrics:waitmark")

    def rate(self, scope: str, ident: str, window: int) -> str:
        """A fixed-window rate-limit counter."""
        return self._key(f"rate:{scope}:{ident}:{window}")

    def all_pattern(self) -> str:
        """A SCAN pattern matching every key of this prefix (tests and reconcile)."""
        return "{" + self.prefix + "}:*"
