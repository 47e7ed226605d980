//! Live HLS: the recording's fragmented MP4 cut, while the muxer writes it, into segments of
//! about two seconds that each start at a video key frame. Each segment is stored as its own
//! object (`<recording>/live/seg-NNNNN.m4s`, beside `init.mp4`) as soon as the next one
//! begins, and the playlist (`index.m3u8`) is rewritten after each: a sliding live playlist
//! while the meeting runs, the whole VOD playlist (`EXT-X-ENDLIST`) once it ends.
//!
//! The cut depends only on the file's bytes, so a recording recovered after a crash is cut
//! the same way again and its objects are overwritten with the same content.

use std::io::{Read, Seek, SeekFrom};

use super::hls::{Timing, Track, be32, child, children, fragment_timing, tracks};

/// The playlist's object name under the live prefix.
pub const PLAYLIST: &str = "index.m3u8";
/// The init section (`ftyp` + `moov`).
pub const INIT: &str = "init.mp4";

/// `room/rec-1.mp4` -> `room/rec-1/live/`.
pub fn live_prefix(key: &str) -> String {
    format!("{}/live/", key.strip_suffix(".mp4").unwrap_or(key))
}

/// The `n`th segment's object name.
pub fn segment_name(n: u64) -> String {
    format!("seg-{n:05}.m4s")
}

/// Whether `name` is one of the names this module writes (what the API serves: never a
/// path, never anything else in the bucket).
pub fn valid_name(name: &str) -> bool {
    name == PLAYLIST
        || name == INIT
        || name
            .strip_prefix("seg-")
            .and_then(|n| n.strip_suffix(".m4s"))
            .is_some_and(|n| n.len() >= 5 && n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit()))
}

pub fn content_type(name: &str) -> &'static str {
    if name.ends_with(".m3u8") {
        "application/vnd.apple.mpegurl"
    } else if name.ends_with(".m4s") {
        "video/iso.segment"
    } else {
        "video/mp4"
    }
}

/// A closed segment: its bytes in the recording and its duration.
#[derive(Debug, Clone, PartialEq)]
pub struct Cut {
    pub offset: u64,
    pub len: u64,
    pub seconds: f64,
    /// Starts with a key frame (false only where no key frame came for too long).
    pub independent: bool,
}

#[derive(Debug)]
struct Open {
    offset: u64,
    start_ms: i64,
    end_ms: i64,
    end: u64,
    /// Whether its first video fragment starts with a key frame (`None`: no video in it yet;
    /// audio the muxer wrote before the first picture may lead a segment).
    first_video_key: Option<bool>,
}

/// A `moof` read, waiting for its `mdat`.
#[derive(Debug, Clone, Copy)]
struct PendingMoof {
    offset: u64,
    timing: Timing,
    key_frame: bool,
}

/// Cuts a growing fragmented MP4 into segments. Feed it the file as it grows ([`Cutter::scan`]);
/// it reads only what it has not read (box headers and the small `moov`/`moof` boxes).
#[derive(Debug)]
pub struct Cutter {
    target_ms: i64,
    scanned: u64,
    tracks: Vec<Track>,
    init_len: Option<u64>,
    has_video_track: bool,
    moof: Option<PendingMoof>,
    open: Option<Open>,
}

/// Where a segment may be cut without a key frame: three targets without one (a hardware
/// encoder that ignores the key-frame interval must not make one endless segment).
const FORCED_CUT_TARGETS: i64 = 3;
/// `moov`/`moof` larger than this are not read (the muxer's are kilobytes).
const MAX_METADATA_BOX: u64 = 64 << 20;

impl Cutter {
    pub fn new(target_secs: f64) -> Self {
        Self {
            target_ms: (target_secs * 1000.0).round().max(500.0) as i64,
            scanned: 0,
            tracks: Vec::new(),
            init_len: None,
            has_video_track: false,
            moof: None,
            open: None,
        }
    }

    /// Length of the init section, once the `moov` is complete.
    pub fn init_len(&self) -> Option<u64> {
        self.init_len
    }

