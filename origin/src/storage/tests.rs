//! The media store on a bucket (object_store's in-memory store: the same trait as S3) and on
//! the data directory.

use std::sync::Arc;

use shared::media::{Layout, VideoId};
use shared::objects::object_store::memory::InMemory;
use shared::objects::Objects;

use super::tree::Phase;
use super::*;
use crate::config::storage::SourceAccess;

fn store(dir: &std::path::Path) -> (MediaStore, Bucket) {
    let layout = Layout::new(dir);
    layout.ensure().expect("layout");
    let objects = Objects::new(Arc::new(InMemory::new()), "prod/", "memory");
    let media = MediaStore::bucket(layout, objects, SourceAccess::Download);
    let bucket = media.remote().expect("bucket").clone();
    (media, bucket)
}

fn write(root: &std::path::Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

async fn names(bucket: &Bucket, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = bucket
        .list(dir)
        .await
        .expect("list")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_pushed_video_is_marked_published_only_when_final_and_keys_stay_private() {
    let dir = tempfile::tempdir().expect("tmp");
    let (media, bucket) = store(dir.path());
    let video: VideoId = "v1".parse().expect("id");
    let root = dir.path();
    write(root, "hls/v1/master.m3u8", b"#EXTM3U\n");
    write(root, "hls/v1/360p/index.m3u8", b"#EXTM3U\n");
    write(root, "hls/v1/360p/segment_000.ts", &[7u8; 1000]);
    write(root, "hls/v1/360p/segment_001.ts.part", b"being written");
    write(root, "keys/v1/360p.key", &[1u8; 16]);
    write(root, "thumbs/v1/poster.jpg", b"jpeg");

    media
        .push_video(&video, Phase::Growing)
        .await
        .expect("push");
    assert!(
        !media.is_published(&video).await.expect("marker"),
        "growing: no marker"
    );
    assert_eq!(
        names(&bucket, "hls/v1").await,
        [
            "hls/v1/360p/index.m3u8",
            "hls/v1/360p/segment_000.ts",
            "hls/v1/master.m3u8"
        ],
        "a file being written is never pushed"
    );
    assert_eq!(
        names(&bucket, "private/keys").await,
        ["private/keys/v1/360p.key"]
    );
    assert_eq!(
        bucket.get("private/keys/v1/360p.key").await.expect("get"),
        Some(vec![1u8; 16].into())
    );

    // A republish without segment_000 but with segment_005: the final push removes the stale
    // object and writes the marker.
    std::fs::remove_file(root.join("hls/v1/360p/segment_000.ts")).expect("rm");
    write(root, "hls/v1/360p/segment_005.ts", &[9u8; 10]);
    media.push_video(&video, Phase::Final).await.expect("final");
    assert!(media.is_published(&video).await.expect("marker"));
    assert_eq!(
        names(&bucket, "hls/v1/360p").await,
        ["hls/v1/360p/index.m3u8", "hls/v1/360p/segment_005.ts"]
    );
    assert_eq!(
        media
            .read("hls/v1/360p/segment_005.ts")
            .await
            .expect("read"),
        Some(vec![9u8; 10].into())
    );
    assert_eq!(media.read("hls/v1/none.ts").await.expect("read"), None);

    // A withdrawal takes the media and the marker, not the poster.
    media.withdraw(&video).await.expect("withdraw");
    assert!(!media.is_published(&video).await.expect("marker"));
    assert!(names(&bucket, "hls/v1").await.is_empty());
    assert!(names(&bucket, "private/keys/v1").await.is_empty());
    assert_eq!(names(&bucket, "private/thumbs/v1").await.len(), 1);
}

#[tokio::test]
async fn pulling_brings_the_bucket_copy_back_and_removing_leaves_nothing() {
    let a = tempfile::tempdir().expect("tmp");
    let b = tempfile::tempdir().expect("tmp");
    let (media, bucket) = store(a.path());
    // A second machine sharing the bucket, not the disk.
    let other = MediaStore::bucket(
        Layout::new(b.path()),
        bucket.objects().clone(),
        SourceAccess::Download,
    );
    let video: VideoId = "v2".parse().expect("id");
    write(a.path(), "hls/v2/master.m3u8", b"#EXTM3U\n");
    write(a.path(), "hls/v2/360p/segment_000.ts", &[3u8; 100]);
    write(a.path(), "keys/v2/360p.key", &[2u8; 16]);
    write(a.path(), "sources/v2", &[5u8; 300]);
    media.store_source(&video).await.expect("source");
    assert!(!a.path().join("sources/v2").exists(), "local copy dropped");
    media.push_video(&video, Phase::Final).await.expect("push");

    other.pull_video(&video).await.expect("pull");
    assert_eq!(
        std::fs::read(b.path().join("keys/v2/360p.key")).expect("key"),
        [2u8; 16]
    );
    assert!(b.path().join("hls/v2/360p/segment_000.ts").is_file());
    let Some(Fetched::File(source)) = other.fetch_source(&video).await.expect("fetch") else {
        panic!("the upload is downloaded");
    };
    assert_eq!(std::fs::read(&source).expect("source"), [5u8; 300]);
    assert!(other.has_source(&video).await.expect("has"));

    other.remove_video(&video).await.expect("remove");
    assert!(names(&bucket, "hls").await.is_empty(), "every object gone");
    assert!(
        names(&bucket, "private").await.is_empty(),
        "every object gone"
    );
    assert!(!b.path().join("hls/v2").exists() && !source.exists());
    assert!(!media.has_source(&video).await.expect("has"));
}

#[tokio::test]
async fn checkpoints_cross_machines_and_large_files_go_in_parts() {
    let a = tempfile::tempdir().expect("tmp");
    let b = tempfile::tempdir().expect("tmp");
    let (media, bucket) = store(a.path());
    let other = MediaStore::bucket(
        Layout::new(b.path()),
        bucket.objects().clone(),
        SourceAccess::Download,
    );
    other.layout().ensure().expect("layout");
    let video: VideoId = "v3".parse().expect("id");
    let work = a.path().join("tmp/v3-0a1b2c");
    write(&work, crate::transcode::resume::MANIFEST, b"{}");
    write(&work, "hls/360p/segment_000.ts", &[1u8; 10]);
    write(&work, "hls/360p/segment_001.ts", &[2u8; 10]);
    write(&work, "hls/360p/segment_003.ts", &[4u8; 10]);
    let rungs = vec!["360p".to_owned(), "720p".to_owned()];
    let mut checkpoint = media
        .checkpoint(&video, &work, &rungs)
        .await
        .expect("start")
        .expect("a bucket checkpoints");
    checkpoint.save().await.expect("save");
    assert_eq!(checkpoint.saved("360p"), 2, "consecutive segments only");
    assert_eq!(checkpoint.saved("720p"), 0);
    assert_eq!(
        checkpoint.resumable(),
        0,
        "the least complete rung bounds a resume"
    );

    // An attempt this encode cannot continue is not downloaded at all.
    let refused = other.restore_attempts(&video, |m| m != b"{}").await;
    assert_eq!(refused.expect("restore"), 0);
    assert!(
        !b.path().join("tmp/v3-0a1b2c").exists(),
        "nothing downloaded"
    );
    let accepted = other.restore_attempts(&video, |m| m == b"{}").await;
    assert_eq!(accepted.expect("restore"), 1);
    let restored = b.path().join("tmp/v3-0a1b2c");
    assert!(restored.join("hls/360p/segment_001.ts").is_file());
    assert!(restored.join(crate::transcode::resume::MANIFEST).is_file());
    assert!(!restored.join("hls/360p/segment_003.ts").exists());

    // Withdrawn: a later machine does not resume from it.
    media.forget_attempt(&video, &work).await.expect("withdraw");
    let c = tempfile::tempdir().expect("tmp");
    let third = MediaStore::bucket(
        Layout::new(c.path()),
        bucket.objects().clone(),
        SourceAccess::Download,
    );
    let withdrawn = third.restore_attempts(&video, |_| true).await;
    assert_eq!(withdrawn.expect("restore"), 0);
    assert!(
        !c.path().join("tmp/v3-0a1b2c").exists(),
        "nothing downloaded"
    );
    media.drop_attempts(&video).await.expect("drop");
    assert!(names(&bucket, "private/work").await.is_empty());

    // 20 MiB: a multipart upload, confirmed by size.
    let big = a.path().join("big");
    std::fs::write(&big, vec![6u8; 20 << 20]).expect("write");
    bucket
        .put_file("private/big", &big)
        .await
        .expect("multipart");
    assert_eq!(
        bucket.list("private").await.expect("list"),
        [("private/big".to_owned(), 20 << 20)]
    );
}

#[tokio::test]
async fn the_data_directory_is_its_own_store() {
    let dir = tempfile::tempdir().expect("tmp");
    let layout = Layout::new(dir.path());
    layout.ensure().expect("layout");
    let media = MediaStore::local(layout);
    let video: VideoId = "v4".parse().expect("id");
    write(dir.path(), "hls/v4/master.m3u8", b"#EXTM3U\n");
    write(dir.path(), "sources/v4", b"source");
    media.push_video(&video, Phase::Final).await.expect("no-op");
    assert!(media.is_published(&video).await.expect("published"));
    assert_eq!(
        media.fetch_source(&video).await.expect("fetch"),
        Some(Fetched::File(dir.path().join("sources/v4")))
    );
    media.remove_video(&video).await.expect("remove");
    assert!(!media.is_published(&video).await.expect("published"));
    assert!(!media.has_source(&video).await.expect("source"));
}

/// An in-memory store that refuses deletes under `hls/` while `refuse_deletes` is set, fails
/// every multipart upload at its second part, recording aborts, with `kms_etags` answers
/// puts with an ETag that looks like an MD5 but is not one (AWS SSE-KMS), and while
/// `break_reads` is set fails every read after its first chunk (a connection reset).
#[derive(Debug, Default)]
struct Faulty {
    inner: Arc<InMemory>,
    refuse_deletes: Arc<std::sync::atomic::AtomicBool>,
    aborted: Arc<std::sync::atomic::AtomicBool>,
    kms_etags: bool,
    break_reads: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Display for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("faulty")
    }
}

fn refused() -> object_store::Error {
    object_store::Error::Generic {
        store: "faulty",
        source: "refused".into(),
    }
}

use shared::objects::object_store::{
    self, path::Path as Key, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, UploadPart,
};

#[async_trait::async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &Key,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let mut put = self.inner.put_opts(location, payload, opts).await?;
        if self.kms_etags {
            put.e_tag = Some("\"0123456789abcdef0123456789abcdef\"".into());
        }
        Ok(put)
    }

    async fn put_multipart_opts(
        &self,
        location: &Key,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FailingUpload {
            inner,
            parts: 0,
            aborted: self.aborted.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Key,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let mut got = self.inner.get_opts(location, options).await?;
        if self.break_reads.load(std::sync::atomic::Ordering::SeqCst) {
            use futures_util::StreamExt;
            let empty = GetResultPayload::Stream(futures_util::stream::empty().boxed());
            let GetResultPayload::Stream(body) = std::mem::replace(&mut got.payload, empty);
            let broken = futures_util::stream::once(async { Err(refused()) });
            got.payload = GetResultPayload::Stream(body.take(1).chain(broken).boxed());
        }
        Ok(got)
    }

    fn delete_stream(
        &self,
        locations: futures_util::stream::BoxStream<'static, object_store::Result<Key>>,
    ) -> futures_util::stream::BoxStream<'static, object_store::Result<Key>> {
        use futures_util::{StreamExt, TryStreamExt};
        let refuse = self.refuse_deletes.clone();
        let inner = self.inner.clone();
        locations
            .and_then(move |key| {
                let (refuse, inner) = (refuse.clone(), inner.clone());
                async move {
                    if refuse.load(std::sync::atomic::Ordering::SeqCst)
                        && key.as_ref().contains("/hls/")
                    {
                        return Err(refused());
                    }
                    inner.delete(&key).await.map(|()| key)
                }
            })
            .boxed()
    }

    fn list(
        &self,
        prefix: Option<&Key>,
    ) -> futures_util::stream::BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Key>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Key,
        to: &Key,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[derive(Debug)]
