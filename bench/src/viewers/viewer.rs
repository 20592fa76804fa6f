//! One simulated viewer: token, stream-info, master, a rung, the rung's playlist, its key, then
//! the segments from the edge at playback pace (or flat out), refreshing the playlist when the
//! edge says its URLs expired (410). An attacker follows the same steps once to learn real
//! segment URLs, then floods the edge with forged signatures.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use tokio::time::sleep_until;

use super::client::{Answer, Client, Url};
use super::hls::{self, Rendition, Segment};
use super::stats::{Kind, Live, Outcome, Recorder};
use super::{Pace, RungChoice, Shared};

/// What a viewer is playing: where its playlists came from and the segments.
struct Playing {
    master: Url,
    rung: String,
    variant: Url,
    segments: Vec<Segment>,
}

/// Why a session ended early.
pub enum Halt {
    /// The run is over (duration or request budget): stop quietly.
    Over,
    /// This session cannot go on (the cause is already recorded): start another one.
    Abort,
}

/// Which statuses a request may answer with without counting as an error.
#[derive(Clone, Copy)]
enum Expect {
    Success,
    /// A segment may have expired: the viewer refreshes its playlist.
    SuccessOrExpired,
    /// A forged signature must be refused.
    Forbidden,
}

impl Expect {
    fn accepts(self, status: u16) -> bool {
        let success = (200..300).contains(&status);
        match self {
            Expect::Success => success,
            Expect::SuccessOrExpired => success || status == 410,
            Expect::Forbidden => status == 403,
        }
    }
}

pub struct Viewer<'a> {
    id: usize,
    shared: &'a Shared,
    rng: u64,
    origin: Client,
    edges: HashMap<String, Client>,
    token: Option<String>,
    pub rec: Recorder,
}

