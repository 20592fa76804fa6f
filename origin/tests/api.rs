//! The API in process: the router `origin serve` builds (`roles::serve::build`, from an
//! `OriginConfig` with test secrets and a temporary data directory, on the embedded store),
//! called with `tower::ServiceExt::oneshot`, without a socket or a spawned binary.
//!
//! - authentication: no token, an expired one, `alg: none`, another secret, garbage, an empty
//!   subject -> 401; a token in the URL of a state-changing request -> 401;
//! - ownership: another user's video answers exactly like a missing one, on every route that
//!   names a video, and nothing of it changes;
//! - validation: ids and rung names that are not names (`..`, encoded slashes, too long) ->
//!   404 without touching the disk, an oversized title -> 400 (query or multipart);
//! - error shapes: every refusal above is `{"error": "<message>"}` as JSON, and no message
//!   names a path on the server;
//! - subtitle changes wait for another machine's change to the same video, and answer 409 if
//!   it never ends.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use origin::api::auth::mint_hs256;
use origin::api::AppState;
use origin::config::OriginConfig;
use origin::jobs::model::{unix_now, Job, LeaseStep};
use origin::jobs::store::{Failure, JobStore};
use origin::transcode::pipeline::Profile;
use shared::media::VideoId;
use tower::ServiceExt;

const JWT_SECRET: &str = "api-test-jwt-secret-0123456789";
const SIGNING_SECRET: &str = "api-test-signing-secret-0123456789";

/// The API of an origin on a data directory of its own (removed on drop).
struct Api {
    router: Router,
    state: AppState,
    dir: tempfile::TempDir,
}

/// A response, its body read whole.
struct Answer {
    status: StatusCode,
    content_type: String,
    body: Vec<u8>,
}

impl Api {
    async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// An API on the test configuration after `change`.
    async fn with(change: impl FnOnce(&mut OriginConfig)) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("origin-api-")
            .tempdir()
            .expect("temp dir");
        let mut config = OriginConfig::default();
        config.server.listen = "127.0.0.1:0".into();
        config.server.data_dir = dir.path().join("data");
        config.playback.edge_base_url = "http://edge.test".into();
        // No encoder runs here: nothing to detect, nobody to claim jobs.
        config.transcode.workers = 0;
        config.transcode.nvenc = origin::config::NvencMode::Off;
        let env: HashMap<&str, &str> = HashMap::from([
            ("JWT_SECRET", JWT_SECRET),
            ("HLS_SIGNING_SECRET", SIGNING_SECRET),
        ]);
        config.apply_env(&env);
        change(&mut config);
        let settings = config.serve().expect("valid test configuration");
        let built = origin::roles::serve::build(settings)
            .await
            .expect("the origin builds");
        Self {
            router: origin::api::router(built.state.clone()),
            state: built.state,
            dir,
        }
    }

    /// The response to `request`, its body not read yet (an event stream's never ends).
    async fn respond(&self, request: Request<Body>) -> axum::response::Response {
        self.router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible")
    }

    async fn call(&self, request: Request<Body>) -> Answer {
        let response = self.respond(request).await;
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("a body under 1 MiB")
            .to_vec();
        Answer {
            status,
            content_type,
            body,
        }
    }

    async fn get(&self, token: Option<&str>, uri: &str) -> Answer {
        self.call(request(Method::GET, uri, token, Body::empty()))
            .await
    }

    /// A video of `owner`, queued, straight into the store.
    async fn video_of(&self, owner: &str) -> VideoId {
        let video = VideoId::random();
        let job = Job::new(
            video.clone(),
            owner,
            Some("holiday".into()),
            Profile::Ladder,
            unix_now(),
        );
        self.state.store.create(job).await.expect("create");
        video
    }

    /// The message of an error answer, after checking its shape: JSON, one `error` string,
    /// nothing that names a place on this machine.
    fn error(&self, answer: &Answer, status: StatusCode, what: &str) -> String {
        let text = String::from_utf8_lossy(&answer.body);
        assert_eq!(answer.status, status, "{what}: {text}");
        assert!(
            answer.content_type.starts_with("application/json"),
            "{what}: content type {:?}: {text}",
            answer.content_type
        );
        let json: serde_json::Value =
            serde_json::from_slice(&answer.body).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
        let object = json.as_object().expect("an object");
        assert_eq!(object.len(), 1, "{what}: only `error`: {text}");
        let message = object["error"].as_str().expect("error is a string");
        assert!(!message.is_empty(), "{what}: an empty message");
        let data = self.dir.path().to_string_lossy();
        for leak in [data.as_ref(), "/tmp/", "/work/", "/home/", ".rs:"] {
            assert!(!message.contains(leak), "{what}: {message:?} names {leak}");
        }
        message.to_owned()
    }
}

