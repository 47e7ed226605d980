//! HLS over the recording itself: a version-7 playlist whose media segments are byte ranges of
//! the fragmented MP4 (`EXT-X-MAP` for `ftyp`+`moov`, one segment per video fragment with the
//! audio fragments written after it). No second copy of the media is stored; the playlist is
//! written beside the recording when it is delivered, and links to it are rewritten with a
//! fresh presigned URL of the recording when asked for.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::RecordingError;

/// Where the init section ends and where each media segment lies, with its duration.
#[derive(Debug, Clone, PartialEq)]
pub struct Index {
    pub init_len: u64,
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub offset: u64,
    pub len: u64,
    pub seconds: f64,
}

/// What the playlist names the recording by; rewritten on the way out.
pub const MEDIA_PLACEHOLDER: &str = "recording.mp4";

#[derive(Debug)]
pub(super) struct Track {
    pub(super) id: u32,
    pub(super) timescale: u32,
    pub(super) video: bool,
    pub(super) default_duration: u32,
    /// `trex`'s default sample flags (whether a sample is a key frame, when nothing closer says).
    pub(super) default_flags: u32,
}

fn bad(path: &Path, message: impl Into<String>) -> RecordingError {
    RecordingError::Metadata {
        path: path.to_path_buf(),
        message: format!("HLS index: {}", message.into()),
    }
}

pub(super) fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Child boxes of a box payload: (kind, payload).
pub(super) fn children(payload: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= payload.len() {
        let size = be32(payload, at).unwrap_or(0) as usize;
        let kind: [u8; 4] = payload[at + 4..at + 8].try_into().unwrap_or_default();
        if size < 8 || at + size > payload.len() {
            break;
        }
        out.push((kind, &payload[at + 8..at + size]));
        at += size;
    }
    out
}

pub(super) fn child<'a>(payload: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    children(payload)
        .into_iter()
        .find(|(k, _)| k == kind)
        .map(|(_, p)| p)
}

pub(super) fn tracks(moov: &[u8]) -> Vec<Track> {
    let mut tracks: Vec<Track> = children(moov)
        .into_iter()
        .filter(|(k, _)| k == b"trak")
        .filter_map(|(_, trak)| {
            let tkhd = child(trak, b"tkhd")?;
            // Version 1 has 64-bit times before the track id.
            let id = be32(tkhd, if tkhd.first() == Some(&1) { 20 } else { 12 })?;
            let mdia = child(trak, b"mdia")?;
            let mdhd = child(mdia, b"mdhd")?;
            let timescale = be32(mdhd, if mdhd.first() == Some(&1) { 20 } else { 12 })?;
            let hdlr = child(mdia, b"hdlr")?;
            let video = hdlr.get(8..12) == Some(b"vide");
            Some(Track {
                id,
                timescale,
                video,
                default_duration: 0,
                default_flags: 0,
            })
        })
        .collect();
    if let Some(mvex) = child(moov, b"mvex") {
        for (_, trex) in children(mvex).into_iter().filter(|(k, _)| k == b"trex") {
            let (Some(id), Some(duration)) = (be32(trex, 4), be32(trex, 12)) else {
                continue;
            };
            if let Some(t) = tracks.iter_mut().find(|t| t.id == id) {
                t.default_duration = duration;
                t.default_flags = be32(trex, 20).unwrap_or(0);
            }
        }
    }
    tracks
}

/// A `moof` as a player sees it: whether it carries video, and the earliest decode time
/// (`tfdt`) and latest end of its track fragments, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Timing {
    pub(super) video: bool,
    pub(super) start: f64,
    pub(super) end: f64,
}