    /// Reads the complete boxes of `file` up to `len` it has not read; the segments that
    /// closed on the way (a segment closes where the next begins).
    pub fn scan<F: Read + Seek>(&mut self, file: &mut F, len: u64) -> std::io::Result<Vec<Cut>> {
        let mut cuts = Vec::new();
        while self.scanned + 8 <= len {
            let offset = self.scanned;
            let mut header = [0u8; 16];
            let available = 16.min(len - offset) as usize;
            file.seek(SeekFrom::Start(offset))?;
            file.read_exact(&mut header[..available])?;
            let mut size = be32(&header, 0).unwrap_or(0) as u64;
            let kind: [u8; 4] = header[4..8].try_into().unwrap_or_default();
            let mut header_len = 8;
            if size == 1 {
                if available < 16 {
                    break;
                }
                size = u64::from_be_bytes(header[8..16].try_into().unwrap_or_default());
                header_len = 16;
            }
            if size < header_len {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("box of size {size} at {offset}"),
                ));
            }
            if offset + size > len {
                break; // still being written
            }
            let body = |file: &mut F| -> std::io::Result<Vec<u8>> {
                if size > MAX_METADATA_BOX {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "metadata box larger than 64 MiB",
                    ));
                }
                let mut buf = vec![0u8; (size - header_len) as usize];
                file.seek(SeekFrom::Start(offset + header_len))?;
                file.read_exact(&mut buf)?;
                Ok(buf)
            };
            match &kind {
                b"moov" => {
                    let moov = body(file)?;
                    self.tracks = tracks(&moov);
                    self.has_video_track = self.tracks.iter().any(|t| t.video);
                    self.init_len = Some(offset + size);
                }
                b"moof" if self.init_len.is_some() => {
                    let moof = body(file)?;
                    self.moof = fragment_timing(&moof, &self.tracks).map(|timing| PendingMoof {
                        offset,
                        timing,
                        key_frame: timing.video && starts_with_key_frame(&moof, &self.tracks),
                    });
                }
                b"mdat" => {
                    if let Some(moof) = self.moof.take() {
                        cuts.extend(self.fragment(moof, offset + size));
                    }
                }
                _ => {}
            }
            self.scanned = offset + size;
        }
        Ok(cuts)
    }

    /// One complete fragment (`moof` + `mdat`): starts a new segment, closing the open one,
    /// where a segment may begin; joins the open one otherwise.
    fn fragment(&mut self, moof: PendingMoof, end: u64) -> Option<Cut> {
        let ms = |seconds: f64| (seconds * 1000.0).round() as i64;
        let (start_ms, end_ms) = (ms(moof.timing.start), ms(moof.timing.end));
        let starts_segment = |open: &Open| {
            let long = start_ms - open.start_ms;
            if !self.has_video_track {
                return long >= self.target_ms;
            }
            moof.timing.video
                && start_ms > open.start_ms
                && ((moof.key_frame && long * 4 >= self.target_ms * 3)
                    || long >= self.target_ms * FORCED_CUT_TARGETS)
        };
        match &mut self.open {
            Some(open) if !starts_segment(open) => {
                open.end = end;
                open.end_ms = open.end_ms.max(end_ms);
                if moof.timing.video && open.first_video_key.is_none() {
                    open.first_video_key = Some(moof.key_frame);
                }
                None
            }
            slot => {
                let next = Open {
                    offset: moof.offset,
                    start_ms,
                    end_ms,
                    end,
                    first_video_key: moof.timing.video.then_some(moof.key_frame),
                };
                slot.replace(next).map(|closed| Cut {
                    offset: closed.offset,
                    len: moof.offset - closed.offset,
                    seconds: (start_ms - closed.start_ms).max(0) as f64 / 1000.0,
                    independent: closed.first_video_key.unwrap_or(true),
                })
            }
        }
    }

    /// The writer is done: the open segment closes at the end of its last fragment.
    pub fn finish(&mut self) -> Option<Cut> {
        self.open.take().map(|open| Cut {
            offset: open.offset,
            len: open.end - open.offset,
            seconds: (open.end_ms - open.start_ms).max(0) as f64 / 1000.0,
            independent: open.first_video_key.unwrap_or(true),
        })
    }
}

