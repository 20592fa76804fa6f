//! The adaptive-bitrate ladder: which renditions a source gets. Never upscales.

use serde::{Deserialize, Serialize};

/// A configured rung, named by its short side (`720p` is 1280x720 landscape or 720x1280
/// portrait).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RungSpec {
    /// Directory and variant name, e.g. `720p`.
    pub name: String,
    /// Short side in pixels.
    pub short_side: u32,
    /// Target video bitrate, kbit/s.
    pub video_kbps: u32,
    /// Audio bitrate, kbit/s (ignored for sources without audio).
    pub audio_kbps: u32,
}

/// Whether `name` can name a rung: its directory, and the `{rung}` of playback URLs.
pub fn is_rung_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What is wrong with a configured rung, if anything.
pub fn rung_problem(rung: &RungSpec) -> Option<String> {
    let name = &rung.name;
    if !is_rung_name(name) {
        Some(format!(
            "the name {name:?} must be 1-32 letters, digits, '_' or '-' (it names a directory \
             and a URL)"
        ))
    } else if name.starts_with("audio_") || name.starts_with("subs_") {
        Some(format!(
            "the name {name:?} starts like an audio or subtitle rendition's"
        ))
    } else if rung.short_side < 2 {
        Some("short_side must be at least 2".into())
    } else if rung.video_kbps == 0 {
        Some("video_kbps must be at least 1".into())
    } else {
        None
    }
}

/// The default ladder (seeds 000 and 003).
pub fn default_ladder() -> Vec<RungSpec> {
    [
        ("2160p", 2160, 12000, 192),
        ("1440p", 1440, 8000, 160),
        ("1080p", 1080, 5000, 128),
        ("720p", 720, 3000, 96),
        ("480p", 480, 1500, 96),
        ("360p", 360, 800, 64),
        ("240p", 240, 400, 64),
    ]
    .into_iter()
    .map(|(name, short_side, video_kbps, audio_kbps)| RungSpec {
        name: name.into(),
        short_side,
        video_kbps,
        audio_kbps,
    })
    .collect()
}

/// A rung chosen for one source: output size and rate control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rung {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub video_kbps: u32,
    /// Peak rate allowed by the encoder's VBV (`-maxrate`).
    pub maxrate_kbps: u32,
    /// VBV buffer (`-bufsize`).
    pub bufsize_kbps: u32,
    pub audio_kbps: u32,
}

/// Rungs for a source displayed at `width`x`height`, largest first.
///
/// Rungs are compared on the short side, so portrait and rotated sources get the same ladder
/// as landscape ones; a rung above the source is dropped (never upscale); a source smaller than
/// the smallest rung gets one rung at its own size with the smallest rung's rates.
pub fn select(specs: &[RungSpec], width: u32, height: u32) -> Vec<Rung> {
    let (short, long) = (width.min(height), width.max(height));
    let mut chosen: Vec<&RungSpec> = specs.iter().filter(|s| s.short_side <= short).collect();
    chosen.sort_by_key(|s| std::cmp::Reverse(s.short_side));
    chosen.dedup_by_key(|s| s.short_side);
    let rung = |spec: &RungSpec, target_short: u32| {
        let target_long = scale_even(long, target_short, short);
        let target_short = even(target_short);
        let (w, h) = if width >= height {
            (target_long, target_short)
        } else {
            (target_short, target_long)
        };
        Rung {
            name: spec.name.clone(),
            width: w,
            height: h,
            video_kbps: spec.video_kbps,
            maxrate_kbps: spec.video_kbps + spec.video_kbps / 10,
            bufsize_kbps: spec.video_kbps * 2,
            audio_kbps: spec.audio_kbps,
        }
    };
    if chosen.is_empty() {
        let Some(smallest) = specs.iter().min_by_key(|s| s.short_side) else {
            return Vec::new();
        };
        let mut only = rung(smallest, short);
        only.name = format!("{}p", even(short));
        return vec![only];
    }
    chosen.into_iter().map(|s| rung(s, s.short_side)).collect()
}

/// Whether a source between two rungs gets a rung at its own size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SourceRung {
    /// When its short side is more than `margin` (a fraction) above the rung below it.
    Auto { margin: f64 },
    /// Only configured rungs.
    Never,
}

/// [`select`], plus a rung at the source's own size when `policy` asks for it: a 852x478
/// export (a "480p" a few pixels short) would otherwise top out at 360p, and the viewer on a
/// large screen would never see what was uploaded. Its rates are interpolated on the short side
/// between the rungs below and above it; it is never above the source (it is the source's size)
/// and only exists between two configured rungs.
pub fn select_with_source(
    specs: &[RungSpec],
    width: u32,
    height: u32,
    policy: SourceRung,
) -> Vec<Rung> {
    let mut rungs = select(specs, width, height);
    let SourceRung::Auto { margin } = policy else {
        return rungs;
    };
    let short = width.min(height);
    let below = specs
        .iter()
        .filter(|s| s.short_side <= short)
        .max_by_key(|s| s.short_side);
    let above = specs
        .iter()
        .filter(|s| s.short_side > short)
        .min_by_key(|s| s.short_side);
    let (Some(below), Some(above)) = (below, above) else {
        return rungs;
    };
    // Compared as encoded (even): a rung as tall as a configured one would share its name and
    // its output directory.
    if even(short) <= below.short_side
        || f64::from(short) <= f64::from(below.short_side) * (1.0 + margin)
    {
        return rungs;
    }
    let at = f64::from(short - below.short_side) / f64::from(above.short_side - below.short_side);
    let lerp = |a: u32, b: u32| (f64::from(a) + at * (f64::from(b) - f64::from(a))).round() as u32;
    let video_kbps = lerp(below.video_kbps, above.video_kbps);
    rungs.insert(
        0,
        Rung {
            name: format!("{}p", even(short)),
            width: even(width),
            height: even(height),
            video_kbps,
            maxrate_kbps: video_kbps + video_kbps / 10,
            bufsize_kbps: video_kbps * 2,
            audio_kbps: lerp(below.audio_kbps, above.audio_kbps),
        },
    );
    rungs
}

