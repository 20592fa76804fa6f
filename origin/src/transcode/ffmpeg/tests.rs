//! Golden tests: the exact command lines for both encoders.

use super::*;
use crate::transcode::ladder::{default_ladder, select};
use crate::transcode::tracks::AudioTrack;

fn input() -> Source<'static> {
    Source::File(Path::new("/in.mp4"))
}

fn source(audio: bool) -> SourceInfo {
    SourceInfo {
        duration: 60.0,
        width: 1920,
        height: 1080,
        rotation: 0,
        fps: 30.0,
        video_codec: "h264".into(),
        format: "mov,mp4".into(),
        streams: 2,
        audio: audio
            .then(|| AudioTrack {
                index: 0,
                codec: "aac".into(),
                language: "und".into(),
                name: "Audio 1".into(),
            })
            .into_iter()
            .collect(),
        subtitles: Vec::new(),
    }
}

fn line(args: &[OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn x264_ladder_golden() {
    let src = source(true);
    let rungs = select(&default_ladder(), 1920, 1080)[..2].to_vec();
    let enc = Encoder::X264 {
        preset: "veryfast".into(),
    };
    let plan = EncodePlan {
        source: &src,
        rungs: &rungs,
        encoder: &enc,
        segment_secs: 6,
        storyboard: None,
        resume: None,
        separate_audio: false,
    };
    let got = line(&ladder_args(&plan, input(), Path::new("/tmp/j")));
    let want = "-hide_banner -nostdin -y -loglevel error -nostats -progress pipe:1 -format_whitelist mov,matroska,avi,mpegts,flv,mpeg,asf,ogg -protocol_whitelist file -i /in.mp4 \
        -filter_complex [0:v]split=2[s0][s1];[s0]scale=1920:1080,format=yuv420p[v0];[s1]scale=1280:720,format=yuv420p[v1] \
        -map [v0] -map 0:a:0 -map [v1] -map 0:a:0 \
        -c:v libx264 -preset veryfast -profile:v high -sc_threshold 0 -g 180 -keyint_min 180 \
        -force_key_frames expr:gte(t,n_forced*6) \
        -b:v:0 5000k -maxrate:v:0 5500k -bufsize:v:0 10000k -b:v:1 3000k -maxrate:v:1 3300k -bufsize:v:1 6000k \
        -c:a aac -ac 2 -b:a:0 128k -b:a:1 96k \
        -output_ts_offset 1.400 -hls_ts_options mpegts_copyts=1 \
        -f hls -hls_time 6 -hls_playlist_type event -hls_flags independent_segments+temp_file -hls_segment_type mpegts \
        -hls_segment_filename /tmp/j/%v/segment_%03d.ts -master_pl_name master.m3u8 \
        -var_stream_map v:0,a:0,name:1080p v:1,a:1,name:720p /tmp/j/%v/index.m3u8";
    assert_eq!(got, want.split_whitespace().collect::<Vec<_>>().join(" "));
}

#[test]
fn nvenc_full_gpu_golden_without_audio() {
    let src = source(false);
    let rungs = select(&default_ladder(), 1920, 1080)[1..3].to_vec();
    let enc = Encoder::Nvenc {
        preset: "p4".into(),
        full_gpu: true,
    };
    let pattern = Path::new("/tmp/j/sb_%02d.jpg");
    let sb = Storyboard {
        interval: 2.0,
        tile_width: 160,
        cols: 10,
        rows: 10,
        pattern,
    };
    let plan = EncodePlan {
        source: &src,
        rungs: &rungs,
        encoder: &enc,
        segment_secs: 4,
        storyboard: Some(sb),
        resume: None,
        separate_audio: false,
    };
    let got = line(&ladder_args(&plan, input(), Path::new("/tmp/j")));
    let want = "-hide_banner -nostdin -y -loglevel error -nostats -progress pipe:1 \
        -hwaccel cuda -hwaccel_output_format cuda -format_whitelist mov,matroska,avi,mpegts,flv,mpeg,asf,ogg -protocol_whitelist file -i /in.mp4 \
        -filter_complex [0:v]split=3[s0][s1][s2];[s2]hwdownload,format=nv12,fps=1/2,scale=160:-2[sb];[s0]scale_cuda=1280:720[v0];[s1]scale_cuda=852:480[v1] \
        -map [v0] -map [v1] \
        -c:v h264_nvenc -preset p4 -profile:v high -rc vbr -forced-idr 1 -no-scenecut 1 -g 120 -keyint_min 120 \
        -force_key_frames expr:gte(t,n_forced*4) \
        -b:v:0 3000k -maxrate:v:0 3300k -bufsize:v:0 6000k -b:v:1 1500k -maxrate:v:1 1650k -bufsize:v:1 3000k \
        -output_ts_offset 1.400 -hls_ts_options mpegts_copyts=1 \
        -f hls -hls_time 4 -hls_playlist_type event -hls_flags independent_segments+temp_file -hls_segment_type mpegts \
        -hls_segment_filename /tmp/j/%v/segment_%03d.ts -master_pl_name master.m3u8 \
        -var_stream_map v:0,name:720p v:1,name:480p /tmp/j/%v/index.m3u8 \
        -map [sb] -q:v 5 -fps_mode passthrough /tmp/j/sb_%02d.jpg";
    assert_eq!(got, want.split_whitespace().collect::<Vec<_>>().join(" "));
}

#[test]
fn nvenc_rotated_scales_on_cpu() {
    let mut src = source(true);
    src.rotation = 90;
    let rungs = select(&default_ladder(), 1080, 1920)[..1].to_vec();
    let enc = Encoder::Nvenc {
        preset: "p4".into(),
        full_gpu: false,
    };
    let plan = EncodePlan {
        source: &src,
        rungs: &rungs,
        encoder: &enc,
        segment_secs: 6,
        storyboard: None,
        resume: None,
        separate_audio: false,
    };
    let got = line(&ladder_args(&plan, input(), Path::new("/t")));
    assert!(!got.contains("-hwaccel"), "{got}");
    assert!(
        got.contains("[s0]scale=1080:1920,format=yuv420p[v0]"),
        "{got}"
    );
    assert!(got.contains("-c:v h264_nvenc"), "{got}");
}

#[test]
fn passthrough_golden() {
    let src = source(true);
    assert!(can_passthrough(&src));
    let got = line(&passthrough_args(
        &src,
        6,
        input(),
        Path::new("/t"),
        "source",
        false,
    ));
    let want = "-hide_banner -nostdin -y -loglevel error -nostats -progress pipe:1 -format_whitelist mov,matroska,avi,mpegts,flv,mpeg,asf,ogg -protocol_whitelist file -i /in.mp4 \
        -map 0:v:0 -map 0:a:0 -c copy \
        -f hls -hls_time 6 -hls_playlist_type event -hls_flags independent_segments+temp_file -hls_segment_type mpegts \
        -hls_segment_filename /t/source/segment_%03d.ts /t/source/index.m3u8";
    assert_eq!(got, want.split_whitespace().collect::<Vec<_>>().join(" "));
    let mut hevc = src.clone();
    hevc.video_codec = "hevc".into();
    assert!(!can_passthrough(&hevc));
}

#[test]
fn thumbnails_golden() {
    let got = line(&poster_args(input(), 1.0, 640, Path::new("/t/poster.jpg")));
    assert_eq!(got, "-hide_banner -nostdin -y -loglevel error -nostats -progress pipe:1 -ss 1.000 -format_whitelist mov,matroska,avi,mpegts,flv,mpeg,asf,ogg -protocol_whitelist file -i /in.mp4 -frames:v 1 -vf scale=640:-2 -q:v 3 /t/poster.jpg");
    let sb = Storyboard {
        interval: 2.0,
        tile_width: 160,
        cols: 10,
        rows: 10,
        pattern: Path::new("/t/sb_%02d.jpg"),
    };
    let got = line(&storyboard_args(input(), &sb));
    assert_eq!(
        got,
        "-hide_banner -nostdin -y -loglevel error -nostats -progress pipe:1 -format_whitelist mov,matroska,avi,mpegts,flv,mpeg,asf,ogg -protocol_whitelist file -i /in.mp4 -vf fps=1/2,scale=160:-2 -q:v 5 -fps_mode passthrough /t/sb_%02d.jpg"
    );
}

/// The libx264 `veryfast` command for the first `rungs` rungs of a 1080p source, 6 s
/// segments, resumed at segment 4 (24 s) with each rung's audio cut at `audio_from`.
fn resumed_x264(audio: bool, rungs: usize, audio_from: Vec<f64>, out: &str) -> String {
    let src = source(audio);
    let rungs = select(&default_ladder(), 1920, 1080)[..rungs].to_vec();
    let enc = Encoder::X264 {
        preset: "veryfast".into(),
    };
    let resume = Resume {
        segment: 4,
        seconds: 24.0,
        audio_from,
    };
    let plan = EncodePlan {
        source: &src,
        rungs: &rungs,
        encoder: &enc,
        segment_secs: 6,
        storyboard: None,
        resume: Some(&resume),
        separate_audio: false,
    };
    line(&ladder_args(&plan, input(), Path::new(out)))
}

#[test]
fn resumed_ladder_seeks_and_continues_numbering_without_audio() {
    let got = resumed_x264(false, 1, vec![24.0], "/t");
    assert!(
        got.contains("-progress pipe:1 -ss 24.000 -format_whitelist mov,matroska,avi,mpegts,flv,mpeg,asf,ogg -protocol_whitelist file -i /in.mp4 -filter_complex"),
        "{got}"
    );
    assert!(
        got.contains(
            "-output_ts_offset 25.400 \
             -hls_ts_options mpegts_copyts=1:mpegts_flags=+initial_discontinuity \
             -start_number 4 -f hls"
        ),
        "{got}"
    );
    assert!(!got.contains("atrim") && !got.contains("-bsf"), "{got}");
}

/// The audio of each rung starts where its reused audio ended (here 74.7 ms before the video's
/// cut in one rung, 10.7 ms after it in the other), read from a second input seeked a second
/// earlier, with the AAC priming packet dropped.
#[test]
fn resumed_ladder_golden_with_audio() {
    let got = resumed_x264(true, 2, vec![23.925333, 24.010667], "/tmp/j");
    let want = "-hide_banner -nostdin -y -loglevel error -nostats -progress pipe:1 \
        -ss 24.000 -format_whitelist mov,matroska,avi,mpegts,flv,mpeg,asf,ogg -protocol_whitelist file -i /in.mp4 -noaccurate_seek -ss 22.000 -itsoffset -2.000 -format_whitelist mov,matroska,avi,mpegts,flv,mpeg,asf,ogg -protocol_whitelist file -i /in.mp4 \
        -filter_complex [0:v]split=2[s0][s1];[s0]scale=1920:1080,format=yuv420p[v0];[s1]scale=1280:720,format=yuv420p[v1] \
        -map [v0] -map 1:a:0 -map [v1] -map 1:a:0 \
        -c:v libx264 -preset veryfast -profile:v high -sc_threshold 0 -g 180 -keyint_min 180 \
        -force_key_frames expr:gte(t,n_forced*6) \
        -b:v:0 5000k -maxrate:v:0 5500k -bufsize:v:0 10000k -b:v:1 3000k -maxrate:v:1 3300k -bufsize:v:1 6000k \
        -c:a aac -ac 2 -b:a:0 128k -b:a:1 96k \
        -filter:a:0 atrim=start=-0.074667 -filter:a:1 atrim=start=0.010667 -bsf:a noise=drop=not(n) \
        -output_ts_offset 25.400 -hls_ts_options mpegts_copyts=1:mpegts_flags=+initial_discontinuity \
        -start_number 4 \
        -f hls -hls_time 6 -hls_playlist_type event -hls_flags independent_segments+temp_file -hls_segment_type mpegts \
        -hls_segment_filename /tmp/j/%v/segment_%03d.ts -master_pl_name master.m3u8 \
        -var_stream_map v:0,a:0,name:1080p v:1,a:1,name:720p /tmp/j/%v/index.m3u8";
    assert_eq!(got, want.split_whitespace().collect::<Vec<_>>().join(" "));
}

#[test]
fn storyboard_tiling_golden() {
    let sb = Storyboard {
        interval: 2.0,
        tile_width: 160,
        cols: 10,
        rows: 10,
        pattern: Path::new("/t/frames/sb_%04d.jpg"),
    };
    let got = line(&tile_args(&sb, Path::new("/t/thumbs/storyboard_%02d.jpg")));
    assert_eq!(
        got,
        "-hide_banner -nostdin -y -loglevel error -nostats -progress pipe:1 -f image2 -framerate 1 \
         -i /t/frames/sb_%04d.jpg -vf tile=10x10 -q:v 5 -fps_mode passthrough /t/thumbs/storyboard_%02d.jpg"
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    );
}
