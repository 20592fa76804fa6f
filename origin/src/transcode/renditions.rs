//! What one job publishes, and its master playlist.
//!
//! The encode writes one directory per output: every video rung, and with separate audio one
//! `audio_N` rendition per audio track. Verification, encryption and publishing walk all of
//! them alike ([`Outputs::all`]); only the master tells them apart: video rungs are variants,
//! audio renditions and subtitle renditions are `#EXT-X-MEDIA` lines the variants refer to.

use super::encrypt::Rates;
use super::ffmpeg::VARIANT;
use super::ladder::Rung;
use super::playlist::{self, Media, Variant};
use super::tracks::{audio_rendition, AudioTrack};

/// The outputs of one encode.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// The video rungs, largest first (with the source's audio muxed in, unless `audio`).
    pub video: Vec<Rung>,
    /// One rendition per audio track when audio is separate; empty when it is muxed.
    pub audio: Vec<AudioTrack>,
    /// The audio bit rate of the renditions, kbit/s.
    pub audio_kbps: u32,
}

impl Outputs {
    /// Video rungs with the first audio track muxed in (or no audio at all).
    pub fn muxed(video: Vec<Rung>) -> Self {
        Self {
            video,
            audio: Vec::new(),
            audio_kbps: 0,
        }
    }

    /// Video-only rungs and one rendition per audio track, at the best rung's audio rate.
    pub fn separate(video: Vec<Rung>, audio: Vec<AudioTrack>) -> Self {
        let audio_kbps = video.iter().map(|r| r.audio_kbps).max().unwrap_or(128);
        Self {
            video,
            audio,
            audio_kbps,
        }
    }

    /// Every output directory, video rungs first: audio renditions appear as rungs without a
    /// picture (`0x0`) so that verification, encryption and publishing treat them alike.
    pub fn all(&self) -> Vec<Rung> {
        let mut all = self.video.clone();
        all.extend((0..self.audio.len()).map(|n| Rung {
            name: audio_rendition(n),
            width: 0,
            height: 0,
            video_kbps: 0,
            maxrate_kbps: 0,
            bufsize_kbps: 0,
            audio_kbps: self.audio_kbps,
        }));
        all
    }

    /// Each output's bit rates from the configuration (before anything is measured): video
    /// rungs at their VBV peak and target (plus muxed audio), audio renditions at their rate.
    pub fn configured_rates(&self) -> Vec<Rates> {
        let muxed_audio = |r: &Rung| {
            if self.audio.is_empty() {
                r.audio_kbps
            } else {
                0
            }
        };
        let mut rates: Vec<Rates> = self
            .video
            .iter()
            .map(|r| Rates {
                peak: u64::from(r.maxrate_kbps + muxed_audio(r)) * 1000,
                average: u64::from(r.video_kbps + muxed_audio(r)) * 1000,
            })
            .collect();
        rates.extend(self.audio.iter().map(|_| Rates {
            peak: u64::from(self.audio_kbps) * 1000,
            average: u64::from(self.audio_kbps) * 1000,
        }));
        rates
    }

    /// The master playlist, given each output's rates and `CODECS` (in [`Self::all`]'s order)
    /// and the published subtitle renditions. A variant's bandwidth includes the loudest audio
    /// rendition it may be played with (RFC 8216 §4.3.4.2).
    pub fn master(
        &self,
        rates: &[Rates],
        codecs: &[String],
        fps: f64,
        subtitles: &[Media],
    ) -> String {
        let n = self.video.len();
        let audio_rates = rates.get(n..).unwrap_or_default();
        let audio_peak = audio_rates.iter().map(|r| r.peak).max().unwrap_or(0);
        let audio_average = audio_rates.iter().map(|r| r.average).max().unwrap_or(0);
        let audio_codec = codecs.get(n).filter(|_| !self.audio.is_empty());
        let variants: Vec<Variant> = self
            .video
            .iter()
            .zip(rates)
            .zip(codecs)
            .map(|((rung, rates), codecs)| Variant {
                uri: format!("{}/{VARIANT}", rung.name),
                bandwidth: rates.peak + audio_peak,
                average_bandwidth: rates.average + audio_average,
                width: rung.width,
                height: rung.height,
                codecs: match audio_codec {
                    Some(a) if !a.is_empty() => format!("{codecs},{a}"),
                    _ => codecs.clone(),
                },
                frame_rate: fps,
            })
            .collect();
        let audio: Vec<Media> = self
            .audio
            .iter()
            .enumerate()
            .map(|(n, t)| Media {
                uri: format!("{}/{VARIANT}", audio_rendition(n)),
                name: t.name.clone(),
                language: t.language.clone(),
            })
            .collect();
        playlist::master(&variants, &audio, subtitles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcode::ladder::{default_ladder, select};

    fn track(n: usize, language: &str) -> AudioTrack {
        AudioTrack {
            index: n,
            codec: "ac3".into(),
            language: language.into(),
            name: language.into(),
        }
    }

    #[test]
    fn separate_audio_renditions_are_media_of_every_variant() {
        let video = select(&default_ladder(), 1280, 720)[..2].to_vec();
        let outputs = Outputs::separate(video, vec![track(0, "eng"), track(2, "fra")]);
        let all = outputs.all();
        assert_eq!(
            all.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["720p", "480p", "audio_0", "audio_1"]
        );
        assert_eq!(outputs.audio_kbps, 96);
        let rates = outputs.configured_rates();
        assert_eq!(rates[0].peak, 3_300_000, "video only: the VBV peak");
        assert_eq!(rates[2].peak, 96_000);
        let codecs: Vec<String> = ["avc1.64001f", "avc1.64001e", "mp4a.40.2", "mp4a.40.2"]
            .map(String::from)
            .to_vec();
        let m = outputs.master(&rates, &codecs, 25.0, &[]);
        assert!(m.contains("BANDWIDTH=3396000,AVERAGE-BANDWIDTH=3096000,RESOLUTION=1280x720,CODECS=\"avc1.64001f,mp4a.40.2\""), "{m}");
        assert!(m.contains("URI=\"audio_1/index.m3u8\""), "{m}");
        assert_eq!(
            m.matches("#EXT-X-STREAM-INF").count(),
            2,
            "audio renditions are not variants"
        );
        assert_eq!(m.matches("AUDIO=\"audio\"").count(), 2);
        // Muxed: no renditions, the rung's own audio in its rates and codecs.
        let muxed = Outputs::muxed(select(&default_ladder(), 1280, 720)[..1].to_vec());
        assert_eq!(muxed.configured_rates()[0].peak, 3_396_000);
        let m = muxed.master(
            &muxed.configured_rates(),
            &["avc1.64001f,mp4a.40.2".into()],
            25.0,
            &[],
        );
        assert!(!m.contains("EXT-X-MEDIA") && m.contains("CODECS=\"avc1.64001f,mp4a.40.2\""));
    }
}