impl<'a> Viewer<'a> {
    pub fn new(id: usize, shared: &'a Shared) -> Self {
        Self {
            id,
            shared,
            // Seeded per viewer: a run with the same options makes the same rung choices.
            rng: (shared.seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1,
            origin: Client::new(&shared.origin.authority, shared.timeout),
            edges: HashMap::new(),
            token: None,
            rec: Recorder::default(),
        }
    }

    /// Watches videos one after another until the run is over.
    pub async fn watch(&mut self) {
        let n = self.shared.videos.len();
        let mut next = if self.shared.spread { self.id % n } else { 0 };
        loop {
            let video = self.shared.videos[next].clone();
            match self.session(&video).await {
                Ok(()) => self.rec.sessions += 1,
                Err(Halt::Over) => return,
                Err(Halt::Abort) => {
                    self.rec.aborted_sessions += 1;
                    // A failing platform is not hammered by a tight retry loop.
                    if self.pause(Duration::from_millis(500)).await.is_err() {
                        return;
                    }
                }
            }
            if self.shared.spread {
                next = (next + self.shared.viewers) % n;
            }
        }
    }

    /// Plays once to learn signed segment URLs, then requests them with forged signatures,
    /// flat out, until the run is over.
    pub async fn attack(&mut self) {
        let forged = loop {
            let video = self.shared.videos[0].clone();
            match self.open(&video).await {
                Ok(playing) => {
                    let urls: Result<Vec<Url>, Halt> = playing
                        .segments
                        .iter()
                        .map(|s| self.segment_url(&playing.variant, &s.uri))
                        .collect();
                    match urls {
                        Ok(urls) => break forged_urls(urls, &self.shared.md5_arg),
                        Err(Halt::Over) => return,
                        // Already recorded; the empty list below ends the attacker.
                        Err(Halt::Abort) => break Vec::new(),
                    }
                }
                Err(Halt::Over) => return,
                Err(Halt::Abort) => {
                    if self.pause(Duration::from_millis(500)).await.is_err() {
                        return;
                    }
                }
            }
        };
        if forged.is_empty() {
            self.rec
                .error("attacker: no segment URL carries a signature to forge".into());
            return;
        }
        for url in forged.iter().cycle() {
            if let Err(Halt::Over) = self.fetch(Kind::Forged, url, None, Expect::Forbidden).await {
                return;
            }
        }
    }

    /// One viewing of `video` from the first segment to the last.
    async fn session(&mut self, video: &str) -> Result<(), Halt> {
        let mut playing = self.open(video).await?;
        let mut keys: HashSet<String> = HashSet::new();
        let mut played = 0.0_f64;
        let mut playhead_origin: Option<Instant> = None;
        let buffer = Duration::from_secs_f64(self.shared.buffer_secs);
        let mut i = 0;
        // Not a `for` over the indices: a refresh replaces `segments`.
        while i < playing.segments.len() {
            if let (Pace::Playback, Some(origin)) = (self.shared.pace, playhead_origin) {
                // A player keeps `buffer` seconds ahead of the playhead, no more.
                let due = origin + Duration::from_secs_f64(played);
                self.wait_until(due.checked_sub(buffer).unwrap_or(due))
                    .await?;
            }
            if let Some(key) = playing.segments[i].key.clone() {
                if !keys.contains(&key) {
                    let url = self.resolve(&playing.variant, &key)?;
                    self.fetch_ok(Kind::Key, &url, None).await?;
                    keys.insert(key);
                }
            }
            let url = self.segment_url(&playing.variant, &playing.segments[i].uri)?;
            let answer = self
                .fetch(Kind::Segment, &url, None, Expect::SuccessOrExpired)
                .await?;
            if answer.status == 410 {
                // The URLs expired under the viewer. The playback credential in the rung's
                // playlist URL expired with them, so like a player the viewer goes back to
                // the master (user token), takes the same rung's fresh playlist and retries
                // the segment once; a second 410 is an error.
                self.rec.refreshes += 1;
                let rung = RungChoice::Named(playing.rung.clone());
                playing = self.load(playing.master, &rung).await?;
                let Some(segment) = playing.segments.get(i) else {
                    self.rec
                        .error("variant: refreshed playlist lost segments".into());
                    return Err(Halt::Abort);
                };
                let url = self.segment_url(&playing.variant, &segment.uri)?;
                self.fetch_ok(Kind::Segment, &url, None).await?;
            } else if !(200..300).contains(&answer.status) {
                return Err(Halt::Abort);
            }
            Live::add(&self.shared.live.segments, 1);
            if self.shared.pace == Pace::Playback {
                let now = Instant::now();
                let origin = *playhead_origin.get_or_insert(now);
                let due = origin + Duration::from_secs_f64(played);
                if now > due {
                    // The playhead reached a segment that had not arrived: a rebuffer, and
                    // playback resumes from now.
                    let late = now - due;
                    self.rec.stalls += 1;
                    self.rec.stall_secs += late.as_secs_f64();
                    Live::add(&self.shared.live.stalls, 1);
                    playhead_origin = Some(origin + late);
                }
            }
            played += playing.segments[i].duration;
            i += 1;
        }
        Ok(())
    }

    /// Token, stream-info, then [`Self::load`].
    async fn open(&mut self, video: &str) -> Result<Playing, Halt> {
        let shared = self.shared;
        let token = self.token().await?;
        let info_url = self.resolve(&shared.origin, &format!("/api/videos/{video}/stream-info"))?;
        let info = self
            .fetch_ok(Kind::StreamInfo, &info_url, Some(&token))
            .await?;
        let manifest = serde_json::from_slice::<serde_json::Value>(&info.body)
            .ok()
            .and_then(|v| v["manifest_url"].as_str().map(str::to_owned));
        let Some(manifest) = manifest else {
            self.rec.error("stream_info: no manifest_url".into());
            return Err(Halt::Abort);
        };
        // The documented `master.m3u8?token=` contract, so that a refresh after a 410 can go
        // back to the master for a fresh credential (the one in manifest_url expires with the
        // segment URLs).
        let path = manifest.split('?').next().unwrap_or(&manifest);
        let master = self.resolve(&shared.origin, &format!("{path}?token={token}"))?;
        self.load(master, &shared.rung).await
    }

    /// Master, rung choice, the rung's playlist.
    async fn load(&mut self, master: Url, rung: &RungChoice) -> Result<Playing, Halt> {
        let answer = self.fetch_ok(Kind::Master, &master, None).await?;
        let renditions = hls::renditions(&String::from_utf8_lossy(&answer.body));
        let Some(rendition) = self.choose(&renditions, rung) else {
            self.rec.error("master: no rendition to play".into());
            return Err(Halt::Abort);
        };
        let variant = self.resolve(&master, &rendition.uri)?;
        let answer = self.fetch_ok(Kind::Variant, &variant, None).await?;
        let segments = hls::segments(&String::from_utf8_lossy(&answer.body));
        if segments.is_empty() {
            self.rec.error("variant: no segments".into());
            return Err(Halt::Abort);
        }
        Ok(Playing {
            master,
            rung: rendition.name,
            variant,
            segments,
        })
    }

    fn choose(&mut self, renditions: &[Rendition], rung: &RungChoice) -> Option<Rendition> {
        let by_bandwidth = |pick_max: bool| {
            let it = renditions.iter();
            if pick_max {
                it.max_by_key(|r| r.bandwidth)
            } else {
                it.min_by_key(|r| r.bandwidth)
            }
        };
        match rung {
            RungChoice::Lowest => by_bandwidth(false).cloned(),
            RungChoice::Highest => by_bandwidth(true).cloned(),
            RungChoice::Random if renditions.is_empty() => None,
            RungChoice::Random => {
                let at = (self.next_random() % renditions.len() as u64) as usize;
                renditions.get(at).cloned()
            }
            RungChoice::Named(name) => renditions.iter().find(|r| &r.name == name).cloned(),
        }
    }

    async fn token(&mut self) -> Result<String, Halt> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        let shared = self.shared;
        let token = match &shared.tokens {
            super::Tokens::Minted { key, user } => match super::mint(key, user) {
                Ok(token) => token,
                Err(e) => {
                    self.rec.error(format!("token: cannot mint: {e}"));
                    return Err(Halt::Abort);
                }
            },
            super::Tokens::DevEndpoint { user } => {
                let url = self.resolve(&shared.origin, &format!("/api/dev/token?user={user}"))?;
                let answer = self.fetch_ok(Kind::Token, &url, None).await?;
                let token = serde_json::from_slice::<serde_json::Value>(&answer.body)
                    .ok()
                    .and_then(|v| v["token"].as_str().map(str::to_owned));
                let Some(token) = token else {
                    self.rec.error("token: answer has no token".into());
                    return Err(Halt::Abort);
                };
                token
            }
        };
        self.token = Some(token.clone());
        Ok(token)
    }