fn request(method: Method, uri: &str, token: Option<&str>, body: Body) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(body).expect("a valid request")
}

/// `POST /api/videos/{video}/subtitles?lang=fra` with `body`.
fn add_subtitles(token: &str, video: &VideoId, body: impl Into<Body>) -> Request<Body> {
    let uri = format!("/api/videos/{video}/subtitles?lang=fra");
    request(Method::POST, &uri, Some(token), body.into())
}

fn token(user: &str, admin: bool) -> String {
    mint_hs256(JWT_SECRET.as_bytes(), user, admin, 3600, unix_now()).expect("mint")
}

#[tokio::test]
async fn requests_without_a_valid_token_are_401() {
    let api = Api::new().await;
    let now = unix_now();
    let expired = mint_hs256(JWT_SECRET.as_bytes(), "alice", false, -3600, now).expect("mint");
    let unsigned = e2e::origin::unsigned_token(&serde_json::json!({
        "sub": "alice", "exp": now + 3600, "role": "admin"
    }));
    let other_secret =
        mint_hs256(b"another-secret-0123456789", "alice", true, 3600, now).expect("mint");
    let no_subject = mint_hs256(JWT_SECRET.as_bytes(), "", false, 3600, now).expect("mint");
    let video = api.video_of("alice").await;
    let routes = [
        (Method::GET, "/api/videos".to_owned()),
        (Method::POST, "/api/videos".to_owned()),
        (Method::GET, format!("/api/videos/{video}")),
        (Method::DELETE, format!("/api/videos/{video}")),
        (Method::POST, format!("/api/videos/{video}/retry")),
        (Method::GET, format!("/api/videos/{video}/stream-info")),
        (Method::GET, "/api/admin/migration".to_owned()),
    ];
    let tokens = [
        ("no token", None),
        ("expired", Some(expired.as_str())),
        ("alg none", Some(unsigned.as_str())),
        ("another secret", Some(other_secret.as_str())),
        ("not a JWT", Some("not.a.jwt")),
        ("empty subject", Some(no_subject.as_str())),
    ];
    for (method, uri) in &routes {
        for (what, token) in tokens {
            let answer = api
                .call(request(method.clone(), uri, token, Body::empty()))
                .await;
            let what = format!("{method} {uri} with {what}");
            api.error(&answer, StatusCode::UNAUTHORIZED, &what);
        }
    }
    assert!(
        api.state.store.get(&video).await.expect("get").is_some(),
        "nothing was deleted"
    );
    // The real token passes, and only an admin's reaches the admin route.
    let alice = token("alice", false);
    assert_eq!(
        api.get(Some(&alice), "/api/videos").await.status,
        StatusCode::OK
    );
    let admin_only = api.get(Some(&alice), "/api/admin/migration").await;
    api.error(&admin_only, StatusCode::FORBIDDEN, "admin route as a user");
    let admin = token("root", true);
    assert_eq!(
        api.get(Some(&admin), "/api/admin/migration").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn tokens_in_urls_do_not_change_state() {
    let api = Api::new().await;
    let alice = token("alice", false);
    let video = api.video_of("alice").await;
    for (method, uri) in [
        (Method::DELETE, format!("/api/videos/{video}?token={alice}")),
        (
            Method::POST,
            format!("/api/videos/{video}/retry?token={alice}"),
        ),
        (Method::POST, format!("/api/videos?token={alice}")),
    ] {
        let answer = api
            .call(request(method.clone(), &uri, None, Body::empty()))
            .await;
        let message = api.error(
            &answer,
            StatusCode::UNAUTHORIZED,
            &format!("{method} ?token="),
        );
        assert!(message.contains("Authorization"), "{message}");
    }
    assert!(api.state.store.get(&video).await.expect("get").is_some());
    // Reads may carry it (players, <img>, EventSource cannot send headers).
    let read = api
        .get(None, &format!("/api/videos/{video}?token={alice}"))
        .await;
    assert_eq!(read.status, StatusCode::OK);
}

#[tokio::test]
async fn another_users_video_is_exactly_a_missing_one() {
    let api = Api::new().await;
    let (alice, bob) = (token("alice", false), token("bob", false));
    let video = api.video_of("alice").await;
    let missing = VideoId::random();
    let routes = [
        (Method::GET, ""),
        (Method::DELETE, ""),
        (Method::POST, "/retry"),
        (Method::GET, "/stream-info"),
        (Method::GET, "/thumbnail.jpg"),
        (Method::GET, "/storyboard.vtt"),
        (Method::GET, "/stream"),
    ];
    for (method, suffix) in routes {
        let call = |id: &VideoId| {
            let uri = format!("/api/videos/{id}{suffix}");
            api.call(request(method.clone(), &uri, Some(&bob), Body::empty()))
        };
        let theirs = call(&video).await;
        let nobodys = call(&missing).await;
        let what = format!("{method} /api/videos/{{id}}{suffix} as another user");
        let message = api.error(&theirs, StatusCode::NOT_FOUND, &what);
        assert_eq!(
            (theirs.status, &theirs.body),
            (nobodys.status, &nobodys.body),
            "{what}: differs from a missing video"
        );
        assert!(!message.contains("alice"), "{what}: {message}");
    }
    let listed = api.get(Some(&bob), "/api/videos").await;
    assert_eq!(listed.status, StatusCode::OK);
    assert!(!String::from_utf8_lossy(&listed.body).contains(video.as_str()));
    // Still there, untouched, for its owner and an admin.
    for who in [alice, token("root", true)] {
        let own = api.get(Some(&who), &format!("/api/videos/{video}")).await;
        assert_eq!(
            own.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&own.body)
        );
    }
}

#[tokio::test]
async fn names_that_are_not_names_are_refused() {
    let api = Api::new().await;
    let alice = token("alice", false);
    let video = api.video_of("alice").await;
    let long = "a".repeat(65);
    // Ids outside [A-Za-z0-9_-]{1,64}: answered like a missing video, never looked up on disk.
    for id in [
        "..",
        "%2E%2E",
        "a%2Fb",
        "a%2F..%2F..%2Fkeys",
        &long,
        "a%20b",
        "%00",
    ] {
        for suffix in [
            "",
            "/stream-info",
            "/thumbnail.jpg",
            "/hls/master.m3u8?pt=x",
        ] {
            let uri = format!("/api/videos/{id}{suffix}");
            let answer = api.get(Some(&alice), &uri).await;
            api.error(&answer, StatusCode::NOT_FOUND, &uri);
        }
    }
    // Rung names the same way, on a video that exists.
    for rung in ["..", "%2E%2E", "..%2F..%2Fkeys", "a.b", &long] {
        for file in ["index.m3u8", "key"] {
            let uri = format!("/api/videos/{video}/hls/{rung}/{file}?pt=x");
            let answer = api.get(Some(&alice), &uri).await;
            api.error(&answer, StatusCode::NOT_FOUND, &uri);
        }
    }
}

#[tokio::test]
async fn oversized_titles_are_400_before_the_upload_is_read() {
    let api = Api::new().await;
    let alice = token("alice", false);
    let max = api.state.settings.uploads.max_title_bytes;
    let title = "t".repeat(max + 1);
    let query = api
        .call(request(
            Method::POST,
            &format!("/api/videos?title={title}"),
            Some(&alice),
            Body::from("not read"),
        ))
        .await;
    let message = api.error(&query, StatusCode::BAD_REQUEST, "title in the query");
    assert!(message.contains(&max.to_string()), "{message}");

    let boundary = "api-test-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n{title}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\n\
         Content-Type: video/mp4\r\n\r\nnot a video\r\n--{boundary}--\r\n"
    );
    let mut multipart = request(Method::POST, "/api/videos", Some(&alice), Body::from(body));
    multipart.headers_mut().insert(
        header::CONTENT_TYPE,
        format!("multipart/form-data; boundary={boundary}")
            .parse()
            .expect("header"),
    );
    let answer = api.call(multipart).await;
    api.error(
        &answer,
        StatusCode::BAD_REQUEST,
        "title in a multipart field",
    );
    let tmp = api.state.layout.tmp_root();
    assert!(
        e2e::files::files_under(&tmp).is_empty(),
        "a refused upload leaves nothing in {}",
        tmp.display()
    );
    let listed = api.get(Some(&alice), "/api/videos").await;
    assert_eq!(
        String::from_utf8_lossy(&listed.body)
            .matches("\"id\"")
            .count(),
        0
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_too() {
    let api = Api::new().await;
    let alice = token("alice", false);
    let video = api.video_of("alice").await;
    let nowhere = api.get(Some(&alice), "/api/nowhere").await;
    api.error(&nowhere, StatusCode::NOT_FOUND, "an unknown route");
    let put = api
        .call(request(
            Method::PUT,
            &format!("/api/videos/{video}"),
            Some(&alice),
            Body::empty(),
        ))
        .await;
    api.error(&put, StatusCode::METHOD_NOT_ALLOWED, "PUT on a video");
    let bad_query = api
        .call(request(
            Method::POST,
            "/api/videos?profile=best",
            Some(&alice),
            Body::from("x"),
        ))
        .await;
    api.error(
        &bad_query,
        StatusCode::BAD_REQUEST,
        "an unknown upload profile",
    );
}

/// The URLs the API hands out for pages to load without headers carry a credential for their
/// video alone, never the user's token, and that credential opens nothing else.
#[tokio::test]
async fn urls_handed_out_carry_a_credential_for_one_video_never_the_token() {
    let api = Api::new().await;
    let alice = token("alice", false);
    let video = api.video_of("alice").await;
    let other = api.video_of("alice").await;
    let list = api.get(Some(&alice), "/api/videos").await;
    let list: serde_json::Value = serde_json::from_slice(&list.body).expect("json");
    let mine = list["videos"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["id"] == video.to_string()))
        .expect("listed");
    let events = mine["events_url"].as_str().expect("events_url");
    assert!(
        events.contains("?pt=") && !events.contains(&alice),
        "{events}"
    );
    let pt = events.split_once("?pt=").map(|(_, pt)| pt).expect("pt");
    let stream = api
        .respond(request(Method::GET, events, None, Body::empty()))
        .await;
    assert_eq!(
        stream.status(),
        StatusCode::OK,
        "the events by their URL alone"
    );
    drop(stream);
    // Refused for what it is, not for a file that is not there: a 404 would pass even if the
    // credential were let in (neither video has a poster or an upload on disk here).
    let (forbidden, unauthorized) = (StatusCode::FORBIDDEN, StatusCode::UNAUTHORIZED);
    for (uri, what, refused) in [
        (
            format!("/api/videos/{other}/events?pt={pt}"),
            "another video's events",
            forbidden,
        ),
        (
            format!("/api/videos/{other}/thumbnail.jpg?pt={pt}"),
            "another video's poster",
            forbidden,
        ),
        (
            format!("/api/videos/{video}?pt={pt}"),
            "the record",
            unauthorized,
        ),
        (format!("/api/videos?pt={pt}"), "the list", unauthorized),
        (
            format!("/api/videos/{video}/stream?pt={pt}"),
            "the upload",
            unauthorized,
        ),
    ] {
        let r = api.get(None, &uri).await;
        assert_eq!(r.status, refused, "{what}");
    }
    let r = api
        .get(Some(&alice), &format!("/api/videos/{video}?pt={pt}"))
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the owner's token still opens the record"
    );
}

