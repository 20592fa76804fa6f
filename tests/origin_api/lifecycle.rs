//! `lifecycle` up to a playing video: the uploads, `ready` over Server-Sent Events, the records
//! and stream-info, the signed master, the variants and the keys, ffmpeg playing it all, and
//! the origin's metrics.

use std::fs;

use e2e::metrics;
use e2e::origin::{generate_clip, json, mint_token, play_with_ffmpeg, Part, JWT_SECRET};
use e2e::wait_until;

use crate::support::*;
use crate::{Lifecycle, Published};

impl Lifecycle {
    /// Starts the platform, generates both clips and uploads them as alice: `a` as a raw body,
    /// `b` as multipart with a title.
    pub fn upload_both_clips() -> Self {
        let p = Platform::start();
        let alice = mint_token(JWT_SECRET, "alice", false, "1h");
        let bob = mint_token(JWT_SECRET, "bob", false, "1h");
        let clips = p.dir.path().join("clips");
        fs::create_dir_all(&clips).expect("clips dir");
        let (clip_a, clip_b) = (clips.join("a.mp4"), clips.join("b.mp4"));
        generate_clip(&clip_a, 2, 640, 360);
        generate_clip(&clip_b, 2, 320, 240);

        let a = upload_raw(&p, &alice, &fs::read(&clip_a).expect("clip a"));
        let bytes_b = fs::read(&clip_b).expect("clip b");
        let b = accepted_id(
            &p,
            &p.origin.upload_multipart(
                &alice,
                &[
                    Part::text("title", "Second clip"),
                    Part::file("file", "b.mp4", "video/mp4", &bytes_b),
                ],
            ),
        );
        assert_ne!(a, b);
        assert!(
            p.data.join("sources").join(&a).is_file(),
            "source of a kept"
        );
        Self {
            p,
            alice,
            bob,
            a,
            b,
        }
    }

    /// Follows both jobs to `ready` over Server-Sent Events.
    pub fn follow_to_ready(&self) {
        wait_ready(&self.p, &self.alice, &self.a);
        wait_ready(&self.p, &self.alice, &self.b);
    }