/// Decode time, duration (ticks) and track of one `traf`.
fn track_fragment(traf: &[u8], tracks: &[Track]) -> Option<(u64, u64, u32)> {
    let tfdt = child(traf, b"tfdt")?;
    let start = if tfdt.first() == Some(&1) {
        u64::from_be_bytes(tfdt.get(4..12)?.try_into().ok()?)
    } else {
        be32(tfdt, 4)? as u64
    };
    let tfhd = child(traf, b"tfhd")?;
    let flags = be32(tfhd, 0)? & 0xff_ffff;
    let id = be32(tfhd, 4)?;
    let mut at = 8;
    if flags & 0x01 != 0 {
        at += 8; // base data offset
    }
    if flags & 0x02 != 0 {
        at += 4; // sample description index
    }
    let default = if flags & 0x08 != 0 {
        be32(tfhd, at)?
    } else {
        tracks.iter().find(|t| t.id == id)?.default_duration
    };
    let mut total = 0u64;
    for (_, trun) in children(traf).into_iter().filter(|(k, _)| k == b"trun") {
        let flags = be32(trun, 0)? & 0xff_ffff;
        let count = be32(trun, 4)? as usize;
        let mut at = 8;
        if flags & 0x001 != 0 {
            at += 4;
        }
        if flags & 0x004 != 0 {
            at += 4;
        }
        let fields = [0x100, 0x200, 0x400, 0x800]
            .iter()
            .filter(|&&f| flags & f != 0)
            .count();
        for i in 0..count {
            total += if flags & 0x100 != 0 {
                be32(trun, at + i * fields * 4)? as u64
            } else {
                default as u64
            };
        }
    }
    Some((start, total, id))
}

/// Every track fragment of a `moof`, in seconds. Players read the time of a segment from
/// its first `moof` this way (hlsdemux2 takes the smallest `tfdt` among its `traf`s).
pub(super) fn fragment_timing(moof: &[u8], tracks: &[Track]) -> Option<Timing> {
    let mut timing: Option<Timing> = None;
    for (_, traf) in children(moof).into_iter().filter(|(k, _)| k == b"traf") {
        let (start, duration, id) = track_fragment(traf, tracks)?;
        let track = tracks.iter().find(|t| t.id == id)?;
        let scale = track.timescale.max(1) as f64;
        let (start, end) = (start as f64 / scale, (start + duration) as f64 / scale);
        let t = timing.get_or_insert(Timing {
            video: false,
            start,
            end,
        });
        t.video |= track.video;
        t.start = t.start.min(start);
        t.end = t.end.max(end);
    }
    timing
}

/// Reads box headers (and the small `moov`/`moof` boxes) of the first `len` bytes of `path`.
pub fn index_file(path: &Path, len: u64) -> Result<Index, RecordingError> {
    let io = |e: std::io::Error| bad(path, e.to_string());
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut read_box = |offset: u64, size: usize| -> Result<Vec<u8>, RecordingError> {
        let mut buf = vec![0u8; size];
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        file.read_exact(&mut buf).map_err(io)?;
        Ok(buf)
    };
    let mut tracks = Vec::new();
    let mut init_len = None;
    // Fragments as (offset, end, timing); grouped into segments below.
    let mut fragments: Vec<(u64, u64, Timing)> = Vec::new();
    // Whether the last `moof` has its `mdat`.
    let mut last_has_data = true;
    let mut offset = 0u64;
    while offset + 8 <= len {
        let header = read_box(offset, 16.min((len - offset) as usize))?;
        let mut size = be32(&header, 0).unwrap_or(0) as u64;
        let kind: [u8; 4] = header[4..8].try_into().unwrap_or_default();
        let mut header_len = 8;
        if size == 1 {
            size = header
                .get(8..16)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            header_len = 16;
        }
        if size < header_len || offset + size > len {
            break; // a box cut short: the end of what is complete
        }
        match &kind {
            b"moov" | b"moof" if size > 64 << 20 => {
                return Err(bad(path, "metadata box larger than 64 MiB"));
            }
            b"moov" => {
                let body = read_box(offset + header_len, (size - header_len) as usize)?;
                tracks = self::tracks(&body);
                init_len = Some(offset + size);
            }
            b"moof" => {
                let body = read_box(offset + header_len, (size - header_len) as usize)?;
                let timing = fragment_timing(&body, &tracks)
                    .ok_or_else(|| bad(path, format!("unreadable moof at {offset}")))?;
                fragments.push((offset, offset + size, timing));
                last_has_data = false;
            }
            b"mdat" => {
                if let Some(last) = fragments.last_mut() {
                    last.1 = offset + size;
                    last_has_data = true;
                }
            }
            _ => {}
        }
        offset += size;
    }
    if !last_has_data {
        fragments.pop(); // its samples were cut off: a segment of them would not play
    }
    let init_len = init_len.ok_or_else(|| bad(path, "no complete moov"))?;
    Ok(Index {
        init_len,
        segments: segments(&fragments),
    })
}

