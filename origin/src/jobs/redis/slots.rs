//! Per-user slots shared by every API process: a user's uploads in progress and open event
//! streams are counted across machines, so that N API processes behind a load balancer do not
//! allow N times the cap. Each slot is a member of `hls:slots:<kind>:<user>` (a sorted set)
//! scored with its expiry in Redis' clock; its holder renews it while it lasts and removes it
//! when done, and a process that dies leaves slots that expire within [`SLOT_TTL_SECS`].

use redis::Script;

use super::RedisStore;
use crate::jobs::store::StoreError;

/// How long a slot lasts without renewal: a killed process's slots free within this.
pub const SLOT_TTL_SECS: u64 = 60;

/// KEYS: the user's set. ARGV: slot id, TTL, cap. Keeps the slot for another TTL; one not
/// held (a new one, or one that ran out while Redis was unreachable) is added only while the
/// user holds fewer than the cap. 1 if held, else 0.
const HOLD: &str = r#"
local now = tonumber(redis.call('TIME')[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return 1
"#;

fn script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(HOLD))
}

/// The set of `user`'s slots of `kind`.
pub fn slot_key(kind: &str, user: &str) -> String {
    format!("hls:slots:{kind}:{user}")
}

impl RedisStore {
    /// Takes slot `id` in `key`, or keeps it for another [`SLOT_TTL_SECS`]: whether it is
    /// held. One not held is taken only while fewer than `max` are.
    pub async fn hold_slot(&self, key: &str, id: &str, max: usize) -> Result<bool, StoreError> {
        let args = [id.to_owned(), SLOT_TTL_SECS.to_string(), max.to_string()];
        let held: i64 = self.eval(script(), &[key.to_owned()], &args).await?;
        Ok(held == 1)
    }

    /// Gives slot `id` back.
    pub async fn release_slot(&self, key: &str, id: &str) -> Result<(), StoreError> {
        let (key, id) = (key.to_owned(), id.to_owned());
        self.call(|mut conn| async move {
            redis::cmd("ZREM")
                .arg(key)
                .arg(id)
                .query_async::<i64>(&mut conn)
                .await
        })
        .await
        .map(drop)
    }
}