/// A stream whose video ended without a last event (one lost on the way from another machine)
/// or was deleted does not stay open for good: it asks the store when nothing comes.
#[tokio::test(start_paused = true)]
async fn an_event_stream_ends_with_its_video_even_when_no_event_says_so() {
    use futures_util::StreamExt;
    let api = Api::new().await;
    let alice = token("alice", false);
    for ending in ["failed", "deleted"] {
        let video = api.video_of("alice").await;
        let uri = format!("/api/videos/{video}/events");
        let r = api
            .respond(request(Method::GET, &uri, Some(&alice), Body::empty()))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let mut body = r.into_body().into_data_stream();
        let first = body.next().await.expect("the snapshot").expect("bytes");
        assert!(String::from_utf8_lossy(&first).contains("queued"));
        match ending {
            "failed" => {
                let claimed = api
                    .state
                    .store
                    .claim("w1", 30, 3, unix_now())
                    .await
                    .expect("claim");
                assert!(claimed.job.is_some_and(|j| j.video == video));
                let fail = api
                    .state
                    .store
                    .fail(&video, "w1", "broken", Failure::Final, unix_now());
                fail.await.expect("fail");
            }
            _ => api.state.store.delete(&video).await.expect("delete"),
        }
        let mut rest = String::new();
        let ended = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(chunk) = body.next().await {
                rest.push_str(&String::from_utf8_lossy(&chunk.expect("bytes")));
            }
        })
        .await;
        assert!(ended.is_ok(), "{ending}: the stream stayed open: {rest}");
        if ending == "failed" {
            assert!(
                rest.contains("event: status") && rest.contains("\"failed\""),
                "{rest}"
            );
        }
    }
}

