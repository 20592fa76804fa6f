//! `shared::objects` against a real S3 API (SeaweedFS, which checks SigV4): the operations
//! the origin and the edge rely on, and `check()` telling each misconfiguration apart.

use std::time::Duration;

use e2e::seaweed::{self, SeaweedFs, ADMIN, READER};
use futures_util::{StreamExt, TryStreamExt};
use shared::objects::object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use shared::objects::{CheckError, Objects};

const BUCKET: &str = "media";

async fn put(objects: &Objects, rel: &str, bytes: &[u8]) {
    let key = objects.key(rel).expect("key");
    objects
        .store()
        .put(&key, bytes.to_vec().into())
        .await
        .unwrap_or_else(|e| panic!("put {rel}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_range_head_list_and_delete() {
    let weed = SeaweedFs::start();
    weed.create_bucket(BUCKET);
    let admin = weed.objects(BUCKET, "hls", ADMIN);
    let body = e2e::content::pseudo_random_bytes(7, 300_017);
    put(&admin, "v1/720p/segment_000.ts", &body).await;

    let reader = weed.objects(BUCKET, "hls/", READER);
    let key = reader.key("v1/720p/segment_000.ts").expect("key");
    assert_eq!(key.as_ref(), "hls/v1/720p/segment_000.ts");
    let got = reader.store().get(&key).await.expect("get");
    assert_eq!(got.meta.size, body.len() as u64);
    let etag = got.meta.e_tag.clone().expect("an ETag");
    let bytes = got.bytes().await.expect("body");
    assert_eq!(&bytes[..], &body[..], "whole object");
    let md5 = shared::objects::etag_md5(&etag).expect("single-part ETag is an MD5");
    assert_eq!(md5, md5_of(&body), "the ETag is the body's MD5");

    let range = reader
        .store()
        .get_range(&key, 1000..1100)
        .await
        .expect("range");
    assert_eq!(&range[..], &body[1000..1100]);
    let suffix = GetOptions {
        range: Some(GetRange::Suffix(5)),
        ..GetOptions::default()
    };
    let tail = reader.store().get_opts(&key, suffix).await.expect("suffix");
    assert_eq!(
        &tail.bytes().await.expect("tail")[..],
        &body[body.len() - 5..]
    );

    let head = reader.store().head(&key).await.expect("head");
    assert_eq!(
        (head.size, head.e_tag.as_deref()),
        (body.len() as u64, Some(&etag[..]))
    );
    let missing = reader.key("v1/720p/nope.ts").expect("key");
    assert!(matches!(
        reader.store().get(&missing).await,
        Err(shared::objects::object_store::Error::NotFound { .. })
    ));

    // More keys than one ListObjectsV2 page (1000) holds: the listing follows the pages.
    let names: Vec<String> = (0..1003).map(|i| format!("v2/seg_{i:04}.ts")).collect();
    futures_util::stream::iter(names.iter())
        .for_each_concurrent(16, |name| put(&admin, name, b"x"))
        .await;
    let listed: Vec<_> = reader
        .store()
        .list(Some(&reader.key("v2").expect("prefix")))
        .try_collect()
        .await
        .expect("list");
    assert_eq!(listed.len(), 1003, "every page listed");
    let under_prefix: Vec<_> = reader
        .store()
        .list(reader.prefix_path().as_ref())
        .try_collect()
        .await
        .expect("list");
    assert_eq!(under_prefix.len(), 1004);

    // The reader may not write or delete; the admin may.
    let refused = reader.store().put(&key, b"overwrite".to_vec().into()).await;
    assert!(
        matches!(
            refused,
            Err(shared::objects::object_store::Error::PermissionDenied { .. })
        ),
        "{refused:?}"
    );
    admin.store().delete(&key).await.expect("delete");
    assert!(reader.store().head(&key).await.is_err(), "deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_tells_each_misconfiguration_apart() {
    let weed = SeaweedFs::start();
    weed.create_bucket(BUCKET);
    let check = |objects: Objects| async move {
        tokio::time::timeout(Duration::from_secs(30), objects.check())
            .await
            .expect("check is bounded")
    };
    check(weed.objects(BUCKET, "hls", READER))
        .await
        .expect("the reader may read the bucket");
    check(weed.objects(BUCKET, "", ADMIN))
        .await
        .expect("the admin too");

    let mut wrong_secret = weed.store_config(BUCKET, "hls", READER);
    wrong_secret.credentials = Some(shared::objects::Credentials {
        secret_access_key: "not-the-secret-0123456789".into(),
        ..seaweed::credentials(READER)
    });
    let error = check(connect(wrong_secret)).await.expect_err("bad secret");
    assert!(
        matches!(&error, CheckError::BadCredentials { code, .. } if code == "SignatureDoesNotMatch"),
        "{error}"
    );
    assert!(
        error.to_string().contains("AWS_SECRET_ACCESS_KEY"),
        "{error}"
    );

    let mut unknown_key = weed.store_config(BUCKET, "hls", READER);
    unknown_key.credentials = Some(shared::objects::Credentials {
        access_key_id: "nobody".into(),
        ..seaweed::credentials(READER)
    });
    let error = check(connect(unknown_key)).await.expect_err("unknown key");
    assert!(
        matches!(&error, CheckError::BadCredentials { code, .. } if code == "InvalidAccessKeyId"),
        "{error}"
    );

    let error = check(weed.objects("no-such-bucket", "hls", READER))
        .await
        .expect_err("missing bucket");
    assert!(matches!(error, CheckError::NoSuchBucket { .. }), "{error}");
    assert!(error.to_string().contains("no-such-bucket"), "{error}");

    let mut nowhere = weed.store_config(BUCKET, "hls", READER);
    nowhere.endpoint = format!("http://127.0.0.1:{}", e2e::port::free_port());
    let error = check(connect(nowhere)).await.expect_err("nothing listens");
    assert!(matches!(error, CheckError::Unreachable { .. }), "{error}");
}

fn connect(config: shared::objects::StoreConfig) -> Objects {
    let mut problems = Vec::new();
    config
        .validate("storage", &mut problems)
        .unwrap_or_else(|| panic!("{problems:?}"))
        .connect()
        .expect("client")
}

fn md5_of(bytes: &[u8]) -> [u8; 16] {
    use md5::Digest;
    md5::Md5::digest(bytes).into()
}