/// `long * target / short`, rounded to the nearest even number (encoders need even sizes).
fn scale_even(long: u32, target: u32, short: u32) -> u32 {
    let exact = u64::from(long) * u64::from(target) / u64::from(short.max(1));
    even(exact as u32)
}

fn even(v: u32) -> u32 {
    (v.max(2) / 2) * 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(r: &[Rung]) -> Vec<&str> {
        r.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn sources_between_rungs_get_their_own_size() {
        let auto = SourceRung::Auto { margin: 0.10 };
        let ladder = default_ladder();
        // A "480p" export a few pixels short: 852x478 on top, not 360p.
        let r = select_with_source(&ladder, 852, 478, auto);
        assert_eq!(names(&r), ["478p", "360p", "240p"]);
        assert_eq!((r[0].width, r[0].height), (852, 478));
        assert_eq!(r[0].video_kbps, 1488, "800 + 118/120 of the way to 1500");
        assert_eq!(r[0].maxrate_kbps, 1636);
        // Cinema crop: 1920x800 between 720p and 1080p.
        let r = select_with_source(&ladder, 1920, 800, auto);
        assert_eq!(names(&r)[..2], ["800p", "720p"]);
        assert_eq!((r[0].width, r[0].height), (1920, 800));
        assert_eq!(r[0].video_kbps, 3444);
        // 4:3 at exactly a rung's height: that rung already is the source's size.
        let r = select_with_source(&ladder, 1440, 1080, auto);
        assert_eq!(names(&r)[0], "1080p");
        assert_eq!((r[0].width, r[0].height), (1440, 1080));
        assert_eq!(r.len(), select(&ladder, 1440, 1080).len());
        // Within the margin of the rung below, or policy off: nothing added.
        assert_eq!(
            names(&select_with_source(&ladder, 1280, 760, auto))[0],
            "720p"
        );
        assert_eq!(
            names(&select_with_source(&ladder, 852, 478, SourceRung::Never))[0],
            "360p"
        );
        // Above the largest rung there is nothing to interpolate to: never above the source.
        assert_eq!(
            names(&select_with_source(&ladder, 5120, 2880, auto))[0],
            "2160p"
        );
        // Odd sizes become even, portrait keeps its orientation.
        let r = select_with_source(&ladder, 479, 853, auto);
        assert_eq!((r[0].width, r[0].height), (478, 852));
        // Without a margin, a source that is a configured rung once made even gets no second
        // rung of that name.
        let r = select_with_source(&ladder, 854, 481, SourceRung::Auto { margin: 0.0 });
        let mut seen = names(&r);
        seen.dedup();
        assert_eq!(seen.len(), r.len(), "{:?}", names(&r));
    }

    #[test]
    fn landscape_1080p() {
        let r = select(&default_ladder(), 1920, 1080);
        assert_eq!(names(&r), ["1080p", "720p", "480p", "360p", "240p"]);
        assert_eq!((r[0].width, r[0].height), (1920, 1080));
        assert_eq!((r[1].width, r[1].height), (1280, 720));
        assert_eq!((r[2].width, r[2].height), (852, 480));
        assert_eq!(r[1].maxrate_kbps, 3300);
        assert_eq!(r[1].bufsize_kbps, 6000);
    }

    #[test]
    fn portrait_compares_short_side() {
        let r = select(&default_ladder(), 720, 1280);
        assert_eq!(names(&r), ["720p", "480p", "360p", "240p"]);
        assert_eq!((r[0].width, r[0].height), (720, 1280));
        assert_eq!((r[1].width, r[1].height), (480, 852));
    }

    #[test]
    fn tiny_source_gets_one_rung_at_its_size() {
        let r = select(&default_ladder(), 320, 180);
        assert_eq!(names(&r), ["180p"]);
        assert_eq!((r[0].width, r[0].height, r[0].video_kbps), (320, 180, 400));
        let odd = select(&default_ladder(), 175, 99);
        assert_eq!((odd[0].width, odd[0].height), (174, 98));
    }

    #[test]
    fn between_rungs_keeps_those_below() {
        assert_eq!(names(&select(&default_ladder(), 320, 240)), ["240p"]);
        assert_eq!(names(&select(&default_ladder(), 3840, 2160))[0], "2160p");
    }

    proptest! {
        #[test]
        fn never_upscales_and_sizes_are_even(w in 2u32..8000, h in 2u32..8000) {
            let rungs = select(&default_ladder(), w, h);
            prop_assert!(!rungs.is_empty());
            for r in &rungs {
                prop_assert!(r.width <= w.max(2) && r.height <= h.max(2), "{r:?} from {w}x{h}");
                prop_assert!(r.width % 2 == 0 && r.height % 2 == 0);
                // Orientation is kept (a near-square source may round to square).
                let kept = if w >= h { r.width >= r.height } else { r.width <= r.height };
                prop_assert!(kept, "orientation lost: {:?} from {}x{}", r, w, h);
            }
        }
    }
}