/// `/readyz` answers anyone who reaches the API: it names what fails, the details go to the log.
#[tokio::test]
async fn readiness_names_what_fails_and_no_more() {
    let api = Api::new().await;
    let tmp = api.state.layout.tmp_root();
    std::fs::remove_dir_all(&tmp).expect("remove tmp");
    std::fs::write(&tmp, b"not a directory").expect("a file in its place");
    let r = api.get(None, "/readyz").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(
        body["error"], "the data directory is not writable",
        "{body}"
    );
}

/// Uploaded bytes are served back from the origin's name (`/stream`), where the page keeps its
/// users' tokens: no answer may be sniffed or rendered as a document, but the page's own.
#[tokio::test]
async fn no_answer_but_the_page_is_ever_a_document() {
    let api = Api::new().await;
    let alice = token("alice", false);
    let video = api.video_of("alice").await;
    for (uri, status) in [
        ("/api/videos".to_owned(), StatusCode::OK),
        ("/api/nowhere".to_owned(), StatusCode::NOT_FOUND),
        (format!("/api/videos/{video}/stream"), StatusCode::NOT_FOUND),
        ("/app.js".to_owned(), StatusCode::OK),
    ] {
        let r = api
            .respond(request(Method::GET, &uri, Some(&alice), Body::empty()))
            .await;
        assert_eq!(r.status(), status, "{uri}");
        let h = r.headers();
        assert_eq!(
            h.get(header::X_CONTENT_TYPE_OPTIONS).map(|v| v.as_bytes()),
            Some(&b"nosniff"[..]),
            "{uri}"
        );
        let policy = h.get(header::CONTENT_SECURITY_POLICY).map(|v| v.as_bytes());
        assert_eq!(policy, Some(&b"default-src 'none'; sandbox"[..]), "{uri}");
    }
    let page = api
        .respond(request(Method::GET, "/", None, Body::empty()))
        .await;
    let policy = page.headers().get(header::CONTENT_SECURITY_POLICY);
    let policy = policy.and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(
        policy.contains("script-src 'self'"),
        "the page's own: {policy}"
    );
}