struct FailingUpload {
    inner: Box<dyn MultipartUpload>,
    parts: usize,
    aborted: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait::async_trait]
impl MultipartUpload for FailingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.parts += 1;
        match self.parts {
            1 => self.inner.put_part(data),
            _ => Box::pin(async { Err(refused()) }),
        }
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.aborted
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.abort().await
    }
}

#[tokio::test]
async fn a_failed_upload_leaves_nothing_and_a_failed_delete_says_what_is_left() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().expect("tmp");
    let faulty = Arc::new(Faulty::default());
    let (refuse, aborted) = (faulty.refuse_deletes.clone(), faulty.aborted.clone());
    let layout = Layout::new(dir.path());
    layout.ensure().expect("layout");
    let media = MediaStore::bucket(
        layout,
        Objects::new(faulty, "prod/", "faulty"),
        SourceAccess::Download,
    );
    let bucket = media.remote().expect("bucket").clone();

    // An upload whose second part fails is aborted: no object, no parts.
    let video: VideoId = "v5".parse().expect("id");
    write(dir.path(), "sources/v5", &vec![1u8; 20 << 20]);
    assert!(media.store_source(&video).await.is_err());
    assert!(
        aborted.load(Ordering::SeqCst),
        "the multipart upload was aborted"
    );
    assert!(
        !media.has_source(&video).await.expect("has"),
        "no object left"
    );

    // A delete the store refuses names what is left; once the store accepts, a retry finishes.
    write(dir.path(), "hls/v5/master.m3u8", b"#EXTM3U\n");
    write(dir.path(), "hls/v5/360p/segment_000.ts", &[1u8; 10]);
    media.push_video(&video, Phase::Final).await.expect("push");
    refuse.store(true, Ordering::SeqCst);
    match media.remove_video(&video).await {
        Err(StorageError::Left { left, .. }) => assert_eq!(left, 2, "master and segment left"),
        other => panic!("expected the objects left, got {other:?}"),
    }
    assert!(
        !media.is_published(&video).await.expect("marker"),
        "the marker went first"
    );
    refuse.store(false, Ordering::SeqCst);
    media.remove_video(&video).await.expect("retried");
    assert!(names(&bucket, "hls").await.is_empty());
}