/// Whether the video track fragment of `moof` starts with a sync sample: the first sample's
/// flags from `trun` (first-sample or per-sample flags), else `tfhd`'s default, else `trex`'s.
fn starts_with_key_frame(moof: &[u8], tracks: &[Track]) -> bool {
    const NON_SYNC: u32 = 0x0001_0000;
    for (_, traf) in children(moof).into_iter().filter(|(k, _)| k == b"traf") {
        let Some(tfhd) = child(traf, b"tfhd") else {
            continue;
        };
        let (Some(tf_flags), Some(id)) = (be32(tfhd, 0), be32(tfhd, 4)) else {
            continue;
        };
        let Some(track) = tracks.iter().find(|t| t.id == id && t.video) else {
            continue;
        };
        let mut default = track.default_flags;
        if tf_flags & 0x20 != 0 {
            let at = 8 + [0x01u32, 0x02, 0x08, 0x10]
                .iter()
                .map(|&f| {
                    if tf_flags & f == 0 {
                        0
                    } else if f == 0x01 {
                        8
                    } else {
                        4
                    }
                })
                .sum::<usize>();
            default = be32(tfhd, at).unwrap_or(default);
        }
        let flags = child(traf, b"trun").and_then(|trun| {
            let tr_flags = be32(trun, 0)? & 0xff_ffff;
            let mut at = 8;
            if tr_flags & 0x001 != 0 {
                at += 4;
            }
            if tr_flags & 0x004 != 0 {
                return be32(trun, at);
            }
            if tr_flags & 0x400 != 0 {
                let before = [0x100u32, 0x200]
                    .iter()
                    .filter(|&&f| tr_flags & f != 0)
                    .count();
                return be32(trun, at + before * 4);
            }
            None
        });
        return flags.unwrap_or(default) & NON_SYNC == 0;
    }
    false
}

/// One stored segment as the playlist lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub number: u64,
    pub seconds: f64,
    /// Its first picture's time on the wall clock (the recording's start plus its offset).
    pub start_unix_ms: i64,
    pub independent: bool,
}

/// The playlist over `segments` (all stored so far, in order): the last `window` of them
/// while live, all of them with `EXT-X-ENDLIST` once `ended`. Names are relative to the
/// playlist (the API rewrites them into links).
pub fn playlist(segments: &[Listed], window: usize, ended: bool) -> String {
    let shown = if ended {
        segments
    } else {
        &segments[segments.len().saturating_sub(window.max(3))..]
    };
    // RFC 8216: each EXTINF rounded to the nearest integer is at most the target. Players
    // hold back a multiple of it from the live edge, so it is not rounded up.
    let target = segments
        .iter()
        .map(|s| s.seconds.round() as u64)
        .max()
        .unwrap_or(2)
        .max(2);
    let mut out = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{}\n",
        shown.first().map_or(0, |s| s.number)
    );
    if ended {
        out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n");
    }
    if segments.iter().all(|s| s.independent) {
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }
    out.push_str(&format!("#EXT-X-MAP:URI=\"{INIT}\"\n"));
    for (i, s) in shown.iter().enumerate() {
        if i == 0 {
            out.push_str(&format!(
                "#EXT-X-PROGRAM-DATE-TIME:{}\n",
                crate::integrations::events::rfc3339(s.start_unix_ms)
            ));
        }
        out.push_str(&format!(
            "#EXTINF:{:.3},\n{}\n",
            s.seconds,
            segment_name(s.number)
        ));
    }
    if ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// `stored` (a playlist this module wrote) with every object name replaced by `link(name)`;