/// A subtitle change waits while another machine changes the same video's files (its lease in
/// the job store), goes ahead once that one is done, and answers 409 if it never is.
#[tokio::test(start_paused = true)]
async fn subtitle_changes_take_turns_across_machines() {
    let api = Api::new().await;
    let alice = token("alice", false);
    let video = api.video_of("alice").await;
    let store = api.state.store.clone();
    let other = "another-api-machine";
    assert!(store
        .edit_lease(&video, other, LeaseStep::Take(120), unix_now())
        .await
        .expect("lock"));
    let add = || {
        let vtt = "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nBonjour\n";
        add_subtitles(&alice, &video, vtt)
    };
    let refused = api.call(add()).await;
    let message = api.error(&refused, StatusCode::CONFLICT, "a change that never ends");
    assert!(message.contains("under way"), "{message}");
    let kept = api.state.layout.subtitles_dir(&video);
    assert!(
        e2e::files::files_under(&kept).is_empty(),
        "a refused change kept a file"
    );

    let (store_, video_) = (store.clone(), video.clone());
    let done = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        store_
            .edit_lease(&video_, other, LeaseStep::GiveBack, unix_now())
            .await
            .expect("unlock");
    });
    let added = api.call(add()).await;
    assert_eq!(
        added.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&added.body)
    );
    assert!(
        done.is_finished(),
        "it went ahead before the other change ended"
    );
    // Given back as the answer leaves, by a task of its own. The clock is paused and jumps
    // while the store works on its blocking pool: the deadline is the wall clock's.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let editor = || async { store.get(&video).await.expect("get").expect("job").editor };
    let mut held = editor().await;
    while held.is_some() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        held = editor().await;
    }
    assert_eq!(held, None, "the lease is not given back");
}