    fn resolve(&mut self, base: &Url, reference: &str) -> Result<Url, Halt> {
        base.join(reference).map_err(|e| {
            self.rec.error(e.to_string());
            Halt::Abort
        })
    }

    /// A segment URI of `variant`: one without a host (`edge_base_url` empty) is the edge's
    /// when `--edge` named it, not the origin's that served the playlist.
    fn segment_url(&mut self, variant: &Url, uri: &str) -> Result<Url, Halt> {
        match &self.shared.edge {
            Some(edge) if uri.starts_with('/') => self.resolve(&edge.clone(), uri),
            _ => self.resolve(variant, uri),
        }
    }

    /// A request that must succeed for the session to go on.
    async fn fetch_ok(
        &mut self,
        kind: Kind,
        url: &Url,
        bearer: Option<&str>,
    ) -> Result<Answer, Halt> {
        let answer = self.fetch(kind, url, bearer, Expect::Success).await?;
        if (200..300).contains(&answer.status) {
            Ok(answer)
        } else {
            Err(Halt::Abort)
        }
    }

    /// Sends one request within the run's budget and records it.
    async fn fetch(
        &mut self,
        kind: Kind,
        url: &Url,
        bearer: Option<&str>,
        expect: Expect,
    ) -> Result<Answer, Halt> {
        if !self.shared.budget.take() {
            return Err(Halt::Over);
        }
        let keep_body = !matches!(kind, Kind::Segment | Kind::Forged);
        let timeout = self.shared.timeout;
        let client = if url.authority == self.shared.origin.authority {
            &mut self.origin
        } else {
            self.edges
                .entry(url.authority.clone())
                .or_insert_with(|| Client::new(&url.authority, timeout))
        };
        let started = Instant::now();
        let result = client.get(&url.target, bearer, keep_body).await;
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let live = &self.shared.live;
        Live::add(&live.requests, 1);
        match result {
            Ok(answer) => {
                let error = !expect.accepts(answer.status);
                let outcome = Outcome::Status(answer.status);
                self.rec.record(kind, outcome, micros, answer.len, error);
                Live::add(&live.bytes, answer.len);
                Live::add(&live.errors, u64::from(error));
                Live::add(&live.expired, u64::from(answer.status == 410));
                Live::add(&live.forbidden, u64::from(answer.status == 403));
                Ok(answer)
            }
            Err(failure) => {
                let outcome = Outcome::Failure(failure.label());
                self.rec.record(kind, outcome, micros, 0, true);
                Live::add(&live.errors, 1);
                Err(Halt::Abort)
            }
        }
    }

