//! Per-user caps on what holds an API connection for long: uploads in progress, open event
//! streams. The connection limit is shared by everyone; without a cap of their own, one token
//! could hold every connection and leave the API answering nobody else. With the Redis job
//! store the caps hold across every API process ([`crate::jobs::redis::slots`]): N machines
//! behind a load balancer would otherwise allow N times as many.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::media::VideoId;

use crate::api::error::ApiError;
use crate::jobs::redis::slots::{slot_key, SLOT_TTL_SECS};
use crate::jobs::redis::RedisStore;

/// What each user holds of one kind.
pub struct UserSlots {
    /// What is held, for the 429's message (`uploads in progress`).
    what: &'static str,
    /// Its name in Redis (`uploads`).
    kind: &'static str,
    /// Counted there when set, else in `held`.
    shared: Option<RedisStore>,
    held: Mutex<HashMap<String, usize>>,
}

/// One slot held; given back when it is dropped, however the request ends.
pub struct Slot {
    slots: Arc<UserSlots>,
    user: String,
    /// In Redis: the slot's id, and the task that renews it while it is held.
    shared: Option<(String, tokio::task::JoinHandle<()>)>,
}

impl UserSlots {
    /// Slots counted in this process.
    pub fn new(what: &'static str, kind: &'static str) -> Arc<Self> {
        Self::shared(what, kind, None)
    }

    /// Slots counted in `redis` when given (across processes), else in this process.
    pub fn shared(what: &'static str, kind: &'static str, redis: Option<RedisStore>) -> Arc<Self> {
        Arc::new(Self {
            what,
            kind,
            shared: redis,
            held: Mutex::default(),
        })
    }

    /// A slot for `user`, or 429 when `max` of theirs are held already (503 if Redis, where
    /// they are counted, does not answer).
    pub async fn take(self: &Arc<Self>, user: &str, max: usize) -> Result<Slot, ApiError> {
        let Some(redis) = &self.shared else {
            return self.take_here(user, max);
        };
        let key = slot_key(self.kind, user);
        // 128 random bits: no two slots share an id, on any machine.
        let id = VideoId::random().as_str().to_owned();
        // A request dropped while this waits may leave the slot taken and unowned: it lapses.
        if !redis.hold_slot(&key, &id, max).await? {
            return Err(self.refusal(max));
        }
        let renew = tokio::spawn(renew(redis.clone(), key, id.clone(), max));
        Ok(Slot {
            slots: self.clone(),
            user: user.to_owned(),
            shared: Some((id, renew)),
        })
    }

    fn take_here(self: &Arc<Self>, user: &str, max: usize) -> Result<Slot, ApiError> {
        let mut map = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(user.to_owned()).or_insert(0);
        if *n >= max {
            return Err(self.refusal(max));
        }
        *n += 1;
        Ok(Slot {
            slots: self.clone(),
            user: user.to_owned(),
            shared: None,
        })
    }

    fn refusal(&self, max: usize) -> ApiError {
        ApiError::TooManyRequests(format!(
            "you have {max} {} already; wait for one to end",
            self.what
        ))
    }
}