/// A video's uploaded subtitle files never reuse a deleted one's number, so the numbers have an
/// end: once taken, an add is refused with 409 and says why, and nothing is kept.
#[tokio::test]
async fn a_videos_subtitle_numbers_have_an_end() {
    let api = Api::new().await;
    let alice = token("alice", false);
    let video = api.video_of("alice").await;
    let dir = api.state.layout.subtitles_dir(&video);
    std::fs::create_dir_all(&dir).expect("dir");
    // What a thousand adds and deletes leave behind.
    let last = origin::transcode::subtitles::tracks::MAX_NUMBER;
    std::fs::write(dir.join(format!("u{last}.gone")), b"").expect("tombstone");
    let vtt = "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nBonjour\n";
    let refused = api.call(add_subtitles(&alice, &video, vtt)).await;
    let message = api.error(&refused, StatusCode::CONFLICT, "numbers used up");
    assert!(message.contains("over its life"), "{message}");
    assert_eq!(e2e::files::files_under(&dir).len(), 1, "nothing kept");
}

/// A subtitle file whose long cues would be copied into every segment they span, tens of
/// megabytes from a file within the size limit, is refused with 422 before anything is kept.
#[tokio::test]
async fn a_subtitle_file_that_would_multiply_is_refused() {
    let api = Api::new().await;
    let alice = token("alice", false);
    let video = api.video_of("alice").await;
    let cue = format!("00:00:00.000 --> 00:10:00.000\n{}\n\n", "a".repeat(4000));
    let vtt = format!("WEBVTT\n\n{}", cue.repeat(100));
    let refused = api.call(add_subtitles(&alice, &video, vtt)).await;
    let message = api.error(&refused, StatusCode::UNPROCESSABLE_ENTITY, "long cues");
    assert!(message.contains("repeated"), "{message}");
    let dir = api.state.layout.subtitles_dir(&video);
    assert!(
        e2e::files::files_under(&dir).is_empty(),
        "a refused file was kept"
    );
}

