//! Every audio and subtitle track of a source, and how they reach the viewer.
//!
//! A source with one audio track keeps the muxed layout players have always been given (audio
//! inside every video rung's segments). With several audio tracks (or `audio_layout =
//! "separate"`) the video rungs carry video only and each audio track becomes one audio
//! rendition (`#EXT-X-MEDIA:TYPE=AUDIO`), encoded once, not once per rung, cut on the same
//! segment grid. Text subtitle tracks, and subtitle files uploaded for the video, become
//! segmented WebVTT renditions (`#EXT-X-MEDIA:TYPE=SUBTITLES`); image subtitles (PGS, DVB) cannot
//! become WebVTT and are reported as skipped.

use serde::{Deserialize, Serialize};

/// One audio track of the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioTrack {
    /// Its position among the source's audio streams (`0:a:N`).
    pub index: usize,
    pub codec: String,
    /// ISO 639-2 code from the track's metadata (`und` when absent).
    pub language: String,
    /// What players show: the track's title, else its language, else "Audio N".
    pub name: String,
}

/// One subtitle track of the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtitleTrack {
    /// Its position among the source's subtitle streams (`0:s:N`).
    pub index: usize,
    pub codec: String,
    pub language: String,
    pub name: String,
}

impl SubtitleTrack {
    /// Text tracks can become WebVTT; image tracks (PGS, DVB, VobSub) cannot.
    pub fn is_text(&self) -> bool {
        matches!(
            self.codec.as_str(),
            "mov_text" | "subrip" | "srt" | "ass" | "ssa" | "webvtt" | "text"
        )
    }
}

/// Where audio goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioLayout {
    /// Muxed into the video rungs when there is one audio track, separate renditions when
    /// there are more.
    #[default]
    Auto,
    /// Always separate audio renditions.
    Separate,
}

impl AudioLayout {
    /// Whether `tracks` go out as separate audio renditions.
    pub fn separate(self, tracks: &[AudioTrack]) -> bool {
        match self {
            AudioLayout::Auto => tracks.len() > 1,
            AudioLayout::Separate => !tracks.is_empty(),
        }
    }
}

/// The directory (and playlist URI prefix) of audio rendition `n`.
pub fn audio_rendition(n: usize) -> String {
    format!("audio_{n}")
}

/// The directory of subtitle rendition `n`.
pub fn subtitle_rendition(n: usize) -> String {
    format!("subs_{n}")
}

/// A language code as HLS `LANGUAGE` wants it (RFC 5646; ISO 639-2 codes are valid ones), or
/// `und`.
pub fn language(tag: Option<&str>) -> String {
    match tag.map(str::trim) {
        Some(l)
            if (2..=8).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            l.to_ascii_lowercase()
        }
        _ => "und".to_owned(),
    }
}

/// Whether `c` may stand in a name written into a playlist's quoted `NAME`. Besides what
/// would end the string or the line, `#` goes: hls.js finds tags such as
/// `#EXT-X-CONTENT-STEERING:` anywhere in a line, not only at its start, so a name could
/// smuggle one in. So do the line and paragraph separators (a line end to JavaScript) and the
/// invisible and direction-changing format characters, which would let a name pass for another.
pub fn fits_a_name(c: char) -> bool {
    !c.is_control()
        && !matches!(
            c,
            '"' | '#'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}'
        )
}

/// A track's display name: its title when it has a printable one, else its language, else
/// `fallback`.
pub fn display_name(title: Option<&str>, language: &str, fallback: String) -> String {
    let title: String = title
        .unwrap_or_default()
        .chars()
        .filter(|c| fits_a_name(*c))
        .take(64)
        .collect();
    if !title.trim().is_empty() {
        return title.trim().to_owned();
    }
    if language != "und" {
        return language_name(language).unwrap_or(language).to_owned();
    }
    fallback
}

/// The English name of a common language code (ISO 639-1, 639-2/T and /B).
fn language_name(code: &str) -> Option<&'static str> {
    const NAMES: &[(&[&str], &str)] = &[
        (&["en", "eng"], "English"),
        (&["fr", "fra", "fre"], "French"),
        (&["de", "deu", "ger"], "German"),
        (&["es", "spa"], "Spanish"),
        (&["it", "ita"], "Italian"),
        (&["pt", "por"], "Portuguese"),
        (&["nl", "nld", "dut"], "Dutch"),
        (&["sv", "swe"], "Swedish"),
        (&["pl", "pol"], "Polish"),
        (&["ru", "rus"], "Russian"),
        (&["tr", "tur"], "Turkish"),
        (&["ar", "ara"], "Arabic"),
        (&["hi", "hin"], "Hindi"),
        (&["ja", "jpn"], "Japanese"),
        (&["ko", "kor"], "Korean"),
        (&["zh", "zho", "chi"], "Chinese"),
    ];
    NAMES
        .iter()
        .find(|(codes, _)| codes.contains(&code))
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audio(n: usize) -> AudioTrack {
        AudioTrack {
            index: n,
            codec: "aac".into(),
            language: "eng".into(),
            name: "English".into(),
        }
    }

    #[test]
    fn layouts() {
        assert!(!AudioLayout::Auto.separate(&[audio(0)]));
        assert!(AudioLayout::Auto.separate(&[audio(0), audio(1)]));
        assert!(AudioLayout::Separate.separate(&[audio(0)]));
        assert!(!AudioLayout::Separate.separate(&[]));
    }

    #[test]
    fn names_and_languages_are_safe_for_a_playlist() {
        assert_eq!(language(Some("fre")), "fre");
        assert_eq!(language(Some("pt-BR")), "pt-br");
        assert_eq!(language(Some("\" evil")), "und");
        assert_eq!(language(None), "und");
        assert_eq!(
            display_name(Some("Director's \"cut\"\n"), "eng", "x".into()),
            "Director's cut"
        );
        assert_eq!(
            display_name(
                Some("#EXT-X-CONTENT-STEERING:SERVER-URI=//e.vu/s\u{2028}#EXT-X-MEDIA:\u{202E}"),
                "eng",
                "x".into()
            ),
            "EXT-X-CONTENT-STEERING:SERVER-URI=//e.vu/sEXT-X-MEDIA:"
        );
        assert_eq!(display_name(None, "fra", "Audio 2".into()), "French");
        assert_eq!(display_name(None, "tlh", "Audio 2".into()), "tlh");
        assert_eq!(display_name(Some("  "), "und", "Audio 2".into()), "Audio 2");
        let image = SubtitleTrack {
            index: 0,
            codec: "hdmv_pgs_subtitle".into(),
            language: "eng".into(),
            name: "English".into(),
        };
        assert!(!image.is_text());
    }
}