/// a name this module would not write is dropped with its line.
pub fn with_links(stored: &str, mut link: impl FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(stored.len() * 2);
    for line in stored.lines() {
        if let Some(rest) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
            let name = rest.split('"').next().unwrap_or_default();
            if valid_name(name) {
                out.push_str(&format!("#EXT-X-MAP:URI=\"{}\"\n", link(name)));
            }
        } else if line.starts_with('#') || line.is_empty() {
            out.push_str(line);
            out.push('\n');
        } else if valid_name(line) {
            out.push_str(&link(line));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cutter_with_video() -> Cutter {
        let mut c = Cutter::new(2.0);
        c.has_video_track = true;
        c.init_len = Some(100);
        c
    }

    fn moof(offset: u64, video: bool, start: f64, dur: f64, key: bool) -> PendingMoof {
        PendingMoof {
            offset,
            timing: Timing {
                video,
                start,
                end: start + dur,
            },
            key_frame: key,
        }
    }

    /// Fragments of a second, key frames every two: a segment per two seconds, each from a
    /// key frame, with the audio written after a video fragment inside its segment; audio the
    /// muxer wrote before the first picture leads the first segment, which is still
    /// independent (its first picture is a key frame).
    #[test]
    fn segments_start_at_key_frames_about_every_two_seconds() {
        let mut c = cutter_with_video();
        let mut cuts = Vec::new();
        assert!(c.fragment(moof(60, false, 0.0, 0.5, false), 100).is_none());
        let mut offset = 100;
        for i in 0..6u64 {
            let t = i as f64;
            cuts.extend(c.fragment(moof(offset, true, t, 1.0, i % 2 == 0), offset + 300));
            cuts.extend(c.fragment(moof(offset + 300, false, t, 1.0, false), offset + 400));
            offset += 400;
        }
        assert_eq!(cuts.len(), 2, "{cuts:?}");
        assert_eq!(
            cuts[0],
            Cut {
                offset: 60,
                len: 840,
                seconds: 2.0,
                independent: true
            }
        );
        assert_eq!(cuts[1].offset, 900);
        let last = c.finish().unwrap();
        assert_eq!((last.offset, last.len, last.seconds), (1700, 800, 2.0));
        assert!(c.finish().is_none());
    }

    /// A scene cut's early key frame does not make a short segment; with no key frame for
    /// three targets the segment is cut anyway, and says it depends on the one before.
    #[test]
    fn early_key_frames_wait_and_missing_ones_force_a_cut() {
        let mut c = cutter_with_video();
        let mut cuts = Vec::new();
        cuts.extend(c.fragment(moof(100, true, 0.0, 0.5, true), 200));
        cuts.extend(c.fragment(moof(200, true, 0.5, 1.0, true), 300));
        assert!(cuts.is_empty());
        for (i, t) in [1.5, 2.5, 3.5, 4.5, 5.5, 6.5].iter().enumerate() {
            let off = 300 + 100 * i as u64;
            cuts.extend(c.fragment(moof(off, true, *t, 1.0, false), off + 100));
        }
        assert_eq!(cuts.len(), 1, "{cuts:?}");
        assert_eq!(cuts[0].seconds, 6.5);
        let last = c.finish().unwrap();
        assert!(!last.independent);
        let listed: Vec<Listed> = [&cuts[0], &last]
            .iter()
            .enumerate()
            .map(|(n, cut)| Listed {
                number: n as u64,
                seconds: cut.seconds,
                start_unix_ms: 0,
                independent: cut.independent,
            })
            .collect();
        let text = playlist(&listed, 10, true);
        assert!(!text.contains("INDEPENDENT"), "{text}");
        assert!(text.contains("#EXT-X-TARGETDURATION:7\n"), "{text}");
    }

    #[test]
    fn live_playlists_slide_and_the_last_one_lists_everything() {
        let listed: Vec<Listed> = (0..10)
            .map(|n| Listed {
                number: n,
                seconds: 2.0,
                start_unix_ms: 1_700_000_000_000 + n as i64 * 2000,
                independent: true,
            })
            .collect();
        let live = playlist(&listed, 4, false);
        assert!(live.contains("#EXT-X-MEDIA-SEQUENCE:6\n"), "{live}");
        assert!(!live.contains("ENDLIST") && !live.contains("seg-00005.m4s"));
        assert!(
            live.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:32.000Z\n"),
            "{live}"
        );
        let vod = playlist(&listed, 4, true);
        assert!(
            vod.contains("#EXT-X-PLAYLIST-TYPE:VOD\n")
                && vod.trim_end().ends_with("#EXT-X-ENDLIST")
        );
        assert_eq!(vod.matches(".m4s").count(), 10);
        let linked = with_links(&vod, |n| format!("https://x/{n}?sig"));
        assert!(linked.contains("#EXT-X-MAP:URI=\"https://x/init.mp4?sig\""));
        assert_eq!(linked.matches("?sig").count(), 11);
    }

    #[test]
    fn only_names_this_module_writes_are_valid() {
        for good in [
            "index.m3u8",
            "init.mp4",
            "seg-00000.m4s",
            "seg-123456789.m4s",
        ] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "../x.mp4",
            "seg-1.m4s",
            "seg-0000a.m4s",
            "seg-00000.m4s/../../a",
            "seg-1234567890.m4s",
            "recording.mp4",
            "",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        // A hostile line in a stored playlist is dropped, not linked.
        let linked = with_links("#EXTM3U\n/etc/passwd\nseg-00001.m4s\n", |n| {
            format!("L/{n}")
        });
        assert_eq!(linked, "#EXTM3U\nL/seg-00001.m4s\n");
    }
}