/// An upload over `server.max_upload_bytes` is 413 whether or not it announced its length:
/// sent in chunks, as a raw body or as a form's file field.
#[tokio::test]
async fn an_upload_over_the_limit_is_413_without_a_length_too() {
    let api = Api::with(|c| c.server.max_upload_bytes = 64 * 1024).await;
    let alice = token("alice", false);
    let chunked = |parts: Vec<Vec<u8>>| {
        let chunks = parts.into_iter().map(Ok::<_, std::io::Error>);
        Body::from_stream(futures_util::stream::iter(chunks))
    };
    let raw = request(
        Method::POST,
        "/api/videos",
        Some(&alice),
        chunked(vec![vec![7u8; 16 * 1024]; 8]),
    );
    let mut form = vec![
        b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\n\r\n"
            .to_vec(),
    ];
    form.extend(vec![vec![7u8; 16 * 1024]; 8]);
    form.push(b"\r\n--XyZ--\r\n".to_vec());
    let mut multipart = request(Method::POST, "/api/videos", Some(&alice), chunked(form));
    multipart.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("multipart/form-data; boundary=XyZ"),
    );
    for (what, upload) in [("raw", raw), ("multipart", multipart)] {
        let refused = api.call(upload).await;
        let message = api.error(&refused, StatusCode::PAYLOAD_TOO_LARGE, what);
        assert!(message.contains("65536"), "{what}: {message}");
    }
}

/// An event stream of a video still encoding holds its connection for as long as the encode:
/// one user may have only so many open, so that one token cannot hold every connection.
#[tokio::test]
async fn one_user_may_hold_only_so_many_event_streams() {
    let api = Api::with(|c| c.server.max_event_streams_per_user = 2).await;
    let (alice, bob) = (token("alice", false), token("bob", false));
    let (hers, his) = (api.video_of("alice").await, api.video_of("bob").await);
    let events = |token: &str, video: &VideoId| {
        let uri = format!("/api/videos/{video}/events");
        request(Method::GET, &uri, Some(token), Body::empty())
    };
    let first = api.respond(events(&alice, &hers)).await;
    let second = api.respond(events(&alice, &hers)).await;
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let third = api.call(events(&alice, &hers)).await;
    let message = api.error(&third, StatusCode::TOO_MANY_REQUESTS, "a third stream");
    assert!(message.contains("2 event streams open"), "{message}");
    let other = api.respond(events(&bob, &his)).await;
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another user's streams are their own"
    );
    drop(first);
    let again = api.respond(events(&alice, &hers)).await;
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "a closed stream gives its slot back"
    );
    drop((second, other, again));
}

/// A subtitle file's body is read only once its video is found to be the user's, and must
/// arrive whole within twice the body timeout: a file sent a byte at a time, each within the
/// deadline between pieces, no longer holds its connection for months.
#[tokio::test(start_paused = true)]
async fn a_subtitle_files_body_is_read_for_its_owner_and_only_so_long() {
    let api = Api::new().await;
    let (alice, bob) = (token("alice", false), token("bob", false));
    let video = api.video_of("alice").await;
    let never = Body::from_stream(futures_util::stream::pending::<
        Result<Vec<u8>, std::io::Error>,
    >());
    let not_his = tokio::time::timeout(
        Duration::from_secs(5),
        api.call(add_subtitles(&bob, &video, never)),
    )
    .await
    .expect("answered before reading the body");
    api.error(&not_his, StatusCode::NOT_FOUND, "another user's video");

    let trickle = futures_util::stream::unfold(0u32, |n| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let piece = if n == 0 {
            b"WEBVTT\n\n".to_vec()
        } else {
            b"\n".to_vec()
        };
        Some((Ok::<_, std::io::Error>(piece), n + 1))
    });
    let started = tokio::time::Instant::now();
    let slow = tokio::time::timeout(
        Duration::from_secs(600),
        api.call(add_subtitles(&alice, &video, Body::from_stream(trickle))),
    )
    .await
    .expect("the file is given up on");
    let message = api.error(&slow, StatusCode::REQUEST_TIMEOUT, "a trickling file");
    assert!(message.contains("did not arrive within 120 s"), "{message}");
    assert!(
        started.elapsed() <= Duration::from_secs(121),
        "{:?}",
        started.elapsed()
    );
}
