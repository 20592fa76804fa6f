use std::time::Duration;

use http_body::Body as _;
use http_body_util::BodyExt;

use super::*;
use crate::server::h2::activity::Activity;

async fn next_frame(body: &mut EdgeBody) -> Bytes {
    let frame = body.frame().await.expect("a frame").expect("no error");
    frame.into_data().expect("data")
}

/// The body's next chunk, as the frames it is given out in, each within one TLS record.
async fn piece(body: &mut EdgeBody) -> Vec<Bytes> {
    let mut frames = vec![next_frame(body).await];
    while !body.rest.is_empty() {
        frames.push(next_frame(body).await);
    }
    assert!(frames.iter().all(|f| f.len() <= FRAME_PAYLOAD));
    frames
}

fn total(frames: &[Bytes]) -> usize {
    frames.iter().map(Bytes::len).sum()
}

fn upstream(chunks: Vec<Bytes>, budget: &Budget) -> EdgeBody {
    let len = chunks.iter().map(|c| c.len() as u64).sum();
    let stream = futures_util::stream::iter(chunks.into_iter().map(Ok));
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let stream_guard = Activity::new().open_stream();
    EdgeBody::stream(Box::pin(stream), len, budget.clone(), metrics, stream_guard)
}

/// A connection's budget within an edge's that is not the limit.
fn connection_budget() -> Budget {
    Budget::for_connection(&Arc::new(Semaphore::new(EDGE_BUDGET)))
}

/// Connections that never read hold at most the edge's budget together (and their floors):
/// past it, another connection's chunk larger than its floor waits until bytes held are sent
/// (or dropped with their connection).
#[tokio::test]
async fn connections_together_hold_at_most_the_edge_budget() {
    let edge = Arc::new(Semaphore::new(300 * 1024));
    let (a, b) = (Budget::for_connection(&edge), Budget::for_connection(&edge));
    let chunk = Bytes::from(vec![7u8; 200 * 1024]);
    let mut first = upstream(vec![chunk.clone()], &a);
    let mut second = upstream(vec![chunk], &b);
    let held = piece(&mut first).await;
    assert_eq!(edge.available_permits(), 100 * 1024);
    let waiting = tokio::time::timeout(Duration::from_millis(50), piece(&mut second)).await;
    assert!(
        waiting.is_err(),
        "a second connection went past the edge's budget"
    );
    drop(held);
    assert_eq!(total(&piece(&mut second).await), 200 * 1024);
}

/// Connections that never read may spend the edge's budget together, but cannot stop another
/// connection: it still sends a file, a chunk at a time, on its floor.
#[tokio::test]
async fn a_connection_sends_on_its_floor_when_the_edge_budget_is_spent() {
    use std::io::Write as _;
    let spent = Arc::new(Semaphore::new(0));
    let budget = Budget::for_connection(&spent);
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut file = tempfile::tempfile().expect("tempfile");
    file.write_all(&data).expect("write");
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let guard = Activity::new().open_stream();
    let len = data.len() as u64;
    let mut body = EdgeBody::file(Arc::new(file), 0, len, budget.clone(), metrics, guard);
    let mut first = Vec::new();
    for _ in 0..CONNECTION_FLOOR / CHUNK {
        let chunk = tokio::time::timeout(Duration::from_secs(5), piece(&mut body)).await;
        first.extend(chunk.expect("no chunk while the edge's budget is spent"));
    }
    assert_eq!(
        budget.floor.available_permits(),
        CONNECTION_FLOOR - total(&first)
    );
    let waiting = tokio::time::timeout(Duration::from_millis(50), piece(&mut body)).await;
    assert!(waiting.is_err(), "a chunk went past the floor");
    let mut sent = first.concat();
    drop(first);
    while sent.len() < data.len() {
        sent.extend(piece(&mut body).await.concat());
    }
    assert_eq!(sent, data);
    assert_eq!(budget.floor.available_permits(), CONNECTION_FLOOR);
    assert_eq!(spent.available_permits(), 0, "nothing came from the edge");
}