/// A download the store breaks off leaves neither the file nor its `.part` behind: a partial
/// upload must not be encoded, nor left on the disk of a machine that will not come back to it.
#[tokio::test]
async fn a_download_broken_off_leaves_no_partial_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let faulty = Arc::new(Faulty::default());
    let break_reads = faulty.break_reads.clone();
    let layout = Layout::new(dir.path());
    layout.ensure().expect("layout");
    let objects = Objects::new(faulty, "prod/", "faulty");
    let media = MediaStore::bucket(layout.clone(), objects, SourceAccess::Download);
    let video: VideoId = "v7".parse().expect("id");
    write(dir.path(), "sources/v7", &[7u8; 4096]);
    media.store_source(&video).await.expect("stored");
    assert!(
        !layout.source_file(&video).exists(),
        "only the bucket has it"
    );

    break_reads.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(
        media.fetch_source(&video).await.is_err(),
        "the read broke off"
    );
    let left: Vec<_> = std::fs::read_dir(layout.source_file(&video).parent().expect("dir"))
        .expect("sources")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    break_reads.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(media.fetch_source(&video).await.expect("read").is_some());
    let got = std::fs::read(layout.source_file(&video)).expect("downloaded");
    assert_eq!(got, vec![7u8; 4096]);
}

/// A store whose ETags are not MD5s fails every verified put until it is configured so
/// (`etags_are_md5 = false`); then the size is checked instead and the put goes through.
#[tokio::test]
async fn etags_that_are_not_md5s_fail_puts_unless_configured() {
    let store = Arc::new(Faulty {
        kms_etags: true,
        ..Faulty::default()
    });
    let strict = Bucket::new(Objects::new(store.clone(), "", "kms"));
    let err = strict
        .put_bytes("hls/v/master.m3u8", "#EXTM3U\n".into())
        .await
        .expect_err("the ETag is not the MD5 of what was sent");
    assert!(matches!(err, StorageError::Mismatch { .. }), "{err}");
    let sized = Bucket::new(Objects::new(store, "", "kms").with_md5_etags(false));
    sized
        .put_bytes("hls/v/master.m3u8", "#EXTM3U\n".into())
        .await
        .expect("checked by size");
}

