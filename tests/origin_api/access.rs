//! `lifecycle` from the outside: what another user, a forged or misplaced playback credential
//! and a forged or expired segment URL at the edge are refused, and the delete after which
//! everything of the video is gone at once.

use std::time::Duration;

use e2e::origin::json;
use e2e::{past_expires, signer};

use crate::support::*;
use crate::{Lifecycle, Published};

impl Lifecycle {
    /// The key of `a`'s 360p rung with `pt` as its credential.
    fn key_target(&self, pt: &str) -> String {
        format!("/api/videos/{}/hls/360p/key?pt={pt}", self.a)
    }

    /// The variant playlist of `a`'s 360p rung with `pt` as its credential.
    fn variant_target(&self, pt: &str) -> String {
        format!("/api/videos/{}/hls/360p/index.m3u8?pt={pt}", self.a)
    }

    /// Bob sees nothing of alice's video: no record, master, stream-info or events, no delete,
    /// an empty list.
    pub fn check_stranger_sees_nothing(&self) {
        let (p, bob, a) = (&self.p, self.bob.as_str(), self.a.as_str());
        for target in [
            format!("/api/videos/{a}"),
            format!("/api/videos/{a}/hls/master.m3u8"),
            format!("/api/videos/{a}/stream-info"),
        ] {
            assert_error(
                &p.origin.get_as(bob, &target),
                404,
                &format!("bob: GET {target}"),
            );
            assert_error(
                &p.origin.get(&format!("{target}?token={bob}")),
                404,
                &format!("bob: GET {target}?token="),
            );
        }
        let bob_events = p.origin.events(bob, a, Duration::from_secs(15), |_| true);
        assert_eq!(
            bob_events.response.status, 404,
            "bob: events of alice's video"
        );
        assert_error(
            &p.origin.delete_as(bob, &format!("/api/videos/{a}")),
            404,
            "bob: DELETE",
        );
        let bobs = json(&p.origin.get_as(bob, "/api/videos"));
        assert_eq!(bobs["videos"], serde_json::json!([]), "bob lists nothing");
    }

    /// The key and the variants need alice's playback credential for this very video: not a
    /// tampered one, not a user token, not none, not the one of her other video.
    pub fn check_forged_credentials(&self, published: &Published) {
        let (p, alice, bob, a, b) = (
            &self.p,
            self.alice.as_str(),
            self.bob.as_str(),
            self.a.as_str(),
            self.b.as_str(),
        );
        let pt = published.pt.as_str();
        assert_error(
            &p.origin.get(&self.key_target(&tamper_signature(pt))),
            401,
            "tampered pt on the key",
        );
        assert_error(
            &p.origin.get(&self.variant_target(&tamper_signature(pt))),
            401,
            "tampered pt on the variant",
        );
        assert_error(
            &p.origin.get(&self.key_target(bob)),
            401,
            "bob's user token as pt",
        );
        assert_error(
            &p.origin.get(&self.key_target(alice)),
            401,
            "alice's user token as pt",
        );
        assert_error(
            &p.origin
                .get(&format!("/api/videos/{a}/hls/360p/key?token={bob}")),
            401,
            "bob's token and no pt",
        );
        assert_error(
            &p.origin.get(&format!("/api/videos/{a}/hls/360p/key")),
            401,
            "no credential at all",
        );
        let pt_b = master_credential(&identical_masters(p, alice, b).text());
        assert_ne!(pt, pt_b);
        assert_error(
            &p.origin.get(&self.key_target(&pt_b)),
            403,
            "alice's pt for video b on a's key",
        );
        assert_error(
            &p.origin.get(&self.variant_target(&pt_b)),
            403,
            "alice's pt for video b on a's variant",
        );
    }

    /// The edge refuses a tampered segment URL, an expired one, and a signature moved to
    /// another segment.
    pub fn check_edge_refusals(&self, published: &Published) {
        let p = &self.p;
        let first_segments = &published.first_segments;
        let (path, query) = first_segments[0].split_once('?').expect("query");
        let path = path
            .strip_prefix(&format!("http://{}", p.edge.public_addr))
            .expect("edge path");
        let md5 = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("md5="))
            .expect("md5");
        let forged = first_segments[0].replace(md5, &tamper(md5));
        assert_status(&edge_get(p, &forged), 403, "tampered segment URL");
        let expired = signer().signed_url(path, past_expires(), "");
        assert_status(&edge_get(p, &expired), 410, "expired segment URL");
        let other_segment = path.replace("segment_000", "segment_001");
        assert_ne!(other_segment, path);
        assert_status(
            &edge_get(p, &format!("{other_segment}?{query}")),
            403,
            "a signature moved to another segment",
        );
    }

    /// Alice deletes `a`: once-valid segment URLs, the record, the master, the stream-info,
    /// the key and the variants are gone at once (the edge cache was purged, and the origin
    /// says so), and so are its files; `b` still plays.
    pub fn delete_and_check_gone(&self, published: &Published) {
        let (p, alice, a, b) = (&self.p, self.alice.as_str(), self.a.as_str(), &self.b);
        let pt = published.pt.as_str();
        let purged_before = metric(&p.edge.metrics(), "edge_cache_purged_total", &[]);
        let deleted = p.origin.delete_as(alice, &format!("/api/videos/{a}"));
        assert_status(&deleted, 204, "alice deletes her video");
        assert!(deleted.body.is_empty());
        for segment in &published.first_segments {
            assert_status(
                &edge_get(p, segment),
                404,
                "a once-valid segment URL after delete",
            );
        }
        assert!(
            metric(&p.edge.metrics(), "edge_cache_purged_total", &[]) > purged_before,
            "the origin purged the edge cache\n{}",
            p.diagnostics()
        );
        assert!(
            p.origin
                .wait_for_log(&["edge cache purged", a], Duration::from_secs(5)),
            "the origin logs the purge\n{}",
            p.origin.diagnostics()
        );
        for target in [
            format!("/api/videos/{a}"),
            format!("/api/videos/{a}/hls/master.m3u8"),
            format!("/api/videos/{a}/stream-info"),
        ] {
            assert_error(
                &p.origin.get_as(alice, &target),
                404,
                &format!("after delete: {target}"),
            );
        }
        assert_error(
            &p.origin.get(&self.key_target(pt)),
            404,
            "the key after delete",
        );
        assert_error(
            &p.origin.get(&self.variant_target(pt)),
            404,
            "a variant after delete",
        );
        for gone in [
            p.data.join("hls").join(a),
            p.data.join("keys").join(a),
            p.data.join("thumbs").join(a),
            p.data.join("sources").join(a),
        ] {
            assert!(!gone.exists(), "{} removed", gone.display());
        }
        // The other video is untouched.
        let master_b = p
            .origin
            .get(&format!("/api/videos/{b}/hls/master.m3u8?token={alice}"));
        assert_status(&master_b, 200, "b after a was deleted");
        let pt_b = master_credential(&master_b.text());
        let v = variant(p, b, "240p", &pt_b);
        assert_status(
            &edge_get(p, &v.segments[0]),
            200,
            "b's segment after a was deleted",
        );
    }
}