/// One segment per video fragment, with the fragments after it that are not video (the
/// audio the muxer wrote next); audio before the first video fragment joins the first.
///
/// A player places each segment at the running sum of the `EXTINF`s before it and checks
/// that against the decode time of the segment's first `moof`: where they differ by more
/// than half a segment, hlsdemux2 takes the segment for a wrong one, jumps to the one the
/// time points at and drops what it skipped; a segment of `EXTINF:0` it never plays. So a
/// segment starts at the decode time of its first fragment and lasts to the next one's,
/// and those starts must only go forwards. Cut at audio instead, they do not: the muxer
/// ends a video fragment early at a keyframe (a scene cut), and the audio fragment written
/// after that short fragment starts before it, up to a second earlier.
///
/// Durations are differences of start times rounded to the millisecond, so the playlist's
/// running sum never drifts from the file's times (hlsdemux2 resyncs beyond 10 ms). The last
/// segment lasts to the end of its latest fragment.
fn segments(fragments: &[(u64, u64, Timing)]) -> Vec<Segment> {
    let ms = |seconds: f64| (seconds * 1000.0).round() as i64;
    let has_video = fragments.iter().any(|f| f.2.video);
    struct Span {
        offset: u64,
        end: u64,
        start_ms: i64,
        end_ms: i64,
        video: bool,
    }
    let mut spans: Vec<Span> = Vec::new();
    for &(offset, end, t) in fragments {
        let (start_ms, end_ms) = (ms(t.start), ms(t.end));
        let video = t.video || !has_video;
        match spans.last_mut() {
            // A new segment at each video fragment that starts later than the one before.
            Some(last) if !(video && last.video && start_ms > last.start_ms) => {
                last.end = end;
                last.end_ms = last.end_ms.max(end_ms);
                last.video |= video;
            }
            _ => spans.push(Span {
                offset,
                end,
                start_ms,
                end_ms,
                video,
            }),
        }
    }
    let next_starts: Vec<Option<i64>> = spans
        .iter()
        .skip(1)
        .map(|s| Some(s.start_ms))
        .chain([None])
        .collect();
    spans
        .iter()
        .zip(next_starts)
        .map(|(s, next)| Segment {
            offset: s.offset,
            len: s.end - s.offset,
            seconds: (next.unwrap_or(s.end_ms) - s.start_ms).max(0) as f64 / 1000.0,
        })
        .collect()
}