/// `rel` of a finished video at `version`, as `media` reads it.
async fn finished(media: &MediaStore, rel: &str, version: recent::Version) -> Option<Vec<u8>> {
    let read = media.read_finished(rel, version).await.expect("read");
    read.map(|b| b.to_vec())
}

#[tokio::test]
async fn a_finished_videos_playlists_are_read_from_the_bucket_once_per_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (media, bucket) = store(dir.path());
    let master = "hls/v1/master.m3u8";
    let put = |text: &'static str| bucket.put_bytes(master, Bytes::from_static(text.as_bytes()));
    let (one, two) = (b"#EXTM3U\n# one\n".to_vec(), b"#EXTM3U\n# two\n".to_vec());
    put("#EXTM3U\n# one\n").await.expect("put");
    assert_eq!(
        finished(&media, master, (1, 10, 0)).await,
        Some(one.clone())
    );
    // Replaced behind the job's back: the same version still answers from memory...
    put("#EXTM3U\n# two\n").await.expect("put");
    assert_eq!(finished(&media, master, (1, 10, 0)).await, Some(one));
    // ...and a job that changed reads it again.
    assert_eq!(
        finished(&media, master, (1, 11, 0)).await,
        Some(two.clone())
    );
    assert_eq!(
        finished(&media, master, (2, 11, 0)).await,
        Some(two.clone())
    );
    // A revision (a subtitle file added or removed) is a change too.
    put("#EXTM3U\n# three\n").await.expect("put");
    assert_eq!(finished(&media, master, (2, 11, 0)).await, Some(two));
    assert_eq!(
        finished(&media, master, (2, 11, 1)).await,
        Some(b"#EXTM3U\n# three\n".to_vec())
    );
    // Keys live under private/, and a missing object is not remembered.
    let key = "keys/v1/360p.key";
    assert_eq!(finished(&media, key, (1, 10, 0)).await, None);
    bucket
        .put_bytes("private/keys/v1/360p.key", Bytes::from_static(&[7; 16]))
        .await
        .expect("put");
    assert_eq!(finished(&media, key, (1, 10, 0)).await, Some(vec![7; 16]));

    // The data directory is read as it is.
    let local_dir = tempfile::tempdir().expect("tempdir");
    let local = MediaStore::local(Layout::new(local_dir.path()));
    write(local_dir.path(), master, b"one");
    assert_eq!(
        finished(&local, master, (1, 10, 0)).await,
        Some(b"one".to_vec())
    );
    write(local_dir.path(), master, b"two");
    assert_eq!(
        finished(&local, master, (1, 10, 0)).await,
        Some(b"two".to_vec())
    );
}