    /// The records of both videos, the stream-info of `a`, and alice's list.
    pub fn check_records(&self) {
        let (p, alice, a, b) = (&self.p, self.alice.as_str(), self.a.as_str(), &self.b);
        let record = p.origin.get_as(alice, &format!("/api/videos/{a}"));
        assert_status(&record, 200, "alice's record");
        let record = json(&record);
        assert_eq!(record["id"], a);
        assert_eq!(record["status"], "ready", "{record}");
        let rungs: Vec<(String, String)> = record["rungs"]
            .as_array()
            .expect("rungs")
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().expect("name").to_owned(),
                    r["resolution"].as_str().expect("resolution").to_owned(),
                )
            })
            .collect();
        assert_eq!(
            rungs,
            [
                ("360p".to_owned(), "640x360".to_owned()),
                ("240p".to_owned(), "426x240".to_owned())
            ],
            "never upscaled, largest first: {record}"
        );
        let duration = record["duration"].as_f64().expect("duration");
        assert!((duration - 2.0).abs() < 0.2, "duration {duration}");
        let record_b = json(&p.origin.get_as(alice, &format!("/api/videos/{b}")));
        assert_eq!(record_b["title"], "Second clip", "{record_b}");
        assert_eq!(record_b["rungs"][0]["resolution"], "320x240", "{record_b}");

        let info = p
            .origin
            .get(&format!("/api/videos/{a}/stream-info?token={alice}"));
        assert_status(&info, 200, "stream-info");
        let info = json(&info);
        assert_eq!(info["format"], "hls", "{info}");
        assert_eq!(info["ready"], true, "{info}");
        // A credential for this video alone, never the user's token.
        let manifest = info["manifest_url"].as_str().expect("manifest_url");
        assert!(
            manifest.starts_with(&format!("/api/videos/{a}/hls/master.m3u8?pt=")),
            "{info}"
        );
        assert!(!manifest.contains(alice), "{info}");
        let master = p.origin.get(manifest);
        assert_status(
            &master,
            200,
            "the manifest URL plays without the user's token",
        );
        let list = json(&p.origin.get_as(alice, "/api/videos"));
        let listed: Vec<&str> = list["videos"]
            .as_array()
            .expect("videos")
            .iter()
            .filter_map(|v| v["id"].as_str())
            .collect();
        assert!(
            listed.contains(&a) && listed.contains(&b.as_str()),
            "{list}"
        );
    }

    /// The signed master of `a` (private, without alice's token, one credential), each
    /// variant, each key (served by the origin, kept out of the edge's root) and each first
    /// segment as the edge serves it.
    pub fn check_master_variants_and_keys(&self) -> Published {
        let (p, alice, a) = (&self.p, self.alice.as_str(), self.a.as_str());
        let master = identical_masters(p, alice, a);
        assert_eq!(
            master.header("content-type"),
            Some("application/vnd.apple.mpegurl")
        );
        assert!(
            master
                .header("cache-control")
                .is_some_and(|c| c.starts_with("private")),
            "a manifest carrying a credential is private: {:?}",
            master.header("cache-control")
        );
        let master_text = master.text();
        assert!(
            !master_text.contains(alice),
            "the user's own token never goes into a manifest"
        );
        let pt = master_credential(&master_text);
        let variant_uris: Vec<String> = uris(&master_text)
            .iter()
            .map(|u| u.split('?').next().expect("path").to_owned())
            .collect();
        assert_eq!(variant_uris, ["360p/index.m3u8", "240p/index.m3u8"]);

        let mut segments_total = 0;
        let mut first_segments = Vec::new();
        for rung in ["360p", "240p"] {
            let v = variant(p, a, rung, &pt);
            segments_total += v.segments.len();
            // The key, resolved against the variant URL, is the origin's key endpoint.
            let key = p
                .origin
                .get(&format!("/api/videos/{a}/hls/{rung}/{}", v.key_uri));
            assert_status(&key, 200, "key");
            assert_eq!(key.header("cache-control"), Some("private, no-store"));
            assert_eq!(key.header("content-type"), Some("application/octet-stream"));
            let stored = fs::read(p.data.join("keys").join(a).join(format!("{rung}.key")))
                .expect("stored key");
            assert_eq!(key.body.len(), 16);
            assert_eq!(
                key.body, stored,
                "the key served is the one the segments use"
            );
            assert!(
                !p.data
                    .join("hls")
                    .join(a)
                    .join(rung)
                    .join(format!("{rung}.key"))
                    .exists()
                    && !fs::read_dir(p.data.join("hls").join(a).join(rung))
                        .expect("rung dir")
                        .any(|e| e
                            .expect("entry")
                            .path()
                            .extension()
                            .is_some_and(|x| x == "key")),
                "no key file is under the edge's root"
            );
            // The edge serves the signed segment URL as is, the bytes on disk.
            let segment = edge_get(p, &v.segments[0]);
            assert_status(&segment, 200, "signed segment at the edge");
            let name = v.segments[0]
                .split('?')
                .next()
                .and_then(|u| u.rsplit('/').next())
                .expect("segment name");
            assert_eq!(
                segment.body,
                fs::read(p.data.join("hls").join(a).join(rung).join(name)).expect("segment file")
            );
            first_segments.push(v.segments[0].clone());
        }
        Published {
            pt,
            first_segments,
            segments_total,
        }
    }

    /// ffmpeg plays `a` whole: master -> variants -> keys from the origin -> every segment
    /// from the edge.
    pub fn play(&self, published: &Published) {
        let (p, alice, a) = (&self.p, &self.alice, &self.a);
        let segments_total = published.segments_total;
        let origin_before = p.origin.metrics();
        let edge_before = p.edge.metrics();
        let url = format!(
            "{}/api/videos/{a}/hls/master.m3u8?token={alice}",
            p.origin.base_url()
        );
        let played = play_with_ffmpeg(&url, PLAY_TIMEOUT);
        assert!(
            played.status.success(),
            "ffmpeg could not play {url}: {}\n{}\n{}",
            played.status,
            String::from_utf8_lossy(&played.stderr),
            p.diagnostics()
        );
        let key_route = [
            ("route", "/api/videos/{id}/hls/{rung}/key"),
            ("status_class", "2xx"),
        ];
        let origin_after = p.origin.metrics();
        assert!(
            metric(&origin_after, "origin_requests_total", &key_route)
                > metrics::value(&origin_before, "origin_requests_total", &key_route)
                    .unwrap_or(0.0),
            "ffmpeg fetched the key from the origin"
        );
        let edge_ok = |text: &str| metric(text, "edge_requests_total", &[("status_class", "2xx")]);
        let served = edge_ok(&p.edge.metrics()) - edge_ok(&edge_before);
        assert!(
            served >= segments_total as f64,
            "ffmpeg fetched every segment ({segments_total}) from the edge, the edge served {served}"
        );
    }

    /// The origin's metrics are well-formed and count both uploads, the manifests signed and
    /// (once the gauges refresh) both jobs ready.
    pub fn check_metrics(&self) {
        let p = &self.p;
        let text = p.origin.metrics();
        if let Err(problems) = metrics::parse_strict(&text) {
            panic!("origin /metrics is not valid exposition text: {problems:#?}\n{text}");
        }
        assert_eq!(metric(&text, "origin_uploads_total", &[]), 2.0, "{text}");
        assert!(metric(&text, "origin_manifest_signing_seconds_count", &[]) >= 4.0);
        let mut jobs_text = text;
        let gauged = wait_until(GAUGE_TIMEOUT, || {
            jobs_text = p.origin.metrics();
            metrics::value(&jobs_text, "origin_jobs", &[("state", "ready")]) == Some(2.0)
        });
        assert!(
            gauged,
            "origin_jobs{{state=\"ready\"}} did not reach 2:\n{jobs_text}"
        );
    }
}