/// Keeps a slot in Redis alive, three times per time-to-live, until aborted.
async fn renew(redis: RedisStore, key: String, id: String, max: usize) {
    let every = Duration::from_secs(SLOT_TTL_SECS / 3);
    loop {
        tokio::time::sleep(every).await;
        match redis.hold_slot(&key, &id, max).await {
            Ok(true) => {}
            // It ran out while Redis was unreachable, and the user has taken the cap since:
            // this request goes on, uncounted.
            Ok(false) => tracing::warn!("a user's slot ran out and the cap is taken; uncounted"),
            Err(error) => {
                tracing::warn!(%error, "cannot renew a user's slot; it lapses unless renewed in time");
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((id, renewal)) = self.shared.take() {
            renewal.abort();
            let (Some(redis), Ok(runtime)) = (
                self.slots.shared.clone(),
                tokio::runtime::Handle::try_current(),
            ) else {
                return;
            };
            // Not given back (Redis unreachable): it lapses within its time-to-live.
            let key = slot_key(self.slots.kind, &self.user);
            runtime.spawn(async move {
                // A renewal already sent goes first on the one connection: the slot cannot
                // come back after it was given back.
                let _ = renewal.await;
                if let Err(error) = redis.release_slot(&key, &id).await {
                    tracing::warn!(%error, "cannot give a user's slot back; it lapses");
                }
            });
            return;
        }
        let mut map = self.slots.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_are_counted_per_user_and_given_back() {
        let slots = UserSlots::new("event streams open", "events");
        let a = slots.take("alice", 2).await.expect("first");
        let _b = slots.take("alice", 2).await.expect("second");
        let refused = slots.take("alice", 2).await.err().expect("third");
        assert!(
            refused.to_string().contains("2 event streams open"),
            "{refused}"
        );
        let _bob = slots.take("bob", 2).await.expect("another user's own");
        drop(a);
        let _c = slots.take("alice", 2).await.expect("given back");
    }

    /// Two API processes sharing Redis: the cap holds across both, a slot dropped on one is
    /// given back to both, and a dead process's slot lapses at its expiry.
    #[tokio::test]
    async fn slots_in_redis_are_counted_across_processes() {
        let server = e2e::RedisServer::start_with(e2e::redis::Persistence::None);
        let url = server.url();
        let redis = RedisStore::connect(&url).await.expect("connect");
        let other = RedisStore::connect(&url).await.expect("connect");
        let one = UserSlots::shared("uploads in progress", "uploads", Some(redis.clone()));
        let two = UserSlots::shared("uploads in progress", "uploads", Some(other));
        let a = one.take("alice", 2).await.expect("first, on one");
        let _b = two.take("alice", 2).await.expect("second, on two");
        for api in [&one, &two] {
            let refused = api
                .take("alice", 2)
                .await
                .err()
                .expect("a third, on either");
            assert!(
                refused.to_string().contains("2 uploads in progress"),
                "{refused}"
            );
        }
        let _bob = two.take("bob", 2).await.expect("another user's own");
        drop(a);
        let given_back = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Ok(slot) = two.take("alice", 2).await {
                    break slot;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let _c = given_back
            .await
            .expect("the slot dropped on one was given back");

        // A slot whose process died, expired a second ago, does not count.
        let client = redis::Client::open(server.url()).expect("client");
        let mut raw = client
            .get_multiplexed_async_connection()
            .await
            .expect("raw");
        let key = slot_key("uploads", "carol");
        let (now, _): (i64, i64) = redis::cmd("TIME")
            .query_async(&mut raw)
            .await
            .expect("time");
        let _: i64 = redis::cmd("ZADD")
            .arg(&key)
            .arg(now - 1)
            .arg("dead")
            .query_async(&mut raw)
            .await
            .expect("zadd");
        let _carol = one.take("carol", 1).await.expect("the dead slot lapsed");
        // A live one lasts a time-to-live from now.
        let scores: Vec<(String, i64)> = redis::cmd("ZRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut raw)
            .await
            .expect("zrange");
        assert_eq!(scores.len(), 1, "{scores:?}");
        let ttl = SLOT_TTL_SECS as i64;
        assert!(
            (now + ttl - 1..=now + ttl + 2).contains(&scores[0].1),
            "{scores:?}"
        );

        // A renewal keeps a slot held; one that ran out (Redis unreachable past its TTL) while
        // another took the cap does not come back over it.
        let key = slot_key("uploads", "dave");
        assert!(redis.hold_slot(&key, "lapsed", 1).await.expect("take"));
        assert!(redis.hold_slot(&key, "lapsed", 1).await.expect("renew"));
        assert!(redis.release_slot(&key, "lapsed").await.is_ok());
        assert!(redis.hold_slot(&key, "newer", 1).await.expect("take"));
        assert!(!redis.hold_slot(&key, "lapsed", 1).await.expect("renew"));
        let held: i64 = redis::cmd("ZCARD")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .expect("zcard");
        assert_eq!(held, 1, "a renewal went past the cap");
    }
}