    async fn pause(&self, d: Duration) -> Result<(), Halt> {
        self.wait_until(Instant::now() + d).await
    }

    /// Sleeps until `at`, or reports the run over if it ends first.
    async fn wait_until(&self, at: Instant) -> Result<(), Halt> {
        if at >= self.shared.budget.deadline {
            sleep_until(self.shared.budget.deadline.into()).await;
            return Err(Halt::Over);
        }
        sleep_until(at.into()).await;
        Ok(())
    }

    /// xorshift64*: enough randomness for rung choices, reproducible per seed.
    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The segment URLs with the first character of their signature changed: well-formed, wrong.
fn forged_urls(urls: Vec<Url>, md5_arg: &str) -> Vec<Url> {
    let marker = format!("{md5_arg}=");
    urls.into_iter()
        .filter_map(|url| {
            let at = url
                .target
                .find(&format!("?{marker}"))
                .or_else(|| url.target.find(&format!("&{marker}")))?
                + 1
                + marker.len();
            let mut target = url.target.clone();
            let first = target.as_bytes().get(at).copied()?;
            let replacement = if first == b'A' { "B" } else { "A" };
            target.replace_range(at..at + 1, replacement);
            Some(Url { target, ..url })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_urls_change_only_the_signature() {
        let urls = [
            "http://e:1/hls/v/720p/s0.ts?md5=Abc_-&expires=9",
            "http://e:1/hls/v/720p/s1.ts?expires=9&md5=xyz",
            "http://e:1/hls/v/720p/unsigned.ts",
        ]
        .map(|u| Url::parse(u).expect("url"));
        let forged = forged_urls(urls.to_vec(), "md5");
        assert_eq!(forged.len(), 2);
        assert_eq!(forged[0].target, "/hls/v/720p/s0.ts?md5=Bbc_-&expires=9");
        assert_eq!(forged[1].target, "/hls/v/720p/s1.ts?expires=9&md5=Ayz");
        assert_eq!(forged[0].authority, "e:1");
    }

    #[test]
    fn expectations() {
        assert!(Expect::Success.accepts(206));
        assert!(!Expect::Success.accepts(410));
        assert!(Expect::SuccessOrExpired.accepts(410));
        assert!(!Expect::SuccessOrExpired.accepts(403));
        assert!(Expect::Forbidden.accepts(403));
        assert!(!Expect::Forbidden.accepts(200));
    }
}