/// A body pulled through a fill sends on the floor too, a fill's chunk at a time.
#[tokio::test]
async fn a_pulled_body_sends_on_its_floor_when_the_edge_budget_is_spent() {
    let spent = Arc::new(Semaphore::new(0));
    let budget = Budget::for_connection(&spent);
    let chunk = Bytes::from(vec![3u8; STREAM_RESERVE]);
    let mut body = upstream(vec![chunk; 3], &budget);
    let first = tokio::time::timeout(Duration::from_secs(5), piece(&mut body))
        .await
        .expect("no chunk while the edge's budget is spent");
    assert_eq!(total(&first), STREAM_RESERVE);
    let waiting = tokio::time::timeout(Duration::from_millis(50), piece(&mut body)).await;
    assert!(waiting.is_err(), "a chunk went past the floor");
    drop(first);
    for _ in 0..2 {
        assert_eq!(total(&piece(&mut body).await), STREAM_RESERVE);
    }
    assert_eq!(spent.available_permits(), 0, "nothing came from the edge");
}

/// A client that does not read holds at most the connection's budget of upstream bytes:
/// every chunk holds as much budget as it has bytes, and the next one waits until an
/// earlier one is freed.
#[tokio::test]
async fn upstream_chunks_wait_for_the_connection_budget() {
    let size = 200 * 1024;
    let chunk = Bytes::from(vec![7u8; size]);
    let budget = connection_budget();
    let mut body = upstream(vec![chunk; 6], &budget);
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(piece(&mut body).await);
    }
    assert_eq!(
        budget.connection.available_permits(),
        CONNECTION_BUDGET - 5 * size
    );
    let waiting = tokio::time::timeout(Duration::from_millis(50), piece(&mut body)).await;
    assert!(waiting.is_err(), "a sixth chunk went past the budget");
    held.pop();
    assert_eq!(total(&piece(&mut body).await), size);
    assert!(body.is_end_stream());
    held.clear();
    assert_eq!(budget.connection.available_permits(), CONNECTION_BUDGET);
}

/// A chunk larger than a quarter of the budget is charged a quarter: it must not wait for
/// the whole budget, and every other stream behind it.
#[tokio::test]
async fn an_oversized_chunk_is_charged_a_quarter_of_the_budget() {
    let budget = connection_budget();
    let mut body = upstream(vec![Bytes::from(vec![1u8; 600 * 1024])], &budget);
    let big = piece(&mut body).await;
    assert_eq!(total(&big), 600 * 1024);
    assert_eq!(
        budget.connection.available_permits(),
        CONNECTION_BUDGET - MAX_CHARGE
    );
    drop(big);
    assert_eq!(budget.connection.available_permits(), CONNECTION_BUDGET);
}

/// A stream whose upstream has nothing yet holds no budget.
#[tokio::test]
async fn a_stream_waiting_on_the_upstream_holds_no_budget() {
    let budget = connection_budget();
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let never = futures_util::stream::pending::<io::Result<Bytes>>();
    let guard = Activity::new().open_stream();
    let mut body = EdgeBody::stream(Box::pin(never), 10, budget.clone(), metrics, guard);
    let waiting = tokio::time::timeout(Duration::from_millis(20), piece(&mut body)).await;
    assert!(waiting.is_err());
    assert_eq!(budget.connection.available_permits(), CONNECTION_BUDGET);
}

/// Frame and header fill one TLS record: a body goes out in frames of exactly
/// [`FRAME_PAYLOAD`] bytes but the last, sharing the body's memory.
#[tokio::test]
async fn bodies_leave_in_frames_that_fill_tls_records() {
    assert_eq!(FRAME_PAYLOAD + 9, 16_384);
    let data = Bytes::from((0..100_000u32).map(|i| i as u8).collect::<Vec<_>>());
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let guard = Activity::new().open_stream();
    let mut body = EdgeBody::bytes(data.clone(), SendPath::Cache, metrics, guard);
    let mut frames = Vec::new();
    while !body.is_end_stream() {
        assert_eq!(
            body.size_hint().exact(),
            Some((data.len() - total(&frames)) as u64)
        );
        frames.push(next_frame(&mut body).await);
    }
    let sizes: Vec<usize> = frames.iter().map(Bytes::len).collect();
    assert_eq!(
        sizes,
        [16_375, 16_375, 16_375, 16_375, 16_375, 16_375, 1_750]
    );
    assert_eq!(frames.concat(), data.to_vec());
    assert_eq!(frames[1].as_ptr(), data[16_375..].as_ptr(), "no copy");
    assert!(body.frame().await.is_none());
}