/// The playlist text, naming the recording `media_uri`.
pub fn playlist(index: &Index, media_uri: &str) -> String {
    let target = index
        .segments
        .iter()
        .map(|s| s.seconds.ceil() as u64)
        .max()
        .unwrap_or(1)
        .max(1);
    // No EXT-X-INDEPENDENT-SEGMENTS: segments are cut at the muxer's fragments, which do not
    // all start at a keyframe, so a segment played alone may need the one before it.
    let mut out = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MAP:URI=\"{media_uri}\",BYTERANGE=\"{}@0\"\n",
        index.init_len
    );
    for s in &index.segments {
        out.push_str(&format!(
            "#EXTINF:{:.3},\n#EXT-X-BYTERANGE:{}@{}\n{media_uri}\n",
            s.seconds, s.len, s.offset
        ));
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

/// A stored playlist with its placeholder replaced by `media_uri` (a presigned link).
pub fn with_media(stored: &str, media_uri: &str) -> String {
    stored.replace(MEDIA_PLACEHOLDER, media_uri)
}

/// `room/rec-1.mp4` -> `room/rec-1.m3u8`.
pub fn playlist_key(key: &str) -> String {
    format!("{}.m3u8", key.strip_suffix(".mp4").unwrap_or(key))
}

/// Segment byte ranges parsed back from a playlist: (offset, len, seconds), init first with 0 s.
pub fn parse_ranges(playlist: &str) -> Vec<(u64, u64, f64)> {
    let mut out = Vec::new();
    let mut seconds = 0.0;
    for line in playlist.lines() {
        if let Some(map) = line.strip_prefix("#EXT-X-MAP:") {
            if let Some(range) = map.split("BYTERANGE=\"").nth(1) {
                out.extend(range_of(range.trim_end_matches('"'), 0.0));
            }
        } else if let Some(d) = line.strip_prefix("#EXTINF:") {
            seconds = d.trim_end_matches(',').parse().unwrap_or(0.0);
        } else if let Some(range) = line.strip_prefix("#EXT-X-BYTERANGE:") {
            out.extend(range_of(range, seconds));
        }
    }
    out
}

fn range_of(range: &str, seconds: f64) -> Option<(u64, u64, f64)> {
    let (len, offset) = range.split_once('@')?;
    Some((offset.parse().ok()?, len.parse().ok()?, seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(video: bool, start: f64, duration: f64) -> Timing {
        Timing {
            video,
            start,
            end: start + duration,
        }
    }

    /// As the recorder's muxer writes them: audio leads, a keyframe (a scene cut) ends the
    /// second video fragment early, and the audio written after that short fragment starts
    /// before it. Segments start at video fragments, so their starts only go forwards and
    /// no segment gets `EXTINF:0` (which hlsdemux2 never plays).
    #[test]
    fn segments_start_at_video_fragments_and_their_times_only_go_forwards() {
        let fragments = [
            (100, 200, t(false, 0.0, 0.981)),
            (200, 500, t(true, 0.0, 1.0)),
            (500, 600, t(false, 0.981, 0.981)),
            (600, 700, t(true, 1.0, 0.5)),
            (700, 800, t(false, 1.963, 0.981)),
            (800, 1000, t(true, 1.5, 1.0)),
            (1000, 1050, t(false, 2.944, 0.3)),
        ];
        let s = segments(&fragments);
        assert_eq!(
            s,
            vec![
                Segment {
                    offset: 100,
                    len: 500,
                    seconds: 1.0
                },
                Segment {
                    offset: 600,
                    len: 200,
                    seconds: 0.5
                },
                // The last lasts to the end of its trailing audio.
                Segment {
                    offset: 800,
                    len: 250,
                    seconds: 1.744
                },
            ]
        );
        let index = Index {
            init_len: 100,
            segments: s,
        };
        let text = playlist(&index, MEDIA_PLACEHOLDER);
        assert!(text.contains("#EXT-X-MAP:URI=\"recording.mp4\",BYTERANGE=\"100@0\""));
        assert!(text.contains("#EXT-X-TARGETDURATION:2\n"), "{text}");
        assert_eq!(
            parse_ranges(&text),
            vec![
                (0, 100, 0.0),
                (100, 500, 1.0),
                (600, 200, 0.5),
                (800, 250, 1.744)
            ]
        );
        let signed = with_media(&text, "https://s3/x.mp4?sig=1");
        assert!(!signed.contains(MEDIA_PLACEHOLDER) && signed.contains("x.mp4?sig=1"));
    }

    /// Durations are differences of millisecond-rounded start times: thirty fragments of a
    /// third of a second add up to exactly 10 s (rounded one by one, 0.333 each, they would
    /// fall 10 ms behind, where hlsdemux2 starts correcting the playlist).
    #[test]
    fn durations_add_up_without_drift() {
        let fragments: Vec<_> = (0..30u64)
            .map(|i| (i * 100, (i + 1) * 100, t(true, i as f64 / 3.0, 1.0 / 3.0)))
            .collect();
        let s = segments(&fragments);
        assert_eq!(s.len(), 30);
        let total: f64 = s.iter().map(|s| s.seconds).sum();
        assert!((total - 10.0).abs() < 1e-9, "{total}");
        assert!(s.iter().all(|s| s.seconds >= 0.333), "{s:?}");
    }

    /// Without video (no such recordings now, but the index copes) every fragment is a
    /// segment; a fragment that does not start later than the one before joins it.
    #[test]
    fn audio_only_fragments_are_segments_and_none_lasts_zero() {
        let fragments = [
            (100, 200, t(false, 0.0, 1.0)),
            (200, 300, t(false, 1.0, 1.0)),
            (300, 400, t(false, 1.0, 0.5)),
            (400, 450, t(false, 2.0, 0.25)),
        ];
        let s = segments(&fragments);
        let got: Vec<_> = s.iter().map(|s| (s.offset, s.len, s.seconds)).collect();
        assert_eq!(got, vec![(100, 100, 1.0), (200, 200, 1.0), (400, 50, 0.25)]);
    }
}
