//! Per-user caps on what holds an API connection for long: uploads in progress, open event
//! streams. The connection limit is shared by everyone; without a cap of their own, one token
//! could hold every connection and leave the API answering nobody else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::api::error::ApiError;

/// What each user holds of one kind.
#[derive(Debug)]
pub struct UserSlots {
    /// What is held, for the 429's message (`uploads in progress`).
    what: &'static str,
    held: Mutex<HashMap<String, usize>>,
}

/// One slot held; given back when it is dropped, however the request ends.
pub struct Slot {
    slots: Arc<UserSlots>,
    user: String,
}

impl UserSlots {
    pub fn new(what: &'static str) -> Arc<Self> {
        Arc::new(Self {
            what,
            held: Mutex::default(),
        })
    }

    /// A slot for `user`, or 429 when `max` of theirs are held already.
    pub fn take(self: &Arc<Self>, user: &str, max: usize) -> Result<Slot, ApiError> {
        let mut map = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(user.to_owned()).or_insert(0);
        if *n >= max {
            return Err(ApiError::TooManyRequests(format!(
                "you have {max} {} already; wait for one to end",
                self.what
            )));
        }
        *n += 1;
        Ok(Slot {
            slots: self.clone(),
            user: user.to_owned(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
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

    #[test]
    fn slots_are_counted_per_user_and_given_back() {
        let slots = UserSlots::new("event streams open");
        let a = slots.take("alice", 2).expect("first");
        let _b = slots.take("alice", 2).expect("second");
        let refused = slots.take("alice", 2).err().expect("third");
        assert!(
            refused.to_string().contains("2 event streams open"),
            "{refused}"
        );
        let _bob = slots.take("bob", 2).expect("another user's own");
        drop(a);
        let _c = slots.take("alice", 2).expect("given back");
    }
}
