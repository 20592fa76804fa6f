//! The processes the chaos tests run (Redis, the API, two workers, the edge) and how they are
//! driven: clips, uploads, kills, the API's and Redis' views of a job, its event stream.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread;

use e2e::origin::{data_dir, generate_clip, json};
use e2e::sse::{self, SseStream};
use e2e::{
    process, Edge, EdgeOptions, Origin, OriginOptions, OriginWorker, RedisServer, Request, Signal,
    WorkerOptions,
};

use crate::{CLIP_SECS, LEASE_SECS, READY_TIMEOUT, SEGMENT_SECS};

/// Fails the test early, with the fix, when ffmpeg is missing.
pub fn require_ffmpeg() {
    assert!(
        process::on_path("ffmpeg"),
        "ffmpeg is not installed: run scripts/test.sh, which installs it"
    );
}

/// Generates `n` 1280x720 clips of [`CLIP_SECS`] all at once, in a temporary directory that
/// lives as long as the returned handle.
pub fn generate_clips(n: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
    let clips = tempfile::Builder::new()
        .prefix("e2e-chaos-clips-")
        .tempdir()
        .expect("create clips dir");
    let paths: Vec<PathBuf> = (0..n)
        .map(|n| clips.path().join(format!("clip{n}.mp4")))
        .collect();
    thread::scope(|scope| {
        for path in &paths {
            scope.spawn(move || generate_clip(path, CLIP_SECS, 1280, 720));
        }
    });
    (clips, paths)
}

/// Shared by the API and both workers; the API also gets the edge by flag.
fn origin_config(edge_base_url: &str) -> String {
    format!(
        "[transcode]\nworkers = 0\nsegment_secs = {SEGMENT_SECS}\nx264_preset = \"ultrafast\"\n\
         nvenc = \"off\"\nlease_secs = {LEASE_SECS}\nmax_attempts = 5\n\n\
         [playback]\nedge_base_url = \"{edge_base_url}\"\n"
    )
}

/// Everything the test runs. Fields drop in order: workers, the API and the edge stop before
/// Redis, and the data directory goes last.
pub struct Platform {
    pub workers: Vec<OriginWorker>,
    pub origin: Origin,
    pub edge: Edge,
    pub redis: RedisServer,
    pub data: PathBuf,
    _dir: tempfile::TempDir,
}

impl Platform {
    pub fn start() -> Self {
        let (dir, data) = data_dir("e2e-chaos-");
        let redis = RedisServer::start();
        let edge = Edge::start(EdgeOptions::new(&data.join("hls")));
        let edge_url = format!("http://{}", edge.public_addr);
        let config = origin_config(&edge_url);
        let origin = Origin::start(
            OriginOptions::new(&data, &edge_url)
                .config(&config)
                .env("REDIS_URL", &redis.url()),
        );
        let workers = (0..2)
            .map(|_| {
                OriginWorker::start(
                    WorkerOptions::new(&data)
                        .concurrency(2)
                        .config(&config)
                        .env("REDIS_URL", &redis.url()),
                )
            })
            .collect();
        Self {
            workers,
            origin,
            edge,
            redis,
            data,
            _dir: dir,
        }
    }

    pub fn diagnostics(&self) -> String {
        let mut out = vec![self.origin.diagnostics(), self.edge.diagnostics()];
        out.extend(self.workers.iter().map(OriginWorker::diagnostics));
        out.push(self.redis.diagnostics());
        out.join("\n")
    }

    /// Uploads `clip` as the owner of `token`; returns the new video's id.
    pub fn upload(&self, token: &str, clip: &Path) -> String {
        let response = self
            .origin
            .upload(token, &fs::read(clip).expect("read clip"), "video/mp4");
        assert_eq!(
            response.status,
            202,
            "upload {}: {}\n{}",
            clip.display(),
            response.text(),
            self.diagnostics()
        );
        json(&response)["id"]
            .as_str()
            .expect("upload answer has an id")
            .to_owned()
    }

    /// SIGKILL for worker `index` and its ffmpeg children, as a cgroup kill would (OOM kill,
    /// systemd stopping a unit whose main process died, a container exiting). Returns the
    /// children's pids.
    pub fn kill_worker(&mut self, index: usize) -> Vec<u32> {
        let children = process::children_of(self.workers[index].pid());
        self.workers[index].kill9();
        for child in &children {
            process::try_signal(*child, Signal::Kill);
        }
        children
    }

    /// The API's view of `id`, `None` while the API cannot answer (Redis down: 503).
    pub fn view(&self, token: &str, id: &str) -> Option<serde_json::Value> {
        let response = self.origin.get_as(token, &format!("/api/videos/{id}"));
        (response.status == 200).then(|| json(&response))
    }

    /// A field of `id`'s job record, read from Redis itself (JSON text); `None` if absent.
    pub fn job_field(&self, id: &str, field: &str) -> Option<String> {
        self.redis.hget(&format!("hls:job:{id}"), field)
    }

    /// The worker name in `id`'s lease, if it has one.
    pub fn lease_holder(&self, id: &str) -> Option<String> {
        let lease: serde_json::Value = serde_json::from_str(&self.job_field(id, "lease")?).ok()?;
        lease["worker"].as_str().map(str::to_owned)
    }

    /// The `master.m3u8` URL of `id` on the API, as a viewer holding `token` plays it.
    pub fn master_url(&self, token: &str, id: &str) -> String {
        format!(
            "{}/api/videos/{id}/hls/master.m3u8?token={token}",
            self.origin.base_url()
        )
    }
}

/// How many times `worker` logged losing the lease of `video` mid-run.
///
/// The heartbeat renews the lease every `lease_secs / 3` (1 s here); on a loaded machine, with a
/// debug build, a 3 s lease can still run out before it is renewed.
pub fn lease_losses(worker: &OriginWorker, video: &str) -> usize {
    worker
        .stderr_lines()
        .iter()
        .filter(|line| {
            line.contains("lease lost, stopping without publishing") && line.contains(video)
        })
        .count()
}

/// Follows `id`'s events on the API until `ready` or a final `failed`, in a thread.
pub fn follow_events(api: SocketAddr, token: &str, id: &str) -> thread::JoinHandle<SseStream> {
    let request = Request::get(format!("/api/videos/{id}/events?token={token}"))
        .header("Accept", "text/event-stream")
        .host(api.to_string())
        .build();
    thread::spawn(move || {
        sse::read_events(api, &request, READY_TIMEOUT, |event| {
            event.event == "ready"
                || (event.event == "failed"
                    && serde_json::from_str::<serde_json::Value>(&event.data)
                        .is_ok_and(|d| d["retrying"] == false))
        })
        .expect("read the event stream")
    })
}
